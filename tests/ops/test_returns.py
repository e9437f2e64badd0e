"""GAE and discounted returns: every backend against the scalar loops of tests/ops/oracles.py
(bit for bit: they round like the documented operation order, and the PyTorch backend, which is
the reference, is then checked against something other than itself), hand-worked examples,
layouts, masks, errors, and the custom-op machinery (opcheck, torch.compile, TorchScript)."""

import functools
import itertools

import pytest
import torch

import fastrl
from fastrl import _native
from fastrl.ops import discounted_returns, gae, rollout_next_values
from fastrl.ops.returns import discounted_returns_reference, gae_reference
from tests.conftest import DEVICES, requires_native
from tests.ops.helpers import assert_same_bits
from tests.ops.oracles import discounted_returns_loop, gae_loop

GAMMA, LAM = 0.99, 0.95


def make_rollout(T, batch, dtype=torch.float32, device="cpu", p_term=0.05, p_trunc=0.03, seed=0):
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


# --------------------------------------------------------------------------- hand-worked examples


def test_truncation_bootstraps_from_final_value_by_hand(backend):
    # One env, 3 steps; truncated at t=1 (final obs value 10), terminated at t=2.
    r, v, nv = (torch.tensor(x, dtype=torch.float64, device=backend)[:, None]
                for x in ([1.0, 2.0, 3.0], [0.5, 0.25, 0.125], [0.25, 10.0, 99.0]))  # fmt: skip
    term = torch.tensor([[False], [False], [True]], device=backend)
    done = torch.tensor([[False], [True], [True]], device=backend)
    g, lam = 0.9, 0.5
    d2 = 3.0 - 0.125                          # terminated: no bootstrap
    d1 = 2.0 + g * 10.0 - 0.25                # truncated: bootstrap from the final obs value
    d0 = 1.0 + g * 0.25 - 0.5
    expected = torch.tensor([[d0 + g * lam * d1], [d1], [d2]], dtype=torch.float64)
    adv, ret = gae(r, v, nv, term, done, g, lam)
    torch.testing.assert_close(adv.cpu(), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(ret.cpu(), expected + v.cpu(), rtol=0, atol=1e-15)


def test_masked_gae_by_hand(backend):
    # One env, 4 steps, the second one padding: it gets 0 and links step 0 to step 2.
    r, v, nv = (torch.tensor(x, dtype=torch.float64, device=backend)[:, None]
                for x in ([1.0, 7.0, 2.0, 3.0], [0.5, 9.0, 0.25, 0.125], [0.25, 9.0, 0.125, 4.0]))  # fmt: skip
    no = torch.zeros(4, 1, dtype=torch.bool, device=backend)
    mask = torch.tensor([[True], [False], [True], [True]], device=backend)
    g, lam = 0.5, 0.5
    d3 = 3.0 + g * 4.0 - 0.125
    d2 = 2.0 + g * 0.125 - 0.25
    d0 = 1.0 + g * 0.25 - 0.5
    a3 = d3
    a2 = d2 + g * lam * a3
    expected = torch.tensor([[d0 + g * lam * a2], [0.0], [a2], [a3]], dtype=torch.float64)
    adv, ret = gae(r, v, nv, no, no, g, lam, mask=mask)
    torch.testing.assert_close(adv.cpu(), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(ret.cpu(), expected + v.cpu(), rtol=0, atol=1e-15)


def test_discounted_returns_by_hand(backend):
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64, device=backend)
    done = torch.tensor([False, True, False, False, False], device=backend)
    mask = torch.tensor([True, True, True, False, True], device=backend)  # step 3 is padding
    g = 0.5
    boot = torch.tensor(8.0, dtype=torch.float64, device=backend)
    expected = torch.tensor([1 + g * 2, 2.0, 3 + g * (4 + g * (5 + g * 8.0)), 4 + g * (5 + g * 8.0), 5 + g * 8.0],
                            dtype=torch.float64)  # fmt: skip
    out = discounted_returns(r, done, g, bootstrap=boot)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)
    expected[2], expected[3] = 3 + g * (5 + g * 8.0), 0.0
    out = discounted_returns(r, done, g, bootstrap=boot, mask=mask)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- backends vs the oracles

