"""MinAtar env-steps/s with random actions and autoreset, every game: fastrl native (one thread)
and its PyTorch fallback vs the ``minatar`` package's own loop (its gymnasium env, one per env,
stepped in Python, reset when done) and gymnasium's ``SyncVectorEnv`` of the package's envs, in
the same run; on a GPU, fastrl's CUDA kernels up to 2^20 envs.

    python -m pytest bench/bench_minatar.py --benchmark-only

Each round runs ``STEPS`` steps; ``extra_info["steps_per_s"]`` is the rate at the median round,
and fastrl's cases record ``extra_info["x_package"]``, their speed over the package's loop. Cases
of one game and batch size share a benchmark group, so pytest-benchmark prints their ratios. The
CUDA cases record the bytes a step moves per env (``bytes_per_step``, below), the bandwidth that
implies (``GB_per_s``) and its fraction of the H200's HBM bandwidth (``hbm_fraction``).
"""

import gymnasium
import pytest
import torch

import fastrl.envs as fenvs
from bench.conftest import sync
from fastrl import _native

minatar_gym = pytest.importorskip("minatar.gym")

STEPS = 20
SIZES = [1, 256, 4096]
CUDA_SIZES = [4096, 65536, 2**20]
GAMES = {
    "MinAtar/Breakout-v1": "breakout",
    "MinAtar/Freeway-v1": "freeway",
    "MinAtar/Asterix-v1": "asterix",
    "MinAtar/SpaceInvaders-v1": "space_invaders",
    "MinAtar/Seaquest-v1": "seaquest",
}
H200_HBM_BYTES_PER_S = 4.8e12
_PACKAGE: dict[tuple[str, int], float] = {}  # (env_id, n) -> the package's steps/s


def bytes_per_step(env_id: str) -> int:
    """Bytes one env's step must move on the GPU: its state row read and written whole (int32
    [1 + S]; Seaquest's step touches only its lists' live entries, so this bounds it from above);
    the int64 action, the seed and reset count (its Philox key and counter) read; elapsed,
    episode return and autoreset flag read and written (9 each way); the observation written
    (10 x 10 x C bytes: the memset and the kernel's writes counted once), reward 4,
    terminated/truncated/done 3, final return 4 and final length 4 written."""
    row = 4 * (1 + sum(f.count for f in fenvs.MINATAR_SPECS[env_id].fields))
    obs = 100 * fenvs.MINATAR_SPECS[env_id].channels
    return 2 * row + 8 + 16 + 2 * 9 + obs + 15


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


# Rounds after one warmup round: fastrl native, the package's loop and SyncVectorEnv alike, so that
# every one of them times the same steps of its episodes (21 to 120: a game's first steps, before
# its enemies spawn, are cheaper, and the package's Seaquest slows from 160 k to 140 k steps/s
# over steps 21 to 80) and a median, not one round that a load spike sets. The fallback, a
# reference, runs 3.
ROUNDS, FALLBACK_ROUNDS, WARMUP = 5, 3, 1


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

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP)
    _PACKAGE[(env_id, n)] = _record(benchmark, env_id, n, "minatar_package")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("env_id", GAMES)
def test_gymnasium_sync(benchmark, env_id, n):
    """gymnasium's SyncVectorEnv of the package's registered envs (its own autoreset)."""
    minatar_gym.register_envs()
    benchmark.group = f"{env_id} n={n}"
    env = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(env_id) for _ in range(n)])
    env.reset(seed=0)
    actions = [a.numpy() for a in _actions(n, env.single_action_space.n)]

    def run():
        for a in actions:
            env.step(a)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(benchmark, env_id, n, "gymnasium_sync")


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

        benchmark.pedantic(run, rounds=ROUNDS if backend == "native" else FALLBACK_ROUNDS, warmup_rounds=WARMUP)
    finally:
        _native.set_backend(previous)
        torch.set_num_threads(threads)
    _record(benchmark, env_id, n, "fastrl_native" if backend == "native" else "fastrl_fallback")


@pytest.mark.cuda
@pytest.mark.skipif(not _native.native_compiled_for(torch.device("cuda")), reason="no CUDA kernels built")
@pytest.mark.parametrize("n", CUDA_SIZES)
@pytest.mark.parametrize("env_id", GAMES)
def test_fastrl_cuda(benchmark, env_id, n):
    benchmark.group = f"{env_id} cuda n={n}"
    env = fenvs.make(env_id, n, device="cuda", seed=0, validate=False)
    env.reset()
    actions = _actions(n, env.single_action_space.n, "cuda")

    def run():
        for a in actions:
            env.step(a)
        sync("cuda")

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP)
    rate = _record(benchmark, env_id, n, "fastrl_native")
    moved = bytes_per_step(env_id)
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    benchmark.extra_info["bytes_per_step"] = moved
    benchmark.extra_info["GB_per_s"] = rate * moved / 1e9
    benchmark.extra_info["hbm_fraction"] = rate * moved / H200_HBM_BYTES_PER_S
