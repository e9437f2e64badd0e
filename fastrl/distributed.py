"""Many processes, one algorithm: the torch.distributed pieces fastrl's trainers scale out with.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous),
:func:`init` joins the process group: NCCL when the trainer runs on CUDA (one GPU per local rank),
gloo on the CPU. Without torchrun every function here is the single-process identity, so code
written against it runs unchanged on one process.

What a trainer keeps global (docs/distributed.md): configs count the whole job (``num_envs`` is
the total, split by :func:`shard`), statistics are reduced over every rank (:func:`global_sum`,
:func:`global_moments`), gradients are averaged (:func:`average_gradients`), and rank 0 alone
writes files (:attr:`World.is_main`).
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# A rank that died leaves the others waiting in a collective: this bounds the wait, so the job
# fails with the error instead of hanging (torchrun then stops every rank).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size``, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, checkpoints, plots and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a job of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), known before :func:`init`."""
    return int(os.environ.get("RANK", "0"))


def current() -> World:
    """The job this process belongs to (a single-process World when no group was joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str | torch.device = "cpu", timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> World:
    """Join the process group torchrun describes, once; a single-process World without torchrun.

    ``device``: where this rank trains. ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (see
    :func:`rank_device`) and selects NCCL; anything else uses gloo."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return World()
    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return current()


def rank_device(device: str | torch.device) -> torch.device:
    """``cuda`` without an index means this rank's GPU, ``cuda:LOCAL_RANK``; other devices pass."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown(together: bool = False) -> None:
    """Leave the process group (at the end of a run, so that torchrun sees a clean exit).

    ``together`` (a run that ended well on every rank): first wait for every rank, and free what
    still holds gloo's buffers while the interpreter is whole. A rank tearing gloo down while its
    peer still used the connection, or gloo's threads releasing tensors during interpreter
    finalization, aborted a rank at exit ("terminate called without an active exception",
    pytorch#179291). Not after an error: the other ranks may never reach the barrier."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
            gc.collect()
        dist.destroy_process_group()


def shard(total: int, world: World | None = None, name: str = "num_envs") -> range:
    """The slice of ``total`` items (envs, samples) this rank owns: ``[r·n/W, (r+1)·n/W)``.

    ``total`` must divide evenly, so every rank does the same work and the set of items, each
    known by its global index, does not depend on the world size."""
    world = world or current()
    if total % world.size:
        raise ValueError(f"{name} = {total} must be a multiple of the number of processes ({world.size}), "
                         f"so that every process owns the same number")
    per_rank = total // world.size
    return range(world.rank * per_rank, (world.rank + 1) * per_rank)


def global_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor summed over every rank, in one all-reduce (returned as new tensors)."""
    if not current().distributed:
        return tuple(t.clone() for t in tensors)
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()
    return tuple(out)


def global_moments(x: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, (population) variance and count of ``x``'s elements (where ``mask``) over every rank.

    Reduced as sums of x and x² and the count, in float64, so that ranks holding different numbers
    of elements weigh them as one batch would. Mean and variance are NaN when the count is 0."""
    x = x.detach().to(torch.float64)
    if mask is not None:
        if mask.shape != x.shape:
            raise ValueError(f"mask must have x's shape {tuple(x.shape)}, got {tuple(mask.shape)}")
        x = x[mask]
    count = torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)
    total, squares, count = global_sum(x.sum(), (x * x).sum(), count)
    mean = total / count
    return mean, (squares / count - mean * mean).clamp_min(0), count


def average_gradients(parameters) -> None:
    """Replace each gradient by its mean over the ranks (one flat all-reduce), as DDP would.

    With every rank's loss a mean over an equal share of the batch, the result is the gradient of
    the whole batch's mean loss. Parameters without a gradient are skipped on every rank alike."""
    world = current()
    if not world.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    start = 0
    for g in grads:
        g.copy_(flat[start:start + g.numel()].view_as(g))
        start += g.numel()


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) as a list on rank 0, by rank; None on the other ranks."""
    world = current()
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a decision rank 0 took, e.g. to stop early)."""
    if not current().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank, in place (a no-op on one
    process): stages that every rank runs alike end with equal weights even where a GPU kernel is
    not bit-for-bit deterministic."""
    if not current().distributed:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def all_gather_cat(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``x`` (one shape on every rank) concatenated along ``dim`` in rank order: the
    whole batch, when each rank holds a shard of it (``x`` itself on one process)."""
    world = current()
    if not world.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` with the mean and population variance of the valid entries
    of every rank's ``x`` (``mask`` True; 0 at the others): advantage normalization over a batch
    split across ranks. On one process exactly :func:`fastrl.utils.stats.whiten`."""
    from fastrl.utils.stats import whiten as local_whiten

    if not current().distributed:
        return local_whiten(x, mask, eps)
    x64 = x.detach().to(torch.float64)
    valid = torch.ones_like(x64, dtype=torch.bool) if mask is None else mask.bool()
    total, count = global_sum(torch.where(valid, x64, 0).sum(), valid.sum().to(torch.float64))
    mean = total / count.clamp(min=1)
    (squares,) = global_sum(torch.where(valid, (x64 - mean) ** 2, 0).sum())
    var = squares / count.clamp(min=1)
    out = ((x64 - mean) * torch.rsqrt(var + eps)).to(x.dtype)
    return out if mask is None else torch.where(valid, out, 0)
