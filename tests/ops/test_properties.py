"""Property tests of every public op (hypothesis): random shapes (0-size included), memory layouts
(transposed, expanded, sliced), dtypes, masks and non-finite values.

Where an op has a native kernel, the native backend must give its PyTorch reference's answer: bit
for bit for gae / discounted_returns on the CPU (docs promise it), to a stated tolerance for the
loss ops (their sums run in another order), with NaN and inf in the same places. The PyTorch
backend of those ops *is* the reference, so it is checked against the scalar-loop oracles of
tests/ops/oracles.py in test_returns.py and test_ppo_loss.py instead, never against itself here
(ppo_loss_from_hidden is the exception: its chunking runs on both backends). Bad arguments raise
the documented error; the wrappers check them before picking a backend, so one backend is enough.
The ops without a kernel (rollout_next_values, value_loss, gaussian_ppo_loss) are checked against
scalar loops written here.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from fastrl import ops
from fastrl.ops.ppo_loss import (
    IMPORTANCE_LEVELS,
    KL_ESTIMATORS,
    NORMALIZATIONS,
    POLICY_LOSSES,
    ppo_loss_reference,
    token_logprobs_reference,
)
from fastrl.ops.returns import discounted_returns_reference, gae_reference
from tests.conftest import backend, requires_native
from tests.ops.helpers import assert_same_bits

SEEDS = st.integers(0, 2**32 - 1)
LAYOUTS = ("contiguous", "transposed", "sliced", "expanded")
BAD = (math.inf, -math.inf, math.nan)


# --------------------------------------------------------------------------- building inputs


def randn(g, shape, dtype=torch.float64, nonfinite=0.0):
    """Normal values; a ``nonfinite`` fraction of them replaced by inf, -inf or NaN."""
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if nonfinite:
        bad = torch.tensor(BAD, dtype=torch.float64)[torch.randint(0, 3, shape, generator=g)]
        x = torch.where(torch.rand(shape, generator=g) < nonfinite, bad, x)
    return x.to(dtype)


def with_layout(x: torch.Tensor, layout: str, dim: int = 0) -> torch.Tensor:
    """x's values (for "expanded": those of its first slice along ``dim``, repeated) in another
    memory layout: dims reversed in memory, a stride-2 slice of a bigger tensor, or a stride-0
    broadcast."""
    if layout == "transposed" and x.ndim >= 2:
        return x.permute(*reversed(range(x.ndim))).contiguous().permute(*reversed(range(x.ndim)))
    if layout == "sliced" and x.ndim >= 1:
        big = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "expanded" and x.ndim >= 1 and x.shape[dim] > 0:
        return x.narrow(dim, 0, 1).expand(x.shape)
    return x


def flags(g, shape, p, kind):
    """A bool-like flag tensor as the ops accept it: bool, 0/1 integers or floats."""
    f = torch.rand(shape, generator=g) < p
    return {"bool": f, "int": f.to(torch.int32), "float": f.to(torch.float32)}[kind]


def outcome(fn):
    """``("ok", result)``, or ``("error", type, message)`` for the errors the ops document."""
    try:
        return ("ok", fn())
    except (ValueError, TypeError) as exc:
        return ("error", type(exc), str(exc))


def on_both_backends(fn):
    """fn's results with the native kernels and with the PyTorch fallbacks, or None when both
    raised the same error (anything else fails)."""
    with backend("native"):
        native = outcome(fn)
    with backend("torch"):
        fallback = outcome(fn)
    if native[0] == "error" or fallback[0] == "error":
        assert native == fallback
        return None
    return native[1], fallback[1]


def close(got, want, rtol, atol):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True)


# --------------------------------------------------------------------------- returns


@st.composite
def rollouts(draw):
    g = torch.Generator().manual_seed(draw(SEEDS))
    T = draw(st.integers(0, 9))
    batch = tuple(draw(st.lists(st.integers(0, 4), max_size=2)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    nonfinite = draw(st.sampled_from([0.0, 0.05, 0.3]))
    shape = (T, *batch)
    case = dict(
        shape=shape, time_dim=draw(st.sampled_from([0, -1] if batch else [0])),
        gamma=draw(st.floats(0, 1)), lam=draw(st.floats(0, 1)),
        layouts=draw(st.lists(st.sampled_from(LAYOUTS), min_size=7, max_size=7)),
        tensors=[randn(g, shape, dtype, nonfinite) for _ in range(3)],
        terminated=flags(g, shape, 0.2, draw(st.sampled_from(["bool", "int", "float"]))),
        done=flags(g, shape, 0.4, "bool"),
        mask=flags(g, shape, 0.7, "bool") if draw(st.booleans()) else None,
        bootstrap=randn(g, batch, dtype, nonfinite) if draw(st.booleans()) else None,
        no_done=draw(st.booleans()),
    )  # fmt: skip
    case["done"] = case["done"] | case["terminated"].bool()
    return case


def batch_major(x, time_dim, layout):
    """A time-major ``[T, *batch]`` tensor moved to ``time_dim``, in ``layout``."""
    return None if x is None else with_layout(x.movedim(0, time_dim), layout)


@requires_native
@given(rollouts())
def test_gae_native_is_the_reference_bit_for_bit(case):
    dim, lay = case["time_dim"], case["layouts"]
    r, v, nv = (batch_major(x, dim, lay[i]) for i, x in enumerate(case["tensors"]))
    term, done, mask = (batch_major(case[k], dim, lay[3 + i]) for i, k in enumerate(["terminated", "done", "mask"]))
    with backend("native"):
        adv, ret = ops.gae(r, v, nv, term, done, case["gamma"], case["lam"], mask=mask, time_dim=dim)
    # The reference on time-major, contiguous copies in the compute dtype (float32 for half).
    compute = torch.float64 if torch.float64 in (r.dtype, v.dtype, nv.dtype) else torch.float32
    tm = [x.movedim(dim, 0).to(compute).contiguous() for x in (r, v, nv)]
    flags_tm = [None if x is None else x.movedim(dim, 0).bool().contiguous() for x in (term, done, mask)]
    ref_adv, ref_ret = gae_reference(*tm, *flags_tm[:2], case["gamma"], case["lam"], flags_tm[2])
    assert_same_bits(adv, ref_adv.movedim(0, dim))
    assert_same_bits(ret, ref_ret.movedim(0, dim))


@requires_native
@given(rollouts())
def test_discounted_returns_native_is_the_reference_bit_for_bit(case):
    dim, lay = case["time_dim"], case["layouts"]
    r = batch_major(case["tensors"][0], dim, lay[0])
    done = None if case["no_done"] else batch_major(case["done"], dim, lay[2])  # None: no episode ends
    mask = batch_major(case["mask"], dim, lay[3])
    boot = case["bootstrap"]
    boot = None if boot is None else with_layout(boot, lay[4])
    with backend("native"):
        out = ops.discounted_returns(r, done, case["gamma"], bootstrap=boot, mask=mask, time_dim=dim)
    compute = torch.float64 if torch.float64 in (r.dtype, getattr(boot, "dtype", None)) else torch.float32
    r_tm = r.movedim(dim, 0).to(compute)
    done_tm = torch.zeros(r_tm.shape, dtype=torch.bool) if done is None else done.movedim(dim, 0).bool()
    boot_tm = torch.zeros(r_tm.shape[1:], dtype=compute) if boot is None else boot.to(compute)
    mask_tm = None if mask is None else mask.movedim(dim, 0).bool()
    want = discounted_returns_reference(r_tm, done_tm, case["gamma"], boot_tm, mask_tm)
    assert_same_bits(out, want.movedim(0, dim))


# Bad arguments and the error every backend raises (a fragment of the message).
RETURNS_ERRORS = {
    "values shape": (lambda a: a.update(values=a["values"][..., None]), ValueError, "values must have the shape"),
    "done dtype": (lambda a: a.update(done=a["done"].to(torch.complex64)), TypeError, "done must be bool"),
    "mask shape": (lambda a: a.update(mask=a["mask"][None]), ValueError, "mask must have the shape"),
    "gamma": (lambda a: a.update(gamma=1.0 + 1e-9), ValueError, r"gamma must be in \[0, 1\]"),
    "lam": (lambda a: a.update(lam=math.nan), ValueError, r"lam must be in \[0, 1\]"),
    "time_dim": (lambda a: a.update(time_dim=3), ValueError, "time_dim must be in"),
    "int rewards": (lambda a: a.update(rewards=a["rewards"].long()), TypeError, "rewards must be a floating"),
}


@given(rollouts(), st.sampled_from(sorted(RETURNS_ERRORS)))
def test_returns_errors(case, error):
    mutate, error_type, match = RETURNS_ERRORS[error]
    r, v, nv = case["tensors"]
    args = dict(rewards=r, values=v, next_values=nv, terminated=case["terminated"], done=case["done"],
                mask=flags(torch.Generator(), r.shape, 1.0, "bool"), gamma=case["gamma"], lam=case["lam"])  # fmt: skip
    mutate(args)
    with pytest.raises(error_type, match=match):
        ops.gae(**args)
    if error not in ("values shape", "lam"):  # the same checks in discounted_returns
        del args["values"], args["next_values"], args["terminated"], args["lam"]
        with pytest.raises(error_type, match=match):
            ops.discounted_returns(**args)


@given(rollouts(), st.booleans())
def test_rollout_next_values_shifts_time(case, with_final):
    """Against a loop over time: next_values[t] = values[t + 1], last_value at the end, the final
    observation's value where an episode was cut."""
    dim, lay = case["time_dim"], case["layouts"]
    g = torch.Generator().manual_seed(0)
    values = batch_major(case["tensors"][0], dim, lay[0])
    last = with_layout(case["tensors"][1][0] if case["shape"][0] else randn(g, case["shape"][1:]), lay[1])
    final = batch_major(case["tensors"][2], dim, lay[2]) if with_final else None
    final_mask = batch_major(case["done"], dim, lay[3]) if with_final else None
    got = ops.rollout_next_values(values, last, final_values=final, final_mask=final_mask, time_dim=dim)
    v_tm = values.movedim(dim, 0)
    want = torch.empty_like(v_tm)
    for t in range(v_tm.shape[0]):
        want[t] = v_tm[t + 1] if t + 1 < v_tm.shape[0] else last.to(v_tm.dtype)
        if with_final:
            want[t] = torch.where(final_mask.movedim(dim, 0)[t], final.movedim(dim, 0)[t].to(v_tm.dtype), want[t])
    assert_same_bits(got, want.movedim(0, dim))
    with pytest.raises(ValueError, match="last_value must have the batch shape"):
        ops.rollout_next_values(values, last[..., None, None], time_dim=dim)


