"""torch.compile(fullgraph=True) of code that calls an op with a float hyper-parameter that
changes between calls (an annealed entropy coefficient, gamma, the clip range): no graph break,
no recompile per value, the eager results, and the eager errors for bad values (issue 14, item 10).

Dynamo compiles the first call with the float as a constant and, when the value changes, once
more with it symbolic; from then on every value must reuse that graph. The ops take Scalars, not
floats (a `float` argument pins a symbolic value), and the Python checks of numbers use
torch._check under compile (math.isnan would break the graph)."""

import math

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from fastrl import ops
from tests.conftest import backend, requires_native

BACKENDS = [pytest.param("native", marks=requires_native), "torch"]
WARMUP = (0.5, 0.25)  # the constant graph, then the symbolic one
VALUES = (0.9, 0.125, 1.0, 0.0, 0.3)  # must all reuse the symbolic graph


def _returns_inputs():
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(6, 3, generator=g) for _ in range(3))
    term = torch.rand(6, 3, generator=g) < 0.2
    done = term | (torch.rand(6, 3, generator=g) < 0.2)
    return r, v, nv, term, done


def _ppo_inputs(n=5, vocab=7):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(n, vocab, generator=g, dtype=torch.float64)
    actions = torch.randint(vocab, (n,), generator=g)
    old = torch.randn(n, generator=g, dtype=torch.float64) - 2
    adv = torch.randn(n, generator=g, dtype=torch.float64)
    ref = torch.randn(n, generator=g, dtype=torch.float64) - 2
    return logits, actions, old, adv, ref


# Each case: fn(x, leaf) -> outputs, the first a tensor that the test differentiates with
# respect to `leaf` (None: nothing to differentiate) outside the compiled function.


def _gae(x, _):
    r, v, nv, term, done = _RETURNS
    return ops.gae(r, v, nv, term, done, gamma=x, lam=0.95)


def _gae_lam(x, _):
    r, v, nv, term, done = _RETURNS
    return ops.gae(r, v, nv, term, done, gamma=0.99, lam=x)


def _discounted_returns(x, _):
    r, _, _, _, done = _RETURNS
    return ops.discounted_returns(r, done, gamma=x)


def _ppo_loss(x, logits):
    _, actions, old, adv, ref = _PPO
    loss, stats = ops.ppo_loss(logits, actions, old, adv, ref_logprobs=ref, clip_low=0.1 + 0.2 * x,
                               clip_high=0.3, dual_clip=2.0 + x, kl_coef=x, entropy_coef=0.01 * x,
                               temperature=0.5 + x)  # fmt: skip
    return loss, stats["clip_fraction"], stats["entropy"]


def _ppo_loss_issue17(x, logits):  # GSPO, CISPO, token weights, the ratio-weighted KL
    _, actions, old, adv, ref = _PPO
    loss, stats = ops.ppo_loss(logits, actions, old, adv, ref_logprobs=ref, token_weights=torch.linspace(0, 1, 5),
                               clip_low=0.1 + 0.2 * x, clip_high=0.3 + x, kl_coef=x, importance_level="sequence",
                               policy_loss="cispo", kl_ratio_weighted=True)  # fmt: skip
    return loss, stats["clip_fraction"], stats["kl_ref"]


def _token_logprobs(x, logits):
    _, actions, *_ = _PPO
    logp, entropy = ops.token_logprobs(logits, actions, temperature=0.5 + x)
    return (logp + entropy).sum(), logp


def _value_loss(x, values):
    _, _, nv, _, _ = _RETURNS
    return ops.value_loss(values, nv, nv + 1, clip=0.1 + x)


def _gaussian_ppo_loss(x, mean):
    actions, old, adv = _GAUSSIAN
    loss, _ = ops.gaussian_ppo_loss(mean, torch.zeros(2), actions, old, adv, clip_low=0.1 + 0.2 * x,
                                    entropy_coef=x)  # fmt: skip
    return loss


_RETURNS = _returns_inputs()
_PPO = _ppo_inputs()
_G = torch.Generator().manual_seed(2)
_GAUSSIAN = (torch.randn(4, 2, generator=_G), torch.randn(4, generator=_G) - 2, torch.randn(4, generator=_G))
# fn -> the input to differentiate with respect to, or None
CASES = {
    _gae: None,
    _gae_lam: None,
    _discounted_returns: None,
    _ppo_loss: _PPO[0],
    _ppo_loss_issue17: _PPO[0],
    _token_logprobs: _PPO[0],
    _value_loss: _RETURNS[1],
    _gaussian_ppo_loss: torch.linspace(-1, 1, 8).reshape(4, 2),
}


