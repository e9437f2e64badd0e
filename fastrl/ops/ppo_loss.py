"""PPO + KL loss on the logits of a categorical policy (a language model or a discrete-action
agent), and token log-probs: the fused ops and their PyTorch references.

The ``*_reference`` functions are the specification: log_softmax + gather and one line per
formula. The native path (csrc/core/ppo_loss.h) computes every per-token quantity in one pass
over each row of logits (online softmax) and, in the backward, writes the logits gradient in a
second pass from the saved per-row logsumexp and entropy: besides the gradient itself it keeps
only a few ``[N]`` float32 vectors, where log_softmax would keep float32 copies of the logits.
``ppo_loss_from_hidden`` goes further and never builds the full logits: it multiplies hidden
states by the LM head one chunk of rows at a time, in the forward and again in the backward
(:mod:`fastrl.ops.chunked_linear`). The value loss and the Gaussian-policy loss, plain PyTorch,
are in :mod:`fastrl.ops.plain_losses`.

Only the part that touches ``[N, V]`` is fused. Aggregation over tokens and the stats run in
PyTorch on ``[N]`` tensors, shared by every path, so normalization has one definition.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from fastrl import _native
from fastrl.ops import _checks
from fastrl.ops.chunked_linear import (
    DOUBLE_BACKWARD_ERROR,
    ChunkedLinear,
    check_linear,
    default_chunk_size,
)
from fastrl.utils.stats import masked_mean

__all__ = [
    "ppo_loss",
    "ppo_loss_from_hidden",
    "token_logprobs",
    "PpoLoss",
    "TokenLogprobs",
    "PpoOptions",
    "takes_ppo_options",
    "ppo_loss_reference",
    "token_logprobs_reference",
    "KL_ESTIMATORS",
    "NORMALIZATIONS",
    "IMPORTANCE_LEVELS",
    "POLICY_LOSSES",
]

KL_ESTIMATORS = ("k1", "k2", "k3")
NORMALIZATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "constant")
IMPORTANCE_LEVELS = ("token", "sequence")
POLICY_LOSSES = ("ppo", "cispo")


@dataclass(frozen=True, kw_only=True)
class PpoOptions:
    """The loss options, checked; build it with keywords. See :func:`ppo_loss` for their meaning."""

    clip_low: float = 0.2
    clip_high: float | None = None
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    temperature: float = 1.0
    normalize: str = "token_mean"
    max_len: int | None = None
    importance_level: str = "token"
    policy_loss: str = "ppo"
    kl_ratio_weighted: bool = False

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("clip_low", _checks.number("clip_low", self.clip_low, low=0.0))
        high = self.clip_low if self.clip_high is None else self.clip_high
        set_("clip_high", _checks.number("clip_high", high, low=0.0))
        if self.dual_clip is not None:
            set_("dual_clip", _checks.number("dual_clip", self.dual_clip, low=1.0, low_inclusive=False))
        set_("kl_coef", _checks.number("kl_coef", self.kl_coef, low=-math.inf))
        _checks.choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        set_("entropy_coef", _checks.number("entropy_coef", self.entropy_coef, low=-math.inf))
        set_("temperature", _checks.number("temperature", self.temperature, low=0.0, low_inclusive=False))
        _checks.choice("normalize", self.normalize, NORMALIZATIONS)
        if self.max_len is not None:
            set_("max_len", _checks.positive_int("max_len", self.max_len))
        _checks.choice("importance_level", self.importance_level, IMPORTANCE_LEVELS)
        _checks.choice("policy_loss", self.policy_loss, POLICY_LOSSES)
        if self.policy_loss == "cispo" and self.dual_clip is not None:
            raise ValueError("dual_clip applies to policy_loss='ppo' only (CISPO's pg is bounded by its clip)")
        if not isinstance(self.kl_ratio_weighted, bool):
            raise TypeError(f"kl_ratio_weighted must be a bool, got {type(self.kl_ratio_weighted).__name__}")


DEFAULT_OPTIONS = PpoOptions()
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PpoOptions))


def takes_ppo_options(fn):
    """``fn(..., opts=PpoOptions(...))`` called as ``fn(..., clip_low=0.2, kl_coef=0.1, ...)``: the
    loss options are keyword arguments defined once, by :class:`PpoOptions`, and the signature
    (``help()``, editors) lists them in place of ``opts``."""
    sig = inspect.signature(fn)
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in dataclasses.fields(PpoOptions)]  # fmt: skip

    @functools.wraps(fn)
    def with_options(*args, **kwargs):
        opts = PpoOptions(**{k: v for k, v in kwargs.items() if k in _OPTION_NAMES})
        return fn(*args, opts=opts, **{k: v for k, v in kwargs.items() if k not in _OPTION_NAMES})

    with_options.__signature__ = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name != "opts"] + options)
    return with_options


class PpoLoss(NamedTuple):
    """What :func:`ppo_loss` and :func:`ppo_loss_from_hidden` return."""

    loss: torch.Tensor  # scalar
    stats: dict[str, torch.Tensor]  # detached scalars


class TokenLogprobs(NamedTuple):
    """What :func:`token_logprobs` returns: ``[...]`` per token."""

    logp: torch.Tensor
    entropy: torch.Tensor


class TokenTerms(NamedTuple):
    """Per-token terms, each ``[N]`` in float32 (float64 for float64 logits), 0 where masked."""

    loss: torch.Tensor  # pg + kl_coef * kl - entropy_coef * entropy
    logp: torch.Tensor
    entropy: torch.Tensor
    ratio: torch.Tensor
    kl: torch.Tensor  # to the reference policy; 0 without ref_logprobs
    clipped: torch.Tensor  # 1.0 where a clip (either bound, or the dual clip) set pg


# --------------------------------------------------------------------------- the specification


def token_logprobs_reference(logits, actions, temperature=1.0):
    """``logp = log softmax(logits / temperature)[action]`` and ``entropy = -sum p log p`` per
    token, in float32 (float64 for float64 logits)."""
    logprobs = torch.log_softmax(logits.to(_acc_dtype(logits)) / temperature, dim=-1)
    logp = logprobs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    # p log p -> 0 as p -> 0: a -inf logit (a banned action) adds 0 to the entropy and gets no
    # gradient from it, instead of 0 * -inf = NaN in both.
    entropy = -(logprobs.exp() * torch.where(logprobs == -math.inf, 0, logprobs)).sum(-1)
    return logp, entropy


def clamp(x: torch.Tensor, low, high) -> torch.Tensor:
    """``torch.clamp(x, low, high)``, the bounds given as 0-dim tensors of x's dtype (the same
    values): under torch.compile a float bound that changes between calls is symbolic, and a
    float argument of clamp would compile one graph per value; a tensor argument does not."""
    one = x.new_ones(())
    return torch.clamp(x, one * low, one * high)


def clipped_pg_reference(ratio, advantages, opts: PpoOptions):
    """``(pg, was_clipped)``: the clipped policy-gradient loss per token, and where a clip (either
    bound, or the dual clip) set it."""
    unclipped = -ratio * advantages
    clipped = -clamp(ratio, 1 - opts.clip_low, 1 + opts.clip_high) * advantages
    pg = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if opts.dual_clip is not None:  # Ye et al. 2020: bound the loss of negative advantages
        dual = torch.minimum(pg, -opts.dual_clip * advantages)
        was_clipped = was_clipped | ((advantages < 0) & (dual < pg))
        pg = torch.where(advantages < 0, dual, pg)
    return pg, was_clipped


def _kl_term(kl_coef, kl: torch.Tensor) -> torch.Tensor:
    """kl_coef * kl, counted only when kl_coef != 0: k3's estimate overflows to inf in float32 far
    from the reference, and 0 * inf would make the loss NaN."""
    if torch.compiler.is_compiling() or isinstance(kl_coef, torch.Tensor):
        # No branch on the value: one graph serves every kl_coef. (Only the forward is guarded
        # here: where kl overflows with kl_coef = 0, the gradient through it is still 0 * inf.)
        coef = kl.new_ones(()) * kl_coef
        return torch.where(coef != 0, coef * kl, 0)
    return kl_coef * kl if kl_coef != 0 else torch.zeros_like(kl)


def importance_log_ratio(logp, old_logprobs, mask, level: str):
    """The log importance ratio per token, ``[..., L]`` (a sequence per row of the last dim).
    "token": ``logp - old``. "sequence" (GSPO, Zheng et al. 2025): the sequence's mean of it over
    its valid tokens, ``log s_i``, in the convention of TRL and verl: ``sg(log s_i) + logp -
    sg(logp)``, whose value is ``log s_i`` and whose gradient in the token's own logp is 1, so
    the per-token loss keeps its meaning under every ``normalize`` (with constant weights over a
    sequence this is the gradient of GSPO's ``s_i``). A sequence without valid tokens gets 0."""
    log_ratio = logp - old_logprobs
    if level == "token":
        return log_ratio
    shape = log_ratio.shape
    seq = log_ratio.reshape(math.prod(shape[:-1]), shape[-1]) if len(shape) else log_ratio.reshape(1, 1)  # [S, L]
    valid = torch.ones_like(seq, dtype=torch.bool) if mask is None else mask.reshape(seq.shape)
    mean = torch.where(valid, seq, 0).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
    return logp - logp.detach() + mean.expand(seq.shape).reshape(logp.shape).detach()


def ppo_terms_reference(logp, entropy, log_ratio, advantages, ref_logprobs, opts: PpoOptions, token_weights=None):
    """Per-token PPO terms from log-probs and the log importance ratio (no masking): returns
    ``TokenTerms``."""
    if opts.policy_loss == "cispo":  # MiniMax-M1: a clipped, constant weight on -A logp
        ratio = torch.exp(log_ratio.detach())  # no gradient: an infinite ratio would give 0 * inf
        weight = clamp(ratio, 1 - opts.clip_low, 1 + opts.clip_high)
        pg = -weight * advantages * logp
        was_clipped = weight != ratio
    else:
        with torch.no_grad():
            _, was_clipped = clipped_pg_reference(torch.exp(log_ratio), advantages, opts)
        # Where a clip set pg it is constant in logp, so no gradient may flow there; cut before
        # exp, or autograd forms 0 * ratio = NaN where ratio = inf (old_logprobs = -inf).
        ratio = torch.exp(torch.where(was_clipped, log_ratio.detach(), log_ratio))
        pg, _ = clipped_pg_reference(ratio, advantages, opts)
    if token_weights is not None:
        pg = pg * token_weights
    if ref_logprobs is None:
        kl = torch.zeros_like(logp)
    elif opts.kl_estimator == "k1":
        kl = logp - ref_logprobs
    elif opts.kl_estimator == "k2":
        kl = 0.5 * (logp - ref_logprobs) ** 2
    else:  # k3 (Schulman's unbiased, always >= 0 estimator)
        x = ref_logprobs - logp
        kl = torch.exp(x) - x - 1
    if ref_logprobs is not None and opts.kl_ratio_weighted:  # TRL's use_bias_correction_kl
        kl = kl * torch.exp(log_ratio)
    loss = pg + _kl_term(opts.kl_coef, kl) - opts.entropy_coef * entropy
    return TokenTerms(loss, logp, entropy, ratio, kl, was_clipped.to(logp.dtype))


@takes_ppo_options
def ppo_loss_reference(logits, actions, old_logprobs, advantages, *, mask=None, ref_logprobs=None,
                       token_weights=None, num_tokens=None, num_sequences=None,
                       opts: PpoOptions = DEFAULT_OPTIONS):  # fmt: skip
    """The specification of :func:`ppo_loss` (same arguments), with autograd through
    log_softmax. Per-token inputs are ``[...]`` like ``logits[..., 0]``."""
    acc = _acc_dtype(logits)
    counts = _check_counts(num_tokens, num_sequences)
    if mask is not None:  # masked tokens: inputs never used, outputs and gradients 0
        mask = mask.bool()
        logits, old_logprobs, advantages, ref_logprobs, token_weights = _zero_masked(
            mask, logits, old_logprobs, advantages, ref_logprobs, token_weights)  # fmt: skip
    logp, entropy = token_logprobs_reference(logits, actions, opts.temperature)
    ref = None if ref_logprobs is None else ref_logprobs.to(acc)
    weights = None if token_weights is None else token_weights.to(acc)
    log_ratio = importance_log_ratio(logp, old_logprobs.to(acc), mask, opts.importance_level)
    terms = ppo_terms_reference(logp, entropy, log_ratio, advantages.to(acc), ref, opts, weights)
    if mask is not None:
        terms = TokenTerms(*(torch.where(mask, t, 0) for t in terms))
    return PpoLoss(_aggregate(terms.loss, mask, opts, *counts), _stats(terms, old_logprobs, mask, ref is not None))


# --------------------------------------------------------------------------- public ops


@takes_ppo_options
def ppo_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    opts: PpoOptions = DEFAULT_OPTIONS,
    validate: bool | None = None,
) -> PpoLoss:
    """Clipped PPO loss with a KL penalty to a reference policy and an entropy bonus.

    Per token (logits z, action a, temperature T, token weight w, default 1):
        logp  = z[a] / T - logsumexp(z / T),   ratio = exp(logp - old_logprobs)
        pg    = -min(ratio A, clip(ratio, 1 - clip_low, 1 + clip_high) A) w
                (dual_clip c > 1: for A < 0, pg = min(pg, -c A) before w)
        KL    = k1: logp - ref,  k2: (logp - ref)^2 / 2,  k3: exp(ref - logp) - (ref - logp) - 1
                (kl_ratio_weighted: KL ratio, TRL's use_bias_correction_kl, whose gradient flows
                through the ratio too, as in TRL)
        H     = -sum p log p
        loss  = pg + kl_coef KL - entropy_coef H
    policy_loss="cispo" (MiniMax-M1, arXiv 2506.13585; verl's compute_policy_loss_cispo):
        pg    = -sg(clip(ratio, 1 - clip_low, 1 + clip_high)) A logp w
    whose gradient flows through logp alone, clipped or not (no dual clip). TRL's loss_type
    "cispo" clamps only above, at epsilon_high: clip_low=1, clip_high=epsilon_high - 1 here.
    importance_level="sequence" (GSPO, arXiv 2507.18071): ratio is the sequence's
        s_i = exp(mean over its valid tokens of (logp - old_logprobs))
    at each of its tokens, as sg(s_i) exp(logp - sg(logp)) (TRL's and verl's convention): its
    value is s_i, its gradient in the token's own logp is s_i, so the per-token loss above and
    every ``normalize`` keep their meaning; under "seq_mean_token_mean" this is exactly GSPO's
    per-sequence clipped loss and gradient. Advantages are used per token as given (GSPO
    assumes them constant over a sequence, as GRPO's are). A sequence without valid tokens
    contributes 0.
    aggregated over valid tokens (``mask`` True) by ``normalize``:
        "token_mean":          sum / number of valid tokens
        "seq_mean_token_mean": mean over sequences (with a valid token) of the token mean
        "seq_mean_token_sum":  mean over sequences (with a valid token) of the token sum
        "constant":            sum / (number of sequences * max_len), max_len default T
    A sequence is a row of the last per-token dim: per-token tensors ``[B, T]`` hold B
    sequences; 1-D ones are a single sequence. An all-masked or empty batch gives loss 0.

    Global normalization (a batch split over micro-batches or ranks): ``num_tokens`` replaces the
    number of valid tokens of "token_mean", ``num_sequences`` the number of sequences of the
    other modes (for the seq_mean modes, those with a valid token), each counted over the whole
    batch. Then the losses of the parts sum to the whole batch's loss, and so do their gradients,
    however the batch is split (the split-dependent mean is the bug TRL #3231 and verl #2776
    fixed). The sequence modes still take each sequence's own token mean. A count that the mode
    does not use is ignored.

    Args:
        logits: ``[..., V]`` float16/bfloat16/float32/float64; the only input that gets a gradient.
            A -inf logit (a banned action) has probability 0 and gets gradient 0.
        actions: integer ``[...]`` in [0, V).
        old_logprobs, advantages, ref_logprobs: floating ``[...]``; ref_logprobs is needed when
            kl_coef != 0 (without it KL = 0). old_logprobs = -inf gives ratio = inf: where a clip
            then sets pg, the token's gradient is that of a large finite ratio (no NaN).
        mask: optional bool-like ``[...]``; masked tokens are never read (NaN or inf there changes
            nothing), cost nothing and get zero gradient.
        token_weights: optional floating ``[...]``, a weight on each token's pg term only (as
            TRL's and verl's truncated importance weights for a rollout/training mismatch, or an
            entropy mask): KL and entropy terms and the normalizers are unchanged.
        num_tokens, num_sequences: optional global counts (positive, finite numbers; see above).
        validate: check that actions are in [0, V) (a host sync on CUDA); default: on the CPU.

    Returns ``PpoLoss(loss, stats)``: a scalar in float32 (float64 for float64 logits) and detached
    scalar tensors (no host sync) averaged over valid tokens: ``clip_fraction``, ``approx_kl``
    (k3 estimate of KL(old || new)), ``entropy``, ``ratio_mean``, ``ratio_max`` and, with
    ``ref_logprobs``, ``kl_ref``.

    Actions outside [0, V) raise ValueError on the CPU. On CUDA that check would cost a host
    sync, so unless ``validate=True`` it is skipped: the native kernel writes NaN for such tokens
    (never reads outside the row), which makes the loss NaN. Under torch.compile the wrapper
    does not check; the CPU kernel raises instead.

    Differentiable once with the native kernels (a second derivative raises); the PyTorch
    backend supports higher-order gradients.
    """
    vocab = _check_logits("logits", logits)
    tokens = _check_tokens(logits.shape[:-1], vocab, "logits", logits, actions, old_logprobs, advantages,
                           ref_logprobs, mask, opts, validate, token_weights)  # fmt: skip
    counts = _check_counts(num_tokens, num_sequences)
    terms = _token_terms(logits.reshape(-1, vocab), tokens, opts, _seq_len(logits.shape[:-1], opts))
    return _finish(terms, tokens, logits.shape[:-1], opts, counts)