# --------------------------------------------------------------------------- the PPO loss on logits

FLOAT_TOLERANCES = {  # (rtol, atol) for the loss and stats; the gradient's are 10x looser
    torch.float64: (1e-10, 1e-12), torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1e-5, 1e-5), torch.float16: (1e-5, 1e-5),
}  # fmt: skip


@st.composite
def ppo_options(draw, logits=True, issue17=True):
    """Loss options; issue17=False: without those of issue 17 (GSPO, CISPO, the ratio-weighted KL)."""
    kl_coef = draw(st.sampled_from([0.0, 0.1]))
    normalize = draw(st.sampled_from(NORMALIZATIONS))
    policy_loss = draw(st.sampled_from(POLICY_LOSSES if issue17 else ("ppo",)))
    return dict(
        clip_low=draw(st.sampled_from([0.0, 0.2])), clip_high=draw(st.sampled_from([None, 0.28])),
        dual_clip=draw(st.sampled_from([None, 3.0])) if policy_loss == "ppo" else None, kl_coef=kl_coef,
        importance_level=draw(st.sampled_from(IMPORTANCE_LEVELS if issue17 else ("token",))), policy_loss=policy_loss,
        kl_ratio_weighted=draw(st.booleans()) if issue17 else False,
        kl_estimator=draw(st.sampled_from(KL_ESTIMATORS)), entropy_coef=draw(st.sampled_from([0.0, 0.01, -0.1])),
        temperature=draw(st.sampled_from([0.6, 1.0, 1.7])) if logits else 1.0, normalize=normalize,
        max_len=draw(st.sampled_from([None, 6])) if normalize == "constant" else None,
    )  # fmt: skip


