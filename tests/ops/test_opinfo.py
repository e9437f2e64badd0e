"""The generic op checks, driven by the registry in tests/ops/opinfo.py, on every device and
backend. Test ids name op, device, backend and case: ``test_matches_oracle[gae-cpu-native-done_at_end]``.

- native vs the reference (the spec), outputs and gradients, on every sample;
- every backend (the native kernels and the PyTorch fallback, which *is* the reference) vs the
  scalar-loop oracle of tests/ops/oracles.py, outputs and gradients (an upstream gradient != 1);
- the backend switch: the native backend calls torch.ops.fastrl.*, the fallback never does, by
  ``backend()`` and by ``FASTRL_BACKEND=torch``;
- ``torch.library.opcheck`` and a TorchScript call of every torch.ops.fastrl.* call the op makes
  (forward and backward), ``torch.compile(fullgraph=True)``, float64 ``gradcheck``;
- every bad input raises the documented exception with a message naming the argument.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.conftest import BACKENDS, requires_native
from tests.ops.helpers import assert_same_bits
from tests.ops.opinfo import BITWISE, OPS, OPS_BY_NAME, OpInfo, Tol


def cases(check: str, backends=BACKENDS):
    """pytest params ``(op, device, backend, name)`` with the id ``op-device-backend-name``, for
    every op, device and backend that ``check`` applies to. ``device`` and ``backend`` go to the
    conftest fixtures (indirect)."""
    out = []
    for op in OPS:
        names = {
            "reference": [s.name for s in op.samples],
            "oracle": [s.name for s in op.samples if s.oracle and op.oracle is not None],
            "opcheck": op.opcheck,
            "compile": op.compile,
            "gradcheck": op.gradcheck,
            "bad_input": [b.name for b in op.bad_inputs],
            "backend": [op.samples[0].name],
        }[check]
        # Ops with no kernel run the same code on every backend: once is enough.
        op_backends = [b for b in backends if op.native or b == "torch"]
        for name in names:
            devices = op.sample(name).devices if check != "bad_input" else ("cpu", "cuda")
            for device in devices:
                for backend in op_backends:
                    marks = [pytest.mark.cuda] if device == "cuda" else []
                    if f"{check}-{name}" in op.known_failures:
                        marks.append(pytest.mark.xfail(reason=op.known_failures[f"{check}-{name}"], strict=True))
                    out.append(pytest.param(op.name, device, backend, name, marks=marks,
                                            id=f"{op.name}-{device}-{backend}-{name}"))  # fmt: skip
    return out


INDIRECT = ["device", "backend"]


# --------------------------------------------------------------------------- running an op


def flatten(out) -> dict[str, torch.Tensor]:
    """An op's outputs by position (a tensor, a tuple or NamedTuple, dicts of stats inside)."""
    if isinstance(out, torch.Tensor):
        return {"0": out}
    flat = {}
    for i, x in enumerate(out):
        if isinstance(x, dict):
            flat.update({f"{i}.{k}": v for k, v in x.items()})
        else:
            flat[str(i)] = x
    return flat


def grad_inputs(kwargs) -> dict[str, torch.Tensor]:
    return {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.requires_grad}


def upstream(k: int, like: torch.Tensor) -> torch.Tensor:
    """The gradient fed into output ``k``: 2.5 for a scalar, values in ±[0.5, 1.5) otherwise."""
    if like.ndim == 0:
        return torch.full((), 2.5, dtype=torch.float64)
    w = torch.rand(like.shape, generator=torch.Generator().manual_seed(k), dtype=torch.float64) + 0.5
    return w * (-1) ** k


def run(fn, kwargs) -> tuple[dict, dict]:
    """``fn(**kwargs)``'s outputs and the gradients of ``sum_k <upstream_k, out_k>`` with respect to
    the inputs that require a gradient (zeros where an input gets none)."""
    out = flatten(fn(**kwargs))
    inputs = grad_inputs(kwargs)
    used = [(o, upstream(k, o).to(o.device, o.dtype)) for k, o in enumerate(out.values()) if o.requires_grad]
    if not inputs:
        return out, {}
    if not used:
        return out, {k: torch.zeros_like(v) for k, v in inputs.items()}
    outs, grads_out = zip(*used)
    grads = torch.autograd.grad(outs, list(inputs.values()), grads_out, allow_unused=True)
    return out, {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(inputs.items(), grads)}


