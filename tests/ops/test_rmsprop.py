"""fastrl.ops.rmsprop_centered_ and fastrl.optim.RMSprop.

The oracle is torch's own update (the reference's lines) with one change: the square root rounded
correctly (numpy's, the hardware instruction). The kernels match it bit for bit, on both CPU
builds. torch's CPU ``sqrt`` is MKL's vector math, which may be an ulp off, so against
torch.optim.RMSprop itself the kernels agree to an ulp or two, and the PyTorch fallback (the
reference) agrees bit for bit.
"""

import numpy as np
import pytest
import torch

import fastrl.optim
from fastrl import _native
from fastrl.ops import rmsprop as ops
from tests.conftest import DEVICE_PARAMS, backend, here_and_on_baseline_kernels, requires_native
from tests.ops.helpers import assert_same_bits

SHAPES = [(1,), (7,), (8,), (9,), (33,), (3, 5, 7), (16, 4, 3, 3), (131_072,)]  # 8/4 lanes, tails, the DQN's fc


def oracle_(params, grads, square_avgs, grad_avgs, lr, alpha, eps):
    for p, g, square_avg, grad_avg in zip(params, grads, square_avgs, grad_avgs):
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        grad_avg.lerp_(g, 1 - alpha)
        variance = square_avg.addcmul(grad_avg, grad_avg, value=-1)
        with np.errstate(invalid="ignore"):  # a variance rounded below 0 (alpha 0): NaN, as torch's
            root = np.sqrt(variance.cpu().numpy())  # IEEE's square root
        avg = torch.from_numpy(root).to(p.device).add_(eps)
        p.addcdiv_(g, avg, value=-lr)


def state(shapes, dtype, device, seed=0):
    """Parameters, gradients and a state a few steps in (square_avg >= grad_avg^2, as it stays)."""
    gen = torch.Generator().manual_seed(seed)
    out = {k: [] for k in ("params", "grads", "square_avgs", "grad_avgs")}
    for shape in shapes:
        rand = lambda scale, shape=shape: (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        grad_avg = rand(1e-3)
        out["params"].append(rand(1.0).to(device))
        out["grads"].append(rand(1e-2).to(device))
        out["grad_avgs"].append(grad_avg.to(device))
        out["square_avgs"].append((grad_avg * grad_avg * 1.5 + rand(1e-3).abs()).to(device))
    return out


def clone(s):
    return {k: [t.clone() for t in v] for k, v in s.items()}


def steps(update, s, n=3, lr=2.5e-4, alpha=0.95, eps=0.01):
    """n updates with a fresh gradient each (the state carries), on a copy of s."""
    s = clone(s)
    for i in range(n):
        s["grads"] = [g * (1 + i) - 1e-3 * i for g in s["grads"]]
        update(s["params"], s["grads"], s["square_avgs"], s["grad_avgs"], lr, alpha, eps)
    return s


def assert_states_same_bits(got, want):
    for k in ("params", "square_avgs", "grad_avgs"):
        for a, b in zip(got[k], want[k]):
            assert_same_bits(a, b)


@requires_native
@pytest.mark.parametrize("device", DEVICE_PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.95, 0.99, 0.5, 0.3, 0.0, 1.0])  # lerp's two branches; 0 and 1 at the ends
def test_native_matches_the_oracle_bit_for_bit(device, dtype, alpha):
    if device == "cuda" and not _native.native_compiled_for(torch.device("cuda")):
        pytest.skip("fastrl._C has no CUDA kernels")
    s = state(SHAPES, dtype, device)
    with backend("native"):
        got = steps(ops.rmsprop_centered_, s, alpha=alpha)
    # on the CPU: every kernel computes what the CPU one does (CUDA: explicit fma, IEEE sqrt and division)
    want = steps(oracle_, {k: [t.cpu() for t in v] for k, v in s.items()}, alpha=alpha)
    assert_states_same_bits({k: [t.cpu() for t in v] for k, v in got.items()}, want)


