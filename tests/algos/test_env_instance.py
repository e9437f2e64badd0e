"""A trainer takes a ready-made fastrl VectorEnv in place of an env id (issue 14, item 7): it trains on
that instance, and its id and keyword arguments reach evaluation envs and checkpoints."""

import gymnasium
import pytest
import torch

from fastrl import envs
from fastrl.algos import A2C, DQN, PPO, A2CConfig, DQNConfig, PPOConfig
from fastrl.utils.config import ConfigError

SMALL = dict(num_envs=4, num_steps=8, num_minibatches=2, total_steps=64, hidden=(16,), seed=2)


def test_the_trainer_steps_the_given_env_and_records_how_it_was_made(tmp_path):
    env = envs.make("MountainCar-v0", 4, seed=9, autoreset_mode="same_step", max_episode_steps=6, goal_velocity=0.25)
    # the config's env_id is the default, CartPole-v1: the env's replaces it
    given = PPO(PPOConfig(**SMALL), out_dir=tmp_path / "given", env=env)
    assert given.env is env
    assert given.config.env_id == "MountainCar-v0"
    assert given.config.env_kwargs == {"max_episode_steps": 6, "goal_velocity": 0.25}
    given.train()
    assert max(r["episodic_length"] for r in given.history) <= 6
    # evaluation envs are made alike: MountainCar's return is minus its length, here at most 6 steps
    assert min(given.evaluate(3)) >= -6
    resumed = PPO.from_checkpoint(tmp_path / "given")
    assert resumed.config.env_kwargs == given.config.env_kwargs
    assert resumed.env.params["goal_velocity"] == 0.25 and resumed.env.max_episode_steps == 6
    # the same run as a trainer making that env from the config
    from_config = PPO(PPOConfig(**SMALL, env_id="MountainCar-v0", env_kwargs=given.config.env_kwargs))
    from_config.train()
    for a, b in zip(given.agent.parameters(), from_config.agent.parameters()):
        assert torch.equal(a, b)


def test_gymnasiums_own_envs_are_accepted():
    env = envs.make("CartPole-v0", 2, seed=0, autoreset_mode="same_step", max_episode_steps=5)  # not native
    trainer = DQN(DQNConfig(num_envs=2, total_steps=8, learning_starts=4, batch_size=2, buffer_size=32), env=env)
    assert trainer.config.env_id == "CartPole-v0" and trainer.config.env_kwargs == {"max_episode_steps": 5}
    trainer.train()
    assert max(trainer.evaluate(2)) <= 5


@pytest.mark.parametrize("make, config, error, match", [
    (lambda: envs.make("CartPole-v1", 3, autoreset_mode="same_step"), dict(num_envs=4), ConfigError,
     r"num_envs: the env given has 3 envs, the config 4"),
    (lambda: envs.make("CartPole-v1", 4), dict(num_envs=4), ValueError, r"autoreset_mode='same_step'"),
    (lambda: gymnasium.make_vec("CartPole-v1", 4), dict(num_envs=4), TypeError, r"env must be a fastrl VectorEnv"),
])
def test_an_env_that_does_not_fit_the_config_is_refused(make, config, error, match):
    with pytest.raises(error, match=match):
        A2C(A2CConfig(**config), env=make())


@pytest.mark.cuda
def test_an_env_on_another_device_is_refused():
    env = envs.make("CartPole-v1", 2, autoreset_mode="same_step", device="cuda")
    with pytest.raises(ConfigError, match="device: the env given is on cuda:0, the config's device is cpu"):
        A2C(A2CConfig(num_envs=2), env=env)