def assert_results_match(got, want, tol: Tol | None, what: str, same_dtype=True):
    """``got`` and ``want`` = (outputs, gradients) of ``run``; compared on the CPU (the dtypes
    too, unless ``same_dtype`` is False: the oracles compute in float64)."""
    for kind, a, b in (("output", got[0], want[0]), ("gradient", got[1], want[1])):
        assert a.keys() == b.keys(), (what, kind, a.keys(), b.keys())
        for key in a:
            x, y = a[key].detach().cpu(), b[key].detach().cpu()
            msg = f"{what}: {kind} {key}"
            assert x.shape == y.shape, (msg, x.shape, y.shape)
            assert x.dtype == y.dtype or not same_dtype, (msg, x.dtype, y.dtype)
            if tol is BITWISE:
                assert_same_bits(x, y)
                continue
            rtol, atol = (tol.rtol, tol.atol) if kind == "output" else (tol.grad_rtol, tol.grad_atol)
            if kind == "gradient":  # gradients scale like 1 / V: atol relative to the largest
                scale = y.double().nan_to_num(0, 0, 0).abs().max().item() if y.numel() else 0.0
                atol = atol * scale + 1e-15  # + 1e-15: V = 1 has a zero gradient, rounded to ~1e-17
            torch.testing.assert_close(x.double(), y.double(), rtol=rtol, atol=atol, equal_nan=True,
                                       msg=lambda m, msg=msg: f"{msg}\n{m}")  # fmt: skip


_ORACLE_CACHE: dict = {}


def oracle_results(op: OpInfo, name: str):
    """The oracle's (outputs, gradients) of sample ``name``: its CPU values, gradient inputs as
    float64 leaves; computed once for every device and backend (samples draw on the CPU)."""
    key = (op.name, name)
    if key not in _ORACLE_CACHE:
        kwargs = op.sample(name).make("cpu")
        cpu = {k: v.detach().double().requires_grad_() if k in grad_inputs(kwargs) else v for k, v in kwargs.items()}
        _ORACLE_CACHE[key] = run(op.oracle, cpu)
    return _ORACLE_CACHE[key]


class _NativeCalls(TorchDispatchMode):
    """Records every torch.ops.fastrl.* call (op overload, args, kwargs) made under it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "fastrl":
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)


def native_calls(op: OpInfo, kwargs):
    """The torch.ops.fastrl.* calls of ``op(**kwargs)``, forward and backward."""
    with _NativeCalls() as recorder:
        run(op.op, kwargs)
    return recorder.calls


# --------------------------------------------------------------------------- the checks


@requires_native
@pytest.mark.parametrize("op, device, backend, name", cases("reference", ["native"]), indirect=INDIRECT)
def test_native_matches_reference(op, device, backend, name):
    """The native kernels give the spec's outputs and gradients (bit for bit where the op promises it)."""
    info, sample = OPS_BY_NAME[op], OPS_BY_NAME[op].sample(name)
    kwargs = sample.make(device)
    got = run(info.op, kwargs)
    for key, x in got[0].items():
        assert x.device.type == device, (key, x.device)
    want = run(info.reference, kwargs)
    assert_results_match(got, want, info.reference_tol(sample.dtype), f"{op}[{name}] vs reference")


@pytest.mark.parametrize("op, device, backend, name", cases("oracle"), indirect=INDIRECT)
def test_matches_oracle(op, device, backend, name):
    """Every backend against the scalar-loop oracle, which shares no code with either."""
    info, sample = OPS_BY_NAME[op], OPS_BY_NAME[op].sample(name)
    got = run(info.op, sample.make(device))
    want = oracle_results(info, name)
    assert_results_match(got, want, info.oracle_tol(sample.dtype), f"{op}[{name}] vs oracle", same_dtype=False)


@pytest.mark.parametrize("op, device, backend, name", cases("backend"), indirect=INDIRECT)
def test_backend_decides_what_runs(op, device, backend, name):
    """``backend("native")`` runs the kernels, ``backend("torch")`` never calls one."""
    info = OPS_BY_NAME[op]
    calls = native_calls(info, info.sample(name).make(device))
    if backend == "native" and info.native:
        assert calls, f"{op} called no torch.ops.fastrl op on the native backend"
    else:
        assert not calls, [c[0] for c in calls]


