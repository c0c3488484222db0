"""Is the LB minimizer sharper, or only smaller? Sharpness notions and the Hessian on the SB and LB
minimizers of F1, under function-preserving rescalings, and their rank correlation with
generalisation and with Metric 2.1.

    python experiments/fig_sharpness_notions.py --dataset mnist10k                 # paper preset
    python experiments/fig_sharpness_notions.py --dataset mnist10k --preset quick
    python experiments/fig_sharpness_notions.py --dataset mnist10k --replot

Reuses (or trains) the SB and LB runs of experiments/fig_sharpness.py and measures, on each
run's training objective (BN policy "batch"), the registered notions of --notions
(keskar_repro.measures.NOTIONS; the paper preset: the four of `NOTION_NAMES`, worst case on
Metric 2.1's box eps (|x_i| + 1), adaptive worst case on eps |x_i|, average case with Gaussian
delta_i of std eps (|x_i| + 1) and of std eps |x_i|, at every epsilon; and the two of `HESSIAN`,
the Hessian's largest eigenvalue (Lanczos, tolerance 1e-3) and its trace (XTrace, 10 probes),
once per point):

- at the trained point;
- "matched": both minimizers of a seed with every hidden Dense layer rescaled
  (`reparam.match_norms`: kernel, bias and running statistics) to the geometric mean of the two
  kernels' Frobenius norms, so that SB and LB have the same per-layer norms; batch norm keeps
  the function (up to its epsilon, `keskar_repro.training.reparam`);
- for seed 0 only, the reparametrisations themselves: every hidden Dense layer times c
  ("pre_bn"), and the last batch norm's scale and offset times c with the output kernel times
  1 / c ("last_bn", exact), for each c in --factors.

With --population all (the paper preset), also every other saved run of the dataset and
architecture in --runs-dir (runs.saved_runs: the batch sweep, the learning-rate grid, warm
starts, conservative training, other initialisations, whatever has been trained there; never a
run of the SB or LB configuration, whatever its seed) at its trained point; --population others
measures only those, as a part to merge with the pairs' parts (below). Each run's hidden-kernel
RMS entry along training comes from its history (train.KERNEL_NORM).

The training loss at every transformed point is recorded beside the trained one (a transform
must not change it). Per run, the generalisation gap is test minus train cross-entropy and
train minus test accuracy (percentage points); Kendall's tau-b between each notion and each
gap, with a 95% bootstrap interval (`stats.kendall_tau`), is taken over the 2 x seeds SB/LB
runs (at the trained and at the matched points) and, with --population all, over every
measured run (trained points); so is each notion's tau with Metric 2.1 at the same epsilon.
Writes, into --out:

    fig_sharpness_notions_<dataset>_<preset>.json
    fig_sharpness_notions_<dataset>_<preset>.{png,pdf}   norms, SB/LB ratios, rescalings, tau

Runtime and result on the 2-core CPU: the worst-case notions cost 11 objective evaluations
each, the average-case ones 2 x --samples + 1, the Hessian's about 2.3 x (20-50 + 20) (its
HVPs). On mnist10k the quick preset takes a few minutes
after fig_sharpness.py's quick runs; the paper preset took 2,392 s after its runs (224
measurements, the CPU partly shared), and gave: LB/SB of Metric 2.1 298 at the trained points
and 24 after matching norms (eps 1e-3); the adaptive worst case 0.06 (LB flatter) either way.
Every other saved run adds 8 measurements at its trained point (about 70 s on mnist10k; the
committed mnist10k JSON, n 64, merges the paper preset's JSON with a --population others part
over the retrained Figures 4 and 5, figures/README.md). On
full MNIST (2.3 s per evaluation) the paper preset would take about 6 hours, so it is measured
in parts, a few seeds per sitting (--first-seed; the rescalings are measured with seed 0), each
into its own folder, then merged (experiment.Parts: the merged JSON, its table and its tau are
those of one run over all the seeds). The committed full-MNIST JSON was measured this way, at
eps 1e-3 and 5e-4 with 16 draws and c = 2 only (about 45 minutes per seed, training included):

    python experiments/fig_sharpness_notions.py --dataset mnist --data-dir ../shared/data/mnist \
        --population pairs --epsilons 1e-3,5e-4 --samples 16 --factors 2 --first-seed 2 --seeds 1 \
        --out parts/2
    python experiments/fig_sharpness_notions.py --dataset mnist --out figures --merge \
        figures/fig_sharpness_notions_mnist_paper.json \
        parts/2/fig_sharpness_notions_mnist_paper.json

The full-MNIST population grows the same way: in the sitting that trained other runs (a part
of Figure 4, say), while they are in --runs-dir, measure them as a part of their own, with the
pairs' settings, and merge it with the pairs (the units of such a part are the runs' folder
names; a run measured in two parts is refused):

    python experiments/fig_sharpness_notions.py --dataset mnist --data-dir ../shared/data/mnist \
        --population others --epsilons 1e-3 --samples 16 --factors 2 --out parts/others-a
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, stats  # noqa: E402  (no JAX at import)

STEM = "fig_sharpness_notions"
REGIMES = ("SB", "LB")
POPULATIONS = ("pairs", "all", "others")
NOTION_NAMES = ("metric_2_1", "adaptive", "average", "average_adaptive")  # of measures.NOTIONS
HESSIAN = ("hessian_max", "hessian_trace")  # the same for every epsilon, measured once per point
REFERENCE = "metric_2_1"  # each other notion's rank correlation with it
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
        "population": "all",
        "notions": [*NOTION_NAMES, *HESSIAN],
    },
    # A few minutes on mnist10k: fig_sharpness.py's quick runs, eps 1e-3, 8 draws, c = 2.
    "quick": {
        "seeds": 2,
        "epochs": 15,
        "epsilons": [1e-3],
        "samples": 8,
        "factors": [2.0],
        "population": "pairs",
        "notions": [*NOTION_NAMES, "hessian_max"],
    },
}


def options(p) -> None:
    experiment.add_batch_options(p)
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="measure seeds first, first + 1, ..., first + seeds - 1 (a part, for --merge)",
    )
    experiment.add_epsilons_option(p)
    p.add_argument("--samples", type=int, help="Gaussian draws of the average-case notions")
    p.add_argument(
        "--notions",
        type=lambda s: [x for x in s.split(",") if x],
        help="comma-separated names of keskar_repro.measures.NOTIONS to measure",
    )
    p.add_argument(
        "--factors",
        type=experiment.float_list,
        help="comma-separated c of the seed-0 reparametrisations, e.g. 0.5,2",
    )
    p.add_argument(
        "--population",
        choices=POPULATIONS,
        help="runs of the rank correlations: this script's SB/LB pairs, or also every other "
        "saved run of the dataset and architecture in --runs-dir (batch sweep, learning-rate "
        "grid, warm starts, conservative training, other initialisations), measured at the "
        "trained point; 'others': those other runs only (a part, for --merge with the pairs)",
    )


def checks(settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--first-seed": settings.first_seed >= 0,
        "--samples": settings.samples >= 2,
        "--factors": bool(settings.factors) and min(settings.factors) > 0,
        "--notions": bool(settings.notions) and set(settings.notions) <= set(_registered()),
    }


def _registered() -> tuple[str, ...]:
    from keskar_repro.measures.registry import NOTIONS

    return tuple(NOTIONS)


def seed_list(config) -> list[int]:
    """The seeds a run of this script measured: a merged JSON's "seed_list", else --first-seed
    (0 when the JSON predates it) and the --seeds that follow it, none under --population
    others; `config` is the `Settings` or a JSON's config dict."""
    config = config if isinstance(config, dict) else config.config()
    if config.get("seed_list") is not None:
        return list(config["seed_list"])
    if config.get("population") == "others":
        return []
    first = config.get("first_seed") or 0
    return list(range(first, first + config["seeds"]))


