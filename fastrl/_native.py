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


_C = None
load_error: str | None = None
try:
    _C = _load_extension()  # registers torch.ops.fastrl.*
except ImportError as exc:  # missing build, ABI mismatch with the installed torch, ...
    load_error = f"{type(exc).__name__}: {exc}"

build_info: dict = dict(_C.build_info()) if _C is not None else {}

_BACKENDS = ("auto", "native", "torch")
_backend = os.environ.get("FASTRL_BACKEND", "auto").strip().lower() or "auto"
if _backend not in _BACKENDS:
    raise ValueError(f"FASTRL_BACKEND must be one of {_BACKENDS}, got {_backend!r}")

if _C is None and _backend != "torch":
    warnings.warn(
        "fastrl: the compiled extension fastrl._C could not be loaded, so every op runs on its "
        f"(slower) PyTorch fallback. Reason: {load_error}. Rebuild it against this torch with "
        "`pip install --no-build-isolation .`; `python -m fastrl info` shows details.",
        RuntimeWarning,
        stacklevel=2,
    )


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
