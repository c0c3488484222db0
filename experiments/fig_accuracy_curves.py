"""Figure 2 for F1: train and test accuracy against epoch for SB and LB (mean and band over seeds).

    python experiments/fig_accuracy_curves.py --dataset mnist10k          # the fig_sharpness runs
    python experiments/fig_accuracy_curves.py --dataset mnist10k --replot # redraw from the JSON
    python experiments/fig_accuracy_curves.py --dataset mnist --data-dir ../shared/data/mnist \
        --baseline figures/fig_sharpness_mnist_paper.json             # histories from its JSON

The paper shows this figure only for F2 and C1 (LB reaches train accuracy like SB but lower test
accuracy throughout). The runs are those of experiments/fig_sharpness.py (same configurations,
so nothing is retrained when it has run); the accuracies are the exact per-epoch evaluations
over the whole train and test sets (BN policy "batch"). With --baseline the histories are read
from a fig_sharpness.py results JSON, which keeps every run's (so Figure 2 needs no saved
runs; each run's configuration is checked against this script's). Writes, into --out:

    fig2_accuracy_<dataset>_<preset>.json     curves per run and mean/std per epoch
    fig2_accuracy_<dataset>_<preset>.{png,pdf}

Runtime and result on the 2-core CPU: seconds when experiments/fig_sharpness.py has trained
the runs (the quick preset on mnist10k: final test accuracy SB 96.35 +- 0.35, LB 96.65 +- 0.28,
SB - LB -0.30 points); otherwise the training time of those runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, stats  # noqa: E402  (no JAX at import)

STEM = "fig2_accuracy"
PRESETS = {"paper": {"seeds": 5, "epochs": 100}, "quick": {"seeds": 2, "epochs": 15}}
KEYS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")
checks = experiment.batch_checks


def options(p) -> None:
    experiment.add_batch_options(p)
    experiment.add_baseline_option(p, "per-epoch histories")


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    if settings.baseline:
        runs = baseline_histories(settings.baseline, configs, settings.seeds)
    else:
        runs = trained_histories(settings, dataset, configs)
    curves = {
        regime: {
            "batch_size": config.batch_size,
            "n": sum(r["regime"] == regime for r in runs),
            **stats.mean_std_curves([r["history"] for r in runs if r["regime"] == regime], KEYS),
        }
        for regime, config in configs.items()
    }
    return {"curves": curves, "runs": runs}


def trained_histories(settings, dataset, configs: dict) -> list[dict]:
    """One entry (regime, seed, run_dir, history) per saved (or newly trained) run."""
    from keskar_repro.store.runs import run_dir

    return [
        {
            "regime": regime,
            "seed": r.config.seed,
            "run_dir": str(run_dir(r.config, settings.runs_dir)),
            "history": r.history,
        }
        for regime, config in configs.items()
        for r in experiment.seed_runs(settings, dataset, config)
    ]


def baseline_histories(path: str, configs: dict, seeds: int) -> list[dict]:
    """The same entries read from a fig_sharpness.py results JSON (experiment.baseline_runs
    checks each run's configuration against this script's), plus "baseline": its path."""
    _, found = experiment.baseline_runs(path, configs, seeds)
    keys = ("regime", "seed", "run_dir", "history")
    return [
        {**{k: run[k] for k in keys}, "baseline": path} for runs in found.values() for run in runs
    ]


def summarize(results: dict) -> dict:
    """Final and peak test accuracy per regime, and the SB - LB gap at the last epoch."""
    curves, runs, out = results["curves"], results["runs"], {}
    for regime, c in curves.items():
        test = c["test_accuracy_mean"]
        peak = max(range(len(test)), key=test.__getitem__)
        finals = [100 * r["history"]["test_accuracy"][-1] for r in runs if r["regime"] == regime]
        out[regime] = {
            "final_test_accuracy": stats.mean_std(finals),
            "final_train_accuracy": stats.mean_std(
                [100 * r["history"]["train_accuracy"][-1] for r in runs if r["regime"] == regime]
            ),
            "peak_mean_test_accuracy": 100 * test[peak],
            "peak_epoch": peak + 1,
            "first_epoch_train_accuracy_99": next(
                (e + 1 for e, a in enumerate(c["train_accuracy_mean"]) if a >= 0.99), None
            ),
        }
    if {"SB", "LB"} <= out.keys():
        out["final_gap_sb_minus_lb"] = (
            out["SB"]["final_test_accuracy"][0] - out["LB"]["final_test_accuracy"][0]
        )
    return out


def text(results: dict) -> str:
    s = results["summary"]
    lines = [f"Figure 2 for F1 on {results['dataset']['name']} (accuracy in %, mean +- std)"]
    for regime in ("SB", "LB"):
        r = s[regime]
        lines.append(
            f"  {regime} (B={results['curves'][regime]['batch_size']}): final train "
            f"{r['final_train_accuracy'][0]:.2f} +- {r['final_train_accuracy'][1]:.2f}, final "
            f"test {r['final_test_accuracy'][0]:.2f} +- {r['final_test_accuracy'][1]:.2f}; peak "
            f"mean test {r['peak_mean_test_accuracy']:.2f} at epoch {r['peak_epoch']}; train "
            f"accuracy >= 99% from epoch {r['first_epoch_train_accuracy_99']}"
        )
    lines.append(f"  SB - LB final test accuracy: {s['final_gap_sb_minus_lb']:+.2f} points")
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    fig = plots.accuracy_curves(
        results["curves"], title=f"Figure 2 for F1 on {results['dataset']['name']}"
    )
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_accuracy_curves",
    stem=STEM,
    doc=__doc__,
    order=1,
    presets=PRESETS,
    compute=compute,
    summarize=summarize,
    text=text,
    draw=draw,
    options=options,
    bn_policy="batch",
)

if __name__ == "__main__":
    experiment.cli(SPEC)
