"""CUDA cases the registry's tests (test_opinfo.py) and test_returns.py do not reach: the chunked
scan of the returns family in float32 with masks, strided logits, the env ops' opcheck, inductor
(not only aot_eager) of every op's compile samples, ppo_loss_from_hidden in bfloat16, and device
mismatches in direct op calls. They run with a GPU only (skipped here)."""

from __future__ import annotations

import pytest
import torch

import fastrl.envs as fenvs
from fastrl.ops import discounted_returns, gae, ppo_loss, ppo_loss_from_hidden, token_logprobs
from tests.conftest import requires_native
from tests.ops.helpers import GAMMA, LAM, make_inputs, make_rollout, padding_mask
from tests.ops.opinfo import OPS, Tol, gae_oracle, returns_oracle
from tests.ops.test_opinfo import assert_results_match, run

pytestmark = [pytest.mark.cuda, requires_native]


# --------------------------------------------------------------------------- returns


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("T,N", [(8192, 8), (20000, 2), (3000, 1)])
def test_chunked_scan_float32(T, N, masked):
    """Few long columns take the chunked scan on CUDA; float32, with and without padding, against
    the scalar loop in float32 (re-association: the CPU chunked scan's tolerances)."""
    r, v, nv, term, done = make_rollout(T, (N,), torch.float32, p_term=0.001, p_trunc=0.001)
    mask = padding_mask(T, N) if masked else None
    cuda = lambda *xs: [None if x is None else x.cuda() for x in xs]  # noqa: E731
    adv, ret = gae(*cuda(r, v, nv, term, done), GAMMA, LAM, mask=cuda(mask)[0])
    want_adv, want_ret = gae_oracle(r, v, nv, term, done, GAMMA, LAM, mask)
    torch.testing.assert_close(adv.cpu(), want_adv, rtol=2e-5, atol=2e-4)
    torch.testing.assert_close(ret.cpu(), want_ret, rtol=2e-5, atol=2e-4)
    boot = torch.randn(N)
    g = discounted_returns(*cuda(r, done), GAMMA, bootstrap=boot.cuda(), mask=cuda(mask)[0])
    torch.testing.assert_close(g.cpu(), returns_oracle(r, done, GAMMA, boot, mask), rtol=2e-5, atol=2e-3)


# --------------------------------------------------------------------------- logits


def _strided(logits: torch.Tensor, how: str) -> torch.Tensor:
    """The same values as ``logits [N, V]`` in a non-contiguous layout."""
    if how == "every_other_column":
        wide = torch.full((logits.shape[0], 2 * logits.shape[1]), float("nan"),
                          dtype=logits.dtype, device=logits.device)
        wide[:, ::2] = logits
        return wide[:, ::2]
    return logits.t().contiguous().t()  # column-major


