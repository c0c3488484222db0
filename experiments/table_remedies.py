"""Remedies for the large-batch gap on F1, and whether sharpness follows them.

    python experiments/table_remedies.py --dataset mnist --data-dir ../shared/data/mnist  # paper
    python experiments/table_remedies.py --dataset mnist10k --preset quick
    python experiments/table_remedies.py --dataset mnist10k --preset quick --remedies all
    python experiments/table_remedies.py --dataset mnist --replot

Each row trains F1 from the seed's shared initial point by the paper's protocol
(experiments/fig_sharpness.py's SB and LB runs, reused) changed by one remedy
(keskar_repro.training.methods; `REMEDIES` lists them): the learning rate scaled with the batch
size (square root, Hoffer et al. 2017; linear with a gradual warm-up of --warmup-epochs, Goyal et
al. 2017), ghost batch norm over virtual batches of --ghost-batch, Hoffer et al.'s recipe (ghost
BN, square-root scaling and regime adaptation: as many updates as the SB run), SAM (Foret et al.
2021, Adam outer; rho chosen below), and the SB / LB / Hoffer rows with Hoffer et al.'s F1
regime (SGD with momentum 0.9 at --sgd-lr, weight decay --sgd-weight-decay, the rate times 0.1
after each epoch of --sgd-drops that falls inside the training; `SGD`). The learning rate is
scaled from the SB batch (its base); regime adaptation stretches the drops with the epochs.

SAM's rho is chosen on a held-out part of the training split: LB + SAM trained (seed 0) on the
first (1 - --holdout) of the training images for each rho of --rho-grid and validated on the
rest; the rho of the highest validation accuracy is used, and the grid's accuracies are
recorded. These runs live in <runs-dir>/holdout-<fraction> (their configs name the same
dataset as the full runs', so they must not share a folder with them). With --committed (the
paper preset), the conservative runs of Table 7 and the warm starts of Figure 5 join as rows,
read from their committed JSONs (accuracy and Metric 2.1 only).

For every run: test accuracy, the generalisation gap (train minus test accuracy, points), the
train cross-entropy, the number of updates, the registered notions of --notions at every
epsilon (keskar_repro.measures.NOTIONS, the notions study's; cached beside the run), and the
distance ||w_t - w_0|| of all parameters from the initial point at each training snapshot
(Hoffer et al.'s "random walk on a random landscape": its log-log slope against the update
count). Summary: per row, mean +- std over seeds and per seed, the change in test accuracy from
LB; Kendall's tau-b (95% bootstrap interval) of each notion with test accuracy and with the
gap over every run. Writes, into --out:

    table_remedies_<dataset>_<preset>.json
    table_remedies_<dataset>_<preset>.{png,pdf}   test accuracy against Metric 2.1 per row;
                                                  ||w_t - w_0|| against updates

Runtime on the 2-core CPU: the quick preset (mnist10k, 15 epochs, 1 seed; SB, LB and SAM)
takes a few minutes after fig_sharpness.py's quick runs; `--remedies all` at the quick
preset is the cost check of every row. On full MNIST an epoch costs about 2.5 s (SB) and 2.1 s
(LB); SAM costs two gradients per step, regime adaptation 23.4 times the LB epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from keskar_repro.report import experiment, plots, stats  # noqa: E402  (no JAX at import)

STEM = "table_remedies"
NOTION_NAMES = ("metric_2_1", "adaptive", "average", "average_adaptive")
WARMUP = "LB linear LR + warm-up"  # the row whose warm-up must end before training does
# Hoffer et al.'s F1 regime (eladhoffer/bigBatch, models/mnist_f1.py): SGD, momentum 0.9,
# weight decay 1e-4, the rate times 0.1 after epochs 10, 20 and 30 (its gradient-norm clipping
# at 5 is not reproduced).
SGD = {"method": "sgd", "learning_rate": "@sgd_lr", "weight_decay": "@sgd_weight_decay",
       "lr_drops": "@sgd_drops"}  # fmt: skip
# row -> (the protocol run it changes, TrainConfig changes by setting name, regime adaptation).
# A value naming a setting ("@sgd_lr") is read from the script's settings.
REMEDIES: dict[str, tuple[str, dict, bool]] = {
    "SB": ("SB", {}, False),
    "LB": ("LB", {}, False),
    "LB sqrt LR": ("LB", {"lr_scaling": "sqrt"}, False),
    WARMUP: ("LB", {"lr_scaling": "linear", "warmup_epochs": "@warmup_epochs"},
                               False),  # fmt: skip
    "LB ghost BN": ("LB", {"ghost_batch": "@ghost_batch"}, False),
    "LB Hoffer": ("LB", {"ghost_batch": "@ghost_batch", "lr_scaling": "sqrt"}, True),
    "LB SAM": ("LB", {"method": "sam", "sam_rho": "@sam_rho"}, False),
    "SB SGD": ("SB", {**SGD}, False),
    "LB SGD": ("LB", {**SGD}, False),
    "LB Hoffer SGD": ("LB", {**SGD, "ghost_batch": "@ghost_batch", "lr_scaling": "sqrt"}, True),
}  # fmt: skip
PRESETS = {
    # Every row, 5 seeds (regime adaptation: 2), both epsilons, every notion.
    "paper": {
        "seeds": 5,
        "epochs": 100,
        "epsilons": [1e-3, 5e-4],
        "remedies": list(REMEDIES),
        "adapted_seeds": 2,
        "notions": [*NOTION_NAMES, "hessian_max", "hessian_trace"],
        "rho_grid": [0.01, 0.05, 0.1, 0.5],
        "committed": True,
    },
    # Minutes on mnist10k: SB, LB and SAM, one seed, eps 1e-3, Metric 2.1 only.
    "quick": {
        "seeds": 1,
        "epochs": 15,
        "epsilons": [1e-3],
        "remedies": ["SB", "LB", "LB SAM"],
        "adapted_seeds": 1,
        "notions": ["metric_2_1"],
        "rho_grid": [0.05, 0.5],
        "committed": False,
    },
}


def _names(s: str) -> list[str]:
    return list(REMEDIES) if s == "all" else [x for x in s.split(",") if x]


def options(p) -> None:
    experiment.add_batch_options(p)
    experiment.add_epsilons_option(p)
    rows = ", ".join(REMEDIES)
    p.add_argument("--remedies", type=_names, help=f"rows, comma-separated, or all: {rows}")
    p.add_argument("--adapted-seeds", type=int, help="seeds of the regime-adaptation rows")
    p.add_argument("--notions", type=lambda s: [x for x in s.split(",") if x],
                   help="registered notions measured on every run")  # fmt: skip
    p.add_argument("--rho-grid", type=experiment.float_list, help="SAM's rho candidates")
    p.add_argument(
        "--committed",
        action=argparse.BooleanOptionalAction,
        help="also the conservative (Table 7) and warm-start (Figure 5) rows, read from their "
        "committed results JSON of the dataset (figures/) where present",
    )
    p.add_argument("--holdout", type=float, default=0.1, help="validation share for rho")
    p.add_argument("--ghost-batch", type=int, default=128, help="virtual batch of ghost BN")
    p.add_argument("--warmup-epochs", type=int, default=5, help="Goyal et al.'s warm-up (5)")
    p.add_argument("--sgd-lr", type=float, default=0.1, help="SGD's learning rate at the SB batch")
    p.add_argument("--sgd-weight-decay", type=float, default=1e-4, help="SGD rows' L2 (1e-4)")
    p.add_argument(
        "--sgd-drops",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10, 20, 30],
        help="epochs after which SGD's rate drops x 0.1",
    )


def checks(settings) -> dict[str, bool]:
    from keskar_repro.measures.registry import NOTIONS

    return {
        **experiment.batch_checks(settings),
        **experiment.epsilons_check(settings),
        "--remedies": bool(settings.remedies) and set(settings.remedies) <= set(REMEDIES),
        "--adapted-seeds": 1 <= settings.adapted_seeds <= settings.seeds,
        "--notions": set(settings.notions) <= set(NOTIONS),
        "--rho-grid": bool(settings.rho_grid) and min(settings.rho_grid) > 0,
        "--holdout": 0 < settings.holdout < 0.5,
        "--ghost-batch": settings.ghost_batch >= 1,
        "--warmup-epochs": 0 < settings.warmup_epochs
        and (settings.warmup_epochs < settings.epochs or WARMUP not in settings.remedies),
        "--sgd-lr": settings.sgd_lr > 0,
        "--sgd-weight-decay": settings.sgd_weight_decay >= 0,
    }


def remedy_config(name: str, configs: dict, settings, n_train: int, sam_rho: float = 0.05):
    """The TrainConfig of row `name`: its protocol run changed by the remedy (module docstring);
    the learning rate scaled from the SB batch."""
    from keskar_repro.training.methods import regime_adapted

    base, changes, adapted = REMEDIES[name]
    values = {"sam_rho": sam_rho, **{k: getattr(settings, k) for k in
              ("warmup_epochs", "ghost_batch", "sgd_lr", "sgd_weight_decay")},
              "sgd_drops": tuple(e for e in settings.sgd_drops if e < settings.epochs)}  # fmt: skip
    changes = {k: values[v[1:]] if isinstance(v, str) and v.startswith("@") else v
               for k, v in changes.items()}  # fmt: skip
    if "lr_scaling" in changes:
        changes["lr_base_batch"] = configs["SB"].batch_size
    config = dataclasses.replace(configs[base], **changes)
    return regime_adapted(config, configs["SB"].batch_size, n_train) if adapted else config


def choose_rho(settings, dataset, configs: dict) -> dict:
    """SAM's rho: LB + SAM of seed 0 on the first (1 - holdout) of the training split for
    each rho of the grid, validated on the rest (module docstring)."""
    from keskar_repro.training.objective import split_metrics

    n = dataset.n_train
    cut = n - int(round(settings.holdout * n))
    fit = dataclasses.replace(
        dataset, x_train=dataset.x_train[:cut], y_train=dataset.y_train[:cut],
        x_test=dataset.x_train[cut:], y_test=dataset.y_train[cut:],
        provenance={**dataset.provenance, "subset": f"train[:{cut}] / validation train[{cut}:]"},
    )  # fmt: skip
    from keskar_repro.store.runs import default_runs_dir

    root = Path(settings.runs_dir or default_runs_dir()) / f"holdout-{settings.holdout:g}"
    held = settings.replace(runs_dir=str(root))
    grid = []
    for rho in settings.rho_grid:
        config = remedy_config("LB SAM", configs, settings, cut, sam_rho=rho)
        (run,) = experiment.seed_runs(held, fit, config, [0])
        _, accuracy = split_metrics(config.model(), run.params, run.batch_stats, fit.x_test,
                                    fit.y_test, bn_policy="batch")  # fmt: skip
        grid.append({"rho": rho, "validation_accuracy": 100 * float(accuracy),
                     "diverged": run.diverged})  # fmt: skip
    usable = [g for g in grid if not g["diverged"]]
    if not usable:
        raise experiment.UserError("every rho of --rho-grid diverged; give smaller ones")
    best = max(usable, key=lambda g: g["validation_accuracy"])
    return {"rho": best["rho"], "grid": grid, "holdout": settings.holdout, "n_fit": cut}


def distance_curve(run, root, n_train: int) -> dict:
    """||w_t - w_0|| over all parameters at each snapshot epoch >= 1, with the update count
    and the least-squares slope of log distance on log updates."""
    import jax
    import numpy as np

    from keskar_repro.store.runs import load_snapshot

    def flat(params) -> np.ndarray:
        leaves = jax.tree_util.tree_leaves(params)
        return np.concatenate([np.ravel(x) for x in leaves]).astype(np.float64)

    start = flat(load_snapshot(run.config, 0, root)["params"])
    epochs = [e for e in _schedule(run.config.epochs) if 1 <= e <= run.epochs_run]
    dist = []
    for e in epochs:
        last = e == run.epochs_run
        params = run.params if last else load_snapshot(run.config, e, root)["params"]
        dist.append(float(np.linalg.norm(flat(params) - start)))
    updates = [e * (n_train // run.config.batch_size) for e in epochs]
    return {"epoch": epochs, "updates": updates, "distance": dist, "slope": _slope(updates, dist)}


def _schedule(epochs: int) -> list[int]:
    from keskar_repro.training.protocol import snapshot_schedule

    return snapshot_schedule(epochs)


def _slope(x: list[float], y: list[float]) -> float | None:
    """The least-squares slope of log y on log x (None for fewer than 2 points)."""
    import numpy as np

    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    from keskar_repro.store.measurements import final_metrics, notion_measurement

    configs = experiment.sb_lb_configs(settings, dataset, resolved)
    sam = choose_rho(settings, dataset, configs) if "LB SAM" in settings.remedies else None
    rows = []
    for name in settings.remedies:
        config = remedy_config(name, configs, settings, dataset.n_train,
                               sam_rho=sam["rho"] if sam else 0.05)  # fmt: skip
        seeds = range(settings.adapted_seeds if REMEDIES[name][2] else settings.seeds)
        runs = experiment.seed_runs(settings, dataset, config, seeds,
                                    snapshot_epochs=_schedule(config.epochs))  # fmt: skip
        for run in runs:
            metrics = final_metrics(run, dataset, "batch", settings.runs_dir)
            notions = {
                f"{notion}/{eps:g}": notion_measurement(run, dataset, notion, eps,
                                                        root=settings.runs_dir)["value"]
                for notion in settings.notions for eps in settings.epsilons
            }  # fmt: skip
            rows.append({
                "remedy": name, "seed": run.config.seed, "batch_size": config.batch_size,
                "method": config.method, "epochs": run.epochs_run, "diverged": run.diverged,
                "updates": run.epochs_run * (dataset.n_train // config.batch_size),
                "train_seconds": run.train_seconds, **metrics,
                "gap_accuracy": 100 * (metrics["train_accuracy"] - metrics["test_accuracy"]),
                "notions": notions,
                "distance": distance_curve(run, settings.runs_dir, dataset.n_train),
            })  # fmt: skip
    if settings.committed:
        rows += committed_rows(dataset.name, dataset.n_train)
    return {"rows": rows, "sam_rho": sam}


# the committed results read as rows: (stem, what selects a row, the row's name)
COMMITTED = (
    (
        "table7_conservative",
        lambda r: r["regime"] == "LB-conservative",
        lambda r: "LB conservative",
    ),
    ("fig5_warm_start", lambda r: r["k"] > 0, lambda r: f"LB warm start k={r['k']}"),
)


def committed_rows(dataset: str, n_train: int) -> list[dict]:
    """The conservative and warm-start runs of the committed paper-preset JSONs of `dataset`
    as rows: accuracy, gap, train loss, updates and Metric 2.1 (the only notion they hold;
    no distance curve). None where a JSON is absent."""
    from keskar_repro.store.files import read_json

    rows = []
    for stem, keep, name in COMMITTED:
        path = experiment.DEFAULT_OUT / f"{stem}_{dataset}_paper.json"
        if not path.is_file():
            continue
        results = read_json(path)
        sb_steps = n_train // results["config"]["sb_batch"]
        for r in (r for r in results["rows"] if keep(r)):
            warm = int(r.get("k", 0)) * sb_steps  # the SB epochs before a warm start
            rows.append({
                "remedy": name(r), "seed": r["seed"], "batch_size": r["batch_size"],
                "method": "conservative" if "conservative" in name(r) else "adam",
                "epochs": r["epoch"], "diverged": False,
                "updates": warm + r["epoch"] * (n_train // r["batch_size"]),
                "train_seconds": None, **{k: r[k] for k in METRICS},
                "gap_accuracy": 100 * (r["train_accuracy"] - r["test_accuracy"]),
                "notions": {f"metric_2_1/{float(e):g}": v for e, v in r["sharpness"].items()},
                "distance": None, "source": str(path.relative_to(experiment.REPO)),
            })  # fmt: skip
    return rows


METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def summarize(results: dict) -> dict:
    """Per row: mean +- std over seeds of test accuracy (%), the gap, the train cross-entropy,
    updates, each notion and the distance slope, and the change of test accuracy from LB;
    Kendall's tau-b of each notion with test accuracy and with the gap over every run."""
    rows = [r for r in results["rows"] if not r["diverged"]]
    lb = [100 * r["test_accuracy"] for r in rows if r["remedy"] == "LB"]
    table = {}
    for name in dict.fromkeys(r["remedy"] for r in results["rows"]):
        mine = [r for r in rows if r["remedy"] == name]
        if not mine:
            table[name] = {"diverged": True}
            continue
        accuracy = [100 * r["test_accuracy"] for r in mine]
        slopes = [r["distance"]["slope"] for r in mine
                  if r["distance"] and r["distance"]["slope"] is not None]  # fmt: skip
        table[name] = {
            "seeds": len(mine),
            "test_accuracy": stats.mean_std(accuracy),
            "test_accuracy_per_seed": accuracy,
            "vs_LB": (stats.mean_std(accuracy)[0] - stats.mean_std(lb)[0]) if lb else None,
            "gap_accuracy": stats.mean_std([r["gap_accuracy"] for r in mine]),
            "train_loss": stats.mean_std([r["train_loss"] for r in mine]),
            "updates": mine[0]["updates"],
            "notions": {
                k: stats.mean_std([r["notions"][k] for r in mine]) for k in mine[0]["notions"]
            },  # fmt: skip
            "distance_slope": stats.mean_std(slopes) if slopes else None,
        }
    tau = []
    for key in dict.fromkeys(k for r in rows for k in r["notions"]):
        measured = [r for r in rows if key in r["notions"]]
        values = [r["notions"][key] for r in measured]
        for target in ("test_accuracy", "gap_accuracy"):
            t = stats.kendall_tau(values, [r[target] for r in measured])
            tau.append({"notion": key, "with": target, **t})
    return {"rows": table, "tau": tau}


