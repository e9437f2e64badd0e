"""fastrl.ops.ppo_loss and friends on every backend against an independent oracle: the scalar
loop of tests/ops/oracles.py (one token at a time, float64, autograd for the gradient), written
from the formulas, never the reference, which is what the PyTorch backend runs.

Inputs reach every branch: each sequence cycles through RATIO_CASES, ratios placed in bands far
from every clip bound (so float32 and float64 agree on the branch): both clips, the dual clip and
the unclipped side of each, with masked tokens and a fully masked sequence.

Tolerances against the float64 oracle: float32/bfloat16/float16 logits (computed in float32) give
the loss, stats and per-token values to rtol 1e-5 / atol 1e-5, gradients to rtol 1e-4 and atol
1e-5 * max|grad| (they scale like 1/V); bfloat16 and float16 gradients are rounded to that dtype:
rtol 1e-2, atol 1e-2 * max|grad|. float64 logits: rtol 1e-10 / atol 1e-12, gradients rtol 1e-9.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from fastrl import _native
from fastrl.ops import gaussian_ppo_loss, ppo_loss, ppo_loss_from_hidden, token_logprobs, value_loss
from fastrl.ops.ppo_loss import KL_ESTIMATORS, NORMALIZATIONS, PpoOptions, _aggregate
from tests.conftest import requires_native, run_with_baseline_cpu_kernels
from tests.ops.oracles import ppo_loss_loop, token_logprobs_loop

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
BACKENDS = [pytest.param("native", marks=requires_native), "torch"]
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


@pytest.fixture(params=BACKENDS)
def backend(request):
    previous = _native.get_backend()
    _native.set_backend(request.param)
    yield request.param
    _native.set_backend(previous)


def make_inputs(shape, vocab, dtype=torch.float32, device="cpu", seed=0, temperature=0.7, banned=0.0, logits=None):
    """Logits, actions and per-token inputs. The tokens of each sequence (row of the last dim)
    take RATIO_CASES in a random order, cycling, so a sequence of 8 or more tokens has them all:
    old_logprobs = logp - log(ratio) at ``temperature``, ratios jittered by at most 2%. The mask
    (2-D and up) leaves the first sequence empty, drops about a third of the second's tokens and
    keeps every later sequence whole. ``banned``: that fraction of the logits is -inf (never an action's; the
    last logit of every row, in the tail of the vectorized loops, always). ``logits``: use these
    values (e.g. those of hidden states) instead of random ones."""
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


def tolerances(dtype):
    """(rtol, atol) of the loss and stats, and (rtol, atol relative to max|grad|) of the gradient
    (see the top of the file)."""
    if dtype == torch.float64:
        return (1e-10, 1e-12), (1e-9, 1e-12)
    if dtype in (torch.bfloat16, torch.float16):
        return (1e-5, 1e-5), (1e-2, 1e-2)
    return (1e-5, 1e-5), (1e-4, 1e-5)


def assert_matches(got, want, dtype=torch.float32):
    """got = (loss, stats, grad) of the op, want = the oracle's; compared in float64 on the CPU."""
    (loss, stats, grad), (loss_ref, stats_ref, grad_ref) = got[:3], want[:3]
    (rtol, atol), (grad_rtol, grad_atol) = tolerances(dtype)
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, vocab",
    [((3, 8), 1), ((4, 8), 3), ((3, 9), 64), ((2, 3), 50257), ((2, 2), 128256), ((3, 2, 8), 5), ((8,), 5)],
    ids=["V=1", "V=3", "V=64", "V=50257", "V=128256", "3d-batch", "one-sequence"],
)
def test_matches_oracle(backend, device, shape, vocab):
    inputs = make_inputs(shape, vocab, device=device)
    want = oracle(inputs, **FULL_OPTIONS)
    if vocab < 100 and len(shape) == 2:
        assert_every_branch(want[3], inputs, **FULL_OPTIONS)
    assert_matches(run(ppo_loss, inputs, **FULL_OPTIONS), want)


