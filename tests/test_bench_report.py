"""bench/report.py: the tables and charts `make bench` prints and bench/README.md shows."""

import json
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[1]


def _bench(group, impl, median, **extra):
    return {"name": f"test[{impl}]", "group": group, "stats": {"median": median},
            "extra_info": {"impl": impl, **extra}}  # fmt: skip


def _write(tmp_path, name, benchmarks):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def test_times_ratios_against_each_baseline_use_fastrls_fastest(tmp_path):
    path = _write(tmp_path, "gae-box", [
        _bench("T=8", "fastrl_native", 0.002), _bench("T=8", "fastrl_fallback", 0.050),
        _bench("T=8", "numpy_loop", 0.010), _bench("T=8", "torch_loop", 0.500),
        _bench("T=9", "fastrl_fallback", 0.004), _bench("T=9", "numpy_loop", 0.001),
    ])  # fmt: skip
    lines = report.table(report.load_cases(path)).splitlines()
    assert lines[0] == "| case | fastrl_native | fastrl_fallback | numpy_loop | torch_loop |"
    # 10 ms / 2 ms = 5x and 500 ms / 2 ms = 250x; the fallback is slower, so native is "ours".
    assert lines[2] == "| T=8 | **2 ms** | 50 ms | 10 ms (5x) | 500 ms (250x) |"
    # Only the fallback ran here: it is ours for this row, and it loses (0.25x).
    assert lines[3] == "| T=9 | — | **4 ms** | 1 ms (0.25x) | — |"


def test_rates_are_shown_as_rates_and_seeds_by_their_median(tmp_path):
    path = _write(tmp_path, "envs-box", [
        _bench("n=4", "fastrl_native", 1.0, steps_per_s=3e6), _bench("n=4", "gym", 9.0, steps_per_s=1.5e5),
        *[_bench("solve", "fastrl_ppo", t) for t in (4.0, 9.0, 5.0)],
    ])  # fmt: skip
    lines = report.table(report.load_cases(path)).splitlines()
    assert lines[2] == "| n=4 | **3 M steps/s** | — | 150 k steps/s (20x) |"
    assert lines[3] == "| solve | — | 5 s (median of 3) | — |"  # no baseline: nothing in bold


def test_a_benchmark_without_impl_is_an_error(tmp_path):
    bench = _bench("g", "fastrl_x", 1.0)
    del bench["extra_info"]["impl"]
    with pytest.raises(ValueError, match=r"test\[fastrl_x\] has no group or extra_info\['impl'\]"):
        report.load_cases(_write(tmp_path, "f-m", [bench]))


def test_readme_blocks_are_rewritten_and_check_catches_stale_ones(tmp_path, capsys):
    results = _write(tmp_path, "gae-box", [_bench("T=8", "fastrl_native", 0.002), _bench("T=8", "np", 0.01)])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- report: gae-box -->\n| old | table |\n<!-- /report -->\nafter\n")
    assert report.main([str(results), "--readme", str(readme), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert report.main([str(results), "--readme", str(readme), "--png", str(tmp_path / "png")]) == 0
    text = readme.read_text()
    assert "| T=8 | **2 ms** | 10 ms (5x) |\n<!-- /report -->\nafter\n" in text and "old" not in text
    assert report.main([str(results), "--readme", str(readme), "--check"]) == 0
    assert (tmp_path / "png" / "gae-box.png").read_bytes()[:4] == b"\x89PNG"
    readme.write_text("<!-- report: missing-box -->\n<!-- /report -->\n")
    with pytest.raises(KeyError, match="missing-box"):
        report.main([str(results), "--readme", str(readme)])


def test_bench_readme_tables_are_generated_from_the_committed_json(capsys):
    results = sorted(str(p) for p in (ROOT / "bench" / "results").glob("*.json"))
    status = report.main([*results, "--readme", str(ROOT / "bench" / "README.md"), "--check"])
    assert status == 0, capsys.readouterr().err + f" ({sys.executable} bench/report.py ...)"
