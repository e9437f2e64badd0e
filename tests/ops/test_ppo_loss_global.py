"""Global loss normalization (issue 15): ``ppo_loss(..., num_tokens=, num_sequences=)`` divides the
local sums by counts of the whole batch, so the losses (and gradients) of the parts of a batch split
over micro-batches or ranks sum to the whole batch's. The oracle of the split tests is the op on the
whole batch without counts (its own local counts are then the global ones); the hand-worked example
is independent of the code."""

import math

import pytest
import torch

from fastrl.ops import ppo_loss, ppo_loss_from_hidden
from fastrl.ops.ppo_loss import NORMALIZATIONS, PpoOptions, _aggregate, ppo_loss_reference
from tests.ops.helpers import make_inputs

OPTIONS = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_coef=0.1, kl_estimator="k3", entropy_coef=0.01,
               temperature=0.7, max_len=9)  # fmt: skip
SPLITS = [slice(0, 1), slice(1, 4), slice(4, 6)]  # unequal parts; the first holds only the empty sequence
# Issue 17's options keep the counts' meaning (parts split between sequences, never inside one).
MODES = {
    "ppo": {},
    "gspo-cispo-kl_ratio": dict(importance_level="sequence", policy_loss="cispo", dual_clip=None,
                                kl_ratio_weighted=True),
    "gspo-weights": dict(importance_level="sequence", token_weights=True),
}  # fmt: skip


def with_mode(inputs: dict, opts: dict, mode: str) -> tuple[dict, dict]:
    """inputs and options with MODES[mode] (token weights in [0, 1) when it has them)."""
    extra = dict(MODES[mode])
    if extra.pop("token_weights", False):
        weights = torch.rand(inputs["mask"].shape, generator=torch.Generator().manual_seed(7))
        inputs = dict(inputs, token_weights=weights)
    return inputs, dict(opts, **extra)


def global_counts(mask: torch.Tensor, normalize: str) -> dict:
    """The whole batch's counts, as a trainer would all-reduce them: valid tokens, and sequences
    (those with a valid token for the seq_mean modes, all of them for "constant")."""
    sequences = mask.shape[0] if normalize == "constant" else int(mask.any(-1).sum())
    return dict(num_tokens=int(mask.sum()), num_sequences=sequences)


def test_hand_worked_token_mean_over_a_global_count(backend):
    """V = 2, logits (0, 0): logp = -ln 2 for each token; old = -ln 2, so ratio 1 and no clip:
    pg = -A = (-1, -2, 1), sum -2. Over num_tokens = 8 (the whole batch, this part holds 3):
    loss -2 / 8. dloss/dlogp = -A / 8 and dlogp/dz = 1[a] - 1/2."""
    ln2 = math.log(2)
    logits = torch.zeros(1, 3, 2, requires_grad=True)
    actions = torch.tensor([[0, 1, 0]])
    old = torch.full((1, 3), -ln2)
    adv = torch.tensor([[1.0, 2.0, -1.0]])
    loss, _ = ppo_loss(logits, actions, old, adv, num_tokens=8)
    assert loss.item() == pytest.approx(-2 / 8, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    sign = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
    torch.testing.assert_close(grad[0], (-adv[0] / 8)[:, None] * 0.5 * sign, rtol=1e-5, atol=1e-7)


def test_aggregation_over_global_counts_by_hand():
    loss = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    expected = {  # this part's sums: 1.5 + 4 of token means, 7 of tokens; 10 tokens, 5 sequences in all
        "token_mean": 7 / 10,
        "seq_mean_token_mean": (1.5 + 4) / 5,
        "seq_mean_token_sum": 7 / 5,
        "constant": 7 / (5 * 4),
    }
    for normalize, value in expected.items():
        opts = PpoOptions(normalize=normalize, max_len=4)
        got = _aggregate(loss, mask, opts, num_tokens=10, num_sequences=5)
        assert got.item() == pytest.approx(value), normalize


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_micro_batches_with_global_counts_sum_to_the_whole_batch(backend, normalize, mode):
    inputs = make_inputs((6, 9), 11, seed=4)
    inputs["mask"][3, 5:] = False  # unequal lengths
    inputs, opts = with_mode(inputs, dict(OPTIONS, normalize=normalize), mode)
    whole, _ = ppo_loss(**inputs, **opts)
    (grad_whole,) = torch.autograd.grad(whole, inputs["logits"])
    counts = global_counts(inputs["mask"], normalize)
    total, grad = 0.0, torch.zeros_like(grad_whole)
    for rows in SPLITS:
        part = {k: v[rows] for k, v in inputs.items()}
        loss, _ = ppo_loss(**part, **opts, **counts)
        total = total + loss
        grad[rows] = torch.autograd.grad(loss, inputs["logits"])[0][rows]
        # the reference takes the counts too, and agrees part by part
        reference, _ = ppo_loss_reference(**part, **opts, **counts)
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, grad_whole, rtol=1e-5, atol=1e-7)
    # and the local mean of a part is not the whole batch's share (the bug the counts fix)
    if normalize != "constant":
        local = sum(ppo_loss(**{k: v[rows] for k, v in inputs.items()}, **opts)[0] for rows in SPLITS)
        assert not torch.allclose(local, whole, rtol=1e-3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_from_hidden_micro_batches_with_global_counts(backend, normalize, mode):
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(6, 9, 8, generator=g, requires_grad=True)
    weight = torch.randn(11, 8, generator=g, requires_grad=True)
    inputs = make_inputs((6, 9), 11, seed=6, logits=hidden @ weight.T)
    del inputs["logits"]
    inputs["mask"][4, 2:] = False
    inputs, opts = with_mode(inputs, dict(OPTIONS, normalize=normalize), mode)
    whole, _ = ppo_loss_from_hidden(hidden, weight, **inputs, **opts)
    grads_whole = torch.autograd.grad(whole, (hidden, weight))
    counts = global_counts(inputs["mask"], normalize)
    total = 0.0
    for rows in SPLITS:
        loss, _ = ppo_loss_from_hidden(hidden[rows], weight, **{k: v[rows] for k, v in inputs.items()}, **opts,
                                       chunk_size=4, **counts)  # fmt: skip
        total = total + loss
    grads = torch.autograd.grad(total, (hidden, weight))
    torch.testing.assert_close(total, whole, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, grads_whole):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["num_tokens", "num_sequences"])
@pytest.mark.parametrize("value", [0, -3, math.inf, math.nan, "4", True])
def test_counts_are_checked(name, value):
    inputs = make_inputs((2, 3), 5)
    for fn in (ppo_loss, ppo_loss_reference):
        with pytest.raises((ValueError, TypeError), match=f"{name} must be"):
            fn(**inputs, **{name: value})
