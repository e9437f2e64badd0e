"""RLHF runs (fastrl.rlhf.run): logged like the classic trainers, and resumed exactly from a
periodic checkpoint after a crash."""

import csv
import math

import pytest
import torch

from fastrl.algos.common import TrainingDiverged
from fastrl.rlhf.data import Preference
from fastrl.rlhf.dpo import DPOConfig, DPOTrainer, train_dpo
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.run import run_config, train_run
from fastrl.utils.checkpoint import CheckpointError, load_checkpoint
from fastrl.utils.rundir import RunDirError
from fastrl.utils.stopping import StopRequest
from tests.rlhf._tiny import PROMPTS, TOK, tiny_models

STEPS = 5


def _grpo(policy, rm):
    cfg = GRPOConfig(prompts_per_step=2, group_size=2, max_new_tokens=4, epochs=1, num_minibatches=2,
                     learning_rate=1e-2, seed=3)  # fmt: skip
    return GRPOTrainer(policy, rm, TOK, cfg)


def _ppo(policy, rm):
    # target_kl with a short horizon: the KL controller's beta moves every step, so it must be restored
    cfg = RLHFPPOConfig(batch_size=4, max_new_tokens=4, learning_rate=1e-2, target_kl=0.01, kl_horizon=10, seed=3)
    return PPOTrainer(policy, rm, TOK, cfg)


PAIRS = [Preference(p, c, r) for p, c, r in [("ab=", "c", "d"), ("b=", "cc", "d"), ("a=", "dd", "c"),
                                             ("c=", "a", "b"), ("d=", "b", "cd")]]  # fmt: skip


def _dpo(policy, rm):
    # 5 pairs in batches of 2: 3 steps an epoch, so the checkpoint at step 2 is inside the first epoch
    return DPOTrainer(policy, PAIRS, TOK, DPOConfig(batch_size=2, learning_rate=1e-2, seed=3))


class Crash(Exception):
    pass


def _rows(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _state(trainer):
    """Every value of the trainer's state, by name: modules, optimizers, reference, generators."""
    state = {f"{name}.{k}": v for name, obj in trainer.checkpointed().items() for k, v in _flat(obj.state_dict())}
    state |= {f"reference.{k}": v for k, v in trainer.reference.state_dict().items()}
    state["cpu_generator"] = trainer.cpu_generator.get_state()
    if hasattr(trainer, "generator"):
        state["generator"] = trainer.generator.get_state()
    return state


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flat(v, f"{prefix}{k}.")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _flat(v, f"{prefix}{i}.")
    else:
        yield prefix, tree


def _same(a, b):
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else type(a) is type(b) and a == b


@pytest.mark.parametrize("make", [_grpo, _ppo, _dpo], ids=["grpo", "ppo", "dpo"])
def test_a_crashed_run_resumes_exactly(tmp_path, make):
    prompts = None if make is _dpo else PROMPTS
    straight = make(*tiny_models())
    train_run(straight, prompts, STEPS, tmp_path / "straight", checkpoint_every=2)

    def crash_after_step_3(it, metrics, gen):
        if it == 2:
            raise Crash

    first = make(*tiny_models())
    with pytest.raises(Crash):
        train_run(first, prompts, STEPS, tmp_path / "resumed", checkpoint_every=2, on_step=crash_after_step_3)
    assert load_checkpoint(tmp_path / "resumed")["step"] == 2  # the periodic one; step 3 was logged after it
    assert len(_rows(tmp_path / "resumed")) == 3
    del first

    # a new trainer from other weights and another global RNG state: everything must come from the files
    policy, rm = tiny_models()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1)
    torch.manual_seed(12345)
    resumed = make(policy, rm)
    train_run(resumed, prompts, STEPS, tmp_path / "resumed", checkpoint_every=2, resume=True)

    ours, theirs = _rows(tmp_path / "resumed"), _rows(tmp_path / "straight")
    assert [r["step"] for r in ours] == [str(s) for s in range(1, STEPS + 1)]
    for row in ours + theirs:
        del row["wall_time"]  # the clock, the one column that differs
    assert ours == theirs
    want, got = _state(straight), _state(resumed)
    assert want.keys() == got.keys()
    different = [k for k in want if not _same(want[k], got[k])]
    assert not different


def test_a_logged_run_trains_as_train_does(tmp_path):
    plain, logged = _grpo(*tiny_models()), _grpo(*tiny_models())
    scores = []
    plain.train(PROMPTS, 3, on_step=lambda it, metrics, gen: scores.append(float(metrics["score"])))
    rows = logged.train(PROMPTS, 3, out_dir=tmp_path, checkpoint_every=1)
    assert rows is None  # train() returns nothing either way
    assert [float(r["score"]) for r in _rows(tmp_path)] == scores
    assert all(torch.equal(v, logged.policy.state_dict()[k]) for k, v in plain.policy.state_dict().items())


