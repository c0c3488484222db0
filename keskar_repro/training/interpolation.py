"""1-D parametric paths between two minimizers, and their losses, in one compiled call.

Keskar et al. 2017 plot the loss along

    linear (Figure 3):       x(alpha) = alpha * x_LB + (1 - alpha) * x_SB
    curvilinear (Figure 7):  x(alpha) = sin(alpha pi / 2) * x_LB + cos(alpha pi / 2) * x_SB

for alpha in [-1, 2]: alpha = 0 is the SB minimizer `a`, alpha = 1 the LB minimizer `b`. Both
are exact at the endpoints (the curvilinear weights are pinned to 0 and 1 there, since
cos(pi / 2) is not exactly 0 in floating point).

`evaluate_path` returns the exact train and test cross-entropy and accuracy at every alpha,
computed by one jit-compiled program (a `lax.map` over alphas around the chunked full-split
objective), with the batch-norm policy explicit as in keskar_repro.training.objective. Under "batch"
(default: what the authors' Keras code did) and "full" the stored running averages are not used.
Under "running" they are interpolated with the same weights (w_a, w_b) as the parameters, each
statistic in its own geometry (`interpolate_variables`):

    running means:      mu(alpha)  = w_a * mu_a + w_b * mu_b
    running variances:  var(alpha) = exp(w_a * log var_a + w_b * log var_b)

The linear rule does not keep a variance positive: beyond the endpoints one weight is negative
(w_b = -1 at alpha = -1 and w_a = -1 at alpha = 2 on both paths), so w_a var_a + w_b var_b < 0
at alpha = -1 of the linear path as soon as var_b > 2 var_a (at alpha = 2 if var_a > 2 var_b),
and at both ends of the curvilinear path (-var_b and -var_a) always. Batch norm's
1 / sqrt(var + eps) is NaN wherever var < -eps (the linear rule gave NaN losses at 4 of 25
alphas on the linear path and 9 of 25 on the curvilinear one). The geometric rule is the linear
rule applied to log var, the natural coordinate of a positive scale: it is positive at every
alpha, is the weighted geometric mean between the endpoints of the linear path, and is exact at both
endpoints, where the weights are exactly (1, 0) and (0, 1) and the stored variance is returned
unchanged. Variances are floored at the smallest normal float32 before the log, so a zero
variance stays finite. Means are shifts, like the parameters, so they keep the linear rule.

How many alphas are evaluated together (vmapped) does not change the values, only speed and
memory. By default it is 1 on a CPU (vmapping alphas measured slower there: 25 points over
mnist10k took 3.1 s one at a time, 3.5 s five at a time and 5.4 s all together on the 2-core
CPU; `python -m benchmarks.path_alpha_batch`) and, on accelerators, the largest number whose
compiled program fits in half the free device memory (keskar_repro.devices.memory).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.devices.memory import (
    DEFAULT_FRACTION,
    budget_bytes,
    check_fraction,
    largest_fitting,
    program_bytes,
)
from keskar_repro.devices.parallel import replicate
from keskar_repro.training.bn_policies import DEFAULT_CHUNK_SIZE, check_bn_policy
from keskar_repro.training.objective import split_metrics

PATHS = ("linear", "curvilinear")


def path_weights(alphas, kind: str) -> tuple[jax.Array, jax.Array]:
    """(w_a, w_b) with x(alpha) = w_a * a + w_b * b for each alpha, exact at alpha = 0 and 1."""
    alphas = jnp.asarray(alphas, jnp.float32)
    if kind == "linear":
        return 1.0 - alphas, alphas
    if kind == "curvilinear":
        w_a, w_b = jnp.cos(alphas * jnp.pi / 2), jnp.sin(alphas * jnp.pi / 2)
        w_a = jnp.where(alphas == 1, 0.0, jnp.where(alphas == 0, 1.0, w_a))
        w_b = jnp.where(alphas == 1, 1.0, jnp.where(alphas == 0, 0.0, w_b))
        return w_a, w_b
    raise ValueError(f"path kind={kind!r} is not one of {PATHS}")


def _combine(a, b, w_a, w_b):
    return jax.tree_util.tree_map(lambda u, v: (w_a * u + w_b * v).astype(u.dtype), a, b)


def interpolate_variables(variables_a: dict, variables_b: dict, w_a, w_b) -> dict:
    """{"params", "batch_stats"} at the path point with weights (w_a, w_b).

    Parameters and running means: w_a * a + w_b * b. Running variances (the "var" leaves of
    Flax's BatchNorm statistics): exp(w_a log var_a + w_b log var_b), positive for every weight
    and exact when (w_a, w_b) is (1, 0) or (0, 1) (see the module docstring).
    """
    tiny = np.finfo(np.float32).tiny

    def stat(path, u, v):
        if getattr(path[-1], "key", None) != "var":
            return (w_a * u + w_b * v).astype(u.dtype)
        log_u, log_v = jnp.log(jnp.maximum(u, tiny)), jnp.log(jnp.maximum(v, tiny))
        geometric = jnp.exp(w_a * log_u + w_b * log_v).astype(u.dtype)
        at_b = jnp.where((w_a == 0) & (w_b == 1), v, geometric)
        return jnp.where((w_a == 1) & (w_b == 0), u, at_b)

    out = dict(variables_a)
    out["params"] = _combine(variables_a["params"], variables_b["params"], w_a, w_b)
    out["batch_stats"] = jax.tree_util.tree_map_with_path(
        stat, variables_a["batch_stats"], variables_b["batch_stats"]
    )
    return out


def linear_path(a, b, alphas):
    """Pytree whose leaves have a leading alpha axis: alpha * b + (1 - alpha) * a.

    Every leaf is combined linearly: meant for parameters. For {"params", "batch_stats"} with
    running variances use `interpolate_variables`, which keeps the variances positive."""
    w_a, w_b = path_weights(alphas, "linear")
    return jax.vmap(lambda u, v: _combine(a, b, u, v))(w_a, w_b)


def curvilinear_path(a, b, alphas):
    """Pytree with a leading alpha axis: sin(alpha pi/2) * b + cos(alpha pi/2) * a.

    Every leaf is combined linearly, as in `linear_path`."""
    w_a, w_b = path_weights(alphas, "curvilinear")
    return jax.vmap(lambda u, v: _combine(a, b, u, v))(w_a, w_b)


def evaluate_path(
    model,
    variables_a: dict,
    variables_b: dict,
    alphas,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    kind: str = "linear",
    bn_policy: str = "batch",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    alpha_batch: int | None = None,
    memory_fraction: float = DEFAULT_FRACTION,
) -> dict[str, np.ndarray]:
    """Loss and accuracy at each alpha on each split, from one compiled call.

    `variables_*` are {"params", "batch_stats"}; `splits` maps a name ("train", "test") to
    (uint8 images, int labels). Returns {"alpha", "<split>_loss", "<split>_accuracy"} as numpy
    arrays of len(alphas). `alpha_batch` alphas are evaluated together (vmapped) inside the
    `lax.map`; None chooses it (1 on a CPU; on accelerators the most whose program fits in
    `memory_fraction` of the free device memory).
    """
    check_bn_policy(bn_policy)
    check_fraction(memory_fraction)
    alphas = np.asarray(alphas, np.float32)
    weights = path_weights(alphas, kind)
    data = {
        name: (replicate(x), replicate(np.asarray(y, np.int32))) for name, (x, y) in splits.items()
    }
    args = (variables_a, variables_b, weights, data)
    if alpha_batch is None and jax.default_backend() == "cpu":
        alpha_batch = 1
    elif alpha_batch is None:
        alpha_batch = _fitting_alpha_batch(model, bn_policy, chunk_size, args, memory_fraction)
    if alpha_batch < 1:
        raise ValueError(f"alpha_batch={alpha_batch} must be at least 1")
    metrics = _compiled_path_evaluation(model, bn_policy, chunk_size, alpha_batch)(*args)
    out = {"alpha": alphas}
    for name, (loss, accuracy) in metrics.items():
        out[f"{name}_loss"] = np.asarray(loss, np.float64)
        out[f"{name}_accuracy"] = np.asarray(accuracy, np.float64)
    return out


_ALPHA_BATCHES: dict[tuple, int] = {}


def _fitting_alpha_batch(model, bn_policy: str, chunk_size: int, args, fraction: float) -> int:
    """The most alphas per step whose program fits in `fraction` of the free device memory,
    found once per model, policy and data shapes."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), args)
    key = (model, bn_policy, chunk_size, fraction, str(shapes))
    if key not in _ALPHA_BATCHES:

        def bytes_at(batch: int) -> int:
            evaluate = _compiled_path_evaluation(model, bn_policy, chunk_size, batch)
            return program_bytes(evaluate.lower(*args).compile())

        n_alphas = args[2][0].shape[0]
        _ALPHA_BATCHES[key] = largest_fitting(
            bytes_at, n_alphas, budget_bytes(fraction), what="the path evaluation"
        )
    return _ALPHA_BATCHES[key]


@functools.lru_cache(maxsize=16)
def _compiled_path_evaluation(model, bn_policy: str, chunk_size: int, alpha_batch: int) -> Callable:
    @jax.jit
    def evaluate(variables_a, variables_b, weights, data):
        def at_alpha(w):
            variables = interpolate_variables(variables_a, variables_b, *w)
            return {
                name: split_metrics(
                    model,
                    variables["params"],
                    variables["batch_stats"],
                    x,
                    y,
                    bn_policy=bn_policy,
                    chunk_size=chunk_size,
                )
                for name, (x, y) in data.items()
            }

        return jax.lax.map(at_alpha, weights, batch_size=alpha_batch)

    return evaluate
