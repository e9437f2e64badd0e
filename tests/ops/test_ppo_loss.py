"""fastrl.ops.ppo_loss and friends beyond the registry (tests/ops/opinfo.py, run by
test_opinfo.py, which compares every sample with the reference and with the scalar-loop oracle of
tests/ops/oracles.py): that the registry's branch samples reach every branch, hand-worked
examples, banned tokens, infinite ratios, NaN never read, empty batches, the scalar CPU path,
second derivatives. The oracle works one token at a time in float64 (autograd for the gradient),
written from the formulas, never the reference, which is what the PyTorch backend runs.

Inputs reach every branch: each sequence cycles through RATIO_CASES (tests/ops/helpers.py),
ratios placed in bands far from every clip bound (so float32 and float64 agree on the branch):
both clips, the dual clip and the unclipped side of each, with masked tokens and a fully masked
sequence.

Tolerances against the float64 oracle: those of the registry (``ppo_tolerances`` in opinfo.py).
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from fastrl.ops import gaussian_ppo_loss, ppo_loss, ppo_loss_from_hidden, token_logprobs, value_loss
from fastrl.ops.ppo_loss import KL_ESTIMATORS, NORMALIZATIONS, PpoOptions, _aggregate
from tests.conftest import backend, requires_native, run_with_baseline_cpu_kernels
from tests.ops.helpers import FULL_OPTIONS, make_inputs
from tests.ops.opinfo import BRANCH_OPTIONS, OPS_BY_NAME, branch_inputs, ppo_tolerances
from tests.ops.oracles import ppo_loss_loop, token_logprobs_loop


def run(fn, inputs, upstream=2.5, **options):
    """(loss, stats, grad) of fn with the loss scaled by `upstream` before backward."""
    loss, stats = fn(**inputs, **options)
    (grad,) = torch.autograd.grad(upstream * loss, inputs["logits"])
    return loss, stats, grad


def oracle(inputs, upstream=2.5, **options):
    """(loss, stats, grad, tokens) of the scalar-loop oracle on the same values, in float64 on
    the CPU."""
    cpu = {k: None if v is None else v.detach().cpu() for k, v in inputs.items()}
    cpu["logits"] = cpu["logits"].double().requires_grad_()
    loss, stats, tokens = ppo_loss_loop(**cpu, **options)
    (grad,) = torch.autograd.grad(upstream * loss, cpu["logits"])
    return loss, stats, grad, tokens


def assert_matches(got, want, dtype=torch.float32):
    """got = (loss, stats, grad) of the op, want = the oracle's; compared in float64 on the CPU."""
    (loss, stats, grad), (loss_ref, stats_ref, grad_ref) = got[:3], want[:3]
    tol = ppo_tolerances(dtype)
    rtol, atol, grad_rtol, grad_atol = tol.rtol, tol.atol, tol.grad_rtol, tol.grad_atol
    double = lambda x: x.detach().cpu().double()  # noqa: E731
    torch.testing.assert_close(double(loss), double(loss_ref), rtol=rtol, atol=atol)
    assert stats.keys() == stats_ref.keys()
    for key in stats:
        torch.testing.assert_close(double(stats[key]), double(stats_ref[key]), rtol=rtol, atol=atol, msg=key)
    scale = grad_ref.abs().max().item() if grad_ref.numel() else 0.0
    # + 1e-15: V = 1 has a zero gradient, which the oracle rounds to about 1e-17
    torch.testing.assert_close(double(grad), double(grad_ref), rtol=grad_rtol, atol=grad_atol * scale + 1e-15)


def assert_every_branch(tokens, inputs, clip_low, clip_high=None, dual_clip=None, **_):
    """The oracle's tokens reach every branch that the options have; masked tokens and a fully
    masked sequence are there too."""
    low, high = 1 - clip_low, 1 + (clip_low if clip_high is None else clip_high)
    seen = {(t.branch, t.ratio < low, t.ratio > high, t.advantage > 0) for t in tokens}
    assert ("clip", True, False, False) in seen, "the lower clip (ratio < 1 - clip_low, A < 0)"
    assert ("clip", False, True, True) in seen, "the upper clip (ratio > 1 + clip_high, A > 0)"
    assert ("none", True, False, True) in seen, "below the range with A > 0: unclipped"
    assert ("none", False, True, False) in seen, "above the range with A < 0: unclipped"
    assert any(t.branch == "none" and low < t.ratio < high and t.advantage != 0 for t in tokens), "inside"
    if dual_clip is not None:
        assert any(t.branch == "dual" and t.ratio > dual_clip and t.advantage < 0 for t in tokens), "dual clip"
    mask = inputs["mask"]
    assert not mask.all() and not mask[0].any(), "masked tokens and a fully masked sequence"


