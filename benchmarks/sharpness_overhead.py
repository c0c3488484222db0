"""Time spent outside loss_fn in one sharpness call on F1, per L-BFGS-B driver and method.

    python -m benchmarks.sharpness_overhead                    # F1, N = 60,000 random images
    python benchmarks/sharpness_overhead.py --n 2000 --maxiter 2 --repeats 1 --p 0 \
        --no-scipy-paths                                         # a smoke run

Builds F1 (784 -> 5 x [Dense 512 -> BN -> ReLU] -> Dense 10) and its mean cross-entropy over N
random images (default N = 60,000, float32 on the device, evaluated in chunks of 5,000 with
per-chunk batch statistics) with keskar_repro.training.models / keskar_repro.training.objective
(`--loss plain`: a self-contained plain-JAX version of the same network), and times

- one jitted value_and_grad of loss_fn (median of --repeats calls): t_vg;
- one sharpness call (maxiter = 10) in the full space and in a p = 100 random subspace, per
  L-BFGS-B driver, after a warm-up call that compiles the evaluation function;
- (unless --no-scipy-paths) SciPy's own cost on a trivial objective (f = c . z) with n variables,
  10 iterations, for each way of calling L-BFGS-B -- this isolates SciPy's bound handling.

For each sharpness call it reports nfev, total seconds, the seconds inside loss evaluations
(loss_evals * t_vg) and overhead = 1 - (loss_evals * t_vg) / total, plus the time measured inside
the objective wrapper (which also includes the host<->device copies), and one method="pga" call
(all on the device). The last line printed is one JSON object with everything.

SciPy's L-BFGS-B arithmetic uses BLAS, whose thread count (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS; they do not affect JAX's CPU backend) changes its speed on a small machine
(benchmarks/README.md); the variables are recorded in the JSON: set them before starting Python.
The measured tables are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

from benchmarks.common import spread, timed  # noqa: E402
from keskar_repro.measures.sharpness import _lbfgsb_setulb, sharpness  # noqa: E402
from keskar_repro.training import (
    models,
    objective,  # noqa: E402
)

F1_WIDTHS = (784, 512, 512, 512, 512, 512, 10)


def plain_f1_loss(n: int, chunk: int, seed: int):
    """Self-contained F1 loss (plain JAX): Dense -> BN (batch statistics per chunk) -> ReLU."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.random((n, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, n), dtype=jnp.int32)
    keys = jax.random.split(jax.random.key(seed), len(F1_WIDTHS) - 1)
    params = []
    for k, (a, b) in zip(keys, zip(F1_WIDTHS[:-1], F1_WIDTHS[1:], strict=True), strict=True):
        layer = {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
        if b != 10:
            layer |= {"scale": jnp.ones(b), "offset": jnp.zeros(b)}
        params.append(layer)

    def chunk_loss_sum(p, xc, yc):
        h = xc
        for layer in p[:-1]:
            h = h @ layer["w"] + layer["b"]
            mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
            h = (h - mean) * jax.lax.rsqrt(var + 1e-3) * layer["scale"] + layer["offset"]
            h = jax.nn.relu(h)
        logits = h @ p[-1]["w"] + p[-1]["b"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.sum(jnp.take_along_axis(logp, yc[:, None], axis=1))

    c = min(chunk, n)
    m = n // c

    @jax.jit
    def loss_fn(p):
        xs, ys = x[: m * c].reshape(m, c, 784), y[: m * c].reshape(m, c)
        total, _ = jax.lax.scan(lambda s, xy: (s + chunk_loss_sum(p, *xy), None), 0.0, (xs, ys))
        if n > m * c:
            total = total + chunk_loss_sum(p, x[m * c :], y[m * c :])
        return total / n

    return loss_fn, params, "plain JAX F1 (benchmarks/sharpness_overhead.py), BN batch stats"


def project_f1_loss(n: int, chunk: int, seed: int):
    """F1 and its loss from keskar_repro.training.models / keskar_repro.training.objective
    (bn_policy='batch')."""
    model = models.f1()
    variables = models.init_variables(model, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int32)
    loss_fn = objective.make_loss_fn(
        model, variables["batch_stats"], images, labels, bn_policy="batch", chunk_size=chunk
    )
    source = "keskar_repro.training.objective.make_loss_fn(F1, bn='batch')"
    return loss_fn, variables["params"], source


def scipy_paths(n: int, maxiter: int) -> dict[str, float]:
    """Seconds of L-BFGS-B on f(z) = c . z (trivial objective), n variables in [-1, 1]."""
    c = np.random.default_rng(0).standard_normal(n)

    def fg(z):
        return float(c @ z), c.copy()

    lo, hi = -np.ones(n), np.ones(n)
    opts = {"maxiter": maxiter, "maxfun": 10**9, "ftol": 0.0, "gtol": 0.0}
    calls = {
        "minimize_bounds_list_of_tuples": lambda: scipy.optimize.minimize(
            fg, np.zeros(n), jac=True, method="L-BFGS-B",
            bounds=list(zip(lo.tolist(), hi.tolist(), strict=True)), options=opts,
        ),
        "minimize_Bounds_ndarrays": lambda: scipy.optimize.minimize(
            fg, np.zeros(n), jac=True, method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(lo, hi), options=opts,
        ),
        "fmin_l_bfgs_b_ndarray_bounds": lambda: scipy.optimize.fmin_l_bfgs_b(
            fg, np.zeros(n), bounds=np.stack([lo, hi], axis=1), maxiter=maxiter,
            maxfun=10**9, factr=0.0, pgtol=0.0,
        ),
        "setulb_direct_driver": lambda: _lbfgsb_setulb(fg, lo, hi, maxiter),
        "minimize_unbounded_reference": lambda: scipy.optimize.minimize(
            fg, np.zeros(n), jac=True, method="L-BFGS-B", options=opts
        ),
    }  # fmt: skip
    out = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        out[name] = time.perf_counter() - t0
        print(f"  scipy path {name:34s} {out[name]:8.2f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60_000, help="number of training images")
    ap.add_argument("--chunk", type=int, default=5_000, help="images per loss chunk")
    ap.add_argument("--p", type=int, default=100, help="subspace dimension (0: skip)")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--maxiter", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5, help="value_and_grad timings (median)")
    ap.add_argument("--drivers", default="public,setulb", help="comma-separated L-BFGS-B drivers")
    ap.add_argument("--loss", choices=("project", "plain"), default="project")
    ap.add_argument("--no-scipy-paths", action="store_true", help="skip the trivial-objective part")
    ap.add_argument("--no-pga", action="store_true", help="skip the method='pga' run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    builder = plain_f1_loss if args.loss == "plain" else project_f1_loss
    loss_fn, params, loss_name = builder(args.n, args.chunk, args.seed)
    n_params = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))
    print(f"loss: {loss_name}; N = {args.n}; n_params = {n_params:,}; device = {jax.devices()[0]}")

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    first_vg, times = timed(lambda: value_and_grad(params), args.repeats)
    t_vg = spread(times)["seconds"]
    print(f"value_and_grad: first (compile) {first_vg:.3f} s, median {t_vg:.4f} s", flush=True)

    configs = [("full", {})]
    if args.p:
        configs.append((f"subspace_p{args.p}", {"subspace_dim": args.p, "key": jax.random.key(1)}))
    runs = []
    cases = [(name, driver, "lbfgsb", kw) for driver in args.drivers.split(",") if driver
             for name, kw in configs]  # fmt: skip
    if not args.no_pga:  # the device-side cross-check: no host round trips at all
        cases.append(("full", "-", "pga", {}))
    for name, driver, method, kw in cases:
        opts = {"method": method, **({"driver": driver} if method == "lbfgsb" else {}), **kw}
        warm = sharpness(loss_fn, params, args.eps, maxiter=1, **opts)
        r = sharpness(loss_fn, params, args.eps, maxiter=args.maxiter, **opts)
        in_loss = r.loss_evals * t_vg
        row = {
            "config": name,
            "method": method,
            "driver": driver,
            "value": r.value,
            "nit": r.nit,
            "nfev": r.nfev,
            "loss_evals": r.loss_evals,
            "seconds": r.seconds,
            "seconds_setup": r.seconds_setup,
            "seconds_in_loss": in_loss,
            "seconds_in_eval_wrapper": r.seconds_in_evals,
            "overhead": 1.0 - in_loss / r.seconds,
            "overhead_wrapper": 1.0 - r.seconds_in_evals / r.seconds,
            "warmup_seconds": warm.seconds,
            "message": r.message,
            "solver": r.solver,
        }
        runs.append(row)
        print(
            f"{name:14s} {method:6s} {driver:7s} nfev {r.nfev:3d}  total {r.seconds:8.2f} s  "
            f"in loss {in_loss:8.2f} s  overhead {row['overhead']:6.1%}  "
            f"(wrapper-measured {row['overhead_wrapper']:6.1%})  phi {r.value:.4g}",
            flush=True,
        )

    paths = {} if args.no_scipy_paths else scipy_paths(n_params, args.maxiter)
    summary = {
        "benchmark": "sharpness_overhead",
        "loss": loss_name,
        "n_images": args.n,
        "chunk": args.chunk,
        "n_params": n_params,
        "epsilon": args.eps,
        "maxiter": args.maxiter,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "blas_threads_env": {
            k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        },
        "jax": jax.__version__,
        "scipy": scipy.__version__,
        "value_and_grad_first_s": first_vg,
        "value_and_grad_median_s": t_vg,
        "runs": runs,
        "scipy_trivial_objective_s": paths,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
