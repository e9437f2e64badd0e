"""Loads the compiled extension once and decides, per device, whether ops run natively.

Everything here is resolved at import time so that op wrappers stay traceable by
``torch.compile`` (no environment reads or pybind calls on the hot path).
"""

from __future__ import annotations

import os
import warnings

import torch


def _load_extension():
    """``fastrl._C``, or the build named by ``FASTRL_EXTENSION`` (a path to a ``_C*.so``: how
    ``make test-sanitize`` runs the suite on its AddressSanitizer build)."""
    path = os.environ.get("FASTRL_EXTENSION")
    if not path:
        from fastrl import _C

        return _C
    import importlib.util
    import sys

    if not os.path.isfile(path):
        raise ImportError(f"FASTRL_EXTENSION={path!r} is not a file")
    spec = importlib.util.spec_from_file_location("fastrl._C", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastrl._C"] = module
    spec.loader.exec_module(module)
    return module


def torch_mismatch(built: str | None, running: str) -> str | None:
    """Why an extension built against torch ``built`` must not run under torch ``running``, or
    None when they are the same release. torch's C++ ABI changes between releases (and between
    its CPU and CUDA builds), so anything but the exact version may crash or compute wrongly."""
    if built == running:
        return None
    return f"fastrl._C was built against torch {built} but torch {running} is running"


_C = None
load_error: str | None = None
build_info: dict = {}
try:
    _C = _load_extension()  # registers torch.ops.fastrl.*
except ImportError as exc:  # missing build, ABI mismatch with the installed torch, ...
    load_error = f"{type(exc).__name__}: {exc}"
else:
    build_info = dict(_C.build_info())
    load_error = torch_mismatch(build_info.get("torch_version"), str(torch.__version__))
    if load_error is not None:  # its ops stay registered, but no op wrapper will call them
        _C = None

TORCH_VERSION = str(torch.__version__)
"""The torch running now; ``build_info["torch_version"]`` is the one ``_C`` was built against."""

_BACKENDS = ("auto", "native", "torch")
_backend = os.environ.get("FASTRL_BACKEND", "auto").strip().lower() or "auto"
if _backend not in _BACKENDS:
    raise ValueError(f"FASTRL_BACKEND must be one of {_BACKENDS}, got {_backend!r}")

if _C is None and _backend != "torch":
    warnings.warn(
        "fastrl: the compiled extension fastrl._C could not be used, so every op runs on its "
        f"(slower) PyTorch fallback. Reason: {load_error}. Rebuild it against this torch with "
        "`pip install --no-build-isolation .`; `python -m fastrl info` shows details.",
        RuntimeWarning,
        stacklevel=2,
    )


def register_op(name: str, *, fake, backward=None, setup_context=None) -> None:
    """Registers the fake kernel of ``torch.ops.fastrl.<name>`` (output shapes, for
    torch.compile and opcheck) and, given ``backward``, its autograd formula, and the same for
    its twin ``<name>_tensor_hyper`` when it has one; does nothing when the extension is not in
    use. Called once per op, at the import of its module."""
    if _C is None:
        return
    schema = getattr(torch.ops.fastrl, name).default._schema
    hypers = tuple(i for i, a in enumerate(schema.arguments) if str(a.type) in ("float", "Optional[float]"))
    _HYPER_ARGS[name] = hypers
    for qualname in [f"fastrl::{name}"] + ([f"fastrl::{name}_tensor_hyper"] if hypers else []):
        torch.library.register_fake(qualname)(fake)
        if backward is not None:
            torch.library.register_autograd(qualname, backward, setup_context=setup_context)


_HYPER_ARGS: dict[str, tuple[int, ...]] = {}  # op name -> positions of its float arguments


def call(name: str, *args):
    """``torch.ops.fastrl.<name>(*args)``, the way torch.compile can trace with no recompile per
    value of a float argument: in eager code the op itself (floats); under torch.compile (or when
    a float argument already is a tensor, as in a traced backward) its twin
    ``<name>_tensor_hyper``, each float passed as a 0-dim float64 CPU tensor computed from it
    (csrc/ops/hyper.h says why). ``torch.tensor(x)`` would pin a symbolic x to its value;
    arithmetic keeps it symbolic."""
    positions = _HYPER_ARGS[name]
    if not (torch.compiler.is_compiling() or any(isinstance(args[i], torch.Tensor) for i in positions)):
        return getattr(torch.ops.fastrl, name)(*args)
    as_tensor = lambda x: x if x is None or isinstance(x, torch.Tensor) else torch.ones((), dtype=torch.float64) * x
    args = [as_tensor(a) if i in positions else a for i, a in enumerate(args)]
    return getattr(torch.ops.fastrl, f"{name}_tensor_hyper")(*args)


def set_backend(name: str) -> None:
    """Choose how ops run: "auto" (native where compiled for the device), "native" (error if
    not compiled) or "torch" (always the PyTorch fallbacks). ``FASTRL_BACKEND`` sets the default."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "native" and _C is None:
        raise RuntimeError(f"fastrl: native backend requested but fastrl._C is missing: {load_error}")
    _backend = name
    _decisions.clear()


def get_backend() -> str:
    return _backend


# Device types with compiled kernels (decided once: the extension cannot change after import).
_COMPILED_FOR = frozenset(
    (["cpu"] if _C is not None else []) + (["cuda"] if build_info.get("cuda") else [])
)


def native_compiled_for(device: torch.device) -> bool:
    """Whether the extension has kernels for this device type."""
    return device.type in _COMPILED_FOR


def use_native(device: torch.device) -> bool:
    """The decision every op wrapper makes before dispatching; once per env step, so it is cached
    per device (hashing a torch.device is 4x cheaper than reading its .type)."""
    decision = _decisions.get(device)
    if decision is None:
        decision = _decide(device)
        _decisions[device] = decision
    return decision


_decisions: dict[torch.device, bool] = {}  # emptied by set_backend


def _decide(device: torch.device) -> bool:
    if _backend == "torch":
        return False
    if device.type in _COMPILED_FOR:
        return True
    if _backend == "native":
        raise RuntimeError(f"fastrl: native backend requested but no kernels are compiled for {device}")
    return False
