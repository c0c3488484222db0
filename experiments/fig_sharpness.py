"""Keskar et al. 2017 for the MNIST network F1: Tables 2, 3, 4 and Figures 3 and 7.

    python experiments/fig_sharpness.py --dataset mnist10k    # offline, the shipped 10k images
    python experiments/fig_sharpness.py --preset quick --dataset mnist10k
    python experiments/fig_sharpness.py --replot --dataset mnist10k   # redraw from the JSON only
    python experiments/fig_sharpness.py --data-dir ../shared/data/mnist   # full MNIST

Trains (or reuses) SB and LB runs of F1 from the same initial points, measures their accuracy
(Table 2), their sharpness in the full space (Table 3) and in a random 100-d subspace (Table 4)
with Metric 2.1, evaluates the linear (Figure 3) and curvilinear (Figure 7) paths between one
SB/LB pair, prints the tables beside the paper's numbers and writes, into --out:

    fig_sharpness_<dataset>_<preset>.json        every number, config, provenance, versions
    fig3_linear_<dataset>_<preset>.{png,pdf}     Figure 3
    fig7_curvilinear_<dataset>_<preset>.{png,pdf}
    sharpness_<dataset>_<preset>.{png,pdf}       SB vs LB sharpness, mean +- std over seeds

Runs are saved under --runs-dir and every measurement beside its run, so a second invocation
(or one after an interruption) recomputes nothing that is already there.

Runtime and result on the 2-core CPU (nothing else running, fresh runs dir): the quick preset
on mnist10k takes about 5 minutes (2 seeds, 15 epochs) and its full-space sharpness at eps 1e-3
is an order of magnitude larger for LB than for SB, with a wide seed spread at 2 seeds; the
paper preset on mnist10k takes about 26 minutes (5 seeds, 100 epochs). The numbers of a run are
in its results JSON; those of the committed runs are in the reproduction report
(docs/report/), generated from figures/fig_sharpness_*_paper.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from keskar_repro.report import experiment, paper, plots, stats  # noqa: E402  (no JAX at import)

STEM = "fig_sharpness"
PRESETS = {
    # 5 seeds, the paper's batch sizes, 100 epochs (the paper's figures; see paper_notes.md for
    # why not its "until the loss ceased to improve"), both epsilons, full space and p = 100.
    "paper": {
        "seeds": 5,
        "epochs": 100,
        "epsilons": [1e-3, 5e-4],
        "subspace_dim": 100,
        "subspace_scaling": ["unit", "gaussian"],
        "alphas": 25,
    },
    # Small enough for < 3 minutes on mnist10k on a 2-core CPU, large enough that LB is sharper.
    "quick": {
        "seeds": 2,
        "epochs": 15,
        "epsilons": [1e-3],
        "subspace_dim": 100,
        "subspace_scaling": ["gaussian"],
        "alphas": 13,
    },
}


def options(p: argparse.ArgumentParser) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument("--subspace-dim", type=int, help="p of the random subspace; 0 skips Table 4")
    experiment.add_bn_policy_option(p)
    p.add_argument(
        "--subspace-scaling",
        type=lambda s: s.split(","),
        help="column scaling(s) of the random A, comma-separated: unit (unit-norm Gaussian "
        "columns) and/or gaussian (i.i.d. N(0,1) entries)",
    )
    p.add_argument(
        "--sharpness-scaling",
        choices=["normalized", "literal"],
        default="normalized",
        help="L-BFGS-B in box-normalised coordinates (default) or the paper-literal formulation",
    )
    p.add_argument("--alphas", type=int, help="points on each path over [-1, 2]")
    p.add_argument("--log-loss", action="store_true", help="log scale for the path losses")


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--subspace-dim": settings.subspace_dim >= 0,
        "--alphas": settings.alphas >= 2,
        "--subspace-scaling": set(settings.subspace_scaling) <= {"unit", "gaussian"},
    }


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    """Train or load the runs, then every measurement; returns the results dictionary."""
    from keskar_repro.training import protocol

    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    resolved["subspace_key"] = protocol.SUBSPACE_KEY
    resolved["sharpness_maxiter"] = protocol.SHARPNESS_MAXITER
    resolved["alpha_range"] = list(protocol.ALPHA_RANGE)
    runs = {regime: experiment.seed_runs(settings, dataset, c) for regime, c in configs.items()}
    return {
        "paper_f1": {k: {r: list(v) for r, v in d.items()} for k, d in paper.PAPER_F1.items()},
        **measure(settings, dataset, runs),
    }


def measure(settings: experiment.Settings, dataset, runs: dict[str, list]) -> dict:
    """Accuracy and sharpness of every run, and the paths between the seed-0 pair."""
    import numpy as np

    from keskar_repro.store.measurements import RunSharpness, final_metrics, pair_path
    from keskar_repro.store.runs import run_dir
    from keskar_repro.training import protocol

    seeds = list(range(settings.seeds))
    spaces = [(None, None)]
    if settings.subspace_dim:
        spaces += [(settings.subspace_dim, a) for a in settings.subspace_scaling]

    run_records, sharpness_records = [], []
    n_jobs = 2 * len(seeds) * len(spaces) * len(settings.epsilons)
    bar = experiment.progress_bar(settings, n_jobs, "sharpness")
    for regime, regime_runs in runs.items():
        for run in regime_runs:
            run_records.append(
                {
                    "regime": regime,
                    "seed": run.config.seed,
                    "run_dir": str(run_dir(run.config, settings.runs_dir)),
                    "config": run.config.to_dict(),
                    "epochs_run": run.epochs_run,
                    "stop_reason": run.stop_reason,
                    "train_seconds": run.train_seconds,
                    "bn_policy": settings.bn_policy,
                    **final_metrics(run, dataset, settings.bn_policy, settings.runs_dir),
                    "history": run.history,
                }
            )
            meter = RunSharpness(run, dataset, settings.runs_dir)
            for p, a_scaling in spaces:
                for eps in settings.epsilons:
                    result = meter.measure(
                        eps,
                        subspace_dim=p,
                        subspace_scaling=a_scaling,
                        bn_policy=settings.bn_policy,
                        scaling=settings.sharpness_scaling,
                    )
                    sharpness_records.append({"regime": regime, "seed": run.config.seed, **result})
                    bar.update(1)
                    bar.set_postfix_str(
                        f"{regime} seed {run.config.seed} {result['space']} eps={eps:g}: "
                        f"{result['value']:.3g}"
                    )
    bar.close()

    alphas = np.linspace(*protocol.ALPHA_RANGE, settings.alphas)
    paths = {}
    for kind in ("linear", "curvilinear"):
        if not settings.no_progress:
            print(f"evaluating the {kind} path at {len(alphas)} points", file=sys.stderr)
        paths[kind] = pair_path(
            runs["SB"][0],
            runs["LB"][0],
            dataset,
            alphas,
            kind,
            settings.bn_policy,
            settings.runs_dir,
        )
    return {"runs": run_records, "sharpness": sharpness_records, "paths": paths}


def summarize(results: dict) -> dict:
    """Mean +- std over seeds of every table entry, the SB - LB test-accuracy gap, per-seed
    sharpness ratios."""
    runs, rows = results["runs"], {}
    for quantity in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        scale = 100 if "accuracy" in quantity else 1
        rows[quantity] = {
            regime: stats.mean_std([r[quantity] * scale for r in runs if r["regime"] == regime])
            for regime in ("SB", "LB")
        }
    test = {
        regime: {r["seed"]: 100 * r["test_accuracy"] for r in runs if r["regime"] == regime}
        for regime in ("SB", "LB")
    }
    gap = stats.gap_test(test["SB"], test["LB"])
    sharp_rows, lb_sharper = [], {}
    groups = sorted({(r["space"], r["epsilon"]) for r in results["sharpness"]})
    for space, eps in groups:
        per_seed = {}
        for regime in ("SB", "LB"):
            vals = {
                r["seed"]: r["value"]
                for r in results["sharpness"]
                if r["regime"] == regime and r["space"] == space and r["epsilon"] == eps
            }
            per_seed[regime] = vals
            mean, std = stats.mean_std(list(vals.values()))
            sharp_rows.append(
                {
                    "regime": regime,
                    "space": space,
                    "epsilon": eps,
                    "mean": mean,
                    "std": std,
                    "n": len(vals),
                }
            )
        lb_sharper[f"{space}/{eps}"] = {
            str(s): per_seed["LB"][s] > per_seed["SB"][s] for s in per_seed["SB"]
        }
    return {
        "accuracy": rows,
        "test_accuracy_gap": gap,
        "sharpness": sharp_rows,
        "lb_sharper_per_seed": lb_sharper,
    }


def text(results: dict) -> str:
    """Tables 2, 3 and 4 beside the paper's numbers, the accuracy gap and the verdicts."""
    s = results["summary"]
    acc = s["accuracy"]
    text = [
        paper.comparison_table(
            [
                {
                    "quantity": "train accuracy (%)",
                    "key": "train_accuracy",
                    **acc["train_accuracy"],
                },
                {"quantity": "test accuracy (%)", "key": "test_accuracy", **acc["test_accuracy"]},
                {"quantity": "train cross-entropy", "key": None, **acc["train_loss"]},
                {"quantity": "test cross-entropy", "key": None, **acc["test_loss"]},
            ],
            title=f"Table 2 (accuracy, BN policy {results['config']['bn_policy']})",
        )
    ]
    gap = s["test_accuracy_gap"]
    text.append(
        f"SB - LB test accuracy: {gap['sb_minus_lb']:+.2f} points (standard error "
        f"{gap['standard_error']:.2f}; paired by seed {gap['paired_mean_std'][0]:+.2f} +- "
        f"{gap['paired_mean_std'][1]:.2f}); exceeds the seed-to-seed spread: "
        f"{'yes' if gap['exceeds_spread'] else 'no'}  (paper: +0.22)"
    )
    spaces = sorted({r["space"] for r in s["sharpness"]}, key=lambda sp: (sp != "full", sp))
    for space in spaces:
        table = "Table 3" if space == "full" else "Table 4"
        rows = []
        for eps in sorted(
            {r["epsilon"] for r in s["sharpness"] if r["space"] == space}, reverse=True
        ):
            pair = {
                r["regime"]: (r["mean"], r["std"])
                for r in s["sharpness"]
                if r["space"] == space and r["epsilon"] == eps
            }
            rows.append(
                {
                    "quantity": f"eps = {eps:g}",
                    "key": paper.sharpness_key(space.split("-")[0], eps),
                    **pair,
                }
            )
        if rows:
            label = (
                "full space"
                if space == "full"
                else f"random {results['config']['subspace_dim']}-d subspace, "
                f"A with {space.split('-')[1]} columns"
            )
            text.append(paper.comparison_table(rows, title=f"{table} (sharpness, {label})"))
    verdicts = [
        f"{k}: {sum(v.values())}/{len(v)} seeds" for k, v in s["lb_sharper_per_seed"].items()
    ]
    text.append("LB sharper than SB: " + "; ".join(verdicts))
    text.append(paper.std_convention_note())
    return "\n\n".join(text)


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    title = f"F1 on {results['dataset']['name']}"
    files = []
    for kind, fig_no in (("linear", 3), ("curvilinear", 7)):
        fig = plots.parametric_plot(
            results["paths"][kind],
            log_loss=settings.log_loss,
            title=f"Figure {fig_no} ({kind} path), {title}",
        )
        files += plots.save_figure(fig, experiment.figure_stem(settings, f"fig{fig_no}_{kind}"))
    fig = plots.sharpness_chart(
        results["summary"]["sharpness"], title=f"Sharpness of SB and LB minimizers, {title}"
    )
    files += plots.save_figure(fig, experiment.figure_stem(settings, "sharpness"))
    return files


SPEC = experiment.FigureSpec(
    name="fig_sharpness",
    stem=STEM,
    doc=__doc__,
    order=0,
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
