"""Seeds x games x algorithms of `fastrl train` on MinAtar, and the results table of docs/trainers.md.

    python tools/minatar_study.py --algos ppo dqn --games Breakout SpaceInvaders --seeds 0 1 2 \\
        --frames ppo=5000000 ppo:SpaceInvaders=2000000 dqn=5000000 --checkpoint-every 25000 --jobs 2 \\
        --out runs/minatar-study --json docs/results/minatar-study-cpu-2core.json \\
        --plot docs/images/minatar-study.png

Each run is the CLI with the tuned defaults (fastrl/algos/defaults.py) and a frame budget, in its own
process (``--jobs`` at a time, ``--cpu-threads`` torch threads each); a run whose checkpoint already
holds its budget is not run again, and one stopped part-way (Ctrl-C checkpoints it, as do
``--checkpoint-every`` iterations) continues exactly where it stopped, so a study of runs longer than
a sitting is done in pieces; ``--no-train`` reports the runs as they stand. ``--json`` keeps the
runs an earlier study wrote there that this one did not report (another algorithm, game or seed),
so the table stays whole when the machine that ran them does not keep ``--out``. Then, per
algorithm and game: the mean and spread over seeds of the return of the last 100 training episodes at
the end, of a greedy evaluation of the final policy, of the wall time, and the frames at which each
seed first reached the published figure (if it did), next to that figure; and the learning curves
(mean and min-max band over seeds) as one PNG.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# What the issue compares with: the MinAtar paper's DQN at 5M frames (Young & Tian 2019) and
# gymnax-blines' PPO at 10M frames (its README's table).
PUBLISHED = {
    ("dqn", "Breakout"): (10.0, "MinAtar paper, DQN, 5M frames"),
    ("dqn", "SpaceInvaders"): (43.0, "MinAtar paper, DQN, 5M frames"),
    ("ppo", "Breakout"): (28.0, "gymnax-blines, PPO, 10M frames"),
    ("ppo", "SpaceInvaders"): (131.0, "gymnax-blines, PPO, 10M frames"),
}


def run_dir(out: Path, algo: str, game: str, seed: int) -> Path:
    return out / f"{algo}-{game}-s{seed}"


def checkpoint_progress(path: Path) -> tuple[int, int]:
    """Frames the run's checkpoint has trained for and the budget it was started with ((0, 0) when
    there is none)."""
    if not (path / "checkpoint.pt").exists():
        return 0, 0
    import torch

    # memory-mapped: a DQN checkpoint's 100 MB replay buffer is not read for two numbers
    state = torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False, mmap=True)
    return int(state.get("global_step", 0)), int(state["config"]["total_steps"])


def train(algo: str, game: str, seed: int, frames: int, args) -> Path:
    """One run of the CLI, in its own directory (returned). A run whose checkpoint holds ``frames``
    is left as it is; one stopped part-way through the same budget (Ctrl-C checkpoints) continues
    exactly where it stopped; without a checkpoint a new one starts (:func:`check_budgets` refuses
    the rest first)."""
    path = run_dir(args.out, algo, game, seed)
    done, budget = checkpoint_progress(path)
    if done >= frames:
        return path
    cmd = [sys.executable, "-m", "fastrl", "train", algo, "--total-steps", str(frames), "--quiet",
           "--final-eval", "0"]
    if budget == frames:
        cmd += ["--resume", str(path)]
    else:
        cmd += ["--env", f"MinAtar/{game}-v1", "--seed", str(seed), "--device", args.device,
                "--out", str(path), "--overwrite"]
    if args.cpu_threads is not None:
        cmd += ["--cpu-threads", str(args.cpu_threads)]
    if args.checkpoint_every:
        cmd += ["--checkpoint-every", str(args.checkpoint_every)]
    with open(path.with_suffix(".log"), "a" if budget == frames else "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return path


def check_budgets(jobs, frames: dict, out: Path) -> list[str]:
    """Why the study cannot run (empty: it can): a run of another budget than the one asked for,
    short of it, would be lost by starting anew, and continuing it with another budget would change
    it mid-way (PPO's step size anneals over the budget)."""
    problems = []
    for algo, game, seed in jobs:
        path = run_dir(out, algo, game, seed)
        done, budget = checkpoint_progress(path)
        if budget and budget != frames[(algo, game)] and done < frames[(algo, game)]:
            problems.append(f"{path} holds {done} frames of a {budget}-frame run, and --frames asks for "
                            f"{frames[(algo, game)]}: ask for {budget} to keep it, or remove it to start anew")
    return problems


def read_run(path: Path, target: float | None) -> dict:
    """The run's curve (frames, wall seconds, return of the last 100 training episodes) and the
    frames and seconds at which that return first reached ``target``."""
    from fastrl.utils.plots import read_metrics

    m = read_metrics(path / "metrics.csv")
    curve = [(int(s), w, r) for s, w, r in zip(m["step"], m["wall_time"], m["return_last100"]) if r == r]
    reached = next(((s, w) for s, w, r in curve if target is not None and r >= target), None)
    return {"frames": int(m["step"][-1]), "wall_s": m["wall_time"][-1], "return_last100": curve[-1][2],
            "frames_to_published": reached[0] if reached else None,
            "wall_s_to_published": reached[1] if reached else None, "curve": curve}


def greedy_eval(algo: str, path: Path, episodes: int) -> float:
    """Mean return of ``episodes`` greedy episodes of the run's final policy."""
    from fastrl.algos import DQN, PPO

    with tempfile.TemporaryDirectory() as scratch:  # evaluating writes nothing to the run
        trainer = {"ppo": PPO, "dqn": DQN}[algo].from_checkpoint(path, out_dir=Path(scratch) / "eval")
        return statistics.fmean(trainer.evaluate(episodes))


def merge_earlier(results: dict, path: Path) -> tuple[dict, list[str]]:
    """``results`` with the runs of ``path`` (an earlier ``--json``) that it lacks added: those of
    another algorithm, game or seed; a run reported now replaces the earlier one of its seed. Groups
    keep the file's order (new ones after it) and their runs the order of their seeds. Also returns
    what was kept from the file ("dqn Breakout seed 1")."""
    earlier = json.loads(path.read_text())["runs"]
    merged = {tuple(key.split("-", 1)): runs for key, runs in earlier.items()}
    kept = []
    for key in merged:  # the file's runs, but for a seed reported now
        now = {r["seed"] for r in results.get(key, [])}
        merged[key] = [{**r, "curve": [tuple(c) for c in r["curve"]]} for r in merged[key] if r["seed"] not in now]
        kept += [f"{key[0]} {key[1]} seed {r['seed']}" for r in merged[key]]
    for key, runs in results.items():
        merged[key] = sorted(merged.get(key, []) + runs, key=lambda r: r["seed"])
    return merged, kept


def thin(curve: list, points: int = 200) -> list:
    """About ``points`` rows of a curve, evenly spaced, and its last (DQN logs every 4 frames)."""
    step = max(1, len(curve) // points)
    return curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarize(results: dict) -> list[dict]:
    rows = []
    for (algo, game), runs in results.items():
        target, source = PUBLISHED.get((algo, game), (None, ""))
        reached = [r["frames_to_published"] for r in runs if r["frames_to_published"] is not None]
        rows.append({"algo": algo, "game": game, "seeds": [r["seed"] for r in runs],
                     "frames": spread([r["frames"] for r in runs]), "wall_s": spread([r["wall_s"] for r in runs]),
                     "return_last100": spread([r["return_last100"] for r in runs]),
                     "greedy_eval": spread([r["greedy_eval"] for r in runs]),
                     "published": target, "published_source": source,
                     "seeds_reaching_published": len(reached),
                     "frames_to_published": spread(reached) if reached else None})
    return rows


def markdown(rows: list[dict]) -> str:
    def fmt(s: dict, digits: int = 1) -> str:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"

    lines = ["| algo | game | frames | wall time (min) | return, last 100 training episodes | greedy eval "
             "| published | seeds reaching it (frames) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = f"{r['seeds_reaching_published']} of {len(r['seeds'])}"
        if r["frames_to_published"]:
            reach += f" ({r['frames_to_published']['mean'] / 1e6:.2f}M)"
        published = f"{r['published']:g} ({r['published_source']})" if r["published"] is not None else "—"
        minutes = {k: v / 60 for k, v in r["wall_s"].items()}
        lines.append(f"| {r['algo']} | {r['game']} | {r['frames']['mean'] / 1e6:.2f}M | {fmt(minutes)} "
                     f"| {fmt(r['return_last100'])} | {fmt(r['greedy_eval'])} | {published} | {reach} |")
    return "\n".join(lines)


def plot(results: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt
    import numpy as np

    algos = list(dict.fromkeys(a for a, _ in results))
    games = list(dict.fromkeys(g for _, g in results))
    fig, axes = plt.subplots(len(algos), len(games), figsize=(4.5 * len(games), 3.6 * len(algos)), dpi=100,
                             squeeze=False)
    for i, algo in enumerate(algos):
        for j, game in enumerate(games):
            ax = axes[i][j]
            if (algo, game) not in results:  # not studied
                ax.axis("off")
                continue
            runs = results[(algo, game)]
            # every seed's curve on one grid of frames, from the first row all of them have
            grid = np.linspace(max(r["curve"][0][0] for r in runs), min(r["frames"] for r in runs), 200)
            ys = np.array([np.interp(grid, [c[0] for c in r["curve"]], [c[2] for c in r["curve"]]) for r in runs])
            ax.plot(grid, ys.mean(axis=0), label=f"mean of {len(runs)} seeds" if len(runs) > 1 else "1 seed")
            if len(runs) > 1:
                ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), alpha=0.3, label="min-max")
            target, source = PUBLISHED.get((algo, game), (None, ""))
            if target is not None:
                ax.axhline(target, color="k", linestyle="--", linewidth=1, label=f"{target:g}: {source}")
            ax.set_title(f"{algo.upper()} MinAtar/{game}-v1")
            ax.set_xlabel("frames")
            ax.set_ylabel("return, last 100 training episodes")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    p.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--frames", nargs="+", default=["ppo=5000000", "dqn=300000"],
                   help="frames per run: ALGO=N for every game, ALGO:GAME=N for one (it wins)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--cpu-threads", type=int, default=None, help="torch threads of each run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="iterations between each run's checkpoints (0: at the end; Ctrl-C saves one too)")
    p.add_argument("--no-train", action="store_true",
                   help="report on the runs as their checkpoints stand (a run under way, or stopped part-way)")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("runs/minatar-study"))
    p.add_argument("--json", type=Path, help="write the results here (keeping the runs of other algorithms, games "
                   "or seeds it holds)")
    p.add_argument("--plot", type=Path, help="write the learning curves here (PNG)")
    args = p.parse_args(argv)
    budgets = {k: int(float(v)) for k, v in (f.split("=") for f in args.frames)}
    frames = {(a, g): budgets.get(f"{a}:{g}", budgets.get(a)) for a in args.algos for g in args.games}
    missing = sorted({f"{a}:{g}" for (a, g), n in frames.items() if n is None})
    if missing and not args.no_train:
        p.error(f"--frames: no budget for {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)

    jobs = [(a, g, s) for a in args.algos for g in args.games for s in args.seeds]
    if args.no_train:  # the runs there are, as they stand
        jobs = [j for j in jobs if (run_dir(args.out, *j) / "metrics.csv").exists()]
        if not jobs:
            p.error(f"--no-train: no runs of these algorithms, games and seeds in {args.out}")
        done = [run_dir(args.out, *j) for j in jobs]
    else:
        problems = check_budgets(jobs, frames, args.out)
        if problems:
            p.error("; ".join(problems))
        with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on the processes
            done = list(pool.map(lambda j: train(*j, frames[j[:2]], args), jobs))
    results: dict = {}
    for (algo, game, seed), path in zip(jobs, done):
        target = PUBLISHED.get((algo, game), (None, ""))[0]
        run = {"seed": seed, **read_run(path, target), "greedy_eval": greedy_eval(algo, path, args.eval_episodes)}
        results.setdefault((algo, game), []).append(run)
        print(f"{algo} {game} seed {seed}: {run['frames']} frames in {run['wall_s'] / 60:.1f} min, "
              f"return_last100 {run['return_last100']:.2f}, greedy {run['greedy_eval']:.2f}", flush=True)
    if args.json and args.json.exists():
        results, kept = merge_earlier(results, args.json)
        if kept:
            print(f"kept from {args.json}: {', '.join(kept)}", flush=True)
    rows = summarize(results)
    print(markdown(rows))
    if args.json:
        payload = {"device": args.device, "cpu_threads": args.cpu_threads, "jobs": args.jobs,
                   "eval_episodes": args.eval_episodes, "rows": rows,
                   "runs": {f"{a}-{g}": [{**r, "curve": thin(r["curve"])} for r in runs]
                            for (a, g), runs in results.items()}}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