def part_units(results: dict) -> list:
    """A part's units: its seeds, then the folder names of the other runs it measured (its
    "other" rows of "runs": a JSON of --population all measured before the config listed
    them, e.g. mnist10k's committed one, names them there only)."""
    others = [row["run"] for row in results["runs"] if row["regime"] == "other"]
    return [*seed_list(results["config"]), *others]


def merged_units(units: list) -> dict:
    """The merged config's unit keys from the sorted union of the parts' units."""
    seeds = [u for u in units if not isinstance(u, str)]
    names = [u for u in units if isinstance(u, str)]
    return {"seed_list": seeds, "seeds": len(seeds), "other_runs": names,
            "population": "all" if names else "pairs"}  # fmt: skip


def transforms(variables: dict, seed: int, common: dict, factors: list[float]) -> dict:
    """{name: (params, JSON spec)} of every point measured for a run: the trained one (None),
    "matched" to the `common` hidden-kernel norms, and for seed 0 each rescaling by each c."""
    from keskar_repro.training import reparam

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
    from keskar_repro.training import reparam

    norms = [reparam.layer_norms(_variables(pair[r])) for r in REGIMES]
    hidden = reparam.mlp_layers(pair["SB"].params).hidden
    return {
        f"{d}/kernel": math.sqrt(norms[0][f"{d}/kernel"] * norms[1][f"{d}/kernel"]) for d in hidden
    }


