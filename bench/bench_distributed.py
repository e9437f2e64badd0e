"""PPO and the RLHF (GRPO) update under torch.distributed: throughput at 1 and 2 processes (gloo,
CPU) on the same global config, and the per-rank cost of the gradient all-reduce
(docs/distributed.md).

Each case starts a job of ``world_size`` processes (as torchrun would: tests/distributed/_launch.py)
in which every rank times ``ITERATIONS`` whole PPO iterations after a warm-up; the job's time is the
slowest rank's. steps/s is the global env steps over that time; scaling efficiency is
steps/s(2) / (2 × steps/s(1)) at the same num_envs. On a 2-core machine two ranks share the cores
with everything else: expect the most from large env counts.

The GRPO case times ``trainer.update`` (the reference and old log-probs, the loss, backward, the
gradient all-reduce, AdamW) on a fixed batch of the demo's size (16 prompts × 8 responses of 14
tokens, the demo's 2-layer 64-wide GPT; 2 epochs of 2 minibatches), each rank on its half of the
prompts: tokens/s counts the job's response tokens. Sampling is left out (it has no collective).

    python -m pytest bench/bench_distributed.py --benchmark-only \
        --benchmark-json bench/results/distributed-cpu-2core.json
"""

import time

import pytest
import torch

from tests.distributed._launch import run_ranks

ITERATIONS = 5
ALLREDUCE_REPEATS = 50
# one process's rate per case, for the 2-process case's scaling efficiency (world size 1 runs first)
ONE_PROCESS: dict[str, float] = {}


def _efficiency(benchmark, world_size: int, rate: float) -> None:
    """rate(W) / (W × rate(1)) in extra_info, when this run measured one process's case too."""
    if world_size == 1:
        ONE_PROCESS[benchmark.group] = rate
    elif benchmark.group in ONE_PROCESS:
        benchmark.extra_info["scaling_efficiency"] = rate / (world_size * ONE_PROCESS[benchmark.group])


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
    _efficiency(benchmark, world_size, benchmark.extra_info["steps_per_s"])


GRPO_PROMPTS, GRPO_GROUP, GRPO_PROMPT_LEN, GRPO_RESPONSE_LEN = 16, 8, 8, 14


def _time_grpo_update(rank, iterations):
    from fastrl import distributed
    from fastrl.nn.gpt import GPT, Generation, GPTConfig
    from fastrl.rlhf import GRPOConfig, GRPOTrainer
    from fastrl.rlhf.rollout import select_rows
    from fastrl.rlhf.synthetic import TOKENIZER

    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=24, n_layer=2, n_head=4, n_embd=64))
    cfg = GRPOConfig(prompts_per_step=GRPO_PROMPTS, group_size=GRPO_GROUP, max_new_tokens=GRPO_RESPONSE_LEN,
                     epochs=2, num_minibatches=2, kl_coef=0.3)  # fmt: skip
    trainer = GRPOTrainer(policy, lambda prompts, completions: [0.0] * len(prompts), TOKENIZER, cfg)
    # a fixed batch of the job, responses of varied lengths; this rank's prompts' groups
    g = torch.Generator().manual_seed(1)
    n, width = GRPO_PROMPTS * GRPO_GROUP, GRPO_PROMPT_LEN + GRPO_RESPONSE_LEN
    ids = torch.randint(0, TOKENIZER.vocab_size, (n, width), generator=g)
    lengths = torch.randint(4, GRPO_RESPONSE_LEN + 1, (n,), generator=g)
    mask = torch.arange(width)[None, :] < GRPO_PROMPT_LEN + lengths[:, None]
    scores = torch.randn(n, generator=g)
    rows = torch.arange(trainer.prompt_shard.start * GRPO_GROUP, trainer.prompt_shard.stop * GRPO_GROUP)
    gen, scores = select_rows(Generation(ids, mask, GRPO_PROMPT_LEN), rows), scores[rows]
    trainer.update(gen, scores)  # warm-up
    distributed.global_sum(torch.zeros(1))  # start together
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.update(gen, scores)
    seconds = time.perf_counter() - start
    params = [p for p in policy.parameters() if p.grad is not None]
    start = time.perf_counter()
    for _ in range(ALLREDUCE_REPEATS):
        distributed.average_gradients(params)
    allreduce = (time.perf_counter() - start) / ALLREDUCE_REPEATS
    return {"seconds": seconds, "allreduce_s": allreduce, "floats": sum(p.numel() for p in params),
            "tokens": int(lengths.sum()) * iterations}


@pytest.mark.parametrize("world_size", [1, 2])
def test_grpo_update_throughput_by_processes(benchmark, world_size):
    box = {}

    def job():
        box["ranks"] = run_ranks(_time_grpo_update, world_size=world_size, timeout=600, iterations=ITERATIONS)

    benchmark.group = f"rlhf grpo update {GRPO_PROMPTS}x{GRPO_GROUP} responses processes"
    benchmark.extra_info["impl"] = f"fastrl_grpo_{world_size}proc"
    benchmark.pedantic(job, rounds=1, iterations=1)
    seconds = max(r["seconds"] for r in box["ranks"])
    benchmark.extra_info.update(
        world_size=world_size,
        steps_per_s=ITERATIONS / seconds,  # updates per second
        tokens_per_second=box["ranks"][0]["tokens"] / seconds,
        allreduce_us=1e6 * max(r["allreduce_s"] for r in box["ranks"]),
        gradient_floats=box["ranks"][0]["floats"],
    )
    _efficiency(benchmark, world_size, benchmark.extra_info["tokens_per_second"])
