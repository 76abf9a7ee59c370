"""The parameter-count table of experiments.mnist.parameters."""

from __future__ import annotations

from experiments.mnist.parameters import parameter_table


def test_parameter_table_lists_references() -> None:
    table = parameter_table(("mlp", "resnet"))
    assert "576,778" in table and "0.60M" in table and "238,510" in table
