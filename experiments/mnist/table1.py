"""Table 1 of Chen et al. (2018): MNIST test error, parameters, memory and time.

Usage::

    python -m experiments.mnist.table1 --model all                 # paper protocol (160 epochs)
    python -m experiments.mnist.table1 --model all --full          # all images, 12 epochs
    python -m experiments.mnist.table1 --model all --quick         # 3 epochs on 8k images
    python -m experiments.mnist.table1 --model all --smoke         # 1 epoch of 8 batches
    python -m experiments.mnist.table1 --model odenet --epochs 10 --data-dir /path/to/mnist

Protocols (see :data:`experiments.mnist.protocol.PROTOCOLS`):

* default (``paper``): torchdiffeq ``odenet_mnist.py`` -- SGD momentum 0.9, learning rate
  ``0.1 * batch / 128`` decayed by 0.1 at epochs 60, 100, 140; 160 epochs; batch 128;
  random crop 28 with padding 4; all 60k training images; ODE-Net ``rtol = atol = 1e-3``
  with VODE's implicit Adams (the paper's solver) and adjoint gradients.
* ``--quick``: 3 epochs on a fixed random subset of 8,000 training images, learning rate
  0.1 then 0.01 for the last epoch, full test set.
* ``--smoke``: 1 epoch of 8 batches (1,024 images), first 1,000 test images.
* ``--full``: all 60k images, 12 epochs, learning rate 0.1 / 0.01 / 0.001.

What each protocol costs, measured with the command beside it, is in the README's table of runs.

``--epochs N`` overrides the number of epochs of any protocol (the decay epochs are kept).
The RK-Net integrates the same dynamics as the ODE-Net with an adaptive Dormand-Prince 5(4)
solver written in TensorFlow at the ODE-Net's ``--tol`` (default 1e-3), backpropagated directly
through every step (the paper's RK-Net: its number of evaluations L~ varies with the input and
over training); ``--rk-method rk4 --rk-steps N`` uses ``N`` fixed steps of classical RK4
instead (``4 N`` evaluations).

Each model trains in ``OUT/<model>/`` (``checkpoint.npz`` every epoch, automatic exact
resume; ``results.json``; ``--fresh`` moves an existing ``OUT/<model>`` aside to
``OUT/<model>.old-<n>`` and starts over).  Then :mod:`experiments.mnist.memory` measures peak memory and time of
one training step against depth (``OUT/memory.json``, skipped if present unless
``--remeasure``), and ``OUT/table1.md`` is written from whatever results exist, with the
command at the top and the paper's numbers beside ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from experiments.cli import add_verbose_argument, run_command
from experiments.mnist import memory
from experiments.mnist.data import add_data_arguments, data_dir_from_args
from experiments.mnist.protocol import MODEL_NAMES, PROTOCOLS, RESULTS, RK_METHODS, Protocol, move_aside, protocol_for
from odegrad.atomic import write_atomic

PAPER_TABLE1 = {
    "mlp": {"label": "1-Layer MLP", "error": "1.60%", "params": "0.24M", "memory": "-", "time": "-"},
    "resnet": {"label": "ResNet", "error": "0.41%", "params": "0.60M", "memory": "O(L)", "time": "O(L)"},
    "rknet": {"label": "RK-Net", "error": "0.47%", "params": "0.22M", "memory": "O(L~)", "time": "O(L~)"},
    "odenet": {"label": "ODE-Net", "error": "0.42%", "params": "0.22M", "memory": "O(1)", "time": "O(L~)"},
}
"""Table 1 of the paper (L = layers, L~ = solver evaluations)."""

def make_protocol(quick: bool = False, smoke: bool = False, epochs: int | None = None,
                  batch_size: int = 128, seed: int = 0, full: bool = False) -> Protocol:
    """The protocol selected by the command-line flags.

    Parameters
    ----------
    quick, smoke : bool
        Mutually exclusive budget flags; none of them = paper protocol.
    epochs : int, optional
        Override the number of epochs.
    batch_size : int
    seed : int
    full : bool
        The full-data budget protocol (exclusive with ``quick`` and ``smoke``).

    Returns
    -------
    Protocol

    Raises
    ------
    ValueError
        If more than one of ``quick``, ``smoke`` and ``full`` is set.
    """
    if quick + smoke + full > 1:
        raise ValueError("--full, --quick and --smoke are mutually exclusive")
    base = PROTOCOLS["smoke" if smoke else "quick" if quick else "full" if full else "paper"]
    return dataclasses.replace(
        base, epochs=base.epochs if epochs is None else epochs, batch_size=batch_size, seed=seed
    )


def model_config(name: str, tol: float, rk_method: str = "dopri5", rk_steps: int | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`experiments.mnist.models.build_model` for ``name``.

    Parameters
    ----------
    name : str
        Model name.
    tol : float
        ``rtol = atol`` of the ODE-Net's solver and of the RK-Net's dopri5.
    rk_method : {"dopri5", "rk4"}
        Solver of the RK-Net.
    rk_steps : int, optional
        Fixed steps of the RK-Net's RK4 (default 4); only with ``rk_method="rk4"``.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        If ``rk_steps`` is given with dopri5.
    """
    if rk_method != "rk4" and rk_steps is not None:
        raise ValueError(f"rk_steps applies to rk_method='rk4', not {rk_method!r}")
    if rk_method == "rk4":
        rknet = {"rk_method": "rk4", "rk_steps": 4 if rk_steps is None else rk_steps}
    else:
        rknet = {"rk_method": rk_method, "tol": tol}
    return {"rknet": rknet, "odenet": {"tol": tol}}.get(name, {})


