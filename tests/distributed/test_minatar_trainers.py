"""A MinAtar PPO run (conv networks, bool observations) under a 2-process gloo job trains as one
process on the same global config: the same metrics.csv and parameters (to float tolerance). (DQN
samples each rank's windows from its own envs, so it equals one process step by step only on the
same windows: tests/distributed/test_trainers.py checks that step.)"""

import math

import torch

from ._launch import run_ranks
from .test_trainers import _assert_params_close, _assert_rows_close, _metrics, _train

# Breakout's random episodes end within a few steps: episode statistics and autoreset happen early.
CONFIG = dict(env_id="MinAtar/Breakout-v1", num_envs=4, num_steps=8, num_minibatches=2, epochs=2, total_steps=96,
              hidden=(8,), seed=3)


def _train_ppo(rank, out_dir):
    return _train(rank, "ppo", CONFIG, out_dir)


def test_two_processes_train_minatar_ppo_as_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    two = run_ranks(_train_ppo, timeout=300, out_dir=tmp_path / "two")
    one = _train(0, "ppo", CONFIG, tmp_path / "one")
    assert [r["world"] for r in two] == [2, 2]
    for k in two[0]["params"]:
        assert torch.equal(two[0]["params"][k], two[1]["params"][k]), k
    _assert_params_close(two[0]["params"], one["params"])
    expected = _metrics(tmp_path / "one" / "metrics.csv")
    _assert_rows_close(_metrics(tmp_path / "two" / "metrics.csv"), expected)
    assert any(not math.isnan(r["episodic_return"]) for r in expected)
