"""The curvature estimators against a dense Hessian, and against PyHessian and hessian-eigenthings.

    python -m benchmarks.curvature_peers                      # every part, mnist10k images
    python -m benchmarks.curvature_peers --parts dense        # the dense cross-check only
    python -m benchmarks.curvature_peers --parts peers --models mlp --repeats 1   # a smoke run
    python -m benchmarks.curvature_peers --parts hvp --models f1    # one HVP vs PyTorch

Part "dense" (no PyTorch needed): a 784-4-32-10 ReLU MLP without batch norm (3,330
parameters), float32, mean cross-entropy over the first 2,000 training images. Its Hessian is
formed in float64 (`jax.hessian`) and `numpy.linalg.eigh` gives the reference spectrum; then
`top_eigenvalues` (k = 1 and k = 10, default tolerance) and `hessian_trace` (XTrace, default,
and Hutchinson with 20 probes) are compared with it: the relative error of each eigenvalue
against the goal 1e-4, and the trace error in units of the stated standard error (goal: within
two).

Part "peers" (the `peers` extra: torch, pyhessian, hessian-eigenthings): on --models ("mlp":
a 784-512-512-10 ReLU MLP, "f1": F1 with batch norm under running statistics, which is what
PyHessian's model.eval() evaluates), Glorot-uniform weights from key 0 copied into an
equivalent torch.nn.Module after --train-steps full-batch Adam steps (learning rate 1e-3; in
JAX, then copied), the first --n-train images, one batch: the largest eigenvalue and
the trace by each tool, at its defaults and at settings of equal accuracy. The reference
lambda_max is ours at tol 1e-7 (float32 accuracy); each row gives the value, its relative
error, the HVPs it took (counted for every tool), and the median wall time over --repeats
calls after a first, compiling, one. The torch tools run with torch.set_num_threads(all
cores), JAX with its default, one process at a time. Prints markdown tables, then one JSON
record (`common.record`); the measured numbers are in benchmarks/README.md.

Part "hvp" (torch only): one HVP of each of --models, ours (`hvp_fn`) beside PyTorch's two
ways of computing it (double backward, as both peers do, and torch.func's forward over
reverse) and beside the real bound: the HVP's own matmuls, read from its jaxpr, each at the
best rate JAX, NumPy or PyTorch reaches for that product here (benchmarks/gemm_bound.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from benchmarks.common import (  # noqa: E402
    load_images,
    markdown_table,
    matmul_flops_per_second,
    record,
)
from keskar_repro.measures.checks import split_data, with_data  # noqa: E402
from keskar_repro.measures.curvature import hessian_trace, hvp_fn, top_eigenvalues  # noqa: E402
from keskar_repro.training.objective import cross_entropy, scale_pixels  # noqa: E402

DENSE_WIDTHS = (784, 4, 32, 10)
MLP_WIDTHS = (784, 512, 512, 10)
ACCURACY = 1e-3  # "equal accuracy": lambda_max within this relative error of the reference


def glorot_mlp(widths, key) -> dict:
    """{"Dense_i": {"kernel" (in, out), "bias"}}: Glorot-uniform kernels, zero biases."""
    init = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(widths) - 1)
    return {
        f"Dense_{i}": {"kernel": init(k, (a, b), jnp.float32), "bias": jnp.zeros(b, jnp.float32)}
        for i, (k, a, b) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True))
    }


def mlp_loss(params, x, y):
    """Mean cross-entropy of the ReLU MLP `params` on float inputs x."""
    h = x
    n = len(params)
    for i in range(n):
        h = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return jnp.mean(cross_entropy(h, y))


def mlp_objective(params, data):
    """`mlp_loss` with (x, y) as one data argument (`checks.with_data`: compiled once)."""
    return mlp_loss(params, *data)


# --------------------------------------------------------------------------------------------
# Part "dense"
# --------------------------------------------------------------------------------------------


def dense_part(x, y) -> dict:
    params = glorot_mlp(DENSE_WIDTHS, jax.random.key(0))
    loss = with_data(mlp_objective, (x, y))
    flat, _ = ravel_pytree(params)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)

        def loss64(w):
            return mlp_loss(unravel_64(w), x64, y)

        flat64, unravel_64 = ravel_pytree(
            jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        )
        exact = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss64))(flat64)))[::-1]
    rows = []
    for k in (1, 10):
        r = top_eigenvalues(loss, params, key=jax.random.key(1), k=k)
        rel = np.abs(r.eigenvalues - exact[:k]) / np.abs(exact[:k])
        rows.append({"what": f"top {k}", "max_relative_error": float(rel.max()),
                     "within_errors": bool(np.all(np.abs(r.eigenvalues - exact[:k]) <= r.errors)),
                     "hvps": r.num_matvecs})  # fmt: skip
    for method, samples in (("xtrace", 10), ("hutchinson", 20)):
        t = hessian_trace(loss, params, key=jax.random.key(2), method=method,
                          num_samples=samples)  # fmt: skip
        rows.append({"what": f"trace ({method}, {samples} probes)", "value": t.value,
                     "exact": float(exact.sum()), "errors_in_stderr":
                     abs(t.value - exact.sum()) / t.stderr if t.stderr else 0.0,
                     "stderr": t.stderr, "hvps": t.num_matvecs})  # fmt: skip
    return {"n_params": int(flat.size), "lambda_max": float(exact[0]), "rows": rows}


# --------------------------------------------------------------------------------------------
# Part "peers"
# --------------------------------------------------------------------------------------------


def median_seconds(repeats: int, fn, *args):
    """(fn(*args)'s result, the median wall time of `repeats` calls after a first one)."""
    result = fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def trained(params, loss_fn, steps: int):
    """params after `steps` full-batch Adam steps (learning rate 1e-3) on loss_fn, in one
    compiled scan: a point past initialisation, whose spectrum has the outliers of a trained
    network (at initialisation it is flat, and the comparison would not be typical)."""
    import optax

    fn, data = split_data(loss_fn)
    opt = optax.adam(1e-3)

    @jax.jit
    def run(params, data):
        def step(carry, _):
            p, state = carry
            updates, state = opt.update(jax.grad(fn)(p, data), state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.lax.scan(step, (params, opt.init(params)), None, length=steps)[0][0]

    return run(params, data)


def jax_model(name: str, x_uint8, y):
    """(params, loss_fn(params), model) of the JAX side, at initialisation."""
    from keskar_repro.store.measurements import objective_data
    from keskar_repro.training.models import f1, init_variables
    from keskar_repro.training.objective import data_loss_fn

    if name == "mlp":
        params = glorot_mlp(MLP_WIDTHS, jax.random.key(0))
        x = scale_pixels(jnp.asarray(x_uint8))
        return params, with_data(mlp_objective, (x, jnp.asarray(y))), None
    model = f1()
    variables = init_variables(model, jax.random.key(0))
    data = objective_data(variables["batch_stats"], x_uint8, y)
    return variables["params"], with_data(data_loss_fn(model, bn_policy="running"), data), model


def torch_model(name: str, params, model):
    """The same network in PyTorch (eval mode: batch norm on its running statistics)."""
    import torch

    layers = []
    n = sum(k.startswith("Dense") for k in params)
    for i in range(n):
        dense = params[f"Dense_{i}"]
        linear = torch.nn.Linear(*dense["kernel"].shape)
        linear.weight.data = torch.tensor(np.asarray(dense["kernel"]).T.copy())
        linear.bias.data = torch.tensor(np.asarray(dense["bias"]))
        layers.append(linear)
        if i < n - 1:
            if name == "f1":
                bn = params[f"BatchNorm_{i}"]
                norm = torch.nn.BatchNorm1d(linear.out_features, eps=model.bn_epsilon,
                                            momentum=None)  # fmt: skip
                norm.weight.data = torch.tensor(np.asarray(bn["scale"]))
                norm.bias.data = torch.tensor(np.asarray(bn["bias"]))
                layers.append(norm)
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


class Counted:
    """`fn` that counts its calls (the HVPs of a peer that does not report them)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def pyhessian_run(problem: dict, what: str, setting: dict) -> tuple:
    """PyHessian's eigenvalues (`setting`: its tol) or trace (its defaults): (value, stderr,
    HVPs)."""
    import importlib

    module = importlib.import_module("pyhessian.hessian")  # the module, not its class `hessian`
    original, counted = module.hessian_vector_product, Counted(module.hessian_vector_product)
    module.hessian_vector_product = counted
    try:
        h = module.hessian(problem["net"], problem["criterion"], data=problem["data"], cuda=False)
        if what == "eigenvalue":
            return float(h.eigenvalues(**setting)[0][0]), 0.0, counted.calls
        samples = h.trace()
    finally:
        module.hessian_vector_product = original
    se = float(np.std(samples, ddof=1) / np.sqrt(len(samples)))
    return float(np.mean(samples)), se, counted.calls


def eigenthings_run(problem: dict, what: str, setting: dict) -> tuple:
    """hessian-eigenthings: `setting` {"method": "lanczos" (k = 1, a fixed number of steps,
    default 2k) or "power" (power_iteration_one, stops on its tol), and their options}; the
    trace by Hutch++ with its default 99 HVPs. (value, stderr, HVPs)."""
    from hessian_eigenthings import (
        HessianOperator,
        lanczos,
        power_iteration_one,
        supervised_loss,
        trace,
    )

    operator = HessianOperator(problem["net"], [problem["data"]],
                               supervised_loss(problem["criterion"]))  # fmt: skip
    operator.matvec = counted = Counted(operator.matvec)
    if what == "eigenvalue":
        options = {k: v for k, v in setting.items() if k != "method"}
        if setting["method"] == "lanczos":
            value = lanczos(operator, k=1, which="LA", seed=0, **options).eigenvalues[0]
        else:
            value = power_iteration_one(operator, seed=0, **options)[0]
        return float(value), 0.0, counted.calls
    t = trace(operator, num_matvecs=99, seed=0)
    return float(t.estimate), float(t.stderr), counted.calls


def ours_run(problem: dict, what: str, setting: dict) -> tuple:
    """top_eigenvalues (`setting`: its tol) or hessian_trace (its default, XTrace): (value,
    stderr, HVPs)."""
    if what == "eigenvalue":
        r = top_eigenvalues(problem["loss_fn"], problem["params"], key=jax.random.key(1),
                            **setting)  # fmt: skip
        return float(r.eigenvalues[0]), 0.0, r.num_matvecs
    t = hessian_trace(problem["loss_fn"], problem["params"], key=jax.random.key(2))
    return t.value, t.stderr, t.num_matvecs


# tool -> (run, the settings tried for lambda_max, the first being the tool's default)
TOOLS = {
    "keskar_repro": (ours_run, [{"tol": t} for t in (1e-3, 1e-2, 3e-2, 1e-1)]),
    "PyHessian": (pyhessian_run, [{"tol": t} for t in (1e-3, 1e-4, 1e-5)]),
    "hessian-eigenthings": (
        eigenthings_run,
        [{"method": "lanczos"}, {"method": "power"}]
        + [{"method": "lanczos", "max_iter": m} for m in (10, 15, 20, 30)],
    ),
}


def problem_of(name: str, x_uint8, y, steps: int) -> dict:
    """The model `name` after `steps` Adam steps on the images, in JAX and in PyTorch, with
    identical weights."""
    import torch

    params, loss_fn, model = jax_model(name, x_uint8, y)
    params = trained(params, loss_fn, steps)
    net = torch_model(name, params, model)
    xt = torch.tensor(np.asarray(x_uint8).reshape(len(y), -1) / 255.0, dtype=torch.float32)
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    return {"params": params, "loss_fn": loss_fn, "net": net, "data": (xt, yt),
            "criterion": torch.nn.CrossEntropyLoss()}  # fmt: skip


def hvp_against_bound(problem: dict, repeats: int, rate: float) -> dict:
    """One HVP (`hvp_fn`) of the problem: median seconds, its matmul FLOPs (read from its jaxpr,
    `gemm_bound.gemms_of`: 2 (8F - 5 d0 d1) per example for F1, F being the forward
    multiply-adds and d0 x d1 the first layer, as derived in keskar_repro/measures/curvature.py;
    one d1 d2 product fewer for the MLP without batch norm), and the ratio of the time to the
    FLOP bound at the measured matmul rate."""
    from benchmarks.gemm_bound import gemms_of, step_flops

    hvp, v, s = timed_hvp(problem, repeats)
    flops = step_flops(gemms_of(hvp, v))
    return {"seconds": s, "flops": flops, "ratio_to_bound": s / (flops / rate)}


def timed_hvp(problem: dict, repeats: int) -> tuple:
    """(the problem's `hvp_fn`, the direction 1e-3 in every entry, the median seconds of one
    product after a compiling call)."""
    params = problem["params"]
    hvp = hvp_fn(problem["loss_fn"], params)
    v = jax.tree_util.tree_map(lambda a: jnp.ones_like(a) * 1e-3, params)
    return hvp, v, median_seconds(repeats, lambda: jax.block_until_ready(hvp(v)))[1]


def torch_hvps(problem: dict) -> dict:
    """{name: zero-argument call of one PyTorch HVP at the problem's weights, direction 1e-3}:
    "double backward" (reverse over reverse, as PyHessian and hessian-eigenthings compute it:
    the gradient with create_graph, then the gradient of g . v) and "torch.func" (forward over
    reverse, `torch.func.jvp` of `torch.func.grad`, as the package computes it)."""
    import torch
    from torch.func import functional_call, grad, jvp

    net, (xt, yt), criterion = problem["net"], problem["data"], problem["criterion"]
    params = dict(net.named_parameters())
    v = {k: torch.full_like(p, 1e-3) for k, p in params.items()}

    def double_backward():
        g = torch.autograd.grad(criterion(net(xt), yt), list(params.values()), create_graph=True)
        dot = sum((gi * v[k]).sum() for gi, k in zip(g, params, strict=True))
        return torch.autograd.grad(dot, list(params.values()))

    def loss(p):
        return criterion(functional_call(net, p, (xt,)), yt)

    detached = {k: p.detach() for k, p in params.items()}
    return {"double backward": double_backward,
            "torch.func": lambda: jvp(grad(loss), (detached,), (v,))[1]}  # fmt: skip


def hvp_part(names, x_uint8, y, repeats: int, steps: int) -> dict:
    """One HVP of each model, ours against PyTorch's two ways and against the real bound: the
    HVP's matmuls (read from its jaxpr, `gemm_bound.gemms_of`) each at the best rate any library
    reaches for it here (`gemm_bound.bound`)."""
    import torch

    from benchmarks.gemm_bound import bound, gemms_of

    torch.set_num_threads(os.cpu_count() or 1)
    out = {}
    for name in names:
        problem = problem_of(name, x_uint8, y, steps)
        hvp, v, ours = timed_hvp(problem, repeats)
        peers = {k: median_seconds(repeats, fn)[1] for k, fn in torch_hvps(problem).items()}
        real = bound(gemms_of(hvp, v), max(repeats, 10))
        out[name] = {"seconds": ours, "torch_seconds": peers, "real_bound": real}
        print(f"{name}: one HVP, ours {ours:.3f} s, " + ", ".join(
            f"PyTorch {k} {s:.3f} s" for k, s in peers.items()) + ", real bound "
            f"{real['bound_seconds']['best']:.3f} s (JAX's own rates "
            f"{real['bound_seconds']['jax']:.3f} s)", flush=True)  # fmt: skip
    return out


def peers_part(names, x_uint8, y, repeats: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rate = matmul_flops_per_second()
    out = {"matmul_flops_per_second": rate}
    for name in names:
        problem = problem_of(name, x_uint8, y, steps)
        with torch.no_grad():
            net, (xt, yt) = problem["net"], problem["data"]
            torch_loss = float(problem["criterion"](net(xt), yt))
        ref = top_eigenvalues(problem["loss_fn"], problem["params"], key=jax.random.key(9),
                              tol=1e-7, num_matvecs=150)  # fmt: skip
        reference = float(ref.eigenvalues[0])
        rows, traces = [], []
        for tool, (run, settings) in TOOLS.items():
            for i, setting in enumerate(settings):
                (value, _, hvps), s = median_seconds(repeats, run, problem, "eigenvalue", setting)
                label = ", ".join(f"{k} {v}" for k, v in setting.items()) + (
                    " (default)" if i == 0 else ""
                )
                rows.append([tool, label, value, abs(value / reference - 1), hvps, s])
            (value, se, hvps), s = median_seconds(repeats, run, problem, "trace", None)
            traces.append([tool, value, se, hvps, s])
        out[name] = {
            "hvp": hvp_against_bound(problem, repeats, rate),
            "n_params": ref.n_params,
            "loss_jax": float(problem["loss_fn"](problem["params"])),
            "loss_torch": torch_loss,
            "lambda_max_reference": reference,
            "lambda_max_rows": rows,
            "trace_rows": traces,
        }
    return out


def fastest_at_accuracy(rows: list) -> dict:
    """Per tool, the fastest setting whose relative error is within ACCURACY."""
    best: dict = {}
    for tool, setting, _, error, _, seconds in rows:
        if error <= ACCURACY and (tool not in best or seconds < best[tool][1]):
            best[tool] = (setting, seconds)
    return best


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="dense,peers,hvp",
                   help="dense, peers and/or hvp, comma-separated")  # fmt: skip
    p.add_argument("--models", default="mlp,f1", help="peers part: mlp and/or f1")
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--n-train", type=int, default=8000, help="images of the peers part")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row (median)")
    p.add_argument("--train-steps", type=int, default=200, help="full-batch Adam steps first")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    name, x, y, _, _ = load_images(args.dataset, args.n_train, 0)
    results: dict = {"dataset": name}
    if "dense" in parts:
        dense = dense_part(scale_pixels(jnp.asarray(x[:2000])), jnp.asarray(y[:2000]))
        results["dense"] = dense
        print(f"\ndense check: n = {dense['n_params']}, lambda_max = {dense['lambda_max']:.6g}")
        for row in dense["rows"]:
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in row.items()))  # fmt: skip
    if "peers" in parts:
        peers = peers_part(args.models.split(","), x, y, args.repeats, args.train_steps)
        results["peers"] = peers
        print(
            f"\nmatmul rate (the FLOP bound): {peers['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s"
        )
        for model, r in ((k, v) for k, v in peers.items() if isinstance(v, dict)):
            h = r["hvp"]
            print(
                f"\n{model}: one HVP {h['seconds']:.3f} s, {h['ratio_to_bound']:.2f}x its FLOP "
                "bound"
            )
            print(f"\n{model}: n = {r['n_params']}, loss JAX {r['loss_jax']:.6f} / torch "
                  f"{r['loss_torch']:.6f}; lambda_max {r['lambda_max_reference']:.6g}")  # fmt: skip
            print(markdown_table(["tool", "setting", "lambda_max", "rel. error", "HVPs", "s"],
                                 r["lambda_max_rows"]))  # fmt: skip
            r["fastest_at_accuracy"] = fastest_at_accuracy(r["lambda_max_rows"])
            print(f"fastest within {ACCURACY:g}: {r['fastest_at_accuracy']}")
            print(markdown_table(["tool", "trace", "stderr", "HVPs", "s"], r["trace_rows"]))
    if "hvp" in parts:
        results["hvp"] = hvp_part(args.models.split(","), x, y, args.repeats, args.train_steps)
    print(json.dumps(record("curvature_peers", argv, **results)))
    return results


if __name__ == "__main__":
    main()