@takes_ppo_options
def ppo_loss_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    mask: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    opts: PpoOptions = DEFAULT_OPTIONS,
    validate: bool | None = None,
) -> PpoLoss:
    """:func:`ppo_loss` on ``logits = hidden @ weight.T + bias`` without building them: rows
    are processed ``chunk_size`` at a time (``[chunk_size, V]`` logits, recomputed in the
    backward), and gradients flow to ``hidden [..., H]``, ``weight [V, H]`` and ``bias [V]``.
    The default chunk_size makes a chunk of logits about as big as ``hidden`` (at least 32
    rows), so the extra memory is about 2 H / V of the full logits. The weight gradient is
    accumulated in the weight's dtype, one chunk after another. Masked tokens' hidden states are
    never used (a NaN there reaches no gradient). The options, ``token_weights``, ``num_tokens``
    and ``num_sequences`` are :func:`ppo_loss`'s. importance_level="sequence" costs one more
    chunked forward (without gradient) first, for the sequences' ratios: each chunk's loss needs
    them, and a chunk holds part of a sequence.
    Differentiable once on every backend."""
    vocab = check_linear(hidden, weight, bias, chunk_size)
    chunk_size = default_chunk_size(hidden, vocab) if chunk_size is None else chunk_size
    tokens = _check_tokens(hidden.shape[:-1], vocab, "hidden", hidden, actions, old_logprobs, advantages,
                           ref_logprobs, mask, opts, validate, token_weights)  # fmt: skip
    counts = _check_counts(num_tokens, num_sequences)
    if tokens.mask is not None:  # a NaN there would reach the weight gradient (0 * NaN)
        (hidden,) = _zero_masked(tokens.mask.reshape(hidden.shape[:-1]), hidden)
    chunk_tokens = tokens
    if opts.importance_level == "sequence":
        # The chunks run at the token level with old' = logp - log s_i, so that their ratio
        # exp(logp - old') is the sequence's s_i (logp recomputed identically, chunk by chunk).
        with torch.no_grad():
            logp = token_logprobs(hidden, actions, weight=weight, bias=bias, temperature=opts.temperature,
                                  mask=mask, chunk_size=chunk_size, validate=False).logp.reshape(-1)  # fmt: skip
            seq_len = _seq_len(hidden.shape[:-1], opts)
            log_ratio = _flat_log_ratio(logp, tokens.old_logprobs, tokens.mask, seq_len)
            chunk_tokens = tokens._replace(old_logprobs=logp - log_ratio)
    row_fn = lambda logits, *token_args: _token_terms(logits, _Tokens(*token_args), opts)
    outs = ChunkedLinear.apply(row_fn, chunk_size, hidden.reshape(-1, hidden.shape[-1]), weight,
                                bias, *chunk_tokens)  # fmt: skip
    return _finish(TokenTerms(*outs), tokens, hidden.shape[:-1], opts, counts)


