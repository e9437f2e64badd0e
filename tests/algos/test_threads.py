"""``cpu_threads`` applies while a trainer trains or evaluates, and torch's setting is restored
afterwards: building a trainer does not change the process's thread count."""

import pytest
import torch

from fastrl.algos import PPO, PPOConfig
from tests.algos._util import SMALL


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_cpu_threads_are_scoped_to_training_and_evaluation(two_threads, monkeypatch):
    seen = []
    train_iteration, act = PPO.train_iteration, PPO.act

    def spy_train(self):
        seen.append(("train", torch.get_num_threads()))
        return train_iteration(self)

    def spy_act(self, obs, deterministic=True):
        seen.append(("act", torch.get_num_threads()))
        return act(self, obs, deterministic)

    monkeypatch.setattr(PPO, "train_iteration", spy_train)
    monkeypatch.setattr(PPO, "act", spy_act)
    trainer = PPO(PPOConfig(**SMALL["ppo"], cpu_threads=1))
    assert torch.get_num_threads() == 2
    trainer.train()
    assert torch.get_num_threads() == 2
    trainer.evaluate(1)
    assert torch.get_num_threads() == 2
    assert set(seen) == {("train", 1), ("act", 1)}


def test_cpu_threads_none_keeps_torchs_setting(two_threads, monkeypatch):
    seen = []
    original = PPO.train_iteration
    monkeypatch.setattr(PPO, "train_iteration", lambda self: seen.append(torch.get_num_threads()) or original(self))
    PPO(PPOConfig(**SMALL["ppo"], cpu_threads=None)).train()
    assert set(seen) == {2} and torch.get_num_threads() == 2
