"""Parity with gymnasium's own environments, from injected states, for every env and backend.

Native float64 on the CPU is compared exactly over whole trajectories (several episodes, each
end re-injects the next start state into both). The PyTorch fallback (torch's sin/cos/pow are
not glibc's) and float32 are compared step by step, re-synchronised to gymnasium's state before
every step, to the tolerances below.
"""

import numpy as np
import pytest
import torch

import fastrl.envs as fenvs
from tests.conftest import requires_native
from tests.envs.helpers import (
    ENV_CASES,
    gym_state,
    inject,
    make_gym,
    sample_actions,
    to_torch_actions,
)

ENV_IDS = list(fenvs.NATIVE_ENVS)
N = 4
STEPS = 1000  # total env steps per test (N envs in parallel)
# Tolerances of the step-by-step comparisons. The fallback's float64 is a few ulps off glibc (and
# Pendulum's float32 action terms then round differently); its MountainCarContinuous computes
# in float32 throughout (gymnasium's first step of an episode is float64).
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-9), torch.float32: dict(rtol=2e-5, atol=2e-5)}


def run_parity(env_id, dtype, resync):
    rng = np.random.default_rng(0)
    max_steps = ENV_CASES[env_id].parity_limit
    genvs = make_gym(env_id, N, max_episode_steps=max_steps)
    env = fenvs.make(env_id, N, dtype=dtype, seed=0, max_episode_steps=max_steps)
    env.reset()
    starts = ENV_CASES[env_id].start_states
    next_start = [i % len(starts) for i in range(N)]
    next_start[0] = len(starts) - 1  # a calm state, near truncation
    elapsed = [max_steps - 3 if i == 0 else 0 for i in range(N)]
    for i, g in enumerate(genvs):
        inject(g, env_id, starts[next_start[i]], elapsed[i])
    tol = TOL[dtype] if resync else dict(rtol=0, atol=0)
    if resync and env_id == "MountainCarContinuous-v0":
        tol = TOL[torch.float32]
    counts = {"terminated": 0, "truncated": 0}

    for _ in range(STEPS // N):
        if resync or _ == 0:
            state = [gym_state(g) for g in genvs]
            if dtype == torch.float32:  # start both from the same float32 state
                state = np.float32(state).astype(np.float64).tolist()
                for g, s, e in zip(genvs, state, elapsed):
                    inject(g, env_id, s, e)
            env.set_state(torch.tensor(state, dtype=torch.float64), torch.tensor(elapsed))
        actions = sample_actions(env_id, rng, N)
        obs, reward, term, trunc, _ = env.step(to_torch_actions(actions, env))
        results = [g.step(a) for g, a in zip(genvs, actions)]
        g_obs = np.stack([r[0] for r in results])
        g_reward = np.array([r[1] for r in results], dtype=np.float64)
        g_term = np.array([r[2] for r in results])
        g_trunc = np.array([r[3] for r in results])

        np.testing.assert_array_equal(term.numpy(), g_term)
        np.testing.assert_array_equal(trunc.numpy(), g_trunc)
        torch.testing.assert_close(reward.double(), torch.from_numpy(g_reward), **tol)
        torch.testing.assert_close(obs.float(), torch.from_numpy(g_obs), **tol)
        g_state = torch.tensor([gym_state(g) for g in genvs], dtype=torch.float64)
        torch.testing.assert_close(env.get_state().double(), g_state, **tol)
        counts["terminated"] += int(g_term.sum())
        counts["truncated"] += int(g_trunc.sum())

        elapsed = [e + 1 for e in elapsed]
        ended = g_term | g_trunc
        if ended.any():
            for i in np.flatnonzero(ended):
                next_start[i] = (next_start[i] + 1) % len(starts)
                elapsed[i] = 0
                inject(genvs[i], env_id, starts[next_start[i]], 0)
            state = [gym_state(g) for g in genvs]
            env.set_state(torch.tensor(state, dtype=torch.float64), torch.tensor(elapsed))
    assert counts["truncated"] > 0
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert counts["terminated"] > 0


@requires_native
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_native_float64_exact(env_id):
    run_parity(env_id, torch.float64, resync=False)


@requires_native
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_native_float32(env_id):
    run_parity(env_id, torch.float32, resync=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fallback(env_id, dtype, torch_backend):
    run_parity(env_id, dtype, resync=True)
