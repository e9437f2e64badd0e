"""Centred RMSProp's update, fused: one pass over each parameter's elements instead of torch's
seven (``mul_``, ``addcmul_``, ``lerp_``, ``addcmul``, ``sqrt_``, ``add_``, ``addcdiv_``), with the
same roundings, so the result is bit-identical to ``torch.optim.RMSprop(centered=True)``'s on the
CPU. It is the MinAtar paper's DQN optimizer, whose step was a quarter of a DQN frame's time
(fastrl.optim.RMSprop uses it; docs/trainers.md has the figures).

:func:`rmsprop_centered_reference` below is the specification: torch.optim.RMSprop's own lines
(``_single_tensor_rmsprop``, centred, no momentum or weight decay). The kernels
(csrc/core/rmsprop.h) follow it operation by operation; the PyTorch fallback *is* the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastrl import _native

__all__ = ["rmsprop_centered_", "rmsprop_centered_reference"]


def rmsprop_centered_reference(params, grads, square_avgs, grad_avgs, lr: float, alpha: float, eps: float) -> None:
    """In place, for each parameter p with gradient g and state (square_avg, grad_avg)::

        square_avg = alpha * square_avg + (1 - alpha) * g^2
        grad_avg   = alpha * grad_avg + (1 - alpha) * g
        p         -= lr * g / (sqrt(square_avg - grad_avg^2) + eps)
    """
    for p, g, square_avg, grad_avg in zip(params, grads, square_avgs, grad_avgs):
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        grad_avg.lerp_(g, 1 - alpha)
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_().add_(eps)
        p.addcdiv_(g, avg, value=-lr)


def _dense(t: torch.Tensor) -> bool:
    """The elements fill one block of memory, each once (any order of dims): a flat pass works."""
    expected = 1
    for size, stride in sorted((d for d in zip(t.shape, t.stride()) if d[0] != 1), key=lambda d: d[1]):
        if stride != expected:
            return t.numel() == 0
        expected *= size
    return True


def _check(params, grads, square_avgs, grad_avgs, lr, alpha, eps) -> None:
    lists = {"params": params, "grads": grads, "square_avgs": square_avgs, "grad_avgs": grad_avgs}
    for name, xs in lists.items():
        if not isinstance(xs, Sequence) or not all(isinstance(x, torch.Tensor) for x in xs):
            raise TypeError(f"{name} must be a list of tensors")
    if len({len(xs) for xs in lists.values()}) > 1:
        raise ValueError("params, grads, square_avgs and grad_avgs must be lists of one length, got "
                         + ", ".join(f"{name} {len(xs)}" for name, xs in lists.items()))
    for name, x, lo, hi in (("lr", lr, 0.0, math.inf), ("alpha", alpha, 0.0, 1.0), ("eps", eps, 0.0, math.inf)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not lo <= x <= hi:
            raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {x!r}")
    problem = layout_problem(params, grads, square_avgs, grad_avgs)
    if problem is not None:
        raise problem[0](problem[1])


def layout_problem(params, grads, square_avgs, grad_avgs) -> tuple[type[Exception], str] | None:
    """Why the kernels cannot take these lists (the exception type and message), or None:
    tensor i of each alike in dtype (float32 or float64), device, shape and strides, and dense.
    fastrl.optim.RMSprop asks it to choose between the kernel and torch's own update."""
    for i, p in enumerate(params):
        if p.dtype not in (torch.float32, torch.float64):
            return TypeError, f"params[{i}] must be float32 or float64, got {p.dtype}"
        if p.device != params[0].device:
            return ValueError, f"params[{i}] is on {p.device} but params[0] is on {params[0].device}"
        if not _dense(p):
            return ValueError, f"params[{i}] must be dense (no gaps or overlaps), got strides {p.stride()}"
        for name, t in (("grads", grads[i]), ("square_avgs", square_avgs[i]), ("grad_avgs", grad_avgs[i])):
            if (t.dtype, t.device, t.shape, t.stride()) != (p.dtype, p.device, p.shape, p.stride()):
                return ValueError, (f"{name}[{i}] must have params[{i}]'s dtype, device, shape and strides "
                                    f"({p.dtype}, {p.device}, {tuple(p.shape)}, {p.stride()}), got "
                                    f"({t.dtype}, {t.device}, {tuple(t.shape)}, {t.stride()})")
    return None


def rmsprop_centered_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                      square_avgs: Sequence[torch.Tensor], grad_avgs: Sequence[torch.Tensor],
                      lr: float, alpha: float, eps: float) -> None:
    """One centred RMSProp step, in place on ``params``, ``square_avgs`` and ``grad_avgs``
    (:func:`rmsprop_centered_reference` is the math).

    Args:
        params, grads, square_avgs, grad_avgs: lists of one length; tensor i of each alike in dtype
            (float32 or float64), device, shape and strides, and dense (any memory format).
        lr: step size, >= 0. alpha: the averages' decay, in [0, 1]. eps: added to the root, >= 0.
    """
    _check(params, grads, square_avgs, grad_avgs, lr, alpha, eps)
    rmsprop_centered_unchecked_(params, grads, square_avgs, grad_avgs, lr, alpha, eps)


def rmsprop_centered_unchecked_(params, grads, square_avgs, grad_avgs, lr: float, alpha: float, eps: float) -> None:
    """:func:`rmsprop_centered_` on arguments already checked (fastrl.optim.RMSprop's, whose
    layout :func:`layout_problem` passed and whose hyper-parameters torch's optimizer checked)."""
    if not params:
        return
    if _native.use_native(params[0].device):
        torch.ops.fastrl.rmsprop_centered_(list(params), list(grads), list(square_avgs), list(grad_avgs),
                                           float(lr), float(alpha), float(eps))
    else:
        rmsprop_centered_reference(params, grads, square_avgs, grad_avgs, lr, alpha, eps)


if _native._C is not None:  # no outputs: the fake kernel only has to exist (torch.compile, opcheck)
    torch.library.register_fake("fastrl::rmsprop_centered_")(lambda *args: None)
