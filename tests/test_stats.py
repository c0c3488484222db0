"""keskar_repro.report.stats: mean +- sample std, per-epoch curves over seeds, and the SB - LB gap
test, on small examples whose values are written out."""

import math

import numpy as np
import pytest

from keskar_repro.report.stats import (
    gap_test,
    kendall_tau,
    mean_std,
    mean_std_curves,
    record_stats,
    stats_text,
    tau_b_of_resamples,
)


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


def test_stats_text_gives_the_spread_only_where_there_is_one():
    two = record_stats([{"acc": 0.9612}, {"acc": 0.9688}], "acc")  # mean 0.965, std 0.00537
    assert stats_text(two, ".2f", 100) == "96.50 +- 0.54"
    assert stats_text(two, ".3g", std_spec=".1g") == "0.965 +- 0.005"
    one = record_stats([{"acc": 0.9620}], "acc")
    assert stats_text(one, ".2f", 100) == "96.20"  # one run: no "+- 0.00"


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


def test_gap_test_refuses_unpaired_seeds():
    with pytest.raises(ValueError, match=r"SB has \[0, 1\], LB has \[0, 2\]"):
        gap_test({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})


def test_kendall_tau_of_known_orders():
    # pairs (1,2) (1,3) (1,4) (2,4) (3,4) concordant, (2,3) discordant: (5 - 1) / 6
    r = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4], n_boot=200)
    assert r["tau"] == pytest.approx(2 / 3) and r["n"] == 4
    assert -1 <= r["low"] <= r["tau"] <= r["high"] <= 1
    # a monotone relation: tau 1 in every resample that has one
    up = kendall_tau([0.1, 0.5, 2.0, 9.0, 10.0], [3, 4, 8, 9, 20], n_boot=300)
    assert (up["tau"], up["low"], up["high"]) == pytest.approx((1.0, 1.0, 1.0))
    assert 0 <= up["n_boot_undefined"] < 300
    down = kendall_tau([1, 2, 3], [3, 2, 1], n_boot=10)
    assert down["tau"] == pytest.approx(-1.0)
    # ties in x (tau-b): x = [1, 1, 2], y = [1, 2, 3]: C = 2, D = 0, n0 = 3, n1 = 1, n2 = 0
    assert kendall_tau([1, 1, 2], [1, 2, 3], n_boot=10)["tau"] == pytest.approx(2 / np.sqrt(6))


def test_tau_b_of_resamples_is_scipys_bit_for_bit():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=12), 1)  # ties in x
    y = np.r_[rng.integers(0, 4, 11), np.inf]  # ties in y, an infinity
    picks = np.r_[rng.integers(0, 12, (300, 12)), np.zeros((1, 12), int)]  # the last: all tied
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.array([kendalltau(x[i], y[i])[0] for i in picks])
    got = tau_b_of_resamples(x, y, picks)
    assert np.isnan(got[-1]) and np.isnan(expected[-1])
    assert got[:-1].tolist() == expected[:-1].tolist()  # equal floats, not only close
    with_nan = tau_b_of_resamples(np.r_[np.nan, x[1:]], y, picks[:3])
    assert np.isnan(with_nan).tolist() == [bool((p == 0).any()) for p in picks[:3]]


def test_kendall_tau_bootstrap_is_reproducible_and_covers_independent_noise():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(40), rng.standard_normal(40)
    a, b = kendall_tau(x, y, seed=1), kendall_tau(x, y, seed=1)
    assert a == b
    assert a["low"] < 0 < a["high"]  # independent samples: 0 inside the interval
    tied = kendall_tau([1, 1, 1], [1, 2, 3], n_boot=10)
    assert tied["tau"] is None and tied["low"] is None and tied["n_boot_undefined"] == 10
    with pytest.raises(ValueError, match="equal-length"):
        kendall_tau([1, 2], [1, 2, 3])