def token_logprobs(
    x: torch.Tensor,
    actions: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    validate: bool | None = None,
) -> TokenLogprobs:
    """Per-token ``TokenLogprobs(logp, entropy)`` of ``softmax(logits / temperature)`` at ``actions``, in
    float32 (float64 for float64 logits), without a full log-softmax — for old and reference
    log-probs, or any loss of them (differentiable).

    ``x`` is the logits ``[..., V]``, or, when ``weight [V, H]`` is given, hidden states
    ``[..., H]`` whose logits ``x @ weight.T + bias`` are built ``chunk_size`` rows at a time
    (default: as in :func:`ppo_loss_from_hidden`).
    Masked tokens (``mask`` False) are never read, get 0 and cost nothing. ``bias`` and
    ``chunk_size`` need ``weight``; ``validate`` as in :func:`ppo_loss`. Differentiable once with
    the native kernels or with ``weight`` (a second derivative raises).
    """
    temperature = _checks.number("temperature", temperature, low=0.0, low_inclusive=False)
    if weight is None:
        for name, value in (("bias", bias), ("chunk_size", chunk_size)):
            if value is not None:
                raise ValueError(f"{name} applies only with weight (x = hidden states); got weight=None")
        vocab = _check_logits("logits", x)
    else:
        vocab = check_linear(x, weight, bias, chunk_size)
        chunk_size = default_chunk_size(x, vocab) if chunk_size is None else chunk_size
    like_name = "logits" if weight is None else "hidden"
    actions, mask = _check_actions(x.shape[:-1], vocab, like_name, x, actions, mask, validate)
    if weight is not None and mask is not None:  # a NaN there would reach the weight gradient
        (x,) = _zero_masked(mask.reshape(x.shape[:-1]), x)
    row_fn = lambda logits, acts, m: _token_logprobs_rows(logits, acts, m, temperature)
    if weight is None:
        logp, entropy = row_fn(x.reshape(-1, vocab), actions, mask)
    else:
        logp, entropy = ChunkedLinear.apply(row_fn, chunk_size, x.reshape(-1, x.shape[-1]),
                                            weight, bias, actions, mask)  # fmt: skip
    return TokenLogprobs(logp.reshape(x.shape[:-1]), entropy.reshape(x.shape[:-1]))


