"""Statistics over seeds and runs: mean +- sample std, per-epoch curves, the SB - LB gap test,
and rank correlation (Kendall's tau with a bootstrap interval).

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


def stats_text(record: dict, spec: str, scale: float = 1.0, std_spec: str | None = None) -> str:
    """ "mean +- std" of a `record_stats` record, each formatted with `spec` (the std with
    `std_spec` if given) after multiplying by `scale`; only the mean when the record holds a
    single value, whose spread is unknown (stored as std 0)."""
    mean = format(scale * record["mean"], spec)
    if record["n"] < 2:
        return mean
    return f"{mean} +- {format(scale * record['std'], std_spec or spec)}"


GAP_RULE = "|mean SB - mean LB| > 2 * sqrt(std_SB^2/n + std_LB^2/n) (std over n seeds)"


def gap_test(sb: dict[int, float], lb: dict[int, float]) -> dict:
    """The SB - LB difference of a per-seed quantity ({seed: value} each, the same seeds: a
    ValueError otherwise): difference of the means, its standard error, the mean +- std of the
    per-seed differences, and whether the difference exceeds twice its standard error
    (`GAP_RULE`)."""
    if set(sb) != set(lb):
        raise ValueError(f"gap_test pairs seeds: SB has {sorted(sb)}, LB has {sorted(lb)}")
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


def tau_b_of_resamples(x: np.ndarray, y: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each resample (x[picks[b]], y[picks[b]]), b = 0..B-1, in a few array
    operations instead of B calls to scipy.stats.kendalltau, and equal to them bit for bit.

    Over the pairs i < j of a resample: C - D = sum sign(x_i - x_j) sign(y_i - y_j) (a pair
    tied in x or in y adds 0), n1 and n2 the pairs with x_i = x_j and with y_i = y_j; tau_b =
    (C - D) / sqrt(n0 - n1) / sqrt(n0 - n2), n0 = n (n - 1) / 2, in SciPy's order of float
    operations and clipped to [-1, 1] as SciPy does; NaN where every x or every y is tied, or
    where a NaN was drawn (SciPy's default policy). The signs are taken of dense ranks, so
    they are exact integers (infinities included) and so is every count until the last line:
    rounding cannot differ from SciPy's."""
    drew_nan = (np.isnan(x) | np.isnan(y))[picks].any(axis=1)
    x, y = (np.unique(v, return_inverse=True)[1].reshape(-1) for v in (x, y))
    n = picks.shape[1]
    upper = np.triu(np.ones((n, n), bool), k=1)
    tot = n * (n - 1) // 2
    taus = np.empty(len(picks))
    for start in range(0, len(picks), 256):  # bounded memory: 256 x n x n signs at a time
        block = picks[start : start + 256]
        sx = np.sign(x[block][:, :, None] - x[block][:, None, :])
        sy = np.sign(y[block][:, :, None] - y[block][:, None, :])
        con_minus_dis = (sx * sy)[:, upper].sum(axis=1)
        xtie = ((sx == 0) & upper).sum(axis=(1, 2))
        ytie = ((sy == 0) & upper).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = con_minus_dis / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
        tau = np.minimum(1.0, np.maximum(-1.0, tau))
        taus[start : start + len(block)] = np.where((xtie == tot) | (ytie == tot), np.nan, tau)
    return np.where(drew_nan, np.nan, taus)


def kendall_tau(
    x: Sequence[float],
    y: Sequence[float],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Kendall's tau-b between x and y over n paired observations (runs), with a percentile
    bootstrap interval.

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)): C and D the concordant and discordant pairs,
    n0 = n (n - 1) / 2, n1 and n2 the pairs tied in x and in y (scipy.stats.kendalltau). The
    interval: tau_b of `n_boot` resamples of the n pairs drawn with replacement (NumPy's
    default_rng(seed), so it is reproducible), its (1 - level) / 2 and (1 + level) / 2
    quantiles; a resample with every x (or every y) tied has no tau and is left out (counted in
    "n_boot_undefined"). p_value: SciPy's two-sided test of tau = 0. Returns {"tau", "low",
    "high", "level", "p_value", "n", "n_boot", "n_boot_undefined"}; tau, low, high and p_value
    are None where undefined (every x or every y tied), so the record is strict JSON.
    """
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(
            f"kendall_tau needs two equal-length 1-d samples (n >= 2), got {x.shape}, {y.shape}"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tau, p_value = kendalltau(x, y)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), (n_boot, len(x)))
    boot = tau_b_of_resamples(x, y, picks)
    defined = boot[np.isfinite(boot)]
    low, high = (
        np.quantile(defined, [(1 - level) / 2, (1 + level) / 2]) if len(defined) else (np.nan,) * 2
    )

    def number(v: float) -> float | None:  # None where tau is undefined (all x or all y tied)
        return float(v) if np.isfinite(v) else None

    return {
        "tau": number(tau),
        "low": number(low),
        "high": number(high),
        "level": level,
        "p_value": number(p_value),
        "n": len(x),
        "n_boot": n_boot,
        "n_boot_undefined": int(n_boot - len(defined)),
    }
