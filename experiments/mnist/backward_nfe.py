"""What sets the ODE-Net's backward NFE (Figure 3(c)), measured: loss scale, tolerances, seminorm.

Usage::

    python -m experiments.mnist.backward_nfe [--images 128] [--train-steps 20] [--run DIR] [--out FILE] [--peers]

One batch of MNIST training images goes through the Table 1 ODE-Net's downsampling; its ODE block
(the paper's dynamics, implicit Adams) is then solved forwards and backwards with the settings of
:func:`settings`, for fresh weights and for "trained" weights (``--run``: a Table 1 ODE-Net run
directory; otherwise ``--train-steps`` SGD steps of the Table 1 protocol from the same seed).
Each row gives the forward and backward NFE, their ratio, the size of the adjoint at the end
time (``|a(t1)|``, RMS over its entries, against ``atol``), and the relative error of the
gradient with respect to the block's parameters and input against a reference solve at
``--ref-tol``. With ``--peers`` (needs the benchmark-only torch and torchdiffeq) the same block,
weights, features and loss are also solved by torchdiffeq's ``odeint_adjoint`` (dopri5, the
authors' released code) at the same tolerance.

The loss is the cross-entropy of the classifier's logits, averaged over the batch (``mean``, what
training uses) or summed (``sum``, ``batch`` times larger). Rows use Appendix D's absolute
``atol`` on the adjoint (``adjoint_normalize=False``, the setting the Table 1 ODE-Net trains with)
unless they say "normalised" (odegrad's default: the adjoint solved for the cotangent scaled to
``max |g| = 1``). A row whose backward solve fails (implicit Adams is not a stiff solver: once the
adjoint's error is controlled, the stiff modes of the trained dynamics limit its steps) is
reported as failed with the solver's message. The backward solve of
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

from experiments.cli import run_command


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row: the loss reduction and the ODE block's options."""

    name: str
    loss: str = "mean"
    tol: float = 1e-3
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    seminorm: bool = False
    normalize: bool = False


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
        Setting("mean loss, normalised cotangent (odegrad's default)", "mean", tol, normalize=True),
        Setting("sum loss, normalised cotangent", "sum", tol, normalize=True),
    ]


def _loss_fn(reduction: str) -> Any:
    import keras

    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="sum" if reduction == "sum" else "sum_over_batch_size")


def block_gradient(model: Any, h0: Any, labels: Any, setting: Setting, method: str = "adams",
                   jit_compile: bool = True) -> dict[str, Any]:
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
                     adjoint_seminorm=setting.seminorm, adjoint_normalize=setting.normalize,
                     jit_compile=jit_compile)
    loss_fn = _loss_fn(setting.loss)

    def loss_of(h1: tf.Tensor) -> tf.Tensor:
        for layer in model.head:
            h1 = layer(h1)
        return loss_fn(labels, h1)

    start = time.perf_counter()
    with tf.GradientTape() as tape:
        tape.watch(h0)
        h1 = block(h0)
        loss = loss_of(h1)
    grads = tape.gradient(loss, [h0, *func.trainable_variables])
    seconds = time.perf_counter() - start
    # a(t1) from a tape of the head alone: an eager tape asked for dL/dh1 would run the block's
    # backward solve as well (and count its NFE twice)
    with tf.GradientTape() as head_tape:
        head_tape.watch(h1)
        head_loss = loss_of(h1)
    adjoint = head_tape.gradient(head_loss, h1)
    return {
        "nfe_forward": block.nfe_forward,
        "nfe_backward": block.nfe_backward,
        "adjoint_rms": float(tf.sqrt(tf.reduce_mean(adjoint ** 2))),
        "gradient": np.concatenate([g.numpy().ravel() for g in grads]).astype(np.float64),
        "loss": float(loss),
        "seconds": seconds,
    }


