"""The figures of the studies beyond the paper's Figures 2, 3 and 7: the batch sweep (Figure 4),
the warm starts (Figure 5), sharpness along training (Figure 6), the learning-rate x batch grid
and the sharpness notions; drawn from results dictionaries alone (no computation here)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from keskar_repro.measures.registry import NOTIONS
from keskar_repro.report.plots import (
    ACCURACY_COLOR,
    LOSS_COLOR,
    REGIME_COLORS,
    _legend_below,
    _plain_log,
)


def _sharpness_lines(ax, x, rows_by_eps: dict, color: str = "tab:red", label: str = "") -> None:
    styles = ("-o", "--s", ":^", "-.v")
    for i, (eps, rows) in enumerate(sorted(rows_by_eps.items(), reverse=True)):
        style = styles[i % len(styles)]
        mean = np.asarray([r["mean"] for r in rows], float)
        std = np.asarray([r["std"] for r in rows], float)
        ax.errorbar(
            x,
            mean,
            yerr=std,
            fmt=style,
            color=color,
            ms=4,
            capsize=2,
            lw=1.4,
            label=f"{label}sharpness, $\\epsilon$={eps:g}",
        )


def _accuracy_and_sharpness(
    x, accuracy: Sequence[dict], sharpness: dict, *, accuracy_label: str, xlabel: str
) -> tuple[Figure, plt.Axes, plt.Axes]:
    """Test accuracy (left axis, %, mean +- std) and sharpness per epsilon (right axis, log)
    against x; the caller sets the x scale, adds its marks and calls `_finish_twin`."""
    fig, acc_ax = plt.subplots(figsize=(6.4, 4.4))
    sharp_ax = acc_ax.twinx()
    acc_ax.errorbar(
        x,
        [100 * a["mean"] for a in accuracy],
        yerr=[100 * a["std"] for a in accuracy],
        fmt="-o",
        color=LOSS_COLOR,
        capsize=2,
        lw=1.8,
        label=accuracy_label,
    )
    _sharpness_lines(sharp_ax, x, {float(k): v for k, v in sharpness.items()})
    sharp_ax.set_yscale("log")
    _plain_log(sharp_ax.yaxis)
    acc_ax.set_xlabel(xlabel)
    acc_ax.set_ylabel("test accuracy (%)", color=LOSS_COLOR)
    sharp_ax.set_ylabel(r"sharpness $\phi$ (%)", color=ACCURACY_COLOR)
    acc_ax.tick_params(axis="y", colors=LOSS_COLOR)
    sharp_ax.tick_params(axis="y", colors=ACCURACY_COLOR)
    return fig, acc_ax, sharp_ax


def _finish_twin(fig: Figure, acc_ax, sharp_ax, title: str) -> Figure:
    lines, labels = acc_ax.get_legend_handles_labels()
    more, more_labels = sharp_ax.get_legend_handles_labels()
    _legend_below(acc_ax, lines + more, labels + more_labels)
    acc_ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def batch_sweep_plot(sweep: dict, *, title: str = "") -> Figure:
    """Figure 4 layout: test accuracy (left axis, %) and full-space sharpness (right axis, log)
    against batch size (log), mean +- std over seeds; a dotted line where accuracy starts to
    fall. `sweep` holds "batch_sizes", "test_accuracy" ({"mean", "std"} per batch),
    "sharpness" ({eps: [{"mean", "std"} per batch]}) and "falls_at" (a batch size or None)."""
    fig, acc_ax, sharp_ax = _accuracy_and_sharpness(
        np.asarray(sweep["batch_sizes"]),
        sweep["test_accuracy"],
        sweep["sharpness"],
        accuracy_label="test accuracy",
        xlabel="batch size",
    )
    if sweep.get("falls_at"):
        acc_ax.axvline(sweep["falls_at"], color="0.4", ls=":", lw=1)
    acc_ax.set_xscale("log")
    _plain_log(acc_ax.xaxis)
    return _finish_twin(fig, acc_ax, sharp_ax, title)


def warm_start_plot(warm: dict, *, title: str = "") -> Figure:
    """Figure 5 layout: test accuracy (left axis) and sharpness (right axis, log) of the LB runs
    warm-started after k SB epochs, against k; the SB run's own test accuracy as a dashed line.
    `warm` holds "k", "test_accuracy" ({"mean", "std"} per k), "sharpness" ({eps: [...]}) and
    "sb_test_accuracy" ({"mean", "std"})."""
    fig, acc_ax, sharp_ax = _accuracy_and_sharpness(
        np.asarray(warm["k"], float),
        warm["test_accuracy"],
        warm["sharpness"],
        accuracy_label="test accuracy after LB",
        xlabel="k: SB epochs before switching to LB",
    )
    acc_ax.set_xscale("symlog", linthresh=1)
    acc_ax.set_xlim(-0.3, 1.3 * max(warm["k"]))
    _plain_log(acc_ax.xaxis)
    sb = warm["sb_test_accuracy"]
    acc_ax.axhline(100 * sb["mean"], color=LOSS_COLOR, ls="--", lw=1, label="SB test accuracy")
    return _finish_twin(fig, acc_ax, sharp_ax, title)


def sharpness_vs_loss_plot(rows: Sequence[dict], *, title: str = "") -> Figure:
    """Figure 6 layout: one panel per epsilon; full-space sharpness against training
    cross-entropy along training, log-log, the loss axis reversed (training proceeds to the
    right); SB and LB lines, each point labelled with its epoch. Where the rows carry the
    Hessian's "lambda_max" (the same at every epsilon), a last panel draws it the same way.

    `rows`: {"regime", "epsilon", "epoch", "train_loss", "value"} per (run, snapshot, eps);
    several seeds of a regime are drawn as separate thin lines."""
    epsilons = sorted({r["epsilon"] for r in rows}, reverse=True)
    panels = [(eps, "value") for eps in epsilons]
    if rows and all("lambda_max" in r for r in rows):
        panels.append((epsilons[0], "lambda_max"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (eps, key) in zip(axes[0], panels, strict=True):
        _along_training(ax, [r for r in rows if r["epsilon"] == eps], key)
        if key == "value":
            ax.set_ylabel(r"sharpness $\phi$ (%)")
            ax.set_title(f"$\\epsilon$ = {eps:g} (labels: epoch)", fontsize=10)
        else:
            ax.set_ylabel(r"Hessian $\lambda_{max}$")
            ax.set_title("largest Hessian eigenvalue (labels: epoch)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _along_training(ax, rows: Sequence[dict], key: str) -> None:
    """`key` against the training cross-entropy, one line per run (regime colour), log-log,
    the loss axis reversed; the first seed's points labelled with their epochs."""
    for regime in ("SB", "LB"):
        seeds = sorted({r["seed"] for r in rows if r["regime"] == regime})
        for i, seed in enumerate(seeds):
            pts = sorted((r for r in rows if (r["regime"], r["seed"]) == (regime, seed)),
                         key=lambda r: r["epoch"])  # fmt: skip
            x = [p["train_loss"] for p in pts]
            y = [p[key] for p in pts]
            ax.plot(x, y, "-o", color=REGIME_COLORS[regime], ms=4, lw=1.4,
                    label=regime if i == 0 else None)  # fmt: skip
            if i == 0:
                for p in pts:
                    ax.annotate(str(p["epoch"]), (p["train_loss"], p[key]), fontsize=6,
                                xytext=(2, 3), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.invert_xaxis()
    ax.set_xlabel("training cross-entropy (reversed: training goes right)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def heatmaps(grid: dict, *, title: str = "") -> Figure:
    """Two heatmaps over learning rate (rows) x batch size (columns): test accuracy (%) and the
    generalization gap (train minus test accuracy, points), mean over seeds, values printed.
    `grid` holds "learning_rates", "batch_sizes", "test_accuracy" and "gap" (nested lists
    [lr][batch] of percentages, None where the run diverged)."""
    lrs, batches = grid["learning_rates"], grid["batch_sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(4.0 + 1.6 * len(batches), 0.6 * len(lrs) + 2.4))
    for ax, key, label, cmap in (
        (axes[0], "test_accuracy", "test accuracy (%)", "viridis"),
        (axes[1], "gap", "train - test accuracy (points)", "magma_r"),
    ):
        values = np.array([[np.nan if v is None else v for v in row] for row in grid[key]])
        image = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower")
        fig.colorbar(image, ax=ax, shrink=0.85)
        for i in range(len(lrs)):
            for j in range(len(batches)):
                v = values[i, j]
                text = "diverged" if np.isnan(v) else f"{v:.2f}"
                rgb = image.cmap(image.norm(v))[:3] if np.isfinite(v) else (1, 1, 1)
                dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k"
                )
        ax.set_xticks(range(len(batches)))
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_yticks(range(len(lrs)))
        ax.set_yticklabels([f"{lr:g}" for lr in lrs])
        ax.set_xlabel("batch size")
        ax.set_ylabel("Adam learning rate")
        ax.set_title(label, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def grid_curves(cells: Sequence[dict], *, title: str = "") -> Figure:
    """Test accuracy (%) against epoch for a few (learning rate, batch) cells of the grid, mean
    over seeds; `cells`: {"learning_rate", "batch_size", "epoch", "test_accuracy_mean",
    "train_accuracy_mean"}; solid = test, dotted = train."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for cell, color in zip(cells, colors, strict=False):
        label = f"lr {cell['learning_rate']:g}, B {cell['batch_size']}"
        ax.plot(
            cell["epoch"],
            100 * np.asarray(cell["test_accuracy_mean"]),
            "-",
            color=color,
            label=label,
        )
        ax.plot(cell["epoch"], 100 * np.asarray(cell["train_accuracy_mean"]), ":", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)  (solid test, dotted train)")
    lows = [100 * min(c["test_accuracy_mean"]) for c in cells]
    ax.set_ylim(max(0.0, min(lows) - 2), 100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _rms_panel(ax, rms_by_regime: dict, colors: dict) -> None:
    """The hidden kernels' final RMS entry per layer, mean +- std over seeds, per regime."""
    for regime, rms in rms_by_regime.items():
        layers = [k.split("/")[0] for k in rms]
        means, stds = [v[0] for v in rms.values()], [v[1] for v in rms.values()]
        ax.errorbar(range(len(rms)), means, yerr=stds, marker="o", capsize=3,
                    color=colors[regime], label=regime)  # fmt: skip
    ax.set_xticks(range(len(layers)), layers, rotation=30)
    ax.set(ylabel="kernel RMS entry", title="(a) hidden-kernel scale")
    ax.legend()


def _rms_curves_panel(ax, curves: dict, colors: dict) -> None:
    """Each hidden kernel's RMS entry along training (mean over seeds, +- std band), SB and LB;
    a line per layer, darker for deeper layers."""
    for regime, c in curves.items():
        layers = [k[: -len("_mean")] for k in c if k.endswith("_mean")]
        for i, layer in enumerate(layers):
            mean, std = np.asarray(c[f"{layer}_mean"]), np.asarray(c[f"{layer}_std"])
            alpha = 0.35 + 0.65 * i / max(1, len(layers) - 1)
            label = regime if i == len(layers) - 1 else None
            ax.plot(c["epoch"], mean, color=colors[regime], alpha=alpha, label=label)
            ax.fill_between(c["epoch"], mean - std, mean + std, color=colors[regime], alpha=0.1)
    ax.set_xscale("log")
    ax.set(xlabel="epoch", ylabel="kernel RMS entry",
           title="(a) hidden-kernel scale along training")  # fmt: skip
    ax.legend(title="Dense_0 (light) .. last", fontsize=7)


def notions_figure(summary: dict, *, title: str = "") -> Figure:
    """Four panels from experiments/fig_sharpness_notions.py's summary: (a) the hidden kernels'
    RMS entry along training per layer, SB and LB (mean +- std over seeds; the final values
    per layer where the runs kept no kernel norms); (b) LB / SB of each notion's mean,
    at the trained points and after matching norms (first epsilon; log scale); (c) seed 0:
    value after each rescaling / value at the trained point; (d) Kendall's tau-b of each
    notion (trained points) with the two generalisation gaps and with Metric 2.1, with 95%
    bootstrap intervals, over every measured run where the summary has them, else over the
    SB/LB runs."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    colors = {"SB": "tab:blue", "LB": "tab:red"}
    if summary.get("rms_curves"):
        _rms_curves_panel(axes[0], summary["rms_curves"], colors)
    else:
        _rms_panel(axes[0], summary["rms"], colors)

    eps = summary["gap"][0]["epsilon"]
    gap = [e for e in summary["gap"] if e["epsilon"] == eps]
    notions = [e["notion"] for e in gap]
    names = [NOTIONS[n].label if n in NOTIONS else n for n in notions]  # the registry's labels
    ax, width = axes[1], 0.38
    for i, point in enumerate(("trained", "matched")):
        heights = [e[f"{point}_ratio"] or float("nan") for e in gap]
        ax.bar([j + (i - 0.5) * width for j in range(len(gap))], heights, width, label=point)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(gap)), names, rotation=30, ha="right")
    ax.set(ylabel="LB / SB (means)", title=f"(b) SB/LB gap, eps {eps:g}")
    ax.legend()

    ax = axes[2]
    response = [r for r in summary["response"] if r["epsilon"] == eps]
    points = sorted({r["point"] for r in response})
    for k, point in enumerate(points):
        for regime, marker in (("SB", "o"), ("LB", "s")):
            ys = [
                next(
                    (
                        r["ratio"]
                        for r in response
                        if (r["notion"], r["regime"], r["point"]) == (n, regime, point)
                    ),
                    None,
                )
                or float("nan")
                for n in notions
            ]
            xs = [j + 0.12 * (k - len(points) / 2) for j in range(len(notions))]
            ax.scatter(xs, ys, marker=marker, color=f"C{k}",
                       label=f"{point}" if regime == "SB" else None)  # fmt: skip
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(notions)), names, rotation=30, ha="right")
    ax.set(ylabel="value / value at trained point", title="(c) seed 0 rescaled (o SB, s LB)")
    if points:
        ax.legend(fontsize=7)
    else:  # a part of the seeds without seed 0 (fig_sharpness_notions --first-seed)
        ax.text(0.5, 0.5, "seed 0 not measured", ha="center", transform=ax.transAxes)

    ax = axes[3]
    populations = {t.get("population", "pairs"): t["n"] for t in summary["tau"]}
    population = "all" if "all" in populations else "pairs"
    series = [(s, t) for s, t in (("loss", "tau"), ("accuracy", "tau"), ("metric_2_1", "versus"))
              if any(x["gap"] == s for x in summary.get(t, []))]  # fmt: skip
    for k, (gap_name, key) in enumerate(series):
        taus = [next((t for t in summary[key] if (t["notion"], t["epsilon"], t["point"], t["gap"],
                      t.get("population", "pairs")) == (n, eps, "trained", gap_name, population)),
                     {"tau": None}) for n in notions]  # fmt: skip
        xs = [j + 0.15 * (k - (len(series) - 1) / 2) for j in range(len(notions))]
        ok = [t["tau"] is not None for t in taus]  # undefined where every value ties
        ys = [t["tau"] if o else float("nan") for t, o in zip(taus, ok, strict=True)]
        low = [t["tau"] - t["low"] if o else 0.0 for t, o in zip(taus, ok, strict=True)]
        high = [t["high"] - t["tau"] if o else 0.0 for t, o in zip(taus, ok, strict=True)]
        err = [low, high]
        what = "Metric 2.1" if key == "versus" else f"gap in {gap_name}"
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=what)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(range(len(notions)), names, rotation=30, ha="right")
    runs = "every run" if population == "all" else "SB/LB runs"
    ax.set(ylabel="Kendall tau-b",
           title=f"(d) Kendall tau, {runs} (n {populations[population]})")  # fmt: skip
    ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