def _configured_depth(name: str, config: dict) -> float | None:
    """The memory-sweep depth a trained model corresponds to (``None`` if the sweep has none)."""
    if name == "rknet":
        return config.get("tol") if config.get("rk_method", "dopri5") == "dopri5" else None
    return {"resnet": config.get("resnet_blocks", 6), "odenet": config.get("tol")}.get(name)


def _memory_cell(name: str, mem: dict | None, result: dict) -> tuple[str, str]:
    """Memory and time cells: the measurement at the trained depth and the per-unit slope."""
    time_cell = f"{result['seconds_per_step']:.3f} s/step"
    if mem is None or name not in mem.get("models", {}):
        return "not measured", time_cell
    info = mem["models"][name]
    rows = info["rows"]
    source = info.get("memory_source", "tf")
    depth = _configured_depth(name, result["model_config"])
    at = [r for r in rows if depth is not None and abs(float(r["depth"]) - float(depth)) < 1e-12]
    xs = info["x"]
    sweep_time = f"{at[0]['step_seconds']:.3f} s/step, " if at else ""
    time_cell = (
        f"{sweep_time}{info['step_seconds_per_unit']:+.3f} s per {info['unit']} "
        f"(training median {result['seconds_per_step']:.3f} s/step)"
    )
    if source is None:
        return "not measured (no TensorFlow allocator statistics, no RSS high-water mark)", time_cell
    key = memory.PEAK_KEYS[source]
    slope = info.get("peak_mb_per_unit", info["tf_peak_mb_per_unit"])
    span = max(xs) - min(xs) if xs else 0
    peaks = [r[key] for r in rows]
    order = "O(1)" if span == 0 or abs(slope * span) < 0.1 * max(min(peaks), 1e-9) else ("O(L)" if name == "resnet" else "O(L~)")
    level = f"{at[0][key]:.0f} MB, " if at else ""
    label = " (RSS)" if source == "rss" else ""
    return f"{order}: {level}{slope:+.1f} MB per {info['unit']}{label}", time_cell


def _read_results(path: Path) -> tuple[dict | None, str | None]:
    """A model's ``results.json``, or ``None`` and why it cannot be used."""
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path} cannot be read ({type(exc).__name__}: {exc}); rerun this model to rewrite it"