def text(results: dict) -> str:
    s = results["summary"]
    lines = [f"Remedies for the large-batch gap, F1 on {results['dataset']['name']} "
             "(mean +- std over seeds; test accuracy in %, gap in points):"]  # fmt: skip
    if results.get("sam_rho"):
        grid = ", ".join(f"{g['rho']:g}: {g['validation_accuracy']:.2f}"
                         for g in results["sam_rho"]["grid"])  # fmt: skip
        lines.append(f"SAM rho {results['sam_rho']['rho']:g} (validation accuracy: {grid})")
    for name, e in s["rows"].items():
        if e.get("diverged"):
            lines.append(f"  {name}: every run diverged")
            continue
        notions = "; ".join(f"{k} {m:.3g}" for k, (m, _) in e["notions"].items())
        vs = "-" if e["vs_LB"] is None else f"{e['vs_LB']:+.2f}"
        slope = "-" if e["distance_slope"] is None else f"{e['distance_slope'][0]:.2f}"
        lines.append(
            f"  {name} (n {e['seeds']}): test {e['test_accuracy'][0]:.2f} +- "
            f"{e['test_accuracy'][1]:.2f} (vs LB {vs}); gap {e['gap_accuracy'][0]:.2f}; train "
            f"CE {e['train_loss'][0]:.3g}; {e['updates']} updates; {notions}; "
            f"log-log slope of ||w_t - w_0|| {slope}"
        )
    lines.append("Kendall tau-b over every run [95% bootstrap interval]:")
    for t in s["tau"]:
        tau = "undefined" if t["tau"] is None else (
            f"{t['tau']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]")  # fmt: skip
        lines.append(f"  {t['notion']} with {t['with']}: {tau} (n {t['n']})")
    return "\n".join(lines)