def finite_ratio_weighted_kl(tokens, options) -> bool:
    """False where kl_ratio_weighted meets an infinite ratio: its KL is then infinite (and the
    gradient non-finite, even with kl_coef = 0, as documented); which non-finite value comes out
    is unspecified."""
    infinite = (tokens["old_logprobs"] == -math.inf) & ~tokens["masked"]
    return not (options["kl_ratio_weighted"] and bool(infinite.any()))


@st.composite
def token_batches(draw, vocab=None):
    """Per-token inputs ``[*batch]``; actions in [0, vocab). Non-finite values: anything in masked
    tokens, and old_logprobs = -inf (ratio = inf, clipped) on valid tokens with A > 0."""
    g = torch.Generator().manual_seed(draw(SEEDS))
    batch = tuple(draw(st.lists(st.integers(0, 4), max_size=2)))
    vocab = vocab or draw(st.sampled_from([1, 3, 8, 37, 100]))
    mask = torch.rand(batch, generator=g) < draw(st.sampled_from([0.0, 0.6, 1.0])) if draw(st.booleans()) else None
    masked = torch.zeros(batch, dtype=torch.bool) if mask is None else ~mask
    old, adv, ref = (randn(g, batch) for _ in range(3))
    old, ref = old - 2, ref - 2
    if draw(st.booleans()):  # anything at all in masked tokens
        old, adv, ref = (torch.where(masked, randn(g, batch, nonfinite=1.0), x) for x in (old, adv, ref))
    if draw(st.booleans()):  # infinite ratios on valid tokens, where the upper clip holds
        infinite = (torch.rand(batch, generator=g) < 0.3) & ~masked
        old = torch.where(infinite, -math.inf, old)
        adv = torch.where(infinite, adv.abs() + 0.1, adv)
    weights = None
    if draw(st.booleans()):  # token weights in [0, 2), anything where masked
        weights = torch.where(masked, randn(g, batch, nonfinite=1.0),
                              2 * torch.rand(batch, generator=g, dtype=torch.float64))
    return dict(g=g, batch=batch, vocab=vocab, mask=mask, masked=masked,
                actions=torch.randint(0, vocab, batch, generator=g), old_logprobs=old, advantages=adv,
                ref_logprobs=ref, token_weights=weights)  # fmt: skip