def _run(fn, x, impl=None):
    """fn's outputs (computed by ``impl``, e.g. a compiled fn) and, when it has an input to
    differentiate, that gradient of its first."""
    leaf = CASES[fn]
    leaf = None if leaf is None else leaf.clone().requires_grad_()
    outs = (impl or fn)(x, leaf)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    if leaf is not None:
        outs += torch.autograd.grad(outs[0], leaf)
    return outs


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("fn", list(CASES), ids=lambda f: f.__name__.lstrip("_"))
def test_a_changing_float_compiles_once_and_matches_eager(fn, name, fresh_dynamo):
    with backend(name):
        # aot_eager: dynamo + AOTAutograd (fake kernels, autograd formulas) without inductor's
        # code generation, which would only add minutes on a small CPU.
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        for x in WARMUP:
            _run(fn, x, compiled)
        frames = counters["stats"]["unique_graphs"]
        for x in VALUES:
            with torch._dynamo.config.patch(error_on_recompile=True):
                got = _run(fn, x, compiled)
            for g, w in zip(got, _run(fn, x), strict=True):
                torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=f"{fn.__name__}({x})")
        assert counters["stats"]["unique_graphs"] == frames
        assert not counters["graph_break"]


@pytest.mark.parametrize(("fn", "bad", "error", "match"), [
    (_gae, 1.5, ValueError, r"gamma must be in \[0, 1\], got 1.5"),
    (_gae, math.nan, ValueError, r"gamma must be in \[0, 1\], got nan"),
    (_gae_lam, -0.1, ValueError, r"lam must be in \[0, 1\], got -0.1"),
    (_discounted_returns, 2.0, ValueError, r"gamma must be in \[0, 1\], got 2.0"),
    (_token_logprobs, -0.5, ValueError, "temperature must be > 0.0, got 0.0"),
    (_ppo_loss, -1.0, ValueError, "clip_low must be >= 0.0, got -0.1"),
    (_ppo_loss, math.nan, ValueError, "clip_low must be >= 0.0, got nan"),
    (_value_loss, -0.2, ValueError, "clip must be >= 0.0, got -0.1"),
])  # fmt: skip
def test_bad_floats_raise_the_same_errors_in_eager(fn, bad, error, match):
    with pytest.raises(error, match=match):
        _run(fn, bad)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_bad_float_still_raises_under_compile(name, fresh_dynamo):
    """Out of range, the value fails the graph's range guard; the retrace raises the check."""
    with backend(name):
        compiled = torch.compile(_gae, fullgraph=True, backend="aot_eager")
        for x in WARMUP:
            compiled(x, None)
        with pytest.raises(Exception, match="gamma must be"):
            compiled(1.5, None)


def _twin_samples():
    """(op name, arguments with float hyper-parameters) for each op that has a _tensor_hyper twin."""
    r, v, nv, term, done = _RETURNS
    logits, actions, old, adv, ref = _PPO
    mask = torch.tensor([True, False, True, True, True])
    z = logits.clone().requires_grad_()
    yield "gae", (r, v, nv, term, done, None, 0.9, 0.95)
    yield "discounted_returns", (r, done, torch.randn(3), None, 0.9)
    yield "token_logprobs", (z, actions, mask, 0.7)
    # token weights |A|; sequence-level ratios over one sequence of 5, the ratio-weighted KL
    yield "ppo_loss", (z, actions, old, adv, ref, mask, adv.abs(), 0.2, 0.28, 3.0, 0.1, "k2", 0.01, 0.7, "ppo", 5, True)
    lse = torch.randn(5, dtype=torch.float64)
    yield "token_logprobs_backward", (old, adv, logits, actions, mask, lse, adv.abs(), 0.7)


@requires_native
@pytest.mark.parametrize("name", ["gae", "discounted_returns", "token_logprobs", "ppo_loss", "token_logprobs_backward"])
def test_tensor_hyper_twins_agree_with_their_op_and_pass_opcheck(name):
    args = dict(_twin_samples())[name]
    tensors = [torch.tensor(a, dtype=torch.float64) if isinstance(a, float) else a for a in args]
    twin = getattr(torch.ops.fastrl, f"{name}_tensor_hyper").default
    torch.library.opcheck(twin, tuple(tensors))
    got, want = twin(*tensors), getattr(torch.ops.fastrl, name).default(*args)
    for g, w in zip(_as_list(got), _as_list(want), strict=True):
        assert torch.equal(g, w)


def _as_list(x):
    return list(x) if isinstance(x, tuple | list) else [x]


@requires_native
def test_tensor_hyper_twins_check_their_tensors():
    r, v, nv, term, done = _RETURNS
    with pytest.raises(RuntimeError, match="hyper-parameter tensor must be 0-dim on the CPU"):
        torch.ops.fastrl.gae_tensor_hyper(r, v, nv, term, done, None, torch.ones(2), torch.tensor(0.9))
    with pytest.raises(RuntimeError, match="gamma must be in"):
        torch.ops.fastrl.gae_tensor_hyper(r, v, nv, term, done, None, torch.tensor(1.5), torch.tensor(0.9))
