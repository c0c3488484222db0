"""Figure 5 for F1: warm starts: SB for k epochs, then LB; test accuracy and sharpness vs k.

    python experiments/fig_warm_start.py --dataset mnist10k
    python experiments/fig_warm_start.py --dataset mnist10k --replot

The paper shows this figure only for F2 and C1: LB runs started from SB iterates of later and
later epochs k generalize like SB once k is large enough (the SB phase has chosen a flat
basin), and their sharpness falls accordingly. Here the SB run of experiments/fig_sharpness.py
keeps snapshots after k = 0, 1, 2, 5, 10, 20, 50, ... epochs; from each, an LB run (the paper's
LB batch, a fresh Adam state, the seed's data order) trains for --lb-epochs epochs; all warm
starts of one seed train in one vmapped program. k = 0 is the plain LB run from the initial
point. For each result: test accuracy and full-space sharpness (Metric 2.1, 10 L-BFGS-B
iterations, BN policy "batch") for each epsilon; the SB run's own test accuracy for reference.
Writes, into --out:

    fig5_warm_start_<dataset>_<preset>.json
    fig5_warm_start_<dataset>_<preset>.{png,pdf}

Runtime and result on the 2-core CPU: the quick preset on mnist10k (k = 0, 1, 2, 5, 10, 15,
10 LB epochs each, 1 seed) takes about 4 minutes once experiments/fig_sharpness_training.py has
kept the SB snapshots; the paper preset about 15 minutes (figures/README.md).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, stats, study_plots  # noqa: E402  (no JAX at import)

STEM = "fig5_warm_start"
PRESETS = {
    "paper": {"seeds": 1, "epochs": 100, "lb_epochs": 100, "epsilons": [1e-3, 5e-4]},
    "quick": {"seeds": 1, "epochs": 15, "lb_epochs": 10, "epsilons": [1e-3]},
}


def options(p) -> None:
    experiment.add_batch_options(p)
    p.add_argument("--lb-epochs", type=int, help="LB epochs after each warm start")
    experiment.add_epsilons_option(p)


def checks(settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        "--lb-epochs": settings.lb_epochs >= 1,
        **experiment.epsilons_check(settings),
    }


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.store.measurements import run_record
    from keskar_repro.store.runs import run_dir
    from keskar_repro.training.protocol import snapshot_schedule

    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    ks = snapshot_schedule(settings.epochs)
    sb_runs = experiment.seed_runs(settings, dataset, configs["SB"], snapshot_epochs=ks)
    lb = dataclasses.replace(configs["LB"], epochs=settings.lb_epochs)
    warm_configs = [
        dataclasses.replace(
            lb,
            seed=run.config.seed,
            warm_start=f"{run_dir(run.config, settings.runs_dir).name}@{k}",
        )
        for run in sb_runs
        for k in ks
    ]
    warm_runs = experiment.get_runs(settings, dataset, warm_configs)
    bar = experiment.progress_bar(settings, len(warm_runs) + len(sb_runs), "sharpness")
    rows = []
    for run in warm_runs:
        rows.append(
            {
                "k": run.config.warm_start_source[1],
                "run_dir": str(run_dir(run.config, settings.runs_dir)),
                "warm_start": run.config.warm_start,
                **run_record(run, dataset, settings.epsilons, root=settings.runs_dir),
            }
        )
        bar.update(1)
        bar.set_postfix_str(f"seed {run.config.seed} k={rows[-1]['k']}")
    sb_rows = []
    for run in sb_runs:  # the SB runs whose snapshots were the warm starts
        sb_rows.append(run_record(run, dataset, settings.epsilons, root=settings.runs_dir))
        bar.update(1)
    bar.close()
    return {"k": ks, "rows": rows, "sb_rows": sb_rows}


def summarize(results: dict) -> dict:
    """Mean +- std over seeds per k of test accuracy and sharpness; the SB reference."""
    ks, rows, sb_rows = results["k"], results["rows"], results["sb_rows"]
    epsilons = list(sb_rows[0]["sharpness"])
    by_k = [[r for r in rows if r["k"] == k] for k in ks]
    return {
        "k": ks,
        "test_accuracy": [stats.record_stats(group, "test_accuracy") for group in by_k],
        "train_accuracy": [stats.record_stats(group, "train_accuracy") for group in by_k],
        "sharpness": {
            eps: [stats.record_stats(group, f"sharpness/{eps}") for group in by_k]
            for eps in epsilons
        },
        "sb_test_accuracy": stats.record_stats(sb_rows, "test_accuracy"),
        "sb_sharpness": {eps: stats.record_stats(sb_rows, f"sharpness/{eps}") for eps in epsilons},
    }


def text(results: dict) -> str:
    s = results["summary"]
    cfg = results["config"]
    lines = [
        f"Figure 5 for F1 on {results['dataset']['name']}: SB (B={cfg['sb_batch']}) for k "
        f"epochs, then LB (B={cfg['lb_batch']}) for {cfg['lb_epochs']} epochs"
    ]
    epsilons = list(s["sharpness"])
    lines.append(
        "  k    test acc (%)    " + "    ".join(f"sharpness eps={float(e):g}" for e in epsilons)
    )
    for i, k in enumerate(s["k"]):
        acc = stats.stats_text(s["test_accuracy"][i], "6.2f", 100, ".2f")
        sharp = "    ".join(
            f"{stats.stats_text(s['sharpness'][e][i], '>10.3g', std_spec='<8.2g'):<22}"
            for e in epsilons
        )
        lines.append(f"  {k:<4} {acc:<15} {sharp}")
    sb = stats.stats_text(s["sb_test_accuracy"], ".2f", 100)
    sb_sharp = ", ".join(f"eps={float(e):g}: {s['sb_sharpness'][e]['mean']:.3g}" for e in epsilons)
    lines.append(f"  SB alone: test accuracy {sb}; sharpness " + sb_sharp)
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    cfg = results["config"]
    fig = study_plots.warm_start_plot(
        results["summary"],
        title=f"Figure 5 for F1 on {results['dataset']['name']}: SB (B={cfg['sb_batch']}) "
        f"k epochs, then LB (B={cfg['lb_batch']}) {cfg['lb_epochs']} epochs",
    )
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_warm_start",
    stem=STEM,
    doc=__doc__,
    order=3,
    presets=PRESETS,
    compute=compute,
    summarize=summarize,
    text=text,
    draw=draw,
    options=options,
    checks=checks,
    bn_policy="batch",
)

if __name__ == "__main__":
    experiment.cli(SPEC)
