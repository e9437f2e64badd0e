"""Runs the trainer tests share (read-only: copy one before changing it)."""

import pytest

from fastrl.algos import ALGOS
from tests.algos._util import SMALL


def _finished_run(tmp_path_factory, algo):
    out = tmp_path_factory.mktemp(f"{algo}-run")
    cls = ALGOS[algo]
    cls(cls.Config(**SMALL[algo], seed=1), out_dir=out).train()
    return out


@pytest.fixture(scope="session")
def ppo_run(tmp_path_factory):
    """A finished small PPO run on CartPole: checkpoint.pt, metrics.csv, learning_curve.png."""
    return _finished_run(tmp_path_factory, "ppo")


@pytest.fixture(scope="session")
def dqn_run(tmp_path_factory):
    return _finished_run(tmp_path_factory, "dqn")
