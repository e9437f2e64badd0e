"""``import fastrl.envs`` registers every native env with gymnasium as ``fastrl/<id>``: make_vec
returns the native vector env, with make's keyword arguments."""

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import SyncVectorEnv

import fastrl.envs as fenvs
from fastrl.envs.gym_registration import gym_id


@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
@pytest.mark.parametrize("mode", ["vector_entry_point", None])  # None: make_vec's default for these ids
def test_make_vec_returns_the_native_env(env_id, mode):
    env = gymnasium.make_vec(f"fastrl/{env_id}", num_envs=8, vectorization_mode=mode)
    assert isinstance(env, fenvs.ClassicVectorEnv) and env.spec_.id == env_id and env.num_envs == 8
    assert env.max_episode_steps == gymnasium.spec(env_id).max_episode_steps
    assert env.spec.id == f"fastrl/{env_id}" and env.spec.kwargs["vectorization_mode"] == "vector_entry_point"
    same = fenvs.make(env_id, 8)
    assert env.single_observation_space == same.single_observation_space
    assert env.single_action_space == same.single_action_space


def test_make_vec_passes_make_arguments():
    env = gymnasium.make_vec("fastrl/CartPole-v1", num_envs=3, dtype=torch.float64, seed=4,
                             max_episode_steps=7, autoreset_mode="same_step", sutton_barto_reward=True)
    ref = fenvs.make("CartPole-v1", 3, dtype=torch.float64, seed=4, max_episode_steps=7,
                     autoreset_mode="same_step", sutton_barto_reward=True)
    assert env.max_episode_steps == 7 and env.params["sutton_barto_reward"] is True
    obs, _ = env.reset()
    ref_obs, _ = ref.reset()
    assert obs.dtype == torch.float64 and torch.equal(obs, ref_obs)
    for _ in range(10):
        a = torch.ones(3, dtype=torch.int64)
        out, ref_out = env.step(a), ref.step(a)
        for x, y in zip(out[:4], ref_out[:4]):
            assert torch.equal(x, y)
        assert torch.equal(out[4]["final_obs"], ref_out[4]["final_obs"])
    env = gymnasium.make_vec("fastrl/Pendulum-v1", num_envs=2, max_episode_steps=None)
    assert env.max_episode_steps is None


def test_sync_mode_and_single_env_are_gymnasiums():
    env = gymnasium.make_vec("fastrl/CartPole-v1", num_envs=2, vectorization_mode="sync")
    assert isinstance(env, SyncVectorEnv)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray)
    single = gymnasium.make("fastrl/Acrobot-v1")
    assert type(single.unwrapped) is type(gymnasium.make("Acrobot-v1").unwrapped)
    assert single.spec.max_episode_steps == 500


def test_make_vec_rejects_what_make_rejects():
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        gymnasium.make_vec("fastrl/CartPole-v1", num_envs=2, gravity=1.0)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        gymnasium.make_vec("fastrl/CartPole-v1", num_envs=0)


def test_gym_id():
    assert gym_id("CartPole-v1") == "fastrl/CartPole-v1"
    # A namespaced id (gymnasium's ids hold one namespace) keeps its namespace in the name.
    assert gym_id("MinAtar/Breakout-v1") == "fastrl/MinAtar-Breakout-v1"
    assert all(f"fastrl/{env_id}" in gymnasium.registry for env_id in fenvs.NATIVE_ENVS)
