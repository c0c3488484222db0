"""The paper's F1 numbers (Keskar et al. 2017, Tables 2-4 and 7), and our side-by-side tables."""

from __future__ import annotations

import math
from collections.abc import Iterable

PAPER_RUNS = 5  # runs behind every mean +- std of the paper's tables
# (mean, std) over 5 runs, as printed in the paper; accuracies in %, sharpness in %. The paper
# does not say whether std is the sample (ddof = 1) or population (ddof = 0) one.
PAPER_F1: dict[str, dict[str, tuple[float, float]]] = {
    "train_accuracy": {"SB": (99.66, 0.05), "LB": (99.92, 0.01)},
    "test_accuracy": {"SB": (98.03, 0.07), "LB": (97.81, 0.07)},
    "sharpness/full/0.001": {"SB": (1.23, 0.83), "LB": (205.14, 69.52)},
    "sharpness/full/0.0005": {"SB": (0.61, 0.27), "LB": (42.90, 17.14)},
    "sharpness/subspace/0.001": {"SB": (0.11, 0.00), "LB": (9.22, 0.56)},
    "sharpness/subspace/0.0005": {"SB": (0.05, 0.00), "LB": (9.17, 0.14)},
}
# Table 7 (App. E.2), F1 row: conservative LB training (lambda 1e-3, 3 Adam iterations per
# batch) beside the SB baseline (Table 2's SB accuracy); sharpness in the full space.
PAPER_TABLE7_F1: dict[str, dict[str, tuple[float, float]]] = {
    "test_accuracy": {"SB": (98.03, 0.07), "LB-conservative": (98.12, 0.01)},
    "sharpness/full/0.001": {"LB-conservative": (232.25, 63.81)},
    "sharpness/full/0.0005": {"LB-conservative": (46.02, 12.58)},
}
PAPER_TABLE_OF = {
    "train_accuracy": "Table 2",
    "test_accuracy": "Table 2",
    "sharpness/full": "Table 3",
    "sharpness/subspace": "Table 4",
}


def population_to_sample_std(std: float, n: int = PAPER_RUNS) -> float:
    """The sample std (ddof = 1) of n values whose population std (ddof = 0) is `std`:
    std * sqrt(n / (n - 1)), 1.118 x for the paper's 5 runs. Ours are sample stds
    (stats.mean_std); this is what the paper's would be in our convention if they were
    population stds."""
    return std * math.sqrt(n / (n - 1))


def std_convention_note(key: str = "sharpness/full/0.001", regime: str = "LB") -> str:
    """One line saying both conventions, with one of the paper's entries as the example."""
    mean, std = PAPER_F1[key][regime]
    return (
        f"std: ours are sample stds (ddof = 1); the paper does not say which. If its are "
        f"population stds (ddof = 0), in our convention they are "
        f"{population_to_sample_std(1.0):.3f}x larger (e.g. {regime} {key}: {mean:.2f} +- "
        f"{std:.2f} -> +- {population_to_sample_std(std):.2f})"
    )


def sharpness_key(space: str, epsilon: float) -> str:
    """Key of PAPER_F1 for a sharpness entry, e.g. "sharpness/full/0.001"."""
    return f"sharpness/{space}/{float(epsilon)}"


def plus_minus(mean_std_pair: tuple[float, float] | None, digits: int) -> str:
    """ "mean +- std" with `digits` decimals, or "-" where there is no value."""
    if mean_std_pair is None:
        return "-"
    mean, std = mean_std_pair
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def comparison_table(rows: Iterable[dict], *, title: str, digits: int = 2) -> str:
    """A plain-text table: quantity, ours SB, ours LB, paper SB, paper LB.

    Each row: {"quantity", "key" (of PAPER_F1 or None), "SB": (mean, std), "LB": (mean, std)}.
    """
    header = ("quantity", "ours SB", "ours LB", "paper SB", "paper LB")
    lines = []
    for row in rows:
        paper = PAPER_F1.get(row.get("key") or "", {})
        lines.append(
            (
                row["quantity"],
                plus_minus(row.get("SB"), digits),
                plus_minus(row.get("LB"), digits),
                plus_minus(paper.get("SB"), 2),
                plus_minus(paper.get("LB"), 2),
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title, fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)