# --------------------------------------------------------------------------- shared pieces


class _Tokens(NamedTuple):
    """Flattened per-token inputs: ``[N]``, in the accumulation dtype (actions int64)."""

    actions: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor | None
    mask: torch.Tensor | None  # bool
    token_weights: torch.Tensor | None


def _acc_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _seq_len(batch_shape, opts: PpoOptions) -> int:
    """The op's seq_len: 0 for token-level importance, else the length L of the sequences
    (the last per-token dim; 1-D inputs are one sequence)."""
    if opts.importance_level == "token" or math.prod(batch_shape) == 0:
        return 0
    return batch_shape[-1] if len(batch_shape) else 1


def _flat_log_ratio(logp, old, mask, seq_len: int) -> torch.Tensor:
    """importance_log_ratio of flat ``[N]`` tokens: sequence level over runs of seq_len > 0."""
    if seq_len == 0:
        return logp - old
    shape = (-1, seq_len)
    seq_mask = None if mask is None else mask.reshape(shape)
    return importance_log_ratio(logp.reshape(shape), old.reshape(shape), seq_mask, "sequence").reshape(-1)


def _token_terms(logits: torch.Tensor, t: _Tokens, opts: PpoOptions, seq_len: int = 0) -> TokenTerms:
    """TokenTerms of ``logits [N, V]``: the fused op, or the reference when not native;
    ``seq_len`` as _seq_len's (0 for chunks, which never see a whole sequence)."""
    if _native.use_native(logits.device):
        loss, logp, entropy, _lse, _dloss, ratio, kl, clipped = _native.call(
            "ppo_loss", logits, t.actions, t.old_logprobs, t.advantages, t.ref_logprobs, t.mask,
            t.token_weights, opts.clip_low, opts.clip_high, opts.dual_clip, opts.kl_coef, opts.kl_estimator,
            opts.entropy_coef, opts.temperature, opts.policy_loss, seq_len, opts.kl_ratio_weighted,
        )  # fmt: skip
        return TokenTerms(loss, logp, entropy, ratio, kl, clipped)
    old, adv, ref, weights = t.old_logprobs, t.advantages, t.ref_logprobs, t.token_weights
    if t.mask is not None:  # as the native kernel: masked rows are never read
        logits, old, adv, ref, weights = _zero_masked(t.mask, logits, old, adv, ref, weights)
    logp, entropy = token_logprobs_reference(logits, t.actions, opts.temperature)
    log_ratio = _flat_log_ratio(logp, old, t.mask, seq_len)
    terms = ppo_terms_reference(logp, entropy, log_ratio, adv, ref, opts, weights)
    if t.mask is not None:
        terms = TokenTerms(*(torch.where(t.mask, x, 0) for x in terms))
    return terms