@requires_native
def test_fastrl_backend_variable_forces_the_fallbacks():
    """``FASTRL_BACKEND=torch`` at import: no op calls a kernel (in a fresh process)."""
    script = (
        "from fastrl import _native\n"
        "from tests.ops.test_opinfo import OPS, native_calls\n"
        "assert _native.get_backend() == 'torch', _native.get_backend()\n"
        "for op in OPS:\n"
        "    assert not native_calls(op, op.samples[0].make('cpu')), op.name\n"
        "print('checked', len(OPS))\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, FASTRL_BACKEND="torch")
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"checked {len(OPS)}"


def _opcheck_args(info: OpInfo, func, args):
    """The recorded arguments, detached (their strides kept), as they reach the kernel; with
    ``requires_grad`` where the op's autograd formula gives a gradient."""
    names = [a.name for a in func._schema.arguments]
    differentiable = info.native_grad_args.get(func._schema.name.split("::")[1], ())
    out = []
    for arg_name, x in zip(names, args):
        if isinstance(x, torch.Tensor):
            x = x.detach().requires_grad_(arg_name in differentiable)
        out.append(x)
    return tuple(out)


@requires_native
@pytest.mark.parametrize("op, device, backend, name", cases("opcheck", ["native"]), indirect=INDIRECT)
def test_opcheck(op, device, backend, name):
    """torch.library.opcheck (schema, fake kernel, autograd registration, AOT dispatch) on the
    first call of every torch.ops.fastrl.* op the op calls for this sample, forward and backward."""
    info = OPS_BY_NAME[op]
    calls = native_calls(info, info.sample(name).make(device))
    assert calls
    first = {func: (args, kwargs) for func, args, kwargs in reversed(calls)}  # chunks repeat the same ops
    for func, (args, kwargs) in first.items():
        torch.library.opcheck(func, _opcheck_args(info, func, args), kwargs)
        if any(isinstance(x, torch.Tensor) and x.requires_grad for x in _opcheck_args(info, func, args)):
            torch.library.opcheck(func, tuple(x.detach() if isinstance(x, torch.Tensor) else x for x in args), kwargs)


def scripted(func):
    """A TorchScript function calling ``func`` (a torch.ops.fastrl overload), written from its schema."""
    schema = func._schema
    params = ", ".join(f"{a.name}: {a.type.annotation_str}" for a in schema.arguments)
    call = f"torch.ops.{schema.name.replace('::', '.')}({', '.join(a.name for a in schema.arguments)})"
    return torch.jit.CompilationUnit(f"def fn({params}):\n    return {call}\n").fn


@requires_native
@pytest.mark.skipif(not hasattr(torch.jit, "script"), reason="this torch has no TorchScript")
@pytest.mark.parametrize("op, device, backend, name", cases("opcheck", ["native"]), indirect=INDIRECT)
def test_torchscript(op, device, backend, name):
    """Every torch.ops.fastrl.* call of the op works from TorchScript, with the eager results."""
    info = OPS_BY_NAME[op]
    for func, args, _ in native_calls(info, info.sample(name).make(device)):
        args = tuple(x.detach() if isinstance(x, torch.Tensor) else x for x in args)
        got, want = scripted(func)(*args), func(*args)
        got, want = flatten(got), flatten(want)
        assert got.keys() == want.keys()
        for key in got:
            assert_same_bits(got[key].cpu(), want[key].cpu())


@pytest.mark.parametrize("op, device, backend, name", cases("compile"), indirect=INDIRECT)
def test_compile_fullgraph(op, device, backend, name):
    """torch.compile(fullgraph=True) traces the op (aot_eager: through the fake kernels and the
    autograd formulas) and gives the eager results."""
    info, sample = OPS_BY_NAME[op], OPS_BY_NAME[op].sample(name)
    torch._dynamo.reset()
    compiled = torch.compile(lambda **kw: info.op(**kw), fullgraph=True, backend="aot_eager")
    kwargs = sample.make(device)
    tol = info.reference_tol(sample.dtype)
    assert_results_match(run(compiled, kwargs), run(info.op, kwargs), tol, f"{op}[{name}] compiled vs eager")


@pytest.mark.parametrize("op, device, backend, name", cases("gradcheck"), indirect=INDIRECT)
def test_gradcheck(op, device, backend, name):
    """float64 gradcheck of every differentiable output with respect to every input that
    requires a gradient."""
    info = OPS_BY_NAME[op]
    kwargs = info.sample(name).make(device)
    inputs = grad_inputs(kwargs)
    assert inputs and all(x.dtype == torch.float64 for x in inputs.values())

    def fn(*xs):
        out = flatten(info.op(**dict(kwargs, **dict(zip(inputs, xs)))))
        return tuple(o for o in out.values() if o.requires_grad)

    leaves = tuple(x.detach().requires_grad_() for x in inputs.values())
    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("op, device, backend, name", cases("bad_input"), indirect=INDIRECT)
def test_bad_input(op, device, backend, name):
    """The documented exception, raised before any kernel runs, with a message naming the argument."""
    info = OPS_BY_NAME[op]
    bad = info.bad_input(name)
    kwargs = bad.make(device)
    with _NativeCalls() as recorder, pytest.raises(bad.error, match=bad.match) as raised:
        info.op(**kwargs)
    assert bad.arg in str(raised.value), f"the message does not name {bad.arg}: {raised.value}"
    assert not recorder.calls, "a kernel ran before the error"


def test_registry_is_consistent():
    """Sample and bad-input names are unique per op and every named check refers to a sample;
    every op of fastrl.ops is in the registry."""
    import fastrl.ops

    assert sorted(op.name for op in OPS) == sorted(n for n in fastrl.ops.__all__ if callable(getattr(fastrl.ops, n)))
    for op in OPS:
        names = [s.name for s in op.samples]
        assert len(names) == len(set(names)), op.name
        assert len({b.name for b in op.bad_inputs}) == len(op.bad_inputs), op.name
        for name in (*op.opcheck, *op.compile, *op.gradcheck):
            assert name in names, (op.name, name)
        assert not op.opcheck or op.native, op.name
