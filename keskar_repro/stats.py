"""Statistics over seeds: mean +- sample std, per-epoch curves, and the SB - LB gap test.

Every spread in this package is the sample standard deviation (ddof = 1) over seeds; a single
value has std 0. The paper does not say which convention its tables use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_std_curves(histories: list[dict], keys: tuple[str, ...]) -> dict[str, list[float]]:
    """Per-epoch mean and std (ddof 1; 0 for one run) over runs of each history key, over the
    epochs all runs reached: {"epoch", "<key>_mean", "<key>_std"}."""
    n = min(len(h[keys[0]]) for h in histories)
    out: dict[str, list[float]] = {"epoch": list(range(1, n + 1))}
    for key in keys:
        values = np.asarray([h[key][:n] for h in histories], float)
        out[f"{key}_mean"] = values.mean(0).tolist()
        out[f"{key}_std"] = (values.std(0, ddof=1) if len(values) > 1 else 0 * values[0]).tolist()
    return out


def record_stats(records: list[dict], key: str, scale: float = 1.0) -> dict[str, float]:
    """{"mean", "std", "n"} of `key` (optionally scaled, e.g. 100 for %) over `records`;
    `key` may be "sharpness/<eps>" for record["sharpness"][eps]."""
    values = [
        scale * (r["sharpness"][key.split("/", 1)[1]] if key.startswith("sharpness/") else r[key])
        for r in records
    ]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values)}


GAP_RULE = "|mean SB - mean LB| > 2 * sqrt(std_SB^2/n + std_LB^2/n) (std over n seeds)"


def gap_test(sb: dict[int, float], lb: dict[int, float]) -> dict:
    """The SB - LB difference of a per-seed quantity ({seed: value} each): difference of the
    means, its standard error, the mean +- std of the per-seed differences, and whether the
    difference exceeds twice its standard error (`GAP_RULE`)."""
    n = len(sb)
    (m_sb, s_sb), (m_lb, s_lb) = mean_std(list(sb.values())), mean_std(list(lb.values()))
    standard_error = (s_sb**2 / n + s_lb**2 / n) ** 0.5
    return {
        "sb_minus_lb": m_sb - m_lb,
        "standard_error": standard_error,
        "paired_mean_std": mean_std([sb[s] - lb[s] for s in sb]),
        "exceeds_spread": bool(n > 1 and abs(m_sb - m_lb) > 2 * standard_error),
        "rule": GAP_RULE,
    }