def make_logits(g, tokens, dtype, layout, nan_row):
    """A leaf ``base`` and the logits view of it in ``layout``. -inf (banned) on a third of the
    logits, never at an action taken (in any row, as "expanded" repeats the first row); NaN and
    inf in masked rows; with nan_row, a NaN in a valid row."""
    shape = (*tokens["batch"], tokens["vocab"])
    z = 2 * randn(g, shape)
    taken = torch.zeros(shape, dtype=torch.bool).scatter(-1, tokens["actions"].unsqueeze(-1), True)
    banned = (torch.rand(shape, generator=g) < 0.3) & ~taken.any(0, keepdim=True) if len(shape) > 1 else ~taken
    z = torch.where(banned, -math.inf, z)
    z = torch.where(tokens["masked"].unsqueeze(-1), randn(g, shape, nonfinite=0.7), z)
    if nan_row and (~tokens["masked"]).any():
        first_valid = tuple((~tokens["masked"]).nonzero()[0].tolist())
        z[first_valid + (0,)] = math.nan
    z = z.to(dtype)
    if layout == "expanded" and len(shape) > 1 and shape[0] > 0:
        base = z[:1].clone().requires_grad_()
        return base, base.expand(shape)
    if layout == "transposed" and len(shape) > 1:
        base = z.transpose(-1, -2).contiguous().requires_grad_()  # [..., V, B_last]
        return base, base.transpose(-1, -2)
    if layout == "sliced":
        base = torch.zeros(*shape[:-1], 2 * shape[-1], dtype=dtype)
        base[..., ::2] = z
        base.requires_grad_()
        return base, base[..., ::2]
    base = z.requires_grad_()
    return base, base


