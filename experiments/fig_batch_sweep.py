"""Figure 4 for F1: test accuracy and sharpness against batch size, for a fixed epoch budget.

    python experiments/fig_batch_sweep.py --dataset mnist10k
    python experiments/fig_batch_sweep.py --dataset mnist10k --replot

The paper shows this figure only for F2 and C1 (100 epochs each): test accuracy holds up to a
threshold batch size and falls beyond it, while sharpness rises. Here F1 trains with Adam for
the same number of epochs at each batch size of a log-spaced range: 32, 64, 128, ... up to 10%
of the training set, then 10%, 20%, 50% and 100% of it (full-batch Adam), all seeds of a batch
size in one vmapped program. For each run: test accuracy and full-space sharpness (Metric 2.1,
10 L-BFGS-B iterations, BN policy "batch") for each epsilon. "Accuracy starts to fall" at the
first batch size above the best one whose mean test accuracy is below the best mean by more than
max(2 standard errors, 0.1 points). Writes, into --out:

    fig4_batch_sweep_<dataset>_<preset>.json
    fig4_batch_sweep_<dataset>_<preset>.{png,pdf}

Runtime and result on the 2-core CPU: the quick preset on mnist10k (batch 32, 256 and 2000,
5 epochs, 1 seed) takes about 2 minutes; the paper preset (9 batch sizes x 2 seeds x 100
epochs) about 40 minutes (figures/README.md). On full MNIST (12 batch sizes, 256 to 60,000)
it is several hours, so it is measured in parts, a few batch sizes per sitting, each into its
own folder, then merged (experiment.Parts; the merged JSON is the one a single run would write):

    python experiments/fig_batch_sweep.py --dataset mnist --data-dir ../shared/data/mnist \
        --batch-sizes 32,64,128 --out parts/a      # ... then the other batch sizes into parts/b ...
    python experiments/fig_batch_sweep.py --dataset mnist --out figures \
        --merge parts/a/fig4_batch_sweep_mnist_paper.json parts/b/fig4_batch_sweep_mnist_paper.json
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, stats, study_plots  # noqa: E402  (no JAX at import)

STEM = "fig4_batch_sweep"
PRESETS = {
    "paper": {"seeds": 2, "epochs": 100, "batch_sizes": None, "epsilons": [1e-3, 5e-4]},
    "quick": {"seeds": 1, "epochs": 5, "batch_sizes": [32, 256, 2000], "epsilons": [1e-3]},
}
MIN_DROP_POINTS = 0.1


def sweep_batch_sizes(n_train: int) -> list[int]:
    """32, 64, ... (powers of two below 10% of n_train), then 10%, 20%, 50% and 100%."""
    tenth = round(0.1 * n_train)
    powers = [2**i for i in range(5, 30) if 2**i < tenth]
    return sorted(set(powers) | {tenth, round(0.2 * n_train), round(0.5 * n_train), n_train})


def options(p) -> None:
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ..., n-1)")
    p.add_argument("--epochs", type=int, help="epoch budget of every run")
    p.add_argument(
        "--batch-sizes",
        type=experiment.int_list,
        help="comma-separated; default (paper): 32, 64, ... up to 10%%, then 10, 20, 50, 100%%",
    )
    experiment.add_epsilons_option(p)


def checks(settings) -> dict[str, bool]:
    return {
        "--seeds": settings.seeds >= 1,
        "--epochs": settings.epochs >= 1,
        "--batch-sizes": settings.batch_sizes is None or min(settings.batch_sizes) >= 1,
        **experiment.epsilons_check(settings),
    }


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.errors import UserError
    from keskar_repro.store.measurements import run_record
    from keskar_repro.training.train import TrainConfig

    batches = settings.batch_sizes or sweep_batch_sizes(dataset.n_train)
    too_big = [b for b in batches if b > dataset.n_train]
    if too_big:
        raise UserError(f"--batch-sizes {too_big} exceed the {dataset.n_train} training images")
    resolved["batch_sizes"] = batches
    print(
        f"{dataset.name}: batch sizes {batches}, {settings.seeds} seeds x {settings.epochs} epochs",
        file=sys.stderr,
    )
    runs = []
    for batch in batches:
        config = TrainConfig(
            dataset=dataset.name,
            batch_size=batch,
            epochs=settings.epochs,
            hidden=settings.hidden,
            init=settings.init,
        )
        runs += experiment.seed_runs(settings, dataset, config)
    bar = experiment.progress_bar(settings, len(runs), "sharpness")
    rows = []
    for run in runs:
        rows.append(run_record(run, dataset, settings.epsilons, root=settings.runs_dir))
        bar.update(1)
    bar.close()
    return {"rows": rows}


def summarize(results: dict) -> dict:
    """Mean +- std per batch size of accuracy and sharpness, and where accuracy starts to fall
    (the first batch above the best whose mean is below it by more than max(2 standard errors,
    MIN_DROP_POINTS))."""
    batches, rows = results["config"]["batch_sizes"], results["rows"]
    by_batch = [[r for r in rows if r["batch_size"] == b] for b in batches]
    acc = [stats.record_stats(group, "test_accuracy") for group in by_batch]
    epsilons = list(rows[0]["sharpness"])
    best = max(range(len(batches)), key=lambda i: acc[i]["mean"])
    falls_at, rule_detail = None, []
    for i in range(best + 1, len(batches)):
        n = acc[i]["n"]
        stderr = math.sqrt(acc[best]["std"] ** 2 / n + acc[i]["std"] ** 2 / n)
        margin = max(2 * 100 * stderr, MIN_DROP_POINTS)
        drop = 100 * (acc[best]["mean"] - acc[i]["mean"])
        rule_detail.append({"batch_size": batches[i], "drop_points": drop, "margin": margin})
        if falls_at is None and drop > margin:
            falls_at = batches[i]
    return {
        "batch_sizes": batches,
        "test_accuracy": acc,
        "train_accuracy": [stats.record_stats(g, "train_accuracy") for g in by_batch],
        "sharpness": {
            eps: [stats.record_stats(g, f"sharpness/{eps}") for g in by_batch] for eps in epsilons
        },
        "best_batch_size": batches[best],
        "falls_at": falls_at,
        "falls_rule": "first batch above the best whose mean test accuracy is below the best "
        f"by more than max(2 standard errors, {MIN_DROP_POINTS} points)",
        "falls_detail": rule_detail,
    }


def text(results: dict) -> str:
    s = results["summary"]
    epsilons = list(s["sharpness"])
    lines = [
        f"Figure 4 for F1 on {results['dataset']['name']}: {results['config']['epochs']} "
        f"epochs at every batch size, {results['config']['seeds']} seed(s)",
        "  batch   test acc (%)     train acc (%)  "
        + "  ".join(f"sharpness eps={float(e):g}" for e in epsilons),
    ]
    for i, b in enumerate(s["batch_sizes"]):
        acc = stats.stats_text(s["test_accuracy"][i], "6.2f", 100, ".2f")
        train = s["train_accuracy"][i]
        sharp = "  ".join(
            f"{stats.stats_text(s['sharpness'][e][i], '>9.3g', std_spec='<8.2g'):<21}"
            for e in epsilons
        )
        lines.append(f"  {b:<7} {acc:<16} {100 * train['mean']:6.2f}         {sharp}")
    falls = s["falls_at"]
    lines.append(
        f"  best test accuracy at batch {s['best_batch_size']}; accuracy starts to fall at "
        + (f"batch {falls}" if falls else "no batch size in the range")
        + f" ({s['falls_rule']})"
    )
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    fig = study_plots.batch_sweep_plot(
        results["summary"],
        title=f"Figure 4 for F1 on {results['dataset']['name']}: "
        f"{results['config']['epochs']} epochs at every batch size",
    )
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_batch_sweep",
    stem=STEM,
    doc=__doc__,
    order=4,
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