def study(model: Any, images: np.ndarray, labels: np.ndarray, rows: Sequence[Setting], ref_tol: float = 1e-6,
          method: str = "adams", jit_compile: bool = True, peers: bool = False) -> list[dict[str, Any]]:
    """Run every setting and compare its gradient with a reference solve at ``ref_tol``.

    The reference is computed once per loss reduction (``sum`` is ``batch`` times ``mean``).
    ``jit_compile`` compiles the block's dynamics with XLA (as the Table 1 ODE-Net trains).
    ``peers`` adds :func:`torchdiffeq_rows` at the first row's tolerance (when installed).

    Returns
    -------
    list of dict
        Per setting: its fields, ``nfe_forward``, ``nfe_backward``, ``ratio``, ``adjoint_rms``,
        ``grad_rel_error``, ``loss``, ``seconds``.
    """
    import tensorflow as tf

    from experiments.mnist.training import to_input
    from odegrad import ODESolveError

    h0 = to_input(images)
    for layer in model.stem:
        h0 = layer(h0)
    y = tf.convert_to_tensor(labels.astype(np.int32))
    references = {}
    out = []
    for setting in rows:
        if setting.loss not in references:
            ref = Setting("reference", setting.loss, ref_tol)
            references[setting.loss] = block_gradient(model, h0, y, ref, method, jit_compile)["gradient"]
        try:
            result = block_gradient(model, h0, y, setting, method, jit_compile)
        except ODESolveError as exc:
            out.append({**dataclasses.asdict(setting), "failed": str(exc).split(". Try:")[0]})
            print(f"  {setting.name}: failed ({out[-1]['failed']})", flush=True)
            continue
        reference = references[setting.loss]
        error = float(np.linalg.norm(result.pop("gradient") - reference) / np.linalg.norm(reference))
        out.append({**dataclasses.asdict(setting), **result, "ratio": result["nfe_backward"] / result["nfe_forward"],
                    "grad_rel_error": error})
        print(f"  {setting.name}: NFE {result['nfe_forward']}/{result['nfe_backward']}, "
              f"gradient error {error:.2e}", flush=True)
    if peers:
        out += torchdiffeq_rows(model, images, labels, rows[0].tol, references) or []
    return out


