"""The options of fastrl.ops.ppo_loss from issue 17, on hand-worked examples (numbers derived
below, not from the reference): sequence-level importance ratios (GSPO), CISPO, per-token
weights on the policy-gradient term, and the ratio-weighted (bias-corrected) KL of TRL.

Every example uses V = 2 and logits (0, 0): p = (1/2, 1/2), logp = -ln 2, H = ln 2, and
dlogp/dz = 1[a] - 1/2, so the logits gradient of a token is dloss/dlogp * (+-1/2), + at the
action. ``old_logprobs = logp - log(ratio)`` sets each token's ratio. Registry samples with
these options (tests/ops/opinfo.py) compare every backend with the scalar-loop oracle.
"""

import math

import pytest
import torch

from fastrl.ops import ppo_loss, ppo_loss_from_hidden
from tests.conftest import requires_native
from tests.ops.helpers import make_inputs

LN2 = math.log(2)
NAN = math.nan


def uniform_tokens(ratios, advantages, mask=None, ref_minus_logp=None):
    """Inputs of one token per ratio (shape of ``ratios``, a nested list): logits (0, 0), actions
    alternating 0, 1 (NaN inputs where masked)."""
    ratios = torch.tensor(ratios, dtype=torch.float64)
    shape = ratios.shape
    logits = torch.zeros(*shape, 2, requires_grad=True)
    actions = (torch.arange(ratios.numel()) % 2).reshape(shape)
    valid = torch.ones(shape, dtype=torch.bool) if mask is None else torch.tensor(mask)
    old = torch.where(valid, -LN2 - torch.log(ratios), NAN).float()
    adv = torch.where(valid, torch.tensor(advantages, dtype=torch.float64), NAN).float()
    inputs = dict(logits=logits, actions=actions, old_logprobs=old, advantages=adv,
                  mask=None if mask is None else valid)
    if ref_minus_logp is not None:
        ref = -LN2 + torch.tensor(ref_minus_logp, dtype=torch.float64)
        inputs["ref_logprobs"] = torch.where(valid, ref, NAN).float()
    return inputs


def logits_grad(dloss_dlogp, actions):
    """[..., 2] gradient from dloss/dlogp per token: * (1[a] - 1/2)."""
    sign = torch.where(torch.nn.functional.one_hot(actions, 2).bool(), 0.5, -0.5)
    return torch.as_tensor(dloss_dlogp, dtype=torch.float32)[..., None] * sign


