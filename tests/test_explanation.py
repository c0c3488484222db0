"""docs/explanation/ and paper_notes.md: every number on these pages has one home.

Each page's numbers are listed below as claims: a template of the page's text and the values
that fill it, read from the committed results JSON under figures/ (the paper's numbers from
keskar_repro.report.paper, which holds them; the settings that define a choice from the
configurations the JSON records). The tests check that each filled template is on its page, and
that every number on a page (outside code, links and names such as "Table 3") belongs to one of
its claims: a number typed or changed by hand, or a result re-measured without its page, fails
here. Reads JSON only (no JAX).
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
sys.path.insert(0, str(ROOT / "experiments"))

import results_table  # noqa: E402  (its `pm` formats the cells of the results tables)

from keskar_repro.report import paper  # noqa: E402

# What is not a quantity: code, link targets, and the names of the paper's tables, figures and
# metric, of Keras 1, and citation years.
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
NAMES = re.compile(
    r"Metric 2\.1|(?:Table|Figure)s? \d+(?:(?:, | and )\d+)*|Keras 1|et al\. \d{4}"
    r"|ICLR \d{4}|App\. [A-Z]\.\d+|arXiv:\S+"
)
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)")


def prose(text: str) -> str:
    """The text without code, link targets and names, its whitespace collapsed."""
    text = " ".join(FENCE.sub(" ", text).split())
    for pattern in (CODE, LINK_TARGET, NAMES):
        text = pattern.sub(" ", text)
    return text


def numbers(text: str) -> list[str]:
    return NUMBER.findall(prose(text))


# --- formats ---------------------------------------------------------------------------------


def sig(x: float, n: int = 2) -> str:
    """n significant digits, thousands separated: 0.00042, 0.70, 390, 3,772."""
    digits = n - 1 - math.floor(math.log10(abs(x)))
    return f"{x:,.{digits}f}" if digits > 0 else f"{round(x, digits):,.0f}"


def whole(x: float) -> str:
    return f"{round(x):,}"


def ratio(x: float) -> str:
    """A factor: whole from 10 up, 2 significant digits below."""
    return whole(x) if x >= 10 else sig(x)


def fixed(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def signed(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}"


def sci(x: float) -> str:
    """A setting as the pages write it: 1e-3, 5e-4, 1e-8."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def up(x: float) -> str:
    """A bound in whole percent, rounded up: "within 14%" for a largest difference of 13.4%."""
    return str(math.ceil(100 * x))


# --- where the numbers are -------------------------------------------------------------------

MAIN, TEN_K = "fig_sharpness_mnist_paper", "fig_sharpness_mnist10k_paper"
FASHION, LECUN = (
    "fig_sharpness_fashion_mnist_paper",
    "init_lecun_normal/fig_sharpness_mnist10k_paper",
)
NOTIONS, NOTIONS_10K = "fig_sharpness_notions_mnist_paper", "fig_sharpness_notions_mnist10k_paper"
REPORT, REPORT_10K = "sharpness_report_mnist_paper", "sharpness_report_mnist10k_paper"
FIG4, FIG4_10K = "fig4_batch_sweep_mnist_paper", "fig4_batch_sweep_mnist10k_paper"
FIG5, FIG6, GRID = (
    "fig5_warm_start_mnist_paper",
    "fig6_sharpness_training_mnist_paper",
    ("fig_lr_batch_mnist_paper"),
)
TABLE7 = "table7_conservative_mnist_paper"
TABLE4 = "table4_subspaces_mnist_paper"
CURVATURE = "fig_curvature_mnist10k_paper"
RESCALED = "parts/fig_sharpness_notions_mnist10k_seeds_0_4_hessian"  # the same ten minimizers


@functools.cache
def load(name: str) -> dict:
    return json.loads((FIGURES / f"{name}.json").read_text())


def config(name: str = MAIN) -> dict:
    return load(name)["config"]


def t4_variant(name: str) -> dict:
    """One construction/scaling/reading of the Table 4 study's summary."""
    return load(TABLE4)["summary"]["variants"][name]


def t4_value(name: str, key: str) -> float:
    """Its mean value at "<regime>/<eps>"."""
    return t4_variant(name)["values"][key][0]


def train_config(name: str = MAIN) -> dict:
    """The training settings of the first run (every run of the file shares them)."""
    return load(name)["runs"][0]["config"]


def n_train(name: str = MAIN) -> int:
    return load(name)["dataset"]["n_train"]


def seed_0() -> int:
    """The seed of the SB/LB pair of the paths, the sharpness reports and Figures 5 and 6."""
    return load(MAIN)["paths"]["linear"]["pair_seed"]


