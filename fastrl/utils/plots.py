"""Learning curves from a run's metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """metrics.csv as columns; empty cells (metrics not logged that row) become NaN."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
    return columns


def plot_learning_curve(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Episodic return (and length) against environment steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    m = read_metrics(metrics_csv)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    curves = [("episodic_return", "episodes ended since the last row", dict(alpha=0.5)),
              ("return_last100", "mean of the last 100 training episodes", dict(linewidth=2)),
              ("eval_return", "greedy evaluation", dict(marker="o", linestyle=""))]
    for column, label, style in curves:
        pts = [(s, r) for s, r in zip(m.get("step", []), m.get(column, [])) if r == r]
        if pts:
            ax.plot(*zip(*pts), label=label, **style)
    if ax.lines:
        ax.legend(loc="lower right")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
