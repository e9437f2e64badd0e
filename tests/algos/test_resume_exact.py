"""Exact resume after a crash: every algorithm (PPO also with observation and reward normalization,
A2C with observation normalization), checkpointing every iteration and logging every second one.
A run is trained straight through while the files it has written right after the checkpoint of
iteration k (odd, so finished episodes are waiting for the next row) are copied aside, as a crash
in iteration k+1 would leave them; a new trainer resumes from the copy. The whole metrics.csv and
the whole final state (parameters, optimizer, normalizers, replay buffer, RNGs, envs) must equal
the straight run's."""

import csv
import shutil

import pytest
import torch

from fastrl.algos import ALGOS

# Each case: algorithm, config, and k, the iteration whose checkpoint the crash leaves behind.
CASES = {
    "dqn": ("dqn", dict(num_envs=8, total_steps=8 * 24, learning_starts=32, batch_size=16, buffer_size=256,
                        target_update_every=4, train_every=2, hidden=(16, 16), eval_every=8 * 6,
                        eval_episodes=2), 11),
    # centred RMSProp keeps a running mean of the gradients as well as of their squares
    "dqn-rmsprop": ("dqn", dict(num_envs=8, total_steps=8 * 24, learning_starts=32, batch_size=16, buffer_size=256,
                                target_update_every=4, train_every=2, hidden=(16, 16), optimizer="rmsprop"), 11),
    "reinforce": ("reinforce", dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 6, hidden=(16, 16)), 3),
    "reinforce-monte-carlo": ("reinforce", dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 6,
                                                hidden=(16, 16), baseline=False), 3),
    "a2c-normalize-obs": ("a2c", dict(num_envs=4, num_steps=8, total_steps=4 * 8 * 8, hidden=(16, 16),
                                      normalize_obs=True), 5),
    "ppo": ("ppo", dict(num_envs=4, num_steps=16, num_minibatches=2, epochs=2, total_steps=4 * 16 * 6,
                        hidden=(16, 16)), 3),
    # Pendulum's episodes end at step 200, inside iteration 5 of 40-step rollouts.
    "ppo-pendulum-normalize-obs-and-reward": (
        "ppo", dict(env_id="Pendulum-v1", num_envs=2, num_steps=40, num_minibatches=2, epochs=2,
                    total_steps=2 * 40 * 7, hidden=(16, 16), normalize_obs=True, normalize_reward=True), 5),
}


def expected_modules(algo: str, values: dict) -> set[str]:
    """What a checkpoint of this case must hold besides the loop's own state."""
    modules = {"q", "q_target", "optimizer", "buffer"} if algo == "dqn" else {"agent", "optimizer"}
    return modules | {name for flag, name in (("normalize_obs", "obs_norm"), ("normalize_reward", "reward_scaler"))
                      if values.get(flag)}


