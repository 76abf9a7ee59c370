"""What sets the ODE-Net's backward NFE (Figure 3(c)), measured: loss scale, tolerances, seminorm.

Usage::

    python -m experiments.backward_nfe [--images 128] [--train-steps 20] [--run DIR] [--out FILE]

One batch of MNIST training images goes through the Table 1 ODE-Net's downsampling; its ODE block
(the paper's dynamics, implicit Adams) is then solved forwards and backwards with the settings of
:data:`SETTINGS`, for fresh weights and for "trained" weights (``--run``: a Table 1 ODE-Net run
directory; otherwise ``--train-steps`` SGD steps of the Table 1 protocol from the same seed).
Each row gives the forward and backward NFE, their ratio, the size of the adjoint at the end
time (``|a(t1)|``, RMS over its entries, against ``atol``), and the relative error of the
gradient with respect to the block's parameters and input against a reference solve at
``--ref-tol``.

The loss is the cross-entropy of the classifier's logits, averaged over the batch (``mean``, what
training uses) or summed (``sum``, ``batch`` times larger). The backward solve of
``[y, a, a_t, a_theta]`` controls the error of each component against ``atol + rtol·|s_i|``; a
mean loss makes ``a`` ~``batch`` times smaller than a sum does, so with the same absolute
``adjoint_atol`` its error control is ``batch`` times looser.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row: the loss reduction and the ODE block's options."""

    name: str
    loss: str = "mean"
    tol: float = 1e-3
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    seminorm: bool = False


def settings(batch: int, tol: float = 1e-3) -> list[Setting]:
    """The rows of the study for a batch of ``batch`` images at forward tolerance ``tol``."""
    return [
        Setting("mean loss (training)", "mean", tol),
        Setting("mean loss, seminorm", "mean", tol, seminorm=True),
        Setting("sum loss", "sum", tol),
        Setting("sum loss, seminorm", "sum", tol, seminorm=True),
        Setting(f"mean loss, adjoint_atol = atol/{batch}", "mean", tol, adjoint_atol=tol / batch),
        Setting(f"sum loss, adjoint_atol = atol*{batch}", "sum", tol, adjoint_atol=tol * batch),
        Setting("mean loss, adjoint tol x10 looser", "mean", tol, adjoint_rtol=10 * tol, adjoint_atol=10 * tol),
        Setting("mean loss, adjoint tol x10 tighter", "mean", tol, adjoint_rtol=tol / 10, adjoint_atol=tol / 10),
        Setting("mean loss, forward tol x10 tighter", "mean", tol / 10, adjoint_rtol=tol, adjoint_atol=tol),
    ]


def _loss_fn(reduction: str) -> Any:
    import keras

    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="sum" if reduction == "sum" else "sum_over_batch_size")


def block_gradient(model: Any, h0: Any, labels: Any, setting: Setting, method: str = "adams") -> dict[str, Any]:
    """Solve the ODE block of ``model`` from ``h0`` with ``setting``; loss, NFE and gradient.

    Returns
    -------
    dict
        ``nfe_forward``, ``nfe_backward``, ``adjoint_rms`` (RMS of ``a(t1) = dL/dh(t1)``),
        ``gradient`` (flat: block input, then the dynamics' variables), ``loss``, ``seconds``.
    """
    import tensorflow as tf

    from odegrad.tf import ODEBlock

    func = model.ode_block.func
    block = ODEBlock(func, t=model.ode_block.t, rtol=setting.tol, atol=setting.tol, method=method,
                     adjoint_rtol=setting.adjoint_rtol, adjoint_atol=setting.adjoint_atol,
                     adjoint_seminorm=setting.seminorm, jit_compile=True)
    loss_fn = _loss_fn(setting.loss)
    start = time.perf_counter()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(h0)
        h1 = block(h0)
        logits = h1
        for layer in model.head:
            logits = layer(logits)
        loss = loss_fn(labels, logits)
    adjoint = tape.gradient(loss, h1)
    grads = tape.gradient(loss, [h0, *func.trainable_variables])
    seconds = time.perf_counter() - start
    return {
        "nfe_forward": block.nfe_forward,
        "nfe_backward": block.nfe_backward,
        "adjoint_rms": float(tf.sqrt(tf.reduce_mean(adjoint ** 2))),
        "gradient": np.concatenate([g.numpy().ravel() for g in grads]).astype(np.float64),
        "loss": float(loss),
        "seconds": seconds,
    }


