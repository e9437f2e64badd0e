"""Run a function on every rank of a small gloo job, as torchrun would start it.

Each rank gets the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT),
so the code under test joins the group through ``fastrl.distributed.init`` itself. The job is
bounded by a timeout: a rank that hangs in a collective fails the test instead of the suite."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, fn, world_size, port, out_dir, kwargs, leave_together):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    try:
        result = fn(rank, **kwargs)
    except BaseException:
        Path(out_dir, f"{rank}.err").write_text(traceback.format_exc())
        raise
    torch.save(result, Path(out_dir, f"{rank}.pt"))
    import torch.distributed as dist

    if dist.is_initialized():
        # Leave together: a rank tearing down gloo while its peer still holds the connection can
        # abort the peer at exit ("terminate called without an active exception", seen in CI).
        if leave_together:
            dist.barrier()
        dist.destroy_process_group()
    # The result is saved: skip interpreter finalization, where gloo's threads releasing tensors
    # could still abort the rank (pytorch#179291; seen in CI after the barrier above was added).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(fn, world_size: int = 2, timeout: float = 120, leave_together: bool = True, **kwargs) -> list:
    """``fn(rank, **kwargs)`` on each of ``world_size`` processes; their return values by rank.
    ``leave_together``: a barrier before leaving the group (False for jobs whose ranks part on purpose)."""
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(_rank_main, args=(fn, world_size, _free_port(), out_dir, kwargs, leave_together),
                                 nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {world_size}-process job did not finish in {timeout} s")
        except mp.ProcessRaisedException as e:
            errors = sorted(Path(out_dir).glob("*.err"))
            raise AssertionError("\n".join(p.read_text() for p in errors) or str(e)) from None
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
        return [torch.load(Path(out_dir, f"{r}.pt"), weights_only=False) for r in range(world_size)]