def csv_without_wall_time(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def assert_same_state(a, b, where="state"):
    """Equal nested dicts/lists/tuples; tensors equal bit for bit (NaN equal to NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        same = torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
        assert same, f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def straight_run_leaving_a_crash(cls, config, k, straight_dir, crash_dir):
    """Train straight through into ``straight_dir``; right after the checkpoint of iteration ``k``,
    copy the run's checkpoint and metrics.csv to ``crash_dir``."""
    trainer = cls(config, out_dir=straight_dir)
    save = trainer.save

    def save_and_snapshot(*args, **kwargs):
        path = save(*args, **kwargs)
        if trainer.iteration == k and not crash_dir.exists():
            crash_dir.mkdir()
            for name in ("checkpoint.pt", "metrics.csv"):
                shutil.copy2(straight_dir / name, crash_dir / name)
        return path

    trainer.save = save_and_snapshot
    trainer.train()
    assert crash_dir.exists(), f"no checkpoint was written at iteration {k}"
    return trainer


@pytest.mark.parametrize("case", CASES)
def test_resume_after_a_crash_is_exact(case, tmp_path):
    algo, values, k = CASES[case]
    cls = ALGOS[algo]
    config = cls.Config(**values, seed=5, checkpoint_every=1, log_every=2)
    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crashed"
    straight = straight_run_leaving_a_crash(cls, config, k, straight_dir, crash_dir)
    assert straight.iteration > k + 1

    crashed = torch.load(crash_dir / "checkpoint.pt", weights_only=True)
    assert crashed["iteration"] == k
    assert set(crashed["modules"]) == expected_modules(algo, values)
    rows_at_crash = csv_without_wall_time(crash_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows_at_crash] == [
        int(r["step"]) for r in csv_without_wall_time(straight_dir / "metrics.csv")[:(k // 2)]]

    resumed = cls.from_checkpoint(crash_dir, out_dir=crash_dir)  # a fresh process would do the same
    resumed.train()
    assert csv_without_wall_time(crash_dir / "metrics.csv") == csv_without_wall_time(straight_dir / "metrics.csv")
    assert_same_state(resumed.state_dict(), straight.state_dict())
    # the files too: the final checkpoints hold the same state
    assert_same_state(torch.load(crash_dir / "checkpoint.pt", weights_only=True),
                      torch.load(straight_dir / "checkpoint.pt", weights_only=True))


@pytest.mark.parametrize("case", CASES)
def test_the_case_leaves_finished_episodes_unlogged_at_the_crash(case):
    """The defect the cases guard needs episodes that ended after the last row and before the
    checkpoint: check that each case has some (counted from the envs' info, not the trainer)."""
    algo, values, k = CASES[case]
    cls = ALGOS[algo]
    trainer = cls(cls.Config(**values, seed=5, checkpoint_every=1, log_every=2))
    ended_in_k = []
    step = trainer.env.step

    def counting_step(actions):
        out = step(actions)
        if trainer.iteration == k - 1:  # iteration k is running (iteration counts the finished ones)
            ended_in_k.append(int(out[4]["_episode"].sum()))
        return out

    trainer.env.step = counting_step
    trainer.train(until_step=k * steps_per_iteration(trainer.config))
    assert sum(ended_in_k) > 0, f"no episode ends in iteration {k}"


def steps_per_iteration(config) -> int:
    return config.num_envs * getattr(config, "num_steps", 1)  # DQN steps each env once


@pytest.mark.parametrize("case", CASES)
def test_training_in_segments_is_one_run(case, tmp_path):
    """``train(until_step=...)`` stopping at iteration k (not a logging one), then a trainer built
    from its checkpoint training on: the rows, the file and the state of one uninterrupted run."""
    algo, values, k = CASES[case]
    cls = ALGOS[algo]
    config = cls.Config(**values, seed=5, log_every=2)
    straight = cls(config, out_dir=tmp_path / "straight")
    straight.train()
    first = cls(config, out_dir=tmp_path / "segments")
    first.train(until_step=k * steps_per_iteration(config))
    assert first.iteration == k
    resumed = cls.from_checkpoint(tmp_path / "segments", out_dir=tmp_path / "segments")
    resumed.train()
    assert first.history + resumed.history == straight.history
    assert (csv_without_wall_time(tmp_path / "segments" / "metrics.csv")
            == csv_without_wall_time(tmp_path / "straight" / "metrics.csv"))
    assert_same_state(resumed.state_dict(), straight.state_dict())


def test_a_format_2_checkpoint_still_resumes(ppo_run, tmp_path):
    """Format 2 had no unlogged episodes (they were lost): it loads with none and trains on."""
    state = torch.load(ppo_run / "checkpoint.pt", weights_only=True)
    assert state["format"] == 3
    del state["unlogged_returns"], state["unlogged_lengths"]
    torch.save({**state, "format": 2}, tmp_path / "checkpoint.pt")
    trainer = ALGOS["ppo"].from_checkpoint(tmp_path, total_steps=state["global_step"] + 16)
    trainer.train()
    assert trainer.global_step == state["global_step"] + 16
