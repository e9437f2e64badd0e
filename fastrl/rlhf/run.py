"""RLHF runs that log and resume like the classic trainers (``fastrl.algos``).

``train_run(trainer, prompts, steps, out_dir)`` trains a :class:`GRPOTrainer` or
:class:`PPOTrainer` (or, with ``prompts=None``, a :class:`DPOTrainer` on its pairs) for ``steps``
steps and writes to ``out_dir``:

  metrics.csv, tb/    each step's metrics (``fastrl.utils.logging.RunLogger``: the classic trainers'
                      CSV, TensorBoard tags and progress bar)
  learning_curve.png  score, KL and losses against the step
  checkpoint.pt       every ``checkpoint_every`` steps and at the end, atomically: the config, the
                      step, the trainer's ``checkpointed()`` objects (policy, critic, optimizers, KL
                      controller), its generators (sampling, and prompts and minibatch order: the
                      data position) and the global RNGs (Python, NumPy, torch; seeded with the
                      config's seed when the run starts)
  reference.pt        the frozen reference's weights, once, when the run starts
  policy/, critic/    ``save_pretrained`` of a ``transformers`` policy (with its tokenizer) and
                      critic at the end

``resume=True`` continues the run in ``out_dir`` exactly where its checkpoint left it: the trainer,
built as for the first run (:func:`run_config` gives the saved config), takes the checkpoint's
state, and rows logged after the checkpoint are dropped from metrics.csv.

Under torchrun rank 0 alone writes; every rank trains. The checkpoint holds every rank's sampling
generator and global RNGs (gathered to rank 0, with the world size), so a run resumes exactly on
as many processes as wrote it; another number is refused (CheckpointError naming both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from numbers import Integral
from pathlib import Path
from typing import Any

import torch

from fastrl import distributed
from fastrl.algos.common import TrainingDiverged
from fastrl.rlhf.rollout import check_iterations, prompt_batches, step_on
from fastrl.rlhf.sharding import full_state_dict, load_full_state_dict
from fastrl.utils import stopping
from fastrl.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    write_atomically,
)
from fastrl.utils.logging import RunLogger
from fastrl.utils.rundir import RunLock, check_new_run, clear_run, remove_orphan_temp_files
from fastrl.utils.seeding import rng_state, seed_everything, set_rng_state
from fastrl.utils.stopping import StopRequest

__all__ = ["train_run", "run_config", "save_run", "load_run"]

CHECKPOINT_FORMAT = 1
# columns plotted in learning_curve.png, when the run logs them
_PLOTTED = ("score", "kl", "loss", "value_loss", "margin", "accuracy")


def train_run(trainer, prompts, steps: int, out_dir: str | Path, *, checkpoint_every: int = 0,
              resume: bool = False, overwrite: bool = False, progress: bool = False,
              on_step=None, stop: StopRequest | None = None) -> list[dict[str, float]]:  # fmt: skip
    """Train ``trainer`` until ``steps`` steps on batches drawn from ``prompts`` (any kind
    ``fastrl.rlhf.data.prompt_source`` takes; None for a DPOTrainer, which has its pairs), logging and checkpointing to
    ``out_dir`` (see the module's docstring).

    ``resume``: continue the run in ``out_dir`` from its checkpoint (the trainer must be built with
    the run's config). Otherwise ``out_dir`` must not hold a run unless ``overwrite``.
    ``on_step(iteration, metrics, generation)`` after each step (iteration counts from 0).
    ``stop``: a StopRequest (``fastrl rlhf train`` sets it on SIGTERM); once requested, on any rank,
    training ends after the step, saving as at the end, and ``stop.stopped`` is set.
    Ctrl-C saves the checkpoint and the plot, then propagates (one that comes mid-step saves the
    partly updated policy: the resumed run is then not an exact continuation). A logged metric
    that is NaN or Inf raises TrainingDiverged; it and any other error leave the last checkpoint
    in place. Returns the rows this call logged."""
    check_iterations(steps, "steps")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, Integral) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    out_dir = Path(out_dir)
    if getattr(trainer, "takes_prompts", True):
        if prompts is None:
            raise ValueError(f"prompts: {type(trainer).__name__} needs prompts to sample responses to")
        draw, more = prompt_batches(trainer, prompts, trainer.batch_size)  # bad prompts fail before any file
        take_step = lambda: step_on(trainer, draw(), more)  # noqa: E731
    else:  # DPO: its pairs are its data
        if prompts is not None:
            raise ValueError(f"prompts: {type(trainer).__name__} trains on its own pairs; pass None")
        take_step = lambda: (trainer.step(), None)  # noqa: E731
    rows = []
    main = getattr(trainer, "world", distributed.current()).is_main  # the one rank that writes
    with RunLock(out_dir) if main else contextlib.nullcontext():
        if resume:
            step = load_run(trainer, out_dir)
            saved = step
        else:
            if main:
                check_new_run(out_dir, overwrite, check_lock=False)
                if overwrite:
                    clear_run(out_dir)
            step, saved = 0, None
            seed_everything(trainer.cfg.seed)  # as the classic trainers: reward functions may draw from them
            # the reference never changes: its weights once, not in every checkpoint (gathered by every
            # rank when sharded)
            reference = full_state_dict(trainer.reference)
            if main:
                save_checkpoint({"format": CHECKPOINT_FORMAT, "reference": reference}, out_dir / "reference.pt")
        if main:
            remove_orphan_temp_files(out_dir)
        logger = RunLogger(out_dir, steps, start_step=step, resume=resume, progress=progress) if main else None
        try:
            while step < steps:
                metrics, gen = take_step()
                step += 1
                row = {k: float(v) for k, v in metrics.items()}
                if main:
                    logger.log(step, **row)
                rows.append(row)
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:  # nothing saved from here on: the last checkpoint is the last good state
                    kept = ("no checkpoint was written" if saved is None else
                            f"the last good checkpoint, {out_dir / 'checkpoint.pt'} (step {saved}), is left in place")
                    raise TrainingDiverged(f"training diverged at step {step}: "
                                           f"{', '.join(f'{k} = {row[k]}' for k in bad)}; {kept}")
                if checkpoint_every and step % checkpoint_every == 0 and step < steps:
                    save_run(trainer, out_dir, step)  # every rank: it gathers their generators (and sharded models)
                    saved = step
                if on_step is not None:
                    on_step(step - 1, metrics, gen)
                # every rank asks at every step (one all-reduce of a flag: a step is long)
                if stop is not None and step < steps and stopping.agreed(stop.requested, trainer.device):
                    stop.honour()
                    break
        except KeyboardInterrupt:
            # keep what was trained (every rank: the write gathers); sharded models would need every
            # rank inside the same collectives, which may be elsewhere
            if not getattr(trainer, "sharded", False):
                _write_results(trainer, out_dir, step)
            raise
        finally:
            if main:
                logger.close()
        _write_results(trainer, out_dir, step)
    return rows


def run_config(out_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """``(trainer class name, config fields)`` of the run in ``out_dir`` (a run directory or its
    checkpoint file): what a resumed run's trainer is built with."""
    state, _ = _load(out_dir)
    return state["algo"], dict(state["config"])


def save_run(trainer, out_dir: str | Path, step: int) -> Path:
    """Write ``out_dir/checkpoint.pt`` atomically: the trainer's whole state at ``step``. Under
    torchrun every rank calls it: sharded models are gathered, and rank 0 writes its state plus every
    rank's generators and global RNGs (``shards``, by rank) and ``world_size``; every rank returns
    once the file is written."""
    world = distributed.current()
    mine = {"generators": {k: g.get_state() for k, g in _generators(trainer).items()}, "rng": rng_state()}
    shards = distributed.gather_objects(mine)
    modules = {k: v.state_dict() for k, v in trainer.checkpointed().items()}  # sharded: a collective
    if not world.is_main:
        return distributed.broadcast_object(None)
    state = {
        "format": CHECKPOINT_FORMAT,
        "algo": type(trainer).__name__,
        "config": dataclasses.asdict(trainer.cfg),
        "step": step,
        "modules": modules,
        **mine,
        "world_size": world.size,
    }
    if world.distributed:
        state["shards"] = shards
    return distributed.broadcast_object(save_checkpoint(state, Path(out_dir) / "checkpoint.pt"))


def load_run(trainer, out_dir: str | Path) -> int:
    """Restore the checkpoint (and reference) of the run in ``out_dir`` into ``trainer``; returns
    its step. CheckpointError, naming the file, when it is not such a run's or does not fit."""
    state, path = _load(out_dir)
    algo = type(trainer).__name__
    if state["algo"] != algo:
        raise CheckpointError(f"{path} holds a {state['algo']} run, not a {algo} one")
    config = dataclasses.asdict(trainer.cfg)
    differ = sorted(k for k in config.keys() | state["config"].keys() if config.get(k) != state["config"].get(k))
    if differ:
        raise CheckpointError(f"{path}: the trainer's config differs from the run's in {', '.join(differ)}; "
                              f"build it with the run's config (fastrl.rlhf.run.run_config)")
    world = distributed.current()
    saved_world = state.get("world_size", 1)
    if saved_world != world.size:
        raise CheckpointError(f"{path} was written by {saved_world} process(es), this job has {world.size}: an RLHF "
                              f"run resumes on as many processes as wrote it (each holds its own sampling generator)")
    mine = state["shards"][world.rank] if world.distributed else state
    reference = load_checkpoint(path.parent / "reference.pt")
    try:
        for name, obj in trainer.checkpointed().items():
            obj.load_state_dict(state["modules"][name])
        load_full_state_dict(trainer.reference, reference["reference"])
        for name, g in _generators(trainer).items():
            g.set_state(mine["generators"][name])
        set_rng_state(mine["rng"])
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path} does not fit this {algo}: {str(e).strip().splitlines()[0][:300]}") from None
    return state["step"]


def _generators(trainer) -> dict[str, torch.Generator]:
    """The trainer's own generators: sampling, and data (prompts, minibatch and batch order)."""
    named = {"sampling": getattr(trainer, "generator", None), "data": trainer.cpu_generator}
    return {k: g for k, g in named.items() if g is not None}


def _load(out_dir: str | Path) -> tuple[dict, Path]:
    path = Path(out_dir)
    path = path / "checkpoint.pt" if path.is_dir() else path
    state = load_checkpoint(path)
    missing = [k for k in ("format", "algo", "config", "step", "modules", "generators", "rng")
               if not isinstance(state, dict) or k not in state]  # fmt: skip
    if missing:
        raise CheckpointError(f"{path} is not an RLHF run's checkpoint: it has no {', '.join(missing)}")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']!r}; "
                              f"this fastrl reads {CHECKPOINT_FORMAT}")
    return state, path


