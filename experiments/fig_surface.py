"""2-D loss surfaces around the SB and LB minimizers of F1, in filter-normalised directions.

    python experiments/fig_surface.py --dataset mnist --data-dir ../shared/data/mnist  # 51 x 51
    python experiments/fig_surface.py --dataset mnist10k --preset quick                # 11 x 11
    python experiments/fig_surface.py --dataset mnist10k --preset quick --replot

For the SB and LB runs of seed 0 .. --seeds - 1 (experiments/fig_sharpness.py's runs, trained
here if missing), the training cross-entropy and accuracy and the test cross-entropy and
accuracy at x + a d1 + b d2 on the --grid x --grid grid of (a, b) in [-span, span]^2
(Li et al. 2018; keskar_repro.measures.landscape): d1 and d2 are Gaussian directions normalised
filter-wise (each Dense kernel's column for an output unit scaled to that column's norm in x),
with the biases and batch norm's scale and offset zero in them (--include-vectors: equal to x
there, as Li et al. do when they include them). SB and LB of a seed draw the same Gaussian
numbers (from fold_in(key(SURFACE_KEY), seed)), each normalised to its own filters. The
objective is evaluated under --bn-policy (default "batch", Table 3's) on the whole splits.

Each grid row is one compiled call (a `lax.map` over its points) and is saved as it finishes
beside the run (<run>/measurements/surface-<hash>.partial.npz), so an interrupted surface
resumes from its last row; the complete surface is cached as JSON there. Writes into --out:

    fig_surface_<dataset>_<preset>.json       the grids and, per regime, the loss at x, the
                                              grid's range and the fraction of it within
                                              0.1 nats of x's loss (train) and within one
                                              point of x's accuracy (test)
    fig_surface_<dataset>_<preset>.{png,pdf}  SB and LB contours of the training loss and
                                              the test accuracy on one colour scale and one
                                              set of levels; the 1-D slice b = 0

Runtime on the 2-core CPU: one point is a forward pass over the training and test splits
(70,000 images on full MNIST, about 1.3 s; 10,000 on mnist10k, about 0.2 s). The paper preset
(51 x 51, seed 0) is 2 x 2,601 points, about 2 hours on full MNIST; the quick preset (11 x 11,
15 epochs) about 2 minutes on mnist10k after fig_sharpness.py's quick runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from keskar_repro.report import experiment  # noqa: E402

STEM = "fig_surface"
SURFACE_KEY = 20170104  # our choice: the directions of seed s from fold_in(key(this), s)
PRESETS = {
    "paper": {"seeds": 1, "epochs": 100, "grid": 51, "span": 1.0, "include_vectors": False},
    "quick": {"seeds": 1, "epochs": 15, "grid": 11, "span": 1.0, "include_vectors": False},
}
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
FLAT_LOSS = 0.1  # nats above x's training loss that still count as "flat" in the summary
FLAT_ACCURACY = 0.01  # test accuracy below x's that still counts (one point)


def options(p: argparse.ArgumentParser) -> None:
    experiment.add_batch_options(p)
    experiment.add_bn_policy_option(p)
    p.add_argument("--grid", type=int, help="points per axis (odd, so that 0 is on it)")
    p.add_argument("--span", type=float, help="the grid covers [-span, span] on both axes")
    p.add_argument(
        "--include-vectors",
        action=argparse.BooleanOptionalAction,
        help="biases and batch norm's scale and offset in the directions (equal to x there)",
    )
    p.add_argument(
        "--points-per-call", type=int, default=1, help="grid points vmapped together (CPU: 1)"
    )


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        "--grid": settings.grid >= 3 and settings.grid % 2 == 1,
        "--span": settings.span > 0,
        "--points-per-call": settings.points_per_call >= 1,
    }


def axis(settings) -> list[float]:
    import numpy as np

    return np.linspace(-settings.span, settings.span, settings.grid).tolist()


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    runs = {regime: experiment.seed_runs(settings, dataset, c) for regime, c in configs.items()}
    bar = experiment.progress_bar(settings, 2 * settings.seeds * settings.grid, "surface rows")
    rows = []
    for pair in zip(*runs.values(), strict=True):
        for regime, run in zip(runs, pair, strict=True):
            grids = measure(run, dataset, settings, on_row=lambda: bar.update(1))
            rows.append({"regime": regime, "seed": run.config.seed, **grids})
    bar.close()
    return {"alphas": axis(settings), "betas": axis(settings), "rows": rows}


def measure(run, dataset, settings: experiment.Settings, on_row) -> dict:
    """The grids of one run (module docstring), cached beside it; resumed row by row."""
    from keskar_repro.store.files import spec_hash
    from keskar_repro.store.measurements import cached_measurement, measurement_dir

    spec = {
        "grid": settings.grid,
        "span": settings.span,
        "include_vectors": settings.include_vectors,
        "bn_policy": settings.bn_policy,
        "key": SURFACE_KEY,
    }
    folder = measurement_dir(run, settings.runs_dir) / "measurements"
    partial_path = folder / f"surface-{spec_hash(spec)}.partial.npz"
    result = cached_measurement(
        run,
        "surface",
        spec,
        lambda: _compute(run, dataset, settings, partial_path, on_row),
        settings.runs_dir,
    )
    partial_path.unlink(missing_ok=True)  # complete: the JSON holds it
    return result


def _compute(run, dataset, settings, partial_path: Path, on_row) -> dict:
    import io
    import time

    import jax
    import numpy as np

    from keskar_repro.measures.landscape import filter_normalized_direction, surface
    from keskar_repro.store.files import write_atomic
    from keskar_repro.store.measurements import splits_of
    from keskar_repro.training.objective import data_metrics_fn, metrics_data

    t0 = time.perf_counter()
    fn = data_metrics_fn(run.config.model(), bn_policy=settings.bn_policy)
    data = metrics_data(run.batch_stats, splits_of(dataset))
    key = jax.random.fold_in(jax.random.key(SURFACE_KEY), run.config.seed)
    d1, d2 = (
        filter_normalized_direction(
            jax.random.fold_in(key, i), run.params, include_vectors=settings.include_vectors
        )  # fmt: skip
        for i in (1, 2)
    )
    partial = None
    if partial_path.is_file():
        with np.load(partial_path) as stored:
            partial = {k: stored[k] for k in stored.files}

    def save(i: int, result: dict) -> None:
        blob = io.BytesIO()
        np.savez(blob, **result)
        write_atomic(partial_path, blob.getvalue())
        on_row()

    grids = surface(fn, run.params, d1, d2, axis(settings), axis(settings), data=data,
                    partial_result=partial, on_row=save,
                    points_per_call=settings.points_per_call)  # fmt: skip
    return {
        **{k: grids[k].tolist() for k in METRICS},
        "seconds": time.perf_counter() - t0,
    }


def summarize(results: dict) -> dict:
    """Per regime (mean over seeds): x's training loss and test accuracy, the grid's maximum
    training loss, and the fractions of the grid within FLAT_LOSS nats of x's training loss and
    within FLAT_ACCURACY of x's test accuracy."""
    import numpy as np

    centre = len(results["alphas"]) // 2
    out = {}
    for regime in ("SB", "LB"):
        rows = [r for r in results["rows"] if r["regime"] == regime]
        loss = [np.asarray(r["train_loss"]) for r in rows]
        acc = [np.asarray(r["test_accuracy"]) for r in rows]
        out[regime] = {
            "train_loss_at_x": float(np.mean([g[centre, centre] for g in loss])),
            "test_accuracy_at_x": float(np.mean([g[centre, centre] for g in acc])),
            "train_loss_max": float(np.mean([g.max() for g in loss])),
            "flat_loss_fraction": float(
                np.mean([np.mean(g <= g[centre, centre] + FLAT_LOSS) for g in loss])
            ),
            "flat_accuracy_fraction": float(
                np.mean([np.mean(g >= g[centre, centre] - FLAT_ACCURACY) for g in acc])
            ),
            "seeds": len(rows),
        }
    return {"regimes": out, "flat_loss_nats": FLAT_LOSS, "flat_accuracy": FLAT_ACCURACY}