def assert_loss_matches(got, want, grads, grads_ref, dtype):
    (loss, stats), (loss_ref, stats_ref) = got, want
    rtol, atol = FLOAT_TOLERANCES[dtype]
    close(loss, loss_ref, rtol, atol)
    assert stats.keys() == stats_ref.keys()
    for key in stats:
        close(stats[key], stats_ref[key], rtol, atol)
    for grad, grad_ref in zip(grads, grads_ref):
        scale = grad_ref.nan_to_num(0, 0, 0).abs().max().item() if grad_ref.numel() else 0.0
        grad_rtol = 1e-2 if dtype in (torch.bfloat16, torch.float16) else 10 * rtol
        close(grad.float(), grad_ref.float(), grad_rtol, grad_rtol * scale + atol)


@requires_native
@given(token_batches(), ppo_options(), st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
       st.sampled_from(LAYOUTS), st.booleans(), st.floats(-3, 3))  # fmt: skip
def test_ppo_loss_native_matches_reference(tokens, options, dtype, layout, nan_row, upstream):
    assume(finite_ratio_weighted_kl(tokens, options))
    base, logits = make_logits(tokens["g"], tokens, dtype, layout, nan_row)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    args = {k: tokens[k] if k in ("actions", "mask") or tokens[k] is None else tokens[k].to(acc)
            for k in ("actions", "old_logprobs", "advantages", "ref_logprobs", "mask", "token_weights")}  # fmt: skip

    with backend("native"):
        loss, stats = ops.ppo_loss(logits, **args, **options)
        grads = torch.autograd.grad(upstream * loss, base)
    want = ppo_loss_reference(logits, **args, **options)
    want_grads = torch.autograd.grad(upstream * want[0], base)
    if options["importance_level"] == "sequence":
        # A NaN logit or an infinite ratio is its whole sequence's: in the rows it makes
        # non-finite, the reference's log_softmax backward spreads that to banned logits
        # (0 * inf), where the kernel keeps 0 (but NaN in a NaN logit's own row).
        banned_nan = base.isneginf() & want_grads[0].isnan()
        kept = grads[0][banned_nan]
        assert ((kept == 0) | kept.isnan()).all(), "a banned logit got a gradient"
        want_grads = (torch.where(banned_nan, grads[0], want_grads[0]),)
    assert_loss_matches((loss, stats), want, grads, want_grads, dtype)


PPO_ERRORS = {
    "action >= V": (lambda a, v: a.update(actions=a["actions"] + v), ValueError, "actions must be in"),
    "action < 0": (lambda a, v: a.update(actions=a["actions"] - v), ValueError, "actions must be in"),
    "float actions": (lambda a, v: a.update(actions=a["actions"].float()), TypeError, "actions must be an integer"),
    "old shape": (lambda a, v: a.update(old_logprobs=a["old_logprobs"][..., None]), ValueError,
                  "old_logprobs must have shape"),
    "mask shape": (lambda a, v: a.update(mask=torch.ones(7, dtype=torch.bool)), ValueError, "mask must have shape"),
    "ref device": (lambda a, v: a.update(ref_logprobs=a["ref_logprobs"].to("meta")), ValueError,
                   "ref_logprobs is on meta"),
    "kl without ref": (lambda a, v: a.update(ref_logprobs=None, kl_coef=0.1), ValueError, "needs ref_logprobs"),
    "temperature": (lambda a, v: a.update(temperature=-1.0), ValueError, "temperature must be >"),
}  # fmt: skip