@pytest.mark.parametrize("case", list(BRANCH_OPTIONS))
def test_branch_samples_reach_every_branch(backend, case):
    """The registry's branch samples (compared with the oracle in test_opinfo.py) reach every
    branch their options have; their masked tokens, NaN and inf everywhere, get exactly 0
    gradient and leave the rest finite."""
    assert f"branches-{case}-float32" in {s.name for s in OPS_BY_NAME["ppo_loss"].samples}
    inputs = branch_inputs(case, torch.float32)
    options = {k: inputs.pop(k) for k in BRANCH_OPTIONS[case]}
    want = oracle(inputs, **options)
    assert_every_branch(want[3], inputs, **PpoOptions(**options).__dict__)
    got = run(ppo_loss, inputs, **options)
    masked = ~inputs["mask"]
    assert (got[2][masked] == 0).all() and torch.isfinite(got[2]).all()


@pytest.mark.parametrize("vocab", [37, 1000, 4133])  # whole vectors of 32 plus a tail
def test_negative_infinite_logits(backend, vocab):
    """-inf logits (banned tokens) count as probability 0 with gradient 0, on every backend (the
    fallback once made the entropy 0 * log 0 = NaN)."""
    inputs = make_inputs((3, 8), vocab, seed=13, banned=0.3)
    banned = inputs["logits"].detach() == -math.inf
    for entropy_coef in (FULL_OPTIONS["entropy_coef"], 0.0):
        options = dict(FULL_OPTIONS, entropy_coef=entropy_coef)
        got = run(ppo_loss, inputs, **options)
        assert (got[2][banned] == 0).all()
        assert_matches(got, oracle(inputs, **options))


@requires_native
def test_scalar_cpu_path_matches_vectorized(tmp_path):
    """ATEN_CPU_CAPABILITY=default turns off the AVX2 passes of the CPU kernel: the scalar passes
    (what a CPU without AVX2 runs) give the same results in a fresh process."""
    script = (
        "import sys, torch\n"
        "from fastrl.ops import ppo_loss\n"
        "from tests.ops.helpers import FULL_OPTIONS, make_inputs\n"
        "from tests.ops.test_ppo_loss import run\n"
        "out = [run(ppo_loss, make_inputs((2, 3), v, dtype=d, seed=14), **FULL_OPTIONS)\n"
        "       for v, d in [(1000, torch.float32), (777, torch.bfloat16)]]\n"
        "torch.save(out, sys.argv[1])\n"
    )
    scalar = run_with_baseline_cpu_kernels(script, tmp_path / "scalar.pt")
    for (vocab, dtype), want in zip([(1000, torch.float32), (777, torch.bfloat16)], scalar):
        got = run(ppo_loss, make_inputs((2, 3), vocab, dtype=dtype, seed=14), **FULL_OPTIONS)
        assert_matches(got, want, dtype)


