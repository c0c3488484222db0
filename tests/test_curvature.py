"""Tests of keskar_repro.measures.curvature against closed forms and dense Hessians.

Quadratics f(x) = 0.5 x^T H x over a pytree of three leaves with a chosen spectrum (their loss
flattens the leaves in its own order, not the module's), a small batch-normalised MLP in
float64 against `jax.hessian`, and the package's full-split objective under every BN policy
against forward-over-reverse differentiation of the same loss written without chunks or scans.
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from keskar_repro.measures.curvature import (
    SpectralDensity,
    hessian_trace,
    hvp_fn,
    spectral_density,
    top_eigenvalues,
)
from keskar_repro.measures.options import MeasureSettings
from keskar_repro.measures.pytree import partition
from keskar_repro.training.bn_policies import BN_POLICIES, apply_model
from keskar_repro.training.models import MLP, init_variables
from keskar_repro.training.objective import cross_entropy, make_loss_fn, scale_pixels

SHAPES = {"w": (3, 4), "b": (5,), "c": (2, 2, 2)}  # n = 25
N = 25
TOP = [9.0, 7.0, 5.0]
BOTTOM = [-4.0, -3.0]
# A diagonal Hessian with four distinct eigenvalues of multiplicities 10, 8, 5, 2.
DIAG_VALUES = np.array([-2.0, 1.0, 3.0, 10.0])
DIAG_COUNTS = np.array([10, 8, 5, 2])


def key(i: int) -> jax.Array:
    return jax.random.key(i)


def spectrum(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([TOP, BOTTOM, rng.uniform(-1.0, 1.0, N - 5)])


def rotated(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((N, N)))
    return (q * eigenvalues) @ q.T


def diagonal() -> np.ndarray:
    values = np.repeat(DIAG_VALUES, DIAG_COUNTS)
    return np.diag(np.random.default_rng(2).permutation(values))


def as_vector(p) -> jax.Array:
    """The quadratic's own flattening: w, b, c (not the module's tree_leaves order b, c, w)."""
    return jnp.concatenate([jnp.ravel(p[name]).astype(jnp.float32) for name in ("w", "b", "c")])


def quadratic(h: np.ndarray):
    h = jnp.asarray(h, jnp.float32)

    def loss(p):
        x = as_vector(p)
        return 0.5 * x @ h @ x

    return loss


def point(seed: int = 3, dtypes: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    dtypes = dtypes or {}
    return {
        name: jnp.asarray(rng.standard_normal(shape), dtypes.get(name, jnp.float32))
        for name, shape in SHAPES.items()
    }


# --------------------------------------------------------------------------------------------
# Quadratics with a known spectrum
# --------------------------------------------------------------------------------------------


def test_top_eigenvalues_of_a_quadratic_with_known_spectrum():
    eigenvalues = spectrum()
    loss = quadratic(rotated(eigenvalues))
    largest = top_eigenvalues(loss, point(), key=key(0), k=3, num_matvecs=15, tol=0)
    np.testing.assert_allclose(largest.eigenvalues, TOP, atol=1e-4)
    # the stated error: an eigenvalue within each residual (+ float32 rounding of the HVPs)
    assert np.all(np.abs(largest.eigenvalues - TOP) <= largest.residuals + 1e-5 * max(TOP))
    assert largest.which == "largest" and largest.k == 3 and largest.num_matvecs == 15
    assert largest.n_params == N and largest.leaf_counts.fixed_leaves == 0
    assert largest.ritz_values.shape == (15,) and largest.dtype == "float32"
    assert largest.converged and largest.tol == 0

    smallest = top_eigenvalues(loss, point(), key=key(0), k=2, num_matvecs=15, which="smallest")
    np.testing.assert_allclose(smallest.eigenvalues, BOTTOM, atol=1e-4)
    magnitude = top_eigenvalues(loss, point(), key=key(0), k=3, num_matvecs=15, which="magnitude")
    np.testing.assert_allclose(magnitude.eigenvalues, [9.0, 7.0, 5.0], atol=1e-4)
    assert magnitude.seconds_compile < largest.seconds_compile  # compiled once, then reused

    with pytest.raises(dataclasses.FrozenInstanceError):
        largest.k = 4  # type: ignore[misc]
    record = json.loads(largest.to_json())
    assert record["eigenvalues"] == pytest.approx(TOP, abs=1e-4) and record["n_params"] == N


def test_lanczos_stops_on_its_tolerance_with_errors_that_hold():
    """Default tol = 1e-3: it stops once every wanted residual bound is below tol |theta_i|,
    before the m steps; each eigenvalue is then within its stated error of the true one, and
    the error never falls below the float32 floor u max|theta| (where the residual bound of
    the computed T_m does, at m = n)."""
    loss = quadratic(rotated(spectrum()))
    early = top_eigenvalues(loss, point(), key=key(0), k=3, num_matvecs=N)
    assert early.converged and early.tol == 1e-3 and early.num_matvecs < N
    assert np.all(early.residuals <= 1e-3 * np.abs(early.eigenvalues))
    assert np.all(np.abs(early.eigenvalues - TOP) <= early.errors)
    tighter = top_eigenvalues(loss, point(), key=key(0), k=3, num_matvecs=N, tol=1e-6)
    assert tighter.num_matvecs > early.num_matvecs
    assert np.all(np.abs(tighter.eigenvalues - TOP) <= tighter.errors)

    full = top_eigenvalues(loss, point(), key=key(0), k=3, num_matvecs=N, tol=0)
    floor = np.finfo(np.float32).eps * max(TOP)
    assert full.num_matvecs == N and np.min(full.residuals) < floor  # T_n: r_i ~ 0
    np.testing.assert_allclose(full.errors, np.maximum(full.residuals, floor))
    assert np.all(np.abs(full.eigenvalues - TOP) <= full.errors)


def test_ritz_vectors_are_the_eigenvectors_as_pytrees():
    """vectors=True: unit Ritz vectors with params' structure, each (up to sign) the true
    eigenvector of H in the loss's own flattening, with ||H y - theta y|| within the error."""
    eigenvalues = spectrum()
    h = rotated(eigenvalues)
    q = np.linalg.eigh(h)[1][:, ::-1][:, :3]  # eigenvectors of 9, 7, 5
    r = top_eigenvalues(quadratic(h), point(), key=key(0), k=3, vectors=True, tol=1e-5)
    assert len(r.vectors) == 3 and "vectors" not in r.to_dict()
    for i, y in enumerate(r.vectors):
        assert jax.tree_util.tree_structure(y) == jax.tree_util.tree_structure(point())
        flat = np.asarray(as_vector(y), np.float64)
        assert np.linalg.norm(flat) == pytest.approx(1.0, rel=1e-5)
        assert abs(flat @ q[:, i]) == pytest.approx(1.0, abs=1e-4)
        residual = np.linalg.norm(h @ flat - r.eigenvalues[i] * flat)
        assert residual <= r.errors[i] + 1e-5 * max(TOP)
    assert top_eigenvalues(quadratic(h), point(), key=key(0), k=3).vectors is None


