"""``Linear``: ``nn.Linear`` whose float32 CPU matrix products go through oneDNN where MKL is slow.

torch multiplies CPU float32 matrices with MKL's sgemm. MKL chooses its kernels by CPU vendor: on
AMD cores with AVX-512 (Zen 4 and 5) it runs its AVX2 kernels. oneDNN, which torch also carries,
chooses by instruction set. On this project's AMD EPYC machine (Zen 5, one thread), the MinAtar
networks' 1024 -> 128 layer takes, forward / input gradient / weight gradient, in microseconds:

    batch     32:  MKL   91 / 106 /   89    oneDNN   60 /   57 /   56
    batch   1024:  MKL 2603 / 2476 / 2577    oneDNN 1105 / 1085 / 1216

That makes PPO on MinAtar about 1.25x faster end to end (docs/trainers.md). So on such CPUs (AVX-512
and not Intel's, where MKL already uses it) a ``Linear`` computes its forward and both gradients
with oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, the op torch's own compiler emits for
CPU linear layers). Everywhere else, in other dtypes, on other devices, and while torch.compile,
torch.export or tracing records the graph, it is ``nn.Linear``. ``FASTRL_ONEDNN_LINEAR=0`` or ``1``
overrides the choice. Both are float32 GEMMs: results differ from MKL's in the last bits (another
summation order), and the same machine and setting always compute the same thing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _onednn_wins() -> bool:
    """Whether ``Linear`` takes oneDNN's path on this machine (see the module's docstring)."""
    setting = os.environ.get("FASTRL_ONEDNN_LINEAR", "auto")
    if setting not in ("auto", "0", "1"):
        raise ValueError(f"FASTRL_ONEDNN_LINEAR must be auto, 0 or 1, got {setting!r}")
    available = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    if setting != "auto":
        return setting == "1" and available
    return (available and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and _cpu_vendor() != "GenuineIntel")


ONEDNN = _onednn_wins()


def _matmul_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` for 2-D ``a [M, K]``, ``b [N, K]`` (strided views too) by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # x [M, in], weight [out, in], bias [out] or None
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _matmul_t(x, weight, bias)

    @staticmethod
    @once_differentiable  # its products have no derivative of their own: a double backward says so
    def backward(ctx, grad):  # grad [M, out]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = _matmul_t(grad, weight.t()) if ctx.needs_input_grad[0] else None  # [M, in]
        grad_w = _matmul_t(grad.t(), x.t()) if ctx.needs_input_grad[1] else None  # [out, in]
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _recording() -> bool:
    """A graph is being recorded (torch.compile, torch.export, jit tracing): plain ops only."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose float32 CPU products run on oneDNN
    where that is faster (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _recording() or not (ONEDNN and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                                and x.device.type == "cpu" and self.weight.device.type == "cpu" and x.numel() > 0):
            return F.linear(x, self.weight, self.bias)
        out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)