def _token_logprobs_rows(logits, actions, mask, temperature):
    """(logp, entropy) ``[N]`` of ``logits [N, V]``, 0 where masked."""
    if _native.use_native(logits.device):
        logp, entropy, _lse = _native.call("token_logprobs", logits, actions, mask, temperature)
        return logp, entropy
    if mask is not None:  # as the native kernel: masked rows are never read
        (logits,) = _zero_masked(mask, logits)
    logp, entropy = token_logprobs_reference(logits, actions, temperature)
    if mask is not None:
        logp, entropy = torch.where(mask, logp, 0), torch.where(mask, entropy, 0)
    return logp, entropy


def _zero_masked(mask: torch.Tensor, *xs):
    """Each x (``[...]`` like mask, or ``[..., K]``; None passes) with 0 at masked tokens, so that
    NaN or inf there reaches neither the outputs nor, through autograd, the gradients: where()
    selects gradients where a multiplication by a 0 mask would make 0 * inf = NaN."""
    return [x if x is None else torch.where(mask if x.ndim == mask.ndim else mask.unsqueeze(-1), x, 0) for x in xs]


def _finish(terms: TokenTerms, tokens: _Tokens, batch_shape, opts: PpoOptions, counts=(None, None)):
    """``(loss, stats)`` from flat per-token terms; ``counts``: the global (num_tokens, num_sequences)."""
    terms = TokenTerms(*(x.reshape(batch_shape) for x in terms))
    mask = None if tokens.mask is None else tokens.mask.reshape(batch_shape)
    old = tokens.old_logprobs.reshape(batch_shape)
    loss = _aggregate(terms.loss, mask, opts, *counts)
    return PpoLoss(loss, _stats(terms, old, mask, tokens.ref_logprobs is not None))