def text(results: dict) -> str:
    lines = ["2-D surfaces (filter-normalised directions), mean over seeds:"]
    for regime, e in results["summary"]["regimes"].items():
        lines.append(
            f"  {regime}: train loss at x {e['train_loss_at_x']:.4g}, max {e['train_loss_max']:.3g}"
            f"; within {FLAT_LOSS} nats: {e['flat_loss_fraction']:.0%} of the grid; test "
            f"accuracy at x {e['test_accuracy_at_x']:.2%}, within one point: "
            f"{e['flat_accuracy_fraction']:.0%}"
        )
    return "\n".join(lines)


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    """Seed 0: SB and LB contours of the training loss (log-spaced levels) and of the test
    accuracy (one colour scale for both), and the 1-D slice b = 0 of each."""
    import matplotlib.pyplot as plt
    import numpy as np

    from keskar_repro.report import plots

    a, b = np.asarray(results["alphas"]), np.asarray(results["betas"])
    first = {r["regime"]: r for r in results["rows"] if r["seed"] == results["rows"][0]["seed"]}
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.2))
    loss = {g: np.asarray(first[g]["train_loss"]) for g in first}
    acc = {g: 100 * np.asarray(first[g]["test_accuracy"]) for g in first}
    low = min(v.min() for v in loss.values())
    loss_levels = np.geomspace(max(low, 1e-6), max(v.max() for v in loss.values()), 15)
    acc_levels = np.linspace(min(v.min() for v in acc.values()), 100, 15)
    for col, regime in enumerate(("SB", "LB")):
        for row, (grid, levels, cmap, what) in enumerate(
            (
                (loss[regime], loss_levels, "viridis", "training cross-entropy"),
                (acc[regime], acc_levels, "magma", "test accuracy (%)"),
            )
        ):
            ax = axes[row, col]
            norm = plt.matplotlib.colors.LogNorm() if row == 0 else None
            filled = ax.contourf(b, a, grid, levels=levels, cmap=cmap, norm=norm)
            ax.contour(b, a, grid, levels=levels, colors="k", linewidths=0.3)
            ax.plot(0, 0, "w+")
            ax.set_title(f"{regime}: {what}")
            ax.set_xlabel("b (d2)")
            ax.set_ylabel("a (d1)")
            fig.colorbar(filled, ax=ax, format="%.3g")
    centre = len(b) // 2
    for row, grids, label in ((0, loss, "training cross-entropy"), (1, acc, "test accuracy (%)")):
        ax = axes[row, 2]
        for regime, grid in grids.items():
            ax.plot(a, grid[:, centre], label=regime)
        ax.set_xlabel("a (b = 0)")
        ax.set_ylabel(label)
        if row == 0:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("1-D slice along d1")
    fig.tight_layout()
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_surface",
    stem=STEM,
    doc=__doc__,
    order=5,  # after fig_sharpness (its runs); trains nothing of its own
    presets=PRESETS,
    compute=compute,
    summarize=summarize,
    text=text,
    draw=draw,
    options=options,
    checks=checks,
)

if __name__ == "__main__":
    experiment.cli(SPEC)
