"""Is the LB minimizer sharper, or only smaller? Four sharpness notions on the SB and LB minimizers
of F1, under function-preserving rescalings, and their rank correlation with generalisation.

    python experiments/fig_sharpness_notions.py --dataset mnist10k                 # paper preset
    python experiments/fig_sharpness_notions.py --dataset mnist10k --preset quick
    python experiments/fig_sharpness_notions.py --dataset mnist10k --replot

Reuses (or trains) the SB and LB runs of experiments/fig_sharpness.py and measures, on each
run's training objective (BN policy "batch"), every notion of `keskar_repro.measurements.NOTIONS`
(worst case on Metric 2.1's box eps (|x_i| + 1); adaptive worst case on eps |x_i|; average case
with Gaussian delta_i of std eps (|x_i| + 1), and of std eps |x_i|) at every epsilon:

- at the trained point;
- "matched": both minimizers of a seed with every hidden Dense layer rescaled
  (`reparam.match_norms`: kernel, bias and running statistics) to the geometric mean of the two
  kernels' Frobenius norms, so that SB and LB have the same per-layer norms; batch norm keeps
  the function (up to its epsilon, `keskar_repro.reparam`);
- for seed 0 only, the reparametrisations themselves: every hidden Dense layer times c
  ("pre_bn"), and the last batch norm's scale and offset times c with the output kernel times
  1 / c ("last_bn", exact), for each c in --factors.

The training loss at every transformed point is recorded beside the trained one (a transform
must not change it). Per run, the generalisation gap is test minus train cross-entropy and
train minus test accuracy (percentage points); Kendall's tau-b between each notion (at the
trained point and matched) and each gap is taken over the 2 x seeds runs, with a 95% bootstrap
interval (`stats.kendall_tau`). Writes, into --out:

    fig_sharpness_notions_<dataset>_<preset>.json
    fig_sharpness_notions_<dataset>_<preset>.{png,pdf}   norms, SB/LB ratios, rescalings, tau

Runtime on the 2-core CPU: the worst-case notions cost 11 objective evaluations each, the
average-case ones 2 x --samples + 1; on mnist10k (0.3 s per evaluation) the quick preset takes
a few minutes after fig_sharpness.py's quick runs, the paper preset about 1.5 hours; on full
MNIST (2.3 s per evaluation) the paper preset is about 10 hours, most of it the average case.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro import experiment, stats  # noqa: E402  (no JAX at import)

STEM = "fig_sharpness_notions"
REGIMES = ("SB", "LB")
NOTION_NAMES = ("metric_2_1", "adaptive", "average", "average_adaptive")  # measurements.NOTIONS
GAPS = {"loss": "test - train cross-entropy", "accuracy": "train - test accuracy (points)"}
PRESETS = {
    # fig_sharpness.py's runs (5 seeds, 100 epochs), both epsilons, 32 Gaussian draws.
    # Seed 0 rescaled by c = 0.5 and 2.
    "paper": {
        "seeds": 5,
        "epochs": 100,
        "epsilons": [1e-3, 5e-4],
        "samples": 32,
        "factors": [0.5, 2.0],
    },
    # A few minutes on mnist10k: fig_sharpness.py's quick runs, eps 1e-3, 8 draws, c = 2.
    "quick": {"seeds": 2, "epochs": 15, "epsilons": [1e-3], "samples": 8, "factors": [2.0]},
}


def options(p) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument("--samples", type=int, help="Gaussian draws of the average-case notions")
    p.add_argument(
        "--factors",
        type=experiment.float_list,
        help="comma-separated c of the seed-0 reparametrisations, e.g. 0.5,2",
    )


def checks(args) -> dict[str, bool]:
    return {
        **experiment.batch_checks(args),
        **experiment.epsilons_check(args),
        "--samples": args.samples >= 2,
        "--factors": bool(args.factors) and min(args.factors) > 0,
    }


def transforms(variables: dict, seed: int, common: dict, factors: list[float]) -> dict:
    """{name: (params, JSON spec)} of every point measured for a run: the trained one (None),
    "matched" to the `common` hidden-kernel norms, and for seed 0 each rescaling by each c."""
    from keskar_repro import reparam

    matched, _ = reparam.match_norms(variables, common)
    out = {
        "trained": (None, None),
        "matched": (matched["params"], {"kind": "match_norms", "target": common}),
    }
    if seed != 0:
        return out
    hidden = reparam.mlp_layers(variables["params"]).hidden
    for c in factors:
        scaled = variables
        for layer in hidden:
            scaled = reparam.rescale_pre_bn(scaled, layer, c)
        out[f"pre_bn x{c:g}"] = (scaled["params"], {"kind": "pre_bn", "c": c})
        last = reparam.rescale_last_bn_and_output(variables, c)
        out[f"last_bn x{c:g}"] = (last["params"], {"kind": "last_bn_and_output", "c": c})
    return out


def common_norms(pair: dict) -> dict[str, float]:
    """The geometric mean of the SB and LB runs' hidden-kernel Frobenius norms, per layer."""
    from keskar_repro import reparam

    norms = [reparam.layer_norms(_variables(pair[r])) for r in REGIMES]
    hidden = reparam.mlp_layers(pair["SB"].params).hidden
    return {
        f"{d}/kernel": math.sqrt(norms[0][f"{d}/kernel"] * norms[1][f"{d}/kernel"]) for d in hidden
    }


