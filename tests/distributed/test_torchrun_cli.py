"""The real command under torchrun: `torchrun --standalone --nproc-per-node=2 -m fastrl train ppo ...`
writes one run (rank 0's metrics.csv, a checkpoint holding both ranks' envs) equal to one process's."""

import os
import subprocess
import sys

import torch

from fastrl import cli

from .test_trainers import _assert_rows_close, _metrics

FLAGS = ["train", "ppo", "--env", "CartPole-v1", "--device", "cpu", "--num-envs", "4", "--num-steps", "8",
         "--num-minibatches", "2", "--total-steps", "96", "--hidden", "16", "--quiet", "--final-eval", "2"]


def test_torchrun_two_processes_write_one_run_equal_to_one_process(tmp_path, monkeypatch, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    # torchrun is torch.distributed.run's entry point; run through this interpreter
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "fastrl", *FLAGS, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("fastrl: trained 96 steps") == 1  # rank 0 alone reports
    assert done.stdout.count("eval: 2 episodes") == 1
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 96
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".csv") == ["metrics.csv"]

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.main([*FLAGS, "--out", str(tmp_path / "one")]) == 0
    rows = _metrics(tmp_path / "one" / "metrics.csv")
    assert len(rows) == 3
    _assert_rows_close(_metrics(tmp_path / "two" / "metrics.csv"), rows)


def _train_cli(rank, out):
    """`fastrl train ppo ... --final-eval 2` on this rank; (exit code, evaluate() calls)."""
    from fastrl import distributed
    from fastrl.algos.common import Trainer

    calls = []
    evaluate = Trainer.evaluate
    Trainer.evaluate = lambda self, *args, **kwargs: calls.append(args) or evaluate(self, *args, **kwargs)
    distributed.shutdown = lambda together=False: None  # the launcher's ranks leave the group together
    return cli.main([*FLAGS, "--out", str(out)]), len(calls)


def test_final_eval_runs_on_rank_0_alone(tmp_path):
    from ._launch import run_ranks

    assert run_ranks(_train_cli, timeout=180, out=tmp_path / "run") == [(0, 1), (0, 0)]


def _rlhf_cli(rank, argv):
    """`fastrl rlhf train ...` on this rank; its exit code."""
    from fastrl import distributed

    distributed.shutdown = lambda together=False: None  # the launcher's ranks leave the group together
    return cli.main(argv)


def test_rlhf_train_under_two_ranks_writes_one_run_and_resumes_exactly(tmp_path):
    """`fastrl rlhf train grpo` on 2 ranks: rank 0 alone writes the run directory (run.toml, one
    metrics.csv); stopped after 2 steps and resumed to 4 it equals the straight 4-step run; a run
    directory that holds a run is refused on every rank."""
    from tests.rlhf.test_cli_train import rows, write_run

    from ._launch import run_ranks

    config = write_run(tmp_path, "grpo")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train = ["rlhf", "train", "grpo", "--quiet"]
    assert run_ranks(_rlhf_cli, argv=[*train, "--config", config, "--out", str(straight)]) == [0, 0]
    assert run_ranks(_rlhf_cli, argv=[*train, "--config", config, "--out", str(resumed), "--steps", "2"]) == [0, 0]
    assert len(rows(resumed)) == 2
    assert run_ranks(_rlhf_cli, argv=[*train, "--resume", str(resumed), "--steps", "4"]) == [0, 0]
    assert rows(resumed) == rows(straight)
    assert run_ranks(_rlhf_cli, argv=[*train, "--config", config, "--out", str(straight)]) == [2, 2]


def test_sigterm_to_torchrun_stops_every_rank_at_one_iteration_and_saves(tmp_path):
    """torchrun passes SIGTERM (a scheduler's notice) on to its workers: they agree on an iteration,
    save the run there (both ranks' envs) and rank 0 says so. torchrun itself then exits 1."""
    from tests.algos._util import sigterm_once_logging

    out = tmp_path / "run"
    flags = [f if f != "96" else str(10**9) for f in FLAGS]  # --total-steps: until stopped
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             "-m", "fastrl", *flags, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err = sigterm_once_logging(proc, out / "metrics.csv", rows=4)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and 0 < state["global_step"] < 10**9
    assert err.count("fastrl: stopped by SIGTERM") == 1, err[-3000:]
    assert f"stopped by SIGTERM at step {state['global_step']};" in err