@pytest.mark.parametrize("use_weight", [False, True], ids=["ppo_loss_from_hidden", "token_logprobs"])
def test_masked_hidden_states_are_never_read(backend, use_weight):
    """NaN hidden states of masked tokens reach no gradient (they once made the LM head's weight
    gradient NaN through 0 * NaN): the same results as with those hidden states set to 0."""
    g = torch.Generator().manual_seed(15)
    shape, hidden_size, vocab = (3, 4), 8, 50
    token = {k: v for k, v in make_inputs(shape, vocab, seed=16).items() if k != "logits"}
    masked = ~token["mask"]
    weight = torch.randn(vocab, hidden_size, generator=g).requires_grad_()
    bias = torch.randn(vocab, generator=g).requires_grad_()
    clean = torch.randn(*shape, hidden_size, generator=g)
    clean[masked] = 0
    poisoned = clean.clone()
    poisoned[masked] = float("nan")

    def results(hidden):
        hidden = hidden.clone().requires_grad_()
        if use_weight:
            logp, entropy = token_logprobs(hidden, token["actions"], weight=weight, bias=bias,
                                           mask=token["mask"], chunk_size=5)  # fmt: skip
            out = (logp * 1.5 + entropy * 0.5).sum()
        else:
            out, _ = ppo_loss_from_hidden(hidden, weight, bias=bias, chunk_size=5, **token, **FULL_OPTIONS)
        return (out, *torch.autograd.grad(out, (hidden, weight, bias)))

    got, want = results(poisoned), results(clean)
    assert all(torch.isfinite(x).all() for x in got)
    assert (got[1][masked] == 0).all()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_clipped_tokens_with_infinite_ratio(backend):
    """old_logprobs = -inf gives ratio = inf: for A > 0 the upper clip sets pg, which is then
    constant in the logits, so the gradient is that of a large finite ratio (e^40), not NaN."""
    inputs = make_inputs((2, 5), 9, seed=17)
    del inputs["mask"]
    inputs["advantages"] = inputs["advantages"].abs() + 0.1
    infinite = torch.zeros(2, 5, dtype=torch.bool)
    infinite[0, 1] = infinite[1, 3] = True
    big = dict(inputs, old_logprobs=torch.where(infinite, inputs["old_logprobs"] - 40, inputs["old_logprobs"]))
    inf = dict(inputs, old_logprobs=torch.where(infinite, -math.inf, inputs["old_logprobs"]))
    loss, stats, grad = run(ppo_loss, inf, **FULL_OPTIONS)
    loss_big, stats_big, grad_big = run(ppo_loss, big, **FULL_OPTIONS)
    assert torch.isfinite(grad).all() and torch.isfinite(loss)
    torch.testing.assert_close(loss, loss_big, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, grad_big, rtol=1e-5, atol=1e-7)
    assert stats["ratio_max"].item() == math.inf and stats["clip_fraction"] == stats_big["clip_fraction"]


@requires_native
def test_sequence_level_infinite_ratio_is_its_sequence_s():
    """With importance_level="sequence" an infinite ratio is its whole sequence's: the upper clip
    holds for its tokens with A > 0 (finite gradient), but one with A < 0 and no dual clip makes
    the loss +inf and that token's gradient row non-finite, except at banned logits, which keep 0
    natively (the reference's log_softmax backward makes them 0 * inf = NaN) (docs/errors.md)."""
    inputs = make_inputs((3, 5), 9, seed=17, banned=0.3)
    del inputs["mask"]
    inputs["old_logprobs"][1, 2] = -math.inf
    inputs["advantages"][1] = torch.tensor([0.5, 1.0, 0.7, -1.0, -0.4])
    options = dict(FULL_OPTIONS, dual_clip=None, importance_level="sequence")
    with backend("native"):
        loss, _, grad = run(ppo_loss, inputs, **options)
    with backend("torch"):
        loss_ref, _, grad_ref = run(ppo_loss, inputs, **options)
    assert loss.item() == loss_ref.item() == math.inf
    unbounded = torch.zeros(3, 5, 1, dtype=torch.bool)
    unbounded[1, 3:] = True
    banned = inputs["logits"].detach() == -math.inf
    assert (grad[unbounded & banned] == 0).all() and grad_ref[unbounded & banned].isnan().all()
    assert not grad[unbounded & ~banned].isfinite().any()
    bounded = ~unbounded.expand_as(grad)
    assert grad[bounded].isfinite().all()
    torch.testing.assert_close(grad[bounded], grad_ref[bounded], rtol=1e-5, atol=1e-7)


def test_zero_kl_coef_ignores_an_overflowing_kl_estimate(backend):
    """Far from the reference, k3's exp(ref - logp) is inf in float32. With kl_coef = 0 the KL
    term is not part of the loss: loss and gradient are those without ref_logprobs (not 0 * inf =
    NaN); the kl statistic still reports the overflow. With kl_coef > 0 the loss is inf."""
    inputs = make_inputs((2, 3), 5, seed=3)
    del inputs["mask"]
    far = dict(inputs, ref_logprobs=inputs["old_logprobs"] + 120.0)
    options = dict(clip_low=0.2, kl_estimator="k3", entropy_coef=0.01)
    loss, stats, grad = run(ppo_loss, far, kl_coef=0.0, **options)
    loss_without, _, grad_without = run(ppo_loss, {k: v for k, v in inputs.items() if k != "ref_logprobs"}, **options)
    assert torch.equal(loss, loss_without) and torch.equal(grad, grad_without)
    assert stats["kl_ref"].item() == math.inf
    assert run(ppo_loss, far, kl_coef=0.1, **options)[0].item() == math.inf