# Every KL estimator with every normalization (full options: both clips, the dual clip, an entropy
# bonus, T != 1), and the option combinations around them.
BRANCH_OPTIONS = {
    f"{estimator}-{normalize}": dict(FULL_OPTIONS, kl_estimator=estimator, normalize=normalize, kl_coef=0.3,
                                     max_len=11 if normalize == "constant" else None)
    for estimator in KL_ESTIMATORS
    for normalize in NORMALIZATIONS
}  # fmt: skip
BRANCH_OPTIONS.update({
    "defaults-no-ref": dict(),  # symmetric clip, no KL, no entropy, T = 1, no reference
    "ref-without-kl-coef": dict(clip_low=0.2, kl_estimator="k2"),  # kl_ref is reported, loss has no KL
    "no-dual-clip-T2": dict(clip_high=0.5, temperature=2.0, normalize="token_mean"),
    "clip-low-0-negative-entropy": dict(clip_low=0.0, clip_high=0.28, entropy_coef=-0.1, temperature=0.3,
                                        dual_clip=3.0, normalize="constant"),
})  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(BRANCH_OPTIONS))
def test_every_branch_matches_oracle(backend, case, dtype):
    """Loss, every stat and the gradient on inputs that provably reach each branch; NaN and inf
    in every input of the masked tokens, which must never be read."""
    options = BRANCH_OPTIONS[case]
    inputs = make_inputs((5, 8), 17, dtype=dtype, seed=1, temperature=options.get("temperature", 1.0))
    if case == "defaults-no-ref":
        del inputs["ref_logprobs"]
    masked = ~inputs["mask"]
    with torch.no_grad():
        inputs["logits"][masked] = math.nan
        inputs["logits"][tuple(masked.nonzero()[0].tolist())] = math.inf
        for key, bad in (("old_logprobs", -math.inf), ("advantages", math.nan), ("ref_logprobs", math.inf)):
            if key in inputs:
                inputs[key] = torch.where(masked, bad, inputs[key])
    want = oracle(inputs, **options)
    assert_every_branch(want[3], inputs, **PpoOptions(**options).__dict__)
    got = run(ppo_loss, inputs, **options)
    assert_matches(got, want, dtype)
    assert (got[2][masked] == 0).all() and torch.isfinite(got[2]).all()


@pytest.mark.parametrize(
    "device, dtype",
    [("cpu", torch.bfloat16), ("cpu", torch.float16), pytest.param("cuda", torch.bfloat16, marks=pytest.mark.cuda)],
    ids=["cpu-bfloat16", "cpu-float16", "cuda-bfloat16"],
)  # fmt: skip
def test_half_precision_logits(backend, device, dtype):
    inputs = make_inputs((3, 8), 50257, dtype=dtype, device=device, seed=3)
    got = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert got[2].dtype == dtype
    assert_matches(got, oracle(inputs, **FULL_OPTIONS), dtype)


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
        "from tests.ops.test_ppo_loss import FULL_OPTIONS, make_inputs, run\n"
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


def test_all_masked_gives_zero_loss(backend):
    inputs = make_inputs((2, 3), 6)
    inputs["mask"] = torch.zeros_like(inputs["mask"])
    loss, stats, grad = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert loss.item() == 0 and stats["entropy"].item() == 0 and (grad == 0).all()


@requires_native
def test_strided_logits():
    inputs = make_inputs((8,), 30, seed=6)
    base = inputs["logits"].detach().t().contiguous().requires_grad_()  # [V, N]
    inputs["logits"] = base.t()  # column stride N
    assert not inputs["logits"].is_contiguous()
    loss, stats = ppo_loss(**inputs, **FULL_OPTIONS)
    (grad,) = torch.autograd.grad(2.5 * loss, base)
    assert_matches((loss, stats, grad.t()), oracle(inputs, **FULL_OPTIONS))


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


@requires_native
def test_gradcheck_float64():
    inputs = make_inputs((2, 3), 4, dtype=torch.float64, seed=7)
    logits = inputs.pop("logits")
    assert torch.autograd.gradcheck(lambda z: ppo_loss(z, **inputs, **FULL_OPTIONS)[0], (logits,))
    actions, mask = inputs["actions"], inputs["mask"]
    assert torch.autograd.gradcheck(
        lambda z: token_logprobs(z, actions, mask=mask, temperature=1.3), (logits,)
    )


