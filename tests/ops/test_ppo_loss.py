"""fastrl.ops.ppo_loss and friends against the readable reference (ppo_loss_reference).

Tolerances: float32/float64 per-token quantities, loss and stats to rtol 1e-5 / atol 1e-5
(summation order differs from log_softmax); gradients to rtol 1e-4 and atol 1e-5 * max|grad|
(they scale like 1/V). bfloat16 logits: the forward reads the same bf16 values and accumulates
in float32 like the reference, so the same forward tolerances hold; the gradient is rounded to
bf16 by both, so it may differ by one bf16 ulp: rtol 1e-2, atol 1e-2 * max|grad|.
"""


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
    if len(shape) > 1:
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


@requires_native
@pytest.mark.parametrize("vocab", [37, 1000, 4133])  # whole vectors of 32 plus a tail
def test_negative_infinite_logits(vocab):
    """-inf logits (banned tokens) count as probability 0 with gradient 0, like finite logits
    too small for exp(): compared with the reference on -1e4 in their place."""
    inputs = make_inputs((3, 4), vocab, seed=13)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        banned = torch.rand(inputs["logits"].shape, generator=g) < 0.3
        banned[..., -1] = True  # in the tail of the row
        banned.scatter_(-1, inputs["actions"].unsqueeze(-1), False)
        inputs["logits"][banned] = float("-inf")
    got = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert (got[2][banned] == 0).all()
    finite = dict(inputs, logits=inputs["logits"].detach().clamp_min(-1e4).requires_grad_())
    assert_matches(got, run(ppo_loss_reference, finite, **FULL_OPTIONS))


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


@requires_native
def test_masked_rows_are_never_read():
    inputs = make_inputs((3, 4), 40, seed=5)
    with torch.no_grad():
        inputs["logits"][~inputs["mask"]] = float("nan")
    loss, stats, grad = run(ppo_loss, inputs, **FULL_OPTIONS)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
    assert (grad[~inputs["mask"]] == 0).all()
    assert (grad[inputs["mask"]] != 0).any()


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
