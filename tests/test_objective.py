import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from keskar_repro.training.models import MLP, init_variables
from keskar_repro.training.objective import (
    data_loss_fn,
    make_loss_fn,
    objective_data,
    scale_pixels,
    split_loss_and_grad,
    split_metrics,
)

MODEL = MLP(hidden=(16, 16))


@pytest.fixture(scope="module")
def setup(request):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(23, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=23).astype(np.int32)
    variables = init_variables(MODEL, jax.random.key(0))
    # non-trivial running averages, so that "running" differs from batch statistics
    stats = jax.tree_util.tree_map(lambda a: a + 0.3, variables["batch_stats"])
    return variables["params"], stats, x, y


def reference(params, stats, x, y, train_mode):
    variables = {"params": params, "batch_stats": stats}
    if train_mode:
        logits, _ = MODEL.apply(
            variables, scale_pixels(x), use_running_average=False, mutable=["batch_stats"]
        )
    else:
        logits = MODEL.apply(variables, scale_pixels(x), use_running_average=True)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return np.asarray(losses), np.asarray(jnp.argmax(logits, -1) == y)


def test_running_policy_does_not_depend_on_chunks(setup):
    params, stats, x, y = setup
    losses, correct = reference(params, stats, x, y, train_mode=False)
    for chunk in (1, 5, 23, 100):
        loss, acc = split_metrics(MODEL, params, stats, x, y, bn_policy="running", chunk_size=chunk)
        np.testing.assert_allclose(loss, losses.mean(), rtol=1e-5)
        np.testing.assert_allclose(acc, correct.mean())


def test_full_policy_uses_statistics_of_the_whole_split(setup):
    params, stats, x, y = setup
    losses, _ = reference(params, stats, x, y, train_mode=True)
    loss, _ = split_metrics(MODEL, params, stats, x, y, bn_policy="full", chunk_size=5)
    np.testing.assert_allclose(loss, losses.mean(), rtol=1e-5)


def test_batch_policy_normalises_each_fixed_chunk_and_the_remainder(setup):
    params, stats, x, y = setup
    chunk = 10  # chunks [0:10], [10:20] and the remainder [20:23]
    pieces = [
        reference(params, stats, x[a:b], y[a:b], True)[0] for a, b in ((0, 10), (10, 20), (20, 23))
    ]
    expected = np.concatenate(pieces).mean()
    loss, _ = split_metrics(MODEL, params, stats, x, y, bn_policy="batch", chunk_size=chunk)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    running, _ = split_metrics(MODEL, params, stats, x, y, bn_policy="running")
    assert abs(float(running) - float(loss)) > 1e-3  # the policies really differ


def test_loss_fn_gradient_matches_finite_differences(setup):
    params, stats, x, y = setup
    loss_fn = make_loss_fn(MODEL, stats, x, y, bn_policy="batch", chunk_size=10)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    grad = jax.flatten_util.ravel_pytree(jax.grad(loss_fn)(params))[0]
    # half along the gradient, half random: a directional derivative large against float32
    # rounding of f (~1e-7 f / h) that still tests every component; h small enough that the
    # central difference's truncation error (~h^2 times the third derivative) is negligible
    random = jax.random.normal(jax.random.key(1), flat.shape)
    direction = grad / jnp.linalg.norm(grad) + random / jnp.linalg.norm(random)
    direction = direction / jnp.linalg.norm(direction)
    h = 1e-3
    numeric = (loss_fn(unravel(flat + h * direction)) - loss_fn(unravel(flat - h * direction))) / (
        2 * h
    )
    analytic = jnp.vdot(grad, direction)
    np.testing.assert_allclose(numeric, analytic, rtol=1e-2)


def test_unknown_policy_is_rejected(setup):
    params, stats, x, y = setup
    with pytest.raises(ValueError, match="bn_policy"):
        make_loss_fn(MODEL, stats, x, y, bn_policy="eval")


@pytest.mark.parametrize("bn_policy", ["batch", "full", "running"])
def test_chunkwise_gradient_equals_the_gradient_of_the_whole_split(setup, bn_policy):
    params, stats, x, y = setup
    options = {"bn_policy": bn_policy, "chunk_size": 10}  # chunks of 10, 10 and a remainder of 3

    def whole_split_loss(p):
        return split_metrics(MODEL, p, stats, x, y, **options)[0]

    expected_loss, expected_grad = jax.value_and_grad(whole_split_loss)(params)
    loss, grad = split_loss_and_grad(MODEL, params, stats, x, y, **options)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    loss_fn_loss, loss_fn_grad = jax.value_and_grad(make_loss_fn(MODEL, stats, x, y, **options))(
        params
    )
    np.testing.assert_allclose(loss_fn_loss, expected_loss, rtol=1e-6)
    scaled = jax.grad(lambda p: 3.0 * make_loss_fn(MODEL, stats, x, y, **options)(p))(params)
    flat = [jax.flatten_util.ravel_pytree(g)[0] for g in (expected_grad, grad, loss_fn_grad)]
    assert float(jnp.max(jnp.abs(flat[0]))) > 1e-3  # a gradient that can disagree
    close = {"rtol": 1e-4, "atol": 3e-6}  # atol: the inert pre-BN biases' rounding noise
    np.testing.assert_allclose(flat[1], flat[0], **close)
    np.testing.assert_allclose(flat[2], flat[0], **close)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(scaled)[0], 3 * flat[0], **close)