@pytest.mark.parametrize("how", ["every_other_column", "column_major"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_strided_logits(how, dtype):
    """token_logprobs and ppo_loss of strided logits: the results (and logits gradients) of the
    same values laid out contiguously, on the GPU (gradients to 1% of the largest: bfloat16's)."""
    kw = make_inputs((64,), 500, dtype=dtype, device="cuda", seed=1)
    kw.pop("ref_logprobs")
    dense = kw["logits"].detach()
    for fn in (lambda logits, **k: token_logprobs(logits, k["actions"], mask=k["mask"]),
               lambda logits, **k: ppo_loss(logits, **k)):  # fmt: skip
        want = run(fn, dict(kw, logits=dense.clone().requires_grad_()))
        got = run(fn, dict(kw, logits=_strided(dense, how).requires_grad_()))
        # another layout may take another summation order: close, not bit for bit
        assert_results_match(got, want, Tol(1e-5, 1e-6, 1e-2, 1e-3), f"{how} {dtype}")


def test_ppo_loss_from_hidden_bfloat16():
    """bfloat16 hidden states and weight on the GPU: close to the float32 loss of the same
    values through full logits (bfloat16's 8 bits: loose), gradients too."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 96, 64, generator=g).to(torch.bfloat16)
    weight = (0.2 * torch.randn(3000, 64, generator=g)).to(torch.bfloat16)
    logits = (hidden.float() @ weight.float().t()).detach()
    kw = make_inputs((4, 96), 3000, device="cuda", seed=2, logits=logits)
    kw.pop("logits")
    want_h, want_w = hidden.float().cuda().requires_grad_(), weight.float().cuda().requires_grad_()
    want = ppo_loss(want_h @ want_w.t(), **kw)
    want.loss.backward()
    got_h, got_w = hidden.cuda().requires_grad_(), weight.cuda().requires_grad_()
    got = ppo_loss_from_hidden(got_h, got_w, chunk_size=64, **kw)
    got.loss.backward()
    assert got.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, want.loss, rtol=2e-2, atol=1e-3)
    for name, a, b in (("hidden", got_h.grad, want_h.grad), ("weight", got_w.grad, want_w.grad)):
        assert a.dtype == torch.bfloat16, name
        scale = b.abs().max()
        torch.testing.assert_close(a.float(), b, rtol=0, atol=float(3e-2 * scale), msg=lambda m, n=name: f"{n}: {m}")


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize("same_step", [False, True])
def test_env_ops_opcheck(same_step):
    env = fenvs.make("CartPole-v1", 5, device="cuda", seed=0)
    env.reset()
    tensors = [env._state, env._elapsed, env._episode_return, env._autoreset, env._resets, env._seeds]
    torch.library.opcheck(torch.ops.fastrl.env_reset.default, ("CartPole-v1", *tensors, [0.0]))
    action = torch.tensor([0, 1, 1, 0, 1], device="cuda")
    torch.library.opcheck(torch.ops.fastrl.env_step.default,
                          ("CartPole-v1", *tensors, action, [0.0], 500, same_step))


# The registry's known compile failures (a graph break under fullgraph) fail here too: strict xfails.
COMPILE_CASES = [
    pytest.param(op, name, id=f"{op.name}-{name}",
                 marks=[pytest.mark.xfail(reason=op.known_failures[f"compile-{name}"], strict=True)]
                 if f"compile-{name}" in op.known_failures else [])
    for op in OPS for name in op.compile if "cuda" in op.sample(name).devices
]  # fmt: skip


@pytest.mark.parametrize("op, name", COMPILE_CASES)
def test_compile_inductor(op, name):
    """torch.compile with its default backend (inductor: generated Triton kernels around the
    op) gives the eager results on the GPU."""
    sample = op.sample(name)
    torch._dynamo.reset()
    compiled = torch.compile(lambda **kw: op.op(**kw), fullgraph=True)
    kwargs = sample.make("cuda")
    assert_results_match(run(compiled, kwargs), run(op.op, kwargs), op.reference_tol(sample.dtype),
                         f"{op.name}[{name}] inductor vs eager")


# --------------------------------------------------------------------------- device mismatches


def test_direct_calls_with_a_cpu_first_tensor_name_the_other_device():
    """The CUDA kernel runs when any tensor is on the GPU: fastrl's message, checked before the
    device guard, names the argument (not an internal assert)."""
    r, v, nv, term, done = make_rollout(4, (3,))
    with pytest.raises(RuntimeError, match="fastrl: values is on cuda:0 but rewards is on cpu"):
        torch.ops.fastrl.gae(r, v.cuda(), nv, term, done, None, GAMMA, LAM)
    with pytest.raises(RuntimeError, match="fastrl: done is on cuda:0 but rewards is on cpu"):
        torch.ops.fastrl.discounted_returns(r, done.cuda(), torch.zeros(3), None, GAMMA)
    logits, actions = torch.randn(4, 5), torch.randint(0, 5, (4,))
    with pytest.raises(RuntimeError, match="fastrl: actions is on cuda:0 but logits is on cpu"):
        torch.ops.fastrl.token_logprobs(logits, actions.cuda(), None, 1.0)
    env = fenvs.make("CartPole-v1", 3, seed=0)
    env.reset()
    tensors = [env._state, env._elapsed, env._episode_return, env._autoreset, env._resets, env._seeds]
    with pytest.raises(ValueError, match="actions are on cuda:0 but the env is on cpu"):
        torch.ops.fastrl.env_step("CartPole-v1", *tensors, torch.zeros(3, dtype=torch.long, device="cuda"),
                                  [0.0], 500, False)