def torchdiffeq_rows(model: Any, images: np.ndarray, labels: np.ndarray, tol: float,
                     references: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]] | None:
    """The block with the same weights in PyTorch, solved by torchdiffeq's ``odeint_adjoint``.

    Returns ``None`` when torch or torchdiffeq is not installed; else one row per loss reduction,
    with the gradient error against ``references`` (this study's reference gradients, same layout).
    """
    try:
        import torch
        import torch.nn.functional as F
        from torchdiffeq import odeint_adjoint
    except ImportError:
        return None
    from experiments.mnist.training import to_input

    func = model.ode_block.func
    h0 = to_input(images)
    for layer in model.stem:
        h0 = layer(h0)

    def norm(layer):
        return [torch.nn.Parameter(torch.tensor(layer.gamma.numpy())), torch.nn.Parameter(torch.tensor(layer.beta.numpy()))]

    def conv(layer):  # HWIO -> OIHW
        kernel = torch.tensor(np.transpose(layer.conv.kernel.numpy(), (3, 2, 0, 1)).copy())
        return [torch.nn.Parameter(kernel), torch.nn.Parameter(torch.tensor(layer.conv.bias.numpy()))]

    parts = {"norm1": norm(func.norm1), "conv1": conv(func.conv1), "norm2": norm(func.norm2),
             "conv2": conv(func.conv2), "norm3": norm(func.norm3)}
    keras_of = {id(v): p for layer, key in ((func.norm1, "norm1"), (func.norm2, "norm2"), (func.norm3, "norm3"))
                for v, p in zip((layer.gamma, layer.beta), parts[key])}
    keras_of.update({id(v): p for layer, key in ((func.conv1, "conv1"), (func.conv2, "conv2"))
                     for v, p in zip((layer.conv.kernel, layer.conv.bias), parts[key])})
    groups = func.norm1.groups

    class Dynamics(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.params = torch.nn.ParameterList([p for ps in parts.values() for p in ps])
            self.nfe = 0

        def forward(self, t, h):
            self.nfe += 1

            def gn(x, key):
                return F.group_norm(x, groups, parts[key][0], parts[key][1], eps=1e-5)

            def cc(x, key):
                return F.conv2d(torch.cat([torch.ones_like(x[:, :1]) * t, x], 1), *parts[key], padding=1)

            return gn(cc(torch.relu(gn(cc(torch.relu(gn(h, "norm1")), "conv1"), "norm2")), "conv2"), "norm3")

    head_norm, _, _, dense = model.head
    dynamics = Dynamics()
    x0 = torch.tensor(np.transpose(h0.numpy(), (0, 3, 1, 2)).copy())
    y = torch.tensor(labels.astype(np.int64))
    rows = []
    for reduction in ("mean", "sum"):
        x = x0.clone().requires_grad_(True)
        for p in dynamics.params:
            p.grad = None
        dynamics.nfe = 0
        ys = odeint_adjoint(dynamics, x, torch.tensor([0.0, 1.0]), rtol=tol, atol=tol, method="dopri5")
        nfe_forward = dynamics.nfe
        hidden = torch.relu(F.group_norm(ys[-1], head_norm.groups, torch.tensor(head_norm.gamma.numpy()),
                                         torch.tensor(head_norm.beta.numpy()), eps=1e-5))
        logits = hidden.mean((2, 3)) @ torch.tensor(dense.kernel.numpy()) + torch.tensor(dense.bias.numpy())
        F.cross_entropy(logits, y, reduction=reduction).backward()
        grads = [np.transpose(x.grad.numpy(), (0, 2, 3, 1))]
        for v in func.trainable_variables:
            g = keras_of[id(v)].grad.numpy()
            grads.append(np.transpose(g, (2, 3, 1, 0)) if g.ndim == 4 else g)
        gradient = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
        error = float("nan")
        if references and reduction in references:
            error = float(np.linalg.norm(gradient - references[reduction]) / np.linalg.norm(references[reduction]))
        rows.append({"name": f"torchdiffeq dopri5, {reduction} loss", "loss": reduction, "tol": tol,
                     "nfe_forward": nfe_forward, "nfe_backward": dynamics.nfe - nfe_forward,
                     "ratio": (dynamics.nfe - nfe_forward) / nfe_forward, "adjoint_rms": float("nan"),
                     "grad_rel_error": error, "seconds": float("nan")})
        print(f"  {rows[-1]['name']}: NFE {nfe_forward}/{rows[-1]['nfe_backward']}, gradient error {error:.2e}",
              flush=True)
    return rows


def trained_model(data: Any, steps: int, seed: int = 0, batch_size: int = 128) -> Any:
    """The Table 1 ODE-Net after ``steps`` SGD steps of the Table 1 protocol (lr 0.1, momentum 0.9)."""
    import keras
    import tensorflow as tf

    from experiments.mnist.models import build_model
    from experiments.mnist.training import make_step, random_crop, to_input

    model = build_model("odenet", seed=seed)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    step = make_step(model, optimizer, jit=True)
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
            if "failed" in r:
                lines.append(f"| {r['name']} | – | failed: {r['failed']} | – | – | – | – |")
                continue
            lines.append(f"| {r['name']} | {r['nfe_forward']} | {r['nfe_backward']} | {r['ratio']:.2f} | "
                         f"{r['adjoint_rms']:.2e} | {r['grad_rel_error']:.2e} | {r['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.mnist.backward_nfe``."""
    from experiments.cli import add_verbose_argument
    from experiments.mnist.data import add_data_arguments, data_dir_from_args, load_mnist
    from experiments.mnist.models import build_model
    from experiments.mnist.training import deterministic_ops, restore_model
    from odegrad.atomic import write_atomic

    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.backward_nfe", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--images", type=int, default=128, help="training images in the batch (default: 128)")
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the block's solves (default: 1e-3)")
    parser.add_argument("--ref-tol", type=float, default=1e-6,
                        help="tolerance of the reference gradient (default: 1e-6)")
    parser.add_argument("--run", default=None, help="Table 1 ODE-Net run directory for the trained weights")
    parser.add_argument("--train-steps", type=int, default=20, help="SGD steps for the trained weights without --run")
    parser.add_argument("--out", default=None, help="also write the tables (Markdown) and the rows (JSON beside it)")
    parser.add_argument("--peers", action="store_true", help="add torchdiffeq's odeint_adjoint on the same block")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    command = ("python -m experiments.mnist.backward_nfe " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    data = load_mnist(data_dir_from_args(args))
    images, labels = data.x_train[: args.images], data.y_train[: args.images]
    rows = settings(args.images, args.tol)
    tables = {}
    with deterministic_ops():
        print("fresh weights", flush=True)
        tables["fresh"] = study(build_model("odenet", seed=0), images, labels, rows, args.ref_tol, peers=args.peers)
        if args.run:
            trained, _ = restore_model(args.run)
            label = f"trained ({args.run})"
        else:
            trained = trained_model(data, args.train_steps)
            label = f"trained ({args.train_steps} SGD steps)"
        print(f"{label} weights", flush=True)
        tables[label] = study(trained, images, labels, rows, args.ref_tol, peers=args.peers)
    text = render(tables, command, args.ref_tol)
    print(text)
    if args.out:
        write_atomic(args.out, text + "\n")
        write_atomic(os.path.splitext(args.out)[0] + ".json", json.dumps({"command": command, "tables": tables}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(__spec__.name, main))
