"""gymnasium's vector wrappers on fastrl's envs through TorchToNumpy, against the same wrappers on
gymnasium's own SyncVectorEnv driven along the same trajectory (fastrl's episode-start states
injected into gymnasium's envs at every reset); and CleanRL-style loops, which must not warn."""

import functools
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers.vector import (
    DictInfoToList,
    FlattenObservation,
    NormalizeObservation,
    NormalizeReward,
    RecordEpisodeStatistics,
)

import fastrl.envs as fenvs
from fastrl.envs import TorchToNumpy
from tests.envs.helpers import inject

ENV_ID, N, STEPS, SEED = "CartPole-v1", 4, 300, 5


class InjectResets(gymnasium.Wrapper):
    """Each reset starts the next of ``starts`` (fastrl's episode-start states of one env)."""

    def __init__(self, env, starts):
        super().__init__(env)
        self.starts = iter(starts)

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        inject(self.env, ENV_ID, next(self.starts), 0)
        return np.array(self.env.unwrapped.state, dtype=np.float32), info


def fastrl_env(mode="next_step"):
    return fenvs.make(ENV_ID, N, dtype=torch.float64, seed=SEED, autoreset_mode=mode, max_episode_steps=100)


def actions():
    return np.random.default_rng(0).integers(0, 2, size=(STEPS, N))


def episode_starts(mode):
    """Runs fastrl's env along ``actions()``: its raw step outputs and every env's episode-start
    states (the reset's, then each autoreset's)."""
    env = fastrl_env(mode)
    env.reset()
    starts = [[s.tolist()] for s in env.get_state()]
    resetting = np.zeros(N, dtype=bool)
    outputs = []
    for a in actions():
        out = env.step(torch.from_numpy(a))
        outputs.append(out)
        done = (out[2] | out[3]).numpy()
        # NEXT_STEP resets an env on the step after its episode ends, SAME_STEP on that step.
        resetting = done if mode == "same_step" else resetting
        for i in np.flatnonzero(resetting):
            starts[i].append(env.get_state()[i].tolist())
        resetting = done
    return outputs, starts


def gym_twin(mode, starts):
    autoreset = AutoresetMode.SAME_STEP if mode == "same_step" else AutoresetMode.NEXT_STEP
    make = lambda i: InjectResets(gymnasium.make(ENV_ID, max_episode_steps=100), starts[i])
    return SyncVectorEnv([functools.partial(make, i) for i in range(N)], autoreset_mode=autoreset)


def assert_same(ours, theirs, path="", rtol=1e-6, atol=1e-6):
    """Equal structure; numbers equal to float32 rounding (gymnasium's CartPole observes in
    float32, this fastrl env in float64); episode times ("t") are wall-clock, not compared."""
    if isinstance(theirs, dict):
        # SyncVectorEnv's SAME_STEP final_info (the sub-envs' infos: empty for CartPole) fastrl has not.
        keys = set(theirs) - {"t", "final_info", "_final_info"}
        assert set(ours) - {"t"} == keys, f"{path}: {sorted(ours)} != {sorted(keys)}"
        for k in keys:
            assert_same(ours[k], theirs[k], f"{path}[{k!r}]", rtol, atol)
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(theirs, np.ndarray) and theirs.dtype == object:  # SAME_STEP's final_obs
        for i, x in enumerate(theirs):
            if x is not None:
                assert_same(ours[i], x, f"{path}[{i}]", rtol, atol)
    else:
        assert isinstance(ours, (np.ndarray, np.generic)), f"{path}: {type(ours).__name__} is not numpy"
        np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64),
                                   rtol=rtol, atol=atol, err_msg=path)


WRAPPERS = {
    "RecordEpisodeStatistics": RecordEpisodeStatistics,
    "NormalizeObservation": NormalizeObservation,
    "NormalizeReward": functools.partial(NormalizeReward, gamma=0.9),
    "FlattenObservation": FlattenObservation,
    "DictInfoToList": lambda env: DictInfoToList(RecordEpisodeStatistics(env)),
}


