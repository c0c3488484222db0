"""benchmarks/: one option name per setting, as in the figure scripts (--dataset), with the older
--data spelling of committed commands still accepted."""

import argparse

import pytest

from benchmarks.common import add_dataset_option


@pytest.mark.parametrize("flag", ["--dataset", "--data"])
def test_dataset_option_has_one_name_and_keeps_the_old_spelling(flag):
    parser = argparse.ArgumentParser()
    add_dataset_option(parser)
    assert vars(parser.parse_args([flag, "random"])) == {"dataset": "random"}
    assert parser.parse_args([]).dataset == "fashion_mnist"


@pytest.mark.parametrize("batch", [256, 6000])
def test_the_gemms_of_a_step_are_its_flops(batch):
    """The real bound's products (benchmarks/gemm_bound.py) add up to the FLOPs of one step."""
    from benchmarks.gemm_bound import f1_step_gemms, step_flops
    from keskar_repro.training.models import f1, train_step_flops_per_example

    gemms = f1_step_gemms(batch)
    assert step_flops(gemms) == batch * train_step_flops_per_example(f1())
    assert sum(c for *_, t, c in gemms if t == "b") == 5  # no input gradient for the images
