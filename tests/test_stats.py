"""keskar_repro.stats: mean +- sample std, per-epoch curves over seeds, and the SB - LB gap test,
on small examples whose values are written out."""

import math

import pytest

from keskar_repro.stats import gap_test, mean_std, mean_std_curves, record_stats


def test_mean_std_is_the_sample_std():
    # deviations -1.5, -0.5, 0.5, 1.5: squares sum to 5, over n - 1 = 3
    mean, std = mean_std([1, 2, 3, 4])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([7.5]) == (7.5, 0.0)
    assert mean_std((2.0, 2.0, 2.0)) == (2.0, 0.0)


def test_curves_cover_the_epochs_every_run_reached():
    histories = [
        {"loss": [1.0, 2.0, 3.0], "acc": [0.1, 0.2, 0.3]},
        {"loss": [3.0, 4.0], "acc": [0.3, 0.6]},
    ]
    curves = mean_std_curves(histories, ("loss", "acc"))
    assert sorted(curves) == ["acc_mean", "acc_std", "epoch", "loss_mean", "loss_std"]
    assert curves["epoch"] == [1, 2]
    assert curves["loss_mean"] == [2.0, 3.0]
    assert curves["loss_std"] == pytest.approx([math.sqrt(2), math.sqrt(2)])
    assert curves["acc_mean"] == pytest.approx([0.2, 0.4])
    assert curves["acc_std"] == pytest.approx([math.sqrt(0.02), math.sqrt(0.08)])
    one = mean_std_curves(histories[:1], ("loss",))
    assert one == {"epoch": [1, 2, 3], "loss_mean": [1.0, 2.0, 3.0], "loss_std": [0.0, 0.0, 0.0]}


def test_record_stats_of_a_field_and_of_a_sharpness():
    records = [
        {"test_accuracy": 0.98, "sharpness": {"0.001": 2.0, "0.0005": 1.0}},
        {"test_accuracy": 0.96, "sharpness": {"0.001": 4.0, "0.0005": 1.0}},
    ]
    s = record_stats(records, "sharpness/0.001")
    assert s["n"] == 2 and s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(2))
    assert record_stats(records, "sharpness/0.0005") == {"mean": 1.0, "std": 0.0, "n": 2}
    acc = record_stats(records, "test_accuracy", scale=100)  # in %
    assert acc["mean"] == pytest.approx(97.0) and acc["std"] == pytest.approx(math.sqrt(2))
    assert record_stats(records[:1], "test_accuracy") == {"mean": 0.98, "std": 0.0, "n": 1}


def test_gap_test_on_a_clear_and_on_an_unclear_gap():
    # SB 1, 3: mean 2, std sqrt(2); LB 10, 14: mean 12, std sqrt(8); the standard error of the
    # difference is sqrt(2/2 + 8/2) = sqrt(5) = 2.236, and |2 - 12| = 10 > 2 sqrt(5) = 4.47
    clear = gap_test({0: 1.0, 1: 3.0}, {0: 10.0, 1: 14.0})
    assert clear["sb_minus_lb"] == -10.0
    assert clear["standard_error"] == pytest.approx(math.sqrt(5))
    mean, std = clear["paired_mean_std"]  # per-seed differences -9, -11
    assert mean == -10.0 and std == pytest.approx(math.sqrt(2))
    assert clear["exceeds_spread"] is True
    assert "2 * sqrt" in clear["rule"]
    # SB 1, 3 vs LB 2, 4: difference -1, standard error sqrt(1 + 1) = 1.41, so the margin is
    # 2.83 > 1; the paired differences are exactly -1 each (std 0), but the rule is unpaired
    unclear = gap_test({0: 1.0, 1: 3.0}, {0: 2.0, 1: 4.0})
    assert unclear["sb_minus_lb"] == -1.0
    assert unclear["standard_error"] == pytest.approx(math.sqrt(2))
    assert unclear["paired_mean_std"] == (-1.0, 0.0)
    assert unclear["exceeds_spread"] is False
    # the per-seed pairing follows the seeds, not the order of the dicts
    assert gap_test({0: 1.0, 1: 3.0}, {1: 4.0, 0: 2.0})["paired_mean_std"] == (-1.0, 0.0)
    # one seed has no spread to compare with: never "exceeds", however large the difference
    single = gap_test({0: 1.0}, {0: 100.0})
    assert single["sb_minus_lb"] == -99.0 and single["standard_error"] == 0.0
    assert single["exceeds_spread"] is False