def test_gspo_by_hand(backend):
    """Sequence 0: ratios 4, 1/2, 1 (a 4th token masked): s = exp(mean log r) = 2^(1/3) = 1.26, inside
    the clip range [0.8, 1.28], A = 1: loss -s; its gradient d(-s A)/dlogp_t = -s / 3 per token.
    Sequence 1: ratios 2, 2 (2 masked): s = 2 > 1.28 with A = 1: clipped, -1.28, gradient 0.
    Sequence 2: all masked: counted nowhere, no NaN. seq_mean_token_mean over the 2 sequences."""
    mask = [[True, True, True, False], [True, True, False, False], [False] * 4]
    inputs = uniform_tokens([[4, 0.5, 1, 1], [2, 2, 1, 1], [1] * 4], [[1.0] * 4] * 3, mask)
    options = dict(clip_low=0.2, clip_high=0.28, importance_level="sequence")
    s = 2 ** (1 / 3)
    loss, stats = ppo_loss(**inputs, **options, normalize="seq_mean_token_mean")
    assert loss.item() == pytest.approx((-s - 1.28) / 2, rel=1e-6)
    assert stats["ratio_mean"].item() == pytest.approx((3 * s + 2 * 2) / 5, rel=1e-6)
    assert stats["ratio_max"].item() == pytest.approx(2.0, rel=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)
    # approx_kl stays the per-token k3 estimate of KL(old || new)
    token_ratios = [4, 0.5, 1, 2, 2]
    assert stats["approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in token_ratios) / 5, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    dlogp = [[-s / 3 / 2] * 3 + [0.0], [0.0] * 4, [0.0] * 4]  # / 2: the mean over 2 sequences
    torch.testing.assert_close(grad, logits_grad(dlogp, inputs["actions"]), rtol=1e-5, atol=1e-7)

    # token_mean over the 5 valid tokens: the same per-token value s at each of sequence 0's
    # tokens, and the per-token gradient s / 5 (TRL's and verl's sg(s) exp(logp - sg(logp))).
    loss, _ = ppo_loss(**inputs, **options, normalize="token_mean")
    assert loss.item() == pytest.approx((3 * -s + 2 * -1.28) / 5, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    dlogp = [[-s / 5] * 3 + [0.0], [0.0] * 4, [0.0] * 4]
    torch.testing.assert_close(grad, logits_grad(dlogp, inputs["actions"]), rtol=1e-5, atol=1e-7)


def test_gspo_without_a_mask_is_the_all_valid_mask(backend):
    inputs = make_inputs((3, 6), 9, seed=30)
    del inputs["mask"]
    options = dict(importance_level="sequence", clip_high=0.28, normalize="seq_mean_token_sum")
    loss, _ = ppo_loss(**inputs, **options)
    masked, _ = ppo_loss(**inputs, **options, mask=torch.ones(3, 6, dtype=torch.bool))
    torch.testing.assert_close(loss, masked)
    # and is not the token-level loss (the ratios of make_inputs vary along each sequence)
    token, _ = ppo_loss(**inputs, **dict(options, importance_level="token"))
    assert not torch.allclose(loss, token, rtol=1e-3)


def test_gspo_sequences_are_rows_of_the_last_dim(backend):
    """[2, 2, 4] tokens are 4 sequences of 4: the same loss as the [4, 4] view."""
    inputs = make_inputs((2, 2, 4), 5, seed=31)
    flat = {k: v.detach().reshape(4, 4, *v.shape[3:]) for k, v in inputs.items()}
    options = dict(importance_level="sequence", normalize="seq_mean_token_mean")
    torch.testing.assert_close(ppo_loss(**inputs, **options)[0], ppo_loss(**flat, **options)[0])


def test_cispo_by_hand(backend):
    """Ratios 4, 1/2, 1 with A = -1, -2, 1/2; clip [0.8, 1.28]: weights w = 1.28, 0.8, 1 and
    pg = -w A logp = -w A (-ln 2): -1.28 ln 2, -1.6 ln 2, 0.5 ln 2; the gradient -w A through
    logp even where the ratio was clipped (PPO's would be 0 there): 1.28, 1.6, -0.5."""
    inputs = uniform_tokens([4, 0.5, 1], [-1.0, -2.0, 0.5])
    loss, stats = ppo_loss(**inputs, clip_low=0.2, clip_high=0.28, policy_loss="cispo")
    assert loss.item() == pytest.approx((-1.28 - 1.6 + 0.5) * LN2 / 3, rel=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 3)
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    torch.testing.assert_close(grad, logits_grad([1.28 / 3, 1.6 / 3, -0.5 / 3], inputs["actions"]), rtol=1e-5,
                               atol=1e-7)  # fmt: skip


def test_token_weights_by_hand(backend):
    """The three tokens of test_ppo_loss.py's worked example (ratios 4, 1/2, 1; A = -1, -2, 1/2;
    clip 0.2, dual clip 3: pg = 3, 1.6, -1/2; k3 KL 1 - ln 2, ln 2 - 1/2, 0 with kl_coef 0.1)
    with weights 2, 0, 1/2 on pg only: pg = 6, 0, -1/4; dloss/dlogp = w dpg + 0.1 (1 - e^x) =
    -0.1, 0.05, -1/4 (the clipped tokens' pg has no gradient, weighted or not)."""
    inputs = uniform_tokens([4, 0.5, 1], [-1.0, -2.0, 0.5], ref_minus_logp=[LN2, -LN2, 0.0])
    weights = torch.tensor([2.0, 0.0, 0.5])
    loss, stats = ppo_loss(**inputs, token_weights=weights, clip_low=0.2, dual_clip=3.0, kl_coef=0.1)
    kl = [1 - LN2, LN2 - 0.5, 0.0]
    assert loss.item() == pytest.approx(sum(p + 0.1 * k for p, k in zip([6.0, 0.0, -0.25], kl)) / 3, rel=1e-6)
    assert stats["kl_ref"].item() == pytest.approx(sum(kl) / 3, rel=1e-6)  # the KL is not weighted
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    torch.testing.assert_close(grad, logits_grad([-0.1 / 3, 0.05 / 3, -0.25 / 3], inputs["actions"]), rtol=1e-5,
                               atol=1e-7)  # fmt: skip


def test_kl_ratio_weighted_by_hand(backend):
    """Ratios 4, 1/2, 1 with ref - logp = x = ln 2, -ln 2, 0 and A = 0 (no pg): k3 = e^x - x - 1 =
    1 - ln 2, ln 2 - 1/2, 0, times the ratio: 4 (1 - ln 2), (ln 2 - 1/2) / 2, 0. As in TRL the
    gradient flows through the ratio too: d(k3 r)/dlogp = (1 - e^x) r + k3 r = -4 ln 2, ln 2 / 2, 0."""
    inputs = uniform_tokens([4, 0.5, 1], [0.0, 0.0, 0.0], ref_minus_logp=[LN2, -LN2, 0.0])
    loss, stats = ppo_loss(**inputs, kl_coef=1.0, kl_ratio_weighted=True)
    weighted = [4 * (1 - LN2), (LN2 - 0.5) / 2, 0.0]
    assert loss.item() == pytest.approx(sum(weighted) / 3, rel=1e-6)
    assert stats["kl_ref"].item() == pytest.approx(sum(weighted) / 3, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    torch.testing.assert_close(grad, logits_grad([-4 * LN2 / 3, LN2 / 2 / 3, 0.0], inputs["actions"]), rtol=1e-5,
                               atol=1e-7)  # fmt: skip


def test_gspo_from_hidden_with_chunks_across_sequences(backend):
    """Chunks of 5 rows cut sequences of 4: the sequences' ratios are those of whole sequences,
    so the loss and gradients are those of ppo_loss on the logits."""
    g = torch.Generator().manual_seed(32)
    hidden = torch.randn(3, 4, 6, generator=g, requires_grad=True)
    weight = torch.randn(7, 6, generator=g, requires_grad=True)
    inputs = make_inputs((3, 4), 7, seed=33, logits=hidden @ weight.T)
    del inputs["logits"]
    options = dict(importance_level="sequence", clip_high=0.28, normalize="token_mean")
    got, _ = ppo_loss_from_hidden(hidden, weight, **inputs, chunk_size=5, **options)
    want, _ = ppo_loss(hidden @ weight.T, **inputs, **options)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.autograd.grad(got, (hidden, weight)), torch.autograd.grad(want, (hidden, weight))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_gspo_uses_each_tokens_own_advantage(backend):
    """Advantages are taken per token as given (documented; GSPO's are constant over a sequence):
    ratios 1, 1 give s = 1, inside the clip range; A = 1, 2: pg = -1, -2 with gradient -A."""
    inputs = uniform_tokens([[1, 1]], [[1.0, 2.0]])
    loss, _ = ppo_loss(**inputs, importance_level="sequence", normalize="seq_mean_token_sum")
    assert loss.item() == pytest.approx(-3.0, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, inputs["logits"])
    torch.testing.assert_close(grad, logits_grad([[-1.0, -2.0]], inputs["actions"]), rtol=1e-5, atol=1e-7)


@requires_native
@pytest.mark.parametrize(("change", "match"), [
    (dict(policy_loss="grpo"), "policy_loss must be ppo or cispo"),
    (dict(policy_loss="cispo"), "dual_clip applies to policy_loss ppo only"),
    (dict(seq_len=4), r"seq_len \(4\) must divide the number of tokens N = 6"),
    (dict(seq_len=-1), "seq_len must be >= 0"),
    (dict(token_weights=torch.ones(5)), r"token_weights must be \[N\] = \[6\]"),
])  # fmt: skip
def test_the_op_checks_its_new_arguments(change, match):
    """torch.ops.fastrl.ppo_loss called directly (no Python checks) refuses bad options."""
    args = dict(logits=torch.zeros(6, 3), actions=torch.zeros(6, dtype=torch.long), old_logprobs=torch.zeros(6),
                advantages=torch.zeros(6), ref_logprobs=None, mask=None, token_weights=None, clip_low=0.2,
                clip_high=0.2, dual_clip=3.0, kl_coef=0.0, kl_estimator="k3", entropy_coef=0.0, temperature=1.0,
                policy_loss="ppo", seq_len=0, kl_ratio_weighted=False)  # fmt: skip
    args.update(change)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastrl.ppo_loss(*args.values())
