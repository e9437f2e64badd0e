"""tools/minatar_study.py: the figures of the MinAtar results table, from hand-written runs, and one
tiny study end to end."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("minatar_study", ROOT / "tools" / "minatar_study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def write_metrics(path: Path, rows):
    path.mkdir(parents=True)
    lines = ["step,wall_time,episodic_return,return_last100"]
    lines += [f"{s},{w},,{'' if r is None else r}" for s, w, r in rows]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_read_run_finds_the_first_row_at_the_published_figure(tmp_path):
    # no episode ended in the first row; the return passes 10 at 3000 frames, dips, passes again
    write_metrics(tmp_path / "r", [(1000, 1.0, None), (2000, 2.0, 9.5), (3000, 3.0, 10.0), (4000, 4.5, 8.0),
                                   (5000, 6.0, 12.0)])
    run = study.read_run(tmp_path / "r", target=10.0)
    assert run["frames"] == 5000 and run["wall_s"] == 6.0 and run["return_last100"] == 12.0
    assert (run["frames_to_published"], run["wall_s_to_published"]) == (3000, 3.0)
    assert [c[0] for c in run["curve"]] == [2000, 3000, 4000, 5000]
    assert study.read_run(tmp_path / "r", target=12.5)["frames_to_published"] is None
    assert study.read_run(tmp_path / "r", target=None)["frames_to_published"] is None


def _run(seed, frames, wall, ret, greedy, reached):
    return {"seed": seed, "frames": frames, "wall_s": wall, "return_last100": ret, "greedy_eval": greedy,
            "frames_to_published": reached, "wall_s_to_published": None, "curve": [(frames, wall, ret)]}


def test_summary_and_table_give_mean_spread_and_seeds_reaching_the_published_figure():
    results = {("ppo", "Breakout"): [_run(0, 1000, 60.0, 30.0, 26.0, 800), _run(1, 1000, 120.0, 20.0, 22.0, None),
                                     _run(2, 1000, 180.0, 28.0, 30.0, 600)]}
    (row,) = study.summarize(results)
    assert row["published"] == 28.0 and row["seeds_reaching_published"] == 2
    assert row["return_last100"]["mean"] == pytest.approx(26.0)
    assert row["return_last100"]["std"] == pytest.approx((56 / 3) ** 0.5)  # deviations 4, -6, 2
    assert (row["greedy_eval"]["min"], row["greedy_eval"]["max"]) == (22.0, 30.0)
    assert row["frames_to_published"]["mean"] == 700
    table = study.markdown([row])
    assert "| ppo | Breakout | 0.00M | 2.0 ± 0.8 (1.0–3.0) | 26.0 ± 4.3 (20.0–30.0) |" in table
    assert "| 28 (gymnax-blines, PPO, 10M frames) | 2 of 3 (0.00M) |" in table


def test_a_tiny_study_end_to_end_and_a_rerun_skips_finished_runs(tmp_path):
    # the game's budget wins over the algorithm's (16384 frames would be two PPO iterations)
    args = ["--algos", "ppo", "--games", "Breakout", "--seeds", "0", "--frames", "ppo=16384", "ppo:Breakout=8192",
            "--cpu-threads", "1", "--eval-episodes", "2", "--out", str(tmp_path / "runs"),
            "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    assert study.main(args) == 0
    payload = json.loads((tmp_path / "r.json").read_text())
    (row,) = payload["rows"]
    assert (row["algo"], row["game"], row["frames"]["mean"]) == ("ppo", "Breakout", 8192)
    assert (tmp_path / "r.png").stat().st_size > 0
    before = (tmp_path / "runs" / "ppo-Breakout-s0" / "metrics.csv").stat().st_mtime_ns
    # a run of another study, on a machine that kept no runs/: only the JSON holds it
    payload["runs"]["dqn-Freeway"] = [{**_run(2, 500, 5.0, 1.5, 2.0, None), "curve": [[500, 5.0, 1.5]]}]
    (tmp_path / "r.json").write_text(json.dumps(payload))
    assert study.main(args) == 0  # the checkpoint holds 8192 frames: not trained again
    assert (tmp_path / "runs" / "ppo-Breakout-s0" / "metrics.csv").stat().st_mtime_ns == before
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r["algo"], r["game"], r["seeds"]) for r in rows] == [("ppo", "Breakout", [0]), ("dqn", "Freeway", [2])]
    assert rows[0]["frames"]["mean"] == 8192 and rows[1]["return_last100"]["mean"] == 1.5
    with pytest.raises(SystemExit):  # a longer budget would start anew, losing the finished run
        study.main([*args[:7], "ppo=16384", *args[9:]])
    assert (tmp_path / "runs" / "ppo-Breakout-s0" / "metrics.csv").stat().st_mtime_ns == before
    for frames in (["ppo=10"], ["dqn:Freeway=10"]):  # a budget for every algorithm and game
        with pytest.raises(SystemExit):
            study.main(["--algos", "dqn", "--games", "Breakout", "--frames", *frames])


def test_a_run_stopped_part_way_is_reported_as_it_stands_then_continued(tmp_path):
    from fastrl.algos import PPO

    runs = tmp_path / "runs"
    path = runs / "ppo-Breakout-s0"
    # what a Ctrl-C'd run leaves: a checkpoint at 8192 of its 16384 frames
    PPO(PPO.tuned_config("MinAtar/Breakout-v1", total_steps=16384, seed=0), out_dir=path).train(until_step=8192)
    first_row = (path / "metrics.csv").read_text().splitlines()[1]
    args = ["--algos", "ppo", "--games", "Breakout", "--seeds", "0", "--frames", "ppo=16384", "--cpu-threads", "1",
            "--eval-episodes", "1", "--out", str(runs), "--json", str(tmp_path / "r.json")]
    # seed 1 and Freeway were never run: left out, and no budget is needed to report
    assert study.main([*args, "--no-train", "--seeds", "0", "1", "--games", "Breakout", "Freeway"]) == 0
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert (row["game"], row["seeds"], row["frames"]["mean"]) == ("Breakout", [0], 8192)
    with pytest.raises(SystemExit):  # nothing to report
        study.main([*args, "--no-train", "--seeds", "1"])
    assert study.checkpoint_progress(path) == (8192, 16384)
    with pytest.raises(SystemExit):  # another budget would lose the part-way run, or change it mid-way
        study.main([*args[:7], "ppo=24576", *args[8:]])
    assert study.checkpoint_progress(path) == (8192, 16384)
    assert study.main(args) == 0
    assert study.checkpoint_progress(path) == (16384, 16384)
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["frames"]["mean"] == 16384
    assert (path / "metrics.csv").read_text().splitlines()[1] == first_row  # continued, not started anew
    assert study.checkpoint_progress(runs / "none") == (0, 0)


def test_merge_keeps_the_earlier_runs_this_study_did_not_report(tmp_path):
    def run(seed, ret):
        return {**_run(seed, 1000, 60.0, ret, ret, None), "curve": [[0, 0.0, 0.0], [1000, 60.0, ret]]}

    earlier = {"runs": {"ppo-Breakout": [run(0, 1.0), run(1, 2.0)], "dqn-Breakout": [run(0, 3.0)]}}
    (tmp_path / "r.json").write_text(json.dumps(earlier))
    now = {("ppo", "Breakout"): [run(0, 10.0), run(2, 20.0)], ("ppo", "Freeway"): [run(0, 30.0)]}
    merged, kept = study.merge_earlier(now, tmp_path / "r.json")
    assert list(merged) == [("ppo", "Breakout"), ("dqn", "Breakout"), ("ppo", "Freeway")]  # the file's order first
    # seed 0 reported now replaces the file's; seed 1 is kept; runs in the order of their seeds
    assert [(r["seed"], r["return_last100"]) for r in merged[("ppo", "Breakout")]] == [(0, 10.0), (1, 2.0), (2, 20.0)]
    assert merged[("dqn", "Breakout")][0]["curve"] == [(0, 0.0, 0.0), (1000, 60.0, 3.0)]
    assert kept == ["ppo Breakout seed 1", "dqn Breakout seed 0"]
    row = next(r for r in study.summarize(merged) if (r["algo"], r["game"]) == ("ppo", "Breakout"))
    assert row["seeds"] == [0, 1, 2] and row["return_last100"]["mean"] == pytest.approx(32 / 3)


@pytest.mark.parametrize("n", [1, 5, 200, 201, 1000, 37_501])
def test_thin_keeps_about_200_evenly_spaced_rows_and_the_last(n):
    curve = [(i, 0.0, float(i)) for i in range(n)]
    thinned = study.thin(curve)
    assert thinned[0] == curve[0] and thinned[-1] == curve[-1]
    assert len(thinned) <= (2 * 200 + 1 if n < 1000 else 210)
    assert thinned == curve or n > 200
    gaps = {b[0] - a[0] for a, b in zip(thinned[:-2], thinned[1:-1])}
    assert len(gaps) <= 1  # evenly spaced but for the last


def test_the_plot_is_a_grid_of_algorithms_by_games(tmp_path):
    import matplotlib.image

    run = _run(0, 1000, 60.0, 30.0, 26.0, None)
    run["curve"] = [(0, 0.0, 1.0), (1000, 60.0, 30.0)]
    results = {("ppo", "Breakout"): [run, run], ("ppo", "Freeway"): [run], ("dqn", "Breakout"): [run]}
    study.plot(results, tmp_path / "p.png")
    height, width = matplotlib.image.imread(tmp_path / "p.png").shape[:2]
    assert (height, width) == (2 * 360, 2 * 450)  # 2 algorithms x 2 games, dqn's Freeway left blank