def rms_history(run) -> dict[str, list[float]]:
    """{"Dense_i/kernel": RMS entry after each epoch} of every hidden kernel, from the run's
    history (train.KERNEL_NORM: ||A||_F per epoch, divided here by sqrt(size(A))); empty for a
    run saved before the history kept kernel norms."""
    from keskar_repro.training import reparam
    from keskar_repro.training.train import KERNEL_NORM

    out = {}
    for layer in reparam.mlp_layers(run.params).hidden:
        norms = run.history.get(KERNEL_NORM + layer)
        if norms:
            size = math.prod(run.params[layer]["kernel"].shape)
            out[f"{layer}/kernel"] = [v / math.sqrt(size) for v in norms]
    return out


def _variables(run) -> dict:
    return {"params": run.params, "batch_stats": run.batch_stats}


def other_runs(
    root, dataset: str, hidden: tuple[int, ...], exclude: set[str], pairs: tuple = ()
) -> list:
    """The saved runs (loaded, each once) of `dataset` and these hidden widths in `root`
    (runs.saved_runs) that are not in `exclude` (run folder names), did not diverge, and are
    not a run of one of the `pairs` configs (the SB and LB configs) with any seed."""
    import dataclasses

    from keskar_repro.store.runs import load_run, saved_runs

    def paired(config) -> bool:
        return any(dataclasses.replace(config, seed=c.seed) == c for c in pairs)

    loaded = (load_run(path)[0] for path in saved_runs(root, dataset) if path.name not in exclude)
    return [
        run
        for run in loaded
        if run.config.hidden == tuple(hidden) and not run.diverged and not paired(run.config)
    ]


def label(config) -> str:
    """A run's place in the package: batch, learning rate, and what differs from plain Adam."""
    parts = [f"B={config.batch_size}", f"lr={config.learning_rate:g}", config.init]
    if config.warm_start:
        parts.append(f"warm from {config.warm_start}")
    if config.prox_steps:
        parts.append(f"conservative m={config.prox_steps}")
    return " ".join(parts)


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.measures.registry import NOTIONS
    from keskar_repro.store.runs import run_dir

    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    seeds = seed_list(settings)
    runs = {r: experiment.seed_runs(settings, dataset, configs[r], seeds) for r in REGIMES}
    pairs = {run_dir(r.config, settings.runs_dir).name for rs in runs.values() for r in rs}
    others = []
    if settings.population != "pairs":
        sb_lb = (configs["SB"], configs["LB"])
        others = other_runs(settings.runs_dir, dataset.name, configs["SB"].hidden, pairs, sb_lb)
        if not others and not seeds:
            raise experiment.UserError(
                f"no saved {dataset.name} runs other than SB/LB pairs in {settings.runs_dir}; "
                "train some first (fig_batch_sweep.py, fig_lr_batch.py, fig_warm_start.py)"
            )
    resolved["other_runs"] = [run_dir(run.config, settings.runs_dir).name for run in others]
    extra = 2 * len(settings.factors) if 0 in seeds else 0  # seed 0's rescalings
    points = 2 * (2 * len(seeds) + extra) + len(others)
    bar = experiment.progress_bar(
        settings, points * len(settings.notions) * len(settings.epsilons), "notions"
    )
    run_rows, rows = [], []
    for index in range(len(seeds)):
        pair = {regime: runs[regime][index] for regime in REGIMES}
        common = common_norms(pair)
        for regime, run in pair.items():
            points = transforms(_variables(run), run.config.seed, common, settings.factors)
            measure_run(run, regime, points, settings, dataset, run_rows, rows, bar)
    for run in others:
        measure_run(run, "other", {"trained": (None, None)}, settings, dataset, run_rows, rows, bar)
    bar.close()
    return {
        "notions": {name: NOTIONS[name].description for name in settings.notions},
        "gaps": GAPS,
        "runs": run_rows,
        "rows": rows,
    }


