"""The README's results table, in Markdown, from the main experiment's results JSON files.

    python experiments/results_table.py figures/fig_sharpness_mnist_paper.json \
        figures/fig_sharpness_mnist10k_paper.json

Prints one row per quantity of Tables 2, 3 and 4 (mean +- sample std over seeds): the paper's
SB and LB columns, then SB and LB columns for each JSON given (experiments/fig_sharpness.py's
output), headed by the dataset and batch sizes (and the initialisation, where the JSON files
differ in it: `--init lecun_normal` beside the default). Reads JSON only (no JAX); the numbers in
README.md are this script's output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import paper  # noqa: E402

ACCURACY_ROWS = {
    "test_accuracy": "test accuracy (%)",
    "train_accuracy": "train accuracy (%)",
    "train_loss": "train cross-entropy",
}
SPACES = {"full": "full", "subspace-gaussian": "100-d Gaussian A", "subspace-unit": "100-d unit A"}


def pm(pair: tuple[float, float] | None) -> str:
    """mean +- std, both to the mean's precision: 2 decimals from 1 up, 2 significant digits of
    the mean below (in powers of ten below 1e-3, e.g. 3.5e-05 +- 0.2e-05)."""
    if pair is None:
        return "-"
    mean, std = pair
    if abs(mean) >= 1 or mean == 0:
        return f"{mean:.2f} +- {std:.2f}"
    exponent = math.floor(math.log10(abs(mean)))
    if exponent >= -3:
        digits = 1 - exponent
        return f"{mean:.{digits}f} +- {std:.{digits}f}"
    scale = 10.0**exponent
    return f"{mean / scale:.1f}e{exponent:03d} +- {std / scale:.1f}e{exponent:03d}"


def rows(results: list[dict]) -> list[tuple[str, str, list]]:
    """(quantity, PAPER_F1 key or "", [(SB, LB) per results]) for every table entry."""
    out = []
    for quantity, label in ACCURACY_ROWS.items():
        cells = [[r["summary"]["accuracy"][quantity].get(g) for g in ("SB", "LB")] for r in results]
        out.append((label, quantity if "accuracy" in quantity else "", cells))
    groups = {(s["space"], s["epsilon"]) for r in results for s in r["summary"]["sharpness"]}
    for space, eps in sorted(groups, key=lambda g: (list(SPACES).index(g[0]), -g[1])):
        cells = []
        for r in results:
            found = {s["regime"]: (s["mean"], s["std"]) for s in r["summary"]["sharpness"]
                     if (s["space"], s["epsilon"]) == (space, eps)}  # fmt: skip
            cells.append([found.get("SB"), found.get("LB")])
        key = paper.sharpness_key(space.split("-")[0], eps)
        out.append((f"sharpness, {SPACES[space]}, eps {eps:g}", key, cells))
    return out


def init_of(results: dict) -> str:
    """The kernel initialiser of a results JSON; lecun_normal for those written before the
    --init option, which all used it."""
    return results["config"].get("init", "lecun_normal")


def markdown(results: list[dict]) -> str:
    header = ["quantity", "paper SB", "paper LB"]
    inits = [init_of(r) for r in results]
    for r, init in zip(results, inits, strict=True):
        name, cfg = r["dataset"]["name"], r["config"]
        if len(set(inits)) > 1:  # the columns differ in initialisation: say which is which
            name = f"{name} {init}"
        header += [f"{name} SB ({cfg['sb_batch']})", f"{name} LB ({cfg['lb_batch']})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seeds = ["5", "5"] + [str(r["config"]["seeds"]) for r in results for _ in range(2)]
    lines.append("| seeds | " + " | ".join(seeds) + " |")
    for label, key, cells in rows(results):
        ours = [pm(c) for pair in cells for c in pair]
        theirs = [pm(paper.PAPER_F1.get(key, {}).get(g)) for g in ("SB", "LB")]
        lines.append("| " + " | ".join([label, *theirs, *ours]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="fig_sharpness_<dataset>_<preset>.json files")
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            p.error(f"cannot read {path}: {err}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
