"""One place where a run reports: a CSV file, TensorBoard scalars and a progress bar."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from fastrl.utils.checkpoint import write_atomically
from fastrl.utils.rundir import RunDirError

# Quantities of the update, which CleanRL and SB3 users find under "losses/" in TensorBoard;
# everything else (returns, lengths, schedules, speed) goes under "charts/".
_UPDATE_METRICS = frozenset({"entropy", "approx_kl", "clip_fraction", "explained_variance", "q_values",
                             "valid_fraction"})  # fmt: skip


def tensorboard_tag(name: str) -> str:
    """The TensorBoard tag of a metrics.csv column: ``losses/<name>`` for losses and update
    diagnostics, ``charts/<name>`` for the rest (episodic_return, learning_rate, SPS, ...)."""
    group = "losses" if name.endswith("_loss") or name in _UPDATE_METRICS else "charts"
    return f"{group}/{name}"


class RunLogger:
    """Writes ``out_dir/metrics.csv`` (columns ``step, wall_time, episodic_return,
    episodic_length`` and whatever else is logged; a value that is missing or NaN is an empty
    cell, the one way), TensorBoard scalars under ``out_dir/tb`` when tensorboard is installed
    (tagged as CleanRL does: :func:`tensorboard_tag`, plus ``charts/SPS``), and a tqdm bar with
    steps/s and the recent return.

    ``columns``: the first columns, in order (default ``BASE``; a run without episodes, such as
    the RLHF demo, passes ``("step", "wall_time")``).

    ``resume=True`` appends to an existing CSV and continues the wall clock from its last row.
    Rewrites of the file (its header, a new column, rows dropped on resume) are atomic.
    """

    BASE = ("step", "wall_time", "episodic_return", "episodic_length")

    def __init__(self, out_dir: str | Path, total_steps: int, *, start_step: int = 0,
                 resume: bool = False, progress: bool = True, tensorboard: bool = True,
                 columns: tuple[str, ...] = BASE):
        self.base = columns
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        self._fields: list[str] | None = None
        self._time_offset = 0.0
        if resume and self.csv_path.exists():
            self._fields, rows = read_rows_until(self.csv_path, start_step)
            if rows:
                self._time_offset = float(rows[-1]["wall_time"])
            self._rewrite(rows)  # drop rows logged after the checkpoint we resume from
        elif self.csv_path.exists():
            self.csv_path.unlink()
        self._start = time.perf_counter()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_step if resume else None)
            except ImportError:
                pass
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", unit_scale=True,
                         disable=not progress, dynamic_ncols=True)
        self._last_step = start_step
        self._last_wall_time = self._time_offset
        self.recent_return = math.nan

    @property
    def wall_time(self) -> float:
        return self._time_offset + time.perf_counter() - self._start

    def log(self, step: int, **scalars: float) -> None:
        """Record one row. Values must already be Python numbers (read back by the caller)."""
        wall_time = self.wall_time
        row = {"step": step, "wall_time": round(wall_time, 4),
               **{k: "" if v != v else v for k, v in scalars.items()}}  # NaN: an empty cell, as a missing value
        if self._fields is None:  # first row of a new file: the header
            self._fields = list(self.base) + [k for k in scalars if k not in self.base]
            self._rewrite([])
        new = [k for k in row if k not in self._fields]
        if new:  # a metric that first appears later: widen the file once
            self._fields += new
            with open(self.csv_path, newline="") as f:
                old = list(csv.DictReader(f))
            self._rewrite(old)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, self._fields).writerow(row)
        if self._writer is not None:
            values = {tensorboard_tag(k): v for k, v in scalars.items() if v == v}  # skip NaN
            if wall_time > self._last_wall_time:
                values["charts/SPS"] = (step - self._last_step) / (wall_time - self._last_wall_time)
            self._write_scalars(values, step)
        self._last_wall_time = wall_time
        ret = scalars.get("episodic_return")
        if ret is not None and ret == ret:
            self.recent_return = ret
        self._bar.update(max(0, step - self._last_step))
        self._last_step = step
        self._bar.set_postfix(ret=f"{self.recent_return:.1f}", refresh=False)

    def _write_scalars(self, values: dict[str, float], step: int) -> None:
        """The row's scalars as one TensorBoard event (what add_scalar writes, one value each):
        an event per scalar cost ~60 us each, 5% of a DQN iteration on MinAtar with a row per
        iteration."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
        self._writer.file_writer.add_summary(summary, step)

    def _rewrite(self, rows: list[dict]) -> None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, self._fields or list(self.base))
        w.writeheader()
        w.writerows(rows)
        write_atomically(self.csv_path, lambda f: f.write(text.getvalue().encode()))

    def close(self) -> None:
        self._bar.close()
        if self._writer is not None:
            self._writer.close()


def read_rows_until(path: Path, last_step: float) -> tuple[list[str] | None, list[dict]]:
    """The header and the rows of metrics.csv up to ``last_step``. A last line without its newline
    is a row whose write was interrupted (a crash): it is dropped. Any other malformed row raises
    RunDirError naming the file and the line."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text: not a fastrl metrics file") from None
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames
    if fields is None:  # empty file
        return None, []
    if "step" not in fields or "wall_time" not in fields:
        raise RunDirError(f"{path}: the header has no step and wall_time columns: not a fastrl metrics file")
    rows = []
    for row in reader:
        try:
            if None in row or None in row.values():  # too many or too few cells
                raise ValueError
            step = float(row["step"])
            float(row["wall_time"])
        except ValueError:
            raise RunDirError(f"{path}: line {reader.line_num} is malformed; "
                              f"fix or delete that line to resume") from None
        if step <= last_step:
            rows.append(row)
    return list(fields), rows