def test_run_files(tmp_path):
    trainer = _ppo(*tiny_models())
    rows = train_run(trainer, PROMPTS, 2, tmp_path)
    assert {"metrics.csv", "learning_curve.png", "checkpoint.pt", "reference.pt", "tb"} <= {
        p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    logged = _rows(tmp_path)
    assert [float(r["kl_coef"]) for r in logged] == [r["kl_coef"] for r in rows]
    algo, config = run_config(tmp_path)
    assert algo == "PPOTrainer" and RLHFPPOConfig(**config) == trainer.cfg


def test_resume_refuses_another_config_or_trainer(tmp_path):
    train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path)
    other = GRPOTrainer(*tiny_models(), TOK, GRPOConfig(prompts_per_step=2, group_size=2, max_new_tokens=4,
                                                         epochs=1, num_minibatches=2, learning_rate=1e-2, seed=4))
    with pytest.raises(CheckpointError, match="config differs from the run's in seed"):
        train_run(other, PROMPTS, 2, tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="holds a GRPOTrainer run, not a PPOTrainer"):
        train_run(_ppo(*tiny_models()), PROMPTS, 2, tmp_path, resume=True)


def test_a_new_run_refuses_a_run_directory(tmp_path):
    train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path)
    with pytest.raises(RunDirError, match="already holds a run"):
        train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path)
    train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path, overwrite=True)
    assert len(_rows(tmp_path)) == 1


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_steps_and_checkpoint_every_are_checked(tmp_path, bad):
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        train_run(_grpo(*tiny_models()), PROMPTS, bad, tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 0"):
        train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path, checkpoint_every=bad)


def test_a_logged_dpo_run_trains_as_train_dpo_does(tmp_path):
    plain, logged = tiny_models()[0], tiny_models()[0]
    cfg = DPOConfig(batch_size=2, epochs=2, learning_rate=1e-2, seed=3)
    train_dpo(plain, PAIRS, TOK, cfg)
    trainer = DPOTrainer(logged, PAIRS, TOK, cfg)
    rows = train_run(trainer, None, 2 * trainer.steps_per_epoch, tmp_path)
    assert all(torch.equal(v, logged.state_dict()[k]) for k, v in plain.state_dict().items())
    assert [r["pairs"] for r in rows] == [2.0, 2.0, 1.0] * 2
    with pytest.raises(ValueError, match="prompts: DPOTrainer trains on its own pairs"):
        train_run(trainer, PROMPTS, 1, tmp_path / "other")
    with pytest.raises(ValueError, match="prompts: GRPOTrainer needs prompts"):
        train_run(_grpo(*tiny_models()), None, 1, tmp_path / "other")


def test_a_diverged_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _grpo(*tiny_models())
    step, calls = trainer.step, []

    def nan_loss_at_step_3(*args, **kwargs):
        metrics, gen = step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            metrics["loss"] = torch.tensor(math.nan)
        return metrics, gen

    trainer.step = nan_loss_at_step_3
    with pytest.raises(TrainingDiverged, match=r"at step 3: loss = nan; the last good checkpoint, .* \(step 2\)"):
        train_run(trainer, PROMPTS, 5, tmp_path, checkpoint_every=2)
    assert load_checkpoint(tmp_path)["step"] == 2


def test_ctrl_c_saves_the_checkpoint_and_the_plot(tmp_path):
    def interrupt(it, metrics, gen):
        if it == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(_grpo(*tiny_models()), PROMPTS, 5, tmp_path, checkpoint_every=2, on_step=interrupt)
    assert load_checkpoint(tmp_path)["step"] == 3
    assert (tmp_path / "learning_curve.png").is_file()


@pytest.mark.parametrize(("at", "stopped_after"), [(1, 2), (STEPS - 1, None)])
def test_a_stop_request_ends_the_run_after_the_step_unless_it_was_the_last(tmp_path, at, stopped_after):
    stop = StopRequest()

    def request(it, metrics, gen):
        if it == at:
            stop.request()

    rows = train_run(_grpo(*tiny_models()), PROMPTS, STEPS, tmp_path, checkpoint_every=4, on_step=request, stop=stop)
    assert stop.stopped == (stopped_after is not None)
    assert len(rows) == load_checkpoint(tmp_path)["step"] == (stopped_after or STEPS)
    assert (tmp_path / "learning_curve.png").is_file()


def test_resume_needs_an_rlhf_run_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path, resume=True)
    torch.save({"format": 3, "algo": "ppo"}, tmp_path / "checkpoint.pt")  # e.g. a classic trainer's
    with pytest.raises(CheckpointError, match="not an RLHF run's checkpoint: it has no config, step, modules"):
        train_run(_grpo(*tiny_models()), PROMPTS, 1, tmp_path, resume=True)
