"""Time one ODE-Net training step of Table 1 along the old and the new paths, side by side.

``python -m benchmarks.odenet_step [--repeats N] [--batch 128] [--tol 1e-3] [--out FILE]``

The step is :func:`experiments.mnist.training.make_step` on :func:`experiments.mnist.models.build_model`
``("odenet")`` (batch 128 of MNIST-sized inputs, implicit Adams at rtol = atol = ``tol``),
under :func:`experiments.mnist.training.deterministic_ops` as in training. Four variants, each on its
own model built from the same seed (identical weights), with the learning rate 0 so that every
repetition solves the same problem:

* ``eager step, graph dynamics``: the path before this benchmark existed (the ODE-Net step ran
  eagerly and the solver's evaluations were plain ``tf.function`` graphs);
* ``compiled step, graph dynamics``: the step as one ``tf.function`` (solver via ``py_function``);
* ``eager step, XLA dynamics``;
* ``compiled step, XLA dynamics``: the default now;
* ``RK-Net (dopri5), compiled step``: the Table 1 RK-Net (:class:`experiments.mnist.models.RKBlock`,
  backpropagated through its stages) on the same batch, the yardstick of the ODE-Net's step (its
  NFE are forward evaluations only; the table's last line gives the ODE-Net's step over it).

Repetitions are interleaved across the variants (one step of each per round), so a change of
machine load affects all of them alike; the table gives medians, the NFE of the step, the wall
time per evaluation (step time over forward + backward NFE) and each variant's time relative to
the first. The machine's load average is printed before and after: the figures are only
comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Sequence

ODENET = "compiled step, XLA dynamics"
RKNET = "RK-Net (dopri5), compiled step"
VARIANTS = {
    "eager step, graph dynamics": ("odenet", False, False),
    "compiled step, graph dynamics": ("odenet", True, False),
    "eager step, XLA dynamics": ("odenet", False, True),
    ODENET: ("odenet", True, True),
    RKNET: ("rknet", True, True),
}
"""Name: (model, compiled step, XLA dynamics)."""


def measure(batch: int, tol: float, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per step, NFE and seconds per evaluation of each variant."""
    import keras
    import numpy as np
    import tensorflow as tf

    from experiments.mnist.models import build_model
    from experiments.mnist.training import deterministic_ops, make_step

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, 28, 28, 1), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch).astype(np.int32))
    with deterministic_ops():
        steps = {}
        for name, (model_name, jit, xla) in VARIANTS.items():
            model = build_model(model_name, seed=0, tol=tol, jit_compile=xla)
            optimizer = keras.optimizers.SGD(learning_rate=0.0, momentum=0.9)
            optimizer.build(model.trainable_variables)
            steps[name] = make_step(model, optimizer, jit)
            steps[name](x, y)  # trace and compile
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        nfe: dict[str, tuple[int, int]] = {}
        for _ in range(repeats):
            for name, step in steps.items():
                cpu_start, start = time.process_time(), time.perf_counter()
                loss, _, nfe_forward, nfe_backward = step(x, y)
                float(loss)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
                nfe[name] = (nfe_forward, nfe_backward)
    rows = {}
    for name in steps:
        step_s = statistics.median(wall[name])
        rows[name] = {"step_s": step_s, "cpu_s": statistics.median(cpu[name]), "nfe_forward": nfe[name][0],
                      "nfe_backward": nfe[name][1], "per_eval_s": step_s / max(1, sum(nfe[name]))}
    return rows


def render(rows: dict[str, dict[str, float]], command: str, load: tuple[str, str]) -> str:
    """The Markdown table, with the command, the machine and its load."""
    base = next(iter(rows.values()))
    lines = [
        f"`{command}` on {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load[0]} before, {load[1]} after",
        "",
        "| variant | step (s) | CPU time (s) | NFE fwd/bwd | per evaluation (ms) | step / first row |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['step_s']:.2f} | {r['cpu_s']:.2f} | {r['nfe_forward']}/{r['nfe_backward']} | "
            f"{1e3 * r['per_eval_s']:.1f} | {r['step_s'] / base['step_s']:.2f} |"
        )
    ours, theirs = rows.get(ODENET), rows.get(RKNET)
    if ours and theirs:
        lines += ["", f"{ODENET} / {RKNET}: step {ours['step_s'] / theirs['step_s']:.2f}, CPU time "
                  f"{ours['cpu_s'] / theirs['cpu_s']:.2f}"]
    return "\n".join(lines)


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.odenet_step", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant; medians are reported (default: 3)")
    parser.add_argument("--batch", type=int, default=128, help="training images per step (default: 128)")
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the ODE block (default: 1e-3)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    command = ("python -m benchmarks.odenet_step " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    before = _load()
    rows = measure(args.batch, args.tol, args.repeats)
    table = render(rows, command, (before, _load()))
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
