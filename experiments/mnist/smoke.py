"""End-to-end smoke run: all four models, the memory sweep, ``table1.md`` and ``figure3.png``.

Usage::

    python -m experiments.mnist.smoke [--data-dir D] [--download] [--out runs/smoke] [--fresh]

Trains MLP, ResNet, RK-Net and ODE-Net for one epoch of 8 batches (1,024 MNIST images; see
``--smoke`` in :mod:`experiments.mnist.table1`), measures memory/time at two depths per model with
batch 32, writes ``OUT/table1.md``, then Figure 3 from the ODE-Net run on 32 test images
and 4 tolerances (reference 1e-6) (``OUT/odenet/figure3.png``); both say that they come from a
smoke run.  Its measured duration is in the README (the main job).  Existing
checkpoints in ``OUT`` are resumed (a finished run is not retrained); pass ``--fresh`` to
delete ``OUT`` and start over.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Sequence

from experiments.cli import add_verbose_argument, run_command
from experiments.mnist.data import add_data_arguments, data_dir_from_args

SMOKE_TOLS = (1e-1, 1e-2, 1e-3, 1e-4)


def run_smoke(data_dir: str | None = None, out: str | Path = "runs/smoke", fresh: bool = False,
              verbose: int = 1) -> dict[str, Path]:
    """Run the smoke pipeline.

    Parameters
    ----------
    data_dir : str, optional
        MNIST directory.
    out : str or path-like
        Output directory.
    fresh : bool
        Delete ``out`` first.
    verbose : int

    Returns
    -------
    dict
        ``table1`` and ``figure3`` paths.
    """
    from experiments.mnist import table1
    from experiments.mnist.data import load_mnist
    from experiments.mnist.figure3 import make_figure

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    tic = time.perf_counter()
    protocol = table1.make_protocol(smoke=True)
    command = "python -m experiments.mnist.smoke" + (f" --data-dir {data_dir}" if data_dir else "") + f" --out {out}"
    table = table1.run(table1.MODEL_NAMES, protocol, data_dir, out, command=command, verbose=verbose)
    data = load_mnist(data_dir)
    png = make_figure(out / "odenet", data.x_test[:32], data.y_test[:32], tols=SMOKE_TOLS, ref_tol=1e-6, repeats=1)
    if verbose:
        print(f"smoke run finished in {time.perf_counter() - tic:.0f} s: {table}, {png}")
    return {"table1": table, "figure3": png}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m experiments.mnist.smoke``."""
    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.smoke", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--out", default="runs/smoke", help="output directory (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete OUT first and start over (default: resume what OUT holds)")
    add_verbose_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m experiments.mnist.smoke``."""
    args = build_parser().parse_args(argv)
    run_smoke(data_dir_from_args(args), args.out, args.fresh)


if __name__ == "__main__":
    run_command(__spec__.name, main)
