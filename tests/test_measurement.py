"""keskar_repro.measures: the one entry point `measure`, the notion registry and the settings,
checked against exact answers (every registered notion has one here), plus the vocabulary shared
by the notions (keys, solver options, the data argument, JSON records)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.measures import (
    NOTIONS,
    MeasureSettings,
    SolverOptions,
    labels,
    measure,
    register,
)
from keskar_repro.measures.curvature import hessian_trace, top_eigenvalues
from keskar_repro.measures.notions import average_sharpness
from keskar_repro.measures.subspace import pinv_coefficients, random_subspace
from keskar_repro.sharpness import sharpness

X = np.array([0.5, -1.0, 2.0, -0.25, 1.5, 0.0], np.float64)
G = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.25])
H = np.array([4.0, 1.0, 0.5, 2.0, 3.0, 0.25])  # a diagonal Hessian
EPS = 1e-2


def linear(p):  # f = 1 + g . theta: the worst case is the box's corner sign(g) h
    return 1.0 + jnp.dot(G, p["theta"])


def quadratic(p):  # f = 1 + sum h theta^2 / 2: H = diag(h)
    return 1.0 + 0.5 * jnp.sum(H * p["theta"] ** 2)


def percent(rise, f0):
    return 100.0 * rise / (1.0 + f0)


def notion_key(name):
    return jax.random.fold_in(jax.random.key(0), list(NOTIONS).index(name))


def subspace_expected():
    a = np.asarray(random_subspace(notion_key("metric_2_1_subspace"), 6, 3, dtype=jnp.float64))
    half = EPS * (np.abs(pinv_coefficients(X, a)) + 1.0)
    return percent(np.sum(np.abs(a.T @ G) * half), 1.0 + G @ X)


# name -> (loss, exact value, relative tolerance); the average-case rows are checked within
# 4 standard errors instead (Monte Carlo), their "tolerance" is None.
KNOWN = {
    "metric_2_1": (linear, lambda: percent(np.sum(np.abs(G) * EPS * (np.abs(X) + 1)), 1 + G @ X),
                   1e-9),
    "metric_2_1_subspace": (linear, subspace_expected, 1e-9),
    "adaptive": (linear, lambda: percent(np.sum(np.abs(G) * EPS * np.abs(X)), 1 + G @ X), 1e-9),
    "average": (quadratic, lambda: percent(0.5 * np.sum(H * (EPS * (np.abs(X) + 1)) ** 2),
                                           1 + 0.5 * np.sum(H * X**2)), None),
    "average_adaptive": (quadratic, lambda: percent(0.5 * np.sum(H * (EPS * X) ** 2),
                                                    1 + 0.5 * np.sum(H * X**2)), None),
    "hessian_max": (quadratic, lambda: np.max(H), 1e-9),
    "hessian_trace": (quadratic, lambda: np.sum(H), 1e-12),
}  # fmt: skip


def test_every_registered_notion_has_a_known_answer_here():
    assert set(KNOWN) == set(NOTIONS)


@pytest.mark.parametrize("name", list(KNOWN))
def test_each_notion_against_its_exact_answer(x64, name):
    loss, exact, tol = KNOWN[name]
    settings = MeasureSettings(EPS, subspace_dim=3, samples=64, num_matvecs=6, top_k=2)
    m = measure(loss, {"theta": X}, [name], key=0, settings=settings)
    v = m[name]
    if tol is None:
        assert abs(v.value - exact()) <= 4 * v.stderr and v.stderr > 0
    else:
        assert v.value == pytest.approx(exact(), rel=tol)
    assert json.loads(m.to_json())["values"][name]["value"] == v.value


def test_labels_and_descriptions_come_from_the_registry():
    assert labels(["metric_2_1", "adaptive"]) == {
        "metric_2_1": "Metric 2.1",
        "adaptive": "adaptive worst case",
    }
    assert all(n.description and n.label for n in NOTIONS.values())
    with pytest.raises(ValueError, match="already registered"):
        register("metric_2_1", "x", "y", random=False)(lambda *a: (0.0, 0.0, None))
    with pytest.raises(ValueError, match="unknown notion 'sharp'"):
        measure(linear, {"theta": X}, ["sharp"])


def test_random_notions_need_a_key_and_an_int_seed_is_a_key(x64):
    with pytest.raises(ValueError, match="key is required"):
        measure(quadratic, {"theta": X}, ["average"], epsilon=EPS)
    with pytest.raises(ValueError, match="key must be"):
        measure(quadratic, {"theta": X}, ["average"], key="zero")
    with pytest.raises(ValueError, match="key is required"):
        top_eigenvalues(quadratic, {"theta": X})
    with pytest.raises(ValueError, match="key is required"):
        hessian_trace(quadratic, {"theta": X})
    seed = average_sharpness(quadratic, {"theta": X}, EPS, key=0, samples=8)
    typed = average_sharpness(quadratic, {"theta": X}, EPS, key=jax.random.key(0), samples=8)
    assert seed.value == typed.value and seed.epsilon == EPS


def test_a_notions_draws_do_not_depend_on_the_others_measured_with_it(x64):
    alone = measure(quadratic, {"theta": X}, "average", key=3, samples=8)
    together = measure(quadratic, {"theta": X}, ["hessian_trace", "average"], key=3, samples=8)
    assert alone["average"].value == together["average"].value


def test_data_argument_equals_the_closure_and_compiles_once(x64):
    """loss(params, data) with data= gives the closure's numbers; a second dataset of the same
    shapes reuses the compiled programs (the compiled-function cache does not grow)."""
    from keskar_repro.measures import compiled

    def loss(p, data):
        return 1.0 + jnp.dot(data, p["theta"]) + 0.5 * jnp.sum(H * p["theta"] ** 2)

    compiled.clear_compiled_cache()
    with_data = measure(loss, {"theta": X}, "metric_2_1", data=jnp.asarray(G))
    closure = measure(lambda p: loss(p, jnp.asarray(G)), {"theta": X}, "metric_2_1")
    assert with_data["metric_2_1"].value == closure["metric_2_1"].value
    entries = len(compiled._COMPILED)
    other = measure(loss, {"theta": X}, "metric_2_1", data=jnp.asarray(-G))
    assert len(compiled._COMPILED) == entries and other["metric_2_1"].value > 0


def test_per_layer_measures_each_floating_layer(x64):
    params = {"a": {"w": X[:3]}, "b": {"w": X[3:]}, "step": np.int32(3)}

    def loss(p):
        return 1.0 + jnp.dot(G[:3], p["a"]["w"]) + jnp.dot(G[3:], p["b"]["w"])

    m = measure(loss, params, ["metric_2_1"], per_layer=True, epsilon=EPS)
    assert set(m.layers) == {"a", "b"} and not m.values
    for layer, g, x in (("a", G[:3], X[:3]), ("b", G[3:], X[3:])):
        exact = percent(np.sum(np.abs(g) * EPS * (np.abs(x) + 1)), float(loss(params)))
        assert m.layers[layer]["metric_2_1"].value == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="per_layer"):
        measure(loss, params, "metric_2_1", per_layer=True, mask={"a": True, "b": False})


def test_one_solver_options_everywhere():
    """The same SolverOptions configures every worst-case notion; its fields may be given as
    keywords; impossible combinations fail when the options are made."""
    options = SolverOptions(method="lbfgsb", maxiter=3)
    r = sharpness(linear, {"theta": X.astype(np.float32)}, EPS, solver=options)
    assert r.maxiter == 3 and r.method == "lbfgsb"
    r2 = sharpness(linear, {"theta": X.astype(np.float32)}, EPS, method="lbfgsb", maxiter=3)
    assert r2.value == r.value
    with pytest.raises(ValueError, match="scaling='literal'"):
        SolverOptions(method="pga", scaling="literal")
    with pytest.raises(ValueError, match="maxiter"):
        SolverOptions(maxiter=0)
    with pytest.raises(TypeError, match="'max_iter': did you mean 'maxiter'"):
        options.with_overrides(max_iter=5)
    with pytest.raises(TypeError, match="'eps': did you mean 'epsilon'"):
        sharpness(linear, {"theta": X.astype(np.float32)}, eps=1e-3)
    with pytest.raises(ValueError, match="epsilon"):
        MeasureSettings(epsilon=-1.0)
    s = MeasureSettings(solver=options).to_dict()
    assert s["solver"] == {"method": "lbfgsb", "maxiter": 3, "scaling": "normalized",
                           "driver": "auto", "pga_step": 0.5}  # fmt: skip


def test_registry_and_settings_import_without_jax():
    code = (
        "import sys; from keskar_repro.measures import NOTIONS, MeasureSettings, labels; "
        "MeasureSettings(); labels(); assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