def write_table(out: str | Path, command: str, names: Sequence[str] = MODEL_NAMES) -> Path:
    """Write ``table1.md`` from ``OUT/<model>/results.json`` and ``OUT/memory.json``.

    Parameters
    ----------
    out : str or path-like
        The run directory given as ``--out``.
    command : str
        Command line printed at the top.
    names : sequence of str
        Models to include (those without results are listed as not run, those with an
        unreadable ``results.json`` as unreadable, with the reason in the notes).

    Returns
    -------
    pathlib.Path
        The Markdown file (written atomically).
    """
    out = Path(out)
    mem_path = out / "memory.json"
    mem = json.loads(mem_path.read_text()) if mem_path.is_file() else None
    rows = []
    protocols: dict[str, list[str]] = {}
    commands: list[str] = []
    problems = []
    for name in names:
        paper = PAPER_TABLE1[name]
        paper_cells = f"{paper['error']} | {paper['params']} | {paper['memory']} | {paper['time']} |"
        result, problem = _read_results(out / name / RESULTS)
        if result is None:
            status = "not run" if problem is None else "results unreadable"
            rows.append(f"| {paper['label']} | {status} | | | | {paper_cells}")
            if problem:
                problems.append(problem)
            continue
        protocols.setdefault(json.dumps(result["protocol"], sort_keys=True), []).append(name)
        if result.get("command"):
            commands.append(f"- {name}: `{result['command']}`")
        if name == "mlp":
            mem_cell, time_cell = "-", f"{result['seconds_per_step']:.4f} s/step"
        else:
            mem_cell, time_cell = _memory_cell(name, mem, result)
        status = "" if result["finished"] else f" (epoch {result['epochs_done']}/{result['protocol']['epochs']})"
        nfe = ""
        if name == "rknet":
            nfe = f"; NFE-F {result['nfe_forward_per_epoch'][-1]:.1f} (backpropagated through, no backward solve)"
        elif name == "odenet":
            nfe = f"; NFE-F {result['nfe_forward_per_epoch'][-1]:.1f}, NFE-B {result['nfe_backward_per_epoch'][-1]:.1f}"
        rows.append(
            f"| {paper['label']} | {100 * result['test_error']:.2f}%{status} | {result['params'] / 1e6:.3f}M "
            f"({result['params']:,}) | {mem_cell} | {time_cell}{nfe} | {paper_cells}"
        )
    smoke = bool(protocols) and {json.loads(proto)["name"] for proto in protocols} == {"smoke"}
    lines = ["# Table 1: MNIST" + (" (smoke run)" if smoke else ""), ""]
    if smoke:
        lines += [
            (
                "**Smoke run**: one epoch of 8 batches on 1,024 training images, tested on 1,000 images, memory "
                "measured at batch 32. It shows that the pipeline runs end to end; its numbers are not results and "
                "are not comparable with the paper's."
            ),
            "",
        ]
    lines += [
        f"Produced by: `{command}`",
        "",
        "| model | test error | params | memory (peak of one training step) | time (per training step) "
        "| paper: test error | paper: params | paper: memory | paper: time |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Notes:",
        "",
    ]
    if commands:
        lines += [
            "Each row's run, from its `results.json` (rerun, it resumes from its `checkpoint.npz` where that is kept):",
            "",
            *commands,
            "",
        ]
    for proto in sorted(protocols):
        lines.append(f"- training protocol of {', '.join(protocols[proto])}: `{proto}`")
    lines += [f"- {problem}" for problem in problems]
    if mem is not None:
        lines.append(
            f"- memory: peak of TensorFlow's CPU allocator during one eager training step (batch {mem['batch_size']}) "
            "above the memory live before it, one fresh process per configuration (`python -m experiments.mnist.memory`); "
            "slopes are least-squares fits against residual blocks (ResNet) or the forward NFE obtained by varying "
            "the tolerance (RK-Net's dopri5, ODE-Net)."
        )
        for name, info in mem["models"].items():
            source = info.get("memory_source", "tf")
            if source != "tf":
                lines.append(f"- {name} memory (marked RSS): {info.get('memory_note')}.")
            key = memory.PEAK_KEYS.get(source)
            pairs = ", ".join(
                f"{r['depth']:g} -> " + (f"{r[key]:.0f} MB" if key else "n/a") + f" / {r['step_seconds']:.2f} s"
                + (f" (NFE {r['nfe_forward']}/{r['nfe_backward']})" if name in ("rknet", "odenet") else "")
                for r in info["rows"]
            )
            lines.append(f"- {name} sweep ({memory.DEPTH_LABEL.get(name, 'depth')}): {pairs}")
    lines.append(
        "- time: wall time of a training step (forward + backward + SGD update) on this machine's CPU: first the "
        "median of the memory sweep at the trained depth (a dedicated process), then its slope against depth, then "
        "the median over the last training epoch (affected by whatever else ran on the machine). Every step is "
        "compiled with tf.function; the ODE-Net's host-side SciPy solver (VODE Adams) of odegrad.tf.ODEBlock runs "
        "inside it through tf.py_function, its dynamics compiled with XLA."
    )
    lines.append(
        "- params: exactly torchdiffeq's odenet_mnist.py with its default `conv` downsampling (576,778 ResNet; "
        "208,266 ODE-Net/RK-Net). The paper prints 0.60M/0.22M without saying which variant it counted; "
        "torchdiffeq's `res` downsampling would give 601,482/232,970."
    )
    return write_atomic(out / "table1.md", "\n".join(lines) + "\n")


