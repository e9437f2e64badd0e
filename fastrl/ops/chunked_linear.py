"""A reusable "fused linear" base: a per-row function of ``x @ weight.T + bias`` computed a chunk
of rows at a time, so the full ``[N, V]`` output of the linear layer (an LM head's logits) never
exists, in the forward or the backward. ``ppo_loss_from_hidden`` and ``token_logprobs`` with
``weight`` are built on it; any per-token loss of the logits can be.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastrl.ops import _checks

__all__ = ["ChunkedLinear", "DOUBLE_BACKWARD_ERROR", "check_linear", "default_chunk_size"]

DOUBLE_BACKWARD_ERROR = (
    "fastrl: ppo_loss_from_hidden, token_logprobs and the native ppo_loss kernels are differentiable "
    "once; a second derivative (a grad of a grad taken with create_graph=True) is not supported. For "
    "higher-order gradients use ppo_loss on logits with the PyTorch backend (fastrl.set_backend('torch') "
    "or FASTRL_BACKEND=torch)."
)


class ChunkedLinear(torch.autograd.Function):
    """``row_fn(x[rows] @ weight.T + bias, *token_args[rows])`` one chunk of rows at a time.

    Only one chunk of logits ``[chunk_size, V]`` (and its gradient) exists at a time: the
    backward recomputes it, runs row_fn's own backward (the fused kernel when native) and
    accumulates into the gradients of x ``[N, H]``, weight ``[V, H]`` and bias ``[V]``.
    ``row_fn`` returns a tuple of ``[rows]`` tensors; token_args are ``[N]`` tensors or None.

    Differentiable once: the backward computes its gradients without a graph, so a second
    derivative through them raises (see _FirstOrderOnly) instead of silently being 0.
    """

    @staticmethod
    def forward(ctx, row_fn, chunk_size, x, weight, bias, *token_args):
        ctx.row_fn, ctx.chunk_size = row_fn, chunk_size
        ctx.save_for_backward(x, weight, bias, *token_args)
        outs = [row_fn(F.linear(x[rows], weight, bias), *_rows_of(token_args, rows))
                for rows in _chunks(x.shape[0], chunk_size)]  # fmt: skip
        return tuple(torch.cat(parts) for parts in zip(*outs))

    @staticmethod
    def backward(ctx, *grads):
        x, weight, bias, *token_args = ctx.saved_tensors
        create_graph = torch.is_grad_enabled()
        with torch.no_grad():
            grad_x = torch.empty_like(x)
            # the weight and bias gradients sum over every chunk: in float32 (or wider), rounded to
            # the weight's dtype once, not once per chunk (bf16 would lose the small late chunks)
            acc = torch.promote_types(weight.dtype, torch.float32)
            grad_w = torch.zeros_like(weight, dtype=acc)
            grad_b = None if bias is None else torch.zeros_like(bias, dtype=acc)
            for rows in _chunks(x.shape[0], ctx.chunk_size):
                logits = F.linear(x[rows], weight, bias)
                with torch.enable_grad():
                    logits.requires_grad_()
                    outs = ctx.row_fn(logits, *_rows_of(token_args, rows))
                    used = [(o, g[rows]) for o, g in zip(outs, grads) if o.requires_grad and g is not None]
                    outs, out_grads = zip(*used)
                    (grad_logits,) = torch.autograd.grad(outs, logits, out_grads)
                grad_x[rows] = grad_logits @ weight
                if acc == weight.dtype:
                    grad_w.addmm_(grad_logits.t(), x[rows])
                else:
                    grad_w += grad_logits.t() @ x[rows]
                if grad_b is not None:
                    grad_b += grad_logits.sum(0, dtype=acc)
            grad_w = grad_w.to(weight.dtype)
            grad_b = None if grad_b is None else grad_b.to(weight.dtype)
        if create_graph:
            grad_x, grad_w, grad_b = _FirstOrderOnly.apply(x, weight, bias, grad_x, grad_w, grad_b)
        return None, None, grad_x, grad_w, grad_b, *(None for _ in token_args)


class _FirstOrderOnly(torch.autograd.Function):
    """Passes gradients computed without a graph through, tied to the tensors they depend on
    (x, weight, bias), with a backward that raises: differentiating them again would otherwise
    treat them as constants and give 0 in silence."""

    @staticmethod
    def forward(ctx, x, weight, bias, *grads):
        return tuple(None if g is None else g.view_as(g) for g in grads)

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(DOUBLE_BACKWARD_ERROR)


def check_linear(hidden, weight, bias, chunk_size) -> int:
    """Checks the arguments of a chunked linear layer; returns the output width V."""
    _checks.floating("hidden", hidden)
    if hidden.ndim == 0 or hidden.shape[-1] == 0:
        raise ValueError(f"hidden must be [..., V] with V >= 1, got shape {tuple(hidden.shape)}")
    _checks.floating("weight", weight)
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1] or weight.shape[0] == 0:
        raise ValueError(
            f"weight must be [V, H] with H = hidden.shape[-1] = {hidden.shape[-1]}, got {tuple(weight.shape)}"
        )
    _checks.same_device("weight", weight, "hidden", hidden)
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight must have the dtype of hidden ({hidden.dtype}), got {weight.dtype}")
    if bias is not None:
        _checks.floating("bias", bias)
        if bias.shape != weight.shape[:1] or bias.dtype != weight.dtype:
            raise ValueError(f"bias must be [V] = [{weight.shape[0]}] of {weight.dtype}, "
                             f"got {tuple(bias.shape)} {bias.dtype}")
        _checks.same_device("bias", bias, "hidden", hidden)
    if chunk_size is not None:
        _checks.positive_int("chunk_size", chunk_size)
    return weight.shape[0]


def default_chunk_size(hidden: torch.Tensor, vocab: int) -> int:
    """Rows whose logits hold about as many elements as ``hidden [N, H]`` (as liger-kernel's
    fused linear losses do), at least 32 so the matmuls stay efficient."""
    rows = hidden.numel() // hidden.shape[-1]
    return max(32, math.ceil(rows * hidden.shape[-1] / vocab))


def _chunks(n: int, size: int):
    """Row slices of at most ``size``; one empty slice when n = 0, so outputs still get built."""
    return [slice(i, min(i + size, n)) for i in range(0, max(n, 1), size)]


def _rows_of(tensors, rows: slice):
    return [None if t is None else t[rows] for t in tensors]
