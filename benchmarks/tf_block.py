"""Time the Table 1 ODE block on the TensorFlow path, against torchdiffeq when installed.

``python -m benchmarks.tf_block [--repeats N] [--tol 1e-3] [--batch 128] [--out FILE]``

The block is the paper's MNIST ODE block: a batch of 64×6×6 feature maps (float32) and the
dynamics GroupNorm, ReLU, 3×3 convolution with time concatenated, twice, then GroupNorm
(:class:`experiments.models.ODEFunc`). Reported, as medians:

* one evaluation of the dynamics as a compiled TensorFlow function (tensors in and out);
* one evaluation through the numpy bridge the solver calls (float64 array in, array out);
* per solver evaluation inside ``odegrad.tf.odeint``: forward time / forward NFE, and its
  overhead over one evaluation (the scipy<->TF bridge plus the solver's own work; target < 10%);
* forward and forward+backward wall time and NFE of ``odegrad.tf.odeint`` (implicit Adams);
* the same with ``adjoint_seminorm=True`` (the parameter adjoints leave the error control);
* the same for torchdiffeq's ``odeint_adjoint`` (dopri5) on an identical PyTorch block, when
  torch and torchdiffeq are installed (optional, benchmark-only dependencies).

Peak memory against the number of solver steps is measured by ``python -m experiments.memory``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_odegrad(batch: int, tol: float, repeats: int, seminorm: bool = False) -> dict[str, float]:
    """Evaluation, forward and forward+backward figures of the TF block with odegrad."""
    import tensorflow as tf

    from experiments.models import ODEFunc
    from odegrad.tf import compile_dynamics, flatten_dynamics, odeint

    tf.keras.utils.set_random_seed(0)
    func = ODEFunc()
    x = tf.random.normal([batch, 6, 6, 64])
    t = tf.constant([0.0, 1.0])
    func(t[0], x)
    compiled = tf.function(lambda tt, h: func(tt, h))
    evaluation = _median_seconds(lambda: compiled(t[0], x).numpy(), 10 * repeats)

    def forward():
        ys, info = odeint(func, x, t, rtol=tol, atol=tol, method="adams", adjoint_seminorm=seminorm,
                          variables=func.trainable_variables, full_output=True)
        return info

    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            ys, info = odeint(func, x, t, rtol=tol, atol=tol, method="adams", adjoint_seminorm=seminorm,
                              variables=func.trainable_variables, full_output=True)
            loss = tf.reduce_sum(ys[-1] ** 2)
        tape.gradient(loss, [x] + func.trainable_variables)
        return info

    info = forward()
    bridge_fn = compile_dynamics(flatten_dynamics(func, x.shape), int(tf.size(x)), x.dtype)  # what the solver calls
    state = x.numpy().astype("float64").ravel()
    bridge = _median_seconds(lambda: bridge_fn(state, 0.0), 10 * repeats)
    fwd = _median_seconds(forward, repeats)
    both_info = forward_backward()
    both = _median_seconds(forward_backward, repeats)
    per_eval = fwd / info.forward.nfe
    return {
        "eval_s": evaluation, "bridge_s": bridge, "per_solver_eval_s": per_eval,
        "overhead": per_eval / evaluation - 1.0, "forward_s": fwd, "forward_backward_s": both,
        "nfe_forward": info.forward.nfe, "nfe_backward": both_info.backward.nfe,
    }


def measure_torchdiffeq(batch: int, tol: float, repeats: int) -> dict[str, float] | None:
    """The same figures for torchdiffeq's ``odeint_adjoint``, or ``None`` if not installed."""
    try:
        import torch
        import torch.nn as nn
        from torchdiffeq import odeint_adjoint
    except ImportError:
        return None

    class ConcatConv2d(nn.Module):
        def __init__(self, dim_in: int, dim_out: int):
            super().__init__()
            self.conv = nn.Conv2d(dim_in + 1, dim_out, 3, padding=1)

        def forward(self, t, x):
            return self.conv(torch.cat([torch.ones_like(x[:, :1]) * t, x], 1))

    class ODEFunc(nn.Module):
        def __init__(self, dim: int = 64):
            super().__init__()
            self.norm1, self.norm2, self.norm3 = (nn.GroupNorm(32, dim) for _ in range(3))
            self.conv1, self.conv2 = ConcatConv2d(dim, dim), ConcatConv2d(dim, dim)
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            out = self.conv1(t, torch.relu(self.norm1(x)))
            return self.norm3(self.conv2(t, torch.relu(self.norm2(out))))

    torch.manual_seed(0)
    func = ODEFunc()
    x = torch.randn(batch, 64, 6, 6)
    t = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        evaluation = _median_seconds(lambda: func(t[0], x), 10 * repeats)

    def forward():
        func.nfe = 0
        with torch.no_grad():
            odeint_adjoint(func, x, t, rtol=tol, atol=tol, method="dopri5")
        return func.nfe

    def forward_backward():
        func.nfe = 0
        xr = x.clone().requires_grad_(True)
        ys = odeint_adjoint(func, xr, t, rtol=tol, atol=tol, method="dopri5")
        n_forward = func.nfe
        (ys[-1] ** 2).sum().backward()
        return n_forward, func.nfe - n_forward

    nfe_forward = forward()
    fwd = _median_seconds(forward, repeats)
    _, nfe_backward = forward_backward()
    both = _median_seconds(forward_backward, repeats)
    return {
        "eval_s": evaluation, "bridge_s": float("nan"), "per_solver_eval_s": fwd / nfe_forward,
        "overhead": float("nan"),
        "forward_s": fwd, "forward_backward_s": both, "nfe_forward": nfe_forward,
        "nfe_backward": nfe_backward,
    }


def render(rows: dict[str, dict[str, float] | None], command: str) -> str:
    """The Markdown table of the measurements, with the command and machine."""
    lines = [
        f"`{command}` on {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        "| implementation | one eval (ms) | eval via numpy bridge (ms) | per solver eval (ms) "
        "| bridge+solver overhead | forward (s) | fwd+bwd (s) | fwd NFE | bwd NFE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if r is None:
            lines.append(f"| {name} | not installed | | | | | | | |")
            continue
        overhead = "–" if r["overhead"] != r["overhead"] else f"{100 * r['overhead']:.1f}%"
        bridge = "–" if r["bridge_s"] != r["bridge_s"] else f"{1e3 * r['bridge_s']:.2f}"
        lines.append(
            f"| {name} | {1e3 * r['eval_s']:.2f} | {bridge} | {1e3 * r['per_solver_eval_s']:.2f} | {overhead} | "
            f"{r['forward_s']:.3f} | {r['forward_backward_s']:.3f} | {r['nfe_forward']} | {r['nfe_backward']} |"
        )
    ours, theirs = rows.get("odegrad.tf (adams, adjoint)"), rows.get("torchdiffeq odeint_adjoint (dopri5)")
    if ours and theirs:
        ratio = ours["forward_backward_s"] / theirs["forward_backward_s"]
        lines += ["", f"fwd+bwd time odegrad / torchdiffeq: {ratio:.2f}; "
                  f"one evaluation TF / PyTorch: {ours['eval_s'] / theirs['eval_s']:.2f}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tf_block", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.tf_block " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = {
        "odegrad.tf (adams, adjoint)": measure_odegrad(args.batch, args.tol, args.repeats),
        "odegrad.tf (adams, adjoint, seminorm)": measure_odegrad(args.batch, args.tol, args.repeats, True),
        "torchdiffeq odeint_adjoint (dopri5)": measure_torchdiffeq(args.batch, args.tol, args.repeats),
    }
    table = render(rows, command.strip())
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