def run(
    models: Sequence[str],
    protocol: Protocol,
    data_dir: str | None,
    out: str | Path,
    *,
    tol: float = 1e-3,
    rk_method: str = "dopri5",
    rk_steps: int | None = None,
    resume: bool = True,
    fresh: bool = False,
    measure_memory: bool = True,
    remeasure: bool = False,
    command: str = "",
    verbose: int = 1,
) -> Path:
    """Train ``models`` under ``protocol``, measure memory, write ``table1.md``.

    Parameters
    ----------
    models : sequence of str
    protocol : Protocol
    data_dir : str, optional
        MNIST directory (see :func:`experiments.mnist.data.resolve_data_dir`).
    out : str or path-like
    tol : float
        ``rtol = atol`` of the ODE-Net's solver and of the RK-Net's dopri5.
    rk_method : {"dopri5", "rk4"}
        Solver of the RK-Net.
    rk_steps : int, optional
        Fixed RK4 steps of the RK-Net (default 4); only with ``rk_method="rk4"``.
    resume : bool
        Resume from existing checkpoints.
    fresh : bool
        Start every model in ``models`` over: an existing ``OUT/<model>`` is renamed to
        ``OUT/<model>.old-<n>`` (see :func:`experiments.mnist.protocol.move_aside`) first.
    measure_memory : bool
        Run the memory/time sweep if ``OUT/memory.json`` is missing.
    remeasure : bool
        Run it even if present.
    command : str
        Printed at the top of the table.
    verbose : int

    Returns
    -------
    pathlib.Path
        ``OUT/table1.md``.
    """
    from experiments.mnist.data import load_mnist
    from experiments.mnist.training import train

    out = Path(out)
    data = load_mnist(data_dir)
    for name in models:
        if fresh and (moved := move_aside(out / name)) is not None and verbose:
            print(f"[{name}] --fresh: moved the old run {out / name} to {moved}", flush=True)
        tic = time.perf_counter()
        config = model_config(name, tol, rk_method, rk_steps)
        train(name, protocol_for(name, protocol), data, out / name, model_config=config,
              resume=resume, verbose=verbose, command=command)
        if verbose:
            print(f"[{name}] done in {time.perf_counter() - tic:.0f} s", flush=True)
    mem_path = out / "memory.json"
    if measure_memory and (remeasure or not mem_path.is_file()):
        spec = memory.SMOKE_SWEEP if protocol.name == "smoke" else memory.DEFAULT_SWEEP
        spec = {k: v for k, v in spec.items() if k in models}
        if spec:
            memory.sweep(spec, batch_size=32 if protocol.name == "smoke" else 128, out=mem_path, verbose=bool(verbose))
    path = write_table(out, command)
    if verbose:
        print(path.read_text())
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m experiments.mnist.table1``."""
    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.table1",
                                     description="Reproduce Table 1 (MNIST) of Chen et al. 2018")
    parser.add_argument("--model", choices=[*MODEL_NAMES, "all"], default="all",
                        help="model to train, or all of them in turn (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="override the protocol's number of epochs")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="training batch size; the learning rate scales with it / 128 (default: %(default)s)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--full", action="store_true",
                        help="all 60k images, 12 epochs, lr 0.1/0.01/0.001")
    budget.add_argument("--quick", action="store_true",
                        help="3 epochs on 8k images, full test set")
    budget.add_argument("--smoke", action="store_true",
                        help="1 epoch of 8 batches on 1,024 images: a pipeline check (`python -m experiments.mnist.smoke` "
                             "adds Figure 3)")
    add_data_arguments(parser)
    parser.add_argument("--out", default="runs/table1",
                        help="run directory: OUT/<model>/ checkpoints, OUT/memory.json, OUT/table1.md (default: %(default)s)")
    parser.add_argument("--rk-method", choices=RK_METHODS, default="dopri5",
                        help="RK-Net solver: adaptive dopri5 at --tol, backpropagated through its steps (the paper's "
                             "RK-Net, default), or fixed-step rk4")
    parser.add_argument("--rk-steps", type=int, default=None,
                        help="fixed steps of the RK-Net's rk4 (default 4; only with --rk-method rk4)")
    parser.add_argument("--tol", type=float, default=1e-3,
                        help="rtol = atol of the ODE-Net's solver and of the RK-Net's dopri5 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, training subset, batch order and crops (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (default 0: one per core)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="resume from OUT/<model>/checkpoint.npz when present; --no-resume refuses to touch an "
                             "existing one (default: resume)")
    parser.add_argument("--fresh", action="store_true",
                        help="start the selected models over: an existing OUT/<model> is renamed to "
                             "OUT/<model>.old-<n> (nothing is deleted); memory.json is kept unless --remeasure")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory/time sweep")
    parser.add_argument("--remeasure", action="store_true", help="redo the memory/time sweep even if memory.json exists")
    add_verbose_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point of ``python -m experiments.mnist.table1``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rk_steps is not None and args.rk_method != "rk4":
        parser.error("--rk-steps sets the fixed steps of --rk-method rk4; dopri5 chooses its steps from --tol")
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    protocol = make_protocol(args.quick, args.smoke, args.epochs, args.batch_size, args.seed, args.full)
    models = MODEL_NAMES if args.model == "all" else (args.model,)
    command = "python -m experiments.mnist.table1 " + shlex.join(argv)
    return run(models, protocol, data_dir_from_args(args), args.out, tol=args.tol, rk_method=args.rk_method,
               rk_steps=args.rk_steps, resume=args.resume, fresh=args.fresh, measure_memory=not args.no_memory,
               remeasure=args.remeasure, command=command.strip())


if __name__ == "__main__":
    run_command(__spec__.name, main)