@given(token_batches(), st.sampled_from(sorted(PPO_ERRORS)))
def test_ppo_loss_errors(tokens, error):
    mutate, error_type, match = PPO_ERRORS[error]
    if error.startswith("action") and not tokens["actions"].numel():
        return  # no action to be out of range
    logits = randn(tokens["g"], (*tokens["batch"], tokens["vocab"]), torch.float32)
    args = {k: tokens[k] for k in ("actions", "old_logprobs", "advantages", "ref_logprobs", "mask")}
    mutate(args, tokens["vocab"])
    with pytest.raises(error_type, match=match):
        ops.ppo_loss(logits, **args)


# --------------------------------------------------------------------------- token log-probs


def masked_reference_logprobs(logits, actions, mask, temperature):
    """token_logprobs' documented semantics from the reference: masked rows never read, 0 out."""
    if mask is not None:
        logits = torch.where(mask.unsqueeze(-1), logits, 0)
    logp, entropy = token_logprobs_reference(logits, actions, temperature)
    if mask is not None:
        logp, entropy = torch.where(mask, logp, 0), torch.where(mask, entropy, 0)
    return logp, entropy


@requires_native
@given(token_batches(), st.sampled_from([torch.float32, torch.float64, torch.bfloat16]), st.sampled_from(LAYOUTS),
       st.booleans(), st.sampled_from([0.6, 1.0, 1.7]))  # fmt: skip
def test_token_logprobs_native_matches_reference(tokens, dtype, layout, nan_row, temperature):
    base, logits = make_logits(tokens["g"], tokens, dtype, layout, nan_row)
    acts, mask = tokens["actions"], tokens["mask"]
    w = randn(tokens["g"], (2, *tokens["batch"]))
    w = w.to(torch.float64 if dtype == torch.float64 else torch.float32)

    with backend("native"):
        logp, entropy = ops.token_logprobs(logits, acts, mask=mask, temperature=temperature)
        out = (w[0] * logp + w[1] * entropy).sum()
        got, grads = (out, {"logp": logp, "entropy": entropy}), torch.autograd.grad(out, base)
    logp, entropy = masked_reference_logprobs(logits, acts, mask, temperature)
    out = (w[0] * logp + w[1] * entropy).sum()
    want, want_grads = (out, {"logp": logp, "entropy": entropy}), torch.autograd.grad(out, base)
    assert_loss_matches(got, want, grads, want_grads, dtype)


