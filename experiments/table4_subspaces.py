"""Table 4 under every plausible construction of the random subspace A, and every solver reading.

    python experiments/table4_subspaces.py --dataset mnist --data-dir ../shared/data/mnist
    python experiments/table4_subspaces.py --dataset mnist10k --preset quick
    python experiments/table4_subspaces.py --dataset mnist --constructions uniform,gaussian \
        --readings default --scalings normalized
    python experiments/table4_subspaces.py --dataset mnist --replot

The paper's Table 4 (Metric 2.1 in a random 100-d subspace, 10 L-BFGS-B iterations) is SB 0.11
and LB 9.22 at eps 1e-3, SB 0.05 and LB 9.17 at eps 5e-4: SB halves with eps (the box bounds
it), LB hardly moves (something else bounds it). The paper says only that A is "randomly
generated". For the SB and LB runs of seeds 0 .. --seeds - 1 (experiments/fig_sharpness.py's
runs, trained here if missing), this measures Metric 2.1 in a p-dimensional subspace drawn by
each construction of keskar_repro.measures.subspace.random_subspace (--constructions), with the
normalized and the paper-literal L-BFGS-B (--scalings), and, with the normalized one, under
each solver-side reading (--readings):

    default     the training objective under batch statistics (Table 3's policy)
    kernels     the box on the Dense kernels' coordinates only (biases and BN fixed)
    maxfun      "10 iterations" read as 10 evaluations of f (SolverOptions.maxfun)
    bn_full     the objective under full-batch statistics
    bn_running  the objective under the running statistics
    pga         projected sign-gradient ascent, the cross-check of L-BFGS-B

For each: the value, its first-order value, iterations, function evaluations and the stop
reason, the fraction of subspace coordinates at the box, the loss reached, and (summary) the
ratio of the values at the two eps with the SB/LB means beside the paper's. For seed 0 at the
largest eps (every variant), the loss along the direction the maximiser ends in,
A y, as a 1-D scan from x over t in [-1, 2] x A y, and for "uniform" also along the all-ones
direction at the same length (the component its columns share).

Writes into --out: table4_subspaces_<dataset>_<preset>.json (every measurement, the scans and
the summary) and .png/.pdf (values per construction, SB and LB at both eps, the paper's as
lines; the scans). Every measurement is cached beside its run, so an interrupted study resumes.

Runtime on the 2-core CPU: the quick preset on mnist10k (1 seed, 15 epochs, eps 1e-3, the
gaussian and uniform constructions, default reading: 4 maximisations) takes seconds after
experiments/fig_sharpness.py's quick preset; the paper preset (3 seeds, both eps, 7
constructions x (2 formulations + 5 readings): 588 maximisations) is long on full MNIST, where
one maximisation takes 17-72 s: choose --constructions, --readings and --scalings, or let it
resume across sessions. A study measured in parts (each some seeds, --first-seed and --seeds,
and some variants; a part without "default" in --readings measures only the other readings)
is merged into one JSON whose summary gives each variant's number of seeds:

    python experiments/table4_subspaces.py --dataset mnist --seeds 1 --scalings literal \
        --constructions gaussian,uniform --readings default --out parts/literal
    python experiments/table4_subspaces.py --dataset mnist --out figures --merge \
        figures/table4_subspaces_mnist_paper.json parts/literal/table4_subspaces_mnist_paper.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.measures.options import SUBSPACE_SCALINGS  # noqa: E402  (no JAX at import)
from keskar_repro.report import experiment, paper, stats  # noqa: E402

STEM = "table4_subspaces"
READINGS = {  # name -> what it changes in the default measurement
    "default": {},
    "kernels": {"mask": "kernels"},
    "maxfun": {"maxfun": 10},
    "bn_full": {"bn_policy": "full"},
    "bn_running": {"bn_policy": "running"},
    "pga": {"method": "pga"},
}
PRESETS = {
    "paper": {
        "seeds": 3,
        "epochs": 100,
        "epsilons": [1e-3, 5e-4],
        "constructions": list(SUBSPACE_SCALINGS),
        "readings": list(READINGS),
        "scalings": ["normalized", "literal"],
    },
    # the smallest study that exercises the script: two constructions, default reading
    "quick": {
        "seeds": 1,
        "epochs": 15,
        "epsilons": [1e-3],
        "constructions": ["gaussian", "uniform"],
        "readings": ["default"],
        "scalings": ["normalized"],
    },
}
SCAN_T = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


def _names(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def options(p: argparse.ArgumentParser) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="measure seeds first, first + 1, ..., first + seeds - 1 (a part, for --merge)",
    )
    p.add_argument("--subspace-dim", type=int, default=100, help="p of the subspaces (100)")
    p.add_argument(
        "--constructions",
        type=_names,
        help=f"constructions of A, comma-separated, of: {', '.join(SUBSPACE_SCALINGS)}",
    )
    p.add_argument(
        "--readings",
        type=_names,
        help=f"solver readings, comma-separated, of: {', '.join(READINGS)}",
    )
    p.add_argument(
        "--scalings", type=_names, help="L-BFGS-B formulations: normalized and/or literal"
    )


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--first-seed": settings.first_seed >= 0,
        "--subspace-dim": settings.subspace_dim >= 1,
        "--constructions": bool(settings.constructions)
        and set(settings.constructions) <= set(SUBSPACE_SCALINGS),
        "--readings": bool(settings.readings) and set(settings.readings) <= set(READINGS),
        "--scalings": bool(settings.scalings)
        and set(settings.scalings) <= {"normalized", "literal"},
    }


def jobs(settings: experiment.Settings) -> list[dict]:
    """Every (construction, scaling, reading) measured at each eps: each construction with each
    formulation under the default reading (when --readings has it), and with the normalized
    one under each other reading."""
    out = []
    for construction in settings.constructions:
        for scaling in settings.scalings if "default" in settings.readings else ():
            out.append({"construction": construction, "scaling": scaling, "reading": "default"})
        for reading in settings.readings:
            if reading != "default":
                out.append(
                    {"construction": construction, "scaling": "normalized", "reading": reading}
                )
    return [{**job, "epsilon": eps} for job in out for eps in settings.epsilons]


def measure_job(run, dataset, root, job: dict, subspace_dim: int, scan: bool) -> dict:
    """One measurement of Metric 2.1 (`sharpness`), cached beside the run; with `scan`, the 1-D
    loss scan along the maximiser's A y (and the all-ones direction for "uniform")."""
    from keskar_repro.measures.sharpness import resolved_method
    from keskar_repro.store.measurements import cached_measurement
    from keskar_repro.training.protocol import SHARPNESS_MAXITER, SUBSPACE_KEY

    change = READINGS[job["reading"]]
    method = resolved_method(change.get("method", "lbfgsb"), job["scaling"])
    spec = {
        **job,
        "subspace_dim": subspace_dim,
        "subspace_key": SUBSPACE_KEY,
        "scan": scan,
        "maxiter": SHARPNESS_MAXITER,
        "method": method,
    }
    return cached_measurement(
        run, "table4_subspace", spec, lambda: _compute(run, dataset, job, spec, scan), root
    )