def _variables(run) -> dict:
    return {"params": run.params, "batch_stats": run.batch_stats}


def compute(args, dataset) -> dict:
    from keskar_repro import reparam
    from keskar_repro.measurements import NOTIONS, final_metrics, notion_measurement
    from keskar_repro.objective import make_loss_fn
    from keskar_repro.runs import run_dir

    configs = experiment.sb_lb_configs(args, dataset)
    runs = {regime: experiment.seed_runs(args, dataset, configs[regime]) for regime in REGIMES}
    n_points = 2 + 2 * len(args.factors)  # seed 0
    total = 2 * len(NOTION_NAMES) * len(args.epsilons) * (2 * args.seeds + n_points - 2)
    bar = experiment.progress_bar(args, total, "notions")
    run_rows, rows = [], []
    for index in range(args.seeds):
        pair = {regime: runs[regime][index] for regime in REGIMES}
        common = common_norms(pair)
        for regime, run in pair.items():
            metrics = final_metrics(run, dataset, "batch", args.runs_dir)
            run_rows.append({
                "regime": regime, "seed": run.config.seed,
                "run_dir": str(run_dir(run.config, args.runs_dir)),
                **metrics,
                "gap_loss": metrics["test_loss"] - metrics["train_loss"],
                "gap_accuracy": 100 * (metrics["train_accuracy"] - metrics["test_accuracy"]),
                "norms": reparam.layer_norms(_variables(run)),
                "rms": reparam.layer_norms(_variables(run), "rms"),
            })  # fmt: skip
            loss_fn = make_loss_fn(run.config.model(), run.batch_stats, dataset.x_train,
                                   dataset.y_train)  # fmt: skip
            points = transforms(_variables(run), run.config.seed, common, args.factors)
            for point, (params, spec) in points.items():
                f = float(loss_fn(run.params if params is None else params))
                for notion in NOTION_NAMES:
                    for eps in args.epsilons:
                        m = notion_measurement(
                            run, dataset, notion, eps, samples=args.samples, params=params,
                            transform=spec, loss_fn=loss_fn, root=args.runs_dir,
                        )  # fmt: skip
                        rows.append({
                            "regime": regime, "seed": run.config.seed, "point": point,
                            "notion": notion, "epsilon": eps, "loss": f,
                            "value": m["value"], "stderr": m["stderr"],
                        })  # fmt: skip
                        bar.update(1)
                        bar.set_postfix_str(f"{regime} seed {run.config.seed} {point} {notion}")
    bar.close()
    return {
        "notions": {name: NOTIONS[name][0] for name in NOTION_NAMES},
        "gaps": GAPS,
        "runs": run_rows,
        "rows": rows,
    }


def _ratio(a: float, b: float) -> float | None:
    """a / b where both are positive (a ratio of sharpness values), else None."""
    return a / b if a > 0 and b > 0 else None


def _values(rows: list[dict], **where) -> list[float]:
    return [r["value"] for r in rows if all(r[k] == v for k, v in where.items())]


