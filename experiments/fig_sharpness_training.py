"""Figure 6 for F1: sharpness against training cross-entropy along SB and LB training.

    python experiments/fig_sharpness_training.py --dataset mnist10k
    python experiments/fig_sharpness_training.py --dataset mnist10k --replot

The paper shows this figure only for F2 and C1: along training, the sharpness of the SB iterates
rises and then falls as the loss decreases, while that of the LB iterates keeps rising. Here the
SB and LB runs of experiments/fig_sharpness.py are trained (again, deterministically, when they
were saved without snapshots) keeping snapshots after epochs 1, 2, 5, 10, 20, 50, ... and the
last; at each snapshot we measure the training cross-entropy and Metric 2.1 in the full space
(10 L-BFGS-B iterations, BN policy "batch"), for each epsilon, and with --hessian (both
presets) the Hessian's largest eigenvalue (the notion hessian_max: Lanczos to a relative
tolerance of 1e-3, about 20-50 HVPs, each about 2.3 objective evaluations). Writes, into
--out:

    fig6_sharpness_training_<dataset>_<preset>.json
    fig6_sharpness_training_<dataset>_<preset>.{png,pdf}

Runtime and result on the 2-core CPU: the quick preset on mnist10k about 8 minutes (mostly the
10 sharpness maximisations of 5 snapshots x 2 regimes); along training the SB sharpness falls
from 114 after epoch 1 to 8.2 after epoch 15, the LB one stays at 167-178 (eps 1e-3, seed 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, study_plots  # noqa: E402  (no JAX: --replot stays light)

STEM = "fig6_sharpness_training"
PRESETS = {
    "paper": {"seeds": 1, "epochs": 100, "epsilons": [1e-3, 5e-4], "hessian": True},
    "quick": {"seeds": 1, "epochs": 15, "epsilons": [1e-3], "hessian": True},
}


def options(p) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument(
        "--hessian",
        action=argparse.BooleanOptionalAction,
        help="also the Hessian's largest eigenvalue at each snapshot (the notion hessian_max)",
    )


def checks(settings) -> dict[str, bool]:
    return {**experiment.batch_checks(settings), **experiment.epsilons_check(settings)}


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.store.measurements import notion_measurement, run_record, snapshot_of
    from keskar_repro.training.protocol import snapshot_schedule

    schedule = snapshot_schedule(settings.epochs)
    measured = [e for e in schedule if e >= 1]
    trained = {
        regime: experiment.seed_runs(settings, dataset, config, snapshot_epochs=schedule)
        for regime, config in experiment.sb_lb_configs(settings, dataset, resolved).items()
    }
    n_jobs = sum(len(runs) for runs in trained.values()) * len(measured)
    bar = experiment.progress_bar(settings, n_jobs, "sharpness along training")
    rows = []
    for regime, runs in trained.items():
        for run in runs:
            for epoch in measured:
                snapshot = snapshot_of(run, epoch, settings.runs_dir)
                record = run_record(snapshot, dataset, settings.epsilons, root=settings.runs_dir)
                curvature = {}
                if settings.hessian:  # the same at every epsilon: cached once
                    curvature["lambda_max"] = notion_measurement(
                        snapshot, dataset, "hessian_max", settings.epsilons[0],
                        root=settings.runs_dir,
                    )["value"]  # fmt: skip
                rows += [
                    {
                        "regime": regime,
                        "seed": run.config.seed,
                        "epoch": epoch,
                        "epsilon": float(eps),
                        "train_loss": record["train_loss"],
                        "train_accuracy": record["train_accuracy"],
                        "test_accuracy": record["test_accuracy"],
                        "value": value,
                        "report": record["sharpness_reports"][eps],
                        **curvature,
                    }
                    for eps, value in record["sharpness"].items()
                ]
                bar.update(1)
                bar.set_postfix_str(f"{regime} seed {run.config.seed} epoch {epoch}")
    bar.close()
    return {"snapshot_epochs": schedule, "rows": rows}


def summarize(results: dict) -> dict:
    """Per regime and epsilon (first seed): sharpness at the first and last snapshot, its
    largest value and where, and whether it rose monotonically while the loss fell."""
    rows, out = results["rows"], {}
    for regime in ("SB", "LB"):
        for eps in sorted({r["epsilon"] for r in rows}, reverse=True):
            seed = min(r["seed"] for r in rows if r["regime"] == regime)
            pts = sorted(
                (r for r in rows if (r["regime"], r["epsilon"], r["seed"]) == (regime, eps, seed)),
                key=lambda r: r["epoch"],
            )
            peak = max(pts, key=lambda r: r["value"])
            values = [p["value"] for p in pts]
            out[f"{regime}/{eps:g}"] = {
                "seed": seed,
                "first": {k: pts[0][k] for k in ("epoch", "train_loss", "value")},
                "last": {k: pts[-1][k] for k in ("epoch", "train_loss", "value")},
                "peak": {k: peak[k] for k in ("epoch", "train_loss", "value")},
                "monotone_increasing": all(
                    b >= a for a, b in zip(values, values[1:], strict=False)
                ),
            }
        if pts and "lambda_max" in pts[0]:
            curve = [p["lambda_max"] for p in pts]
            out[f"{regime}/lambda_max"] = {
                "seed": seed,
                "first": {"epoch": pts[0]["epoch"], "value": curve[0]},
                "last": {"epoch": pts[-1]["epoch"], "value": curve[-1]},
                "peak": {"epoch": pts[curve.index(max(curve))]["epoch"], "value": max(curve)},
            }
    return out


def text(results: dict) -> str:
    lines = [f"Figure 6 for F1 on {results['dataset']['name']}: sharpness along training"]
    for key, s in results["summary"].items():
        if key.endswith("lambda_max"):
            lines.append(
                f"  {key} (seed {s['seed']}): epoch {s['first']['epoch']} "
                f"{s['first']['value']:.3g} -> epoch {s['last']['epoch']} "
                f"{s['last']['value']:.3g}; peak {s['peak']['value']:.3g} at epoch "
                f"{s['peak']['epoch']}"
            )
            continue
        lines.append(
            f"  {key} (seed {s['seed']}): epoch {s['first']['epoch']} (CE "
            f"{s['first']['train_loss']:.3g}) {s['first']['value']:.3g} -> epoch "
            f"{s['last']['epoch']} (CE {s['last']['train_loss']:.2g}) {s['last']['value']:.3g}; "
            f"peak {s['peak']['value']:.3g} at epoch {s['peak']['epoch']}; monotone rise: "
            f"{'yes' if s['monotone_increasing'] else 'no'}"
        )
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    fig = study_plots.sharpness_vs_loss_plot(
        results["rows"], title=f"Figure 6 for F1 on {results['dataset']['name']}"
    )
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_sharpness_training",
    stem=STEM,
    doc=__doc__,
    order=2,
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