def draw(results: dict, settings) -> list[str]:
    """Left: test accuracy against Metric 2.1 (largest eps), one colour per row, mean +- std on
    both axes. Right: ||w_t - w_0|| against the update count, log-log, per row (seed 0)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    s = results["summary"]["rows"]
    eps = max(results["config"]["epsilons"])
    key = f"metric_2_1/{eps:g}"
    for i, (name, e) in enumerate(s.items()):
        if e.get("diverged") or key not in e["notions"]:
            continue
        (x, dx), (y, dy) = e["notions"][key], e["test_accuracy"]
        left.errorbar([x], [y], xerr=[dx], yerr=[dy], fmt="o", color=f"C{i % 10}", label=name,
                      capsize=3)  # fmt: skip
        curve = next(r["distance"] for r in results["rows"] if r["remedy"] == name)
        if curve:  # none for a row read from a committed JSON
            right.plot(curve["updates"], curve["distance"], "-o", ms=3, color=f"C{i % 10}",
                       label=name)  # fmt: skip
    left.set_xscale("log")
    left.set(xlabel=f"Metric 2.1 at eps {eps:g} (%)", ylabel="test accuracy (%)",
             title="does sharpness follow the remedy?")  # fmt: skip
    left.legend(fontsize=6)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set(xlabel="updates", ylabel="||w_t - w_0||", title="distance from the initial point")
    fig.tight_layout()
    return plots.save_figure(fig, experiment.figure_stem(settings, STEM))


SPEC = experiment.FigureSpec(
    name="table_remedies",
    stem=STEM,
    doc=__doc__,
    order=5,  # after fig_sharpness (its SB and LB runs)
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