def summarize(results: dict) -> dict:
    """Per notion, epsilon and point ("trained", "matched"): SB and LB mean +- std over seeds,
    the ratio of the means LB / SB, and "kept" = log(ratio matched) / log(ratio trained), the
    share of the (log) SB/LB gap that survives common norms; the seed-0 reparametrisation
    responses value(transform) / value(trained) and the relative loss change; Kendall's tau
    of each notion with each gap; and the per-layer RMS of the hidden kernels, mean per regime."""
    rows, runs = results["rows"], results["runs"]
    epsilons = sorted({r["epsilon"] for r in rows}, reverse=True)
    gap_table, response, tau = [], [], []
    for notion in results["notions"]:
        for eps in epsilons:
            entry = {"notion": notion, "epsilon": eps}
            for point in ("trained", "matched"):
                for regime in REGIMES:
                    entry[f"{point}_{regime}"] = stats.mean_std(
                        _values(rows, notion=notion, epsilon=eps, point=point, regime=regime)
                    )
                entry[f"{point}_ratio"] = _ratio(entry[f"{point}_LB"][0], entry[f"{point}_SB"][0])
            trained, matched = entry["trained_ratio"], entry["matched_ratio"]
            sharper = trained is not None and matched is not None and trained > 1
            entry["kept"] = math.log(matched) / math.log(trained) if sharper else None
            gap_table.append(entry)
            for point in ("trained", "matched"):
                for gap in GAPS:
                    values = [
                        _values(rows, notion=notion, epsilon=eps, point=point,
                                regime=r["regime"], seed=r["seed"])[0]
                        for r in runs
                    ]  # fmt: skip
                    t = stats.kendall_tau(values, [r[f"gap_{gap}"] for r in runs])
                    tau.append({"notion": notion, "epsilon": eps, "point": point, "gap": gap, **t})
            for regime in REGIMES:
                base = [
                    r
                    for r in rows
                    if (r["notion"], r["epsilon"], r["regime"], r["seed"], r["point"])
                    == (notion, eps, regime, 0, "trained")
                ]
                for r in rows:
                    if (r["notion"], r["epsilon"], r["regime"], r["seed"]) != (
                        notion,
                        eps,
                        regime,
                        0,
                    ) or r["point"] in ("trained",):
                        continue
                    response.append({
                        "notion": notion, "epsilon": eps, "regime": regime, "point": r["point"],
                        "ratio": _ratio(r["value"], base[0]["value"]),
                        "loss_change": r["loss"] / base[0]["loss"] - 1,
                    })  # fmt: skip
    hidden = [k for k in runs[0]["rms"] if k.endswith("/kernel")][:-1]  # not the output layer
    norms = {
        regime: {k: stats.mean_std([r["rms"][k] for r in runs if r["regime"] == regime])
                 for k in hidden}
        for regime in REGIMES
    }  # fmt: skip
    return {"gap": gap_table, "response": response, "tau": tau, "rms": norms}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def text(results: dict) -> str:
    s = results["summary"]
    lines = [f"Sharpness notions, F1 on {results['dataset']['name']}, "
             f"{results['config']['seeds']} seeds: mean +- sample std over seeds"]  # fmt: skip
    lines.append("hidden-kernel RMS (mean over seeds): " + "; ".join(
        f"{k.split('/')[0]} SB {s['rms']['SB'][k][0]:.3g} LB {s['rms']['LB'][k][0]:.3g}"
        for k in s["rms"]["SB"]))  # fmt: skip
    lines.append("notion, eps | trained SB | trained LB | LB/SB | matched SB | matched LB | "
                 "LB/SB | kept")  # fmt: skip
    for e in s["gap"]:
        cells = [f"{_fmt(e[f'{p}_{r}'][0])} +- {_fmt(e[f'{p}_{r}'][1])}"
                 for p in ("trained", "matched") for r in REGIMES]  # fmt: skip
        kept = "-" if e["kept"] is None else f"{e['kept']:.2f}"
        lines.append(f"{e['notion']}, {e['epsilon']:g} | {cells[0]} | {cells[1]} | "
                     f"{_fmt(e['trained_ratio'])} | {cells[2]} | {cells[3]} | "
                     f"{_fmt(e['matched_ratio'])} | {kept}")  # fmt: skip
    lines.append("seed 0, value(transform) / value(trained) [relative change of the loss]:")
    for r in s["response"]:
        lines.append(f"  {r['notion']}, {r['epsilon']:g}, {r['regime']}, {r['point']}: "
                     f"{_fmt(r['ratio'])} [{r['loss_change']:+.1e}]")  # fmt: skip
    lines.append("Kendall tau-b with the generalisation gap over runs [95% bootstrap interval]:")
    for t in s["tau"]:
        tau = "undefined (ties)"
        if t["tau"] is not None:
            tau = f"{t['tau']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"
        lines.append(
            f"  {t['notion']}, {t['epsilon']:g}, {t['point']}, gap {t['gap']}: {tau} (n {t['n']})"
        )
    return "\n".join(lines)


def draw(results: dict, args) -> list[str]:
    from keskar_repro import plots

    fig = plots.notions_figure(results["summary"], title=(
        f"Sharpness notions, F1 on {results['dataset']['name']}, "
        f"{results['config']['seeds']} seeds"))  # fmt: skip
    return plots.save_figure(fig, experiment.figure_stem(args, STEM))


SPEC = experiment.figure(globals(), order=1, resolved=("sb_batch", "lb_batch"))

if __name__ == "__main__":
    experiment.cli(SPEC)
