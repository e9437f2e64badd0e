"""Property tests of the native envs (hypothesis): random batches of injected states, inside and
at the edges of each env's valid ranges, random elapsed steps and time limits, random actions.

- Native float64 on the CPU against gymnasium's own env, step by step until each env's episode
  ends: observations, rewards, terminated, truncated and the states, bit for bit (docs/envs.md
  promises it).
- Native against the PyTorch fallback from the same states and actions, autoresets included:
  flags equal, numbers within the fallback's documented rounding (torch's sin/cos are not glibc's).
"""

import functools

import gymnasium
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastrl.envs as fenvs
from tests.conftest import backend, requires_native
from tests.envs.helpers import ENV_CASES, gym_state, inject, make_gym

pytestmark = requires_native

MAX_ENVS = 9  # more than one vector of 8, so the CPU loop's tail runs too
_gym_envs: dict[str, list] = {}


def gym_envs(env_id: str) -> list:
    """MAX_ENVS gymnasium envs per id, made once (injected anew by every example)."""
    if env_id not in _gym_envs:
        _gym_envs[env_id] = make_gym(env_id, MAX_ENVS, max_episode_steps=10)
    return _gym_envs[env_id]


@functools.cache
def action_space(env_id: str) -> gymnasium.Space:
    return gymnasium.make(env_id).action_space


@st.composite
def scenarios(draw, env_id: str):
    """(states [k, S], elapsed [k], max_episode_steps, actions [steps][k] as gymnasium takes them)."""
    k = draw(st.integers(1, MAX_ENVS))
    limit = draw(st.one_of(st.none(), st.integers(1, 12)))
    # Elapsed steps up to past the limit (truncates on the next step), or near 2**31 without one.
    top = 2**31 - 1 if limit is None else limit + 2
    elapsed = draw(st.lists(st.one_of(st.integers(0, 3), st.integers(0, top)), min_size=k, max_size=k))
    states = []
    for e in elapsed:
        # gymnasium stores MountainCarContinuous's state as float32 after a step (helpers.inject).
        if env_id == "MountainCarContinuous-v0" and e > 0:
            ranges = [(float(np.float32(lo)), float(np.float32(hi))) for lo, hi in ENV_CASES[env_id].state_ranges]
            states.append([draw(st.floats(lo, hi, width=32)) for lo, hi in ranges])
        else:
            states.append([draw(st.floats(lo, hi)) for lo, hi in ENV_CASES[env_id].state_ranges])
    space = action_space(env_id)
    if isinstance(space, gymnasium.spaces.Box):  # float32 actions, out of the box too (gymnasium clips them)
        b = 1.25 * float(space.high[0])
        action = st.lists(st.floats(-b, b, width=32), min_size=k, max_size=k).map(
            lambda a: np.array(a, dtype=np.float32).reshape(k, 1))
    else:
        action = st.lists(st.integers(0, int(space.n) - 1), min_size=k, max_size=k).map(np.array)
    actions = draw(st.lists(action, min_size=1, max_size=8))
    return states, elapsed, limit, actions


def native_env(env_id, states, elapsed, limit, **kwargs):
    env = fenvs.make(env_id, len(states), dtype=torch.float64, seed=0, max_episode_steps=limit, **kwargs)
    env.reset()
    env.set_state(torch.tensor(states, dtype=torch.float64), torch.tensor(elapsed))
    return env


@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
@given(data=st.data())
def test_native_float64_equals_gymnasium(env_id, data):
    states, elapsed, limit, actions = data.draw(scenarios(env_id))
    env = native_env(env_id, states, elapsed, limit)
    genvs = gym_envs(env_id)[: len(states)]
    for g, s, e in zip(genvs, states, elapsed):
        inject(g, env_id, s, e)
        g._max_episode_steps = 2**62 if limit is None else limit  # TimeLimit's
    alive = list(range(len(states)))
    for a in actions:
        obs, reward, term, trunc, _ = env.step(torch.from_numpy(a))
        state = env.get_state()
        for i in list(alive):
            g_obs, g_reward, g_term, g_trunc, _ = genvs[i].step(a[i])
            assert obs[i].numpy().astype(g_obs.dtype).tobytes() == g_obs.tobytes()
            assert reward[i].item() == float(g_reward)
            assert (bool(term[i]), bool(trunc[i])) == (g_term, g_trunc)
            assert state[i].tolist() == gym_state(genvs[i])
            if g_term or g_trunc:  # gymnasium's env needs a reset; fastrl's autoresets
                alive.remove(i)



@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
@given(data=st.data(), mode=st.sampled_from(["next_step", "same_step"]))
def test_native_equals_fallback(env_id, data, mode):
    # The fallback's MountainCarContinuous computes in float32 (docs/envs.md).
    tol = dict(rtol=2e-5, atol=2e-5) if env_id == "MountainCarContinuous-v0" else dict(rtol=1e-10, atol=1e-9)
    states, elapsed, limit, actions = data.draw(scenarios(env_id))
    native = native_env(env_id, states, elapsed, limit, autoreset_mode=mode)
    with backend("torch"):
        fallback = native_env(env_id, states, elapsed, limit, autoreset_mode=mode)
    for a in actions:
        want = native.step(torch.from_numpy(a))
        with backend("torch"):
            got = fallback.step(torch.from_numpy(a))
        for x, y in zip(want[:4], got[:4]):
            if x.dtype == torch.bool:
                assert torch.equal(x, y)
            else:
                torch.testing.assert_close(y, x, **tol)
        for key in ("r", "l"):
            torch.testing.assert_close(got[4]["episode"][key], want[4]["episode"][key], **tol)
        assert torch.equal(got[4]["_episode"], want[4]["_episode"])
        if mode == "same_step":
            torch.testing.assert_close(got[4]["final_obs"], want[4]["final_obs"], **tol)
        torch.testing.assert_close(fallback.get_state(), native.get_state(), **tol)
        assert torch.equal(fallback.episode_lengths, native.episode_lengths)