@st.composite
def linear_heads(draw, tokens):
    """hidden ``[*batch, H]`` (a leaf, and a function giving it in a random layout), weight
    ``[V, H]``, optional bias, chunk_size; NaN hidden states in masked rows."""
    g, batch, vocab = tokens["g"], tokens["batch"], tokens["vocab"]
    size = draw(st.sampled_from([1, 4, 16]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    hidden = randn(g, (*batch, size), dtype)
    hidden = torch.where(tokens["masked"].unsqueeze(-1), randn(g, (*batch, size), dtype, nonfinite=0.5), hidden)
    leaf = hidden.requires_grad_()
    weight = (0.5 * randn(g, (vocab, size), dtype)).requires_grad_()
    bias = randn(g, (vocab,), dtype).requires_grad_() if draw(st.booleans()) else None
    layout = draw(st.sampled_from(LAYOUTS))
    view = lambda: with_layout(leaf, layout, dim=0)  # noqa: E731  (a new graph for every use)
    return leaf, view, weight, bias, draw(st.sampled_from([None, 1, 3, 64]))


@requires_native
@given(st.data())
def test_ppo_loss_from_hidden_native_matches_reference(data):
    tokens = data.draw(token_batches())
    leaf, hidden, weight, bias, chunk_size = data.draw(linear_heads(tokens))
    options = data.draw(ppo_options())
    assume(finite_ratio_weighted_kl(tokens, options))
    acc = leaf.dtype
    args = {k: tokens[k] if k in ("actions", "mask") or tokens[k] is None else tokens[k].to(acc)
            for k in ("actions", "old_logprobs", "advantages", "ref_logprobs", "mask", "token_weights")}  # fmt: skip
    params = [p for p in (leaf, weight, bias) if p is not None]

    def native():
        loss, stats = ops.ppo_loss_from_hidden(hidden(), weight, bias=bias, chunk_size=chunk_size, **args, **options)
        return (loss, stats), torch.autograd.grad(loss, params)

    results = on_both_backends(native)
    if results is None:
        return
    # Documented: masked tokens' hidden states are never used.
    used = hidden() if tokens["mask"] is None else torch.where(tokens["mask"].unsqueeze(-1), hidden(), 0)
    want = ppo_loss_reference(F.linear(used, weight, bias), **args, **options)
    want_grads = torch.autograd.grad(want[0], params)
    for got in results:
        assert_loss_matches(got[0], want, got[1], want_grads, acc)

    def logprobs():
        return ops.token_logprobs(hidden(), args["actions"], weight=weight, bias=bias, mask=args["mask"],
                              chunk_size=chunk_size)  # fmt: skip

    logp_ref, entropy_ref = masked_reference_logprobs(F.linear(used, weight, bias), args["actions"], args["mask"], 1.0)
    for logp, entropy in on_both_backends(logprobs):
        close(logp, logp_ref, *FLOAT_TOLERANCES[acc])
        close(entropy, entropy_ref, *FLOAT_TOLERANCES[acc])


# --------------------------------------------------------------------------- the PyTorch-only losses


def nan_max(a, b):
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def nan_clamp(x, low, high):
    return math.nan if math.isnan(x) else min(max(x, low), high)


@given(st.data())
def test_value_loss_matches_scalar_loop(data):
    g = torch.Generator().manual_seed(data.draw(SEEDS))
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    nonfinite = data.draw(st.sampled_from([0.0, 0.1]))
    v, old, ret = (randn(g, shape, dtype, nonfinite) for _ in range(3))
    v = with_layout(v.requires_grad_(), data.draw(st.sampled_from(LAYOUTS)))
    mask = flags(g, shape, 0.6, data.draw(st.sampled_from(["bool", "int"]))) if data.draw(st.booleans()) else None
    clip = data.draw(st.sampled_from([None, 0.0, 0.2]))
    loss = ops.value_loss(v, old, ret, clip=clip, mask=mask)

    total, count = 0.0, 0
    for i in range(v.numel()):
        if mask is not None and not mask.reshape(-1)[i]:
            continue
        vi, oi, ri = (float(x.detach().reshape(-1)[i]) for x in (v, old, ret))
        term = (vi - ri) ** 2
        if clip is not None:
            term = nan_max(term, (oi + nan_clamp(vi - oi, -clip, clip) - ri) ** 2)
        total, count = total + 0.5 * term, count + 1
    want = torch.tensor(total / max(count, 1), dtype=torch.float64)
    close(loss.double(), want, 1e-5 if dtype == torch.float32 else 1e-12, 1e-6)

    (grad,) = torch.autograd.grad(loss, v)
    if mask is not None:
        assert (grad[~mask.bool()] == 0).all()  # never NaN, whatever is there
    with pytest.raises(ValueError, match="returns must have the shape of values"):
        ops.value_loss(v, old, ret[..., None], mask=mask)


def exp(x):
    """math.exp with IEEE overflow (inf) and NaN, as torch.exp has them."""
    return x if math.isnan(x) else (math.inf if x > 709 else math.exp(x))


def scalar_ppo_token(logp, entropy, old, adv, ref, opts):
    """One token's PPO loss, written with Python floats (the ops' formulas, see ppo_loss)."""
    ratio = exp(logp - old)
    high = opts["clip_low"] if opts["clip_high"] is None else opts["clip_high"]
    pg = nan_max(-ratio * adv, -nan_clamp(ratio, 1 - opts["clip_low"], 1 + high) * adv)
    if opts["dual_clip"] is not None and adv < 0:
        pg = min(pg, -opts["dual_clip"] * adv) if not math.isnan(pg) else pg
    kl = 0.0
    if ref is not None:
        x = ref - logp
        kl = {"k1": -x, "k2": 0.5 * x * x, "k3": exp(x) - x - 1}[opts["kl_estimator"]]
    return pg + opts["kl_coef"] * kl - opts["entropy_coef"] * entropy


def scalar_aggregate(losses, valid, opts):
    """``losses`` and ``valid``: lists (sequences) of lists (tokens)."""
    counts = [sum(v) for v in valid]
    sums = [sum(x for x, ok in zip(seq, v) if ok) for seq, v in zip(losses, valid)]
    nonempty = max(1, sum(c > 0 for c in counts))
    if opts["normalize"] == "token_mean":
        return sum(sums) / max(1, sum(counts))
    if opts["normalize"] == "seq_mean_token_mean":
        return sum(s / c for s, c in zip(sums, counts) if c) / nonempty
    if opts["normalize"] == "seq_mean_token_sum":
        return sum(sums) / nonempty
    seq_len = len(losses[0]) if losses else 0
    max_len = seq_len if opts["max_len"] is None else opts["max_len"]
    return sum(sums) / max(1, len(losses) * max_len)


@given(token_batches(vocab=1), ppo_options(logits=False, issue17=False), st.integers(1, 3),
       st.sampled_from(["full", "per_dim"]), st.sampled_from([torch.float32, torch.float64]),
       st.sampled_from(LAYOUTS))  # fmt: skip
def test_gaussian_ppo_loss_matches_scalar_loop(tokens, options, dims, std_shape, dtype, layout):
    g, batch = tokens["g"], tokens["batch"]
    mean = randn(g, (*batch, dims), dtype).requires_grad_()
    log_std = 0.5 * randn(g, (*batch, dims) if std_shape == "full" else (dims,), dtype)
    actions = with_layout(randn(g, (*batch, dims), dtype), layout)
    mask, masked = tokens["mask"], tokens["masked"]
    # Anything at all in masked tokens' Gaussian inputs, too; finite with the "expanded" layout, whose
    # rows are all the first one: a masked first row would put its inf or NaN in valid tokens.
    garbage = randn(g, mean.shape, dtype, nonfinite=0.0 if layout == "expanded" else 1.0)
    mean_in = torch.where(masked.unsqueeze(-1), garbage, mean)
    if std_shape == "full":
        log_std = torch.where(masked.unsqueeze(-1), randn(g, mean.shape, dtype, nonfinite=1.0), log_std)
    args = {k: tokens[k].to(dtype) for k in ("old_logprobs", "advantages", "ref_logprobs")}
    mean_in = with_layout(mean_in, layout)
    loss, stats = ops.gaussian_ppo_loss(mean_in, log_std, actions, mask=mask, **args, **options)

    seq_len = batch[-1] if batch else 1
    flat = lambda x: x.detach().reshape(-1).tolist()  # noqa: E731
    std_full = log_std.expand(mean.shape).reshape(-1, dims).tolist()
    losses, valid = [], []
    for i, (m, a, s) in enumerate(zip(mean_in.detach().reshape(-1, dims).tolist(), actions.reshape(-1, dims).tolist(),
                                      std_full)):  # fmt: skip
        ok = mask is None or bool(mask.reshape(-1)[i])
        token = 0.0
        if ok:
            logp = sum(-((ai - mi) ** 2) / (2 * math.exp(2 * si)) - si - 0.5 * math.log(2 * math.pi)
                       for mi, ai, si in zip(m, a, s))  # fmt: skip
            entropy = sum(0.5 + 0.5 * math.log(2 * math.pi) + si for si in s)
            token = scalar_ppo_token(logp, entropy, flat(args["old_logprobs"])[i], flat(args["advantages"])[i],
                                     flat(args["ref_logprobs"])[i], options)  # fmt: skip
        if i % seq_len == 0:
            losses.append([]), valid.append([])
        losses[-1].append(token), valid[-1].append(ok)
    want = scalar_aggregate(losses, valid, options)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    close(loss.double(), torch.tensor(want, dtype=torch.float64), tol, tol)
    (grad,) = torch.autograd.grad(loss, mean)
    assert (grad[masked] == 0).all()  # never NaN, whatever is there