def _aggregate(loss: torch.Tensor, mask: torch.Tensor | None, opts: PpoOptions, num_tokens=None,
               num_sequences=None) -> torch.Tensor:  # fmt: skip
    """Reduces per-token losses ``[...]`` (0 where masked) to a scalar by ``opts.normalize``, over
    the global counts where given (a division of the local sums: the fused pass is unchanged)."""
    seq_len = loss.shape[-1] if loss.ndim else 1
    per_seq = loss.reshape(math.prod(loss.shape[:-1]), seq_len)  # [S, T]; S, T may be 0
    valid = (
        torch.ones_like(per_seq, dtype=torch.bool) if mask is None else mask.reshape(per_seq.shape).bool()
    )
    counts = valid.sum(-1)  # [S]
    sums = per_seq.sum(-1)
    nonempty = (counts > 0).sum().clamp(min=1) if num_sequences is None else num_sequences
    if opts.normalize == "token_mean":
        return sums.sum() / (counts.sum().clamp(min=1) if num_tokens is None else num_tokens)
    if opts.normalize == "seq_mean_token_mean":
        return (sums / counts.clamp(min=1)).sum() / nonempty
    if opts.normalize == "seq_mean_token_sum":
        return sums.sum() / nonempty
    max_len = seq_len if opts.max_len is None else opts.max_len  # "constant"
    sequences = per_seq.shape[0] if num_sequences is None else num_sequences
    return sums.sum() / max(1, sequences * max_len)  # an empty batch: 0, not 0 / 0


