"""MinAtar env-steps/s with random actions and autoreset: fastrl native (one thread) and its
PyTorch fallback vs the ``minatar`` package's own loop (its gymnasium env, one per env, stepped
in Python, reset when done), in the same run; on a GPU, fastrl's CUDA kernels.

    python -m pytest bench/bench_minatar.py --benchmark-only

Each round runs ``STEPS`` steps; ``extra_info["steps_per_s"]`` is the rate at the median round,
and fastrl's cases record ``extra_info["x_package"]``, their speed over the package's. Cases of
one game and batch size share a benchmark group, so pytest-benchmark prints their ratios.
"""

import pytest
import torch

import fastrl.envs as fenvs
from bench.conftest import sync
from fastrl import _native

minatar_gym = pytest.importorskip("minatar.gym")

STEPS = 20
SIZES = [1, 256, 4096]
GAMES = {"MinAtar/Breakout-v1": "breakout", "MinAtar/Seaquest-v1": "seaquest"}
_PACKAGE: dict[tuple[str, int], float] = {}  # (env_id, n) -> the package's steps/s


def _actions(n, num_actions, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, num_actions, (n,), generator=g).to(device) for _ in range(STEPS)]


def _record(benchmark, env_id, n, impl):
    rate = n * STEPS / benchmark.stats.stats.median
    benchmark.extra_info["impl"] = impl  # bench/report.py's column; fastrl_* are ours
    benchmark.extra_info["num_envs"] = n
    benchmark.extra_info["steps_per_s"] = rate
    if (env_id, n) in _PACKAGE:
        benchmark.extra_info["x_package"] = rate / _PACKAGE[(env_id, n)]
    return rate


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("env_id", GAMES)
def test_package(benchmark, env_id, n):
    benchmark.group = f"{env_id} n={n}"
    envs = [minatar_gym.BaseEnv(game=GAMES[env_id], use_minimal_action_set=env_id.endswith("v1")) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    actions = [a.tolist() for a in _actions(n, envs[0].action_space.n)]

    def run():
        for step in actions:
            for env, a in zip(envs, step):
                if env.step(a)[2]:
                    env.reset()

    benchmark.pedantic(run, rounds=3 if n < 4096 else 1, warmup_rounds=1 if n < 4096 else 0)
    _PACKAGE[(env_id, n)] = _record(benchmark, env_id, n, "minatar_package")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("env_id", GAMES)
@pytest.mark.parametrize("backend", ["native", "torch"])
def test_fastrl(benchmark, env_id, n, backend):
    if backend == "native" and _native._C is None:
        pytest.skip("fastrl._C not built")
    benchmark.group = f"{env_id} n={n}"
    previous, threads = _native.get_backend(), torch.get_num_threads()
    _native.set_backend(backend)
    torch.set_num_threads(1)
    try:
        env = fenvs.make(env_id, n, seed=0)
        env.reset()
        actions = _actions(n, env.single_action_space.n)

        def run():
            for a in actions:
                env.step(a)

        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    finally:
        _native.set_backend(previous)
        torch.set_num_threads(threads)
    _record(benchmark, env_id, n, "fastrl_native" if backend == "native" else "fastrl_fallback")


@pytest.mark.cuda
@pytest.mark.parametrize("n", [4096, 65536, 2**20])
@pytest.mark.parametrize("env_id", GAMES)
def test_fastrl_cuda(benchmark, env_id, n):
    benchmark.group = f"{env_id} cuda n={n}"
    env = fenvs.make(env_id, n, device="cuda", seed=0)
    env.reset()
    actions = _actions(n, env.single_action_space.n, "cuda")

    def run():
        for a in actions:
            env.step(a)
        sync("cuda")

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    _record(benchmark, env_id, n, "fastrl_native")