def _compute(run, dataset, job: dict, spec: dict, scan: bool) -> dict:
    import jax
    import numpy as np

    from keskar_repro.measures.sharpness import sharpness
    from keskar_repro.store.measurements import training_objective
    from keskar_repro.training.protocol import subspace_key

    change = READINGS[job["reading"]]
    policy = change.get("bn_policy", "batch")
    result = sharpness(
        training_objective(run, dataset, policy),
        run.params,
        job["epsilon"],
        subspace_dim=spec["subspace_dim"],
        key=subspace_key(run.config.seed),
        subspace_scaling=job["construction"],
        mask=(lambda path: path.endswith("kernel")) if change.get("mask") == "kernels" else None,
        method=spec["method"],
        scaling=job["scaling"],
        maxiter=spec["maxiter"],
        maxfun=change.get("maxfun"),
    )
    out = result.to_dict()
    if scan:
        out["scan"] = _scan(run, dataset, result.delta, policy)
        if job["construction"] == "uniform":
            ones = jax.tree_util.tree_map(np.ones_like, result.delta)
            out["scan_ones"] = _scan(run, dataset, ones, policy, like=result.delta)
    return out


def _scan(run, dataset, direction, policy: str, like=None) -> dict:
    """Training loss at x + t d for t in SCAN_T, d = `direction` (rescaled to the norm of
    `like` when given), in one compiled call (`evaluate_path` along x -> x + d)."""
    import jax
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from keskar_repro.training.interpolation import evaluate_path

    def norm(tree) -> float:
        return float(np.linalg.norm(np.asarray(ravel_pytree(tree)[0], np.float64)))

    length = norm(direction)
    if like is not None:
        target = norm(like)
        direction = jax.tree_util.tree_map(lambda v: v * (target / length), direction)
        length = target
    start = {"params": run.params, "batch_stats": run.batch_stats}
    end = {
        "params": jax.tree_util.tree_map(lambda p, d: p + d, run.params, direction),
        "batch_stats": run.batch_stats,
    }
    path = evaluate_path(
        run.config.model(),
        start,
        end,
        SCAN_T,
        {"train": (dataset.x_train, dataset.y_train)},
        bn_policy=policy,
    )
    return {"t": SCAN_T, "norm": length, "train_loss": path["train_loss"].tolist()}


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    todo = jobs(settings)
    seeds = range(settings.first_seed, settings.first_seed + settings.seeds)
    runs = {r: experiment.seed_runs(settings, dataset, c, seeds) for r, c in configs.items()}
    bar = experiment.progress_bar(settings, 2 * settings.seeds * len(todo), "Table 4 subspaces")
    rows = []
    top = max(settings.epsilons)
    # seed by seed, SB and LB together: an interrupted study has measured whole SB/LB pairs
    for pair in zip(*runs.values(), strict=True):
        for regime, run in zip(runs, pair, strict=True):
            for job in todo:
                scan = run.config.seed == 0 and job["epsilon"] == top
                result = measure_job(
                    run, dataset, settings.runs_dir, job, settings.subspace_dim, scan
                )
                rows.append({"regime": regime, "seed": run.config.seed, **job, **result})
                bar.update(1)
    bar.close()
    rows.sort(key=lambda r: (r["regime"] != "SB", r["seed"]))  # SB rows first, as the tables
    return {"rows": rows}