def _stats(terms: TokenTerms, old_logprobs, mask, has_ref: bool) -> dict[str, torch.Tensor]:
    """Detached diagnostics averaged over valid tokens; no host sync."""
    t = TokenTerms(*(x.detach() for x in terms))
    log_ratio = t.logp - old_logprobs.to(t.logp.dtype)  # per token, at either importance level
    approx_kl = torch.exp(log_ratio) - 1 - log_ratio  # KL(old || new), k3
    ratio_valid = t.ratio if mask is None else torch.where(mask.bool(), t.ratio, 0)
    stats = {
        "clip_fraction": masked_mean(t.clipped, mask),
        "approx_kl": masked_mean(approx_kl, mask),
        "entropy": masked_mean(t.entropy, mask),
        "ratio_mean": masked_mean(t.ratio, mask),
        "ratio_max": ratio_valid.amax() if ratio_valid.numel() else ratio_valid.new_zeros(()),
    }
    if has_ref:
        stats["kl_ref"] = masked_mean(t.kl, mask)
    return stats


# --------------------------------------------------------------------------- argument checks


def _check_logits(name: str, logits) -> int:
    _checks.floating(name, logits)
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"{name} must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    return logits.shape[-1]


def _check_actions(batch_shape, vocab, like_name, like, actions, mask, validate=None):
    """Flat int64 actions ``[N]`` and bool mask ``[N]`` or None. Action values are checked in
    [0, V) when ``validate`` (default: on the CPU; on CUDA the check syncs with the host)."""
    _checks.integer("actions", actions)
    _checks.shape("actions", actions, batch_shape)
    _checks.same_device("actions", actions, like_name, like)
    if validate is not None and not isinstance(validate, bool):
        raise TypeError(f"validate must be a bool or None, got {type(validate).__name__}")
    if validate is None:
        validate = actions.device.type == "cpu"
    if validate and not torch.compiler.is_compiling() and actions.numel():
        low, high = actions.min().item(), actions.max().item()
        if low < 0 or high >= vocab:
            raise ValueError(f"actions must be in [0, {vocab}), got values in [{low}, {high}]")
    if mask is not None:
        _checks.tensor("mask", mask)
        _checks.shape("mask", mask, batch_shape)
        mask = _checks.flag("mask", mask, "actions", actions).reshape(-1)
    return actions.reshape(-1).long(), mask


def _check_counts(num_tokens, num_sequences) -> tuple[float | None, float | None]:
    """The global normalizers: None, or positive finite numbers (counts summed over ranks may come
    as floats)."""
    out = []
    for name, x in (("num_tokens", num_tokens), ("num_sequences", num_sequences)):
        if x is not None:
            x = _checks.number(name, x, low=0.0, low_inclusive=False)
            if not torch.compiler.is_compiling() and math.isinf(x):
                raise ValueError(f"{name} must be finite, got {x}")
        out.append(x)
    return tuple(out)