def measure_run(run, regime: str, points: dict, settings, dataset, run_rows, rows, bar) -> None:
    """Append the run's row (metrics, gaps, norms) to `run_rows` and one row per point, notion
    and epsilon to `rows` (every measurement cached beside the run)."""
    from keskar_repro.store.measurements import (
        final_metrics,
        notion_measurement,
        training_objective,
    )
    from keskar_repro.store.runs import run_dir
    from keskar_repro.training import reparam

    path = run_dir(run.config, settings.runs_dir)
    metrics = final_metrics(run, dataset, "batch", settings.runs_dir)
    run_rows.append({
        "run": path.name, "regime": regime, "seed": run.config.seed, "label": label(run.config),
        "run_dir": str(path), **metrics,
        "gap_loss": metrics["test_loss"] - metrics["train_loss"],
        "gap_accuracy": 100 * (metrics["train_accuracy"] - metrics["test_accuracy"]),
        "norms": reparam.layer_norms(_variables(run)),
        "rms": reparam.layer_norms(_variables(run), "rms"),
        "rms_history": rms_history(run),
    })  # fmt: skip
    loss_fn = training_objective(run, dataset)
    for point, (params, spec) in points.items():
        f = float(loss_fn(run.params if params is None else params))
        for notion in settings.notions:
            for eps in settings.epsilons:  # read back from the cache for a notion without eps
                m = notion_measurement(
                    run, dataset, notion, eps, samples=settings.samples, params=params,
                    transform=spec, loss_fn=loss_fn, root=settings.runs_dir,
                )  # fmt: skip
                rows.append({
                    "run": path.name, "regime": regime, "seed": run.config.seed, "point": point,
                    "notion": notion, "epsilon": eps, "loss": f,
                    "value": m["value"], "stderr": m["stderr"],
                })  # fmt: skip
                bar.update(1)
                bar.set_postfix_str(f"{regime} seed {run.config.seed} {point} {notion}")


def _ratio(a: float, b: float) -> float | None:
    """a / b where both are positive (a ratio of sharpness values), else None."""
    return a / b if a > 0 and b > 0 else None


def _values(rows: list[dict], **where) -> list[float]:
    return [r["value"] for r in rows if all(r[k] == v for k, v in where.items())]


