"""Keskar et al. 2017 for the MNIST network F1: Tables 2, 3, 4 and Figures 3 and 7.

    python experiments/fig_sharpness.py                       # paper preset, full MNIST if present
    python experiments/fig_sharpness.py --dataset mnist10k    # offline, the shipped 10k images
    python experiments/fig_sharpness.py --preset quick        # < 3 min on a 2-core CPU
    python experiments/fig_sharpness.py --replot --dataset mnist10k   # redraw from the JSON only

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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from keskar_repro import experiment, paper, plots  # noqa: E402  (no JAX: --replot stays light)

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


def parse_args(argv=None) -> argparse.Namespace:
    p = experiment.parser(__doc__, PRESETS)
    experiment.add_batch_args(p)
    p.add_argument(
        "--epsilons",
        type=experiment.float_list,
        help="comma-separated box sizes, e.g. 1e-3,5e-4",
    )
    p.add_argument("--subspace-dim", type=int, help="p of the random subspace; 0 skips Table 4")
    p.add_argument(
        "--bn-policy",
        choices=["batch", "full", "running"],
        default="batch",
        help="batch-norm statistics for sharpness, accuracy and paths (default: "
        "batch statistics of chunks of 5000, as the authors' Keras code)",
    )
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

    def checks(args):
        return {
            **experiment.batch_checks(args),
            "--epsilons": bool(args.epsilons) and all(e > 0 for e in args.epsilons),
            "--subspace-dim": args.subspace_dim >= 0,
            "--alphas": args.alphas >= 2,
            "--subspace-scaling": set(args.subspace_scaling) <= {"unit", "gaussian"},
        }

    return experiment.parse(p, PRESETS, argv, checks)


def results_path(args: argparse.Namespace) -> Path:
    return experiment.results_path(args, "fig_sharpness")


def measure(args: argparse.Namespace, dataset, sb: int, lb: int) -> dict:
    """Train or load the runs, then every measurement; returns the results dictionary."""
    import numpy as np
    from tqdm.auto import tqdm

    from keskar_repro.measurements import RunSharpness, final_metrics, pair_path
    from keskar_repro.runs import environment, get_or_train, run_dir
    from keskar_repro.train import TrainConfig

    seeds = list(range(args.seeds))
    runs = {
        regime: get_or_train(
            TrainConfig(
                dataset=dataset.name, batch_size=batch, epochs=args.epochs, hidden=args.hidden
            ),
            dataset,
            seeds,
            root=args.runs_dir,
            progress=not args.no_progress,
            vmap_seeds=args.runs_per_program != 1,  # default: all seeds in one program
        )
        for regime, batch in (("SB", sb), ("LB", lb))
    }
    spaces = [(None, None)]
    if args.subspace_dim:
        spaces += [(args.subspace_dim, a) for a in args.subspace_scaling]

    run_records, sharpness_records = [], []
    n_jobs = 2 * len(seeds) * len(spaces) * len(args.epsilons)
    bar = tqdm(total=n_jobs, desc="sharpness", unit="max", disable=args.no_progress)
    for regime, regime_runs in runs.items():
        for run in regime_runs:
            run_records.append(
                {
                    "regime": regime,
                    "seed": run.config.seed,
                    "run_dir": str(run_dir(run.config, args.runs_dir)),
                    "config": run.config.to_dict(),
                    "epochs_run": run.epochs_run,
                    "stop_reason": run.stop_reason,
                    "train_seconds": run.train_seconds,
                    "bn_policy": args.bn_policy,
                    **final_metrics(run, dataset, args.bn_policy, args.runs_dir),
                    "history": run.history,
                }
            )
            meter = RunSharpness(run, dataset, args.runs_dir)
            for p, a_scaling in spaces:
                for eps in args.epsilons:
                    result = meter.measure(
                        eps,
                        subspace_dim=p,
                        subspace_scaling=a_scaling,
                        bn_policy=args.bn_policy,
                        scaling=args.sharpness_scaling,
                    )
                    sharpness_records.append({"regime": regime, "seed": run.config.seed, **result})
                    bar.update(1)
                    bar.set_postfix_str(
                        f"{regime} seed {run.config.seed} {result['space']} eps={eps:g}: "
                        f"{result['value']:.3g}"
                    )
    bar.close()

    alphas = np.linspace(-1.0, 2.0, args.alphas)
    paths = {}
    for kind in ("linear", "curvilinear"):
        if not args.no_progress:
            print(f"evaluating the {kind} path at {len(alphas)} points", file=sys.stderr)
        paths[kind] = pair_path(
            runs["SB"][0], runs["LB"][0], dataset, alphas, kind, args.bn_policy, args.runs_dir
        )
    return {
        "runs": run_records,
        "sharpness": sharpness_records,
        "paths": paths,
        "environment": environment(),
    }


def summarize(results: dict) -> dict:
    """Mean +- std over seeds of every table entry, the SB - LB test-accuracy gap, per-seed
    sharpness ratios."""
    runs, rows = results["runs"], {}
    for quantity in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        rows[quantity] = {
            regime: paper.mean_std(
                [
                    r[quantity] * (100 if "accuracy" in quantity else 1)
                    for r in runs
                    if r["regime"] == regime
                ]
            )
            for regime in ("SB", "LB")
        }
    sb_test = {r["seed"]: 100 * r["test_accuracy"] for r in runs if r["regime"] == "SB"}
    lb_test = {r["seed"]: 100 * r["test_accuracy"] for r in runs if r["regime"] == "LB"}
    n = len(sb_test)
    (m_sb, s_sb), (m_lb, s_lb) = rows["test_accuracy"]["SB"], rows["test_accuracy"]["LB"]
    standard_error = (s_sb**2 / n + s_lb**2 / n) ** 0.5
    paired = paper.mean_std([sb_test[s] - lb_test[s] for s in sb_test])
    gap = {
        "sb_minus_lb": m_sb - m_lb,
        "standard_error": standard_error,
        "paired_mean_std": paired,
        "exceeds_spread": bool(n > 1 and abs(m_sb - m_lb) > 2 * standard_error),
        "rule": "|mean SB - mean LB| > 2 * sqrt(std_SB^2/n + std_LB^2/n) (std over n seeds)",
    }
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
            mean, std = paper.mean_std(list(vals.values()))
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


def tables_text(results: dict) -> str:
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
    return "\n\n".join(text)


def draw(results: dict, out: Path, tag: str, log_loss: bool) -> list[str]:
    title = f"F1 on {results['dataset']['name']}"
    files = []
    for kind, fig_no in (("linear", 3), ("curvilinear", 7)):
        fig = plots.parametric_plot(
            results["paths"][kind],
            log_loss=log_loss,
            title=f"Figure {fig_no} ({kind} path), {title}",
        )
        files += plots.save_figure(fig, str(out / f"fig{fig_no}_{kind}_{tag}"))
    fig = plots.sharpness_chart(
        results["summary"]["sharpness"], title=f"Sharpness of SB and LB minimizers, {title}"
    )
    files += plots.save_figure(fig, str(out / f"sharpness_{tag}"))
    return files


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        if args.dataset is None:
            raise ValueError("--replot needs --dataset (and the --preset) of the results to draw")
        path = results_path(args)
        if not path.is_file():
            raise FileNotFoundError(f"no results at {path}; run without --replot first")
        results = json.loads(path.read_text())
        print(tables_text(results))
        for f in draw(results, path.parent, f"{args.dataset}_{args.preset}", args.log_loss):
            print(f"wrote {f}")
        return 0

    from keskar_repro.measurements import SUBSPACE_KEY
    from keskar_repro.train import paper_batch_sizes

    t0 = time.time()
    dataset = experiment.load_dataset(args)
    sb, lb, note = paper_batch_sizes(dataset.n_train, args.sb_batch, args.lb_batch)
    print(
        f"{dataset.name}: {dataset.n_train} train / {dataset.n_test} test; preset "
        f"{args.preset}; {args.seeds} seeds x {args.epochs} epochs; {note}",
        file=sys.stderr,
    )
    results = {
        "command": "python experiments/fig_sharpness.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {k: v for k, v in vars(args).items() if k not in ("replot", "no_progress")}
        | {
            "sb_batch": sb,
            "lb_batch": lb,
            "batch_note": note,
            "subspace_key": SUBSPACE_KEY,
            "sharpness_maxiter": 10,
            "alpha_range": [-1.0, 2.0],
        },
        "dataset": dataset.provenance,
        "paper_f1": {k: {r: list(v) for r, v in d.items()} for k, d in paper.PAPER_F1.items()},
    }
    results.update(measure(args, dataset, sb, lb))
    results["summary"] = summarize(results)
    results["wall_seconds"] = time.time() - t0
    out = Path(args.out)
    path = results_path(args)
    from keskar_repro.runs import write_atomic

    write_atomic(path, json.dumps(results, indent=1))
    print(tables_text(results))
    print(f"wrote {path}")
    for f in draw(results, out, f"{args.dataset}_{args.preset}", args.log_loss):
        print(f"wrote {f}")
    print(f"wall time {results['wall_seconds']:.0f} s")
    return 0


def cli() -> None:
    experiment.cli(main)


if __name__ == "__main__":
    cli()
