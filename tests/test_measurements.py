"""keskar_repro.store.measurements: cached measurements of runs and snapshots, the shared
subspace."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import SmallData

import keskar_repro.store.measurements as measurements
from keskar_repro.store.measurements import RunSharpness, measurement_dir, run_record, snapshot_of
from keskar_repro.store.runs import get_or_train, run_dir
from keskar_repro.training.protocol import with_seeds


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    """SB and LB tiny runs of seed 3, with snapshots after epochs 0 and 1."""
    from keskar_repro.training.train import TrainConfig

    root = tmp_path_factory.mktemp("runs")
    base = TrainConfig(dataset="mnist10k", batch_size=100, epochs=2, hidden=(32, 32), seed=3)
    configs = [base, dataclasses.replace(base, batch_size=500)]
    runs = get_or_train(configs, small_data, root=root, progress=False, snapshot_epochs=[0, 1])
    return root, runs


def test_sb_and_lb_of_a_seed_are_measured_in_one_subspace(trained, small_data, monkeypatch):
    root, runs = trained
    keys = []

    def recording(loss_fn, params, epsilon, **kwargs):
        keys.append(np.asarray(jax.random.key_data(kwargs["key"])))
        raise StopIteration  # the key is all this test needs

    monkeypatch.setattr(measurements, "sharpness", recording)
    for run in runs:
        with pytest.raises(StopIteration):
            RunSharpness(run, small_data, root).measure(1e-3, subspace_dim=5)
    other = runs[0]._replace(config=dataclasses.replace(runs[0].config, seed=4))
    with pytest.raises(StopIteration):
        RunSharpness(other, small_data, root).measure(1e-3, subspace_dim=5)
    np.testing.assert_array_equal(keys[0], keys[1])  # SB and LB of seed 3
    assert not np.array_equal(keys[0], keys[2])  # another seed, another subspace


def test_snapshots_are_typed_and_measured_in_their_own_folder(trained, small_data):
    root, (sb, _) = trained
    assert snapshot_of(sb, sb.epochs_run, root) is sb
    first = snapshot_of(sb, 1, root)
    assert first.snapshot and first.epochs_run == 1 and len(first.history["train_loss"]) == 1
    assert not sb.snapshot
    assert measurement_dir(first, root) == run_dir(sb.config, root) / "snapshots" / "epoch-0001"
    record = run_record(first, small_data, [1e-3], root=root)
    assert record["epoch"] == 1 and record["sharpness"]["0.001"] > 0
    assert list((measurement_dir(first, root) / "measurements").glob("sharpness-*.json"))
    # the snapshot is not the final run: its own training loss, measured again
    assert record["train_loss"] != run_record(sb, small_data, [1e-3], root=root)["train_loss"]


def test_an_epsilon_free_notion_is_measured_once_per_point(trained, small_data):
    from keskar_repro.measures.curvature import top_eigenvalues
    from keskar_repro.store.measurements import notion_measurement, training_objective

    root, (sb, _) = trained
    first = notion_measurement(sb, small_data, "hessian_max", 1e-3, samples=4, root=root)
    again = notion_measurement(sb, small_data, "hessian_max", 5e-4, samples=4, root=root)
    assert again == first  # read back: one cached file for both epsilons
    folder = measurement_dir(sb, root) / "measurements"
    assert len([p for p in folder.glob("notion-*.json") if "hessian_max" in p.read_text()]) == 1
    assert first["report"]["k"] == 1 and first["stderr"] == 0.0
    direct = top_eigenvalues(training_objective(sb, small_data), sb.params, key=jax.random.key(9),
                             k=1, tol=1e-3)  # fmt: skip
    np.testing.assert_allclose(first["value"], direct.eigenvalues[0], rtol=1e-2)
    metric = [notion_measurement(sb, small_data, "metric_2_1", e, samples=4, root=root)
              for e in (1e-3, 5e-4)]  # fmt: skip
    assert metric[0]["value"] != metric[1]["value"]  # an epsilon notion: one entry per epsilon


@pytest.mark.exhaustive  # 30 s of the suite's 5 minutes: `pytest -m exhaustive` runs it
def test_large_batch_f1_minimizer_is_sharper_than_small_batch_one(tmp_path):
    """Integration: F1 trained on 1,000 mnist10k images from one initial point with batch 20
    (20 epochs) and batch 500 (60 epochs: training loss 2e-4); the LB minimizer is sharper
    (Metric 2.1, full space, eps 1e-3, training objective with the "batch" BN policy). Measured
    here (glorot_uniform init): SB 57, LB 266.
    One seed's example, not a statistical claim: experiments/fig_sharpness.py makes that."""
    from keskar_repro.data import load
    from keskar_repro.training.train import TrainConfig

    data = load("mnist10k")
    small = SmallData(
        data.name, data.x_train[:1000], data.y_train[:1000], data.x_test[:500], data.y_test[:500],
        data.provenance,
    )  # fmt: skip
    values = {}
    for batch, epochs in ((20, 20), (500, 60)):
        config = TrainConfig(dataset="mnist10k", batch_size=batch, epochs=epochs, seed=0)
        (run,) = get_or_train(with_seeds(config, [0]), small, root=tmp_path, progress=False)
        values[batch] = RunSharpness(run, small, tmp_path).measure(1e-3, method="lbfgsb")["value"]
    assert values[500] > 2 * values[20] > 0
