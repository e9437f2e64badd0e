"""Keeping freed memory in the process while training on the CPU.

glibc's malloc serves blocks above its mmap threshold (128 KiB, raised as such blocks are freed)
with fresh pages from the kernel and returns them when they are freed, and gives back the top of
the heap once more than its trim threshold is free there. A PPO minibatch of 1024 MinAtar images
allocates and frees activations and gradients of 4 MiB each, so an iteration paged up to 500 MiB
in anew (120k page faults, a sixth of its CPU time spent in the kernel; 40k in a CLI run). With
both thresholds raised, freed blocks are reused and those faults disappear (the process keeps its
peak heap, which a training run reaches anyway).

Opt out with ``FASTRL_KEEP_FREED_MEMORY=0``. Other allocators and C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD = 512 * 2**20

_applied: bool | None = None  # None: not tried yet


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process; process-wide). Whether they are
    raised: False on another C library, or with ``FASTRL_KEEP_FREED_MEMORY=0``."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("FASTRL_KEEP_FREED_MEMORY", "1").strip() != "0" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            mallopt = getattr(libc, "mallopt", None)
            if mallopt is not None:  # returns 1 on success
                _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
