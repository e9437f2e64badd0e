"""GAE throughput: fastrl's native kernel vs its PyTorch fallback and the loops people use.

Each (T, B) shape is one pytest-benchmark group; the table's ratios compare every
implementation with the others measured in the same process. Baselines:
  - numpy_loop:   the classic numpy backward loop (Stable-Baselines3 style);
  - cleanrl_loop: CleanRL's PyTorch loop over T;
  - torchrl_loop / torchrl_vec: torchrl's generalized_advantage_estimate /
    vec_generalized_advantage_estimate (when torchrl is installed: `pip install .[bench]`).
"""

import numpy as np
import pytest
import torch

from fastrl import _native
from fastrl.ops import gae

from .conftest import sync

SHAPES = [(128, 4096), (2048, 64), (8192, 8), (1024, 1024)]
GAMMA, LAM = 0.99, 0.95

try:
    from torchrl.objectives.value.functional import (
        generalized_advantage_estimate,
        vec_generalized_advantage_estimate,
    )
except ImportError:
    generalized_advantage_estimate = vec_generalized_advantage_estimate = None


def rollout(T, B, device="cpu"):
    g = torch.Generator().manual_seed(0)
    r = torch.randn(T, B, generator=g)
    v = torch.randn(T, B, generator=g)
    nv = torch.randn(T, B, generator=g)
    term = torch.rand(T, B, generator=g) < 0.01
    done = term | (torch.rand(T, B, generator=g) < 0.005)
    return [x.to(device) for x in (r, v, nv, term, done)]


def numpy_loop(r, v, nv, term, done):
    adv = np.zeros_like(r)
    last = np.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] + GAMMA * nv[t] * (1.0 - term[t]) - v[t]
        last = delta + GAMMA * LAM * (1.0 - done[t]) * last
        adv[t] = last
    return adv, adv + v


def cleanrl_loop(r, v, nv, term, done):
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] + GAMMA * nv[t] * (1.0 - term[t]) - v[t]
        adv[t] = last = delta + GAMMA * LAM * (1.0 - done[t]) * last
    return adv, adv + v


def _run(benchmark, fn, device, shape, impl):
    def call():
        out = fn()
        sync(device)
        return out

    benchmark.group = f"gae {device} T={shape[0]} B={shape[1]}"
    benchmark.extra_info.update(impl=impl, T=shape[0], B=shape[1], device=device)
    benchmark(call)


IMPLS = ["fastrl_native", "fastrl_fallback", "cleanrl_loop", "numpy_loop", "torchrl_loop", "torchrl_vec"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"T{s[0]}xB{s[1]}")
def test_gae_cpu(benchmark, shape, impl):
    T, B = shape
    r, v, nv, term, done = rollout(T, B)
    if impl == "fastrl_native":
        if _native._C is None:
            pytest.skip("fastrl._C not built")
        fn = lambda: gae(r, v, nv, term, done, GAMMA, LAM)
    elif impl == "fastrl_fallback":
        def fn():
            _native.set_backend("torch")
            try:
                return gae(r, v, nv, term, done, GAMMA, LAM)
            finally:
                _native.set_backend("auto")
    elif impl == "cleanrl_loop":
        tf, df = term.float(), done.float()
        fn = lambda: cleanrl_loop(r, v, nv, tf, df)
    elif impl == "numpy_loop":
        arrays = [x.numpy().astype(np.float32) for x in (r, v, nv, term, done)]
        fn = lambda: numpy_loop(*arrays)
    else:
        if generalized_advantage_estimate is None:
            pytest.skip("torchrl not installed (pip install .[bench])")
        f = generalized_advantage_estimate if impl == "torchrl_loop" else vec_generalized_advantage_estimate
        bt = [x.T.contiguous().unsqueeze(-1) for x in (v, nv, r, done, term)]  # [B, T, 1]
        fn = lambda: f(GAMMA, LAM, *bt)
    _run(benchmark, fn, "cpu", shape, impl)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["fastrl_native", "cleanrl_loop"])
@pytest.mark.parametrize("shape", SHAPES + [(1024, 65536)], ids=lambda s: f"T{s[0]}xB{s[1]}")
def test_gae_cuda(benchmark, shape, impl):
    T, B = shape
    r, v, nv, term, done = rollout(T, B, "cuda")
    if impl == "fastrl_native":
        fn = lambda: gae(r, v, nv, term, done, GAMMA, LAM)
    else:
        tf, df = term.float(), done.float()
        fn = lambda: cleanrl_loop(r, v, nv, tf, df)
    # Bytes a GAE pass must move: 3 float inputs + 2 bool flags in, 2 floats out.
    benchmark.extra_info["bytes"] = T * B * (3 * 4 + 2 + 2 * 4)
    _run(benchmark, fn, "cuda", shape, impl)
