"""The losses of the policy-gradient trainers that need no kernel, in plain PyTorch: PPO's
value loss and the PPO loss of a diagonal Gaussian policy (continuous actions). They share the
PPO terms, aggregation and statistics of :mod:`fastrl.ops.ppo_loss`, so every PPO loss has one
definition of clipping and normalization.
"""

from __future__ import annotations

import math

import torch

from fastrl.ops import _checks
from fastrl.ops.ppo_loss import (
    DEFAULT_OPTIONS,
    PpoOptions,
    TokenTerms,
    _aggregate,
    _stats,
    _zero_masked,
    clamp,
    importance_log_ratio,
    ppo_terms_reference,
    takes_ppo_options,
)
from fastrl.utils.stats import masked_mean

__all__ = ["value_loss", "gaussian_ppo_loss"]


def value_loss(values, old_values, returns, *, clip=None, mask=None):
    """PPO's value loss ``0.5 * max((v - R)^2, (old + clip(v - old, -clip, clip) - R)^2)``
    averaged over valid tokens; ``clip=None`` gives the plain ``0.5 (v - R)^2``.

    ``values``, ``old_values`` and ``returns`` are floating tensors of one shape (no broadcasting:
    ``[N, 1]`` against ``[N]`` is an error), ``mask`` a bool-like tensor of that shape. Masked
    entries are never used (loss and gradient 0 there); an empty or all-masked batch gives 0."""
    _checks.floating("values", values)
    for name, x in (("old_values", old_values), ("returns", returns)):
        _checks.floating(name, x)
        _checks.same_shape(name, x, "values", values)
        _checks.same_device(name, x, "values", values)
    if clip is not None:
        clip = _checks.number("clip", clip, low=0.0)
    if mask is not None:
        mask = _checks.flag("mask", mask, "values", values)
        values, old_values, returns = _zero_masked(mask, values, old_values, returns)
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return masked_mean(0.5 * loss, mask)


@takes_ppo_options
def gaussian_ppo_loss(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, old_logprobs: torch.Tensor,
                      advantages: torch.Tensor, *, mask: torch.Tensor | None = None,
                      ref_logprobs: torch.Tensor | None = None,
                      opts: PpoOptions = DEFAULT_OPTIONS) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO loss of a diagonal Gaussian policy for continuous actions: ``mean [..., D]``,
    ``log_std [..., D]`` (or broadcastable, e.g. ``[D]``), ``actions [..., D]``; per-token
    inputs ``[...]`` (``old_logprobs``, ``advantages``, ``mask``, ``ref_logprobs``). logp and
    entropy are summed over the D action dims; the options as in :func:`ppo_loss`
    (``temperature`` does not apply and must stay 1; ``kl_coef != 0`` needs ``ref_logprobs``).
    Masked tokens are never used (loss and gradient 0 there); an empty or all-masked batch gives
    0. Returns ``(loss, stats)``."""
    if opts.temperature != 1.0:  # accepted so that one options dict serves ppo_loss and this one
        raise ValueError("temperature does not apply to gaussian_ppo_loss")
    _checks.floating("mean", mean)
    if mean.ndim == 0 or mean.shape[-1] == 0:
        raise ValueError(f"mean must be [..., D] with D >= 1, got shape {tuple(mean.shape)}")
    _checks.floating("log_std", log_std)
    _checks.broadcasts_to("log_std", log_std, "mean", mean)
    _checks.same_device("log_std", log_std, "mean", mean)
    _checks.floating("actions", actions)
    _checks.same_shape("actions", actions, "mean", mean)
    _checks.same_device("actions", actions, "mean", mean)
    batch_shape = mean.shape[:-1]
    for name, x in (("old_logprobs", old_logprobs), ("advantages", advantages), ("ref_logprobs", ref_logprobs)):
        if x is None and name == "ref_logprobs":
            continue
        _checks.floating(name, x)
        _checks.shape(name, x, batch_shape)
        _checks.same_device(name, x, "mean", mean)
    if ref_logprobs is None and opts.kl_coef != 0:
        raise ValueError("kl_coef != 0 needs ref_logprobs")
    if mask is not None:
        _checks.tensor("mask", mask)
        _checks.shape("mask", mask, batch_shape)
        mask = _checks.flag("mask", mask, "old_logprobs", old_logprobs)
        log_std = log_std.expand(mean.shape)
        mean, log_std, actions, old_logprobs, advantages, ref_logprobs = _zero_masked(
            mask, mean, log_std, actions, old_logprobs, advantages, ref_logprobs)  # fmt: skip

    # log N(a; mean, std) and the entropy of N(mean, std), as torch.distributions.Normal has them
    std = log_std.exp()
    logp = -((actions - mean) ** 2) / (2 * std**2) - log_std - math.log(math.sqrt(2 * math.pi))
    entropy = 0.5 + 0.5 * math.log(2 * math.pi) + log_std
    logp, entropy = logp.sum(-1), entropy.expand(mean.shape).sum(-1)
    log_ratio = importance_log_ratio(logp, old_logprobs, mask, opts.importance_level)
    terms = ppo_terms_reference(logp, entropy, log_ratio, advantages, ref_logprobs, opts)
    if mask is not None:
        terms = TokenTerms(*(torch.where(mask, t, 0) for t in terms))
    return _aggregate(terms.loss, mask, opts), _stats(terms, old_logprobs, mask, ref_logprobs is not None)
