"""A short, self-contained demo of the ops (the README's main job until the trainers land)."""

from __future__ import annotations

import time

import torch

from fastrl import _native
from fastrl.ops import returns


def _median_seconds(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def run_ops_demo(steps: int = 2048, envs: int = 64, seed: int = 0) -> int:
    if steps < 1 or envs < 1:
        raise SystemExit("fastrl demo: --steps and --envs must be at least 1")
    g = torch.Generator().manual_seed(seed)
    rewards = torch.rand(steps, envs, generator=g)
    values = torch.randn(steps, envs, generator=g)
    terminated = torch.rand(steps, envs, generator=g) < 0.01
    truncated = torch.rand(steps, envs, generator=g) < 0.005
    done = terminated | truncated
    last_value = torch.randn(envs, generator=g)
    next_values = returns.rollout_next_values(values, last_value)

    args = (rewards, values, next_values, terminated, done, 0.99, 0.95)
    ref_adv, _ = returns.gae_reference(*args)
    adv, ret = returns.gae(*args)
    print(f"GAE over a synthetic rollout of {steps} steps x {envs} envs "
          f"(backend: {'native' if _native.use_native(rewards.device) else 'torch'})")
    print(f"  advantages: mean {adv.mean():+.4f}, std {adv.std():.4f}; "
          f"bit-identical to the PyTorch reference: {torch.equal(adv, ref_adv)}")
    t_ref = _median_seconds(lambda: returns.gae_reference(*args), repeats=3)
    t_op = _median_seconds(lambda: returns.gae(*args))
    print(f"  median time: fastrl.ops.gae {t_op * 1e3:.3f} ms, PyTorch loop {t_ref * 1e3:.1f} ms "
          f"({t_ref / t_op:.0f}x)")
    print("Run `python -m fastrl info` to see the backend of every op.")
    return 0
