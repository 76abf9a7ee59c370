"""Parameter counts of the Table 1 models beside the paper's and torchdiffeq's.

Usage::

    python -m experiments.mnist.parameters [--model NAME]

The counts of :mod:`experiments.mnist.models` equal torchdiffeq's ``odenet_mnist.py`` exactly (see
that module's docstring for the paper's 0.60M / 0.22M and which variant they fit).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from experiments.cli import run_command
from experiments.mnist.protocol import MODEL_NAMES

PAPER_PARAMS = {"mlp": 0.24e6, "resnet": 0.60e6, "rknet": 0.22e6, "odenet": 0.22e6}
"""Parameter counts printed in Table 1 of Chen et al. (2018)."""

TORCHDIFFEQ_PARAMS = {"mlp": None, "resnet": 576_778, "rknet": 208_266, "odenet": 208_266}
"""Exact counts of torchdiffeq's ``odenet_mnist.py`` (RK-Net shares the ODE-Net model)."""


def parameter_table(names: Sequence[str] = MODEL_NAMES) -> str:
    """Markdown table of this implementation's parameter counts beside the references.

    Parameters
    ----------
    names : sequence of str
        Models to build and count.

    Returns
    -------
    str
    """
    lines = [
        "| model | this implementation | torchdiffeq odenet_mnist.py | paper (Table 1) |",
        "|---|---|---|---|",
    ]
    from experiments.mnist.models import build_model, count_parameters

    for name in names:
        ours = count_parameters(build_model(name, seed=0))
        ref = TORCHDIFFEQ_PARAMS[name]
        ref_text = f"{ref:,} ({ref / 1e6:.3f}M)" if ref else "-"
        lines.append(f"| {name} | {ours:,} ({ours / 1e6:.3f}M) | {ref_text} | {PAPER_PARAMS[name] / 1e6:.2f}M |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the parameter-count table."""
    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.parameters",
                                     description="Parameter counts of the Table 1 models")
    parser.add_argument("--model", choices=[*MODEL_NAMES, "all"], default="all", help="model to count (default: all)")
    args = parser.parse_args(argv)
    print(parameter_table(MODEL_NAMES if args.model == "all" else (args.model,)))


if __name__ == "__main__":
    run_command(__spec__.name, main)
