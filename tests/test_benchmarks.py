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
