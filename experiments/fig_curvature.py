"""Hessian spectra of the SB and LB minimizers of F1: top eigenvalues, trace, spectral density.

    python experiments/fig_curvature.py --dataset mnist10k                  # paper preset
    python experiments/fig_curvature.py --dataset mnist10k --preset quick
    python experiments/fig_curvature.py --dataset mnist --data-dir ../shared/data/mnist --seeds 1
    python experiments/fig_curvature.py --dataset mnist10k --replot

For the SB and LB runs of seeds 0 .. --seeds - 1 (experiments/fig_sharpness.py's runs, trained
here if missing), the Hessian H of the training objective (the mean cross-entropy over the
whole training split, `store.measurements.training_objective`) at the trained parameters,
under each BN policy of --policies ("batch": Table 3's, batch statistics over the training
batches; "running": the stored running averages), by keskar_repro.measures.curvature:

- the --top-k largest eigenvalues (Lanczos to the relative tolerance --eig-tol on the residual
  bounds, with their errors);
- the trace (XTrace with --trace-samples probes, 2 HVPs each, with its standard error);
- the spectral density (stochastic Lanczos quadrature, --slq-probes Rademacher probes of
  --slq-steps Lanczos steps), with the trace it implies;
- with --layers, per module of the network (each Dense layer's kernel and bias, each batch
  norm's scale and offset: `pytree.layer_masks`): the largest eigenvalue and the trace of that
  module's diagonal block of H.

The random vectors of seed s come from fold_in(key(CURVATURE_KEY), s), folded once more per
estimator and module, so SB and LB of a seed start from the same vectors. Writes into --out:

    fig_curvature_<dataset>_<preset>.json       every measurement and the SB/LB summary
    fig_curvature_<dataset>_<preset>.{png,pdf}  densities (log axis), lambda_max and trace per
                                                seed, per-module lambda_max

Every measurement is cached beside its run, so an interrupted study resumes. Runtime on the
2-core CPU: one HVP costs about 2.3 value-and-gradients of the objective (benchmarks/README.md),
about 1.1 s on mnist10k's 8,000 images and 8 s on full MNIST; the paper preset spends about
50 + 20 + 160 HVPs on the whole network and 11 x (about 15 + 20) per module and policy, so
about 15 minutes per run and policy on mnist10k, and ten times that on full MNIST (measure it
a few seeds at a time: --seeds, --policies). The quick preset (1 seed, 15 epochs, top 3, small
estimators, batch statistics only) takes a few minutes after fig_sharpness.py's quick runs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from keskar_repro.report import experiment, stats  # noqa: E402
from keskar_repro.training.bn_policies import BN_POLICIES  # noqa: E402

STEM = "fig_curvature"
CURVATURE_KEY = 20170103  # our choice: the random vectors of seed s from fold_in(key(this), s)
PRESETS = {
    "paper": {
        "seeds": 5,
        "epochs": 100,
        "top_k": 10,
        "eig_tol": 1e-3,
        "trace_samples": 10,
        "slq_probes": 4,
        "slq_steps": 40,
        "policies": ["batch", "running"],
        "layers": True,
        "epsilons": [1e-3, 5e-4],
    },
    # small estimators on fig_sharpness.py's quick runs
    "quick": {
        "seeds": 1,
        "epochs": 15,
        "top_k": 3,
        "eig_tol": 1e-3,
        "trace_samples": 4,
        "slq_probes": 2,
        "slq_steps": 15,
        "policies": ["batch"],
        "layers": True,
        "epsilons": [1e-3],
    },
}
QUANTITIES = ("lambda_max", "trace")
PREDICTIONS = ("measured", "first_order", "along_v", "v_corner")  # `quadratic`, in %


def options(p: argparse.ArgumentParser) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    p.add_argument("--top-k", type=int, help="largest eigenvalues of the whole network's H")
    p.add_argument("--eig-tol", type=float, help="Lanczos tolerance on the residual bounds")
    p.add_argument("--trace-samples", type=int, help="XTrace probes (2 HVPs each)")
    p.add_argument("--slq-probes", type=int, help="probes of the spectral density (0: none)")
    p.add_argument("--slq-steps", type=int, help="Lanczos steps per density probe")
    p.add_argument(
        "--policies",
        type=lambda s: [x for x in s.split(",") if x],
        help=f"BN policies, comma-separated, of: {', '.join(BN_POLICIES)}",
    )
    p.add_argument(
        "--layers",
        action=argparse.BooleanOptionalAction,
        help="also each module's diagonal block of H (--no-layers: the whole network only)",
    )


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--top-k": settings.top_k >= 1,
        "--eig-tol": 0 <= settings.eig_tol < 1,
        "--trace-samples": settings.trace_samples >= 2,
        "--slq-probes": settings.slq_probes >= 0,
        "--slq-steps": settings.slq_steps >= 1,
        "--policies": bool(settings.policies) and set(settings.policies) <= set(BN_POLICIES),
    }


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    runs = {regime: experiment.seed_runs(settings, dataset, c) for regime, c in configs.items()}
    total = 2 * settings.seeds * len(settings.policies)
    bar = experiment.progress_bar(settings, total, "Hessian spectra")
    rows = []
    for pair in zip(*runs.values(), strict=True):  # seed by seed, SB and LB together
        for regime, run in zip(runs, pair, strict=True):
            for policy in settings.policies:
                result = measure(run, dataset, policy, settings)
                result["quadratic"] = quadratic(run, dataset, policy, settings)
                rows.append({"regime": regime, "seed": run.config.seed, "policy": policy, **result})
                bar.update(1)
    bar.close()
    rows.sort(key=lambda r: (r["policy"], r["regime"] != "SB", r["seed"]))
    return {"rows": rows}


def measure(run, dataset, policy: str, settings: experiment.Settings) -> dict:
    """The curvature of one run under one BN policy (module docstring): three parts (the whole
    network's top eigenvalues and trace, its density, the modules), each cached beside the run
    on the settings it depends on, so a lighter pass (--no-layers, --slq-probes 0) is reused
    by a fuller one."""
    from keskar_repro.store.measurements import cached_measurement

    def cached(kind: str, keys: tuple[str, ...], compute) -> dict:
        spec = {"policy": policy, "key": CURVATURE_KEY, **{k: getattr(settings, k) for k in keys}}
        return cached_measurement(run, kind, spec, compute, settings.runs_dir)

    parts = _parts(run, dataset, policy, settings)
    whole = cached("curvature_top", ("top_k", "eig_tol", "trace_samples"), parts["top"])
    out = {"whole": whole}
    if settings.slq_probes:
        whole["density"] = cached("curvature_density", ("slq_probes", "slq_steps"),
                                  parts["density"])  # fmt: skip
    if settings.layers:
        layers = cached("curvature_layers", ("eig_tol", "trace_samples"), parts["layers"])
        out["layers"] = {n: layers[n] for n in sorted(layers, key=_order)}  # as data meets them
    return out


def _parts(run, dataset, policy: str, settings: experiment.Settings) -> dict:
    """{part: compute()} of `measure`; the random vectors of estimator i from
    fold_in(fold_in(key(CURVATURE_KEY), seed), i)."""
    import jax

    from keskar_repro.measures.curvature import hessian_trace, spectral_density, top_eigenvalues
    from keskar_repro.measures.pytree import layer_masks
    from keskar_repro.store.measurements import training_objective

    @functools.cache
    def f():  # built on the first part computed: reading every part back builds nothing
        return training_objective(run, dataset, policy)

    seed_key = jax.random.fold_in(jax.random.key(CURVATURE_KEY), run.config.seed)

    def key(i: int) -> jax.Array:
        return jax.random.fold_in(seed_key, i)

    def block(mask, i: int, k: int) -> dict:
        top = top_eigenvalues(f(), run.params, key=key(i), k=k, tol=settings.eig_tol, mask=mask)
        trace = hessian_trace(f(), run.params, key=key(i + 1), num_samples=settings.trace_samples,
                              mask=mask)  # fmt: skip
        return {
            "lambda_max": float(top.eigenvalues[0]),
            "eigenvalues": top.eigenvalues.tolist(),
            "errors": top.errors.tolist(),
            "lanczos_steps": top.num_matvecs,
            "converged": top.converged,
            "trace": trace.value,
            "trace_stderr": trace.stderr,
            "n_params": top.n_params,
            "seconds": top.seconds + trace.seconds,
        }

    def density() -> dict:
        d = spectral_density(f(), run.params, key=key(2), num_probes=settings.slq_probes,
                             num_matvecs=settings.slq_steps)  # fmt: skip
        return {"nodes": d.nodes.tolist(), "weights": d.weights.tolist(),
                "trace": list(d.trace()), "seconds": d.seconds}  # fmt: skip

    def layers() -> dict:
        masks = layer_masks(run.params)
        return {name: block(m, 3 + 2 * i, 1) for i, (name, m) in enumerate(masks.items())}

    return {"top": lambda: block(None, 0, settings.top_k), "density": density, "layers": layers}


def quadratic(run, dataset, policy: str, settings: experiment.Settings) -> dict:
    """Metric 2.1 against what the top of the spectrum predicts for it, per epsilon, cached.

    With f0 = f(x), g its gradient, (lambda_1, v) the top eigenpair (unit v) and the box
    |delta_i| <= h_i = eps (|x_i| + 1), two second-order predictions of the worst rise, in
    Metric 2.1's units (100 rise / (1 + f0)):

        along v:         delta = t v, t = min_i h_i / |v_i| (the longest step along v in the
                         box): |g . v| t + lambda_1 t^2 / 2;
        v's corner:      delta = h * sign(v) (the box corner in v's sign pattern):
                         |g . delta| + delta^T H delta / 2 (one HVP);

    and the first-order value sum_i |g_i| h_i beside the measured Metric 2.1 (10 L-BFGS-B
    iterations on the full box, shared with fig_sharpness.py's cache)."""
    from keskar_repro.store.measurements import cached_measurement

    spec = {"policy": policy, "epsilons": settings.epsilons, "eig_tol": settings.eig_tol,
            "key": CURVATURE_KEY}  # fmt: skip
    return cached_measurement(
        run,
        "curvature_quadratic",
        spec,
        lambda: _quadratic(run, dataset, policy, settings),
        settings.runs_dir,
    )


def _quadratic(run, dataset, policy: str, settings: experiment.Settings) -> dict:
    import jax
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from keskar_repro.measures.curvature import hvp_fn, top_eigenvalues
    from keskar_repro.store.measurements import RunSharpness, training_objective

    f = training_objective(run, dataset, policy)
    key = jax.random.fold_in(jax.random.key(CURVATURE_KEY), run.config.seed)
    top = top_eigenvalues(f, run.params, key=jax.random.fold_in(key, 100), k=1,
                          tol=settings.eig_tol, vectors=True)  # fmt: skip
    lam = float(top.eigenvalues[0])
    x, unravel = ravel_pytree(run.params)
    x, v = np.asarray(x, np.float64), np.asarray(ravel_pytree(top.vectors[0])[0], np.float64)
    g = np.asarray(ravel_pytree(jax.grad(f)(run.params))[0], np.float64)
    f0 = float(f(run.params))
    hvp = hvp_fn(f, run.params)
    meter = RunSharpness(run, dataset, settings.runs_dir)
    out = {"lambda_max": lam, "f0": f0}
    for eps in settings.epsilons:
        h = eps * (np.abs(x) + 1.0)
        t = float(np.min(h / np.maximum(np.abs(v), 1e-30)))
        corner = h * np.sign(v)
        curvature = float(corner @ np.asarray(ravel_pytree(hvp(unravel(corner)))[0], np.float64))
        measured = meter.measure(eps, bn_policy=policy)

        def percent(rise: float) -> float:
            return 100.0 * rise / (1.0 + f0)

        out[f"{eps:g}"] = {
            "measured": measured["value"],
            "measured_first_order": measured["value_linear"],
            "along_v": percent(abs(g @ v) * t + 0.5 * lam * t * t),
            "v_corner": percent(abs(g @ corner) + 0.5 * curvature),
            "first_order": percent(float(np.abs(g) @ h)),
            "step_along_v": t,
        }
    return out


def _order(name: str) -> tuple[int, bool]:
    """F1's modules in the order data meets them: Dense_0, BatchNorm_0, Dense_1, ..."""
    return int(name.rsplit("_", 1)[-1]), name.startswith("BatchNorm")


def summarize(results: dict) -> dict:
    """Per policy and quantity (lambda_max, trace of the whole network): SB and LB mean +- std
    over seeds, the per-seed LB/SB ratios and how many seeds have LB above SB; per module, the
    SB and LB means of both quantities."""
    table: dict = {}
    for policy in dict.fromkeys(r["policy"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["policy"] == policy]
        by = {g: {r["seed"]: r for r in rows if r["regime"] == g} for g in ("SB", "LB")}
        seeds = sorted(set(by["SB"]) & set(by["LB"]))
        entry: dict = {}
        for q in QUANTITIES:
            sb = [by["SB"][s]["whole"][q] for s in seeds]
            lb = [by["LB"][s]["whole"][q] for s in seeds]
            entry[q] = {
                "SB": stats.mean_std(sb),
                "LB": stats.mean_std(lb),
                "ratio_per_seed": [b / a if a else None for a, b in zip(sb, lb, strict=True)],
                "lb_larger": sum(b > a for a, b in zip(sb, lb, strict=True)),
                "seeds": len(seeds),
            }
        layers = [n for n in rows[0].get("layers", {})]
        entry["layers"] = {
            name: {
                q: {g: stats.mean_std([by[g][s]["layers"][name][q] for s in seeds]) for g in by}
                for q in QUANTITIES
            }
            for name in layers
        }
        entry["quadratic"] = {
            eps: {
                what: {g: stats.mean_std([by[g][s]["quadratic"][eps][what] for s in seeds])
                       for g in by}
                for what in PREDICTIONS
            }
            for eps in rows[0]["quadratic"]
            if eps not in ("lambda_max", "f0")
        }  # fmt: skip
        entry["tau"] = _tau_with_metric(rows, list(entry["quadratic"]))
        table[policy] = entry
    return {"policies": table}


def _tau_with_metric(rows: list[dict], epsilons: list[str]) -> list[dict]:
    """Kendall's tau-b (stats.kendall_tau, 95% bootstrap interval) of lambda_max and of the
    trace with the measured Metric 2.1 at each epsilon, over every SB and LB run of a policy."""
    return [
        {"quantity": q, "epsilon": eps,
         **stats.kendall_tau([r["whole"][q] for r in rows],
                             [r["quadratic"][eps]["measured"] for r in rows])}
        for q in QUANTITIES for eps in epsilons
    ]  # fmt: skip


def text(results: dict) -> str:
    lines = []
    for policy, e in results["summary"]["policies"].items():
        lines.append(f"BN policy {policy!r} (whole network, mean +- std over seeds):")
        for q in QUANTITIES:
            v = e[q]
            ratios = ", ".join("-" if r is None else f"{r:.2f}" for r in v["ratio_per_seed"])
            lines.append(
                f"  {q}: SB {v['SB'][0]:.4g} +- {v['SB'][1]:.2g}, LB {v['LB'][0]:.4g} +- "
                f"{v['LB'][1]:.2g}; LB/SB per seed {ratios}; LB larger in "
                f"{v['lb_larger']}/{v['seeds']} seeds"
            )
        for eps, q in e["quadratic"].items():
            lines.append(
                f"  Metric 2.1 at eps {eps} (%), SB / LB means: "
                + "; ".join(f"{w} {q[w]['SB'][0]:.3g} / {q[w]['LB'][0]:.3g}" for w in PREDICTIONS)
            )
        for t in e.get("tau", []):
            tau = "undefined (ties)" if t["tau"] is None else (
                f"{t['tau']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]")  # fmt: skip
            lines.append(f"  Kendall tau-b of {t['quantity']} with Metric 2.1 at eps "
                         f"{t['epsilon']}, SB and LB runs: {tau} (n {t['n']})")  # fmt: skip
        for name, layer in e["layers"].items():
            lm = layer["lambda_max"]
            lines.append(f"  {name}: lambda_max SB {lm['SB'][0]:.4g}, LB {lm['LB'][0]:.4g}")
    return "\n".join(lines)


def _density_curve(rows: list[dict], grid):
    """The mean over `rows` of their SLQ densities on `grid` (Gaussian width 1% of its span)."""
    import numpy as np

    sigma = (grid[-1] - grid[0]) / 100
    total = np.zeros_like(grid)
    for r in rows:
        nodes = np.asarray(r["whole"]["density"]["nodes"])
        weights = np.asarray(r["whole"]["density"]["weights"])
        kernel = np.exp(-0.5 * ((grid[:, None, None] - nodes) / sigma) ** 2)
        total += np.sum(kernel * weights, axis=(1, 2)) / (sigma * np.sqrt(2 * np.pi) * len(nodes))
    return total / len(rows)


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    """Left: SB and LB spectral densities (each the mean over seeds) on a log density axis,
    per policy. Middle: lambda_max and trace per seed, SB against LB. Right: each module's
    lambda_max, SB and LB means."""
    import matplotlib.pyplot as plt
    import numpy as np

    from keskar_repro.report import plots

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.6))
    rows = results["rows"]
    dense = [r for r in rows if "density" in r["whole"]]  # none with --slq-probes 0
    nodes = np.concatenate([np.ravel(r["whole"]["density"]["nodes"]) for r in dense] or [[0.0]])
    span = nodes.max() - nodes.min()
    grid = np.linspace(nodes.min() - 0.05 * span, nodes.max() + 0.05 * span, 800)
    styles = {"batch": "-", "full": "-.", "running": ":"}
    left.set_visible(bool(dense))
    for policy in results["summary"]["policies"] if dense else ():
        for i, regime in enumerate(("SB", "LB")):
            mine = [r for r in rows if r["policy"] == policy and r["regime"] == regime]
            curve = _density_curve(mine, grid)
            left.plot(grid, np.maximum(curve, 1e-12), styles[policy], color=f"C{i}",
                      label=f"{regime} ({policy})")  # fmt: skip
    left.set_yscale("log")
    left.set_ylim(bottom=1e-8)
    left.set_xlabel("eigenvalue of H")
    left.set_ylabel("spectral density (SLQ)")
    if dense:
        left.legend(fontsize=7)
    for j, q in enumerate(QUANTITIES):
        for policy in results["summary"]["policies"]:
            by = {
                g: {r["seed"]: r["whole"][q] for r in rows if (r["regime"], r["policy"]) ==
                    (g, policy)} for g in ("SB", "LB")
            }  # fmt: skip
            seeds = sorted(set(by["SB"]) & set(by["LB"]))
            middle.scatter([by["SB"][s] for s in seeds], [by["LB"][s] for s in seeds],
                           marker="os"[j], color=f"C{j + 2}", label=f"{q} ({policy})")  # fmt: skip
    lo, hi = middle.get_xlim()[0], max(middle.get_xlim()[1], middle.get_ylim()[1])
    middle.plot([lo, hi], [lo, hi], "k:", lw=1)
    middle.set_xscale("log")
    middle.set_yscale("log")
    middle.set_xlabel("SB")
    middle.set_ylabel("LB")
    middle.set_title("per seed (dotted: LB = SB)")
    middle.legend(fontsize=7)
    policy = next(iter(results["summary"]["policies"]))
    layers = results["summary"]["policies"][policy]["layers"]
    names = list(layers)
    right.set_visible(bool(names))  # --no-layers: nothing to draw
    for i, regime in enumerate(("SB", "LB")):
        heights = [layers[n]["lambda_max"][regime][0] for n in names]
        right.bar([k + 0.4 * i for k in range(len(names))], heights, 0.4, label=regime)
    right.set_xticks([k + 0.2 for k in range(len(names))])
    right.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    right.set_yscale("log")
    right.set_ylabel(f"lambda_max of the module's block ({policy})")
    right.legend(fontsize=7)
    fig.tight_layout()
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="fig_curvature",
    stem=STEM,
    doc=__doc__,
    order=5,  # after fig_sharpness (its runs); trains nothing of its own
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