@pytest.mark.parametrize("name", WRAPPERS)
def test_wrapper_matches_gymnasium_on_the_same_trajectory(name, backend):
    _, starts = episode_starts("next_step")
    wrap = WRAPPERS[name]
    ours, theirs = wrap(TorchToNumpy(fastrl_env())), wrap(gym_twin("next_step", starts))
    # The normalizers' statistics: float32 in gymnasium's, float64 from this env's observations.
    tol = {"rtol": 1e-4, "atol": 1e-4} if name.startswith("Normalize") else {}
    assert_same(ours.reset(), theirs.reset(seed=0), "reset", **tol)
    for t, a in enumerate(actions()):
        assert_same(ours.step(a), theirs.step(a), f"step {t}", **tol)
    if name == "RecordEpisodeStatistics":
        assert ours.episode_count == theirs.episode_count > 20
        assert list(ours.return_queue) == list(theirs.return_queue)
        assert list(ours.length_queue) == list(theirs.length_queue)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_record_episode_statistics_matches_fastrl_own_statistics(mode, backend):
    """gymnasium's RecordEpisodeStatistics over TorchToNumpy records what fastrl's own
    info["episode"] reports (and, on the same trajectory, what it records on SyncVectorEnv)."""
    raw, starts = episode_starts(mode)
    ours = DictInfoToList(RecordEpisodeStatistics(TorchToNumpy(fastrl_env(mode))))
    theirs = DictInfoToList(RecordEpisodeStatistics(gym_twin(mode, starts)))
    assert_same(ours.reset(), theirs.reset(seed=0))
    episodes = 0
    for t, (a, (*_, info)) in enumerate(zip(actions(), raw)):
        step, gym_step = ours.step(a), theirs.step(a)
        assert_same(step, gym_step, f"step {t}")
        ended = info["_episode"].numpy()
        for i in range(N):
            assert ("episode" in step[4][i]) == ended[i]
            if ended[i]:
                assert step[4][i]["episode"]["r"] == info["episode"]["r"][i].item()
                assert step[4][i]["episode"]["l"] == info["episode"]["l"][i].item()
                episodes += 1
    assert episodes > 20


def test_normalize_observation_matches_numpy_moments(backend):
    """An oracle independent of gymnasium's code: after the run, the statistics are the mean and
    variance of every observation seen (reset's included), up to RunningMeanStd's initial count."""
    env = NormalizeObservation(TorchToNumpy(fastrl_env()))
    raw = TorchToNumpy(fastrl_env())
    seen = [raw.reset()[0]]
    env.reset()
    for a in actions():
        seen.append(raw.step(a)[0])
        normalized = env.step(a)[0]
    seen = np.concatenate(seen)
    np.testing.assert_allclose(env.obs_rms.mean, seen.mean(0), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(env.obs_rms.var, seen.var(0), rtol=1e-3)
    expected = (seen[-N:] - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8)
    np.testing.assert_allclose(normalized, expected, rtol=1e-3, atol=1e-4)


def test_torch_to_numpy_outputs():
    env = TorchToNumpy(fenvs.make("Pendulum-v1", 3, seed=0, autoreset_mode="same_step", max_episode_steps=2))
    obs, info = env.reset()
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (3, 3) and info == {}
    for _ in range(2):
        obs, reward, term, trunc, info = env.step([[0.5]] * 3)  # a list, as gymnasium's envs take
    assert reward.dtype == np.float32 and term.dtype == trunc.dtype == np.bool_
    assert trunc.all() and set(info) == {"final_obs", "_final_obs"}
    assert isinstance(info["final_obs"], np.ndarray) and info["_final_obs"].all()


def test_make_vec_then_wrappers():
    """The registered id, the numpy view and a stack of wrappers, as a user writes it."""
    env = gymnasium.make_vec("fastrl/CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point", seed=0)
    stats = RecordEpisodeStatistics(TorchToNumpy(env))
    env = NormalizeReward(NormalizeObservation(stats))
    env.reset()
    for _ in range(100):
        obs, reward, *_ = env.step(env.action_space.sample())
    assert obs.shape == (8, 4) and np.isfinite(obs).all() and np.isfinite(reward).all()
    assert stats.episode_count > 0
    env.close()


def cleanrl_loop(envs, steps=200):
    """The env-facing lines of CleanRL's ppo.py: tensors built from numpy outputs every step."""
    next_obs, _ = envs.reset(seed=1)
    next_obs = torch.Tensor(next_obs)
    episodes = 0
    for _ in range(steps):
        action = torch.randint(0, 2, (envs.num_envs,))
        next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
        next_done = np.logical_or(terminations, truncations)
        torch.tensor(reward).view(-1)
        next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(next_done)
        if "episode" in infos:
            episodes += int(infos["_episode"].sum())
            assert (infos["episode"]["l"][infos["_episode"]] > 0).all()
    return episodes


@pytest.mark.parametrize("env_id", ["fastrl/CartPole-v1", "CartPole-v0"])  # native; gymnasium-backed
def test_cleanrl_style_loop_does_not_warn(env_id, backend):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*out of date", DeprecationWarning)  # making CartPole-v0
        envs = gymnasium.make_vec(env_id, num_envs=4) if "/" in env_id else fenvs.make(env_id, 4)
    envs = RecordEpisodeStatistics(TorchToNumpy(envs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cleanrl_loop(envs) > 0


def test_numpy_in_numpy_out_on_the_raw_env_does_not_warn(backend):
    """numpy actions in (read-only ones included: torch.from_numpy warns on those, once per
    process, which -W error turns into a failure) and np.asarray of the outputs."""
    env = fenvs.make("CartPole-v1", 4, seed=0)
    env.reset()
    readonly = np.ones(4, dtype=np.int64)
    readonly.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in range(50):
            obs, reward, term, trunc, _ = env.step(readonly if t % 2 else np.zeros(4, dtype=np.int64))
            assert np.asarray(obs).shape == (4, 4)
            assert np.asarray(term).dtype == np.bool_ and np.asarray(reward).dtype == np.float32
