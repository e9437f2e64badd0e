"""Stopping on request (SIGTERM, what job schedulers send before they kill a job): training ends at
the next iteration with a checkpoint as at the end, and the run resumes from it exactly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastrl.algos import ALGOS, PPO
from fastrl.utils.stopping import EXIT_SIGTERM, StopRequest
from tests.algos._util import SMALL, run_cli, sigterm_once_logging, train_argv
from tests.algos.test_resume_exact import CASES, assert_same_state, csv_without_wall_time


def request_stop_in_iteration(monkeypatch, cls, k, request):
    """``request(trainer)`` inside iteration ``k`` (counted from 0), as a signal would."""
    original = cls.train_iteration

    def train_iteration(self):
        if self.iteration == k:
            request(self)
        return original(self)

    monkeypatch.setattr(cls, "train_iteration", train_iteration)


@pytest.mark.parametrize("case", ["ppo", "dqn"])
def test_a_stopped_run_saves_at_that_iteration_and_resumes_exactly(case, tmp_path, monkeypatch):
    algo, values, k = CASES[case]  # k odd: episodes have ended since the last row (log_every=2)
    cls = ALGOS[algo]
    config = cls.Config(**values, seed=5, log_every=2)
    straight = cls(config, out_dir=tmp_path / "straight")
    straight.train()

    request_stop_in_iteration(monkeypatch, cls, k, lambda trainer: trainer.stop_request.request())
    stopped = cls(config, out_dir=tmp_path / "stopped")
    stopped.train()
    monkeypatch.undo()
    assert stopped.stop_request.stopped and not stopped.stop_request.requested
    assert stopped.iteration == k + 1 < straight.iteration  # the iteration under way ends, no more
    saved = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert saved["iteration"] == k + 1 and saved["global_step"] == stopped.global_step
    assert (tmp_path / "stopped" / "learning_curve.png").is_file()

    resumed = cls.from_checkpoint(tmp_path / "stopped", out_dir=tmp_path / "stopped")
    resumed.train()
    assert not resumed.stop_request.stopped
    assert csv_without_wall_time(tmp_path / "stopped" / "metrics.csv") == \
        csv_without_wall_time(tmp_path / "straight" / "metrics.csv")
    assert_same_state(resumed.state_dict(), straight.state_dict())


def test_the_request_is_cleared_so_train_can_go_on(tmp_path, monkeypatch):
    request_stop_in_iteration(monkeypatch, PPO, 0, lambda trainer: trainer.stop_request.request())
    trainer = PPO(PPO.Config(**SMALL["ppo"]))
    trainer.train()
    assert trainer.stop_request.stopped and trainer.iteration == 1
    monkeypatch.undo()
    trainer.train()
    assert not trainer.stop_request.stopped and trainer.global_step == trainer.config.total_steps


def test_sigterm_in_fastrl_train_stops_saves_and_exits_143(tmp_path, capsys, monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    request_stop_in_iteration(monkeypatch, PPO, 1, lambda trainer: os.kill(os.getpid(), signal.SIGTERM))
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, train_argv("ppo", out, total_steps=64))
    assert rc == EXIT_SIGTERM == 143
    assert f"stopped by SIGTERM at step 32; wrote {out}/checkpoint.pt" in err and f"--resume {out}" in err
    assert "trained" not in stdout and "eval:" not in stdout  # no final evaluation of a stopped run
    assert torch.load(out / "checkpoint.pt", weights_only=True)["global_step"] == 32
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler is gone with the run
    monkeypatch.undo()
    assert run_cli(capsys, ["train", "ppo", "--resume", out, "--quiet", "--final-eval", "0"])[0] == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["global_step"] == 64


def test_a_request_in_the_last_iteration_lets_the_run_end_as_usual(tmp_path, capsys, monkeypatch):
    request_stop_in_iteration(monkeypatch, PPO, 1, lambda trainer: os.kill(os.getpid(), signal.SIGTERM))
    rc, stdout, err = run_cli(capsys, train_argv("ppo", tmp_path, total_steps=32))  # 2 iterations
    assert rc == 0 and "fastrl: trained 32 steps" in stdout and "SIGTERM" not in err


def test_sigterm_to_the_real_process(tmp_path):
    """The real command, signalled from outside while it trains."""
    out = tmp_path / "run"
    argv = train_argv("ppo", out, total_steps=10**9)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fastrl", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    err = sigterm_once_logging(proc, out / "metrics.csv", rows=3)
    assert proc.returncode == 143, err[-2000:]
    step = torch.load(out / "checkpoint.pt", weights_only=True)["global_step"]
    assert 0 < step < 10**9 and f"stopped by SIGTERM at step {step};" in err and "Traceback" not in err


def test_stop_request_handles_sigterm_only_inside_its_block():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop.request
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.requested and not stop.stopped
    assert signal.getsignal(signal.SIGTERM) is before
    stop.honour()
    assert stop.stopped and not stop.requested