SHAPES = [(1, (1,)), (1, (7,)), (5, (1,)), (33, (17,)), (128, (64,)), (64, (3, 5)), (200, (130,))]
FLAGS = {
    "mixed": dict(p_term=0.05, p_trunc=0.03),
    "none_done": dict(p_term=0.0, p_trunc=0.0),
    "all_done": dict(p_term=0.5, p_trunc=1.0),
    "all_terminated": dict(p_term=1.0, p_trunc=0.0),
}


def _backends():
    out = [("torch", "cpu")]
    if _native._C is not None:
        out += [("native", d) for d in DEVICES]
    return out


@pytest.fixture(params=_backends(), ids=lambda b: f"{b[0]}-{b[1]}")
def backend(request):
    name, device = request.param
    previous = _native.get_backend()
    _native.set_backend(name)
    yield device
    _native.set_backend(previous)


def columns(x):
    """``[T, *batch]`` -> ``[T, N]`` on the CPU, the oracles' layout."""
    return x.cpu().reshape(x.shape[0], -1)


def oracle_gae(r, v, nv, term, done, gamma=GAMMA, lam=LAM, mask=None):
    """gae_loop on time-major ``[T, *batch]`` tensors of any device: (advantages, returns) on the CPU."""
    adv, ret = gae_loop(*(columns(x) for x in (r, v, nv, term, done)), gamma, lam,
                        None if mask is None else columns(mask))  # fmt: skip
    return adv.reshape(r.shape), ret.reshape(r.shape)


def oracle_returns(r, done, gamma=GAMMA, bootstrap=None, mask=None):
    """discounted_returns_loop on time-major ``[T, *batch]`` tensors (bootstrap default 0), on the CPU."""
    boot = torch.zeros(r.shape[1:], dtype=r.dtype) if bootstrap is None else bootstrap.cpu()
    out = discounted_returns_loop(columns(r), columns(done), gamma, boot.reshape(-1),
                                  None if mask is None else columns(mask))  # fmt: skip
    return out.reshape(r.shape)


@functools.cache
def gae_case(T, batch, flags, dtype):
    """A rollout on the CPU and the oracle's (advantages, returns): computed once for every backend."""
    rollout = make_rollout(T, batch, dtype, **FLAGS[flags])
    adv, ret = gae_loop(*(columns(x) for x in rollout), GAMMA, LAM)
    return rollout, adv.reshape(rollout[0].shape), ret.reshape(rollout[0].shape)


