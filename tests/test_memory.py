import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.devices.memory import (
    available_bytes,
    budget_bytes,
    largest_fitting,
    program_bytes,
)
from keskar_repro.training import interpolation
from keskar_repro.training.models import MLP, init_variables


def test_largest_fitting_is_exact_for_linear_memory():
    calls = []

    def linear(k):
        calls.append(k)
        return 100 + 30 * k

    assert largest_fitting(linear, most=25, budget=250) == 5  # 100 + 30 * 5 = 250
    assert calls == [1, 2, 5, 6]  # 6 confirms the boundary
    assert largest_fitting(linear, most=3, budget=250) == 3
    assert largest_fitting(linear, most=1, budget=250) == 1
    assert largest_fitting(linear, most=25, budget=130) == 1


@pytest.mark.parametrize("budget", [260, 420, 1000, 5000])
def test_largest_fitting_finds_the_boundary_of_nonlinear_memory(budget):
    def quadratic(k):
        return 100 + 10 * k * k  # 110, 140: the secant from k = 1, 2 overshoots

    def concave(k):
        return 100 + 150 * min(k, 2) + 100 * max(k - 2, 0)  # a jump from 1 to 2, as in XLA

    for bytes_at in (quadratic, concave):
        k = largest_fitting(bytes_at, most=25, budget=budget)
        assert bytes_at(k) <= budget
        assert k == 25 or bytes_at(k + 1) > budget


def test_work_that_does_not_fit_is_refused_with_the_sizes():
    message = r"the path evaluation needs 0.00 GB at its smallest but 0.00 GB are free"
    with pytest.raises(MemoryError, match=message):
        largest_fitting(lambda k: 200 * k, most=5, budget=100, what="the path evaluation")
    with pytest.raises(ValueError, match="fraction=0"):
        budget_bytes(0)
    model = MLP(hidden=(4,))
    v = init_variables(model, jax.random.key(0))
    split = {"train": (np.zeros((4, 28, 28), np.uint8), np.zeros(4))}
    with pytest.raises(ValueError, match="fraction=1.5"):  # refused on a CPU too, before any work
        interpolation.evaluate_path(model, v, v, [0.0], split, memory_fraction=1.5)


def test_program_bytes_counts_arguments_outputs_and_temporaries():
    a = jnp.ones((100, 100), jnp.float32)
    compiled = jax.jit(lambda u: u @ u + 1).lower(a).compile()
    stats = compiled.memory_analysis()
    assert program_bytes(compiled) >= 2 * 100 * 100 * 4  # one argument, one output
    assert program_bytes(compiled) == (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    assert available_bytes() > 0


def test_path_alpha_batch_fits_the_budget(monkeypatch):
    model = MLP(hidden=(16, 16))
    a, b = (init_variables(model, jax.random.key(s)) for s in (0, 1))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    splits = {"train": (x, rng.integers(0, 10, size=40))}
    alphas = np.linspace(-1, 2, 9)

    def bytes_at(batch):
        evaluate = interpolation._compiled_path_evaluation(model, "batch", 8, batch)
        weights = interpolation.path_weights(alphas, "linear")
        data = {"train": (jnp.asarray(x), jnp.asarray(splits["train"][1], jnp.int32))}
        return program_bytes(evaluate.lower(a, b, weights, data).compile())

    one, two, three, four = (bytes_at(k) for k in (1, 2, 3, 4))
    assert one < two < three < four
    monkeypatch.setattr(interpolation, "budget_bytes", lambda fraction: three)
    monkeypatch.setattr(interpolation.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(interpolation, "_ALPHA_BATCHES", {})
    chosen = interpolation.evaluate_path(model, a, b, alphas, splits, chunk_size=8)
    assert list(interpolation._ALPHA_BATCHES.values()) == [3]
    monkeypatch.undo()
    one_at_a_time = interpolation.evaluate_path(model, a, b, alphas, splits, chunk_size=8)
    for name in ("train_loss", "train_accuracy"):
        np.testing.assert_allclose(chosen[name], one_at_a_time[name], rtol=1e-6)
