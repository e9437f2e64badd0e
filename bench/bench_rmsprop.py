"""Centred RMSProp's step: fastrl.optim.RMSprop (one fused kernel pass per parameter) against
torch.optim.RMSprop (seven ops a parameter from a Python loop: ``foreach=False``, torch's choice on
the CPU, and ``foreach=True``, its choice on CUDA), with the MinAtar paper's settings.

Parameters: the MinAtar DQN's Q-network (Breakout, 136k parameters in 6 tensors: the step that
was a quarter of a DQN frame's time) and a 4-layer MLP of width 1024 (3.2M in 8 tensors). One
thread on the CPU, as the trainers run MinAtar.

    python -m pytest bench/bench_rmsprop.py --benchmark-only --benchmark-json bench/results/rmsprop-cpu.json
"""

import pytest
import torch

import fastrl.optim
from fastrl.nn import ConvQNetwork, mlp
from tests.conftest import threads

from .conftest import sync

NETWORKS = {
    "minatar_dqn_136k": lambda: ConvQNetwork((10, 10, 4), 3),
    "mlp_1024x4_3.2M": lambda: mlp([1024, 1024, 1024, 1024, 18], torch.nn.ReLU),
}
IMPLS = {
    "fastrl_rmsprop": lambda ps: fastrl.optim.RMSprop(ps, lr=2.5e-4, alpha=0.95, eps=0.01, centered=True),
    "torch_rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=2.5e-4, alpha=0.95, eps=0.01, centered=True,
                                                    foreach=False),
    "torch_rmsprop_foreach": lambda ps: torch.optim.RMSprop(ps, lr=2.5e-4, alpha=0.95, eps=0.01, centered=True,
                                                            foreach=True),
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_rmsprop_step(benchmark, device, network, impl):
    torch.manual_seed(0)
    net = NETWORKS[network]().to(device)
    params = list(net.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    opt = IMPLS[impl](params)

    def step():
        opt.step()
        sync(device)

    benchmark.group = f"RMSprop step {network} {device}"
    benchmark.extra_info.update(impl=impl, parameters=sum(p.numel() for p in params), tensors=len(params))
    with threads(1 if device == "cpu" else torch.get_num_threads()):
        step()  # the state's allocation, outside the timing
        benchmark.pedantic(step, rounds=30, iterations=10, warmup_rounds=2)