def test_gaussian_zero_kl_coef_ignores_an_overflowing_kl_estimate():
    # log N(6; 0, e^-1) = -133.5: k3's exp(0 - logp) overflows in float32 (hypothesis found it).
    mean, log_std, actions = torch.zeros(1, 1), torch.full((1,), -1.0), torch.full((1, 1), 6.0)
    old, adv, ref = torch.full((1,), -130.0), torch.ones(1), torch.zeros(1)
    loss, stats = gaussian_ppo_loss(mean, log_std, actions, old, adv, ref_logprobs=ref, clip_low=0.2)
    loss_without, _ = gaussian_ppo_loss(mean, log_std, actions, old, adv, clip_low=0.2)
    assert torch.isfinite(loss) and torch.equal(loss, loss_without)


def test_all_masked_gives_zero_loss(backend):
    inputs = make_inputs((2, 3), 6)
    inputs["mask"] = torch.zeros_like(inputs["mask"])
    loss, stats, grad = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert loss.item() == 0 and stats["entropy"].item() == 0 and (grad == 0).all()


def test_three_tokens_by_hand(backend):
    """Loss, every stat and the gradient of a worked example: one sequence of 3 valid tokens and a
    masked 4th (NaN inputs, never read, counted nowhere); V = 2, logits (0, 0), so p = (1/2, 1/2),
    logp = -ln 2 and H = ln 2 for each; T = 1, clip 0.2, dual clip 3, k3 with kl_coef 0.1,
    entropy_coef 0.01, token mean.
        token  ratio  A     pg                                   ref - logp   k3 = e^x - x - 1
        0      4      -1    max(4, 1.2 * 1) = 4, dual: min(4, 3) = 3   ln 2    2 - ln 2 - 1 = 1 - ln 2
        1      1/2    -2    max(1/2 * 2, 0.8 * 2) = 1.6 (lower clip)   -ln 2   1/2 + ln 2 - 1
        2      1      1/2   -1/2 (no clip)                             0       0
    """
    ln2, nan = math.log(2), math.nan
    logits = torch.tensor([[[0.0, 0.0]] * 3 + [[nan, nan]]], requires_grad=True)
    actions = torch.tensor([[0, 1, 0, 1]])
    old = torch.tensor([[-ln2 - math.log(4), -ln2 - math.log(0.5), -ln2, nan]])  # logp - log(ratio)
    adv = torch.tensor([[-1.0, -2.0, 0.5, nan]])
    ref = torch.tensor([[0.0, -2 * ln2, -ln2, nan]])  # logp + (ref - logp)
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = ppo_loss(logits, actions, old, adv, mask=mask, ref_logprobs=ref, clip_low=0.2, dual_clip=3.0,
                           kl_coef=0.1, kl_estimator="k3", entropy_coef=0.01)  # fmt: skip
    kl = [1 - ln2, ln2 - 0.5, 0.0]  # sum 1/2
    expected = {
        "clip_fraction": 2 / 3,  # the dual clip and the lower clip
        "approx_kl": ((4 - 1 - math.log(4)) + (0.5 - 1 - math.log(0.5)) + 0) / 3,  # ratio - 1 - log ratio
        "entropy": ln2,
        "ratio_mean": (4 + 0.5 + 1) / 3,
        "ratio_max": 4.0,
        "kl_ref": sum(kl) / 3,
    }
    assert stats.keys() == expected.keys()
    for key, value in expected.items():
        assert stats[key].item() == pytest.approx(value, rel=1e-6, abs=1e-6), key
    pg = [3.0, 1.6, -0.5]
    assert loss.item() == pytest.approx(sum(p + 0.1 * k - 0.01 * ln2 for p, k in zip(pg, kl)) / 3, rel=1e-6)
    # dloss/dlogp: 0 from a clipped pg, -ratio A = -1/2 from token 2; kl_coef * (1 - e^x) from k3:
    # -0.1, 0.05, 0. The entropy's gradient is 0 at the uniform distribution. dlogp/dz = 1[a] - 1/2.
    dlogp = torch.tensor([-0.1, 0.05, -0.5]) / 3
    sign = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])  # +1 at the action
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad[0, :3], 0.5 * dlogp[:, None] * sign, rtol=1e-5, atol=1e-7)
    assert (grad[0, 3] == 0).all()