def study(model: Any, images: np.ndarray, labels: np.ndarray, rows: Sequence[Setting], ref_tol: float = 1e-6,
          method: str = "adams") -> list[dict[str, Any]]:
    """Run every setting and compare its gradient with a reference solve at ``ref_tol``.

    The reference is computed once per loss reduction (``sum`` is ``batch`` times ``mean``).
    """
    import tensorflow as tf

    from experiments.training import to_input

    h0 = to_input(images)
    for layer in model.stem:
        h0 = layer(h0)
    y = tf.convert_to_tensor(labels.astype(np.int32))
    references = {}
    out = []
    for setting in rows:
        if setting.loss not in references:
            ref = Setting("reference", setting.loss, ref_tol)
            references[setting.loss] = block_gradient(model, h0, y, ref, method)["gradient"]
        result = block_gradient(model, h0, y, setting, method)
        reference = references[setting.loss]
        error = float(np.linalg.norm(result.pop("gradient") - reference) / np.linalg.norm(reference))
        out.append({**dataclasses.asdict(setting), **result, "ratio": result["nfe_backward"] / result["nfe_forward"],
                    "grad_rel_error": error})
    return out


def trained_model(data: Any, steps: int, seed: int = 0, batch_size: int = 128) -> Any:
    """The Table 1 ODE-Net after ``steps`` SGD steps of the Table 1 protocol (lr 0.1, momentum 0.9)."""
    import keras
    import tensorflow as tf

    from experiments.models import build_model
    from experiments.training import _make_step, random_crop, to_input

    model = build_model("odenet", seed=seed)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    step = _make_step(model, optimizer, jit=True)
    rng = np.random.default_rng([seed, 2])
    for _ in range(steps):
        idx = rng.choice(len(data.x_train), batch_size, replace=False)
        step(to_input(random_crop(data.x_train[idx], rng)), tf.constant(data.y_train[idx].astype(np.int32)))
    return model


def render(tables: dict[str, list[dict[str, Any]]], command: str, ref_tol: float) -> str:
    """Markdown tables, one per weight state."""
    lines = [f"`{command}` on {platform.platform()}, {os.cpu_count()} CPUs; implicit Adams, "
             f"reference tol {ref_tol:g}", ""]
    for weights, rows in tables.items():
        lines += [f"**{weights} weights**", "",
                  "| setting | fwd NFE | bwd NFE | bwd/fwd | RMS a(t1) | gradient rel. error | time (s) |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['name']} | {r['nfe_forward']} | {r['nfe_backward']} | {r['ratio']:.2f} | "
                         f"{r['adjoint_rms']:.2e} | {r['grad_rel_error']:.2e} | {r['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.backward_nfe``."""
    from experiments.mnist import load_mnist
    from experiments.models import build_model
    from experiments.training import deterministic_ops, restore_model

    parser = argparse.ArgumentParser(prog="python -m experiments.backward_nfe", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--ref-tol", type=float, default=1e-6)
    parser.add_argument("--run", default=None, help="Table 1 ODE-Net run directory for the trained weights")
    parser.add_argument("--train-steps", type=int, default=20, help="SGD steps for the trained weights without --run")
    parser.add_argument("--out", default=None, help="also write the tables (Markdown) and the rows (JSON beside it)")
    args = parser.parse_args(argv)
    command = ("python -m experiments.backward_nfe " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    data = load_mnist(args.data_dir)
    images, labels = data.x_train[: args.images], data.y_train[: args.images]
    rows = settings(args.images, args.tol)
    tables = {}
    with deterministic_ops():
        tables["fresh"] = study(build_model("odenet", seed=0), images, labels, rows, args.ref_tol)
        if args.run:
            trained, _ = restore_model(args.run)
            label = f"trained ({args.run})"
        else:
            trained = trained_model(data, args.train_steps)
            label = f"trained ({args.train_steps} SGD steps)"
        tables[label] = study(trained, images, labels, rows, args.ref_tol)
    text = render(tables, command, args.ref_tol)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as handle:
            json.dump({"command": command, "tables": tables}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
