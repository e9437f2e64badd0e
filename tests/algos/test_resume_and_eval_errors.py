"""``--resume`` and ``eval`` answer every bad input with one line and exit code 2, no traceback:
the fuzz corpus of bad checkpoints (random bytes, truncated, empty, text, pickles of foreign
objects, partial or inconsistent states), another algorithm's checkpoint, bad eval arguments,
flags that would change a resumed run's algorithm. ``--resume DIR/checkpoint.pt`` and
``--resume A --out B`` work; a truncated last metrics row is dropped; Ctrl-C saves and exits."""

import copy
import csv
import datetime
import io
import os
import pickle
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastrl import cli
from fastrl.algos import PPO
from fastrl.utils.checkpoint import load_checkpoint
from tests.algos._util import SMALL, assert_one_line_error, flags, run_cli, train_argv


class RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def changed(state, path, value):
    """A deep copy of ``state`` with the entry at ``path`` (a tuple of keys) set to ``value``
    (or removed, for ``...``)."""
    state = copy.deepcopy(state)
    *parents, last = path
    node = state
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return state


def corpus(good_path, marker) -> dict[str, bytes]:
    """Bad checkpoint files, by name. ``good_path``: a real PPO checkpoint to damage."""
    raw = good_path.read_bytes()
    good = torch.load(good_path, weights_only=False)  # our own file
    rnd = random.Random(0)
    files = {
        "empty": b"",
        "text": b"this is not a checkpoint\n",
        "json": b'{"algo": "ppo", "format": 2}',
        "random-64": rnd.randbytes(64),
        "random-4096": rnd.randbytes(4096),
        "zip-magic-then-random": b"PK\x03\x04" + rnd.randbytes(600),
        "truncated-1": raw[:1],
        "truncated-100": raw[:100],
        "truncated-half": raw[:len(raw) // 2],
        "truncated-all-but-1": raw[:-1],
        "pickle-running-code": pickle.dumps(RunsCode(marker), protocol=2),
        "pickle-protocol-5": pickle.dumps({"algo": "ppo"}, protocol=5),
        "torch-save-running-code": torch_bytes({**good, "config": RunsCode(marker)}),
        "torch-save-datetime": torch_bytes({**good, "saved_at": datetime.datetime(2024, 1, 1)}),
        "torch-save-numpy-array": torch_bytes(np.zeros(3)),
        "torch-save-numpy-rng": torch_bytes({**good, "rng": {"numpy": np.random.get_state()}}),
        "a-list": torch_bytes([1, 2, 3]),
        "a-tensor": torch_bytes(torch.ones(3)),
        "empty-dict": torch_bytes({}),
        "partial": torch_bytes({"format": 2, "algo": good["algo"], "config": good["config"]}),
    }
    damaged = {
        "no-modules": (("modules",), ...),
        "format-99": (("format",), 99),
        "negative-step": (("global_step",), -1),
        "step-as-string": (("global_step",), "16"),
        "unknown-algo": (("algo",), "sac"),
        "config-not-a-dict": (("config",), [1, 2]),
        "config-bad-value": (("config", "num_envs"), "two"),
        "config-bad-seed": (("config", "seed"), -5),
        "config-unknown-field": (("config", "warp_factor"), 9),
        "wrong-weight-shape": (("modules", "agent", "actor.0.weight"), torch.zeros(3, 3)),
        "missing-weight": (("modules", "agent", "actor.0.weight"), ...),
        "missing-optimizer": (("modules", "optimizer"), ...),
        "optimizer-garbage": (("modules", "optimizer"), {"state": 1, "param_groups": "x"}),
        "env-state-wrong-shape": (("env", "state"), torch.zeros(7, 3, dtype=torch.float64)),
        "env-state-missing": (("env", "state"), ...),
        "obs-wrong-shape": (("obs",), torch.zeros(5, 4)),
        "rng-missing-numpy": (("rng", "numpy"), ...),
        "rng-python-garbage": (("rng", "python"), "x"),
        "rng-torch-garbage": (("rng", "torch"), torch.zeros(3)),
        "recent-returns-strings": (("recent_returns",), ["a"]),
        "unlogged-returns-strings": (("unlogged_returns",), ["a"]),
        "unlogged-lengths-missing": (("unlogged_lengths",), ...),
        "unlogged-returns-without-lengths": (("unlogged_returns",), [1.0]),
    }
    for name, (path, value) in damaged.items():
        files[name] = torch_bytes(changed(good, path, value))
    return files


@pytest.fixture(scope="module")
def bad_files(ppo_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-checkpoints")
    marker = root / "pwned"
    paths = {}
    for name, data in corpus(ppo_run / "checkpoint.pt", marker).items():
        (root / name).mkdir()
        paths[name] = root / name / "checkpoint.pt"
        paths[name].write_bytes(data)
    return paths, marker


def corpus_names():
    # the names, without building the corpus at collection time
    return ["empty", "text", "json", "random-64", "random-4096", "zip-magic-then-random", "truncated-1",
            "truncated-100", "truncated-half", "truncated-all-but-1", "pickle-running-code", "pickle-protocol-5",
            "torch-save-running-code", "torch-save-datetime", "torch-save-numpy-array", "torch-save-numpy-rng",
            "a-list", "a-tensor", "empty-dict", "partial", "no-modules", "format-99", "negative-step",
            "step-as-string", "unknown-algo", "config-not-a-dict", "config-bad-value", "config-bad-seed",
            "config-unknown-field", "wrong-weight-shape", "missing-weight", "missing-optimizer",
            "optimizer-garbage", "env-state-wrong-shape", "env-state-missing", "obs-wrong-shape",
            "rng-missing-numpy", "rng-python-garbage", "rng-torch-garbage", "recent-returns-strings",
            "unlogged-returns-strings", "unlogged-lengths-missing", "unlogged-returns-without-lengths"]


def test_corpus_names_are_complete(ppo_run, tmp_path):
    assert sorted(corpus(ppo_run / "checkpoint.pt", tmp_path / "m")) == sorted(corpus_names())


@pytest.mark.parametrize("name", corpus_names())
def test_eval_of_a_bad_checkpoint_is_one_line(bad_files, capsys, name):
    paths, marker = bad_files
    rc, stdout, err = run_cli(capsys, ["eval", paths[name], "--episodes", "1"])
    assert_one_line_error(rc, err, "fastrl eval:", str(paths[name]))
    assert not stdout and not marker.exists()


@pytest.mark.parametrize("name", corpus_names())
def test_resume_of_a_bad_checkpoint_is_one_line(bad_files, capsys, name):
    paths, marker = bad_files
    run_dir = paths[name].parent
    rc, stdout, err = run_cli(capsys, ["train", "ppo", "--resume", run_dir, "--quiet", "--total-steps", "64"])
    assert_one_line_error(rc, err, "fastrl train:")
    assert not stdout and not marker.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]  # nothing written


@given(data=st.binary(max_size=2048))
def test_random_bytes_never_load(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "random.pt"
    path.write_bytes(data)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


@given(cut=st.integers(min_value=0, max_value=10**9))
def test_truncated_checkpoints_are_one_line_errors(ppo_run, tmp_path_factory, cut):
    raw = (ppo_run / "checkpoint.pt").read_bytes()
    path = tmp_path_factory.getbasetemp() / "truncated.pt"
    path.write_bytes(raw[:cut % len(raw)])
    assert cli.main(["eval", str(path), "--episodes", "1"]) == 2


def test_cli_process_exit_code_and_stderr(tmp_path):
    """The real process: exit code 2, one stderr line, no traceback."""
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "fastrl", "eval", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


# -------------------------------------------------------------------------- resume


def copy_run(run, tmp_path, name="run"):
    return shutil.copytree(run, tmp_path / name)


def rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_another_algorithms_checkpoint_is_one_line(dqn_run, capsys):
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", dqn_run, "--quiet"])
    assert_one_line_error(rc, err, "holds a dqn run, not ppo", f"fastrl train dqn --resume {dqn_run}")


def test_resume_from_the_checkpoint_file_continues_its_run(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    rc, _, _ = run_cli(capsys, ["train", "ppo", "--resume", run / "checkpoint.pt", "--total-steps", "48",
                                "--quiet", "--final-eval", "1"])
    assert rc == 0
    assert [int(float(r["step"])) for r in rows(run)] == [16, 32, 48]
    assert PPO.from_checkpoint(run).global_step == 48


def test_resume_into_another_out_continues_a_copy(ppo_run, tmp_path, capsys):
    source = copy_run(ppo_run, tmp_path, "a")
    before = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    target = tmp_path / "b"
    argv = ["train", "ppo", "--resume", source, "--out", target, "--total-steps", "48", "--quiet", "--final-eval", "1"]
    assert run_cli(capsys, argv)[0] == 0
    assert rows(target)[:2] == rows(source) and int(float(rows(target)[-1]["step"])) == 48
    assert {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()} == before  # untouched
    rc, _, err = run_cli(capsys, argv)  # now b holds a run
    assert_one_line_error(rc, err, "already holds a run")
    assert run_cli(capsys, [*argv, "--overwrite"])[0] == 0


def test_resume_drops_a_truncated_last_metrics_row(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    text = (run / "metrics.csv").read_text()
    last_line_start = text.rstrip("\n").rfind("\n") + 1
    (run / "metrics.csv").write_text(text[:last_line_start + 1])  # a crash while writing the last row
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--total-steps", "48", "--quiet",
                                  "--final-eval", "1"])
    assert rc == 0, err
    # the damaged row (step 32) is gone; the run goes on from its checkpoint (step 32)
    assert [r["step"] for r in rows(run)] == ["16", "48"] and all(None not in r.values() for r in rows(run))


def test_resume_with_a_malformed_middle_row_is_one_line(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    lines[1] = "garbage\n"
    (run / "metrics.csv").write_text("".join(lines))
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--total-steps", "48", "--quiet"])
    assert_one_line_error(rc, err, "metrics.csv: line 2 is malformed")


@pytest.mark.parametrize("flag", [["--learning-rate", "0.1"], ["--num-envs", "4"], ["--hidden", "8"],
                                  ["--no-anneal-lr"], ["--env", "Acrobot-v1"], ["--seed", "3"]])
def test_resume_refuses_flags_that_change_the_algorithm(ppo_run, tmp_path, capsys, flag):
    run = copy_run(ppo_run, tmp_path)
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--quiet", *flag])
    assert_one_line_error(rc, err, flag[0], "would change the algorithm")


def test_resume_accepts_the_same_flags_and_announces_changes(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    same = flags({**SMALL["ppo"], "seed": 1})  # the flags that made the run (conftest.py)
    rc, stdout, _ = run_cli(capsys, ["train", "ppo", "--resume", run, *same, "--total-steps", "48",
                                     "--quiet", "--final-eval", "1"])
    assert rc == 0
    assert "resuming with total_steps = 48 (the checkpoint had 32)" in stdout


def test_resume_with_config_or_overwrite_of_itself_is_refused(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    (tmp_path / "c.json").write_text("{}")
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--config", tmp_path / "c.json", "--quiet"])
    assert_one_line_error(rc, err, "--config cannot be combined with --resume")
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--overwrite", "--quiet"])
    assert_one_line_error(rc, err, "--overwrite would delete the run")


# -------------------------------------------------------------------------- eval arguments


@pytest.mark.parametrize("argv,says", [
    (["--episodes", "0"], "--episodes must be > 0"),
    (["--episodes", "-3"], "--episodes must be > 0"),
    (["--seed", "-1"], "--seed must be in [0, 2**63)"),
    (["--seed", str(2**64)], "--seed must be in [0, 2**63)"),
    (["--device", "tpu"], "device must be cpu or cuda"),
    pytest.param(["--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")),
])
def test_eval_bad_arguments_are_one_line(ppo_run, capsys, argv, says):
    rc, stdout, err = run_cli(capsys, ["eval", ppo_run, *argv])
    assert_one_line_error(rc, err, "fastrl eval:", says)
    assert not stdout


def test_eval_missing_checkpoint_is_one_line(tmp_path, capsys):
    for path in (tmp_path / "nothing.pt", tmp_path):
        rc, _, err = run_cli(capsys, ["eval", path])
        assert_one_line_error(rc, err, "no checkpoint at")


# -------------------------------------------------------------------------- Ctrl-C


def interrupt_at_second_iteration(monkeypatch):
    original = PPO.train_iteration

    def train_iteration(self):
        if self.iteration == 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(PPO, "train_iteration", train_iteration)


def test_ctrl_c_saves_a_checkpoint_and_plot_and_exits_cleanly(tmp_path, capsys, monkeypatch):
    interrupt_at_second_iteration(monkeypatch)
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, train_argv("ppo", out))
    assert rc == 130 and "Traceback" not in err
    assert f"interrupted at step 16; wrote {out}/checkpoint.pt" in err and f"--resume {out}" in err
    assert (out / "learning_curve.png").exists()
    monkeypatch.undo()
    resumed = PPO.from_checkpoint(out)
    assert resumed.global_step == 16 and resumed.iteration == 1
    assert run_cli(capsys, ["train", "ppo", "--resume", out, "--quiet", "--final-eval", "1"])[0] == 0


def test_ctrl_c_in_the_python_api_saves_then_propagates(tmp_path, monkeypatch):
    interrupt_at_second_iteration(monkeypatch)
    trainer = PPO(PPO.Config(**SMALL["ppo"]), out_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["global_step"] == 16
    assert (tmp_path / "learning_curve.png").exists()


@pytest.mark.parametrize("path,value", [(("modules", "buffer", "pos"), "3"), (("modules", "buffer", "pos"), -1),
                                        (("modules", "buffer", "size"), 10**6), (("modules", "buffer", "rewards"), ...),
                                        (("modules", "buffer", "extra"), torch.zeros(2)),
                                        (("modules", "buffer", "obs"), torch.zeros(1, 2, 4))])
def test_damaged_replay_buffer_is_one_line(dqn_run, tmp_path, capsys, path, value):
    good = torch.load(dqn_run / "checkpoint.pt", weights_only=False)
    (tmp_path / "checkpoint.pt").write_bytes(torch_bytes(changed(good, path, value)))
    rc, _, err = run_cli(capsys, ["eval", tmp_path, "--episodes", "1"])
    assert_one_line_error(rc, err, "fastrl eval:", "replay buffer")
