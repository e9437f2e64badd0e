"""GAE and discounted returns, what the registry (tests/ops/opinfo.py, run by test_opinfo.py)
does not cover: hand-worked examples, padding that links valid tokens, every flag pattern of a
short rollout, non-finite values kept in their episode, the CPU's chunked scan and CUDA's long
problems, direct calls of the native ops, the build. Every backend is compared with the scalar
loops of tests/ops/oracles.py, bit for bit (they round like the documented operation order)."""

import itertools

import pytest
import torch

import fastrl
from fastrl import _native
from fastrl.ops import discounted_returns, gae, rollout_next_values
from fastrl.ops.returns import gae_reference
from tests.conftest import requires_native, threads
from tests.ops.helpers import GAMMA, LAM, assert_same_bits, make_rollout, padding_mask
from tests.ops.opinfo import gae_oracle, returns_oracle

# --------------------------------------------------------------------------- hand-worked examples


def test_truncation_bootstraps_from_final_value_by_hand(backend, device):
    # One env, 3 steps; truncated at t=1 (final obs value 10), terminated at t=2.
    r, v, nv = (torch.tensor(x, dtype=torch.float64, device=device)[:, None]
                for x in ([1.0, 2.0, 3.0], [0.5, 0.25, 0.125], [0.25, 10.0, 99.0]))  # fmt: skip
    term = torch.tensor([[False], [False], [True]], device=device)
    done = torch.tensor([[False], [True], [True]], device=device)
    g, lam = 0.9, 0.5
    d2 = 3.0 - 0.125                          # terminated: no bootstrap
    d1 = 2.0 + g * 10.0 - 0.25                # truncated: bootstrap from the final obs value
    d0 = 1.0 + g * 0.25 - 0.5
    expected = torch.tensor([[d0 + g * lam * d1], [d1], [d2]], dtype=torch.float64)
    adv, ret = gae(r, v, nv, term, done, g, lam)
    torch.testing.assert_close(adv.cpu(), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(ret.cpu(), expected + v.cpu(), rtol=0, atol=1e-15)


def test_masked_gae_by_hand(backend, device):
    # One env, 4 steps, the second one padding: it gets 0 and links step 0 to step 2.
    r, v, nv = (torch.tensor(x, dtype=torch.float64, device=device)[:, None]
                for x in ([1.0, 7.0, 2.0, 3.0], [0.5, 9.0, 0.25, 0.125], [0.25, 9.0, 0.125, 4.0]))  # fmt: skip
    no = torch.zeros(4, 1, dtype=torch.bool, device=device)
    mask = torch.tensor([[True], [False], [True], [True]], device=device)
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


def test_discounted_returns_by_hand(backend, device):
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64, device=device)
    done = torch.tensor([False, True, False, False, False], device=device)
    mask = torch.tensor([True, True, True, False, True], device=device)  # step 3 is padding
    g = 0.5
    boot = torch.tensor(8.0, dtype=torch.float64, device=device)
    expected = torch.tensor([1 + g * 2, 2.0, 3 + g * (4 + g * (5 + g * 8.0)), 4 + g * (5 + g * 8.0), 5 + g * 8.0],
                            dtype=torch.float64)  # fmt: skip
    out = discounted_returns(r, done, g, bootstrap=boot)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)
    expected[2], expected[3] = 3 + g * (5 + g * 8.0), 0.0
    out = discounted_returns(r, done, g, bootstrap=boot, mask=mask)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- backends vs the oracles


def oracle_gae(r, v, nv, term, done, gamma=GAMMA, lam=LAM, mask=None):
    """gae_loop on time-major ``[T, *batch]`` tensors of any device: (advantages, returns) on the CPU."""
    return gae_oracle(r, v, nv, term, done, gamma, lam, mask)


def oracle_returns(r, done, gamma=GAMMA, bootstrap=None, mask=None):
    """discounted_returns_loop on time-major ``[T, *batch]`` tensors (bootstrap default 0), on the CPU."""
    return returns_oracle(r, done, gamma, bootstrap, mask)


