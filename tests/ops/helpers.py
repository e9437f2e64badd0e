"""Comparisons and inputs shared by the op tests."""

from __future__ import annotations

import math

import torch

_INTS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
         torch.float64: torch.int64}  # fmt: skip


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit for bit (signed zeros and infinities included); NaN at the same places (its
    payload may differ)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    assert torch.equal(got.isnan(), want.isnan()), "NaN at different places"
    ints = _INTS[got.dtype]
    keep = ~got.isnan()
    same = got.contiguous().view(ints)[keep] == want.contiguous().view(ints)[keep]
    assert same.all(), f"{(~same).sum().item()} values differ: {got[keep][~same][:5]} vs {want[keep][~same][:5]}"



# --------------------------------------------------------------------------- inputs

GAMMA, LAM = 0.99, 0.95


def make_rollout(T, batch, dtype=torch.float32, device="cpu", p_term=0.05, p_trunc=0.03, seed=0):
    """``(rewards, values, next_values, terminated, done)`` of shape ``[T, *batch]``, drawn in
    float64 on the CPU (the same values on every device), flags bool with done ⊇ terminated."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, *batch)
    r = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    nv = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    term = torch.rand(shape, generator=g) < p_term
    done = term | (torch.rand(shape, generator=g) < p_trunc)
    return [x.to(device) for x in (r, v, nv, term, done)]


def padding_mask(T, N, seed=0):
    """Leading, trailing and middle padding in different columns, plus an all-padding column."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(T, N, generator=g) > 0.2
    mask[: T // 3, 0] = False
    mask[-(T // 3) :, min(1, N - 1)] = False
    mask[:, -1] = False if N > 2 else mask[:, -1]
    return mask


FULL_OPTIONS = dict(
    clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_coef=0.05, kl_estimator="k3",
    entropy_coef=0.01, temperature=0.7, normalize="seq_mean_token_mean",
)  # fmt: skip

# (ratio, sign of A). With the clip ranges used here ([0.8, 1.28], [1, 1.28], [0.8, 1.5]) and a
# dual clip of 3 they reach every branch of the clipped objective.
RATIO_CASES = (
    (0.5, -1.0),  # below the range, A < 0: the lower clip sets pg
    (0.5, 1.0),  # below the range, A > 0: -ratio A wins
    (0.9, 1.0),  # inside (below it with clip_low = 0)
    (1.1, -1.0),  # inside
    (1.9, 1.0),  # above the range, A > 0: the upper clip sets pg
    (1.9, -1.0),  # above the range, A < 0, under the dual clip: -ratio A wins
    (5.0, -1.0),  # above the dual clip, A < 0: the dual clip sets pg
    (5.0, 1.0),  # far above the range, A > 0: the upper clip
)


def make_inputs(shape, vocab, dtype=torch.float32, device="cpu", seed=0, temperature=0.7, banned=0.0, logits=None):
    """Logits, actions and per-token inputs. The tokens of each sequence (row of the last dim)
    take RATIO_CASES in a random order, cycling, so a sequence of 8 or more tokens has them all:
    old_logprobs = logp - log(ratio) at ``temperature``, ratios jittered by at most 2%. The mask
    (2-D and up) leaves the first sequence empty, drops about a third of the second's tokens and
    keeps every later sequence whole. ``banned``: that fraction of the logits is -inf (never an
    action's; the last logit of every row, in the tail of the vectorized loops, always).
    ``logits``: use these values (e.g. those of hidden states) instead of random ones."""
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(*shape, vocab, generator=g)).to(dtype) if logits is None else logits.detach().clone()
    actions = torch.randint(0, vocab, shape, generator=g)
    if banned:
        out = torch.rand(logits.shape, generator=g) < banned
        out[..., -1] = True
        out.scatter_(-1, actions.unsqueeze(-1), False)
        logits[out] = -math.inf
    logp = torch.log_softmax(logits.double() / temperature, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    seq_len, sequences = (shape[-1], math.prod(shape[:-1])) if shape else (1, 1)
    cycle = torch.arange(seq_len) % len(RATIO_CASES)
    order = [torch.randperm(len(RATIO_CASES), generator=g)[cycle] for _ in range(sequences)]
    case = torch.cat(order).reshape(shape) if sequences else torch.zeros(shape, dtype=torch.long)
    table = torch.tensor(RATIO_CASES, dtype=torch.float64)[case]
    ratio = table[..., 0] * torch.exp(0.02 * (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1))
    adv = table[..., 1] * (0.5 + torch.rand(shape, generator=g, dtype=torch.float64))
    ref = logp + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) > 0.3
    if len(shape) > 1 and shape[0] > 0:
        mask[0] = False
        mask[2:] = True
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    to = lambda x, t=acc: x.to(device=device, dtype=t)  # noqa: E731
    return dict(
        logits=logits.to(device).requires_grad_(), actions=actions.to(device),
        old_logprobs=to(logp - torch.log(ratio)), advantages=to(adv), ref_logprobs=to(ref), mask=mask.to(device),
    )  # fmt: skip