def sharpness(name: str, regime: str, eps: float, space: str = "full") -> float:
    (entry,) = [
        s["mean"]
        for s in load(name)["summary"]["sharpness"]
        if (s["regime"], s["space"], s["epsilon"]) == (regime, space, eps)
    ]
    return entry


def lb_sharper(name: str, key: str) -> str:
    """'k of n': the seeds in which LB is sharper than SB."""
    seeds = load(name)["summary"]["lb_sharper_per_seed"][key].values()
    return f"{sum(seeds)} of {len(seeds)}"


def gap(name: str) -> dict:
    return load(name)["summary"]["test_accuracy_gap"]


def report(name: str, key: str, regime: str) -> float:
    """A value of a sharpness report's pair, e.g. key 'full/batch/literal/lbfgsb/0.001'."""
    return load(name)["summary"][key][str(seed_0())][regime]


def pga_difference() -> float:
    """The largest relative difference between projected sign-gradient ascent and the default
    solver on the full-MNIST pair, over both regimes and epsilons."""
    return max(
        abs(report(REPORT, f"full/batch/normalized/pga/{eps}", g) / d - 1)
        for eps in ("0.001", "0.0005")
        for g in ("SB", "LB")
        if (d := report(REPORT, f"full/batch/normalized/lbfgsb/{eps}", g))
    )


def table7(regime: str, quantity: str = "test_accuracy") -> float:
    row = load(TABLE7)["summary"][regime]
    return row[quantity]["mean"] if quantity in row else row["sharpness"][quantity]["mean"]


def paper_value(key: str, regime: str, table: dict = paper.PAPER_F1) -> float:
    return table[key][regime][0]


def fig4(batch: int, quantity: str = "sharpness", name: str = FIG4) -> float:
    s = load(name)["summary"]
    i = s["batch_sizes"].index(batch)
    return s["sharpness"]["0.001"][i]["mean"] if quantity == "sharpness" else s[quantity][i]["mean"]


def fig4_rule(pattern: str) -> str:
    """A term of Figure 4's rule for where accuracy 'starts to fall', as the JSON states it."""
    match = re.search(pattern, load(FIG4)["summary"]["falls_rule"])
    assert match, pattern
    return match.group(0)


def fig5(k: int, quantity: str = "sharpness") -> float:
    s = load(FIG5)["summary"]
    i = s["k"].index(k)
    if quantity == "sharpness":
        return s["sharpness"]["0.001"][i]["mean"]
    return 100 * s["test_accuracy"][i]["mean"]


def fig6(key: str, which: str) -> float:
    return load(FIG6)["summary"][key][which]["value"]


def last_epoch_lb_not_below_sb() -> int:
    curves = load("fig2_accuracy_mnist_paper")["curves"]
    sb, lb = curves["SB"]["test_accuracy_mean"], curves["LB"]["test_accuracy_mean"]
    return max(e for e, s, b in zip(curves["SB"]["epoch"], sb, lb, strict=True) if b >= s)


def grid(lr: float, batch: int) -> float:
    s = load(GRID)["summary"]
    return s["test_accuracy"][s["learning_rates"].index(lr)][s["batch_sizes"].index(batch)]


def notion_gap(notion: str, eps: float) -> dict:
    (entry,) = [
        g for g in load(NOTIONS)["summary"]["gap"] if (g["notion"], g["epsilon"]) == (notion, eps)
    ]
    return entry


def tau(notion: str, name: str = NOTIONS) -> dict:
    """Kendall's tau of a notion with the accuracy gap over every run, trained points, 1e-3."""
    (entry,) = [
        t
        for t in load(name)["summary"]["tau"]
        if (t["notion"], t["gap"], t["population"], t["point"], t["epsilon"])
        == (notion, "accuracy", "all", "trained", 0.001)
    ]
    return entry


def responses(point: str, notion: str | None = None) -> list[dict]:
    """The seed-0 responses to a function-preserving rescaling, both regimes and epsilons."""
    return [
        r
        for r in load(NOTIONS)["summary"]["response"]
        if r["point"] == point and notion in (None, r["notion"])
    ]


def response(notion: str, regime: str) -> float:
    (entry,) = [
        r["ratio"]
        for r in responses("pre_bn x2", notion)
        if (r["regime"], r["epsilon"]) == (regime, 0.001)
    ]
    return entry


def rms_range(regime: str) -> str:
    """The hidden kernels' root-mean-square entry after training, lowest-highest layer."""
    values = [mean for mean, _ in load(NOTIONS)["summary"]["rms"][regime].values()]
    return f"{min(values):.3f}-{max(values):.3f}"