def test_the_fallback_is_the_reference_and_torchs_update(torch_backend):
    s = state(SHAPES, torch.float32, "cpu")
    assert_states_same_bits(steps(ops.rmsprop_centered_, s), steps(ops.rmsprop_centered_reference, s))
    # the reference is torch.optim.RMSprop's update: its first step, from zero state
    params = [torch.nn.Parameter(p.clone()) for p in s["params"]]
    for p, g in zip(params, s["grads"]):
        p.grad = g.clone()
    torch.optim.RMSprop(params, lr=2.5e-4, alpha=0.95, eps=0.01, centered=True).step()
    mine = clone(s)
    zeros = [torch.zeros_like(p) for p in mine["params"]]
    ops.rmsprop_centered_reference(mine["params"], mine["grads"], zeros, [z.clone() for z in zeros], 2.5e-4,
                                   0.95, 0.01)
    for p, want in zip(params, mine["params"]):
        assert_same_bits(p.detach(), want)


@requires_native
def test_native_is_within_an_ulp_or_two_of_torch():
    s = state(SHAPES, torch.float32, "cpu")
    with backend("native"):
        got = steps(ops.rmsprop_centered_, s, n=5)
    want = steps(ops.rmsprop_centered_reference, s, n=5)  # torch's ops, torch's sqrt
    eps = torch.finfo(torch.float32).eps
    for a, b, p in zip(got["params"], want["params"], s["params"]):  # ulps of the parameter and of its change
        assert ((a - b).abs() <= 2 * eps * (torch.maximum(a.abs(), b.abs()) + (a - p).abs())).all()
    assert not torch.equal(got["params"][-1], want["params"][-1])  # torch's sqrt does differ: the test can tell


@requires_native
def test_the_avx2_and_baseline_builds_agree_bit_for_bit(tmp_path):
    here, baseline = here_and_on_baseline_kernels("tests.ops.test_rmsprop", "updated_states", tmp_path)
    for a, b in zip(here, baseline):
        assert_same_bits(a, b)


def updated_states():
    """Every tensor after native updates of both dtypes and both lerp branches (run here and on
    the baseline kernels by the test above)."""
    out = []
    with backend("native"):
        for dtype in (torch.float32, torch.float64):
            for alpha in (0.95, 0.3):
                s = steps(ops.rmsprop_centered_, state(SHAPES, dtype, "cpu"), alpha=alpha)
                out += s["params"] + s["square_avgs"] + s["grad_avgs"]
    return out


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3), torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 5))