def test_aggregation_definitions():
    loss = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    expected = {
        "token_mean": 7 / 3,  # 3 valid tokens
        "seq_mean_token_mean": (1.5 + 4) / 2,  # the empty sequence does not count
        "seq_mean_token_sum": (3 + 4) / 2,
        "constant": 7 / (3 * 4),  # 3 sequences * max_len
    }
    for normalize, value in expected.items():
        opts = PpoOptions(normalize=normalize, max_len=4)
        assert _aggregate(loss, mask, opts).item() == pytest.approx(value), normalize


def oracle_logprobs(logits, actions, temperature, mask=None):
    """(logp, entropy) ``[...]`` of the scalar-loop oracle, float64, 0 where masked."""
    logp, entropy = token_logprobs_loop(logits, actions, temperature, mask)
    stack = lambda xs: torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in xs])  # noqa: E731
    return stack(logp).reshape(logits.shape[:-1]), stack(entropy).reshape(logits.shape[:-1])


def test_token_logprobs(backend):
    inputs = make_inputs((3, 4), 70, seed=12)
    logits, actions, mask = inputs["logits"], inputs["actions"], inputs["mask"]
    weights = torch.randn(2, 3, 4, dtype=torch.float64)
    logp, entropy = token_logprobs(logits, actions, temperature=0.7, mask=mask)
    grad = torch.autograd.grad((weights[0] * logp + weights[1] * entropy).sum(), logits)[0]
    logits64 = logits.detach().double().requires_grad_()
    logp_ref, entropy_ref = oracle_logprobs(logits64, actions, 0.7, mask)
    grad_ref = torch.autograd.grad((weights[0] * logp_ref + weights[1] * entropy_ref).sum(), logits64)[0]
    torch.testing.assert_close(logp.double(), logp_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy.double(), entropy_ref, rtol=1e-5, atol=1e-5)
    assert (logp[~mask] == 0).all() and (entropy[~mask] == 0).all() and (grad[~mask] == 0).all()
    torch.testing.assert_close(grad.double(), grad_ref, rtol=1e-4, atol=1e-6)

    # From hidden states, chunk by chunk.
    hidden, weight = torch.randn(3, 4, 8), torch.randn(70, 8)
    logp_h, entropy_h = token_logprobs(hidden, actions, weight=weight, temperature=0.7, chunk_size=5)
    logp_ref, entropy_ref = oracle_logprobs(F.linear(hidden, weight).double(), actions, 0.7)
    torch.testing.assert_close(logp_h.double(), logp_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy_h.double(), entropy_ref, rtol=1e-5, atol=1e-5)


def test_value_loss():
    values, old, returns = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 2.5, 0.1]), torch.zeros(3)
    # Clipped to old +- 0.2: 0.2 (1.0^2 wins), 2.3 (2.3^2 wins), 0.0 (|v - old| < 0.2: 0).
    assert value_loss(values, old, returns, clip=0.2).item() == pytest.approx(0.5 * (1.0 + 5.29 + 0.0) / 3)
    assert value_loss(values, old, returns).item() == pytest.approx(0.5 * 5.0 / 3)
    mask = torch.tensor([True, False, True])
    assert value_loss(values, old, returns, mask=mask).item() == pytest.approx(0.5 * 1.0 / 2)


