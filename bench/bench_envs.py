"""Env-steps/s with random actions and autoreset: fastrl native (all threads and one thread) vs
its PyTorch fallback vs gymnasium (SyncVectorEnv for small batches, and its numpy-vectorized
CartPole) vs envpool (when installed); on a GPU, fastrl's CUDA kernels up to 2^22 envs.

    python -m pytest bench/bench_envs.py --benchmark-only

Each benchmark runs ``STEPS`` steps per round; ``extra_info["steps_per_s"]`` is the rate at the
median round. Actions are drawn once up front, so the figures are the envs' own cost.
The cases of one env and batch size share a benchmark group (``CartPole-v1 n=4096``), so
pytest-benchmark prints their ratios; gymnasium's numpy CartPole runs first in each, and the
CartPole cases after it also record ``extra_info["x_gymnasium_numpy"]``, their speed over it.
"""

import gymnasium
import pytest
import torch

import fastrl.envs as fenvs
from fastrl import _native

STEPS = 50
SIZES = [1, 256, 4096, 65536]
CUDA_SIZES = [4096, 65536, 2**20, 2**22]
# Bytes a float32 CartPole step must move per env: reads state 16, elapsed 4, episode return 4,
# autoreset flag 1, int64 action 8; writes state, elapsed, episode return, flag (25), obs 16,
# reward 4, terminated/truncated/done 3, final return 4, final length 4. (Resets also read the
# env's seed and reset count, once per episode.)
CARTPOLE_BYTES_PER_STEP = 33 + 56
_GYM_NUMPY: dict[int, float] = {}  # n -> steps/s of gymnasium's numpy CartPole


def _actions(env_id, n, device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    if env_id == "CartPole-v1":
        return [torch.randint(0, 2, (n,), generator=g).to(device) for _ in range(STEPS)]
    return [(torch.rand(n, 1, generator=g) * 4 - 2).to(device, dtype) for _ in range(STEPS)]


def _record(benchmark, env_id, n, impl):
    rate = n * STEPS / benchmark.stats.stats.median
    benchmark.extra_info["impl"] = impl  # bench/report.py's column; fastrl_* are ours
    benchmark.extra_info["num_envs"] = n
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info["steps_per_s"] = rate
    if env_id == "CartPole-v1" and n in _GYM_NUMPY:
        benchmark.extra_info["x_gymnasium_numpy"] = rate / _GYM_NUMPY[n]
    return rate


def _time_steps(benchmark, env, actions, rounds=5, after=None):
    """Times one env.step per action per round; ``after`` runs at the end of each (a CUDA sync)."""
    def run():
        for a in actions:
            env.step(a)
        if after is not None:
            after()

    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1)


@pytest.mark.parametrize("n", SIZES)
def test_gymnasium_numpy_cartpole(benchmark, n):
    benchmark.group = f"CartPole-v1 n={n}"
    env = gymnasium.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    _time_steps(benchmark, env, [a.numpy() for a in _actions("CartPole-v1", n)])
    _GYM_NUMPY[n] = _record(benchmark, "CartPole-v1", n, "gymnasium_numpy")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", ["native", "native-1thread", "torch"])
def test_fastrl(benchmark, env_id, n, backend):
    if backend.startswith("native") and _native._C is None:
        pytest.skip("fastrl._C not built")
    benchmark.group = f"{env_id} n={n}"
    previous, threads = _native.get_backend(), torch.get_num_threads()
    _native.set_backend(backend.split("-")[0])
    if backend == "native-1thread":
        torch.set_num_threads(1)
    try:
        env = fenvs.make(env_id, n, seed=0, validate=False)
        env.reset()
        _time_steps(benchmark, env, _actions(env_id, n))
        _record(benchmark, env_id, n, {"native": "fastrl_native", "native-1thread": "fastrl_native_1thread",
                                       "torch": "fastrl_fallback"}[backend])
    finally:
        _native.set_backend(previous)
        torch.set_num_threads(threads)


@pytest.mark.cuda
@pytest.mark.skipif(not _native.native_compiled_for(torch.device("cuda")), reason="no CUDA kernels built")
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("n", CUDA_SIZES)
def test_fastrl_cuda(benchmark, env_id, n):
    benchmark.group = f"{env_id} cuda n={n}"
    env = fenvs.make(env_id, n, device="cuda", seed=0, validate=False)
    env.reset()
    _time_steps(benchmark, env, _actions(env_id, n, device="cuda"), after=torch.cuda.synchronize)
    rate = _record(benchmark, env_id, n, "fastrl_native")
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    if env_id == "CartPole-v1":
        benchmark.extra_info["GB_per_s"] = rate * CARTPOLE_BYTES_PER_STEP / 1e9


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("n", [256, 4096, 65536])
def test_envpool(benchmark, env_id, n):
    envpool = pytest.importorskip("envpool")
    benchmark.group = f"{env_id} n={n}"
    env = envpool.make(env_id, env_type="gymnasium", num_envs=n, seed=0)
    env.reset()
    _time_steps(benchmark, env, [a.numpy() for a in _actions(env_id, n)], rounds=3)
    _record(benchmark, env_id, n, "envpool")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("n", [1, 256])
def test_gymnasium_sync(benchmark, env_id, n):
    benchmark.group = f"{env_id} n={n}"
    env = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    env.reset(seed=0)
    _time_steps(benchmark, env, [a.numpy() for a in _actions(env_id, n)], rounds=3)
    _record(benchmark, env_id, n, "gymnasium_sync")