def variant(row: dict) -> str:
    """The row's measurement without its minimizer: construction/scaling/reading."""
    return f"{row['construction']}/{row['scaling']}/{row['reading']}"


def summarize(results: dict) -> dict:
    """Per construction/scaling/reading: SB and LB mean +- std over seeds at each eps, the
    ratio value(largest eps) / value(smallest eps) per regime (the paper: SB 2.2, LB 1.0), the
    mean value / first-order value and fraction at the box, and the distance to the paper's
    Table 4: the RMS of log10(ours / paper) over the four means (where both eps were measured)."""
    import math

    target = {
        f"{regime}/{float(key.rsplit('/', 1)[1]):g}": pair[regime][0]
        for key, pair in paper.PAPER_F1.items()
        if key.startswith("sharpness/subspace/")
        for regime in ("SB", "LB")
    }
    table = {}
    for name in dict.fromkeys(variant(r) for r in results["rows"]):
        rows = [r for r in results["rows"] if variant(r) == name]
        entry: dict = {"values": {}, "eps_ratio": {}, "linear_ratio": {}, "at_box": {},
                       "seeds": len({r["seed"] for r in rows})}  # fmt: skip
        for regime in ("SB", "LB"):
            mine = [r for r in rows if r["regime"] == regime]
            for eps in sorted({r["epsilon"] for r in mine}, reverse=True):
                values = [r["value"] for r in mine if r["epsilon"] == eps]
                entry["values"][f"{regime}/{eps:g}"] = stats.mean_std(values)
            eps_set = sorted({r["epsilon"] for r in mine})
            if len(eps_set) > 1:
                low, high = (
                    entry["values"][f"{regime}/{e:g}"][0] for e in (eps_set[0], eps_set[-1])
                )
                entry["eps_ratio"][regime] = high / low if low > 0 else None
            entry["linear_ratio"][regime] = _mean(
                [r["value"] / r["value_linear"] for r in mine if r["value_linear"] > 0]
            )
            entry["at_box"][regime] = _mean([r["frac_at_bound"] for r in mine])
        logs = [
            math.log10(entry["values"][k][0] / v)
            for k, v in target.items()
            if k in entry["values"] and entry["values"][k][0] > 0
        ]
        entry["log10_rms_to_paper"] = (
            math.sqrt(sum(x * x for x in logs) / len(logs)) if logs else None
        )
        table[name] = entry
    ranked = sorted(
        (n for n in table if table[n]["log10_rms_to_paper"] is not None),
        key=lambda n: table[n]["log10_rms_to_paper"],
    )
    return {"paper": target, "variants": table, "closest_to_paper": ranked[:3]}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def text(results: dict) -> str:
    """One line per construction/scaling/reading: SB and LB at each eps, the eps ratios, and
    the distance to the paper."""
    s = results["summary"]
    lines = [f"Table 4, paper: {', '.join(f'{k} {v:g}' for k, v in s['paper'].items())}"]
    lines.append(
        "variant (construction/scaling/reading): mean values; eps ratio SB, LB; "
        "value / first-order; log10 RMS to the paper"
    )
    for name, e in s["variants"].items():
        values = ", ".join(f"{k} {m:.3g}+-{sd:.2g}" for k, (m, sd) in e["values"].items())
        ratio = "/".join(
            "-" if e["eps_ratio"].get(g) is None else f"{e['eps_ratio'][g]:.2f}"
            for g in ("SB", "LB")
        )
        lin = "/".join(
            "-" if e["linear_ratio"][g] is None else f"{e['linear_ratio'][g]:.2f}"
            for g in ("SB", "LB")
        )
        rms = e["log10_rms_to_paper"]
        lines.append(
            f"  {name} (n {e.get('seeds', '-')}): {values}; ratio {ratio}; lin {lin}; "
            f"rms {'-' if rms is None else f'{rms:.2f}'}"
        )
    lines.append(f"closest to the paper: {', '.join(s['closest_to_paper']) or '-'}")
    return "\n".join(lines)


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    """Left: the default-reading values per construction (SB, LB at each eps; log scale), the
    paper's as horizontal lines. Middle: the same for the literal formulation and the other
    readings. Right: the scans along A y (SB solid, LB dashed)."""
    import matplotlib.pyplot as plt

    from keskar_repro.report import plots

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(19, 4.8))
    s = results["summary"]
    main = [n for n in s["variants"] if n.endswith("/normalized/default")]
    _bars(left, s, main, [n.split("/")[0] for n in main], "Table 4 by construction of A")
    other = [n for n in s["variants"] if n not in main]
    labels = [n.replace("/normalized", "").replace("/default", "") for n in other]
    _bars(middle, s, other, labels, "formulation and solver readings")
    colour = {c: f"C{i % 10}" for i, c in enumerate(SUBSPACE_SCALINGS)}
    scans = [x for x in results["rows"] if "scan" in x and variant(x) in main]
    for r in scans:
        style = "-" if r["regime"] == "SB" else "--"
        right.plot(r["scan"]["t"], r["scan"]["train_loss"], style, color=colour[r["construction"]],
                   label=f"{r['regime']} {r['construction']}")  # fmt: skip
    right.set_visible(bool(scans))
    right.set_yscale("log")
    right.set_xlabel("t (x + t A y, y the maximiser)")
    right.set_ylabel("training cross-entropy")
    if scans:
        right.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