def test_gaussian_ppo_loss():
    mean, log_std = torch.tensor([[0.5, -1.0]]), torch.tensor([0.1, -0.3])
    actions, adv = torch.tensor([[0.2, -0.8]]), torch.tensor([1.5])
    std = log_std.exp()
    logp = (-0.5 * ((actions - mean) / std) ** 2 - log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
    old = logp - 0.5  # ratio e^0.5 > 1.2: the clipped branch is active for A > 0
    loss, stats = gaussian_ppo_loss(mean, log_std, actions, old, adv, clip_low=0.2)
    assert loss.item() == pytest.approx(-1.2 * 1.5)
    assert stats["clip_fraction"].item() == 1.0
    assert stats["ratio_mean"].item() == pytest.approx(torch.e**0.5)


@pytest.mark.cuda
@requires_native
def test_cuda_out_of_range_action_gives_nan():
    inputs = make_inputs((2, 3), 5, device="cuda")
    inputs["actions"][1, 1] = 7
    loss, _ = ppo_loss(**{k: v for k, v in inputs.items() if k != "mask"})
    assert torch.isnan(loss)
    with pytest.raises(ValueError, match="actions must be in"):  # the check, turned on
        ppo_loss(**{k: v for k, v in inputs.items() if k != "mask"}, validate=True)
    with pytest.raises(ValueError, match="actions must be in"):
        token_logprobs(inputs["logits"], inputs["actions"], validate=True)


def test_validate_false_skips_the_action_check_on_the_cpu(backend):
    """validate=False skips the wrapper's check; the CPU kernel still refuses to read outside
    the row, and the fallback's gather raises too."""
    inputs = make_inputs((2, 3), 5)
    inputs["actions"][1, 1] = 7
    inputs["mask"][1, 1] = True  # a valid token: the kernel reads it
    with pytest.raises((RuntimeError, IndexError), match="outside|out of bounds|index"):
        ppo_loss(**inputs, validate=False)
    with pytest.raises(TypeError, match="validate must be a bool or None"):
        ppo_loss(**inputs, validate="yes")


# --------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)], ids=str)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_empty_batch_is_like_all_masked(backend, shape, normalize):
    """No tokens: loss 0, stats 0 and an empty gradient, on every op, like an all-masked batch."""
    options = dict(FULL_OPTIONS, normalize=normalize)
    inputs = make_inputs(shape, 7)
    loss, stats, grad = run(ppo_loss, inputs, **options)
    assert loss.item() == 0 and grad.shape == (*shape, 7)
    assert all(v.item() == 0 for v in stats.values())

    hidden = torch.randn(*shape, 4, requires_grad=True)
    weight = torch.randn(7, 4, requires_grad=True)
    token = {k: v for k, v in inputs.items() if k != "logits"}
    loss, stats = ppo_loss_from_hidden(hidden, weight, **token, **options)
    grads = torch.autograd.grad(loss, (hidden, weight))
    assert loss.item() == 0 and grads[0].shape == hidden.shape and (grads[1] == 0).all()
    logp, entropy = token_logprobs(hidden, token["actions"], weight=weight)
    assert logp.shape == entropy.shape == shape

    mean = torch.randn(*shape, 2, requires_grad=True)
    loss, stats = gaussian_ppo_loss(mean, torch.zeros(2), torch.zeros(*shape, 2), token["old_logprobs"],
                                    token["advantages"], ref_logprobs=token["ref_logprobs"],
                                    **dict(options, temperature=1.0))  # fmt: skip
    assert loss.item() == 0 and all(v.item() == 0 for v in stats.values())
    assert torch.autograd.grad(loss, mean)[0].shape == mean.shape
    values = torch.zeros(shape, requires_grad=True)
    assert value_loss(values, torch.zeros(shape), torch.zeros(shape), clip=0.2).item() == 0


# --------------------------------------------------------------------------- the Gaussian KL penalty


def gaussian_inputs(n=4, d=2, seed=18):
    g = torch.Generator().manual_seed(seed)
    return dict(mean=torch.randn(n, d, generator=g, requires_grad=True), log_std=0.3 * torch.randn(d, generator=g),
                actions=torch.randn(n, d, generator=g), old_logprobs=torch.randn(n, generator=g) - 2,
                advantages=torch.randn(n, generator=g))  # fmt: skip


@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_gaussian_ppo_loss_kl_penalty(estimator):
    """kl_coef with ref_logprobs adds kl_coef * KL per token (it used to be ignored)."""
    inputs = gaussian_inputs()
    ref = torch.randn(4, generator=torch.Generator().manual_seed(19), dtype=torch.float64).float() - 2
    plain, _ = gaussian_ppo_loss(**inputs)
    loss, stats = gaussian_ppo_loss(**inputs, ref_logprobs=ref, kl_coef=0.5, kl_estimator=estimator)
    std = inputs["log_std"].exp()
    logp = torch.distributions.Normal(inputs["mean"], std).log_prob(inputs["actions"]).sum(-1).detach()
    kl = {"k1": logp - ref, "k2": 0.5 * (logp - ref) ** 2, "k3": torch.exp(ref - logp) - (ref - logp) - 1}[estimator]
    torch.testing.assert_close(loss, plain + 0.5 * kl.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["kl_ref"], kl.mean(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- double backward


def hessian_vector_product_fd(grad_fn, x, v, eps=1e-6):
    """(grad(x + eps v) - grad(x - eps v)) / (2 eps): the oracle for autograd's HVP (float64)."""
    return (grad_fn(x + eps * v) - grad_fn(x - eps * v)) / (2 * eps)


def double_backward_cases():
    inputs = make_inputs((2, 3), 6, dtype=torch.float64, seed=20)
    logits, token = inputs.pop("logits").detach(), inputs
    acts, mask = token["actions"], token["mask"]
    g = torch.Generator().manual_seed(21)
    weight = torch.randn(6, 5, generator=g, dtype=torch.float64)
    hidden = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)

    def logp_entropy(out):
        return (1.5 * out[0] + 0.5 * out[1]).sum()

    return {
        "ppo_loss": (logits, lambda z: ppo_loss(z, **token, **FULL_OPTIONS)[0]),
        "token_logprobs": (logits, lambda z: logp_entropy(token_logprobs(z, acts, mask=mask, temperature=0.7))),
        "ppo_loss_from_hidden": (hidden, lambda h: ppo_loss_from_hidden(h, weight, **token, **FULL_OPTIONS)[0]),
        "token_logprobs_weight": (hidden, lambda h: logp_entropy(token_logprobs(h, acts, weight=weight, mask=mask))),
    }


@pytest.mark.parametrize("op", list(double_backward_cases()))
def test_double_backward_is_right_or_raises(backend, op):
    """A second derivative through the ops either equals the Hessian-vector product (by finite
    differences of the gradient) or raises; the native kernels used to give 0 silently."""
    x, op_fn = double_backward_cases()[op]
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(22), dtype=torch.float64)

    def loss_fn(x):  # + a cube, so the gradient has a graph even where the op's part has none
        return op_fn(x) + (x**3).sum() / 3

    def grad_fn(x):
        x = x.detach().requires_grad_()
        return torch.autograd.grad(loss_fn(x), x)[0]

    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
    try:
        (hvp,) = torch.autograd.grad((grad * v).sum(), x)
    except RuntimeError as exc:
        assert re.search("differentiable once|differentiate twice", str(exc)), exc
        assert backend == "native" or op in ("ppo_loss_from_hidden", "token_logprobs_weight")
        return
    want = hessian_vector_product_fd(grad_fn, x.detach(), v)
    assert want.abs().max() > 1e-3  # a real second derivative, not a vanishing one
    torch.testing.assert_close(hvp, want, rtol=1e-5, atol=1e-7)




def _bf16_head_grads(chunk_size, dtype=torch.bfloat16, n=4096, h=8, v=16):
    """Weight and bias gradients of ppo_loss_from_hidden at ``dtype``, as float64. Hidden states
    near 1 and equal advantages make every chunk's contribution to a gradient entry the same sign,
    so a sum kept in bf16 loses the late chunks against the large running total."""
    g = torch.Generator().manual_seed(0)
    hidden = 1 + 0.1 * torch.rand(n, h, generator=g, dtype=torch.float64)
    weight = 0.1 * torch.randn(v, h, generator=g, dtype=torch.float64)
    actions = torch.randint(0, v, (n,), generator=g)
    old, adv = torch.full((n,), -math.log(v), dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    w = weight.to(dtype).requires_grad_()
    b = torch.zeros(v, dtype=dtype, requires_grad=True)
    loss, _ = ppo_loss_from_hidden(hidden.to(dtype), w, actions, old.to(dtype), adv.to(dtype), bias=b,
                                   chunk_size=chunk_size)  # fmt: skip
    loss.backward()
    return w.grad.double(), b.grad.double()


def test_from_hidden_sums_head_gradients_over_chunks_in_float32():
    """256 chunks are as accurate as one: the weight and bias gradients are summed in float32 and
    rounded to bf16 once (summed in bf16 their error was 2.7x and 3.1x one chunk's)."""
    exact_w, exact_b = _bf16_head_grads(4096, torch.float64)

    def error(chunk_size):
        w, b = _bf16_head_grads(chunk_size)
        return ((w - exact_w).abs() / exact_w.abs()).max(), ((b - exact_b).abs() / exact_b.abs()).max()

    (one_w, one_b), (many_w, many_b) = error(4096), error(16)
    assert many_w <= 1.25 * one_w and many_b <= 1.25 * one_b, (one_w, one_b, many_w, many_b)
