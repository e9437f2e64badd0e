"""Checkpoints written atomically and loaded safely.

Saving: a crash mid-save never leaves a truncated file behind, and the previous checkpoint stays
intact until the new one is complete. Loading never runs code from the file: ``torch.load`` with
``weights_only=True``, which rebuilds only tensors and plain containers (dict, list, tuple, str,
numbers, None) — everything fastrl saves. A file that needs anything else is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


class CheckpointError(ValueError):
    """A file that is not a checkpoint fastrl can load; the message names the file."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path."""


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """``write(f)`` into a temporary file beside ``path``, fsync, then rename it over ``path``.

    The temporary file (``.NAME.XXXXXXXX.tmp``) is created with mode 0o666 less the umask, like any
    other file the process writes (mkstemp would make it 0o600), and removed if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save ``state`` to ``path`` atomically (see :func:`write_atomically`)."""
    return write_atomically(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """The object saved at ``path`` (a file, or a directory holding ``checkpoint.pt``).

    Raises CheckpointError, with a one-line message naming the file, when it cannot be read, is
    not a torch checkpoint, or needs types beyond tensors and plain containers to load."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise MissingCheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about some pickle protocols: noise for a CLI
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it: {e.strerror or e}") from None
    except Exception as e:  # torch.load raises many types on a damaged file; all mean the same here
        raise CheckpointError(f"{path}: {_why_unloadable(e)}") from None


def _why_unloadable(e: Exception) -> str:
    text = str(e)
    refused = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if refused:
        return (f"refused: it needs {refused.group(1)}, which no fastrl checkpoint holds (fastrl loads "
                f"checkpoints with weights_only=True, so a file cannot run code; checkpoints of older "
                f"fastrl versions hold numpy arrays and cannot be loaded)")
    if "WeightsUnpickler error" in text or isinstance(e, EOFError) or "magic number" in text:
        return "not a torch checkpoint (empty, truncated or another kind of file)"
    if "zip archive" in text or "central directory" in text:
        return "not a complete torch checkpoint (truncated or corrupted zip archive)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"not a loadable torch checkpoint ({type(e).__name__}{': ' + first[:200] if first else ''})"
