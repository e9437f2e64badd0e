"""Independent oracles for the op tests: scalar Python loops written from the formulas in the
ops' docstrings (and docs/ARCHITECTURE.md, "Returns" and "Fused PPO/KL loss"), sharing no code
with the ``*_reference`` functions or the kernels, so that every backend (the PyTorch fallback
included, which *is* the reference) is compared with something other than itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _columns(x, dtype):
    """A time-major ``[T, N]`` tensor as a list of rows of numpy scalars of ``dtype``."""
    return [[dtype(v) for v in row] for row in x.tolist()]


def _flags(x):
    return None if x is None else [[bool(v) for v in row] for row in x.tolist()]


def gae_loop(rewards, values, next_values, terminated, done, gamma, lam, mask=None):
    """GAE one element at a time on time-major ``[T, N]`` float32/float64 tensors, in that
    precision (numpy scalars round every operation like the tensor ops do), so it agrees bit
    for bit with a correct implementation that keeps the documented operation order:
        delta_t = r_t + gamma * (terminated_t ? 0 : next_value_t) - value_t
        A_t     = delta_t + (gamma * lam) * (done_t ? 0 : A_{t+1}),   A_T = 0
    with gamma rounded to the dtype and gamma * lam rounded once from double. A masked step
    gets A_t = 0 and passes A_{t+1} through. Returns ``(advantages, advantages + values)``."""
    f = _NUMPY[rewards.dtype]
    r, v, nv = (_columns(x, f) for x in (rewards, values, next_values))
    term, dn, m = _flags(terminated), _flags(done), _flags(mask)
    g, gl = f(gamma), f(gamma * lam)
    T, N = rewards.shape
    adv = [[f(0)] * N for _ in range(T)]
    ret = [[f(0)] * N for _ in range(T)]
    with np.errstate(all="ignore"):  # inf and NaN inputs propagate as IEEE says
        for j in range(N):
            carry = f(0)
            for t in reversed(range(T)):
                if m is None or m[t][j]:
                    delta = r[t][j] + g * (f(0) if term[t][j] else nv[t][j]) - v[t][j]
                    carry = delta + gl * (f(0) if dn[t][j] else carry)
                    adv[t][j] = carry
                ret[t][j] = adv[t][j] + v[t][j]
    return torch.tensor(adv, dtype=rewards.dtype), torch.tensor(ret, dtype=rewards.dtype)


def discounted_returns_loop(rewards, done, gamma, bootstrap, mask=None):
    """``G_t = r_t + gamma * (done_t ? 0 : G_{t+1})``, ``G_T = bootstrap``, one element at a time
    in the dtype's precision (see gae_loop); masked steps get 0 and pass G_{t+1} through."""
    f = _NUMPY[rewards.dtype]
    r, dn, m = _columns(rewards, f), _flags(done), _flags(mask)
    g = f(gamma)
    T, N = rewards.shape
    out = [[f(0)] * N for _ in range(T)]
    with np.errstate(all="ignore"):
        for j, boot in enumerate(bootstrap.tolist()):
            carry = f(boot)
            for t in reversed(range(T)):
                if m is None or m[t][j]:
                    carry = r[t][j] + g * (f(0) if dn[t][j] else carry)
                    out[t][j] = carry
    return torch.tensor(out, dtype=rewards.dtype)


# --------------------------------------------------------------------------- the PPO loss


