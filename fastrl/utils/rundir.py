"""Run directories: a run never destroys another run's files.

A directory holds a run once fastrl has written one of ``RUN_FILES`` there. A new run refuses
such a directory unless told to overwrite it, and while a run writes it holds an exclusive lock:
``flock`` on ``.fastrl.lock``, which the kernel releases when the process ends, so a crashed run
never leaves a stale lock behind. (Without ``fcntl``, on Windows, runs are not locked.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# training.png: the RLHF demo; reference.pt: an RLHF run's frozen reference (fastrl/rlhf/run.py)
RUN_FILES = ("checkpoint.pt", "metrics.csv", "learning_curve.png", "training.png", "reference.pt")
LOCK_FILE = ".fastrl.lock"


class RunDirError(RuntimeError):
    """A run directory that cannot be used: it holds another run, or another run is writing to it."""


def run_files(out_dir: Path) -> list[str]:
    """The run files present in ``out_dir``."""
    return [name for name in RUN_FILES if (Path(out_dir) / name).exists()]


def check_new_run(out_dir: str | os.PathLike, overwrite: bool = False, check_lock: bool = True) -> None:
    """Raise RunDirError if a new run may not write to ``out_dir`` (``check_lock=False`` when the
    caller holds the lock)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir} is not a directory")
    if check_lock:
        check_not_locked(out_dir)
    found = run_files(out_dir)
    if found and not overwrite:
        raise RunDirError(f"{out_dir} already holds a run ({', '.join(found)}): continue it with "
                          f"--resume {out_dir} (Trainer.from_checkpoint), or replace it with --overwrite "
                          f"(overwrite=True), or choose another --out")


def clear_run(out_dir: Path) -> None:
    """Delete the files of the run in ``out_dir`` (its TensorBoard events included); call under the lock."""
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    tb = out_dir / "tb"
    if tb.is_dir():
        for events in tb.glob("events.out.tfevents.*"):
            events.unlink()


def remove_orphan_temp_files(out_dir: Path) -> list[Path]:
    """Delete the temporary files of saves that were interrupted (``.NAME.*.tmp``, see
    ``fastrl.utils.checkpoint.write_atomically``); call under the lock."""
    orphans = [p for name in RUN_FILES for p in Path(out_dir).glob(f".{name}.*.tmp")]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans


def copy_run_log(source_dir: Path, out_dir: Path) -> None:
    """Start ``out_dir``'s metrics.csv as a copy of ``source_dir``'s (a run resumed into another
    directory carries its history; the source run is left as it was)."""
    source = Path(source_dir) / "metrics.csv"
    if source.is_file():
        shutil.copyfile(source, Path(out_dir) / "metrics.csv")


class RunLock:
    """``with RunLock(out_dir):`` holds the run directory's lock (creating the directory), or raises
    RunDirError at once if another process holds it."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            os.close(fd)
            raise RunDirError(_busy_message(self.out_dir))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for the message above
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def check_not_locked(out_dir: Path) -> None:
    """Raise RunDirError if a run is writing to ``out_dir`` now (creates nothing)."""
    try:
        fd = os.open(Path(out_dir) / LOCK_FILE, os.O_RDWR)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if not _try_lock(fd):
            raise RunDirError(_busy_message(out_dir))
    finally:
        os.close(fd)  # also releases the lock just taken


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _busy_message(out_dir: Path) -> str:
    try:
        pid = (Path(out_dir) / LOCK_FILE).read_text().strip()
    except OSError:
        pid = ""
    holder = f"process {pid}" if pid.isdigit() else "another process"
    return f"another fastrl run ({holder}) is writing to {out_dir}: wait for it to finish, or choose another --out"