def test_lanczos_goes_on_after_an_invariant_subspace():
    """H diagonal with 4 distinct eigenvalues: the Krylov space of any start vector has
    dimension 4, so beta_4 = 0; Lanczos then restarts from a fresh orthogonal vector and, over
    all n steps, finds every eigenvalue with its multiplicity (top 5: 10, 10, 3, 3, 3)."""
    loss = quadratic(diagonal())
    one = top_eigenvalues(loss, point(), key=key(6), k=1, num_matvecs=N)
    assert one.converged and one.num_matvecs <= 4 and one.eigenvalues[0] == pytest.approx(10.0)
    five = top_eigenvalues(loss, point(), key=key(6), k=5, num_matvecs=N, tol=0)
    np.testing.assert_allclose(five.eigenvalues, [10, 10, 3, 3, 3], atol=1e-4)
    np.testing.assert_allclose(np.sort(five.ritz_values), np.repeat(DIAG_VALUES, DIAG_COUNTS),
                               atol=1e-4)  # fmt: skip


def test_diagonal_quadratic_trace_and_density_are_exact():
    """With H diagonal and Rademacher probes z, z^T H z = tr H for every z, and each probe's
    m = 4 Lanczos steps give the 4 distinct eigenvalues as nodes with weights (multiplicity/n)."""
    h = diagonal()
    loss = quadratic(h)
    trace = hessian_trace(loss, point(), key=key(1), num_samples=3, method="hutchinson")
    assert trace.value == pytest.approx(np.trace(h), rel=1e-6)
    assert trace.stderr <= 1e-6 * abs(np.trace(h))
    assert trace.method == "hutchinson" and trace.num_samples == trace.num_matvecs == 3

    density = spectral_density(loss, point(), key=key(2), num_probes=3, num_matvecs=4)
    assert density.nodes.shape == density.weights.shape == (3, 4) and density.num_matvecs == 12
    np.testing.assert_allclose(density.nodes, np.tile(DIAG_VALUES, (3, 1)), atol=1e-4)
    np.testing.assert_allclose(density.weights, np.tile(DIAG_COUNTS / N, (3, 1)), atol=1e-5)
    for k in range(8):  # exact up to degree 2m - 1 = 7
        value, error = density.moment(k)
        expected = np.sum(DIAG_COUNTS * DIAG_VALUES**k) / N
        assert value == pytest.approx(expected, rel=1e-4) and error <= 1e-4 * abs(expected)
    assert density.trace()[0] == pytest.approx(np.trace(h), rel=1e-5)
    assert density.trace()[1] <= 1e-5 * abs(np.trace(h))
    grid = np.linspace(-4.0, 12.0, 4001)
    phi = density.density(grid, sigma=0.1)
    assert np.sum(phi) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)
    assert phi[np.argmin(np.abs(grid + 2.0))] == pytest.approx(
        DIAG_COUNTS[0] / N / (0.1 * np.sqrt(2 * np.pi)), rel=1e-3
    )