def test_mask_links_last_valid_token_to_next_valid(backend, device):
    # Padding between two valid tokens must be transparent: same as if it were not there.
    r, v, nv, term, done = make_rollout(6, (1,), torch.float64, device, p_term=0, p_trunc=0)
    mask = torch.tensor([[True], [True], [False], [False], [True], [True]], device=device)
    adv, _ = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
    keep = mask[:, 0]
    compact, _ = gae(r[keep], v[keep], nv[keep], term[keep], done[keep], GAMMA, LAM)
    assert torch.equal(adv[keep], compact)


@requires_native
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_cpu_chunked_scan_path(dtype, tol, masked):
    # Fewer columns than threads and a long horizon: the CPU takes the chunked scan, the same
    # algorithm the CUDA kernel uses for few long sequences. Re-association: close, not bitwise.
    with threads(4):
        r, v, nv, term, done = make_rollout(5000, (3,), dtype, p_term=0.001, p_trunc=0.001)
        mask = padding_mask(5000, 3) if masked else None
        adv, ret = gae(r, v, nv, term, done, GAMMA, LAM, mask=mask)
        want_adv, want_ret = oracle_gae(r, v, nv, term, done, mask=mask)
        torch.testing.assert_close(adv, want_adv, rtol=tol, atol=tol * 10)
        torch.testing.assert_close(ret, want_ret, rtol=tol, atol=tol * 10)
        boot = torch.randn(3, dtype=dtype)
        g = discounted_returns(r, done, GAMMA, bootstrap=boot, mask=mask)
        torch.testing.assert_close(g, oracle_returns(r, done, bootstrap=boot, mask=mask), rtol=tol, atol=tol * 100)


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


# --------------------------------------------------------------------------- direct calls of the native ops


@requires_native
def test_native_op_checks_direct_calls():
    # Callers of torch.ops.fastrl.* skip the Python checks; the C++ checks still name the argument.
    r, v, nv, term, done = make_rollout(8, (4,))
    with pytest.raises(RuntimeError, match="done must be Bool"):
        torch.ops.fastrl.gae(r, v, nv, term, done.float(), None, GAMMA, LAM)
    with pytest.raises(RuntimeError, match="gamma must be in"):
        torch.ops.fastrl.discounted_returns(r, done, torch.zeros(4), None, 3.0)
    with pytest.raises(RuntimeError, match=r"rewards must be \[T, N\]"):
        torch.ops.fastrl.discounted_returns(r[0], done[0], torch.zeros(4), None, GAMMA)


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
def test_all_combinations_of_flags_small(backend, device, dtype):
    # Exhaustive over every (terminated, done) pattern of a 3-step, 1-env rollout.
    pats = list(itertools.product([False, True], repeat=3))
    r = torch.tensor([[1.0], [-2.0], [0.5]], dtype=dtype, device=device)
    v = torch.tensor([[0.1], [0.2], [0.3]], dtype=dtype, device=device)
    nv = torch.tensor([[0.2], [0.3], [5.0]], dtype=dtype, device=device)
    for tp, dp in itertools.product(pats, pats):
        term = torch.tensor(tp, device=device)[:, None]
        done = torch.tensor(dp, device=device)[:, None] | term
        adv, ret = gae(r, v, nv, term, done, 0.9, 0.8)
        want_adv, want_ret = oracle_gae(r, v, nv, term, done, 0.9, 0.8)
        assert_same_bits(adv.cpu(), want_adv)
        assert_same_bits(ret.cpu(), want_ret)


# --------------------------------------------------------------------------- non-finite inputs


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_non_finite_value_stays_in_its_episode(backend, device, bad, dtype):
    # Column 0: an episode ends (done) at t = 1; the next one has a non-finite reward at t = 3
    # and a non-finite value at t = 4. The first episode cannot depend on them: it must equal the
    # same rollout with those entries set to 0, and everything must equal the oracle.
    r, v, nv, term, done = make_rollout(6, (3,), dtype, device, p_term=0, p_trunc=0)
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

    boot = torch.tensor([1.0, bad, 2.0], dtype=dtype, device=device)
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
    with threads(4):
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