@requires_native
def test_opcheck():
    inputs = make_inputs((5,), 7, seed=8)
    logits, actions, mask = inputs["logits"].detach(), inputs["actions"], inputs["mask"]
    old, adv, ref = inputs["old_logprobs"], inputs["advantages"], inputs["ref_logprobs"]
    for requires_grad in (False, True):
        z = logits.clone().requires_grad_(requires_grad)
        torch.library.opcheck(torch.ops.fastrl.token_logprobs, (z, actions, mask, 0.7))
        torch.library.opcheck(
            torch.ops.fastrl.ppo_loss,
            (z, actions, old, adv, ref, mask, 0.2, 0.28, 3.0, 0.1, "k2", 0.01, 0.7),
        )
    logp, entropy, lse = torch.ops.fastrl.token_logprobs(logits, actions, mask, 0.7)
    torch.library.opcheck(
        torch.ops.fastrl.token_logprobs_backward,
        (torch.randn(5), torch.randn(5), logits, actions, mask, lse, entropy, 0.7),
    )


@requires_native
def test_torch_compile_fullgraph():
    inputs = make_inputs((3, 8), 50, seed=9)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(**kw):
        loss, stats = ppo_loss(**kw, **FULL_OPTIONS)
        return loss, stats

    assert_matches(run(step, inputs), oracle(inputs, **FULL_OPTIONS))


@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
def test_from_hidden_matches_full_logits(backend, use_bias):
    g = torch.Generator().manual_seed(10)
    shape, hidden_size, vocab = (3, 8), 16, 300
    hidden = torch.randn(*shape, hidden_size, generator=g, requires_grad=True)
    weight = (0.3 * torch.randn(vocab, hidden_size, generator=g)).requires_grad_()
    bias = torch.randn(vocab, generator=g, requires_grad=True) if use_bias else None
    inputs = make_inputs(shape, vocab, seed=11, logits=F.linear(hidden, weight, bias))
    token = {k: v for k, v in inputs.items() if k != "logits"}
    params = [hidden, weight] + ([bias] if use_bias else [])

    loss, stats = ppo_loss_from_hidden(hidden, weight, bias=bias, chunk_size=3, **token, **FULL_OPTIONS)
    grads = torch.autograd.grad(2.5 * loss, params)
    params64 = [p.detach().double().requires_grad_() for p in params]
    logits64 = F.linear(params64[0], params64[1], params64[2] if use_bias else None)
    loss_ref, stats_ref, _ = ppo_loss_loop(logits64, **token, **FULL_OPTIONS)
    grads_ref = torch.autograd.grad(2.5 * loss_ref, params64)
    torch.testing.assert_close(loss.double(), loss_ref, rtol=1e-5, atol=1e-5)
    assert stats.keys() == stats_ref.keys()
    for key in stats_ref:
        torch.testing.assert_close(stats[key].double(), stats_ref[key], rtol=1e-5, atol=1e-5, msg=key)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


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


def bad_inputs():
    """(description, changes to valid inputs or options, error type, message fragment)."""
    return [
        ("action too big", {"actions": torch.full((2, 3), 5)}, ValueError, "actions must be in"),
        ("negative action", {"actions": -torch.ones(2, 3, dtype=torch.long)}, ValueError, "actions must be in"),
        ("float actions", {"actions": torch.zeros(2, 3)}, TypeError, "actions must be an integer"),
        ("int logits", {"logits": torch.zeros(2, 3, 5, dtype=torch.long)}, TypeError, "logits must be a floating"),
        ("actions shape", {"actions": torch.zeros(3, 2, dtype=torch.long)}, ValueError, "actions must have shape"),
        ("old shape", {"old_logprobs": torch.zeros(2, 4)}, ValueError, "old_logprobs must have shape"),
        ("advantages shape", {"advantages": torch.zeros(6)}, ValueError, "advantages must have shape"),
        ("mask shape", {"mask": torch.ones(3, 2, dtype=torch.bool)}, ValueError, "mask must have shape"),
        ("estimator", {"kl_estimator": "k4"}, ValueError, "kl_estimator must be one of"),
        ("normalize", {"normalize": "mean"}, ValueError, "normalize must be one of"),
        ("temperature", {"temperature": 0.0}, ValueError, "temperature must be >"),
        ("dual clip", {"dual_clip": 1.0}, ValueError, "dual_clip must be >"),
        ("kl without ref", {"ref_logprobs": None, "kl_coef": 0.1}, ValueError, "needs ref_logprobs"),
        ("max_len", {"normalize": "constant", "max_len": 0}, ValueError, "max_len must be"),
        ("devices", {"advantages": torch.zeros(2, 3, device="meta")}, ValueError, "advantages is on meta"),
    ]


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c[0])
def test_bad_input(case):
    """The wrapper checks arguments before it picks a backend: one run covers both."""
    _, changes, error, match = case
    inputs = make_inputs((2, 3), 5)
    inputs.update(changes)
    if inputs["ref_logprobs"] is None:
        del inputs["ref_logprobs"]
    with pytest.raises(error, match=match):
        ppo_loss(**inputs)


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