def test_stochastic_estimators_agree_within_their_stated_errors():
    eigenvalues = spectrum()
    h = rotated(eigenvalues)
    loss = quadratic(h)
    exact = float(np.sum(eigenvalues))

    hutchinson = hessian_trace(loss, point(), key=key(3), num_samples=200, method="hutchinson")
    assert abs(hutchinson.value - exact) <= 4 * hutchinson.stderr
    # the standard error against its exact value for Rademacher probes
    exact_error = np.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / 200)
    assert hutchinson.stderr == pytest.approx(exact_error, rel=0.3)

    xtrace = hessian_trace(loss, point(), key=key(4), num_samples=8)  # the default, XTrace
    assert xtrace.method == "xtrace" and xtrace.num_matvecs == 16
    assert abs(xtrace.value - exact) <= 4 * xtrace.stderr
    assert xtrace.stderr < hutchinson.stderr  # fewer probes, smaller error
    # with 2m >= n XTrace forms H from n HVPs: exact
    formed = hessian_trace(loss, point(), key=key(4), num_samples=13, method="xtrace")
    assert formed.num_matvecs == N and formed.value == pytest.approx(exact, rel=1e-5)
    more = hessian_trace(loss, point(), key=key(4), num_samples=N + 5)  # as many as n at most
    assert more.num_samples == more.num_matvecs == N
    assert more.value == pytest.approx(exact, rel=1e-5)

    density = spectral_density(loss, point(), key=key(5), num_probes=8, num_matvecs=10)
    assert density.moment(0) == pytest.approx((1.0, 0.0), abs=1e-6)
    for k in (1, 2, 3):
        value, error = density.moment(k)
        assert abs(value - np.mean(eigenvalues**k)) <= 4 * error


def test_xtrace_is_exact_for_a_low_rank_hessian():
    low_rank = np.concatenate([TOP, np.zeros(N - 3)])
    loss = quadratic(rotated(low_rank))
    result = hessian_trace(loss, point(), key=key(6), num_samples=5, method="xtrace")
    assert result.value == pytest.approx(sum(TOP), rel=1e-5)
    assert result.stderr <= 1e-4


# --------------------------------------------------------------------------------------------
# The pytree: fixed leaves, half-precision leaves
# --------------------------------------------------------------------------------------------


