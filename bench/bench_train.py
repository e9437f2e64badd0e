"""Training benchmarks: time to solve CartPole-v1 (PPO, DQN) and PPO training throughput.

Time to solve = wall time until the mean return of the last 100 training episodes reaches 475
(the tuned defaults' ``target_return``), one round per seed; the greedy policy's return over
100 evaluation episodes is recorded beside it. Reference point measured on this 2-core machine:
Stable-Baselines3 PPO with its defaults reaches 475 after ~65k steps in 25-27 s.

    python -m pytest bench/bench_train.py --benchmark-only --benchmark-json bench/results/train-cpu.json
"""

import pytest
import torch

from fastrl.algos import DQN, PPO, DQNConfig, PPOConfig
from fastrl.algos.defaults import tuned_defaults

SEEDS = range(5)


def _solve(benchmark, cls, cfg_cls, algo, seed):
    """Issue 5's definitions: PPO solves when the last 100 training episodes average 475 and the
    greedy policy does over 100 evaluation episodes; DQN (whose training episodes explore) when
    the greedy policy does."""
    cfg = cfg_cls(**tuned_defaults(algo, "CartPole-v1"), seed=seed)
    box = {}

    def run():
        box["trainer"] = cls(cfg)
        box["summary"] = box["trainer"].train()

    benchmark.group = f"{algo} CartPole-v1 time to solve"
    benchmark.extra_info["impl"] = f"fastrl_{algo}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    returns = box["trainer"].evaluate(100)
    benchmark.extra_info.update(
        seed=seed,
        steps=box["summary"]["steps"],
        return_last100=box["summary"]["return_last100"],
        eval_mean_return=sum(returns) / len(returns),
        solved=sum(returns) / len(returns) >= 475 and (algo == "dqn" or box["summary"]["return_last100"] >= 475),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_cartpole_time_to_solve(benchmark, seed):
    _solve(benchmark, PPO, PPOConfig, "ppo", seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_dqn_cartpole_time_to_solve(benchmark, seed):
    _solve(benchmark, DQN, DQNConfig, "dqn", seed)


@pytest.mark.parametrize("num_envs", [16, 256, 4096, 65536])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_ppo_throughput(benchmark, num_envs, device):
    """Environment steps per second of whole PPO iterations (rollout + GAE + 4 epochs); 65536
    envs on a GPU only (issue 11's end-to-end target)."""
    if num_envs > 4096 and device == "cpu":
        pytest.skip("65536 envs: the GPU's case")
    cfg = PPOConfig(env_id="CartPole-v1", num_envs=num_envs, num_steps=32, num_minibatches=4,
                    total_steps=10**9, device=device)
    trainer = PPO(cfg)
    trainer.train_iteration()  # warm-up

    def iteration():
        trainer.train_iteration()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"ppo CartPole-v1 throughput {device} n={num_envs}"
    benchmark.extra_info["impl"] = "fastrl_ppo"
    benchmark.pedantic(iteration, rounds=5, iterations=1)
    benchmark.extra_info["steps_per_s"] = num_envs * cfg.num_steps / benchmark.stats.stats.median
