"""Compare two folders of results JSON, number by number, timings and paths aside.

    python experiments/compare_results.py BEFORE_DIR AFTER_DIR
    python experiments/compare_results.py old/figures new/figures \\
        --rename sharpness_report_mnist10k.json=sharpness_report_mnist10k_quick.json

For every results JSON in BEFORE_DIR (and its counterpart of the same name in AFTER_DIR, or the
name given by --rename), every leaf is compared at its path (e.g. runs[3].history.test_loss[7]):
numbers and strings must be equal; what differs is listed with its absolute and relative
difference. Leaves whose key names a timing, a wall-clock date, a file path, the command line
or the software environment (IGNORED) are skipped; keys present on one side only are counted
apart (a redesign may add fields). Prints one line per file and the differing leaves; exits 1
if any number differs. This is how a redesign is checked against the code before it, on the
quick presets of every script (CHANGELOG.md says which were checked so).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

IGNORED = {
    "seconds",
    "wall_seconds",
    "train_seconds",
    "seconds_setup",
    "seconds_in_evals",
    "started",
    "created",
    "run_dir",
    "runs_dir",
    "out",
    "command",
    "environment",
    "solver",  # library versions in prose
}


def leaves(obj: Any, path: str = "") -> dict[str, Any]:
    """{path: leaf} of a JSON value, skipping IGNORED keys."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key not in IGNORED:
                out.update(leaves(value, f"{path}.{key}" if path else key))
        return out
    if isinstance(obj, list):
        out = {}
        for i, value in enumerate(obj):
            out.update(leaves(value, f"{path}[{i}]"))
        return out
    return {path: obj}


def difference(a: Any, b: Any) -> tuple[float, float] | None:
    """None when equal (NaN equals NaN), else (absolute, relative) for numbers, (inf, inf)."""
    if a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    ):
        return None
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numeric:
        return math.inf, math.inf
    absolute = abs(a - b)
    return absolute, absolute / max(abs(a), abs(b), 1e-300)


def compare(before: dict, after: dict) -> dict[str, Any]:
    lb, la = leaves(before), leaves(after)
    shared = sorted(lb.keys() & la.keys())
    diffs = {p: (lb[p], la[p], d) for p in shared if (d := difference(lb[p], la[p])) is not None}
    return {
        "shared": len(shared),
        "only_before": sorted(lb.keys() - la.keys()),
        "only_after": sorted(la.keys() - lb.keys()),
        "diffs": diffs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--rename", action="append", default=[], help="BEFORE_NAME=AFTER_NAME")
    p.add_argument("--show", type=int, default=20, help="differing leaves to print per file")
    args = p.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    status = 0
    for path in sorted(args.before.glob("*.json")):
        other = args.after / renames.get(path.name, path.name)
        if not other.is_file():
            print(f"{path.name}: no counterpart {other}")
            status = 1
            continue
        r = compare(json.loads(path.read_text()), json.loads(other.read_text()))
        worst = max((d[1] for _, _, d in r["diffs"].values()), default=0.0)
        print(
            f"{path.name}: {r['shared'] - len(r['diffs'])}/{r['shared']} shared leaves equal, "
            f"{len(r['diffs'])} differ (largest relative difference {worst:.3g}); "
            f"{len(r['only_before'])} only before, {len(r['only_after'])} only after"
        )
        for leaf, (a, b, (absolute, relative)) in list(r["diffs"].items())[: args.show]:
            print(f"    {leaf}: {a!r} -> {b!r} (abs {absolute:.3g}, rel {relative:.3g})")
        status |= bool(r["diffs"])
    return status


if __name__ == "__main__":
    sys.exit(main())