def _bars(ax, s: dict, names: list[str], labels: list[str], title: str) -> None:
    """The variants' SB and LB mean values at each eps as grouped bars (log scale), the paper's
    as dotted lines; hidden when there is nothing to draw."""
    ax.set_visible(bool(names))
    keys = [k for k in s["paper"] if any(k in s["variants"][n]["values"] for n in names)]
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        heights = [s["variants"][n]["values"].get(key, (float("nan"), 0))[0] for n in names]
        ax.bar([j + i * width for j in range(len(names))], heights, width, label=f"ours {key}")
        ax.axhline(s["paper"][key], color=f"C{i}", ls=":", lw=1)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("Metric 2.1 in the subspace (%)")
    ax.set_title(f"{title} (dotted: the paper)")
    if keys:
        ax.legend(fontsize=7)


def part_units(results: dict) -> list[str]:
    """A part's units: "<seed>/<construction>/<scaling>/<reading>" of each measured variant."""
    return sorted({f"{r['seed']}/{variant(r)}" for r in results["rows"]})


def merged_units(units: list[str]) -> dict:
    """The merged config: every measured seed/variant, and how many seeds."""
    return {"measured": units, "seeds": len({u.split("/")[0] for u in units})}


# Parts: each some seeds and some variants (--seeds, --first-seed, --constructions, --scalings,
# --readings), merged with --merge; a seed/variant measured in two parts is refused.
PARTS = experiment.Parts(
    units=part_units, field="measured", what="seeds and variants", lists=("rows",),
    free=("seeds", "first_seed"), unions=("constructions", "scalings", "readings"),
    merged=merged_units,
)  # fmt: skip
SPEC = experiment.FigureSpec(
    name="table4_subspaces",
    stem=STEM,
    doc=__doc__,
    order=5,  # after fig_sharpness (its runs); before the notions study (which measures all runs)
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
