"""Sharpness of one SB and one LB F1 minimizer under every batch-norm policy and solver variant.

    python experiments/sharpness_report.py --dataset mnist10k
    python experiments/sharpness_report.py --dataset mnist10k --preset quick
    python experiments/sharpness_report.py --dataset fashion_mnist --policies batch,running
    python experiments/sharpness_report.py --dataset mnist10k --replot

For the SB and LB runs of seeds 0 .. --seeds - 1 (trained by, and shared with,
experiments/fig_sharpness.py; trained here if missing), measures Metric 2.1 at each epsilon,
in the full space and in 100-d random subspaces, for each BN policy (batch, full, running),
plus the paper-literal L-BFGS-B scaling and the PGA cross-check (full space, batch policy).
Prints a table with phi, f0, f_max, nit, nfev and seconds, and writes into --out:

    sharpness_report_<dataset>_<preset>.json   every measurement and the solver's report
    sharpness_report_<dataset>_<preset>.md     the table

Every measurement is cached beside its run.

Runtime and result on the 2-core CPU: the quick preset on mnist10k (seed 0, 15 epochs,
eps 1e-3: 22 maximisations) takes about 3 minutes after experiments/fig_sharpness.py; the
paper preset (100 epochs, both epsilons, 44 maximisations) took 1,602 s on mnist10k (8 s to
8 min per maximisation; the running policy's subspaces are the slow ones). On full MNIST,
`--policies batch --subspace-scaling gaussian` (16 maximisations, 17-72 s each) took 633 s.
LB is the sharper minimizer in the full space under every BN policy, with the default
scaling and with PGA; the paper-literal scaling ranks it flatter on full MNIST, because 10
of its iterations barely leave the minimizer (paper_notes.md, "Solver variants on full MNIST").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment  # noqa: E402  (no JAX at import)
from keskar_repro.training.bn_policies import BN_POLICIES  # noqa: E402

STEM = "sharpness_report"
PRESETS = {
    "paper": {"seeds": 1, "epochs": 100, "epsilons": [1e-3, 5e-4]},
    "quick": {"seeds": 1, "epochs": 15, "epsilons": [1e-3]},
}
COLUMNS = "regime, seed, BN policy, space, eps, scaling, method, phi (%), f0, f_max, nit, nfev, s"


def options(p: argparse.ArgumentParser) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument(
        "--policies",
        type=lambda s: s.split(","),
        default=list(BN_POLICIES),
        help=f"BN policies, comma-separated (default: all of {', '.join(BN_POLICIES)})",
    )
    p.add_argument("--subspace-dim", type=int, default=100, help="p of the random subspaces")
    p.add_argument(
        "--subspace-scaling",
        type=lambda s: s.split(","),
        default=["unit", "gaussian"],
        help="column scaling(s) of the random A: unit and/or gaussian",
    )
    p.add_argument("--no-variants", action="store_true", help="skip the literal and PGA runs")


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--policies": bool(settings.policies) and set(settings.policies) <= set(BN_POLICIES),
        "--subspace-dim": settings.subspace_dim >= 1,
        "--subspace-scaling": set(settings.subspace_scaling) <= {"unit", "gaussian"},
    }


def jobs(settings: experiment.Settings) -> list[dict]:
    """The measurements of each run: every policy x space x epsilon, then the variants."""
    spaces = [(None, None)] + [(settings.subspace_dim, s) for s in settings.subspace_scaling]
    out = [
        {"epsilon": e, "subspace_dim": p, "subspace_scaling": s, "bn_policy": pol}
        for pol in settings.policies
        for p, s in spaces
        for e in settings.epsilons
    ]
    if not settings.no_variants:
        out += [{"epsilon": e, "scaling": "literal"} for e in settings.epsilons]
        out += [{"epsilon": e, "method": "pga"} for e in settings.epsilons]
    return out


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.store.measurements import RunSharpness

    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    todo = jobs(settings)
    runs = {regime: experiment.seed_runs(settings, dataset, c) for regime, c in configs.items()}
    bar = experiment.progress_bar(settings, 2 * settings.seeds * len(todo), "sharpness")
    rows = []
    for regime, regime_runs in runs.items():
        for run in regime_runs:
            meter = RunSharpness(run, dataset, settings.runs_dir)
            for job in todo:
                result = meter.measure(**job)
                rows.append({"regime": regime, "seed": run.config.seed, **result})
                rows[-1]["batch_size"] = run.config.batch_size
                bar.update(1)
    bar.close()
    return {"rows": rows}


def summarize(results: dict) -> dict:
    """Per (space, BN policy, scaling, method, epsilon): the SB and LB values of each seed and
    whether LB is the sharper one."""
    out = {}
    for r in results["rows"]:
        key = f"{r['space']}/{r['bn_policy']}/{r['scaling']}/{r['method']}/{r['epsilon']:g}"
        out.setdefault(key, {}).setdefault(str(r["seed"]), {})[r["regime"]] = r["value"]
    for per_seed in out.values():
        for values in per_seed.values():
            values["lb_sharper"] = values["LB"] > values["SB"]
    return out


def text(results: dict) -> str:
    """The table of every measurement, in Markdown."""
    header = "| " + " | ".join(COLUMNS.split(", ")) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS.split(", "))]
    for r in results["rows"]:
        lines.append(
            f"| {r['regime']} | {r['seed']} | {r['bn_policy']} | {r['space']} | "
            f"{r['epsilon']:g} | {r['scaling']} | {r['method']} | {r['value']:.4g} | "
            f"{r['f0']:.3g} | {r['f_max']:.3g} | {r['nit']} | {r['nfev']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    """The table as Markdown, with its command, data and device."""
    from keskar_repro.store.files import write_atomic

    path = experiment.figure_stem(settings, STEM) + ".md"
    device = results["environment"]["device"]
    write_atomic(
        path,
        f"Sharpness of the SB and LB F1 minimizers on {results['dataset']['name']} "
        f"({results['config']['batch_note']}).\n\nCommand: `{results['command']}`; device: "
        f"{device}; wall time {results['wall_seconds']:.0f} s.\n\n{text(results)}\n",
    )
    return [path]


SPEC = experiment.FigureSpec(
    name="sharpness_report",
    stem=STEM,
    doc=__doc__,
    order=1,
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