def train(opt_cls, net, n=4, **kw):
    opt = opt_cls(net.parameters(), **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(n):
        opt.zero_grad()
        net(torch.randn(8, 4, 10, 10, generator=gen)).square().mean().backward()
        opt.step()
    return opt


PAPER = dict(lr=2.5e-4, alpha=0.95, eps=0.01, centered=True)


@pytest.mark.parametrize("backend_name", ["native", "torch"])
def test_the_optimizer_is_torchs_with_a_fused_step(monkeypatch, backend_name):
    if backend_name == "native" and _native._C is None:
        pytest.skip("fastrl._C not built")
    calls = []
    kernel = ops.rmsprop_centered_unchecked_
    monkeypatch.setattr(fastrl.optim, "rmsprop_centered_unchecked_", lambda *a: (calls.append(len(a[0])), kernel(*a)))
    ours, theirs = tiny_net(), tiny_net()
    with backend(backend_name):
        opt = train(fastrl.optim.RMSprop, ours, **PAPER)
    ref = train(torch.optim.RMSprop, theirs, **PAPER)
    assert calls == [4] * 4  # one call a step for all four parameters
    for a, b in zip(ours.parameters(), theirs.parameters()):
        if backend_name == "torch":
            assert_same_bits(a.detach(), b.detach())
        else:  # an ulp or two: torch's sqrt (module docstring); the run was 4 steps
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    state, ref_state = opt.state_dict(), ref.state_dict()
    assert state["param_groups"] == ref_state["param_groups"]
    for i, s in state["state"].items():
        assert set(s) == set(ref_state["state"][i]) == {"step", "square_avg", "grad_avg"}
        assert s["step"].item() == 4 and s["step"].dtype == ref_state["state"][i]["step"].dtype


@pytest.mark.parametrize("kw", [dict(centered=False), dict(momentum=0.9), dict(weight_decay=0.1),
                                dict(maximize=True), dict(lr=torch.tensor(1e-3)), dict(foreach=True)], ids=str)
def test_other_configurations_run_torchs_update(monkeypatch, kw):
    monkeypatch.setattr(fastrl.optim, "rmsprop_centered_unchecked_", lambda *a: pytest.fail("the fused kernel ran"))
    args = {**PAPER, **kw}
    if kw.get("foreach"):  # the fused conditions hold; foreach is torch's loop choice, ignored by the kernel
        monkeypatch.undo()
    ours, theirs = tiny_net(), tiny_net()
    train(fastrl.optim.RMSprop, ours, **args)
    train(torch.optim.RMSprop, theirs, **args)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_differentiable_steps_are_torchs(monkeypatch):
    monkeypatch.setattr(fastrl.optim, "rmsprop_centered_unchecked_", lambda *a: pytest.fail("the fused kernel ran"))
    errors = []
    for cls in (fastrl.optim.RMSprop, torch.optim.RMSprop):
        with pytest.raises(RuntimeError) as e:  # torch's: a leaf parameter updated in place under autograd
            train(cls, tiny_net(), n=1, differentiable=True, **PAPER)
        errors.append(str(e.value))
    assert errors[0] == errors[1]


def test_layouts_the_kernel_does_not_take_run_torchs_update(monkeypatch):
    monkeypatch.setattr(fastrl.optim, "rmsprop_centered_unchecked_", lambda *a: pytest.fail("the fused kernel ran"))
    for make in (lambda: torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float16)),  # dtype
                 lambda: torch.nn.Parameter(torch.randn(6, 8)[:, ::2])):  # not dense
        p, q = make(), None
        q = torch.nn.Parameter(p.detach().clone())
        for param, cls in ((p, fastrl.optim.RMSprop), (q, torch.optim.RMSprop)):
            opt = cls([param], **PAPER)
            param.grad = torch.ones_like(param) * 0.5
            opt.step()
        assert torch.equal(p, q)


def test_a_group_with_no_gradients_and_a_closure():
    net = tiny_net()
    opt = fastrl.optim.RMSprop(net.parameters(), **PAPER)
    assert opt.step() is None and not opt.state  # no gradients yet: nothing to do
    loss = opt.step(lambda: net(torch.ones(1, 4, 10, 10)).sum().backward() or torch.tensor(3.0))
    assert loss.item() == 3.0 and len(opt.state) == 4


def test_checkpoints_move_between_torch_and_fastrl():
    a, b = tiny_net(), tiny_net()
    opt_a = train(fastrl.optim.RMSprop, a, n=2, **PAPER)
    opt_b = torch.optim.RMSprop(b.parameters(), **PAPER)
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())  # fastrl's state into torch's optimizer ...
    opt_c = fastrl.optim.RMSprop(tiny_net().parameters(), **PAPER)
    opt_c.load_state_dict(opt_b.state_dict())  # ... and back
    for s_a, s_c in zip(opt_a.state.values(), opt_c.state.values()):
        for k in s_a:
            assert torch.equal(s_a[k], s_c[k])


BAD = [
    ("lists", lambda s: s.update(grads=s["grads"][:1]), ValueError, "one length"),
    ("not a list", lambda s: s.update(grads=s["grads"][0]), TypeError, "grads must be a list"),
    ("int params", lambda s: s.update(params=[t.long() for t in s["params"]]), TypeError, r"params\[0\] must be float"),
    ("grad shape", lambda s: s["grads"].__setitem__(1, s["grads"][1][:1]), ValueError, r"grads\[1\] must have"),
    ("state dtype", lambda s: s["square_avgs"].__setitem__(0, s["square_avgs"][0].double()), ValueError,
     r"square_avgs\[0\] must have"),
    ("strides", lambda s: s["grad_avgs"].__setitem__(1, s["grad_avgs"][1].t().contiguous().t()), ValueError,
     r"grad_avgs\[1\] must have"),
    ("not dense", lambda s: s.update(params=[s["params"][0], torch.randn(5, 8)[:, ::2]]), ValueError,
     r"params\[1\] must be dense"),
]