def _write_results(trainer, out_dir: Path, step: int) -> None:
    """The final checkpoint, the plot, and ``save_pretrained`` of ``transformers`` models. Every
    rank calls it (generators and sharded models are gathered); rank 0 alone writes."""
    save_run(trainer, out_dir, step)
    main = distributed.current().is_main
    if main:
        _plot(out_dir / "metrics.csv", out_dir / "learning_curve.png", type(trainer).__name__)
    for name in ("policy", "critic"):
        model = getattr(trainer, name, None)
        if not hasattr(getattr(model, "hf", None), "save_pretrained"):
            continue
        # the wrapper's state without its "hf." prefix: the transformers model's own, whole
        state = {k.removeprefix("hf."): v for k, v in full_state_dict(model).items()}
        if main:
            model.hf.save_pretrained(out_dir / name, state_dict=state)
        tokenizer = getattr(trainer.tokenizer, "hf", None)
        if main and name == "policy" and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(out_dir / "policy")  # from_pretrained("policy") then finds both


def _plot(metrics_csv: Path, out_png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    from fastrl.utils.plots import read_metrics

    m = read_metrics(metrics_csv)
    columns = [c for c in _PLOTTED if c in m]
    fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(3.5 * max(len(columns), 1), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        ax.plot(m["step"], m[column])
        ax.set_xlabel("step")
        ax.set_title(column)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_atomically(out_png, lambda f: f.write(png.getvalue()))
