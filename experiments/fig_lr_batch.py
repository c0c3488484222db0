"""The learning-rate x batch-size study for F1: test accuracy and generalization gap heatmaps.

    python experiments/fig_lr_batch.py --dataset mnist10k
    python experiments/fig_lr_batch.py --dataset mnist10k --replot

How do batch size, learning rate and the number of epochs affect an MLP? F1 trains with Adam at
every (learning rate, batch size) cell of a grid for a fixed epoch budget. All runs of one batch
size (every learning rate and seed) train in one compiled, vmapped program: the learning rate
lives in the Adam state, so the grid costs one compilation per batch size. A run whose loss
becomes NaN is recorded as diverged, not an error. Reported per cell (mean over seeds): final
test accuracy and the generalization gap (train minus test accuracy, in points), both from
the exact evaluation after the last epoch (BN policy "batch"), and accuracy-vs-epoch curves for
the corner cells and the best cell. Writes, into --out:

    fig_lr_batch_<dataset>_<preset>.json
    fig_lr_batch_heatmaps_<dataset>_<preset>.{png,pdf}
    fig_lr_batch_curves_<dataset>_<preset>.{png,pdf}

Runtime and result on the 2-core CPU: the quick preset on mnist10k (3 learning rates x batch
64 and 800, 3 epochs) takes about 1 minute; the paper preset about 30 minutes, best cell lr
1e-3 at batch 32 (figures/README.md). On full MNIST (about 2 hours) it can be measured a few
batch sizes per sitting (--batch-sizes, each into its own --out) and merged with --merge, as
Figure 4 (experiments/fig_batch_sweep.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, stats, study_plots  # noqa: E402  (no JAX at import)

STEM = "fig_lr_batch"
PRESETS = {
    # 50 epochs, not the paper's 100: 20 cells x 100 epochs of F1 are ~1 h on a 2-core CPU, and
    # the budget is stated in the figure and the JSON.
    "paper": {
        "seeds": 1,
        "epochs": 50,
        "learning_rates": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        "batch_sizes": None,
    },
    "quick": {"seeds": 1, "epochs": 3, "learning_rates": [1e-4, 1e-3, 1e-2], "batch_sizes": None},
}


def grid_batch_sizes(n_train: int, preset: str) -> list[int]:
    """32, 128, 512, ... (powers of 4 below 10% of n_train) and 10%; quick: 64 and 10%."""
    tenth = round(0.1 * n_train)
    if preset == "quick":
        return [64, tenth]
    return sorted({32 * 4**i for i in range(10) if 32 * 4**i < tenth} | {tenth})


def options(p) -> None:
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ..., n-1)")
    p.add_argument("--epochs", type=int, help="epoch budget of every run")
    p.add_argument("--learning-rates", type=experiment.float_list, help="e.g. 1e-4,1e-3,1e-2")
    p.add_argument(
        "--batch-sizes",
        type=experiment.int_list,
        help="comma-separated; default 32, 128, 512, ... below 10%% of the data, and 10%%",
    )


def checks(settings) -> dict[str, bool]:
    return {
        "--seeds": settings.seeds >= 1,
        "--epochs": settings.epochs >= 1,
        "--learning-rates": bool(settings.learning_rates) and min(settings.learning_rates) > 0,
        "--batch-sizes": settings.batch_sizes is None or min(settings.batch_sizes) >= 1,
    }


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.errors import UserError
    from keskar_repro.training.train import TrainConfig, default_runs_per_program

    batches = settings.batch_sizes or grid_batch_sizes(dataset.n_train, settings.preset)
    too_big = [b for b in batches if b > dataset.n_train]
    if too_big:
        raise UserError(f"--batch-sizes {too_big} exceed the {dataset.n_train} training images")
    resolved["batch_sizes"] = batches
    group = settings.runs_per_program or default_runs_per_program()
    print(
        f"{dataset.name}: learning rates {settings.learning_rates} x batch sizes {batches}, "
        f"{settings.seeds} seed(s) x {settings.epochs} epochs; "
        + (
            "one vmapped program per batch size" if group is None else f"{group} run(s) per program"
        ),
        file=sys.stderr,
    )
    configs = [
        TrainConfig(
            dataset=dataset.name,
            batch_size=b,
            learning_rate=lr,
            seed=s,
            epochs=settings.epochs,
            hidden=settings.hidden,
            init=settings.init,
        )
        for b in batches
        for lr in settings.learning_rates
        for s in range(settings.seeds)
    ]
    runs = experiment.get_runs(settings, dataset, configs, on_divergence="stop")
    rows = [
        {
            "learning_rate": r.config.learning_rate,
            "batch_size": r.config.batch_size,
            "seed": r.config.seed,
            "diverged": r.diverged,
            "stop_reason": r.stop_reason,
            "train_seconds": r.train_seconds,
            "history": r.history,
        }
        for r in runs
    ]
    return {"rows": rows}


def summarize(results: dict) -> dict:
    """Per cell: mean final test accuracy and train - test gap (None where a run diverged);
    the best cell; accuracy curves of the four corners and the best cell."""
    lrs, batches = results["config"]["learning_rates"], results["config"]["batch_sizes"]
    rows, test, gap, cells = results["rows"], [], [], {}
    for lr in lrs:
        test.append([])
        gap.append([])
        for b in batches:
            group = [r for r in rows if r["learning_rate"] == lr and r["batch_size"] == b]
            if any(r["diverged"] for r in group):
                test[-1].append(None)
                gap[-1].append(None)
                continue
            final = [
                (r["history"]["train_accuracy"][-1], r["history"]["test_accuracy"][-1])
                for r in group
            ]
            test[-1].append(100 * sum(t for _, t in final) / len(final))
            gap[-1].append(100 * sum(tr - t for tr, t in final) / len(final))
            cells[(lr, b)] = {
                "learning_rate": lr,
                "batch_size": b,
                **stats.mean_std_curves(
                    [r["history"] for r in group], ("train_accuracy", "test_accuracy")
                ),
            }
    finite = [(v, i, j) for i, row in enumerate(test) for j, v in enumerate(row) if v is not None]
    best_value, bi, bj = max(finite) if finite else (None, 0, 0)
    chosen = [(lrs[0], batches[0]), (lrs[0], batches[-1]), (lrs[-1], batches[0])]
    chosen += [(lrs[-1], batches[-1]), (lrs[bi], batches[bj])]
    curves = []
    for cell in dict.fromkeys(chosen):
        if cell in cells:
            curves.append(cells[cell])
    return {
        "learning_rates": lrs,
        "batch_sizes": batches,
        "test_accuracy": test,
        "gap": gap,
        "best": {"learning_rate": lrs[bi], "batch_size": batches[bj], "test_accuracy": best_value},
        "curves": curves,
    }


def text(results: dict) -> str:
    s = results["summary"]
    width = 9
    header = "  lr \\ batch " + "".join(f"{b:>{width}}" for b in s["batch_sizes"])

    def table(key: str, title: str) -> list[str]:
        out = [f"  {title}", header]
        for lr, row in zip(s["learning_rates"], s[key], strict=True):
            cells = "".join(
                f"{'diverged':>{width}}" if v is None else f"{v:>{width}.2f}" for v in row
            )
            out.append(f"  {lr:<11g}" + cells)
        return out

    cfg = results["config"]
    lines = [
        f"Learning rate x batch size for F1 on {results['dataset']['name']}: "
        f"{cfg['epochs']} epochs, {cfg['seeds']} seed(s), Adam"
    ]
    lines += table("test_accuracy", "test accuracy (%)")
    lines += table("gap", "train - test accuracy (points)")
    best = s["best"]
    lines.append(
        f"  best: lr {best['learning_rate']:g}, batch {best['batch_size']}: "
        f"{best['test_accuracy']:.2f}%"
    )
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    cfg = results["config"]
    where = f"F1 on {results['dataset']['name']}, {cfg['epochs']} epochs, {cfg['seeds']} seed(s)"
    files = plots.save_figure(
        study_plots.heatmaps(results["summary"], title=f"Learning rate x batch size, {where}"),
        experiment.figure_stem(settings, "fig_lr_batch_heatmaps"),
    )
    files += plots.save_figure(
        study_plots.grid_curves(results["summary"]["curves"], title=f"Accuracy vs epoch, {where}"),
        experiment.figure_stem(settings, "fig_lr_batch_curves"),
    )
    return files


SPEC = experiment.FigureSpec(
    name="fig_lr_batch",
    stem=STEM,
    doc=__doc__,
    order=5,
    presets=PRESETS,
    compute=compute,
    summarize=summarize,
    text=text,
    draw=draw,
    options=options,
    checks=checks,
    parts=experiment.BATCH_SIZE_PARTS,
    bn_policy="batch",
)

if __name__ == "__main__":
    experiment.cli(SPEC)