# --------------------------------------------------------------------------- argument checks


def test_value_loss_checks_every_argument():
    """[N, 1] against [N] used to broadcast to [N, N] and answer a wrong number."""
    v, old, ret = torch.randn(5), torch.randn(5), torch.randn(5)
    cases = [
        (dict(values=v[:, None]), ValueError, r"old_values must have the shape of values \(5, 1\)"),
        (dict(returns=ret[:, None]), ValueError, r"returns must have the shape of values \(5,\), got \(5, 1\)"),
        (dict(mask=torch.ones(5, 1, dtype=torch.bool)), ValueError, "mask must have the shape of values"),
        (dict(values=v.long()), TypeError, "values must be a floating"),
        (dict(old_values=old.int()), TypeError, "old_values must be a floating"),
        (dict(returns=[0.0] * 5), TypeError, "returns must be a torch.Tensor"),
        (dict(returns=ret.to("meta")), ValueError, "returns is on meta"),
        (dict(mask=torch.ones(5, dtype=torch.bool, device="meta")), ValueError, "mask is on meta"),
        (dict(clip=-0.1), ValueError, "clip must be >= 0"),
    ]
    for change, error, match in cases:
        args = dict(dict(values=v, old_values=old, returns=ret), **change)
        with pytest.raises(error, match=match):
            value_loss(**args)


def gaussian_inputs(n=4, d=2, seed=18):
    g = torch.Generator().manual_seed(seed)
    return dict(mean=torch.randn(n, d, generator=g, requires_grad=True), log_std=0.3 * torch.randn(d, generator=g),
                actions=torch.randn(n, d, generator=g), old_logprobs=torch.randn(n, generator=g) - 2,
                advantages=torch.randn(n, generator=g))  # fmt: skip


def test_gaussian_ppo_loss_checks_every_argument():
    base = gaussian_inputs()
    cases = [
        (dict(mean=torch.zeros(4, 2, dtype=torch.long)), TypeError, "mean must be a floating"),
        (dict(mean=torch.zeros(4, 0)), ValueError, "mean must be"),
        (dict(log_std=torch.zeros(3)), ValueError, "log_std must broadcast to the shape of mean"),
        (dict(log_std=torch.zeros(2, 4, 2)), ValueError, "log_std must broadcast to the shape of mean"),
        (dict(actions=torch.zeros(4, 1)), ValueError, "actions must have the shape of mean"),
        (dict(actions=torch.zeros(4, 2, dtype=torch.long)), TypeError, "actions must be a floating"),
        (dict(old_logprobs=torch.zeros(4, 1)), ValueError, r"old_logprobs must have shape \(4,\)"),
        (dict(advantages=torch.zeros(4, 2)), ValueError, "advantages must have shape"),
        (dict(advantages=torch.zeros(4, device="meta")), ValueError, "advantages is on meta"),
        (dict(mask=torch.ones(4, 1, dtype=torch.bool)), ValueError, "mask must have shape"),
        (dict(kl_coef=0.1), ValueError, "kl_coef != 0 needs ref_logprobs"),
        (dict(ref_logprobs=torch.zeros(5), kl_coef=0.1), ValueError, "ref_logprobs must have shape"),
        (dict(temperature=2.0), ValueError, "temperature does not apply"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match):
            gaussian_ppo_loss(**dict(base, **change))


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


def test_token_logprobs_rejects_linear_arguments_without_weight():
    """bias= and chunk_size= only apply to hidden states (weight given); they were ignored."""
    inputs = make_inputs((2, 3), 5)
    logits, actions = inputs["logits"], inputs["actions"]
    with pytest.raises(ValueError, match="bias applies only with weight"):
        token_logprobs(logits, actions, bias=torch.zeros(5))
    for chunk_size in (-1, 0, 4):
        with pytest.raises(ValueError, match="chunk_size applies only with weight"):
            token_logprobs(logits, actions, chunk_size=chunk_size)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got -1"):
        token_logprobs(torch.zeros(2, 3, 4), actions, weight=torch.zeros(5, 4), chunk_size=-1)
