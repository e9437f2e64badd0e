"""``cpu_threads`` applies while a trainer trains or evaluates, and torch's setting is restored
afterwards: building a trainer does not change the process's thread count."""

import os
import platform
import subprocess
import sys

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


_FAULTS = """
import resource, torch
from fastrl.algos import PPO, PPOConfig
PPO(PPOConfig(env_id="CartPole-v1", num_envs=2, num_steps=4, total_steps=8, num_minibatches=2)).train()
def cycle():  # 8 live blocks of 4 MiB (PPO's activations on MinAtar), written, then all freed
    blocks = [torch.ones(2**20) for _ in range(8)]
    del blocks
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_training_on_the_cpu_keeps_freed_memory_for_reuse():
    """After training on the CPU, freed large blocks are reused instead of paged in anew (each
    cycle of 32 MiB faulted about 920 pages in before, about 100 after); FASTRL_KEEP_FREED_MEMORY=0
    opts out. In fresh processes: the setting is process-wide and lasts."""
    def faults(**env):
        out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})
        return float(out.stdout.split()[-1])

    kept, returned = faults(), faults(FASTRL_KEEP_FREED_MEMORY="0")
    assert returned > 500  # 8192 pages allocated per cycle: most of them faulted in anew
    assert kept * 4 < returned