def matched_lb_sharper() -> str:
    """'k of n': seeds whose LB stays sharper than SB after matching norms, at every eps."""
    values: dict = {}
    for r in load(NOTIONS)["rows"]:
        if (r["notion"], r["point"]) == ("metric_2_1", "matched") and r["regime"] in ("SB", "LB"):
            values.setdefault(r["seed"], {}).setdefault(r["epsilon"], {})[r["regime"]] = r["value"]
    sharper = [all(v["LB"] > v["SB"] for v in by_eps.values()) for by_eps in values.values()]
    return f"{sum(sharper)} of {len(sharper)}"


def grid_metric(batch: int, lr: float) -> float:
    """Metric 2.1 (eps 1e-3, trained point) of a run of the full-MNIST learning-rate grid."""
    d = load(NOTIONS)
    (run,) = [r["run"] for r in d["runs"] if r["label"] == f"B={batch} lr={lr} glorot_uniform"]
    (value,) = [
        r["value"]
        for r in d["rows"]
        if (r["run"], r["notion"], r["epsilon"], r["point"])
        == (run, "metric_2_1", 0.001, "trained")
    ]
    return value


# --- the claims, page by page ------------------------------------------------------------------

Claim = tuple[str, Callable[[], tuple]]


def eps(i: int = 0) -> str:
    return sci(config()["epsilons"][i])


def curvature(*path: str):
    """The curvature study's summary under batch statistics, at `path`."""
    value = load(CURVATURE)["summary"]["policies"]["batch"]
    for key in path:
        value = value[key]
    return value


def curvature_tau(quantity: str, epsilon: str) -> float:
    (t,) = [
        t["tau"] for t in curvature("tau") if (t["quantity"], t["epsilon"]) == (quantity, epsilon)
    ]
    return t


def rescaled_trace(point: str) -> float:
    """LB / SB of the Hessian's trace at the trained points or at matched per-layer norms."""
    (entry,) = [e for e in load(RESCALED)["summary"]["gap"]
                if (e["notion"], e["epsilon"]) == ("hessian_trace", 1e-3)]  # fmt: skip
    return entry[f"{point}_ratio"]


def kernel_scale() -> float:
    """SB's hidden-kernel RMS over LB's, the mean over the hidden layers."""
    rms = load(RESCALED)["summary"]["rms"]
    return sum(rms["SB"][k][0] / rms["LB"][k][0] for k in rms["SB"]) / len(rms["SB"])


def quadratic(prediction: str, regime: str, epsilon: str = "0.001") -> float:
    """The mean over seeds of one of Metric 2.1's second-order predictions (or "measured")."""
    return curvature("quadratic", epsilon, prediction, regime)[0]