def correlated(runs: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(population, point, runs) of each rank correlation: the SB/LB pairs at the trained and
    at the matched points, and, when other runs were measured, every run at its trained point
    (only populations of 2 runs or more)."""
    pairs = [r for r in runs if r["regime"] in REGIMES]
    out = [("pairs", "trained", pairs), ("pairs", "matched", pairs)]
    if len(pairs) < len(runs):
        out.append(("all", "trained", runs))
    return [(population, point, members) for population, point, members in out
            if len(members) >= 2]  # fmt: skip


def summarize(results: dict) -> dict:
    """Per notion, epsilon and point ("trained", "matched"): SB and LB mean +- std over seeds,
    the ratio of the means LB / SB, and "kept" = log(ratio matched) / log(ratio trained), the
    share of the (log) SB/LB gap that survives common norms; the seed-0 reparametrisation
    responses value(transform) / value(trained) and the relative loss change; Kendall's tau
    of each notion with each gap; and the per-layer RMS of the hidden kernels, mean per regime.

    Merged parts may have measured different epsilons (the SB/LB pairs at two, the other runs
    at one): each tau is over the runs measured at its epsilon (its "n" says how many), and
    an epsilon at which some SB/LB pair was not measured has no gap-table row."""
    rows, runs = results["rows"], results["runs"]
    epsilons = sorted({r["epsilon"] for r in rows}, reverse=True)
    regimes = [g for g in REGIMES if any(r["regime"] == g for r in runs)]  # none in an others part
    paired = [r for r in runs if r["regime"] in REGIMES]
    measured_at = {(r["run"], r["notion"], r["epsilon"]) for r in rows}
    gap_table, response, tau, versus = [], [], [], []
    for notion in results["notions"]:
        for eps in epsilons:
            measured = [r for r in runs if (r["run"], notion, eps) in measured_at]
            for population, point, members in correlated(measured):
                values = [
                    _values(rows, notion=notion, epsilon=eps, point=point, run=r["run"])[0]
                    for r in members
                ]
                for gap in GAPS:
                    t = stats.kendall_tau(values, [r[f"gap_{gap}"] for r in members])
                    tau.append({"notion": notion, "epsilon": eps, "point": point, "gap": gap,
                                "population": population, **t})  # fmt: skip
            if notion != REFERENCE:
                versus += _versus_reference(rows, measured, notion, eps, measured_at)
            if regimes != list(REGIMES) or len(measured) < len(paired):
                continue  # no pairs here, or some pair was not measured at this eps
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
        for regime in regimes
    }  # fmt: skip
    return {"gap": gap_table, "response": response, "tau": tau, "versus": versus, "rms": norms,
            "rms_curves": rms_curves(runs)}  # fmt: skip


def _versus_reference(rows, measured, notion: str, eps: float, measured_at) -> list[dict]:
    """Kendall's tau-b of `notion` with Metric 2.1 (REFERENCE) at `eps`, per population and
    point, over the runs measured with both (each a dict like a gap tau's, "gap" REFERENCE)."""
    both = [r for r in measured if (r["run"], REFERENCE, eps) in measured_at]
    out = []
    for population, point, members in correlated(both):
        pick = {n: [_values(rows, notion=n, epsilon=eps, point=point, run=r["run"])[0]
                    for r in members] for n in (notion, REFERENCE)}  # fmt: skip
        t = stats.kendall_tau(pick[notion], pick[REFERENCE])
        out.append({"notion": notion, "epsilon": eps, "point": point, "gap": REFERENCE,
                    "population": population, **t})  # fmt: skip
    return out


def rms_curves(runs: list[dict]) -> dict[str, dict]:
    """Per regime, the hidden kernels' RMS entry along training, mean and std over seeds
    (stats.mean_std_curves); {} when the runs' histories have no kernel norms."""
    out = {}
    for regime in REGIMES:
        histories = [r.get("rms_history") for r in runs if r["regime"] == regime]
        if histories and all(histories):
            out[regime] = stats.mean_std_curves(histories, tuple(histories[0]))
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def seeds_text(config: dict) -> str:
    """ "5 seeds" for seeds 0 .. 4, else the seeds themselves: "2 seeds (2, 3)"."""
    seeds = seed_list(config)
    listed = "" if seeds == list(range(len(seeds))) else f" ({', '.join(map(str, seeds))})"
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)}{listed}"


