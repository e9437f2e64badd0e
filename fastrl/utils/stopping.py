"""Stopping a run cleanly when asked to: job schedulers (Slurm, Kubernetes, torchrun's agent)
send SIGTERM some time before they kill a job, and the run should leave a checkpoint it can
resume from, not the last periodic one.

A signal only records the request (a handler must not run collectives or write files); the
training loop ends at the next step boundary, where every rank agrees (:func:`agreed`), and
saves as it does at the end. Used by ``fastrl train`` and ``fastrl rlhf train``.
"""

from __future__ import annotations

import signal
import threading

import torch

from fastrl import distributed

# 128 + SIGTERM: the exit status of a process that SIGTERM ended, which schedulers expect.
EXIT_SIGTERM = 128 + signal.SIGTERM


class StopRequest:
    """A flag that ``request()`` sets, and, as a context manager, SIGTERM too (its handler is put
    back on exit; outside the main thread, where Python takes no handler, only ``request()``).
    The loop that ends on it calls ``honour()``: the request is cleared (training may go on with
    another call) and ``stopped`` tells the caller why the loop ended."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped = False
        self._previous = None

    def request(self, *_signal_args) -> None:
        self.requested = True

    def honour(self) -> None:
        self.requested, self.stopped = False, True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self.request)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def agreed(requested: bool, device: torch.device | str = "cpu") -> bool:
    """Whether any rank has a stop request (the same answer on every rank, which every rank must
    ask at the same step: the signal reaches the ranks at different times)."""
    if not distributed.current().distributed:
        return requested
    (count,) = distributed.global_sum(torch.tensor(float(requested), device=device))
    return bool(count.item() > 0)