def _float(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


@dataclass
class Token:
    """What the oracle saw at one valid token (for tests that assert a branch was reached)."""

    ratio: float
    advantage: float
    branch: str  # "none": -ratio A set pg; "clip": clip(ratio) A did; "dual": the dual clip did


def token_logprobs_loop(logits, actions, temperature=1.0, mask=None):
    """Per-token ``(logp, entropy)`` lists of 0-dim float64 tensors (0.0 where masked), from
    ``s = z / T``, ``logp = s[a] - (m + log sum_i exp(s_i - m))`` with ``m = max_i s_i``, and
    ``H = -sum_i p_i log p_i`` over the logits with ``p_i > 0`` (``p log p -> 0`` as ``p -> 0``).
    ``logits`` is float64 ``[..., V]``; autograd gives their gradient."""
    rows = logits.reshape(-1, logits.shape[-1])
    acts = actions.reshape(-1).tolist()
    valid = [True] * len(acts) if mask is None else mask.reshape(-1).bool().tolist()
    logp, entropy = [], []
    for i, (a, ok) in enumerate(zip(acts, valid)):
        if not ok:  # never read
            logp.append(0.0)
            entropy.append(0.0)
            continue
        s = rows[i] / temperature
        s = s[s != -math.inf]  # banned logits: probability 0, no term
        m = s.detach().max()
        lse = m + torch.log(torch.exp(s - m).sum())
        logp.append(rows[i, a] / temperature - lse)
        log_p = s - lse
        entropy.append(-(torch.exp(log_p) * log_p).sum())
    return logp, entropy


def ppo_loss_loop(logits, actions, old_logprobs, advantages, *, mask=None, ref_logprobs=None, temperature=1.0,
                  **options):  # fmt: skip
    """``(loss, stats, tokens)`` of fastrl.ops.ppo_loss from its docstring, token by token in
    float64 (``logits`` a float64 leaf ``[..., V]``: autograd gives the gradient); the per-token
    loss, aggregation and stats as in :func:`ppo_tokens_loop`."""
    logps, entropies = token_logprobs_loop(logits, actions, temperature, mask)
    zero = logits.reshape(-1)[:0].sum()  # 0, part of the graph (even with NaN in masked rows)
    return ppo_tokens_loop(logps, entropies, logits.shape[:-1], old_logprobs, advantages, zero, mask=mask,
                           ref_logprobs=ref_logprobs, **options)  # fmt: skip


def gaussian_ppo_loss_loop(mean, log_std, actions, old_logprobs, advantages, *, mask=None, ref_logprobs=None,
                           **options):  # fmt: skip
    """``(loss, stats, tokens)`` of fastrl.ops.gaussian_ppo_loss: per token the log-density and
    entropy of a diagonal Gaussian summed over the D action dims,
        logp = sum_d -(a_d - mu_d)^2 / (2 exp(2 s_d)) - s_d - log(2 pi) / 2
        H    = sum_d 1/2 + log(2 pi) / 2 + s_d
    then the PPO terms of :func:`ppo_tokens_loop`. ``mean`` (and ``log_std``) float64, autograd
    gives their gradients."""
    batch = mean.shape[:-1]
    dims = mean.shape[-1]
    std = log_std.expand(mean.shape).reshape(-1, dims)
    mu, act = mean.reshape(-1, dims), actions.reshape(-1, dims).tolist()
    valid = [True] * len(act) if mask is None else mask.reshape(-1).bool().tolist()
    logps, entropies = [], []
    for i, ok in enumerate(valid):
        logp = entropy = 0.0
        for d in range(dims if ok else 0):
            s = std[i, d]
            logp = logp - (act[i][d] - mu[i, d]) ** 2 / (2 * torch.exp(2 * s)) - s - 0.5 * math.log(2 * math.pi)
            entropy = entropy + 0.5 + 0.5 * math.log(2 * math.pi) + s
        logps.append(logp)
        entropies.append(entropy)
    zero = mean.reshape(-1)[:0].sum()
    return ppo_tokens_loop(logps, entropies, batch, old_logprobs, advantages, zero, mask=mask,
                           ref_logprobs=ref_logprobs, **options)  # fmt: skip


def ppo_tokens_loop(logps, entropies, batch, old_logprobs, advantages, zero, *, mask=None, ref_logprobs=None,
                    clip_low=0.2, clip_high=None, dual_clip=None, kl_coef=0.0, kl_estimator="k3", entropy_coef=0.0,
                    normalize="token_mean", max_len=None, importance_level="token", policy_loss="ppo",
                    kl_ratio_weighted=False, token_weights=None):  # fmt: skip
    """``(loss, stats, tokens)`` from per-token log-probs and entropies (lists, one per token of
    ``batch``, 0-dim float64 tensors at valid tokens), token by token:
        ratio = exp(logp - old)
        pg    = -min(ratio A, clip(ratio, 1 - clip_low, 1 + clip_high) A);  for A < 0 with a
                dual clip c: pg = min(pg, -c A)
        KL    = k1: logp - ref,  k2: (logp - ref)^2 / 2,  k3: exp(ref - logp) - (ref - logp) - 1
        loss  = pg + kl_coef KL - entropy_coef H
    with the options: importance_level "sequence": log ratio = the mean of logp - old over the
    sequence's valid tokens, with gradient 1 in the token's own logp; policy_loss "cispo":
    pg = -clip(ratio) A logp, the clipped ratio a constant; token_weights w: pg w;
    kl_ratio_weighted: KL ratio (gradient through both). Then
    aggregated over valid tokens by ``normalize``; stats are means over valid tokens (ratio_max
    their maximum), approx_kl the k3 estimate of KL(old || new): ratio - 1 - log ratio.
    ``zero`` is a 0 that is part of the autograd graph; ``tokens`` lists a :class:`Token` per
    valid token."""
    high = clip_low if clip_high is None else clip_high
    seq_len = batch[-1] if batch else 1
    valid = [True] * math.prod(batch) if mask is None else mask.reshape(-1).bool().tolist()
    old, adv = old_logprobs.reshape(-1).tolist(), advantages.reshape(-1).tolist()
    ref = None if ref_logprobs is None else ref_logprobs.reshape(-1).tolist()
    weights = None if token_weights is None else token_weights.reshape(-1).tolist()
    log_ratios = [logps[i] - old[i] if ok else None for i, ok in enumerate(valid)]
    if importance_level == "sequence":  # GSPO: one log ratio per sequence, its tokens' mean
        for start in range(0, len(valid), max(seq_len, 1)):
            idx = [j for j in range(start, start + seq_len) if valid[j]]
            mean_log_ratio = sum(_float(logps[j]) - old[j] for j in idx) / max(len(idx), 1)
            for j in idx:
                log_ratios[j] = logps[j] - _float(logps[j]) + mean_log_ratio

    losses, tokens = [], []
    sums = {"clipped": 0.0, "approx_kl": 0.0, "entropy": 0.0, "ratio": 0.0, "kl": 0.0}
    ratio_max = 0.0
    for i, ok in enumerate(valid):
        if not ok:
            losses.append(None)
            continue
        logp, entropy, a = logps[i], entropies[i], adv[i]
        ratio = torch.exp(log_ratios[i])
        clipped_ratio = min(max(ratio, 1 - clip_low), 1 + high)  # a float where the clip holds
        if policy_loss == "cispo":
            weight = min(max(_float(ratio), 1 - clip_low), 1 + high)
            pg, branch = -weight * a * logp, "none" if weight == _float(ratio) else "clip"
        else:
            pg, branch = -ratio * a, "none"
            if -clipped_ratio * a > pg:
                pg, branch = -clipped_ratio * a, "clip"
            if dual_clip is not None and a < 0 and -dual_clip * a < pg:
                pg, branch = -dual_clip * a, "dual"
        if weights is not None:
            pg = pg * weights[i]
        kl = 0.0
        if ref is not None and kl_estimator == "k1":
            kl = logp - ref[i]
        elif ref is not None and kl_estimator == "k2":
            kl = (logp - ref[i]) ** 2 / 2
        elif ref is not None:  # k3
            x = ref[i] - logp
            kl = torch.exp(x) - x - 1
        if ref is not None and kl_ratio_weighted:
            kl = kl * ratio
        losses.append(pg + (kl_coef * kl if kl_coef != 0 else 0.0) - entropy_coef * entropy)
        r = _float(ratio)
        tokens.append(Token(r, a, branch))
        sums["clipped"] += branch != "none"
        sums["approx_kl"] += _float(torch.exp(logp - old[i])) - 1 - (_float(logp) - old[i])
        sums["entropy"] += _float(entropy)
        sums["ratio"] += r
        sums["kl"] += _float(kl)
        ratio_max = max(ratio_max, r)

    # Sequences are runs of seq_len tokens (rows of the last per-token dim).
    total, count, per_seq = zero, 0, []
    for start in range(0, len(losses), max(seq_len, 1)):
        seq = [x for x in losses[start : start + seq_len] if x is not None]
        per_seq.append((sum(seq, zero), len(seq)))
        total, count = total + per_seq[-1][0], count + len(seq)
    nonempty = [(s, n) for s, n in per_seq if n]
    if normalize == "token_mean":
        loss = total / max(count, 1)
    elif normalize == "seq_mean_token_mean":
        loss = sum((s / n for s, n in nonempty), zero) / max(len(nonempty), 1)
    elif normalize == "seq_mean_token_sum":
        loss = total / max(len(nonempty), 1)
    else:  # "constant": sequences * max_len (an empty batch: 0, not 0 / 0)
        sequences = math.prod(batch[:-1]) if batch else 1
        loss = total / max(sequences * (seq_len if max_len is None else max_len), 1)

    mean = lambda key: torch.tensor(sums[key] / max(count, 1), dtype=torch.float64)  # noqa: E731
    stats = {"clip_fraction": mean("clipped"), "approx_kl": mean("approx_kl"), "entropy": mean("entropy"),
             "ratio_mean": mean("ratio"), "ratio_max": torch.tensor(ratio_max, dtype=torch.float64)}  # fmt: skip
    if ref is not None:
        stats["kl_ref"] = mean("kl")
    return loss, stats, tokens


# --------------------------------------------------------------------------- the PyTorch-only ops


def value_loss_loop(values, old_values, returns, clip=None, mask=None):
    """``0.5 * max((v - R)^2, (old + clip(v - old, -clip, clip) - R)^2)`` (``clip=None``: the
    first term) averaged over valid entries, one entry at a time (``values`` a float64 leaf:
    autograd gives the gradient); 0 without a valid entry."""
    v, old, ret = values.reshape(-1), old_values.reshape(-1).tolist(), returns.reshape(-1).tolist()
    valid = [True] * len(old) if mask is None else [bool(m) for m in mask.reshape(-1).tolist()]
    total, count = values.reshape(-1)[:0].sum(), 0
    for i, ok in enumerate(valid):
        if not ok:
            continue
        term = (v[i] - ret[i]) ** 2
        if clip is not None:
            clipped = old[i] + torch.clamp(v[i] - old[i], -clip, clip)
            term = torch.maximum(term, (clipped - ret[i]) ** 2)
        total, count = total + 0.5 * term, count + 1
    return total / max(count, 1)


def rollout_next_values_loop(values, last_value, final_values=None, final_mask=None):
    """``next[t] = values[t + 1]``, ``last_value`` at the last step, ``final_values[t]`` where
    ``final_mask[t]``; time-major ``[T, *batch]``, one step at a time."""
    out = torch.empty_like(values)
    for t in range(values.shape[0]):
        out[t] = values[t + 1] if t + 1 < values.shape[0] else last_value.to(values.dtype)
        if final_mask is not None:
            out[t] = torch.where(final_mask[t].bool(), final_values[t].to(values.dtype), out[t])
    return out
