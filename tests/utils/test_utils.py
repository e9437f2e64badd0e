"""Checkpoints are atomic, the run logger writes the documented CSV, plots render."""

import csv

import pytest
import torch

from fastrl.utils.checkpoint import load_checkpoint, save_checkpoint
from fastrl.utils.logging import RunLogger
from fastrl.utils.plots import plot_learning_curve


def test_checkpoint_round_trip(tmp_path):
    state = {"w": torch.arange(5.0), "step": 7, "nested": {"a": [1, 2]}}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == {"a": [1, 2]}


def test_checkpoint_failed_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"version": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"version": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["version"] == 1  # old file intact, found via its directory
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_logger_csv_and_resume(tmp_path):
    log = RunLogger(tmp_path, total_steps=100, progress=False, tensorboard=False)
    log.log(10, episodic_return=1.0, episodic_length=1.0, loss=0.5)
    log.log(20, episodic_return=float("nan"), episodic_length=float("nan"), loss=0.25, extra=3.0)
    log.log(30, episodic_return=2.0, episodic_length=2.0, loss=0.1)
    log.close()
    rows = read_rows(tmp_path / "metrics.csv")
    assert list(rows[0])[:4] == ["step", "wall_time", "episodic_return", "episodic_length"]
    assert [r["step"] for r in rows] == ["10", "20", "30"] and rows[1]["extra"] == "3.0"
    # Resuming from the checkpoint at step 20 drops the rows logged after it.
    log = RunLogger(tmp_path, total_steps=100, start_step=20, resume=True, progress=False, tensorboard=False)
    log.log(40, episodic_return=4.0, episodic_length=4.0, loss=0.0)
    log.close()
    rows = read_rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["10", "20", "40"]
    assert float(rows[2]["wall_time"]) >= float(rows[1]["wall_time"])


def test_plot_learning_curve(tmp_path):
    log = RunLogger(tmp_path, total_steps=10, progress=False, tensorboard=False)
    for s in range(1, 5):
        log.log(s, episodic_return=float(s), episodic_length=1.0)
    log.close()
    png = plot_learning_curve(tmp_path / "metrics.csv", tmp_path / "curve.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