@functools.cache
def returns_case(T, batch, dtype):
    r, _, _, _, done = make_rollout(T, batch, dtype)
    boot = torch.randn(batch, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    return r, done, boot, discounted_returns_loop(columns(r), columns(done), GAMMA, boot.reshape(-1)).reshape(r.shape)


@pytest.mark.parametrize("T,batch", SHAPES, ids=str)
@pytest.mark.parametrize("flags", FLAGS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_gae_matches_oracle_bitwise(backend, T, batch, flags, dtype):
    rollout, want_adv, want_ret = gae_case(T, batch, flags, dtype)
    adv, ret = gae(*(x.to(backend) for x in rollout), GAMMA, LAM)
    assert adv.dtype == dtype and adv.device.type == backend and adv.shape == rollout[0].shape
    assert_same_bits(adv.cpu(), want_adv)
    assert_same_bits(ret.cpu(), want_ret)


@pytest.mark.parametrize("T,batch", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_discounted_returns_matches_oracle_bitwise(backend, T, batch, dtype):
    r, done, boot, want = returns_case(T, batch, dtype)
    out = discounted_returns(r.to(backend), done.to(backend), GAMMA, bootstrap=boot.to(backend))
    assert_same_bits(out.cpu(), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_masks_leading_trailing_middle_padding(backend, dtype):
    T, N = 60, 9
    r, v, nv, term, done = make_rollout(T, (N,), dtype, backend)
    mask = padding_mask(T, N).to(backend)
    adv, ret = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
    want_adv, want_ret = oracle_gae(r, v, nv, term, done, mask=mask)
    assert_same_bits(adv.cpu(), want_adv)
    assert_same_bits(ret.cpu(), want_ret)
    assert (adv[~mask] == 0).all() and (adv[:, -1] == 0).all()
    g = discounted_returns(r, done, GAMMA, mask=mask)
    assert_same_bits(g.cpu(), oracle_returns(r, done, mask=mask))


def test_mask_links_last_valid_token_to_next_valid(backend):
    # Padding between two valid tokens must be transparent: same as if it were not there.
    r, v, nv, term, done = make_rollout(6, (1,), torch.float64, backend, p_term=0, p_trunc=0)
    mask = torch.tensor([[True], [True], [False], [False], [True], [True]], device=backend)
    adv, _ = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
    keep = mask[:, 0]
    compact, _ = gae(r[keep], v[keep], nv[keep], term[keep], done[keep], GAMMA, LAM)
    assert torch.equal(adv[keep], compact)


@pytest.mark.parametrize("time_dim", [1, -1])
def test_batch_first_layouts(backend, time_dim):
    r, v, nv, term, done = make_rollout(37, (11,), torch.float64, backend)
    bf = [x.transpose(0, 1).contiguous() for x in (r, v, nv, term, done)]  # [B, T]
    adv, ret = gae(*bf, GAMMA, LAM, time_dim=time_dim)
    want_adv, want_ret = oracle_gae(r, v, nv, term, done)
    assert adv.shape == bf[0].shape
    assert_same_bits(adv.cpu(), want_adv.T)
    assert_same_bits(ret.cpu(), want_ret.T)
    g = discounted_returns(bf[0], bf[4], GAMMA, time_dim=time_dim)
    assert_same_bits(g.cpu(), oracle_returns(r, done).T)


def test_non_contiguous_views(backend):
    big = make_rollout(80, (30,), torch.float32, backend)
    views = [x[::2, 1::3] for x in big]  # strided in both dims
    assert not views[0].is_contiguous()
    adv, ret = gae(*views, GAMMA, LAM)
    want_adv, want_ret = oracle_gae(*views)
    assert_same_bits(adv.cpu(), want_adv)
    assert_same_bits(ret.cpu(), want_ret)
    # A batch dimension that cannot be flattened without a copy.
    r3 = torch.randn(10, 4, 6, dtype=torch.float64, device=backend).transpose(1, 2)
    out = discounted_returns(r3, None, GAMMA)
    assert_same_bits(out.cpu(), oracle_returns(r3, torch.zeros(r3.shape, dtype=torch.bool)))


def test_flags_as_float_and_half_inputs(backend):
    r, v, nv, term, done = make_rollout(20, (5,), torch.float32, backend)
    a_bool, _ = gae(r, v, nv, term, done, GAMMA, LAM)
    a_float, _ = gae(r, v, nv, term.float(), done.double(), GAMMA, LAM)
    assert torch.equal(a_bool, a_float)
    assert_same_bits(a_bool.cpu(), oracle_gae(r, v, nv, term, done)[0])
    a_half, _ = gae(r.bfloat16(), v.half(), nv.bfloat16(), term, done, GAMMA, LAM)
    assert a_half.dtype == torch.float32  # half precision is computed in float32
    halves = (r.bfloat16().float(), v.half().float(), nv.bfloat16().float())
    assert_same_bits(a_half.cpu(), oracle_gae(*halves, term, done)[0])


def test_empty_inputs(backend):
    for shape in [(0, 4), (5, 0)]:
        r = torch.zeros(shape, device=backend)
        f = torch.zeros(shape, dtype=torch.bool, device=backend)
        adv, ret = gae(r, r, r, f, f, GAMMA, LAM)
        assert adv.shape == shape and ret.shape == shape
        assert discounted_returns(r, f, GAMMA).shape == shape


@requires_native
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_cpu_chunked_scan_path(dtype, tol, masked):
    # Fewer columns than threads and a long horizon: the CPU takes the chunked scan, the same
    # algorithm the CUDA kernel uses for few long sequences. Re-association: close, not bitwise.
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        r, v, nv, term, done = make_rollout(5000, (3,), dtype, p_term=0.001, p_trunc=0.001)
        mask = padding_mask(5000, 3) if masked else None
        adv, ret = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
        want_adv, want_ret = oracle_gae(r, v, nv, term, done, mask=mask)
        torch.testing.assert_close(adv, want_adv, rtol=tol, atol=tol * 10)
        torch.testing.assert_close(ret, want_ret, rtol=tol, atol=tol * 10)
        boot = torch.randn(3, dtype=dtype)
        g = discounted_returns(r, done, GAMMA, bootstrap=boot, mask=mask)
        torch.testing.assert_close(g, oracle_returns(r, done, bootstrap=boot, mask=mask), rtol=tol, atol=tol * 100)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.cuda
@requires_native
@pytest.mark.parametrize("T,N", [(8192, 8), (1024, 4096), (700, 3000), (3, 5)])
def test_cuda_matches_cpu(T, N):
    # Large problems on CUDA take either the column sweep or the chunked scan.
    r, v, nv, term, done = make_rollout(T, (N,), torch.float64, p_term=0.001, p_trunc=0.001)
    mask = padding_mask(T, N)
    cpu = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
    gpu = gae(*(x.cuda() for x in (r, v, nv, term, done)), GAMMA, LAM, mask=mask.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-12, atol=1e-11)


# --------------------------------------------------------------------------- rollout helper


def test_rollout_next_values():
    values = torch.arange(12.0).reshape(4, 3)
    last = torch.tensor([100.0, 101.0, 102.0])
    nv = rollout_next_values(values, last)
    assert torch.equal(nv, torch.cat([values[1:], last[None]]))
    final_mask = torch.zeros(4, 3, dtype=torch.bool)
    final_mask[1, 2] = True
    final = torch.full((4, 3), -5.0)
    nv = rollout_next_values(values, last, final_values=final, final_mask=final_mask)
    assert nv[1, 2] == -5.0 and nv[1, 1] == values[2, 1]
    bf = rollout_next_values(values.T.contiguous(), last, time_dim=1)
    assert torch.equal(bf, torch.cat([values[1:], last[None]]).T)
    with pytest.raises(ValueError, match="final_values and final_mask"):
        rollout_next_values(values, last, final_values=final)


# --------------------------------------------------------------------------- errors


def _good():
    return make_rollout(8, (4,))


GAE_ERRORS = {
    "int rewards": (lambda a: a.update(rewards=a["rewards"].long()), TypeError, "rewards must be a floating"),
    "list rewards": (lambda a: a.update(rewards=[1.0, 2.0]), TypeError, "rewards must be a torch.Tensor"),
    "values shape": (lambda a: a.update(values=a["values"][:, :3]), ValueError, "values must have the shape"),
    "int next_values": (lambda a: a.update(next_values=a["next_values"].int()), TypeError,
                        "next_values must be a floating"),
    "done shape": (lambda a: a.update(done=a["done"][:4]), ValueError, "done must have the shape"),
    "terminated device": (lambda a: a.update(terminated=a["terminated"].to(torch.device("meta"))), ValueError,
                          "terminated is on meta"),
    "values device": (lambda a: a.update(values=a["values"].to("meta")), ValueError, "values is on meta"),
    "mask shape": (lambda a: a.update(mask=torch.ones(8, 5, dtype=torch.bool)), ValueError,
                   "mask must have the shape"),
    "gamma > 1": (lambda a: a.update(gamma=1.5), ValueError, r"gamma must be in \[0, 1\]"),
    "gamma NaN": (lambda a: a.update(gamma=float("nan")), ValueError, r"gamma must be in \[0, 1\]"),
    "lam < 0": (lambda a: a.update(lam=-0.1), ValueError, r"lam must be in \[0, 1\]"),
    "lam str": (lambda a: a.update(lam="0.9"), TypeError, "lam must be a real number"),
    "time_dim": (lambda a: a.update(time_dim=2), ValueError, "time_dim must be in"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GAE_ERRORS))
def test_gae_bad_input(case):
    mutate, exc, match = GAE_ERRORS[case]
    r, v, nv, term, done = _good()
    kwargs = dict(rewards=r, values=v, next_values=nv, terminated=term, done=done, gamma=GAMMA, lam=LAM)
    mutate(kwargs)
    with pytest.raises(exc, match=match):
        gae(**kwargs)


def test_discounted_returns_bad_input():
    r, _, _, _, done = _good()
    with pytest.raises(ValueError, match="bootstrap must have the batch shape"):
        discounted_returns(r, done, GAMMA, bootstrap=torch.zeros(5))
    with pytest.raises(TypeError, match="bootstrap must be a floating"):
        discounted_returns(r, done, GAMMA, bootstrap=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="gamma must be in"):
        discounted_returns(r, done, 2.0)
    with pytest.raises(ValueError, match="rewards must have a time dimension"):
        discounted_returns(torch.tensor(1.0), None, GAMMA)


@requires_native
def test_native_op_checks_direct_calls():
    # Callers of torch.ops.fastrl.* skip the Python checks; the C++ checks still name the argument.
    r, v, nv, term, done = _good()
    with pytest.raises(RuntimeError, match="done must be Bool"):
        torch.ops.fastrl.gae(r, v, nv, term, done.float(), None, GAMMA, LAM)
    with pytest.raises(RuntimeError, match="gamma must be in"):
        torch.ops.fastrl.discounted_returns(r, done, torch.zeros(4), None, 3.0)
    with pytest.raises(RuntimeError, match=r"rewards must be \[T, N\]"):
        torch.ops.fastrl.discounted_returns(r[0], done[0], torch.zeros(4), None, GAMMA)


# --------------------------------------------------------------------------- custom-op machinery


def _op_samples():
    """(case, (op name, arguments))."""
    r, v, nv, term, done = make_rollout(12, (5,), torch.float32)
    mask = padding_mask(12, 5)
    t = lambda x: x.T.contiguous().T  # noqa: E731  (batch-first memory, time-major view)
    yield "gae", ("gae", (r, v, nv, term, done, None, GAMMA, LAM))
    yield "gae-batch-first-masked", ("gae", (t(r), t(v), t(nv), t(term), t(done), t(mask), 0.5, 1.0))
    yield "returns-masked", ("discounted_returns", (r, done, torch.randn(5), mask, GAMMA))
    yield "returns-strided", ("discounted_returns", (r[::2], done[::2], torch.randn(5), None, 1.0))


@requires_native
@pytest.mark.parametrize("case", ["gae", "gae-batch-first-masked", "returns-masked", "returns-strided"])
def test_opcheck(case):
    name, args = dict(_op_samples())[case]
    torch.library.opcheck(getattr(torch.ops.fastrl, name).default, args)


@requires_native
def test_torch_compile_fullgraph():
    r, v, nv, term, done = make_rollout(16, (8,))

    @torch.compile(fullgraph=True, backend="eager")
    def advantages(r, v, nv, term, done):
        adv, ret = gae(r, v, nv, term, done, GAMMA, LAM)
        return (adv - adv.mean()) / (adv.std() + 1e-8), ret

    adv, ret = advantages(r, v, nv, term, done)
    ref_adv, ref_ret = gae_reference(r, v, nv, term, done, GAMMA, LAM)
    torch.testing.assert_close(adv, (ref_adv - ref_adv.mean()) / (ref_adv.std() + 1e-8))
    assert torch.equal(ret, ref_ret)


@requires_native
@pytest.mark.skipif(not hasattr(torch.jit, "script"), reason="this torch has no TorchScript")
def test_torchscript():
    def fn(r: torch.Tensor, d: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.fastrl.discounted_returns(r, d, b, None, 0.9)

    scripted = torch.jit.script(fn)
    r, _, _, _, done = make_rollout(10, (3,))
    b = torch.zeros(3)
    assert torch.equal(scripted(r, done, b), discounted_returns_reference(r, done, 0.9, b))


# --------------------------------------------------------------------------- build


@requires_native
def test_build_uses_openmp_threads():
    assert _native.build_info["openmp"], "fastrl._C was built without OpenMP: parallel_for is serial"
    if torch.get_num_threads() > 1:
        assert _native._C.parallel_threads_used() > 1


def test_backend_switch_and_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastrl.set_backend("gpu")
    previous = fastrl.get_backend()
    fastrl.set_backend("torch")
    try:
        assert not _native.use_native(torch.device("cpu"))
    finally:
        fastrl.set_backend(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_all_combinations_of_flags_small(backend, dtype):
    # Exhaustive over every (terminated, done) pattern of a 3-step, 1-env rollout.
    pats = list(itertools.product([False, True], repeat=3))
    r = torch.tensor([[1.0], [-2.0], [0.5]], dtype=dtype, device=backend)
    v = torch.tensor([[0.1], [0.2], [0.3]], dtype=dtype, device=backend)
    nv = torch.tensor([[0.2], [0.3], [5.0]], dtype=dtype, device=backend)
    for tp, dp in itertools.product(pats, pats):
        term = torch.tensor(tp, device=backend)[:, None]
        done = torch.tensor(dp, device=backend)[:, None] | term
        adv, ret = gae(r, v, nv, term, done, 0.9, 0.8)
        want_adv, want_ret = oracle_gae(r, v, nv, term, done, 0.9, 0.8)
        assert_same_bits(adv.cpu(), want_adv)
        assert_same_bits(ret.cpu(), want_ret)


# --------------------------------------------------------------------------- non-finite inputs


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_non_finite_value_stays_in_its_episode(backend, bad, dtype):
    # Column 0: an episode ends (done) at t = 1; the next one has a non-finite reward at t = 3
    # and a non-finite value at t = 4. The first episode cannot depend on them: it must equal the
    # same rollout with those entries set to 0, and everything must equal the oracle.
    r, v, nv, term, done = make_rollout(6, (3,), dtype, backend, p_term=0, p_trunc=0)
    done[1, 0] = term[1, 0] = True
    done[2, 1] = True  # truncated: bootstraps from next_values, which is non-finite here
    clean = [x.clone() for x in (r, v, nv)]
    r[3, 0], v[4, 0], nv[2, 1] = bad, bad, bad
    adv, ret = gae(r, v, nv, term, done, GAMMA, LAM)
    want_adv, want_ret = oracle_gae(r, v, nv, term, done)
    assert_same_bits(adv.cpu(), want_adv)
    assert_same_bits(ret.cpu(), want_ret)
    clean_adv, _ = gae(*clean, term, done, GAMMA, LAM)
    assert_same_bits(adv[:2, 0].cpu(), clean_adv[:2, 0].cpu())
    assert torch.isfinite(adv[:2, 0]).all() and torch.isfinite(adv[:, 2]).all()

    boot = torch.tensor([1.0, bad, 2.0], dtype=dtype, device=backend)
    g = discounted_returns(r, done, GAMMA, bootstrap=boot)
    assert_same_bits(g.cpu(), oracle_returns(r, done, bootstrap=boot))
    assert torch.isfinite(g[:2, 0]).all() and torch.isfinite(g[:3, 1]).all()


@requires_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_non_finite_in_cpu_chunked_scan_path(masked, dtype):
    # The scan composes steps into maps: a done step inside a map must cut an infinite carry
    # off too, and a long product of small discounts (a chunk of 256 steps, about 200 of them
    # valid when masked: 0.297^200 underflows float32, 0.0198^200 float64) must not turn an
    # infinite carry into NaN; lam = 0 (discounts of exactly 0) too. Non-finite entries as in the
    # oracle; the rest close (re-association).
    small_lam, tol = (0.3, 2e-5) if dtype == torch.float32 else (0.02, 1e-12)
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        T = 3000
        r, v, nv, term, done = make_rollout(T, (3,), dtype, p_term=0, p_trunc=0)
        done[[500, 1700, 2200], 0] = True
        r[2000, 0] = float("inf")         # poisons 1700..2000 of column 0, not before 1700
        r[2500, 1] = float("nan")         # no done: everything before it in column 1 is NaN
        r[2999, 2] = float("-inf")        # -inf through 2999 steps of small discounts
        mask = padding_mask(T, 3) if masked else None
        if mask is not None:
            mask[:, 2] = torch.rand(T, generator=torch.Generator().manual_seed(1)) > 0.2  # not all padding
            mask[[2000, 2500, 2999], [0, 1, 2]] = True
        for lam in (LAM, small_lam, 0.0):
            adv, _ = gae(r, v, nv, term, done, GAMMA, lam, mask=mask)
            want, _ = oracle_gae(r, v, nv, term, done, GAMMA, lam, mask=mask)
            torch.testing.assert_close(adv, want, rtol=tol, atol=10 * tol, equal_nan=True)
            g = discounted_returns(r, done, GAMMA * lam, mask=mask)
            want = oracle_returns(r, done, GAMMA * lam, mask=mask)
            torch.testing.assert_close(g, want, rtol=tol, atol=10 * tol, equal_nan=True)
            if lam == small_lam:  # -inf reaches every valid step of column 2, never as NaN
                valid = slice(None) if mask is None else mask[:2999, 2]
                assert torch.isinf(adv[:2999, 2][valid]).all() and torch.isinf(g[:2999, 2][valid]).all()
    finally:
        torch.set_num_threads(previous)


def test_rollout_next_values_checks_every_argument():
    values, last = torch.zeros(4, 3), torch.zeros(3)
    final, final_mask = torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.bool)
    cases = [
        (dict(values=torch.tensor(1.0)), ValueError, "values must have a time dimension"),
        (dict(last_value=last.to("meta")), ValueError, "last_value is on meta but values is on cpu"),
        (dict(final_values=final.to("meta")), ValueError, "final_values is on meta but values is on cpu"),
        (dict(final_mask=final_mask.to("meta")), ValueError, "final_mask is on meta"),
        (dict(last_value=torch.zeros(4)), ValueError, "last_value must have the batch shape"),
        (dict(last_value=torch.zeros(3, dtype=torch.long)), TypeError, "last_value must be a floating"),
        (dict(final_values=torch.zeros(4, 2)), ValueError, "final_values must have the shape of values"),
        (dict(final_mask=None), ValueError, "final_values and final_mask go together"),
        (dict(time_dim=2), ValueError, "time_dim must be in"),
    ]
    for change, error, match in cases:
        args = dict(dict(values=values, last_value=last, final_values=final, final_mask=final_mask), **change)
        with pytest.raises(error, match=match):
            rollout_next_values(**args)


@pytest.mark.cuda
@requires_native
def test_non_finite_in_cuda_chunked_scan():
    # Few long columns take the block scan on CUDA: the same cut at done steps and no NaN from
    # an underflowed product of discounts, as the reference.
    T = 8192
    r, v, nv, term, done = make_rollout(T, (4,), torch.float32, p_term=0, p_trunc=0)
    done[[100, 4000, 6000], 0] = True
    r[5000, 0], r[8000, 1], r[8191, 2] = float("inf"), float("nan"), float("-inf")
    mask = padding_mask(T, 4)
    mask[[5000, 8000, 8191], [0, 1, 2]] = True
    for lam in (LAM, 0.3):
        adv, _ = gae(*(x.cuda() for x in (r, v, nv, term, done)), GAMMA, lam, mask=mask.cuda())
        ref, _ = gae_reference(r, v, nv, term, done, GAMMA, lam, mask)
        torch.testing.assert_close(adv.cpu(), ref, rtol=2e-5, atol=2e-4, equal_nan=True)


def test_rollout_next_values_of_an_empty_rollout():
    # T = 0 gave [1, N] (just last_value) where values is [0, N].
    nv = rollout_next_values(torch.zeros(0, 3), torch.ones(3))
    assert nv.shape == (0, 3)
