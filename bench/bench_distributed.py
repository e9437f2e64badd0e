"""PPO under torch.distributed: throughput at 1 and 2 processes (gloo, CPU) on the same global config,
and the per-rank cost of the gradient all-reduce (docs/distributed.md).

Each case starts a job of ``world_size`` processes (as torchrun would: tests/distributed/_launch.py)
in which every rank times ``ITERATIONS`` whole PPO iterations after a warm-up; the job's time is the
slowest rank's. steps/s is the global env steps over that time; scaling efficiency is
steps/s(2) / (2 × steps/s(1)) at the same num_envs. On a 2-core machine two ranks share the cores
with everything else: expect the most from large env counts.

    python -m pytest bench/bench_distributed.py --benchmark-only --benchmark-json bench/results/distributed-cpu.json
"""

import time

import pytest
import torch

from tests.distributed._launch import run_ranks

ITERATIONS = 5
ALLREDUCE_REPEATS = 50


def _time_ppo(rank, num_envs):
    from fastrl import distributed
    from fastrl.algos import PPO, PPOConfig

    cfg = PPOConfig(env_id="CartPole-v1", num_envs=num_envs, num_steps=32, num_minibatches=4, total_steps=10**9)
    trainer = PPO(cfg)
    trainer.train_iteration()  # warm-up
    distributed.global_sum(torch.zeros(1))  # start together
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        trainer.train_iteration()
    seconds = time.perf_counter() - start
    params = [p for p in trainer.agent.parameters() if p.grad is not None]
    start = time.perf_counter()
    for _ in range(ALLREDUCE_REPEATS):
        distributed.average_gradients(params)
    allreduce = (time.perf_counter() - start) / ALLREDUCE_REPEATS
    return {"seconds": seconds, "allreduce_s": allreduce, "floats": sum(p.numel() for p in params)}


@pytest.mark.parametrize("num_envs", [64, 1024])
@pytest.mark.parametrize("world_size", [1, 2])
def test_ppo_throughput_by_processes(benchmark, world_size, num_envs):
    box = {}

    def job():
        box["ranks"] = run_ranks(_time_ppo, world_size=world_size, timeout=600, num_envs=num_envs)

    benchmark.group = f"ppo CartPole-v1 processes n={num_envs}"
    benchmark.extra_info["impl"] = f"fastrl_ppo_{world_size}proc"
    benchmark.pedantic(job, rounds=1, iterations=1)  # the whole job, start-up included; the rate below is not
    seconds = max(r["seconds"] for r in box["ranks"])
    benchmark.extra_info.update(
        world_size=world_size,
        steps_per_s=num_envs * 32 * ITERATIONS / seconds,
        allreduce_us=1e6 * max(r["allreduce_s"] for r in box["ranks"]),
        gradient_floats=box["ranks"][0]["floats"],
    )
