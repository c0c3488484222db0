"""The box-constrained maximisation of Metric 2.1 as the solvers see it: `SharpnessProblem`,
built and validated by `sharpness_problem`."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.measures.checks import (
    check_choice,
    check_int,
    check_key,
    check_loss_fn,
    check_positive,
    split_data,
)
from keskar_repro.measures.compiled import _Compiled, _compiled, _delta_jit
from keskar_repro.measures.options import SCALINGS, SUBSPACE_SCALINGS
from keskar_repro.measures.pytree import Mask, Partition, partition
from keskar_repro.measures.subspace import (
    _check_epsilon,
    box_bounds,
    given_subspace,
    random_subspace,
)

# --------------------------------------------------------------------------------------------
# The problem seen by the solvers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SharpnessProblem:
    """The box-constrained maximisation of Metric 2.1, in the solver's variables z.

    x is the entries of params that `part` perturbs (n of them); h_i = eps (|(A^+ x)_i| + eta)
    are the box's half-widths (eta = 1 for Metric 2.1). y = h * z with z in [-1, 1]^p for
    scaling="normalized", y = z in [-h, h] for scaling="literal". `fun_and_grad(z)` returns what
    L-BFGS-B minimizes, in float64:

        normalized:  F(z) = -(f(x + A (h * z)) - f0) / s,   grad F = -(h * A^T grad f) / s
        literal:     F(z) = -f(x + A z),                     grad F = -A^T grad f

    with s = `objective_scale` = mean_i |h_i (A^T grad f(x))_i| (1 if that is 0 or not finite).
    Every call is one evaluation of the compiled value_and_grad (one host->device copy of z in the
    loss dtype, one device->host copy of the gradient); the best evaluated point is tracked.
    """

    loss_fn: Callable  # the function compiled (for WithData: its fn)
    params: Any  # on the device
    part: Partition  # which leaves of params are perturbed, and the flat dtype
    n: int
    p: int
    epsilon: float
    eta: float  # the box's offset: 1 for Metric 2.1, 0 for the adaptive box
    subspace_dim: int | None
    subspace_scaling: str | None
    scaling: str
    A: jax.Array | None
    halfwidth: np.ndarray  # float64, length p
    lower: np.ndarray  # solver-variable bounds, float64
    upper: np.ndarray
    dtype: np.dtype  # dtype of the flattened parameters (and of the perturbation)
    loss_dtype: np.dtype  # dtype of loss_fn's value
    f0: float
    grad0: np.ndarray  # ascent gradient of f in z at z = 0, float64 (before / s)
    objective_scale: float
    seconds_setup: float = 0.0
    loss_evals: int = 0
    seconds_in_evals: float = 0.0
    best_f: float = -math.inf
    best_z: np.ndarray | None = None
    last_f: float = math.nan
    _compiled: _Compiled | None = None
    _h_dev: jax.Array | None = None
    _original_params: Any = None  # as passed, for the dtypes of the returned perturbation
    data: Any = None  # loss_fn's second argument (None: loss_fn(params)), on the device

    # -- evaluation -------------------------------------------------------------------------

    def _record(self, z: np.ndarray, f: float) -> None:
        self.last_f = f
        if f > self.best_f:  # NaN never wins
            self.best_f = f
            self.best_z = np.array(z, dtype=np.float64, copy=True)

    def evaluate(self, z: Any) -> tuple[float, np.ndarray]:
        """(f(x + A y(z)), ascent gradient of f in z), float64 on the host; one loss evaluation."""
        t0 = time.perf_counter()
        z = np.clip(np.asarray(z, dtype=np.float64), self.lower, self.upper)
        value, grad = self._compiled.value_and_grad(
            jnp.asarray(z.astype(self.dtype, copy=False)),
            self.params,
            self.data,
            self._h_dev,
            self.A,
            part=self.part,
        )
        value, grad = jax.device_get((value, grad))
        f = float(value)
        grad = np.asarray(grad, dtype=np.float64)
        self.loss_evals += 1
        self.seconds_in_evals += time.perf_counter() - t0
        self._record(z, f)
        return f, grad

    def fun_and_grad(self, z: Any) -> tuple[float, np.ndarray]:
        """The objective L-BFGS-B minimizes and its gradient (see the class docstring)."""
        z = np.asarray(z, dtype=np.float64)
        if self.loss_evals > 0 and not np.any(z):  # z = 0 was evaluated when building the problem
            f, grad = self.f0, self.grad0
        else:
            f, grad = self.evaluate(z)
        if self.scaling == "literal":
            return -f, -grad
        return -(f - self.f0) / self.objective_scale, grad * (-1.0 / self.objective_scale)

    def fun(self, z: Any) -> float:
        """F(z) alone (one evaluation), e.g. for `scipy.optimize.check_grad`."""
        return self.fun_and_grad(z)[0]

    def jac(self, z: Any) -> np.ndarray:
        """grad F(z) alone (one evaluation)."""
        return self.fun_and_grad(z)[1]

    # -- conversions ------------------------------------------------------------------------

    def to_y(self, z: np.ndarray) -> np.ndarray:
        """Box coordinates y (float64) of solver variables z."""
        z = np.asarray(z, dtype=np.float64)
        return self.halfwidth * z if self.scaling == "normalized" else z

    def delta(self, z: np.ndarray) -> Any:
        """The parameter perturbation A y(z) as a pytree of numpy arrays in the params' dtypes,
        zeros on the leaves held fixed (`Partition.perturbation`).

        Computed on the device exactly as in the evaluations (in the flat dtype).
        """
        flat = _delta_jit(jnp.asarray(np.asarray(z).astype(self.dtype)), self._h_dev, self.A)
        return self.part.perturbation(flat, self._original_params)


def _check_subspace(A: Any, key: Any, subspace_dim: int | None, n: int) -> tuple:
    """(subspace_dim, key) checked: a given A needs neither; a random A both; the full space
    neither (ValueError naming the argument otherwise)."""
    if A is not None:
        if key is not None:
            raise ValueError("key was given with A (a given subspace draws nothing)")
        if subspace_dim is not None and subspace_dim != np.shape(A)[-1]:
            raise ValueError(f"subspace_dim={subspace_dim} but A has {np.shape(A)[-1]} columns")
        return subspace_dim, None
    if subspace_dim is not None:
        subspace_dim = check_int("subspace_dim", subspace_dim, 1, n)
        return subspace_dim, check_key(
            key, "a random subspace (subspace_dim is given; the key draws A)"
        )
    if key is not None:
        raise ValueError("key was given but subspace_dim is None (full space uses no key)")
    return None, None


def sharpness_problem(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    *,
    subspace_dim: int | None = None,
    key: Any = None,
    subspace_scaling: str = "gaussian",
    scaling: str = "normalized",
    eta: float = 1.0,
    mask: Mask = None,
    A: Any = None,
) -> SharpnessProblem:
    """Validate the arguments and build the `SharpnessProblem` (one evaluation of f at x).

    x is the floating leaves of params that `mask` selects
    (`keskar_repro.measures.pytree.partition`; None: all of them); the box's half-widths are eps
    (|(A^+ x)_i| + eta), eta = 1 (default) for Metric 2.1, eta = 0 for the adaptive box of
    keskar_repro.measures.notions. `A` (an n x p matrix) is a subspace of the caller's own
    instead of a random one: subspace_dim is then p (or must equal it), no key is used, and
    the result's subspace_scaling is "given".

    Raises ValueError naming the argument for: epsilon <= 0, eta < 0, subspace_dim < 1 or > n,
    a missing key for a subspace (or a key without subspace_dim), params without floating
    entries to perturb (or a mask that selects none), a loss_fn that is not a scalar function
    of params, and a non-finite loss or gradient at x.
    """
    t0 = time.perf_counter()
    eps = _check_epsilon(epsilon)
    eta = check_positive("eta", eta, zero=True)
    check_choice("scaling", scaling, SCALINGS)
    check_choice("subspace_scaling", subspace_scaling, SUBSPACE_SCALINGS)
    part = partition(params, mask)
    n = part.n
    subspace_dim, key = _check_subspace(A, key, subspace_dim, n)
    loss_dtype = check_loss_fn(loss_fn, params)
    loss_fn, data = split_data(loss_fn)
    data = jax.tree_util.tree_map(jnp.asarray, data)

    params_dev = jax.tree_util.tree_map(jnp.asarray, params)
    x_flat, _ = part.flatten(params_dev)
    if not bool(jnp.all(jnp.isfinite(x_flat))):
        raise ValueError("params must be finite")
    dtype = np.dtype(x_flat.dtype)
    if A is not None:
        A = given_subspace(A, n, dtype)
        subspace_dim, subspace_scaling = A.shape[1], "given"
    elif subspace_dim is not None:
        A = random_subspace(key, n, subspace_dim, scaling=subspace_scaling, dtype=dtype)
    _, upper = box_bounds(x_flat, eps, A, eta=eta)
    p = upper.shape[0]
    if scaling == "normalized":
        lower_z, upper_z = -np.ones(p), np.ones(p)
        h_dev = jnp.asarray(upper.astype(dtype))
    else:
        lower_z, upper_z = -upper, upper
        h_dev = None

    problem = SharpnessProblem(
        loss_fn=loss_fn,
        params=params_dev,
        part=part,
        n=n,
        p=p,
        epsilon=eps,
        eta=eta,
        subspace_dim=subspace_dim,
        subspace_scaling=None if subspace_dim is None else subspace_scaling,
        scaling=scaling,
        A=A,
        halfwidth=upper,
        lower=lower_z,
        upper=upper_z,
        dtype=dtype,
        loss_dtype=loss_dtype,
        f0=math.nan,
        grad0=np.zeros(p),
        objective_scale=1.0,
        _compiled=_compiled(loss_fn),
        _h_dev=h_dev,
        _original_params=params,
        data=data,
    )
    f0, grad0 = problem.evaluate(np.zeros(p))  # compiles on the first call for these shapes
    if not math.isfinite(f0):
        raise ValueError(f"loss_fn(params) is not finite: {f0}")
    if not np.all(np.isfinite(grad0)):
        raise ValueError("the gradient of loss_fn at params is not finite")
    problem.f0, problem.grad0 = f0, grad0
    if scaling == "normalized":
        s = float(np.mean(np.abs(grad0)))
        problem.objective_scale = s if (math.isfinite(s) and s > 0.0) else 1.0
    problem.seconds_setup = time.perf_counter() - t0
    return problem