@pytest.mark.parametrize("bn_policy", ["batch", "full", "running"])
def test_data_argument_objective_equals_the_closure_bit_for_bit(setup, bn_policy):
    """data_loss_fn(model)(params, objective_data(...)) is make_loss_fn's objective with the data
    as an argument: the same value, the same gradient up to float rounding on this 16-unit MLP
    (XLA compiles a small dot with a constant operand and with an argument differently; on F1
    the two are equal bit for bit, see the next test), no derivative for the data, and one
    function per model, policy and chunk."""
    params, stats, x, y = setup
    options = {"bn_policy": bn_policy, "chunk_size": 10}
    closure = make_loss_fn(MODEL, stats, x, y, **options)
    loss = data_loss_fn(MODEL, **options)
    assert data_loss_fn(MODEL, **options) is loss
    data = objective_data(stats, x, y)
    expected = jax.jit(jax.value_and_grad(closure))(params)
    got = jax.jit(jax.value_and_grad(loss))(params, data)
    assert expected[0] == got[0]
    for a, b in zip(*map(jax.tree_util.tree_leaves, (expected[1], got[1])), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    if bn_policy == "running":  # forward over reverse, as the curvature estimators use it
        hvp = jax.jvp(jax.grad(lambda p: loss(p, data)), (params,), (params,))[1]
        hvp_closure = jax.jvp(jax.grad(closure), (params,), (params,))[1]
        for a, b in zip(*map(jax.tree_util.tree_leaves, (hvp, hvp_closure)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_data_argument_objective_is_the_closure_bit_for_bit_on_f1(mnist10k):
    """On F1 and real images (600, chunks of 250 and a remainder), the compiled value and
    gradient with the data as an argument equal the closure's bit for bit: what lets the run
    store measure through one compiled objective without changing a result."""
    from keskar_repro.training.models import f1

    model = f1()
    variables = init_variables(model, jax.random.key(0))
    x, y = mnist10k.x_train[:600], mnist10k.y_train[:600]
    closure = make_loss_fn(model, variables["batch_stats"], x, y, chunk_size=250)
    data = objective_data(variables["batch_stats"], x, y)
    expected = jax.jit(jax.value_and_grad(closure))(variables["params"])
    got = jax.jit(jax.value_and_grad(data_loss_fn(model, chunk_size=250)))(
        variables["params"], data
    )
    for a, b in zip(*map(jax.tree_util.tree_leaves, (expected, got)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_chunk_size_is_refused(setup):
    params, stats, x, y = setup
    with pytest.raises(ValueError, match="chunk_size=0"):
        split_metrics(MODEL, params, stats, x, y, chunk_size=0)


@pytest.mark.parametrize("margin", [0, 1, 2, 5, 10, 15, 16, 17, 20, 25, 30, 35, 40])
def test_cross_entropy_keeps_relative_precision_at_every_margin(margin):
    """Against float64 log(1 + sum_{j != y} exp(z_j - z_y)): relative error below 1e-6 at
    logit margins 0 to 40 (optax's float32 logsumexp(z) - z_y is exactly 0 from a margin of
    17 on), for the right and for a wrong label."""
    from keskar_repro.training.objective import cross_entropy

    rng = np.random.default_rng(margin)
    z = (0.5 * rng.standard_normal((4, 10))).astype(np.float32)
    y = np.array([3, 0, 9, 5])
    z[np.arange(4), y] = z.max(axis=1) + margin
    z64 = z.astype(np.float64)
    d = z64 - z64[np.arange(4), y][:, None]
    d[np.arange(4), y] = -np.inf
    exact = np.log1p(np.exp(d).sum(axis=1))
    ours = np.asarray(cross_entropy(jnp.asarray(z), jnp.asarray(y)), np.float64)
    np.testing.assert_allclose(ours, exact, rtol=1e-6, atol=0)
    wrong = np.asarray(cross_entropy(jnp.asarray(z), jnp.asarray((y + 1) % 10)), np.float64)
    assert np.all(np.isfinite(wrong)) and np.all(wrong >= margin - 1e-3)


def test_cross_entropy_gradient_is_the_softmax_minus_the_label():
    from keskar_repro.training.objective import cross_entropy

    z = jnp.asarray([[0.0, 20.0, -3.0, 1.0]])
    g = np.asarray(jax.grad(lambda v: cross_entropy(v, jnp.asarray([1]))[0])(z), np.float64)
    p = np.exp(np.asarray(z[0], np.float64))
    p /= p.sum()
    expected = p - np.eye(4)[1]
    np.testing.assert_allclose(g[0], expected, rtol=1e-5, atol=0)  # relative, even at 1e-9