CHOICES: list[Claim] = [
    ("five hidden layers of {} units", lambda: (config()["hidden"][0],)),
    ("momentum of {}", lambda: (f"{train_config()['bn_momentum']:g}",)),
    ("an epsilon of {}.", lambda: (sci(train_config()["bn_epsilon"]),)),
    ("({:,} training and {:,} test images)", lambda: (n_train(), load(MAIN)["dataset"]["n_test"])),
    (
        "into {:,} for training and {:,} for testing",
        lambda: (n_train(TEN_K), load(TEN_K)["dataset"]["n_test"]),
    ),
    ("small batch is {}", lambda: (config()["sb_batch"],)),
    ("large batch is {:g}% of the", lambda: (100 * config()["lb_batch"] / n_train(),)),
    (
        "On {:,} images, {:g}% is {}",
        lambda: (
            n_train(TEN_K),
            100 * config(TEN_K)["lb_batch"] / n_train(TEN_K),
            config(TEN_K)["lb_batch"],
        ),
    ),
    ("ratio of the two instead, {:.1f}", lambda: (config()["lb_batch"] / config()["sb_batch"],)),
    ("use {} and {}", lambda: (config(TEN_K)["sb_batch"], config(TEN_K)["lb_batch"])),
    ("a learning rate of {}", lambda: (sci(train_config()["learning_rate"]),)),
    ("betas of {:g} and {:g}", lambda: (train_config()["b1"], train_config()["b2"])),
    ("an epsilon of {}, no weight decay", lambda: (sci(train_config()["adam_eps"]),)),
    (
        "mean training loss of {}",
        lambda: (results_table.pm(load(MAIN)["summary"]["accuracy"]["train_loss"]["LB"])[:7],),
    ),
    ("The paper preset runs {} seeds", lambda: (config()["seeds"],)),
    ("figures use {0} epochs. We train a fixed {0} epochs", lambda: (config()["epochs"],)),
    ("an LB epoch is only {} steps", lambda: (n_train() // config()["lb_batch"],)),
    ("which {} epochs amplify", lambda: (config()["epochs"],)),
    ("in batches of {}", lambda: (train_config()["eval_chunk_size"],)),
    ("chunks of {} consecutive", lambda: (train_config()["eval_chunk_size"],)),
    (
        "mnist10k seed-{} pair, at eps {}, it takes the LB value from {} under `batch` to {}",
        lambda: (
            seed_0(),
            eps(),
            whole(report(REPORT_10K, "full/batch/normalized/lbfgsb/0.001", "LB")),
            whole(report(REPORT_10K, "full/running/normalized/lbfgsb/0.001", "LB")),
        ),
    ),
    ("The paper runs {} iterations", lambda: (config()["sharpness_maxiter"],)),
    ("literal formulation {} iterations barely", lambda: (config()["sharpness_maxiter"],)),
    (
        "full-MNIST seed-{} pair at eps {} the literal formulation finds {} for LB and {} for SB, "
        "ranking LB the flatter, where the default finds {} and {}",
        lambda: (
            seed_0(),
            eps(),
            sig(report(REPORT, "full/batch/literal/lbfgsb/0.001", "LB")),
            sig(report(REPORT, "full/batch/literal/lbfgsb/0.001", "SB")),
            sig(report(REPORT, "full/batch/normalized/lbfgsb/0.001", "LB"), 3),
            sig(report(REPORT, "full/batch/normalized/lbfgsb/0.001", "SB")),
        ),
    ),
    ("agrees with the default within {}%", lambda: (up(pga_difference()),)),
    ("Metric 2.1 with {} iterations", lambda: (config()["sharpness_maxiter"],)),
    ("matrix of {} columns", lambda: (config()["subspace_dim"],)),
    (
        "{} values of alpha from {:g} to {:g}",
        lambda: (config()["alphas"], *config()["alpha_range"]),
    ),
    ("one SB/LB pair (seed {})", lambda: (seed_0(),)),
    (
        "k = {} and {} epochs and train LB from each for {} epochs",
        lambda: (
            ", ".join(map(str, load(FIG5)["summary"]["k"][:-1])),
            load(FIG5)["summary"]["k"][-1],
            config(FIG5)["lb_epochs"],
        ),
    ),
    ("a fresh one makes k = {} exactly", lambda: (load(FIG5)["summary"]["k"][0],)),
    (
        'with {} iterations of Adam", with lambda {}',
        lambda: (config(TABLE7)["prox_steps"], sci(config(TABLE7)["prox_lambda"])),
    ),
    ("We run {} Adam updates", lambda: (config(TABLE7)["prox_steps"],)),
    ("the running averages move {} times per batch", lambda: (config(TABLE7)["prox_steps"],)),
    ("{} epochs at every batch size", lambda: (config(FIG4)["epochs"],)),
    (
        "the larger of {} standard errors and {} points",
        lambda: (fig4_rule(r"\d+(?= standard errors)"), fig4_rule(r"[\d.]+(?= points)")),
    ),
    ("{} epochs per cell", lambda: (config(GRID)["epochs"],)),
    (
        "averages {} Gaussian draws per average-case value and rescales by c = {:g} and {:g}",
        lambda: (config(NOTIONS_10K)["samples"], *config(NOTIONS_10K)["factors"]),
    ),
    (
        "we ran {} draws and c = {:g} only",
        lambda: (config(NOTIONS)["samples"], *config(NOTIONS)["factors"]),
    ),
    ("they are {:.3f} times larger", lambda: (paper.population_to_sample_std(1.0),)),
]

REPRODUCTION: list[Claim] = [
    (
        "On `mnist10k` ({} seeds, batch statistics)",
        lambda: (curvature("lambda_max", "seeds"),),
    ),
    (
        "is the larger in {} of {} seeds, and over the ten minimizers",
        lambda: (curvature("lambda_max", "lb_larger"), curvature("lambda_max", "seeds")),
    ),
    ("Metric 2.1 at eps {} is {}.", lambda: (eps(), signed(curvature_tau("lambda_max", "0.001")))),
    (
        "LB's is {} to {} times SB's on every seed, and its tau with Metric 2.1 is {}.",
        lambda: (
            (
                sig(min(curvature("trace", "ratio_per_seed"))),
                sig(max(curvature("trace", "ratio_per_seed"))),
                signed(curvature_tau("trace", "0.001")),
            )
            if curvature("trace", "lb_larger") == curvature("trace", "seeds")
            else ()
        ),
    ),
    (
        "its {}% at eps {} is {} times the largest prediction",
        lambda: (
            whole(quadratic("measured", "LB")),
            eps(),
            sig(
                quadratic("measured", "LB")
                / max(quadratic(p, "LB") for p in ("along_v", "v_corner"))
            ),
        ),
    ),
    ("LB's kernels end {} times smaller than", lambda: (sig(kernel_scale()),)),
    (
        "LB's trace is {} times SB's instead of {} times.",
        lambda: (sig(rescaled_trace("matched")), sig(rescaled_trace("trained"))),
    ),
    (
        "while SB's {}% is close to its first-order part plus the quadratic term",
        lambda: (fixed(quadratic("measured", "SB")),),
    ),
    (
        "the quadratic term at the box's corner ({}%)",
        lambda: (fixed(quadratic("first_order", "SB") + quadratic("v_corner", "SB")),),
    ),
    (
        "by {} points on average over the seeds (the paper: {})",
        lambda: (
            signed(gap(MAIN)["sb_minus_lb"]),
            signed(paper_value("test_accuracy", "SB") - paper_value("test_accuracy", "LB")),
        ),
    ),
    ("`mnist10k` ({:,} training images)", lambda: (n_train(TEN_K),)),
    (
        "there is no gap: {} points with a standard error of {:.2f}",
        lambda: (signed(gap(TEN_K)["sb_minus_lb"]), gap(TEN_K)["standard_error"]),
    ),
    ("fit the {:,} training images", lambda: (n_train(TEN_K),)),
    ("the SB batch is {} to keep", lambda: (config(TEN_K)["sb_batch"],)),
    (
        "on {:,} images batch {} already ends sharp ({} at eps {} against {} at batch {})",
        lambda: (
            n_train(TEN_K),
            config()["sb_batch"],
            whole(fig4(config()["sb_batch"], name=FIG4_10K)),
            eps(),
            sig(sharpness(TEN_K, "SB", 0.001)),
            config(TEN_K)["sb_batch"],
        ),
    ),
    (
        "with {} seeds, the gap is {} points with a standard error of {:.2f}",
        lambda: (
            config(FASHION)["seeds"],
            signed(gap(FASHION)["sb_minus_lb"]),
            gap(FASHION)["standard_error"],
        ),
    ),
    ("({} seeds on full MNIST)", lambda: (lb_sharper(MAIN, "full/0.001"),)),
    (
        "({} against its {:.2f} at eps {})",
        lambda: (
            sig(sharpness(MAIN, "SB", 0.001)),
            paper_value("sharpness/full/0.001", "SB"),
            eps(),
        ),
    ),
    (
        "{:.2f} against {:.2f}",
        lambda: (sharpness(MAIN, "LB", 0.001), paper_value("sharpness/full/0.001", "LB")),
    ),
    (
        "{} against {} at eps {}",
        lambda: (whole(sharpness(TEN_K, "LB", 0.001)), whole(sharpness(LECUN, "LB", 0.001)), eps()),
    ),
    ("random subspace of {} dimensions", lambda: (config()["subspace_dim"],)),
    (
        "LB at {:.2f} and {:.2f} (eps {} and {}) and SB at {:.2f} or below",
        lambda: (
            paper_value("sharpness/subspace/0.001", "LB"),
            paper_value("sharpness/subspace/0.0005", "LB"),
            eps(0),
            eps(1),
            max(paper_value(f"sharpness/subspace/{e}", "SB") for e in ("0.001", "0.0005")),
        ),
    ),
    (
        "our LB is {} at eps {} (the paper: {:.2f})",
        lambda: (
            sig(sharpness(MAIN, "LB", 0.001, "subspace-gaussian")),
            eps(),
            paper_value("sharpness/subspace/0.001", "LB"),
        ),
    ),
    (
        "at eps {} LB is sharper than SB in only {} seeds",
        lambda: (eps(1), lb_sharper(MAIN, "subspace-gaussian/0.0005")),
    ),
    ("seed-{} pair stop at a corner", lambda: (seed_0(),)),
    (
        "LB's value nearly the same at both epsilons (a ratio of {})",
        lambda: (fixed(t4_variant("uniform/normalized/default")["eps_ratio"]["LB"]),),
    ),
    (
        "both regimes exceed {}%",
        lambda: (
            100
            * math.floor(
                min(t4_value("uniform/normalized/default", f"{g}/0.001") for g in ("SB", "LB"))
                / 100
            ),
        ),  # fmt: skip
    ),
    (
        "falls {} times from eps {} to {}, held by the box",
        lambda: (
            ratio(t4_variant("gaussian/normalized/default")["eps_ratio"]["LB"]),
            eps(0),
            eps(1),
        ),  # fmt: skip
    ),
    (
        "(LB {} at eps {}, the mean of {} seeds), but LB falls to {} at {}",
        lambda: (
            ratio(t4_value("gaussian/normalized/bn_running", "LB/0.001")),
            eps(0),
            t4_variant("gaussian/normalized/bn_running")["seeds"],
            sig(t4_value("gaussian/normalized/bn_running", "LB/0.0005")),
            eps(1),
        ),
    ),
    (
        "({:.2f}% against {:.2f}%; the paper: {:.2f}%) but stays below SB ({:.2f}%)",
        lambda: (
            table7("LB-conservative"),
            table7("LB"),
            paper_value("test_accuracy", "LB-conservative", paper.PAPER_TABLE7_F1),
            table7("SB"),
        ),
    ),
    (
        "{} at eps {} against plain LB's {} and SB's {}",
        lambda: (
            whole(table7("LB-conservative", "0.001")),
            eps(),
            whole(table7("LB", "0.001")),
            sig(table7("SB", "0.001")),
        ),
    ),
    (
        "({:.2f} for conservative LB against {:.2f} for plain LB)",
        lambda: (
            paper_value("sharpness/full/0.001", "LB-conservative", paper.PAPER_TABLE7_F1),
            paper_value("sharpness/full/0.001", "LB"),
        ),
    ),
    ("at every epoch after epoch {}", lambda: (last_epoch_lb_not_below_sb(),)),
    (
        "at eps {} stays below one up to batch {}, is {} at batch {} and at least {} from batch "
        "{} on",
        lambda: (
            eps(),
            max(b for b in load(FIG4)["summary"]["batch_sizes"] if fig4(b) < 1),
            whole(fig4(1024)),
            1024,
            math.floor(min(fig4(b) for b in load(FIG4)["summary"]["batch_sizes"] if b >= 4096)),
            4096,
        ),
    ),
    (
        "highest at batch {} and falls from batch {} on",
        lambda: (load(FIG4)["summary"]["best_batch_size"], load(FIG4)["summary"]["falls_at"]),
    ),
    (
        "from {:.2f}% to {:.2f}%, level with SB alone ({:.2f}%)",
        lambda: (
            fig5(0, "accuracy"),
            fig5(1, "accuracy"),
            100 * load(FIG5)["summary"]["sb_test_accuracy"]["mean"],
        ),
    ),
    (
        "falls from {} to {} after that epoch and to {} after {} SB epochs",
        lambda: (sig(fig5(0), 3), sig(fig5(1), 3), sig(fig5(100)), load(FIG5)["summary"]["k"][-1]),
    ),
    (
        "from {} after the first epoch to {} at the end",
        lambda: (sig(fig6("LB/0.001", "first")), sig(fig6("LB/0.001", "last"), 3)),
    ),
    (
        "({} to {} over the first two epochs, then a fall to {})",
        lambda: (
            sig(fig6("SB/0.001", "first"), 3),
            sig(fig6("SB/0.001", "peak"), 3),
            sig(fig6("SB/0.001", "last")),
        ),
    ),
    (
        "at Adam's default of {} batch {} is below batches {}-{} ({:.2f}% against {:.2f}-{:.2f}%)",
        lambda: (
            sci(train_config()["learning_rate"]),
            6000,
            128,
            512,
            grid(0.001, 6000),
            grid(0.001, 128),
            grid(0.001, 512),
        ),
    ),
    (
        "at {} batch {} is the best cell of the grid ({:.2f}%)",
        lambda: (
            sci(load(GRID)["summary"]["best"]["learning_rate"]),
            load(GRID)["summary"]["best"]["batch_size"],
            load(GRID)["summary"]["best"]["test_accuracy"],
        ),
    ),
    (
        "at {} accuracy falls with every larger batch ({:.2f}% to {:.2f}%)",
        lambda: (sci(0.0001), grid(0.0001, 128), grid(0.0001, 6000)),
    ),
    ("they are {:.3f} times larger", lambda: (paper.population_to_sample_std(1.0),)),
]


def gap_row(notion: str, eps_value: float) -> tuple:
    g = notion_gap(notion, eps_value)
    return (notion, sci(eps_value), ratio(g["trained_ratio"]), ratio(g["matched_ratio"]))


def tau_row(notion: str) -> tuple:
    t = tau(notion)
    return (notion, signed(t["tau"]), signed(t["low"]), signed(t["high"]))


NOTION_PAGE: list[Claim] = [
    (
        "(a root-mean-square entry of {} after {} epochs)",
        lambda: (rms_range("LB"), config(NOTIONS)["epochs"]),
    ),
    ("grow about threefold ({})", lambda: (rms_range("SB"),)),
    ("With the mean over the {} seeds", lambda: (config(NOTIONS)["seeds"],)),
    *[
        ("| `{}` | {} | {} | {} |", lambda n=n, e=e: gap_row(n, e))
        for n, e in [
            ("metric_2_1", 0.001),
            ("metric_2_1", 0.0005),
            ("adaptive", 0.001),
            ("average", 0.001),
        ]
    ],
    (
        "{:.0f}% of its logarithm survives at eps {} ({:.0f}% at {})",
        lambda: (
            100 * notion_gap("metric_2_1", 0.001)["kept"],
            eps(0),
            100 * notion_gap("metric_2_1", 0.0005)["kept"],
            eps(1),
        ),
    ),
    ("after matching in {} seeds", lambda: (matched_lb_sharper(),)),
    (
        "{} times flatter than the SB one at eps {} ({} times at {})",
        lambda: (
            whole(1 / notion_gap("adaptive", 0.001)["trained_ratio"]),
            eps(0),
            whole(1 / notion_gap("adaptive", 0.0005)["trained_ratio"]),
            eps(1),
        ),
    ),
    ("On the seed-{} pair", lambda: (seed_0(),)),
    (
        "multiplies Metric 2.1 by {:.2f} for SB and {:.2f} for LB, and the average case by {:.2f} "
        "and {:.2f}",
        lambda: (
            response("metric_2_1", "SB"),
            response("metric_2_1", "LB"),
            response("average", "SB"),
            response("average", "LB"),
        ),
    ),
    (
        "moves by less than {}%",
        lambda: (up(max(abs(r["ratio"] - 1) for r in responses("pre_bn x2", "adaptive"))),),
    ),
    (
        "moves every notion by at most {}%",
        lambda: (up(max(abs(r["ratio"] - 1) for r in responses("last_bn x2"))),),
    ),
    (
        "with a {:.0%} bootstrap interval) each notion at eps {}",
        lambda: (tau("average")["level"], eps()),
    ),
    ("{} in all", lambda: (tau("average")["n"],)),
    ("| {:.0%} interval |", lambda: (tau("average")["level"],)),
    *[
        ("| `{}` | {} | [{}, {}] |", lambda n=n: tau_row(n))
        for n in ("average", "metric_2_1", "average_adaptive", "adaptive")
    ],
    (
        "it is {} at batch {} with a learning rate of {} and {} at batch {} with {}",
        lambda: (
            whole(grid_metric(128, 0.0001)),
            128,
            sci(0.0001),
            whole(grid_metric(6000, 0.01)),
            6000,
            sci(0.01),
        ),
    ),
]

PAPER_NOTES: list[Claim] = [
    ("five hidden layers of {} units", lambda: (config()["hidden"][0],)),
    (
        "momentum {:g} and epsilon {}",
        lambda: (train_config()["bn_momentum"], sci(train_config()["bn_epsilon"])),
    ),
    (
        "Paper: {} and {:g}% of the training set",
        lambda: (config()["sb_batch"], 100 * config()["lb_batch"] / n_train()),
    ),
    (
        "Ours: {} and {} on full MNIST; on `mnist10k` {} and {}, the paper's ratio of {:.1f}",
        lambda: (
            config()["sb_batch"],
            config()["lb_batch"],
            config(TEN_K)["sb_batch"],
            config(TEN_K)["lb_batch"],
            config()["lb_batch"] / config()["sb_batch"],
        ),
    ),
    (
        "on {:,} images {} and {} would",
        lambda: (n_train(TEN_K), config()["sb_batch"], config(TEN_K)["lb_batch"]),
    ),
    (
        "lr {}, betas {:g} and {:g}, eps {}",
        lambda: (
            sci(train_config()["learning_rate"]),
            train_config()["b1"],
            train_config()["b2"],
            sci(train_config()["adam_eps"]),
        ),
    ),
    (
        "Seeds.** Paper: {}. Ours: {} in the paper preset",
        lambda: (paper.PAPER_RUNS, config()["seeds"]),
    ),
    ("its figures use {0} epochs. Ours: a fixed {0} epochs", lambda: (config()["epochs"],)),
    ("which {} epochs amplify", lambda: (config()["epochs"],)),
    (
        "in batches of {0}. Ours: `batch` (chunks of {0})",
        lambda: (train_config()["eval_chunk_size"],),
    ),
    ("Paper: {} iterations of L-BFGS-B", lambda: (config()["sharpness_maxiter"],)),
    ("Ours: exactly {},", lambda: (config()["sharpness_maxiter"],)),
    ("LB minimizer in {} iterations", lambda: (config()["sharpness_maxiter"],)),
    ("Metric 2.1 with {} iterations moves", lambda: (config()["sharpness_maxiter"],)),
    ("Paper: {} and {}. Ours: the same.", lambda: (eps(0), eps(1))),
    ("matrix of {} columns", lambda: (config()["subspace_dim"],)),
    (
        "Paper: {} values of alpha from {:g} to {:g}",
        lambda: (config()["alphas"], *config()["alpha_range"]),
    ),
    ("then LB for {} epochs with a fresh Adam", lambda: (config(FIG5)["lb_epochs"],)),
    (
        "Paper: {} Adam iterations per LB step on a proximal sub-problem, lambda {}",
        lambda: (config(TABLE7)["prox_steps"], sci(config(TABLE7)["prox_lambda"])),
    ),
    ("Paper: {} epochs per batch size", lambda: (config(FIG4)["epochs"],)),
    ("stopped at a relative residual of {},", lambda: (sci(config(CURVATURE)["eig_tol"]),)),
    (
        "the larger of {} standard errors and {} points",
        lambda: (fig4_rule(r"\d+(?= standard errors)"), fig4_rule(r"[\d.]+(?= points)")),
    ),
    ("{} epochs per cell, one seed", lambda: (config(GRID)["epochs"],)),
    (
        "Figure 4 on {} seeds, Figures 5 and 6 and the learning-rate grid on one, "
        "Fashion-MNIST on {}",
        lambda: (config(FIG4)["seeds"], config(FASHION)["seeds"]),
    ),
    (
        "lacks batch {}.** It ran on `mnist10k`",
        lambda: (
            min(
                set(config("fig_lr_batch_mnist10k_paper")["batch_sizes"])
                - set(config(GRID)["batch_sizes"])
            ),
        ),
    ),
    (
        "ran with {} Gaussian draws and c = {:g} instead of the paper preset's {} draws "
        "and c = {:g} and {:g}",
        lambda: (
            config(NOTIONS)["samples"],
            *config(NOTIONS)["factors"],
            config(NOTIONS_10K)["samples"],
            *config(NOTIONS_10K)["factors"],
        ),
    ),
]

PAGES: dict[str, list[Claim]] = {
    "docs/explanation/index.md": [],
    "docs/explanation/choices.md": CHOICES,
    "docs/explanation/reproduction.md": REPRODUCTION,
    "docs/explanation/notions.md": NOTION_PAGE,
    "paper_notes.md": PAPER_NOTES,
}


def collapsed(text: str) -> str:
    return " ".join(text.split())


def fill(template: str, values: Callable[[], tuple]) -> str:
    return template.format(*values())


CASES = [(page, template, values) for page, claims in PAGES.items() for template, values in claims]


def test_every_explanation_page_is_checked():
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "explanation").glob("*.md")}
    assert pages == {p for p in PAGES if p.startswith("docs/explanation/")}