@pytest.mark.parametrize("name,spoil,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_name_the_argument(name, spoil, error, match):
    s = state([(3,), (5, 4)], torch.float32, "cpu")
    spoil(s)
    with pytest.raises(error, match=match):
        ops.rmsprop_centered_(s["params"], s["grads"], s["square_avgs"], s["grad_avgs"], 1e-3, 0.9, 1e-8)


@pytest.mark.parametrize("name,value", [("lr", -1.0), ("lr", float("nan")), ("lr", True), ("alpha", 1.5),
                                        ("alpha", "0.9"), ("eps", -1e-8)])
def test_bad_hyper_parameters_name_the_argument(name, value):
    s = state([(3,)], torch.float32, "cpu")
    hypers = {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8, name: value}
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ops.rmsprop_centered_(s["params"], s["grads"], s["square_avgs"], s["grad_avgs"], **hypers)


@requires_native
@pytest.mark.parametrize("spoil,match", [
    (lambda s: s.update(grads=[]), "one length"),
    (lambda s: s["grads"].__setitem__(0, s["grads"][0][:2]), r"grads\[0\] must have"),
    (lambda s: s.update(params=[t.long() for t in s["params"]]), r"params\[0\] must be float32"),
    (lambda s: s["params"].__setitem__(0, torch.randn(6)[::2]), r"params\[0\] must be dense"),
    (lambda s: s.update(lr=-1.0), "lr must be >= 0"),
    (lambda s: s.update(alpha=2.0), r"alpha must be in \[0, 1\]"),
    (lambda s: s.update(eps=-1.0), "eps must be >= 0"),
])
def test_the_op_checks_its_arguments_itself(spoil, match):
    # for callers of torch.ops.fastrl.* that skip the Python wrapper
    s = {**state([(3,)], torch.float32, "cpu"), "lr": 1e-3, "alpha": 0.9, "eps": 1e-8}
    spoil(s)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastrl.rmsprop_centered_(s["params"], s["grads"], s["square_avgs"], s["grad_avgs"],
                                           s["lr"], s["alpha"], s["eps"])


@requires_native
def test_empty_lists_and_tensors():
    ops.rmsprop_centered_([], [], [], [], 1e-3, 0.9, 1e-8)
    s = state([(0,), (2, 0), (4,)], torch.float32, "cpu")
    want = steps(oracle_, s)
    with backend("native"):
        assert_states_same_bits(steps(ops.rmsprop_centered_, s), want)


@requires_native
def test_opcheck_and_torchscript():
    s = state([(5,), (2, 3)], torch.float32, "cpu")
    args = (s["params"], s["grads"], s["square_avgs"], s["grad_avgs"], 1e-3, 0.9, 1e-8)
    torch.library.opcheck(torch.ops.fastrl.rmsprop_centered_.default, args)

    @torch.jit.script
    def scripted(params: list[torch.Tensor], grads: list[torch.Tensor], sq: list[torch.Tensor],
                 ga: list[torch.Tensor]):
        torch.ops.fastrl.rmsprop_centered_(params, grads, sq, ga, 1e-3, 0.9, 1e-8)

    got, want = clone(s), clone(s)
    scripted(got["params"], got["grads"], got["square_avgs"], got["grad_avgs"])
    oracle_(want["params"], want["grads"], want["square_avgs"], want["grad_avgs"], 1e-3, 0.9, 1e-8)
    assert_states_same_bits(got, want)


@requires_native
def test_a_non_finite_gradient_stays_in_its_element():
    s = state([(9,), (33,)], torch.float32, "cpu")
    s["grads"][0][3] = float("nan")
    s["grads"][1][20] = float("inf")
    with backend("native"):
        got = steps(ops.rmsprop_centered_, s, n=1)
    assert_states_same_bits(got, steps(oracle_, s, n=1))
    bad = [p.isfinite().logical_not().nonzero().flatten().tolist() for p in got["params"]]
    assert bad == [[3], [20]]
