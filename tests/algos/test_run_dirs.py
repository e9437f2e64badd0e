"""A run never destroys another run's files: an --out that holds a run is refused unless --resume
or --overwrite, a directory being written is locked (a crashed run's lock frees itself), orphan
temporary files of interrupted saves are removed, and training in segments keeps every row."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from fastrl import cli
from fastrl.algos import PPO, PPOConfig
from tests.algos._util import SMALL, assert_one_line_error, run_cli, train_argv


def files_of(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".fastrl.lock"}


def steps_in(metrics_csv):
    with open(metrics_csv, newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f)]


def test_new_run_refuses_an_out_dir_holding_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, train_argv("ppo", out))[0] == 0
    before = files_of(out)
    rc, stdout, err = run_cli(capsys, train_argv("ppo", out, seed=7))
    assert_one_line_error(rc, err, str(out), "already holds a run", "--resume", "--overwrite")
    assert stdout == "" and files_of(out) == before  # nothing started, nothing touched


def test_default_run_dir_is_not_reused_silently(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a for a in train_argv("ppo", "unused") if a not in ("--out", "unused")]
    assert run_cli(capsys, argv)[0] == 0
    run = tmp_path / "runs" / "ppo-CartPole-v1"
    before = files_of(run)
    rc, _, err = run_cli(capsys, argv)
    assert_one_line_error(rc, err, "runs/ppo-CartPole-v1", "already holds a run")
    assert files_of(run) == before


def test_overwrite_replaces_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, train_argv("ppo", out, total_steps=64))[0] == 0
    assert steps_in(out / "metrics.csv")[-1] == 64
    assert run_cli(capsys, train_argv("ppo", out, "--overwrite", total_steps=32))[0] == 0
    assert steps_in(out / "metrics.csv") == [16, 32]  # only the new run's rows
    assert PPO.from_checkpoint(out).global_step == 32


def test_python_api_refuses_a_run_dir_unless_overwrite(tmp_path):
    PPO(PPOConfig(**SMALL["ppo"]), out_dir=tmp_path).train()
    before = files_of(tmp_path)
    with pytest.raises(RuntimeError, match="already holds a run"):
        PPO(PPOConfig(**SMALL["ppo"]), out_dir=tmp_path).train()
    assert files_of(tmp_path) == before
    PPO(PPOConfig(**{**SMALL["ppo"], "total_steps": 16}), out_dir=tmp_path, overwrite=True).train()
    assert steps_in(tmp_path / "metrics.csv") == [16]


def test_second_run_into_a_directory_being_written_fails_at_once(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    second = {}
    original = PPO.train_iteration

    def train_iteration(self):
        if not second:  # the first run is writing to out: start another into it
            second["started"] = True
            second["rc"] = cli.main(train_argv("ppo", out, seed=9))
            second["err"] = capsys.readouterr().err
        return original(self)

    monkeypatch.setattr(PPO, "train_iteration", train_iteration)
    assert cli.main(train_argv("ppo", out)) == 0
    assert_one_line_error(second["rc"], second["err"], "another fastrl run", f"process {os.getpid()}", str(out))
    assert steps_in(out / "metrics.csv") == [16, 32]  # the first run's rows only, in order


def test_a_crashed_runs_lock_frees_itself(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from fastrl.utils.rundir import RunLock
        with RunLock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(120)
    """), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = run_cli(capsys, train_argv("ppo", out))
        assert_one_line_error(rc, err, "another fastrl run", f"process {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up runs
        holder.wait()
    assert run_cli(capsys, train_argv("ppo", out))[0] == 0


def test_resume_removes_orphan_temp_files_of_interrupted_saves(ppo_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ppo_run, run)
    orphans = [run / ".checkpoint.pt.1a2b3c4d.tmp", run / ".metrics.csv.5e6f7a8b.tmp"]
    for p in orphans:
        p.write_bytes(b"half a save")  # what SIGKILL mid-save leaves
    unrelated = run / ".notes.tmp"
    unrelated.write_text("not fastrl's")
    assert run_cli(capsys, ["train", "ppo", "--resume", run, "--total-steps", "48", "--quiet",
                            "--final-eval", "1"])[0] == 0
    assert not any(p.exists() for p in orphans) and unrelated.exists()


def test_training_in_segments_keeps_every_row(tmp_path):
    trainer = PPO(PPOConfig(**SMALL["ppo"]), out_dir=tmp_path)
    trainer.train(until_step=16)
    trainer.train()
    assert steps_in(tmp_path / "metrics.csv") == [16, 32]
