"""NaN/Inf during training stops the run with a message naming the step and the quantity, and
never replaces the last good checkpoint with non-finite weights."""

import math

import pytest
import torch

from fastrl.algos import DQN, PPO, DQNConfig, PPOConfig
from tests.algos._util import SMALL, assert_one_line_error, run_cli, train_argv


def poison_at(monkeypatch, cls, iteration, *, metric=None, parameter=True):
    """From ``iteration`` (0-based) on, train_iteration leaves NaN in the first weight and/or
    reports NaN for ``metric``."""
    original = cls.train_iteration

    def train_iteration(self):
        metrics = original(self)
        if self.iteration >= iteration:
            if parameter:
                network = next(iter(self.checkpointed().values()))  # agent (PPO), q (DQN)
                with torch.no_grad():
                    next(network.parameters()).fill_(math.nan)
            if metric:
                metrics[metric] = torch.tensor(math.nan)
        return metrics

    monkeypatch.setattr(cls, "train_iteration", train_iteration)


def saved(out):
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    weights = [t for m in state["modules"].values() if isinstance(m, dict) for t in m.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return state["global_step"], all(bool(t.isfinite().all()) for t in weights)


def test_nan_metric_stops_the_run_naming_step_and_quantity(tmp_path, monkeypatch):
    poison_at(monkeypatch, PPO, 2, metric="policy_loss")
    trainer = PPO(PPOConfig(**{**SMALL["ppo"], "total_steps": 80}, checkpoint_every=1), out_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"diverged at step 48: policy_loss = nan") as e:
        trainer.train()
    assert "checkpoint.pt (step 32), is left in place" in str(e.value)
    assert saved(tmp_path) == (32, True)  # the last good checkpoint, untouched


def test_nan_weights_are_never_saved_even_when_metrics_look_fine(tmp_path, monkeypatch):
    # log_every 100: no row is read back before the save that would write the NaN weights
    poison_at(monkeypatch, DQN, 3)
    cfg = DQNConfig(**{**SMALL["dqn"], "total_steps": 64}, checkpoint_every=1, log_every=100)
    with pytest.raises(RuntimeError, match=r"q\.net\.0\.weight holds NaN or Inf, so no checkpoint is saved"):
        DQN(cfg, out_dir=tmp_path).train()
    assert saved(tmp_path) == (6, True)  # iteration 3 (2 envs per step) was never saved


def test_a_diverging_learning_rate_stops_the_cli_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, train_argv("ppo", out, "--no-anneal-lr", learning_rate=1e30, total_steps=320,
                                            checkpoint_every=1))
    assert_one_line_error(rc, err, "fastrl train: training diverged", "step", code=1)
    if (out / "checkpoint.pt").exists():
        assert saved(out)[1]  # whatever was saved is finite


def test_a_diverged_policy_that_breaks_sampling_is_reported_as_divergence(tmp_path, monkeypatch):
    # NaN weights without a logged row: report the cause (the weights), whether sampling fails or the
    # next row's metrics are NaN (actions are sampled from noise, argmax(p / E), which does not check p)
    poison_at(monkeypatch, PPO, 1)
    cfg = PPOConfig(**{**SMALL["ppo"], "total_steps": 80}, log_every=100)
    with pytest.raises(RuntimeError, match=r"training diverged (by|at) step \d+: .*agent\.\S+ holds NaN or Inf"):
        PPO(cfg, out_dir=tmp_path).train()
