"""fastrl.nn.Linear: oneDNN's products against float64 F.linear (an independent oracle), the choice
of path, and plain nn.Linear wherever a graph is recorded."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fastrl.nn import linear

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.mkldnn, "_linear_pointwise")
                                or not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.fixture
def onednn(monkeypatch):
    """The oneDNN path forced on, counting its products."""
    calls = []
    product = linear._matmul_t

    def counted(*args):
        calls.append(args[0].shape)
        return product(*args)

    monkeypatch.setattr(linear, "ONEDNN", True)
    monkeypatch.setattr(linear, "_matmul_t", counted)
    return calls


def _layer(n_in, n_out, bias=True, seed=0):
    torch.manual_seed(seed)
    return linear.Linear(n_in, n_out, bias=bias)


@pytest.mark.parametrize("shape", [(1, 7), (5, 7), (32, 1024), (2, 3, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_float64(onednn, shape, bias):
    layer = _layer(shape[-1], 9 if shape[-1] == 7 else 128, bias)
    x = torch.randn(shape, requires_grad=True)
    out = layer(x)
    upstream = torch.randn(out.shape)  # not ones: a transposed or summed-wrong gradient shows
    out.backward(upstream)
    assert len(onednn) == 3  # forward, input gradient, weight gradient

    x64 = x.detach().double().requires_grad_()
    w64 = layer.weight.detach().double().requires_grad_()
    b64 = layer.bias.detach().double().requires_grad_() if bias else None
    ref = F.linear(x64, w64, b64)
    ref.backward(upstream.double())
    tol = dict(rtol=1e-5, atol=1e-5 * shape[-1] ** 0.5)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(x.grad.double(), x64.grad, **tol)
    torch.testing.assert_close(layer.weight.grad.double(), w64.grad, rtol=1e-5, atol=1e-5 * x.numel() ** 0.5)
    if bias:
        torch.testing.assert_close(layer.bias.grad.double(), b64.grad, rtol=1e-5, atol=1e-4)
    else:
        assert layer.bias is None


def test_strided_input_and_no_input_gradient(onednn):
    layer = _layer(6, 4)
    x = torch.randn(6, 10)[:, ::2].t()  # [5, 6], not contiguous
    layer(x).sum().backward()
    assert len(onednn) == 2  # forward and weight gradient: the input needs none
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    with pytest.raises(RuntimeError):  # no derivative of the backward's products: said, not wrong
        x = torch.randn(3, 6, requires_grad=True)
        (g,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        g.sum().backward()


@pytest.mark.parametrize("case", ["float64", "empty", "off"])
def test_plain_linear_elsewhere(onednn, monkeypatch, case):
    layer = _layer(6, 4)
    x = torch.randn(0 if case == "empty" else 3, 6)
    if case == "float64":
        layer, x = layer.double(), x.double()
    if case == "off":
        monkeypatch.setattr(linear, "ONEDNN", False)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert onednn == []


def test_recorded_graphs_hold_plain_ops(onednn):
    layer = _layer(6, 4)
    x = torch.randn(3, 6)
    traced = torch.jit.trace(layer, x, check_trace=False)  # the check would rerun it eagerly
    assert "mkldnn" not in str(traced.graph) and "linear" in str(traced.graph)
    program = torch.export.export(layer, (x,))
    assert "mkldnn" not in str(program.graph)
    assert onednn == []
    torch.testing.assert_close(program.module()(x), layer(x))


def test_the_choice_of_path(monkeypatch):
    vendor_of_this_machine = linear._cpu_vendor
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    for vendor, wins in (("AuthenticAMD", True), ("GenuineIntel", False)):
        monkeypatch.setattr(linear, "_cpu_vendor", lambda vendor=vendor: vendor)
        monkeypatch.delenv("FASTRL_ONEDNN_LINEAR", raising=False)
        assert linear._onednn_wins() is wins
        for setting in ("0", "1"):  # the variable overrides either way
            monkeypatch.setenv("FASTRL_ONEDNN_LINEAR", setting)
            assert linear._onednn_wins() is (setting == "1")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("FASTRL_ONEDNN_LINEAR", "auto")
    assert linear._onednn_wins() is False
    monkeypatch.setenv("FASTRL_ONEDNN_LINEAR", "yes")
    with pytest.raises(ValueError, match="FASTRL_ONEDNN_LINEAR"):
        linear._onednn_wins()
    assert vendor_of_this_machine() in ("AuthenticAMD", "GenuineIntel", "")  # from /proc/cpuinfo
    monkeypatch.setattr(linear, "Path", lambda _: Path("/nonexistent/cpuinfo"))  # not Linux
    assert vendor_of_this_machine() == ""


def test_state_dicts_are_nn_linears():
    layer = _layer(6, 4)
    plain = torch.nn.Linear(6, 4)
    plain.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 6)
    torch.testing.assert_close(layer(x), plain(x))
