"""Batches past the CPU kernel's chunk and thread sizes, where the other env tests (<= 256 envs,
one chunk, one thread) do not reach.

The CPU step (csrc/cpu/env_kernel.h) walks the envs in chunks (512: ``_C.env_kernel_sizes()``),
listing and resetting each chunk's ended envs after its vectorized pass; a batch of more than
``thread_grain`` (16384) envs is split into one range per thread, the second one starting inside a
chunk (16391 envs on two threads: [0, 8196) and [8196, 16391)). Here batches of one chunk + 1,
three chunks + 1 and thread_grain + 7 envs (on two threads) step until every env has reset inside
``step`` (terminated or truncated) at least twice:

- native against the PyTorch fallback, step by step (the fallback is given the native envs' whole
  state before each step), in float64;
- the AVX2 build against the baseline build, bit for bit (tests/conftest.py).
"""

import hashlib

import numpy as np
import pytest
import torch

import fastrl.envs as fenvs
from fastrl import _native
from tests.conftest import backend, here_and_on_baseline_kernels, requires_native, threads
from tests.envs.helpers import ENV_CASES, sample_actions, to_torch_actions

pytestmark = requires_native

SIZES = _native._C.env_kernel_sizes() if _native._C is not None else {"chunk": 512, "thread_grain": 16384}
CHUNK, GRAIN = SIZES["chunk"], SIZES["thread_grain"]
MULTI_CHUNK = [CHUNK + 1, 3 * CHUNK + 1]
THREADED = GRAIN + 7
LIMIT = 6  # max_episode_steps: every env truncates within 6 steps of a reset
STEPS = 16  # NEXT_STEP: at least two resets in 16 steps (an episode and its reset step take 7)




def make_batch(env_id: str, n: int, dtype, mode: str):
    """n envs from the env's start states (next to every termination boundary) with elapsed steps spread
    over [0, LIMIT), so that resets are spread over steps and chunks; except the first chunk,
    whose envs start together and (Pendulum never terminates) all reset in the same step."""
    env = fenvs.make(env_id, n, seed=5, dtype=dtype, autoreset_mode=mode, max_episode_steps=LIMIT)
    env.reset()
    starts = torch.tensor(ENV_CASES[env_id].start_states, dtype=torch.float64)
    elapsed = torch.randint(0, LIMIT, (n,), generator=torch.Generator().manual_seed(n))
    elapsed[:CHUNK] = 0
    env.set_state(starts[torch.arange(n) % len(starts)], elapsed)
    return env


def step_outputs(out, mode: str) -> dict[str, torch.Tensor]:
    obs, reward, terminated, truncated, info = out
    named = {"obs": obs, "reward": reward, "terminated": terminated, "truncated": truncated,
             "_episode": info["_episode"], "episode.r": info["episode"]["r"], "episode.l": info["episode"]["l"]}
    if mode == "same_step":
        named["final_obs"] = info["final_obs"]
    return named


def native_step(env, actions, num_threads: int):
    """env.step on the native kernels and num_threads threads. Only the step: the rest of these
    tests runs on one thread, as on a busy 2-core machine two threads make every torch op wait for
    the second core (docs/ARCHITECTURE.md, "Threads on small machines")."""
    with backend("native"), threads(num_threads):
        return env.step(actions)


def assert_close(got: dict, want: dict, tol: dict, where: str) -> None:
    """Floats to tol, everything else exactly."""
    for key, x in want.items():
        if isinstance(x, torch.Tensor) and x.dtype.is_floating_point:
            torch.testing.assert_close(got[key], x, **tol, msg=lambda m, key=key: f"{key} {where}: {m}")
        elif isinstance(x, torch.Tensor):
            bad = torch.nonzero(got[key] != x).flatten()
            assert not len(bad), f"{key} {where} differs for envs {bad[:8].tolist()}"
        else:
            assert got[key] == x, f"{key} {where}"


def assert_native_matches_fallback(env_id: str, n: int, mode: str, num_threads: int = 1) -> None:
    # The fallback's MountainCarContinuous computes in float32 (docs/envs.md).
    tol = dict(rtol=2e-5, atol=2e-5) if env_id == "MountainCarContinuous-v0" else dict(rtol=1e-10, atol=1e-9)
    native = make_batch(env_id, n, torch.float64, mode)
    fallback = make_batch(env_id, n, torch.float64, mode)
    rng = np.random.default_rng(n)
    ended = {"terminated": 0, "truncated": 0}
    state = native.state_dict()
    for step in range(STEPS):
        fallback.load_state_dict(state)
        actions = to_torch_actions(sample_actions(env_id, rng, n), native)
        want = step_outputs(native_step(native, actions, num_threads), mode)
        with backend("torch"):
            got = step_outputs(fallback.step(actions), mode)
        assert_close(got, want, tol, f"at step {step}")
        state = native.state_dict()
        assert_close(fallback.state_dict(), state, tol, f"(state) after step {step}")
        ended["terminated"] += int(want["terminated"].sum())
        ended["truncated"] += int(want["truncated"].sum())
    # Every env reset inside step at least twice (its first reset was env.reset()), in every chunk.
    assert int(state["resets"].min()) >= 3
    assert ended["truncated"] > 0
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert ended["terminated"] > 0


@pytest.fixture(autouse=True)
def one_thread():
    with threads(1):
        yield


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("n", MULTI_CHUNK)
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_native_matches_fallback_over_chunks(env_id, n, mode):
    assert_native_matches_fallback(env_id, n, mode, num_threads=1)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_native_matches_fallback_on_two_threads(env_id, mode):
    with threads(2):
        assert torch.get_num_threads() == 2
        assert _native._C.parallel_threads_used() == 2, "at::parallel_for runs on one thread"
    assert_native_matches_fallback(env_id, THREADED, mode, num_threads=2)


def large_rollout_digests() -> list[tuple[str, str]]:
    """(what, sha256 of its bytes) for every output of every step of every native env, float32
    and float64, both autoreset modes, at each large size; THREADED envs (float32 only: a threaded
    step waits for the second core on a busy machine) on two threads."""
    digests = []
    with threads(1):  # but the steps of THREADED envs
        digests += _digests()
    return digests


def _digests() -> list[tuple[str, str]]:
    digests = []
    for env_id in fenvs.NATIVE_ENVS:
        for dtype in (torch.float32, torch.float64):
            for mode in ("next_step", "same_step"):
                for n in (*MULTI_CHUNK, THREADED) if dtype == torch.float32 else MULTI_CHUNK:
                    env = make_batch(env_id, n, dtype, mode)
                    rng = np.random.default_rng(n)
                    for step in range(STEPS):
                        actions = to_torch_actions(sample_actions(env_id, rng, n), env)
                        out = step_outputs(native_step(env, actions, 2 if n > GRAIN else 1), mode)
                        out["resets"] = env._resets
                        for key, x in out.items():
                            what = f"{env_id} {dtype} {mode} n={n} step {step}: {key}"
                            digests.append((what, hashlib.sha256(x.numpy().tobytes()).hexdigest()))
    return digests


def test_baseline_cpu_build_matches_avx2_on_large_batches(tmp_path):
    got, baseline = here_and_on_baseline_kernels(__name__, "large_rollout_digests", tmp_path)
    differ = [what for (what, a), (_, b) in zip(got, baseline) if a != b]
    assert not differ, f"{len(differ)} outputs differ, first: {differ[:5]}"