def _check_tokens(batch_shape, vocab, like_name, like, actions, old_logprobs, advantages, ref_logprobs,
                  mask, opts: PpoOptions, validate=None, token_weights=None) -> _Tokens:  # fmt: skip
    actions, mask = _check_actions(batch_shape, vocab, like_name, like, actions, mask, validate)
    acc = _acc_dtype(like)
    flat = {}
    per_token = (("old_logprobs", old_logprobs), ("advantages", advantages), ("ref_logprobs", ref_logprobs),
                 ("token_weights", token_weights))  # fmt: skip
    for name, x in per_token:
        if x is None:
            flat[name] = None
            continue
        _checks.floating(name, x)
        _checks.shape(name, x, batch_shape)
        _checks.same_device(name, x, like_name, like)
        flat[name] = x.detach().reshape(-1).to(acc)
    if ref_logprobs is None and opts.kl_coef != 0:  # in this order: no guard on kl_coef under compile
        raise ValueError("kl_coef != 0 needs ref_logprobs")
    return _Tokens(actions, flat["old_logprobs"], flat["advantages"], flat["ref_logprobs"], mask,
                   flat["token_weights"])  # fmt: skip


# --------------------------------------------------------------------------- native op registration
# Fake kernels (output shapes, for torch.compile and opcheck) and autograd formulas of the ops in
# csrc/bindings.cpp. Gradients flow to the logits only: d/dz of a function of (logp, entropy) per
# token is the one-pass token_logprobs_backward kernel given df/dlogp and df/dH.


def _token_output(logits):
    return logits.new_empty(logits.shape[:1], dtype=_acc_dtype(logits))


def _token_logprobs_fake(logits, *_):
    return _token_output(logits), _token_output(logits), _token_output(logits)


def _token_logprobs_backward_fake(grad_logp, grad_entropy, logits, *_):
    return logits.new_empty(logits.shape)


def _ppo_loss_fake(logits, *_):
    return tuple(_token_output(logits) for _ in range(8))


def _token_logprobs_setup(ctx, inputs, output):
    logits, actions, mask, temperature = inputs
    _logp, entropy, lse = output
    ctx.save_for_backward(logits, actions, mask, lse, entropy)
    ctx.temperature = temperature


def _token_logprobs_backward(ctx, grad_logp, grad_entropy, _grad_lse):
    logits, actions, mask, lse, entropy = ctx.saved_tensors
    grad = _native.call(
        "token_logprobs_backward", _zeros_if_none(grad_logp, lse), _zeros_if_none(grad_entropy, lse), logits, actions,
        mask, lse, entropy, ctx.temperature,
    )  # fmt: skip
    return grad, None, None, None


def _ppo_loss_setup(ctx, inputs, output):
    # inputs as in _token_terms' call: logits, actions, 5 token tensors, 10 options
    logits, actions, _old, _adv, _ref, mask, _weights, *_, entropy_coef, temperature, _pl, _sl, _krw = inputs
    _loss, _logp, entropy, lse, dloss_dlogp, *_ = output
    ctx.save_for_backward(logits, actions, mask, lse, entropy, dloss_dlogp)
    ctx.entropy_coef, ctx.temperature, ctx.num_inputs = entropy_coef, temperature, len(inputs)


def _ppo_loss_backward(ctx, grad_loss, grad_logp, grad_entropy, *_):
    logits, actions, mask, lse, entropy, dloss_dlogp = ctx.saved_tensors
    grad_loss = _zeros_if_none(grad_loss, lse)
    # loss = pg + kl_coef KL - entropy_coef H: chain rule into (logp, H), plus any direct use
    # of the logp and entropy outputs.
    g_logp = grad_loss * dloss_dlogp + _zeros_if_none(grad_logp, lse)
    g_entropy = _zeros_if_none(grad_entropy, lse) - ctx.entropy_coef * grad_loss
    grad = _native.call("token_logprobs_backward", g_logp, g_entropy, logits, actions, mask, lse, entropy,
                        ctx.temperature)  # fmt: skip
    return (grad,) + (None,) * (ctx.num_inputs - 1)


def _zeros_if_none(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def _no_double_backward(ctx, *grads):
    """The backward kernel is not differentiable itself. Without a formula autograd would treat
    its output as a constant and a second derivative would silently come out as 0: raise."""
    raise RuntimeError(DOUBLE_BACKWARD_ERROR)


_native.register_op("token_logprobs", fake=_token_logprobs_fake, backward=_token_logprobs_backward,
                    setup_context=_token_logprobs_setup)  # fmt: skip
_native.register_op("ppo_loss", fake=_ppo_loss_fake, backward=_ppo_loss_backward, setup_context=_ppo_loss_setup)
_native.register_op("token_logprobs_backward", fake=_token_logprobs_backward_fake, backward=_no_double_backward)
