"""Tables and charts from pytest-benchmark JSON: fastrl against each baseline, measured in one run.

    python bench/report.py bench/results/*-cpu-2core.json               # print the tables
    python bench/report.py bench/results/*.json --png bench/results      # and a PNG per file
    python bench/report.py bench/results/*.json --readme bench/README.md # rewrite its tables
    python bench/report.py bench/results/*.json --readme bench/README.md --check  # CI: up to date?

A results file is named ``<family>-<machine>.json``. Every benchmark names its case with
``benchmark.group`` and its implementation with ``extra_info["impl"]``; implementations named
``fastrl_*`` are ours, every other one is a baseline. Cases that report a rate
(``extra_info["steps_per_s"]`` or ``["tokens_per_second"]``) are shown as rates, the others as
median times. Several benchmarks of one case and implementation (seeds) are summarized by their
median. In bench/README.md, a table lives between ``<!-- report: <family>-<machine> -->`` and
``<!-- /report -->`` and is never edited by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

RATES = {"steps_per_s": "steps/s", "tokens_per_second": "tokens/s"}


@dataclass
class Case:
    group: str
    impl: str
    value: float  # seconds (median), or a rate when `unit` is one of RATES' units
    unit: str
    runs: int


def load_cases(path: Path) -> list[Case]:
    """One Case per (group, impl) of a pytest-benchmark JSON file, in first-appearance order."""
    found: dict[tuple[str, str], list[dict]] = {}
    for bench in json.loads(path.read_text())["benchmarks"]:
        impl = bench.get("extra_info", {}).get("impl")
        if bench.get("group") is None or impl is None:
            raise ValueError(f"{path}: benchmark {bench['name']} has no group or extra_info['impl']")
        found.setdefault((bench["group"], impl), []).append(bench)
    cases = []
    for (group, impl), runs in found.items():
        rate_key = next((k for k in RATES if all(k in b["extra_info"] for b in runs)), None)
        if rate_key is None:
            values, unit = [b["stats"]["median"] for b in runs], "s"
        else:
            values, unit = [b["extra_info"][rate_key] for b in runs], RATES[rate_key]
        cases.append(Case(group, impl, statistics.median(values), unit, len(runs)))
    return cases


def speedup(ours: Case, baseline: Case) -> float:
    """How many times faster `ours` is than `baseline` (> 1: fastrl wins)."""
    if ours.unit == "s":
        return baseline.value / ours.value
    return ours.value / baseline.value


def fmt_value(case: Case) -> str:
    if case.unit == "s":
        for scale, suffix in ((1e-3, "µs"), (1, "ms"), (float("inf"), "s")):
            if case.value < scale:
                shown = case.value * {"µs": 1e6, "ms": 1e3, "s": 1}[suffix]
                break
    else:
        shown, suffix = case.value, case.unit
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if case.value >= scale:
                shown, suffix = case.value / scale, f"{prefix} {case.unit}"
                break
    text = f"{shown:.3g} {suffix}"
    return f"{text} (median of {case.runs})" if case.runs > 1 else text


def impl_order(cases: list[Case]) -> list[str]:
    """Ours first, then the baselines, each in first-appearance order."""
    impls = list(dict.fromkeys(c.impl for c in cases))
    return [i for i in impls if i.startswith("fastrl")] + [i for i in impls if not i.startswith("fastrl")]


def fmt_ratio(x: float) -> str:
    return f"{x:.0f}x" if x >= 100 else f"{x:.3g}x"


def table(cases: list[Case]) -> str:
    """A markdown table: a row per case, a column per implementation; each baseline cell also
    gives how many times faster than it fastrl's fastest implementation in that row (in bold) is."""
    impls = impl_order(cases)
    rows = {}
    for case in cases:
        rows.setdefault(case.group, {})[case.impl] = case
    lines = ["| case | " + " | ".join(impls) + " |", "|---|" + "---:|" * len(impls)]
    for group, by_impl in rows.items():
        mine = [c for c in by_impl.values() if c.impl.startswith("fastrl")]
        ours = max(mine, key=lambda c: speedup(c, mine[0])) if mine else None
        has_baseline = len(mine) < len(by_impl)
        cells = []
        for impl in impls:
            case = by_impl.get(impl)
            if case is None:
                cells.append("—")
            elif case is ours and has_baseline:
                cells.append(f"**{fmt_value(case)}**")
            elif ours is not None and not impl.startswith("fastrl"):
                cells.append(f"{fmt_value(case)} ({fmt_ratio(speedup(ours, case))})")
            else:
                cells.append(fmt_value(case))
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(cases: list[Case], title: str, out: Path) -> None:
    """Grouped horizontal bars, one cluster per case: each implementation's speed relative to
    the slowest in its case (log scale), so that every case reads the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = impl_order(cases)
    groups = list(dict.fromkeys(c.group for c in cases))
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.3 * len(groups) * len(impls)))
    height = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        ys, widths = [], []
        for g, group in enumerate(groups):
            members = [c for c in cases if c.group == group]
            case = next((c for c in members if c.impl == impl), None)
            if case is not None:
                slowest = min(members, key=lambda c: speedup(c, members[0]))
                ys.append(g + k * height)
                widths.append(speedup(case, slowest))
        ax.barh(ys, widths, height=height, label=impl)
    ax.set_xscale("log")
    ax.set_xlim(left=0.5)  # the slowest implementation's bar (1.0) stays visible
    ax.set_yticks([g + 0.4 - height / 2 for g in range(len(groups))], groups)
    ax.invert_yaxis()
    ax.set_xlabel("speed relative to the slowest implementation of the case (higher is faster)")
    ax.set_title(title)
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


MARKER = re.compile(r"(<!-- report: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)


def update_readme(text: str, tables: dict[str, str]) -> str:
    """Replace each marked block whose name has a results file; unknown names are an error."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            raise KeyError(f"README block {name!r} has no bench/results/{name}.json")
        return f"{match[1]}{tables[name]}\n{match[4]}"

    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="pytest-benchmark JSON files")
    parser.add_argument("--png", type=Path, metavar="DIR", help="write <family>-<machine>.png here")
    parser.add_argument("--readme", type=Path, help="markdown file whose report blocks to rewrite")
    parser.add_argument("--check", action="store_true", help="with --readme: fail if it is stale")
    args = parser.parse_args(argv)
    tables = {}
    for path in args.results:
        cases = load_cases(path)
        tables[path.stem] = table(cases)
        print(f"\n## {path.stem}\n\n{tables[path.stem]}")
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            chart(cases, path.stem, args.png / f"{path.stem}.png")
    if args.readme is not None:
        old = args.readme.read_text()
        new = update_readme(old, tables)
        if args.check and new != old:
            print(f"\n{args.readme} is stale: run `python bench/report.py ... --readme {args.readme}`",
                  file=sys.stderr)
            return 1
        if not args.check:
            args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