def test_non_floating_leaves_are_held_fixed_and_counted():
    h = jnp.asarray(diagonal(), jnp.float32)

    def loss(p):  # reads every fixed leaf: the Hessian is (step + 1) H = 3 H
        centre = jax.random.normal(p["rng"], (N,)) * jnp.sum(p["mask"])
        x = as_vector(p["x"]) - centre
        return (p["step"] + 1) * 0.5 * x @ h @ x

    mask = np.array([1, 0, 1], np.int8)
    params = {"x": point(), "step": jnp.int32(2), "rng": jax.random.key(7), "mask": mask}
    result = top_eigenvalues(loss, params, key=key(8), k=1, num_matvecs=4)
    assert result.eigenvalues[0] == pytest.approx(3 * DIAG_VALUES.max(), rel=1e-5)
    counts = result.leaf_counts
    assert (result.n_params, counts.fixed_entries, counts.fixed_leaves) == (N, 5, 3)
    assert result.to_dict()["leaf_counts"]["perturbed_entries"] == N

    v = {**params, "x": point(seed=9)}
    hv = hvp_fn(loss, params)(v)
    np.testing.assert_allclose(as_vector(hv["x"]), 3 * h @ as_vector(v["x"]), rtol=1e-5)
    for name in ("step", "rng", "mask"):
        assert hv[name].dtype == jax.dtypes.float0
        assert hv[name].shape == np.shape(params[name])


def test_half_precision_leaves_are_variables():
    dtypes = {"w": jnp.float32, "b": jnp.bfloat16, "c": jnp.float16}
    # diagonal entries exact in every dtype, so that Rademacher probes give the exact trace
    d = {
        "w": np.arange(12.0).reshape(3, 4) / 4,
        "b": np.array([1, -1, 2, 8, 0.5]),
        "c": -np.ones((2, 2, 2)),
    }

    def loss(p):
        return 0.5 * sum(jnp.sum(d[k] * p[k].astype(jnp.float32) ** 2) for k in SHAPES)

    params = point(dtypes=dtypes)
    trace = hessian_trace(loss, params, key=key(10), num_samples=2, method="hutchinson")
    assert trace.value == sum(np.sum(a) for a in d.values()) and trace.stderr == 0.0
    assert trace.param_dtypes == ("bfloat16", "float16", "float32") and trace.dtype == "float32"
    top = top_eigenvalues(loss, params, key=key(11), k=1, num_matvecs=N)
    assert top.eigenvalues[0] == pytest.approx(8.0, rel=1e-2)  # bfloat16 tangents: 2^-8
    hv = hvp_fn(loss, params)(params)
    assert {k: hv[k].dtype for k in SHAPES} == {k: jnp.dtype(t) for k, t in dtypes.items()}


# --------------------------------------------------------------------------------------------
# A small MLP in float64 against its dense Hessian
# --------------------------------------------------------------------------------------------


def test_small_mlp_against_the_dense_hessian_in_float64():
    with jax.enable_x64(True):
        model = MLP(hidden=(4,), n_classes=3)  # 6 -> Dense(4) -> BN -> ReLU -> Dense(3)
        variables = jax.jit(partial(model.init, use_running_average=True))(
            key(12), jnp.zeros((1, 6))
        )
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), variables["params"])
        rng = np.random.default_rng(12)
        x = jnp.asarray(rng.standard_normal((16, 6)))
        y = jnp.asarray(rng.integers(0, 3, 16))

        def loss(p):
            logits, _ = model.apply(
                {"params": p, "batch_stats": variables["batch_stats"]},
                x,
                use_running_average=False,
                mutable=["batch_stats"],
            )
            return jnp.mean(cross_entropy(logits, y))

        flat, unravel = ravel_pytree(params)
        dense = np.linalg.eigvalsh(jax.jit(jax.hessian(lambda w: loss(unravel(w))))(flat))
        n = flat.size  # 6*4 + 4 + 2*4 + 4*3 + 3 = 51

        full = top_eigenvalues(loss, params, key=key(13), k=3, num_matvecs=n, tol=0)
        assert full.dtype == "float64" and full.n_params == n == 51
        np.testing.assert_allclose(full.eigenvalues, dense[::-1][:3], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(full.ritz_values, dense, atol=1e-9 * abs(dense).max())
        early = top_eigenvalues(loss, params, key=key(13), k=3)  # tol 1e-3 on the residuals
        assert early.converged and early.num_matvecs < n
        assert np.all(np.abs(early.eigenvalues - dense[::-1][:3]) <= early.errors)


# --------------------------------------------------------------------------------------------
# The package's full-split objective: chunked HVP under every BN policy
# --------------------------------------------------------------------------------------------

SMALL = MLP(hidden=(8,))
CHUNK = 20  # 50 examples: chunks of 20, 20 and a remainder of 10
UNCHUNKED = {  # the examples each policy normalises together
    "batch": [(0, 20), (20, 40), (40, 50)],
    "full": [(0, 50)],
    "running": [(0, 50)],
}


@pytest.fixture(scope="module")
def tiny_split():
    rng = np.random.default_rng(16)
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 50).astype(np.int32)
    variables = jax.jit(partial(init_variables, SMALL))(key(16))
    # non-trivial running averages, so that "running" differs from batch statistics
    stats = jax.tree_util.tree_map(lambda a: np.asarray(a) + 0.3, variables["batch_stats"])
    direction = jax.tree_util.tree_map(
        lambda a: rng.standard_normal(a.shape).astype(np.float32), variables["params"]
    )
    return variables["params"], stats, x, y, direction


