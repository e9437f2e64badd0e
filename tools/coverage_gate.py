"""Line coverage of fastrl, printed for the CI log and held to thresholds.

    python tools/coverage_gate.py python [--data .coverage]      # after pytest --cov=fastrl
    python tools/coverage_gate.py cpp --build build/sanitize      # after tests on a --coverage build

Python: per package of ``fastrl/`` (lines and branches, from coverage.py's data file).
C++: per file of ``csrc/core`` and ``csrc/cpu`` (lines, from gcov's JSON of the instrumented
build; a header compiled into several objects counts a line as run if any object ran it). CUDA
sources never run without a GPU and are not counted. Exit status 1 when a gated group is below its
threshold, so CI fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Minimum line coverage (%) per group; the goal for all four is 90.
PYTHON_GATES = {"fastrl/ops": 90.0, "fastrl/envs": 90.0}
CPP_GATES = {"csrc/core": 90.0, "csrc/cpu": 90.0}


def _table(rows: list[tuple[str, int, int]], title: str) -> None:
    print(f"{title:<44} {'lines':>7} {'run':>7} {'cover':>7}")
    for name, total, hit in rows:
        print(f"{name:<44} {total:>7} {hit:>7} {100.0 * hit / max(total, 1):>6.1f}%")


def _gate(groups: dict[str, tuple[int, int]], gates: dict[str, float]) -> bool:
    ok = True
    for group, threshold in gates.items():
        total, hit = groups.get(group, (0, 0))
        percent = 100.0 * hit / max(total, 1)
        verdict = "ok" if percent >= threshold else "BELOW"
        ok &= percent >= threshold
        print(f"gate {group:<16} {percent:6.1f}% of {total} lines (threshold {threshold:.0f}%): {verdict}")
    return ok


def python_coverage(data_file: str) -> bool:
    import coverage

    cov = coverage.Coverage(data_file=data_file)
    cov.load()
    data = cov.get_data()
    per_package: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_file = []
    for path in sorted(data.measured_files()):
        rel = Path(path).resolve().relative_to(ROOT).as_posix() if Path(path).is_relative_to(ROOT) else path
        if not rel.startswith("fastrl/"):
            continue
        _, statements, _, missing, _ = cov.analysis2(path)
        total, hit = len(statements), len(statements) - len(missing)
        per_file.append((rel, total, hit))
        package = rel.rsplit("/", 1)[0]
        per_package[package][0] += total
        per_package[package][1] += hit
    _table(per_file, "Python file")
    print()
    groups = {k: tuple(v) for k, v in sorted(per_package.items())}
    _table([(k, *v) for k, v in groups.items()], "Python package")
    return _gate(groups, PYTHON_GATES)


def cpp_coverage(build: Path) -> bool:
    gcda = sorted(build.resolve().rglob("*.gcda"))
    if not gcda:
        print(f"no .gcda files under {build}: build with -DFASTRL_COVERAGE=ON and run the tests first")
        return False
    lines: dict[str, dict[int, bool]] = defaultdict(dict)  # file -> line -> run at least once
    with tempfile.TemporaryDirectory() as tmp:
        for data in gcda:
            subprocess.run(["gcov", "--json-format", "--object-directory", str(data.parent), str(data)],
                           cwd=tmp, check=True, capture_output=True)
        for report in Path(tmp).glob("*.gcov.json.gz"):
            for f in json.loads(gzip.decompress(report.read_bytes()))["files"]:
                path = Path(f["file"])
                path = path if path.is_absolute() else (ROOT / path)
                try:
                    rel = path.resolve().relative_to(ROOT / "csrc").as_posix()
                except ValueError:
                    continue  # torch, pybind11 and standard headers
                for line in f["lines"]:
                    seen = lines["csrc/" + rel]
                    seen[line["line_number"]] = seen.get(line["line_number"], False) or line["count"] > 0
    per_file = [(name, len(ls), sum(ls.values())) for name, ls in sorted(lines.items())]
    _table(per_file, "C++ file (CPU build)")
    print()
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, total, hit in per_file:
        for group in CPP_GATES:
            if name.startswith(group + "/"):
                groups[group][0] += total
                groups[group][1] += hit
    print("csrc/cuda: compiled by check-cuda, not run (no GPU in CI)")
    return _gate({k: tuple(v) for k, v in groups.items()}, CPP_GATES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    sub.add_parser("python").add_argument("--data", default=".coverage")
    sub.add_parser("cpp").add_argument("--build", type=Path, default=ROOT / "build" / "sanitize")
    args = parser.parse_args(argv)
    ok = python_coverage(args.data) if args.kind == "python" else cpp_coverage(args.build)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