@pytest.mark.parametrize(
    "page, template, values", CASES, ids=[f"{Path(p).name}: {t[:50]}" for p, t, _ in CASES]
)
def test_each_claim_is_on_its_page_as_its_json_says(page, template, values):
    text = collapsed((ROOT / page).read_text())
    filled = fill(template, values)
    assert filled in text, f"{page} should say {filled!r} (from the committed JSON)"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_number_on_a_page_comes_from_a_claim(page):
    claimed = {n for template, values in PAGES[page] for n in numbers(fill(template, values))}
    unclaimed = sorted(set(numbers((ROOT / page).read_text())) - claimed)
    assert not unclaimed, f"{page}: numbers that no JSON backs: {unclaimed}"


def test_numbers_finds_quantities_and_skips_names_and_code():
    text = (
        "Metric 2.1 in Tables 2, 3 and 4 (Jiang et al. 2020, Keras 1): LB 339.92 +- 42.68, "
        "+0.72 [-0.03, +0.35], 3,772 at 1e-3 on mnist10k, seed-0, 98.18-98.32%, `--seeds 3`, "
        "[text](choices.md#metric-21) and\n```text\n100 * f\n```\n"
    )
    assert numbers(text) == [
        "339.92", "42.68", "+0.72", "-0.03", "+0.35", "3,772", "1e-3", "0", "98.18", "98.32"
    ]  # fmt: skip