@pytest.mark.parametrize("bn_policy", BN_POLICIES)
def test_objective_hvp_equals_forward_over_reverse_of_the_unchunked_loss(tiny_split, bn_policy):
    params, stats, x, y, direction = tiny_split
    loss_fn = make_loss_fn(SMALL, stats, x, y, bn_policy=bn_policy, chunk_size=CHUNK)
    hv = hvp_fn(loss_fn, params)(direction)

    def unchunked(p):  # a Python sum over the policy's groups of examples: no scan, no custom_vjp
        variables = {"params": p, "batch_stats": stats}
        total = sum(
            jnp.sum(
                cross_entropy(
                    apply_model(SMALL, variables, scale_pixels(x[a:b]), bn_policy),
                    jnp.asarray(y[a:b]),
                )
            )  # fmt: skip
            for a, b in UNCHUNKED[bn_policy]
        )
        return total / len(y)

    expected = jax.jit(lambda p, v: jax.jvp(jax.grad(unchunked), (p,), (v,))[1])(params, direction)
    got, want = ravel_pytree(hv)[0], ravel_pytree(expected)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))


# --------------------------------------------------------------------------------------------
# Argument errors
# --------------------------------------------------------------------------------------------


def test_argument_errors_name_the_argument():
    loss = quadratic(diagonal())
    p = point()
    cases = [
        (lambda: top_eigenvalues(loss, p, key=None), "key"),
        (lambda: top_eigenvalues(loss, p, key=key(0), k=0), "k"),
        (lambda: top_eigenvalues(loss, p, key=key(0), k=3, num_matvecs=2), "num_matvecs"),
        (lambda: top_eigenvalues(loss, p, key=key(0), num_matvecs=N + 1), "num_matvecs"),
        (lambda: top_eigenvalues(loss, p, key=key(0), which="top"), "which"),
        (lambda: top_eigenvalues(loss, p, key=key(0), tol=-1.0), "tol"),
        (lambda: hessian_trace(loss, p, key=key(0), method="hutch++"), "method"),
        (lambda: hessian_trace(loss, p, key=key(0), num_samples=1), "num_samples"),
        (lambda: MeasureSettings(trace_method="hutch++"), "trace_method"),
        (lambda: MeasureSettings(eig_tol=-1.0), "eig_tol"),
        (lambda: spectral_density(loss, p, key=key(0), num_probes=0), "num_probes"),
        (lambda: spectral_density(loss, p, key=key(0), num_matvecs=0), "num_matvecs"),
        (lambda: hvp_fn(lambda q: as_vector(q), p), "loss_fn"),
        (lambda: hvp_fn(loss, {"step": jnp.int32(0)}), "floating"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()
    record = SpectralDensity(
        n_params=1, leaf_counts=partition({"x": np.zeros(1)}).counts, param_dtypes=("float32",),
        dtype="float32", num_matvecs=1, seconds=0.0, seconds_compile=0.0, nodes=np.zeros((1, 1)),
        weights=np.ones((1, 1)), num_probes=1, lanczos_steps=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="sigma"):
        record.density([0.0], sigma=0.0)
    with pytest.raises(ValueError, match="k"):
        record.moment(2)  # beyond degree 2m - 1 = 1
