"""keskar_repro.report.paper: the keys of the paper's numbers and the side-by-side table."""

import re

import numpy as np

from keskar_repro.report.paper import PAPER_F1, comparison_table, sharpness_key
from keskar_repro.training.protocol import EPSILONS


def test_sharpness_keys():
    assert sharpness_key("full", 1e-3) == "sharpness/full/0.001"
    assert sharpness_key("subspace", 5e-4) == "sharpness/subspace/0.0005"
    assert sharpness_key("full", 0.001) == sharpness_key("full", 1e-3)
    # the protocol's epsilons in both spaces are exactly the paper's sharpness entries
    keys = {sharpness_key(space, eps) for space in ("full", "subspace") for eps in EPSILONS}
    assert keys == {k for k in PAPER_F1 if k.startswith("sharpness/")}


def cells(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


def test_comparison_table_puts_ours_beside_the_papers():
    rows = [
        {"quantity": "test accuracy (%)", "key": "test_accuracy",
         "SB": (98.1234, 0.0567), "LB": (97.5, 0.1)},
        {"quantity": "sharpness 1e-3", "key": sharpness_key("full", 1e-3), "SB": (1.5, 0.25)},
        {"quantity": "ours only", "key": None, "SB": (1.0, 0.5), "LB": (2.0, 0.0)},
    ]  # fmt: skip
    table = comparison_table(rows, title="Table 2 and 3", digits=3).splitlines()
    assert table[0] == "Table 2 and 3"
    assert cells(table[1]) == ["quantity", "ours SB", "ours LB", "paper SB", "paper LB"]
    assert set(table[2].replace(" ", "")) == {"-"}
    # ours with `digits`, the paper's as printed (2 decimals); "-" where there is no number
    assert cells(table[3]) == [
        "test accuracy (%)", "98.123 +- 0.057", "97.500 +- 0.100", "98.03 +- 0.07", "97.81 +- 0.07"
    ]  # fmt: skip
    assert cells(table[4]) == ["sharpness 1e-3", "1.500 +- 0.250", "-", "1.23 +- 0.83",
                               "205.14 +- 69.52"]  # fmt: skip
    assert cells(table[5]) == ["ours only", "1.000 +- 0.500", "2.000 +- 0.000", "-", "-"]
    assert len(table) == 6
    # the columns line up: each starts where its header does
    for column in ("ours SB", "paper SB", "paper LB"):
        start = table[1].index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in table[3:])
    default = comparison_table(rows[:1], title="t").splitlines()
    assert cells(default[3])[1:3] == ["98.12 +- 0.06", "97.50 +- 0.10"]  # digits=2


def test_population_std_of_the_paper_in_our_sample_convention():
    import math

    from keskar_repro.report.paper import population_to_sample_std, std_convention_note

    values = [1.0, 2.0, 4.0, 7.0, 11.0]
    population = float(np.std(values, ddof=0))
    assert math.isclose(population_to_sample_std(population), float(np.std(values, ddof=1)))
    assert math.isclose(population_to_sample_std(1.0, 2), math.sqrt(2))
    assert "205.14 +- 69.52 -> +- 77.73" in std_convention_note()