def text(results: dict) -> str:
    s = results["summary"]
    lines = [f"Sharpness notions, F1 on {results['dataset']['name']}, "
             f"{seeds_text(results['config'])}: mean +- sample std over seeds"]  # fmt: skip
    others = results["config"].get("other_runs") or []
    if others:
        lines.append(f"and {len(others)} other saved runs at their trained points")
    if not s["gap"]:  # a part of other runs only
        lines.append("no SB/LB pairs here: --merge this part with the pairs' parts")
        return "\n".join(lines + _tau_lines(_once(s["tau"])))
    lines.append("hidden-kernel RMS (mean over seeds): " + "; ".join(
        f"{k.split('/')[0]} SB {s['rms']['SB'][k][0]:.3g} LB {s['rms']['LB'][k][0]:.3g}"
        for k in s["rms"]["SB"]))  # fmt: skip
    for regime, c in s.get("rms_curves", {}).items():
        marks = sorted({1, min(10, len(c["epoch"])), len(c["epoch"])})
        lines.append(f"{regime} hidden-kernel RMS along training (mean over seeds), epochs "
                     f"{'/'.join(map(str, marks))}: " + "; ".join(
            f"{k[:-5].split('/')[0]} " + "/".join(f"{c[k][e - 1]:.3g}" for e in marks)
            for k in c if k.endswith("_mean")))  # fmt: skip
    lines.append("notion, eps | trained SB | trained LB | LB/SB | matched SB | matched LB | "
                 "LB/SB | kept")  # fmt: skip
    for e in _once(s["gap"]):
        cells = [f"{_fmt(e[f'{p}_{r}'][0])} +- {_fmt(e[f'{p}_{r}'][1])}"
                 for p in ("trained", "matched") for r in REGIMES]  # fmt: skip
        kept = "-" if e["kept"] is None else f"{e['kept']:.2f}"
        lines.append(f"{e['notion']}, {_eps(e)} | {cells[0]} | {cells[1]} | "
                     f"{_fmt(e['trained_ratio'])} | {cells[2]} | {cells[3]} | "
                     f"{_fmt(e['matched_ratio'])} | {kept}")  # fmt: skip
    lines.append("seed 0, value(transform) / value(trained) [relative change of the loss]:")
    for r in _once(s["response"]):
        lines.append(f"  {r['notion']}, {_eps(r)}, {r['regime']}, {r['point']}: "
                     f"{_fmt(r['ratio'])} [{r['loss_change']:+.1e}]")  # fmt: skip
    versus = _tau_lines(s.get("versus", []), f"{REFERENCE} at the same eps", "")
    return "\n".join(lines + _tau_lines(_once(s["tau"])) + versus)


def _once(entries: list[dict]) -> list[dict]:
    """`entries` with each notion of `HESSIAN` at its first epsilon only: its value does not
    depend on epsilon, so the summary repeats it once per epsilon."""
    first: dict[str, float] = {}
    return [e for e in entries
            if e["notion"] not in HESSIAN
            or first.setdefault(e["notion"], e["epsilon"]) == e["epsilon"]]  # fmt: skip


def _eps(entry: dict) -> str:
    """The entry's epsilon as printed: "-" for a notion of `HESSIAN`, which has none."""
    return "-" if entry["notion"] in HESSIAN else f"{entry['epsilon']:g}"


def _tau_lines(
    taus: list[dict], against: str = "the generalisation gap", what: str = "gap "
) -> list[str]:
    if not taus:
        return []
    lines = [f"Kendall tau-b with {against} over runs [95% bootstrap interval]:"]
    for t in taus:
        tau = "undefined (ties)"
        if t["tau"] is not None:
            tau = f"{t['tau']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"
        eps = f"{t['epsilon']:g}" if t["gap"] == REFERENCE else _eps(t)  # Metric 2.1's eps
        lines.append(f"  {t['notion']}, {eps}, {t.get('population', 'pairs')} "
                     f"{t['point']}, {what}{t['gap']}: {tau} (n {t['n']})")  # fmt: skip
    return lines


def draw(results: dict, settings) -> list[str]:
    from keskar_repro.report import plots, study_plots

    if not results["summary"]["gap"]:  # a part of other runs only: drawn once merged
        return []
    fig = study_plots.notions_figure(results["summary"], title=(
        f"Sharpness notions, F1 on {results['dataset']['name']}, "
        f"{seeds_text(results['config'])}"))  # fmt: skip
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


# Parts: one run per few seeds (--first-seed, --seeds), or of the other saved runs
# (--population others), merged with --merge; a part without seed 0 has no rescaling responses,
# and the merge takes them from the part that has it.
PARTS = experiment.Parts(
    units=part_units, field="seed_list", what="seeds or other runs", lists=("runs", "rows"),
    free=("first_seed", "seeds", "population", "other_runs"), merged=merged_units,
    unions=("epsilons",),
)  # fmt: skip
# Last in make_all: --population all measures every run the other scripts have trained.
SPEC = experiment.FigureSpec(
    name="fig_sharpness_notions",
    stem=STEM,
    doc=__doc__,
    order=6,
    presets=PRESETS,
    compute=compute,
    summarize=summarize,
    text=text,
    draw=draw,
    options=options,
    checks=checks,
    parts=PARTS,
    bn_policy="batch",
)

if __name__ == "__main__":
    experiment.cli(SPEC)
