"""The README quotes the paper systems' results from the committed JSON files, not by hand."""

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_table2_rows_come_from_the_committed_json():
    """Table 2 is the protocol-4 run's (``experiments/results/latent_ode``), each row the mean over its finished seeds."""
    table = json.loads((ROOT / "experiments/results/latent_ode/table2.json").read_text())
    readme = _readme()
    for n in ("30", "50", "100"):
        rnn, ode = np.mean(table["rnn"][n]), np.mean(table["latent_ode"][n])
        assert f"| {n}/100 | {rnn:.3f} / " in readme and f" | {ode:.3f} / " in readme, n


def test_figure4_cells_come_from_the_committed_json():
    figure = json.loads((ROOT / "experiments/results/cnf/figure4.json").read_text())
    readme = _readme()
    for target in ("U1", "U2", "U3"):
        for size, cell in figure[target].items():
            if size == "per_seed" or not isinstance(cell, dict):
                continue
            for model in ("nf", "cnf"):
                if model in cell:
                    assert f"{cell[model]:.3f}" in readme, (target, size, model)
