"""Build-time metadata of the fastrl wheel (a scikit-build-core metadata provider, named in
pyproject.toml): its dependencies, with torch pinned to the exact release the extension is being
compiled against, since torch's C++ ABI changes between releases (and between its CPU and CUDA
builds). It runs before CMake, so it is also where a build in pip's isolated environment stops:
that environment has no torch of the user's (pyproject.toml lists none to install there), and a
build against any other torch would make an extension that cannot load.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NO_ISOLATION = (
    "fastrl must be built against the torch it will run with, so it cannot be built in pip's "
    "isolated build environment ({where}). Install torch, pybind11 and scikit-build-core first, "
    "then build with\n    pip install --no-build-isolation .\n(or `pip install --no-build-isolation -e .`)"
)

# Directories pip (pip-build-env-*) and pypa/build (build-env-*) create for an isolated build.
_ISOLATED_PREFIXES = ("pip-build-env-", "build-env-")


def isolated_build_env() -> str | None:
    """The isolated build environment this interpreter runs in (a path), or None."""
    paths = [sys.prefix, *sys.path, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    for path in filter(None, paths):
        if any(part.startswith(_ISOLATED_PREFIXES) for part in Path(path).parts):
            return path
    return None


def dynamic_metadata(field: str, settings: dict) -> list[str]:
    """``dependencies``: ``settings["requires"]`` plus ``torch==<the torch being built against>``."""
    if field != "dependencies":
        raise ValueError(f"tools/torch_pin.py provides only 'dependencies', not {field!r}")
    where = isolated_build_env()
    if where is not None:
        raise SystemExit(NO_ISOLATION.format(where=where))
    try:
        import torch
    except ImportError as exc:
        raise SystemExit(NO_ISOLATION.format(where=f"torch is not importable: {exc}")) from exc
    return [f"torch=={torch.__version__}", *settings.get("requires", [])]
