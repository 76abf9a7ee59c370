"""Figure 3 of Chen et al. (2018): statistics of a trained ODE-Net.

Usage::

    python -m experiments.mnist.figure3 --run runs/table1/odenet [--data-dir D] [--images 128]

From the checkpoint in ``--run`` the trained ODE-Net is rebuilt; the ODE block is re-solved
on the features of ``--images`` test images at each tolerance of ``--tols`` (``rtol = atol``),
and once at ``--ref-tol`` (default 1e-7) as the reference.  Panels:

(a) forward NFE vs numerical error: relative L2 error of the block's output state against
    the reference solve;
(b) forward NFE vs wall time of the forward solve;
(c) forward NFE vs backward (adjoint) NFE: every training step from the training log, plus
    the tolerance sweep (loss = cross-entropy on the same images);
(d) forward NFE over training: mean per epoch (line) and every step (dots).

Writes ``figure3.png`` (2x2, Agg backend; its title names the training protocol, and says so
when the model comes from a smoke run), ``figure3.csv`` (the tolerance sweep) and
``figure3.json`` (every number behind every panel) into ``--out`` (default: the run
directory), each atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments.cli import add_verbose_argument, run_command
from experiments.mnist.data import add_data_arguments, data_dir_from_args
from odegrad.atomic import write_atomic

DEFAULT_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5)


def tolerance_sweep(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    tols: Sequence[float] = DEFAULT_TOLS,
    ref_tol: float = 1e-7,
    method: str = "adams",
    repeats: int = 3,
) -> list[dict]:
    """Re-solve a trained ODE-Net's block at several tolerances.

    Parameters
    ----------
    model : experiments.mnist.models.Classifier
        A trained ODE-Net (its ``ode_block`` keeps its dynamics as ``func``).
    images, labels : numpy.ndarray
        ``uint8`` ``(n, 28, 28)`` images and their labels.
    tols : sequence of float
        ``rtol = atol`` values.
    ref_tol : float
        Tolerance of the reference solve.
    method : str
        Solver of :class:`odegrad.tf.ODEBlock` (the one the model was trained with).
    repeats : int
        Timed repeats of each forward and backward solve; the medians are reported (the solves
        are deterministic, so NFE and errors do not change between repeats).

    Returns
    -------
    list of dict
        Per tolerance: ``tol``, ``nfe_forward``, ``nfe_backward``, ``error`` (relative L2
        error of the block output vs the reference), ``forward_seconds`` and
        ``backward_seconds`` (medians over ``repeats``), ``loss``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    import keras
    import tensorflow as tf

    from experiments.mnist.models import INTEGRATION_TIME
    from experiments.mnist.training import to_input
    from odegrad.tf import ODEBlock

    block = model.ode_block
    if block is None or not hasattr(block, "func"):
        raise ValueError("figure 3 needs an ODE-Net (a model whose feature block is an odegrad.tf.ODEBlock)")
    x = to_input(images)
    y = tf.convert_to_tensor(labels.astype(np.int32))
    h0 = x
    for layer in model.stem:
        h0 = layer(h0)

    def head(h: tf.Tensor) -> tf.Tensor:
        for layer in model.head:
            h = layer(h)
        return h

    reference = ODEBlock(block.func, t=INTEGRATION_TIME, rtol=ref_tol, atol=ref_tol, method=method)(h0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows = []
    for tol in tols:
        solver = ODEBlock(block.func, t=INTEGRATION_TIME, rtol=tol, atol=tol, method=method)
        forward_times, backward_times = [], []
        for _ in range(repeats):
            tic = time.perf_counter()
            h1 = solver(h0)
            forward_times.append(time.perf_counter() - tic)
        nfe_forward = solver.nfe_forward
        error = float(tf.norm(h1 - reference) / tf.norm(reference))
        for _ in range(repeats):
            with tf.GradientTape() as tape:
                tape.watch(h0)
                loss = loss_fn(y, head(solver(h0)))
            tic = time.perf_counter()
            tape.gradient(loss, [h0, *block.func.trainable_variables])
            backward_times.append(time.perf_counter() - tic)
        forward_seconds, backward_seconds = float(np.median(forward_times)), float(np.median(backward_times))
        rows.append({
            "tol": float(tol),
            "nfe_forward": int(nfe_forward),
            "nfe_backward": int(solver.nfe_backward),
            "error": error,
            "forward_seconds": forward_seconds,
            "backward_seconds": backward_seconds,
            "loss": float(loss),
        })
    return rows


def training_nfe(log: Sequence[dict]) -> dict[str, list[float]]:
    """Per-step and per-epoch NFE from a training log (``results.json`` or checkpoint state).

    Parameters
    ----------
    log : sequence of dict
        Epoch entries of :func:`experiments.mnist.training.train`.

    Returns
    -------
    dict
        ``epoch`` and ``nfe_forward``/``nfe_backward`` per epoch; ``step_epoch`` (fractional
        epoch), ``step_nfe_forward``, ``step_nfe_backward`` per step (when logged).
    """
    out: dict[str, list[float]] = {"epoch": [], "nfe_forward": [], "nfe_backward": [],
                                   "step_epoch": [], "step_nfe_forward": [], "step_nfe_backward": []}
    for entry in log:
        out["epoch"].append(entry["epoch"])
        out["nfe_forward"].append(entry["nfe_forward"])
        out["nfe_backward"].append(entry["nfe_backward"])
        steps_f = entry.get("nfe_forward_per_step", [])
        steps_b = entry.get("nfe_backward_per_step", [])
        n = len(steps_f)
        out["step_epoch"] += [entry["epoch"] - 1 + (i + 1) / n for i in range(n)]
        out["step_nfe_forward"] += list(steps_f)
        out["step_nfe_backward"] += list(steps_b)
    return out


def plot(rows: Sequence[dict], train: dict[str, list[float]], path: str | os.PathLike[str], title: str = "") -> None:
    """Draw the 2x2 figure.

    Parameters
    ----------
    rows : sequence of dict
        Output of :func:`tolerance_sweep`.
    train : dict
        Output of :func:`training_nfe`.
    path : str or path-like
        PNG file (written atomically).
    title : str
        Title above the four panels (see :func:`figure_title`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfe = [r["nfe_forward"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    ax = axes[0, 0]
    ax.semilogy(nfe, [max(r["error"], 1e-16) for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['tol']:g}", (r["nfe_forward"], max(r["error"], 1e-16)), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    ax.set(xlabel="NFE forward", ylabel="relative error of h(1)", title="(a) NFE vs numerical error")
    ax = axes[0, 1]
    ax.plot(nfe, [r["forward_seconds"] for r in rows], "o-")
    ax.set(xlabel="NFE forward", ylabel="forward time [s] (median)", title="(b) NFE vs time")
    ax = axes[1, 0]
    if train["step_nfe_forward"]:
        ax.scatter(train["step_nfe_forward"], train["step_nfe_backward"], s=8, alpha=0.4, label="training steps")
    ax.scatter(nfe, [r["nfe_backward"] for r in rows], marker="x", color="C3", label="tolerance sweep")
    top = max([1, *nfe, *[r["nfe_backward"] for r in rows], *train["step_nfe_backward"], *train["step_nfe_forward"]])
    ax.plot([0, top], [0, top], "k:", lw=0.8, label="y = x")
    ax.set(xlabel="NFE forward", ylabel="NFE backward", title="(c) NFE forward vs backward")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    if train["step_nfe_forward"]:
        ax.scatter(train["step_epoch"], train["step_nfe_forward"], s=6, alpha=0.3, label="step")
    ax.plot(train["epoch"], train["nfe_forward"], "o-", color="C1", label="epoch mean")
    ax.set(xlabel="training epoch", ylabel="NFE forward", title="(d) NFE over training")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=10,
                     color="C3" if title.startswith("SMOKE") else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def figure_title(protocol: dict, images: int, epochs_done: int | None = None) -> str:
    """The figure's title: which training protocol, on how much data; a smoke run says so first.

    Parameters
    ----------
    protocol : dict
        The run's protocol (:meth:`experiments.mnist.protocol.Protocol.to_json`).
    images : int
        Test images of the tolerance sweep.
    epochs_done : int, optional
        Epochs completed, when the run is unfinished (the title then says "after k of N epochs").

    Returns
    -------
    str
    """
    train_images = f"{protocol['train_size']:,}" if protocol.get("train_size") else "all"
    epochs = protocol["epochs"]
    count = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    if epochs_done is not None and epochs_done < epochs:
        count = f"after {epochs_done} of {epochs} epochs"
    text = (f"ODE-Net trained with the '{protocol['name']}' protocol ({count}, "
            f"{train_images} training images); tolerance sweep on {images} test images")
    if protocol["name"] == "smoke":
        text = "SMOKE RUN (a pipeline check, not a result): " + text
    return text


def require_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """Return ``run_dir/checkpoint.npz``, or say which command makes it.

    Parameters
    ----------
    run_dir : str or path-like

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint; the message gives the training command for this directory.
    """
    from experiments.mnist.protocol import CHECKPOINT

    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if path.is_file():
        return path
    out = run_dir.parent if run_dir.name == "odenet" else run_dir
    raise FileNotFoundError(
        f"no {CHECKPOINT} in {run_dir}: figure 3 needs a trained ODE-Net. Train one with "
        f"`python -m experiments.mnist.table1 --model odenet --quick --out {out}` (--smoke instead of --quick for a "
        f"pipeline check of a few minutes), which writes {out / 'odenet' / CHECKPOINT}, "
        f"then run `python -m experiments.mnist.figure3 --run {out / 'odenet'}`"
    )


def step_ratio_summary(train: dict[str, list[float]]) -> dict[str, float]:
    """How the training steps' backward NFE compares with their forward NFE (Figure 3(c)).

    Parameters
    ----------
    train : dict
        :func:`training_nfe`'s output (per-step entries).

    Returns
    -------
    dict
        ``steps``; the fractions ``above``, ``below``, ``equal`` of steps whose backward NFE is
        above, below or equal to the forward NFE; ``median_ratio`` (backward / forward); and
        ``last_epoch_above``, ``last_epoch_median_ratio`` over the last epoch's steps.
    """
    forward = np.asarray(train["step_nfe_forward"], dtype=float)
    backward = np.asarray(train["step_nfe_backward"], dtype=float)
    epochs = np.ceil(np.asarray(train["step_epoch"], dtype=float))
    last = epochs == epochs.max()
    return {"steps": int(forward.size), "above": float(np.mean(backward > forward)),
            "below": float(np.mean(backward < forward)), "equal": float(np.mean(backward == forward)),
            "median_ratio": float(np.median(backward / forward)),
            "last_epoch_above": float(np.mean(backward[last] > forward[last])),
            "last_epoch_median_ratio": float(np.median(backward[last] / forward[last]))}


def make_figure(
    run_dir: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    out: str | os.PathLike[str] | None = None,
    tols: Sequence[float] = DEFAULT_TOLS,
    ref_tol: float = 1e-7,
    repeats: int = 3,
) -> Path:
    """Compute all panels for the ODE-Net run in ``run_dir`` and write PNG, CSV and JSON.

    Parameters
    ----------
    run_dir : str or path-like
        Directory with the ODE-Net's ``checkpoint.npz``.
    images, labels : numpy.ndarray
        Evaluation batch.
    out : str or path-like, optional
        Output directory (default ``run_dir``).
    tols : sequence of float
    ref_tol : float
    repeats : int
        Timed repeats per tolerance (medians in panel (b)).

    Returns
    -------
    pathlib.Path
        The PNG.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` holds no checkpoint; the message names the command that makes one.
    experiments.mnist.training.CheckpointError
        If the checkpoint cannot be read.
    ValueError
        If the run is not an ODE-Net.
    """
    from experiments.mnist.training import load_checkpoint_state, restore_model

    require_checkpoint(run_dir)
    state = load_checkpoint_state(run_dir)
    if state["model"] != "odenet":
        raise ValueError(f"{run_dir} holds a {state['model']} run; figure 3 needs an odenet run")
    model, state = restore_model(run_dir)
    method = state["model_config"].get("method", "adams")
    rows = tolerance_sweep(model, images, labels, tols, ref_tol, method, repeats)
    train = training_nfe(state["log"])
    out = Path(out or run_dir)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "figure3.csv", table.getvalue())
    title = figure_title(state["protocol"], len(images), len(state["log"]))
    payload = {
        "run": str(run_dir),
        "images": int(len(images)),
        "ref_tol": ref_tol,
        "method": method,
        "trained_tol": state["model_config"].get("tol"),
        "protocol": state["protocol"],
        "title": title,
        "panel_a_b_c_sweep": rows,
        "panel_c_d_training": train,
        "panel_c_step_ratio": step_ratio_summary(train) if train["step_epoch"] else None,
    }
    write_atomic(out / "figure3.json", json.dumps(payload, indent=2))
    png = out / "figure3.png"
    plot(rows, train, png, title)
    return png


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point of ``python -m experiments.mnist.figure3``."""
    from experiments.mnist.data import load_mnist

    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.figure3",
                                     description="Figure 3 (NFE statistics) of a trained ODE-Net")
    parser.add_argument("--run", required=True,
                        help="ODE-Net run directory holding checkpoint.npz, e.g. runs/table1/odenet "
                             "(made by `python -m experiments.mnist.table1 --model odenet`)")
    add_data_arguments(parser)
    parser.add_argument("--images", type=int, default=128, help="test images in the evaluation batch (default: %(default)s)")
    parser.add_argument("--tols", type=float, nargs="+", default=list(DEFAULT_TOLS),
                        help="solver tolerances rtol = atol of the sweep (default: 0.1 down to 3e-5)")
    parser.add_argument("--ref-tol", type=float, default=1e-7,
                        help="tolerance of the reference solve that panel (a) measures errors against (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats per tolerance; panel (b) shows their median (default: %(default)s)")
    parser.add_argument("--out", default=None, help="output directory (default: --run)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    require_checkpoint(args.run)
    data = load_mnist(data_dir_from_args(args))
    png = make_figure(args.run, data.x_test[: args.images], data.y_test[: args.images], args.out, args.tols,
                      args.ref_tol, args.repeats)
    print(f"wrote {png}")
    return png


if __name__ == "__main__":
    run_command(__spec__.name, main)
