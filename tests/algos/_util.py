"""Helpers of the trainer tests: tiny configs that train in a fraction of a second, the CLI run
in-process with its exit code and output, and a real CLI process signalled while it trains."""

from __future__ import annotations

import signal
import time

from fastrl import cli

# Per algorithm: a config that trains 32 steps in a few iterations.
SMALL = {
    "ppo": dict(num_envs=2, num_steps=8, num_minibatches=2, total_steps=32, hidden=(16, 16)),
    "a2c": dict(num_envs=2, num_steps=4, total_steps=32, hidden=(16, 16)),
    "reinforce": dict(num_envs=2, num_steps=8, total_steps=32, hidden=(16, 16)),
    "dqn": dict(num_envs=2, total_steps=32, learning_starts=8, batch_size=8, buffer_size=64,
                target_update_every=2, hidden=(16, 16)),
}


def flags(values: dict) -> list[str]:
    """Config values as command-line flags."""
    out = []
    for name, value in values.items():
        flag = "--env" if name == "env_id" else "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def train_argv(algo: str, out, *extra: str, **overrides) -> list[str]:
    """``fastrl train ALGO`` with the small config, quiet, one final evaluation episode."""
    return ["train", algo, *flags({**SMALL[algo], **overrides}), "--out", str(out), "--quiet",
            "--final-eval", "1", *extra]


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``fastrl ARGV``."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *fragments: str, code: int = 2) -> None:
    """The CLI refused with exit code ``code`` and exactly one line on stderr holding ``fragments``."""
    assert rc == code, f"exit code {rc}, stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def sigterm_once_logging(proc, metrics_csv, rows: int, timeout: float = 180) -> str:
    """Send the running ``fastrl train`` process ``proc`` SIGTERM once its metrics.csv holds
    ``rows`` lines; its stderr when it has exited."""
    deadline = time.monotonic() + timeout
    try:
        while not metrics_csv.is_file() or len(metrics_csv.read_text().splitlines()) < rows:
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=timeout)[1]
    finally:
        proc.kill()
