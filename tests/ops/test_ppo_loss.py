"""fastrl.ops.ppo_loss and friends against the readable reference (ppo_loss_reference).

Tolerances: float32/float64 per-token quantities, loss and stats to rtol 1e-5 / atol 1e-5
(summation order differs from log_softmax); gradients to rtol 1e-4 and atol 1e-5 * max|grad|
(they scale like 1/V). bfloat16 logits: the forward reads the same bf16 values and accumulates
in float32 like the reference, so the same forward tolerances hold; the gradient is rounded to
bf16 by both, so it may differ by one bf16 ulp: rtol 1e-2, atol 1e-2 * max|grad|.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from fastrl import _native
from fastrl.ops import gaussian_ppo_loss, ppo_loss, ppo_loss_from_hidden, token_logprobs, value_loss
from fastrl.ops.ppo_loss import (
    KL_ESTIMATORS,
    NORMALIZATIONS,
    PpoOptions,
    _aggregate,
    ppo_loss_reference,
    token_logprobs_reference,
)
from tests.conftest import requires_native, run_with_baseline_cpu_kernels

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
BACKENDS = [pytest.param("native", marks=requires_native), "torch"]
FULL_OPTIONS = dict(
    clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_coef=0.05, kl_estimator="k3",
    entropy_coef=0.01, temperature=0.7, normalize="seq_mean_token_mean",
)  # fmt: skip


@pytest.fixture(params=BACKENDS)
def backend(request):
    previous = _native.get_backend()
    _native.set_backend(request.param)
    yield request.param
    _native.set_backend(previous)


def make_inputs(shape, vocab, dtype=torch.float32, device="cpu", seed=0):
    """Logits, actions and per-token inputs whose ratios straddle the clip range; the mask
    leaves one sequence (row of the last dim) empty."""
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(*shape, vocab, generator=g)).to(dtype)
    actions = torch.randint(0, vocab, shape, generator=g)
    logp, _ = token_logprobs_reference(logits, actions, 0.7)
    old = logp.double() + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    ref = logp.double() + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    adv = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) > 0.3
    if len(shape) > 1 and shape[0] > 0:
        mask[0] = False
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    to = lambda x, t=acc: x.to(device=device, dtype=t)
    return dict(
        logits=logits.to(device).requires_grad_(), actions=actions.to(device),
        old_logprobs=to(old), advantages=to(adv), ref_logprobs=to(ref), mask=mask.to(device),
    )  # fmt: skip


def run(fn, inputs, upstream=2.5, **options):
    """(loss, stats, grad) of fn with the loss scaled by `upstream` before backward."""
    loss, stats = fn(**inputs, **options)
    (grad,) = torch.autograd.grad(upstream * loss, inputs["logits"])
    return loss, stats, grad


def assert_matches(got, want, grad_rtol=1e-4, grad_atol=1e-5):
    (loss, stats, grad), (loss_ref, stats_ref, grad_ref) = got, want
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    assert stats.keys() == stats_ref.keys()
    for key in stats:
        torch.testing.assert_close(stats[key], stats_ref[key], rtol=1e-5, atol=1e-5, msg=key)
    atol = grad_atol * grad_ref.abs().max().item()
    torch.testing.assert_close(grad.float(), grad_ref.float(), rtol=grad_rtol, atol=atol)


def reference_on_cpu(inputs, **options):
    cpu = {k: v.detach().cpu() for k, v in inputs.items()}
    cpu["logits"].requires_grad_()
    return run(ppo_loss_reference, cpu, **options)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, vocab", [((3, 5), 1), ((4, 7), 3), ((2, 9), 64), ((2, 3), 50257), ((2, 2), 128256)]
)
def test_matches_reference(backend, device, shape, vocab):
    inputs = make_inputs(shape, vocab, device=device)
    got = run(ppo_loss, inputs, **FULL_OPTIONS)
    want = reference_on_cpu(inputs, **FULL_OPTIONS)
    assert_matches((got[0].cpu(), {k: v.cpu() for k, v in got[1].items()}, got[2].cpu()), want)


@requires_native
@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_every_estimator_and_normalization(estimator, normalize):
    inputs = make_inputs((3, 6), 17, seed=1)
    options = {**FULL_OPTIONS, "kl_estimator": estimator, "normalize": normalize, "kl_coef": 0.3}
    if normalize == "constant":
        options["max_len"] = 8
    assert_matches(run(ppo_loss, inputs, **options), run(ppo_loss_reference, inputs, **options))


@requires_native
@pytest.mark.parametrize(
    "options",
    [
        {},  # defaults: symmetric clip, no KL, no entropy, T = 1
        {"dual_clip": None, "clip_high": 0.5, "temperature": 2.0},
        {"entropy_coef": -0.1, "temperature": 0.3},
    ],
)
def test_option_combinations(options):
    inputs = make_inputs((4, 5), 33, seed=2)
    del inputs["ref_logprobs"]
    assert_matches(run(ppo_loss, inputs, **options), run(ppo_loss_reference, inputs, **options))


@requires_native
@pytest.mark.parametrize(
    "device, dtype",
    [("cpu", torch.bfloat16), ("cpu", torch.float16), pytest.param("cuda", torch.bfloat16, marks=pytest.mark.cuda)],
)  # fmt: skip
def test_bfloat16_logits(device, dtype):
    inputs = make_inputs((2, 3), 50257, dtype=dtype, device=device, seed=3)
    got = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert got[2].dtype == dtype
    got = (got[0].cpu(), {k: v.cpu() for k, v in got[1].items()}, got[2].cpu())
    assert_matches(got, reference_on_cpu(inputs, **FULL_OPTIONS), grad_rtol=1e-2, grad_atol=1e-2)


@requires_native
def test_float64_matches_tightly():
    inputs = make_inputs((3, 4), 1000, dtype=torch.float64, seed=4)
    loss, _, grad = run(ppo_loss, inputs, **FULL_OPTIONS)
    loss_ref, _, grad_ref = run(ppo_loss_reference, inputs, **FULL_OPTIONS)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("vocab", [37, 1000, 4133])  # whole vectors of 32 plus a tail
def test_negative_infinite_logits(backend, vocab):
    """-inf logits (banned tokens) count as probability 0 with gradient 0, like finite logits
    too small for exp(): compared with the reference on -1e4 in their place. On every backend
    (the fallback once made the entropy 0 * log 0 = NaN)."""
    inputs = make_inputs((3, 4), vocab, seed=13)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        banned = torch.rand(inputs["logits"].shape, generator=g) < 0.3
        banned[..., -1] = True  # in the tail of the row
        banned.scatter_(-1, inputs["actions"].unsqueeze(-1), False)
        inputs["logits"][banned] = float("-inf")
    finite = dict(inputs, logits=inputs["logits"].detach().clamp_min(-1e4).requires_grad_())
    for entropy_coef in (FULL_OPTIONS["entropy_coef"], 0.0):
        options = dict(FULL_OPTIONS, entropy_coef=entropy_coef)
        got = run(ppo_loss, inputs, **options)
        assert (got[2][banned] == 0).all()
        assert_matches(got, run(ppo_loss_reference, finite, **options))


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
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-4
        assert_matches(got, want, grad_rtol=tol, grad_atol=tol / 10)


def test_masked_rows_are_never_read(backend):
    """NaN or inf anywhere in a masked token (logits, log-probs, advantages) changes nothing:
    same loss, stats and gradient as with finite values there, and a zero gradient row."""
    inputs = make_inputs((3, 4), 40, seed=5)
    masked = ~inputs["mask"]
    want = run(ppo_loss, inputs, **FULL_OPTIONS)
    with torch.no_grad():
        inputs["logits"][masked] = float("nan")
        inputs["logits"][tuple(masked.nonzero()[0].tolist())] = float("inf")
        for key, bad in (("old_logprobs", -math.inf), ("advantages", math.nan), ("ref_logprobs", math.inf)):
            inputs[key] = torch.where(masked, bad, inputs[key])
    loss, stats, grad = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
    assert (grad[masked] == 0).all()
    assert (grad[inputs["mask"]] != 0).any()
    assert_matches((loss, stats, grad), want)


@pytest.mark.parametrize("use_weight", [False, True])
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
    logp, _ = token_logprobs_reference(inputs["logits"].detach(), inputs["actions"], FULL_OPTIONS["temperature"])
    infinite = torch.zeros(2, 5, dtype=torch.bool)
    infinite[0, 1] = infinite[1, 3] = True
    big = dict(inputs, old_logprobs=torch.where(infinite, logp - 40, inputs["old_logprobs"]))
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
    base = torch.randn(30, 8).requires_grad_()  # [V, N]: logits.t() has column stride N
    inputs = make_inputs((8,), 30, seed=6)
    inputs["logits"] = base.t()
    assert not inputs["logits"].is_contiguous()
    got = run(ppo_loss, inputs, **FULL_OPTIONS)
    inputs["logits"] = base.t().detach().contiguous().requires_grad_()
    assert_matches(got, run(ppo_loss_reference, inputs, **FULL_OPTIONS))


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
    inputs = make_inputs((2, 5), 50, seed=9)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(**kw):
        loss, stats = ppo_loss(**kw, **FULL_OPTIONS)
        return loss, stats

    assert_matches(run(step, inputs), run(ppo_loss_reference, inputs, **FULL_OPTIONS))


@pytest.mark.parametrize("use_bias", [False, True])
def test_from_hidden_matches_full_logits(backend, use_bias):
    g = torch.Generator().manual_seed(10)
    shape, hidden_size, vocab = (2, 5), 16, 300
    hidden = torch.randn(*shape, hidden_size, generator=g, requires_grad=True)
    weight = (0.3 * torch.randn(vocab, hidden_size, generator=g)).requires_grad_()
    bias = torch.randn(vocab, generator=g, requires_grad=True) if use_bias else None
    token = {k: v for k, v in make_inputs(shape, vocab, seed=11).items() if k != "logits"}
    params = [hidden, weight] + ([bias] if use_bias else [])

    loss, stats = ppo_loss_from_hidden(hidden, weight, bias=bias, chunk_size=3, **token, **FULL_OPTIONS)
    grads = torch.autograd.grad(2.5 * loss, params)
    logits = F.linear(hidden, weight, bias)
    loss_ref, stats_ref = ppo_loss_reference(logits, **token, **FULL_OPTIONS)
    grads_ref = torch.autograd.grad(2.5 * loss_ref, params)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for key in stats_ref:
        torch.testing.assert_close(stats[key], stats_ref[key], rtol=1e-5, atol=1e-6, msg=key)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


def test_token_logprobs(backend):
    inputs = make_inputs((3, 4), 70, seed=12)
    logits, actions, mask = inputs["logits"], inputs["actions"], inputs["mask"]
    weights = torch.randn(2, 3, 4)
    logp, entropy = token_logprobs(logits, actions, temperature=0.7, mask=mask)
    grad = torch.autograd.grad((weights[0] * logp + weights[1] * entropy).sum(), logits)[0]
    logp_ref, entropy_ref = token_logprobs_reference(logits, actions, 0.7)
    logp_ref, entropy_ref = torch.where(mask, logp_ref, 0), torch.where(mask, entropy_ref, 0)
    grad_ref = torch.autograd.grad((weights[0] * logp_ref + weights[1] * entropy_ref).sum(), logits)[0]
    torch.testing.assert_close(logp, logp_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, entropy_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)

    # From hidden states, chunk by chunk.
    hidden, weight = torch.randn(3, 4, 8), torch.randn(70, 8)
    logp_h, entropy_h = token_logprobs(hidden, actions, weight=weight, temperature=0.7, chunk_size=5)
    logp_ref, entropy_ref = token_logprobs_reference(F.linear(hidden, weight), actions, 0.7)
    torch.testing.assert_close(logp_h, logp_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy_h, entropy_ref, rtol=1e-5, atol=1e-5)


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
def test_bad_input(backend, case):
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
