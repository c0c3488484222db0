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
REGIME_COLORS = {"SB": "tab:blue", "LB": "tab:red", "LB-conservative": "tab:orange"}


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


def sharpness_chart(
    rows: Sequence[dict], *, title: str = "", labels: dict[str, str] | None = None
) -> Figure:
    """Bar chart of sharpness (mean +- std over seeds) per regime, per (space, epsilon).

    `rows` are records with "regime" (a key of REGIME_COLORS: "SB", "LB", ...), "space"
    ("full"/"subspace"), "epsilon", "mean", "std" and "n" (seeds); the regimes' bars stand in
    the order they first appear, with legend `labels[regime]` (default the regime). The y axis
    is logarithmic: LB values are often 10-100x SB's.
    """
    groups = sorted({(r["space"], r["epsilon"]) for r in rows}, key=lambda g: (g[0], -g[1]))
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.4 * len(groups)), 4.2))
    width = 0.76 / len(regimes)
    for k, regime in enumerate(regimes):
        means, stds = [], []
        for group in groups:
            match = [
                r for r in rows if r["regime"] == regime and (r["space"], r["epsilon"]) == group
            ]
            means.append(match[0]["mean"] if match else np.nan)
            stds.append(match[0]["std"] if match else 0.0)
        x = np.arange(len(groups)) + (k - (len(regimes) - 1) / 2) * width
        label = (labels or {}).get(regime, regime)
        ax.bar(x, means, width, yerr=stds, capsize=3, color=REGIME_COLORS[regime], label=label)
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
    """Save `fig` as <stem>.png and <stem>.pdf (each written atomically); return the paths.
    In a multi-process job only the primary process writes them."""
    import os
    import tempfile

    from keskar_repro.devices.distributed import is_primary
    from keskar_repro.store.files import published_mode

    paths = []
    for ext in ("png", "pdf") if is_primary() else ():
        final = f"{stem}.{ext}"
        directory = os.path.dirname(final) or "."
        fd, tmp = tempfile.mkstemp(prefix=".fig.", suffix=f".{ext}", dir=directory)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=150)
            os.chmod(tmp, published_mode())
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        paths.append(final)
    plt.close(fig)
    return paths


def _plain_log(axis) -> None:
    """Log-axis tick labels as plain numbers (0.5, 2, 200): every power of ten, and the minor
    ticks at 2 and 5 times one when the axis spans at most two decades (so that a narrow axis
    has labels and a wide one is not crowded)."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _) -> str:
        low, high = sorted(abs(b) for b in axis.get_view_interval())
        if low <= 0 or high / low > 100:  # a wide axis: the powers of ten suffice
            return ""
        return f"{v:g}" if f"{v:.0e}"[0] in "25" else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _legend_below(ax, handles, labels) -> None:
    """A legend under the axes, so that it covers no data."""
    ax.legend(
        handles,
        labels,
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        frameon=False,
    )


def _band(ax, x, mean, std, color, style="-", label=None):
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    ax.plot(x, mean, style, color=color, lw=1.8, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def accuracy_curves(curves: dict, *, title: str = "") -> Figure:
    """Figure 2 layout: train (left) and test (right) accuracy in % against epoch, SB and LB,
    mean over seeds with a +-1 std band.

    `curves[regime]` holds "epoch" and "{train,test}_accuracy_{mean,std}" (fractions) and "n".
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharex=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for regime, c in curves.items():
            _band(
                ax,
                c["epoch"],
                100 * np.asarray(c[f"{split}_accuracy_mean"]),
                100 * np.asarray(c[f"{split}_accuracy_std"]),
                REGIME_COLORS.get(regime, "0.3"),
                label=f"{regime} (B={c['batch_size']}, {c['n']} seeds)",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.set_title(f"{split} accuracy", fontsize=10)
        ax.grid(alpha=0.3)
        finals = [100 * np.asarray(c[f"{split}_accuracy_mean"])[-1] for c in curves.values()]
        ax.set_ylim(min(finals) - 3, min(100.2, max(finals) + (1 if split == "test" else 0.2)))
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
