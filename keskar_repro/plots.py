"""Figures drawn from results dictionaries (the JSON the experiments write); no computation here.

Importing this module does not import JAX, so figures can be redrawn from a results file alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

LOSS_COLOR = "tab:blue"
ACCURACY_COLOR = "tab:red"
REGIME_COLORS = {"SB": "tab:blue", "LB": "tab:red"}


def parametric_plot(path: dict, *, title: str = "", log_loss: bool = False) -> Figure:
    """Figure 3 / Figure 7 layout: cross-entropy (left axis) and accuracy in % (right axis)
    against alpha; solid = train, dashed = test; alpha = 0 is the SB and 1 the LB minimizer.

    `path` holds lists "alpha", "train_loss", "test_loss", "train_accuracy", "test_accuracy"
    (accuracy as a fraction), and optionally "kind" and "bn_policy" for the caption.
    """
    alpha = np.asarray(path["alpha"])
    fig, loss_ax = plt.subplots(figsize=(6.0, 4.2))
    acc_ax = loss_ax.twinx()
    for split, style in (("train", "-"), ("test", "--")):
        loss_ax.plot(
            alpha,
            path[f"{split}_loss"],
            style,
            color=LOSS_COLOR,
            lw=2,
            label=f"{split} cross-entropy",
        )
        acc_ax.plot(
            alpha,
            100 * np.asarray(path[f"{split}_accuracy"]),
            style,
            color=ACCURACY_COLOR,
            lw=2,
            label=f"{split} accuracy",
        )
    if log_loss:
        loss_ax.set_yscale("log")
    loss_ax.set_xlabel(r"$\alpha$  (0: SB minimizer, 1: LB minimizer)")
    loss_ax.set_ylabel("cross-entropy", color=LOSS_COLOR)
    acc_ax.set_ylabel("accuracy (%)", color=ACCURACY_COLOR)
    loss_ax.tick_params(axis="y", colors=LOSS_COLOR)
    acc_ax.tick_params(axis="y", colors=ACCURACY_COLOR)
    acc_ax.set_ylim(0, 100)
    for x in (0, 1):
        loss_ax.axvline(x, color="0.8", lw=0.8, zorder=0)
    handles = loss_ax.get_lines()[:2] + acc_ax.get_lines()[:2]
    fig.legend(
        handles,
        [h.get_label() for h in handles],
        loc="lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    caption = title or f"{path.get('kind', '')} path"
    if "bn_policy" in path:
        caption += f"  (BN: {path['bn_policy']})"
    loss_ax.set_title(caption, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def sharpness_chart(rows: Sequence[dict], *, title: str = "") -> Figure:
    """Bar chart of sharpness (mean +- std over seeds) for SB and LB, per (space, epsilon).

    `rows` are records with "regime" ("SB"/"LB"), "space" ("full"/"subspace"), "epsilon",
    "mean", "std" and "n" (seeds). The y axis is logarithmic: LB values are often 10-100x SB's.
    """
    groups = sorted({(r["space"], r["epsilon"]) for r in rows}, key=lambda g: (g[0], -g[1]))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.4 * len(groups)), 4.2))
    width = 0.38
    for k, regime in enumerate(("SB", "LB")):
        means, stds = [], []
        for group in groups:
            match = [
                r for r in rows if r["regime"] == regime and (r["space"], r["epsilon"]) == group
            ]
            means.append(match[0]["mean"] if match else np.nan)
            stds.append(match[0]["std"] if match else 0.0)
        x = np.arange(len(groups)) + (k - 0.5) * width
        ax.bar(x, means, width, yerr=stds, capsize=3, color=REGIME_COLORS[regime], label=regime)
        for xi, m in zip(x, means, strict=True):
            if np.isfinite(m):
                ax.annotate(
                    f"{m:.3g}",
                    (xi, m),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(
        [f"{space.replace('-', chr(10) + 'A: ')}\n$\\epsilon$={eps:g}" for space, eps in groups],
        fontsize=8,
    )
    ax.set_yscale("log")
    ax.set_ylabel(r"sharpness $\phi$ (%)")
    ax.legend()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, stem: str) -> list[str]:
    """Save `fig` as <stem>.png and <stem>.pdf (each written atomically); return the paths."""
    import os
    import tempfile

    paths = []
    for ext in ("png", "pdf"):
        final = f"{stem}.{ext}"
        directory = os.path.dirname(final) or "."
        fd, tmp = tempfile.mkstemp(prefix=".fig.", suffix=f".{ext}", dir=directory)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=150)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        paths.append(final)
    plt.close(fig)
    return paths
