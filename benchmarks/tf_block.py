"""Time the Table 1 ODE block on the TensorFlow path, against torchdiffeq when installed.

``python -m benchmarks.tf_block [--repeats N] [--tol 1e-3] [--batch 128] [--out FILE]``

The block is the paper's MNIST ODE block: a batch of 64×6×6 feature maps (float32) and the
dynamics GroupNorm, ReLU, 3×3 convolution with time concatenated, twice, then GroupNorm
(:class:`experiments.mnist.models.ODEFunc`). Reported, as medians:

* one evaluation of the dynamics as a compiled TensorFlow function (tensors in and out), with
  XLA (``jit_compile=True``, the default) and as a plain graph;
* one evaluation through the numpy bridge the solver calls (float64 array in, array out);
* per solver evaluation inside ``odegrad.tf.odeint``: forward time / forward NFE, and its
  overhead over one evaluation (the scipy<->TF bridge plus the solver's own work; target < 10%);
* forward and forward+backward wall time and NFE of ``odegrad.tf.odeint`` (implicit Adams);
* the same with ``adjoint_seminorm=True`` (the parameter adjoints leave the error control);
* the same for torchdiffeq's ``odeint_adjoint`` (dopri5) on an identical PyTorch block, when
  torch and torchdiffeq are installed (optional, benchmark-only dependencies).

Repetitions are interleaved across the implementations, and CPU times are given beside wall
times: on a shared machine only figures of one run compare.

Peak memory against the number of solver steps is measured by ``python -m experiments.mnist.memory``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

Case = dict[str, Callable[[], object]]
"""The timed callables of one implementation: ``eval``, ``bridge`` (optional), ``forward``,
``forward_backward``; ``nfe`` (untimed) returns the forward and backward NFE."""

TIMED = ("eval", "bridge", "forward", "forward_backward")
EVAL_CALLS = 10
"""Evaluations timed per round for ``eval`` and ``bridge`` (each is short)."""


def odegrad_case(batch: int, tol: float, seminorm: bool = False, jit_compile: bool = True) -> Case:
    """The TF block with odegrad: evaluation, bridge, forward and forward+backward callables."""
    import tensorflow as tf

    from experiments.mnist.models import ODEFunc
    from odegrad.tf import compile_dynamics, odeint

    tf.keras.utils.set_random_seed(0)
    func = ODEFunc()
    x = tf.random.normal([batch, 6, 6, 64])
    t = tf.constant([0.0, 1.0])
    func(t[0], x)
    compiled = tf.function(lambda tt, h: func(tt, h), jit_compile=jit_compile)
    options = dict(rtol=tol, atol=tol, method="adams", adjoint_seminorm=seminorm,
                   variables=func.trainable_variables, jit_compile=jit_compile, full_output=True)

    def forward():
        return odeint(func, x, t, **options)[1]

    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            ys, info = odeint(func, x, t, **options)
            loss = tf.reduce_sum(ys[-1] ** 2)
        tape.gradient(loss, [x] + func.trainable_variables)
        return info

    # what the solver calls: float64 NumPy in and out
    def flat(y, tt):
        return tf.reshape(func(tf.cast(tt, y.dtype), tf.reshape(y, x.shape)), [-1])

    bridged = compile_dynamics(flat, int(tf.size(x)), x.dtype, jit_compile)
    bridge_fn = lambda y, tt: bridged(y, tt).numpy()  # noqa: E731
    state = x.numpy().astype("float64").ravel()

    def nfe():
        fwd, both = forward(), forward_backward()
        return fwd.forward.nfe, both.backward.nfe

    return {"eval": lambda: compiled(t[0], x).numpy(), "bridge": lambda: bridge_fn(state, 0.0),
            "forward": forward, "forward_backward": forward_backward, "nfe": nfe}


def torchdiffeq_case(batch: int, tol: float) -> Case | None:
    """The same block in PyTorch with torchdiffeq's ``odeint_adjoint``, or ``None`` if absent."""
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

    def evaluate():
        with torch.no_grad():
            func(t[0], x)

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

    def nfe():
        return forward(), forward_backward()[1]

    return {"eval": evaluate, "forward": forward, "forward_backward": forward_backward, "nfe": nfe}


def solver_floor(batch: int, tol: float, repeats: int) -> dict[str, float]:
    """VODE Adams's own work per evaluation on a state of the block's size (the overhead's floor).

    The solve of ``dy/dt = -k y`` (rates ``k`` in [0.5, 2], float64, ``batch`` × 6 × 6 × 64
    entries) over [0, 1] at the block's tolerance, less its evaluations of ``f`` (timed alone):
    what a host-side solver costs per evaluation before any bridge or dynamics. Medians of
    ``repeats`` solves, in seconds.
    """
    import numpy as np

    from odegrad import solvers

    n = batch * 6 * 6 * 64
    rng = np.random.default_rng(0)
    y0, rates = rng.standard_normal(n), -rng.uniform(0.5, 2.0, n)
    f = lambda y, t: rates * y  # noqa: E731
    opts = solvers.SolverOptions(method="adams", rtol=tol, atol=tol)
    solves, evals = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        _, stats = solvers.solve(f, y0, np.array([0.0, 1.0]), opts)
        solves.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(stats.nfe):
            f(y0, 0.0)
        evals.append((time.perf_counter() - start) / stats.nfe)
    solve_s, f_s = statistics.median(solves[1:]), statistics.median(evals[1:])
    return {"n": n, "nfe": stats.nfe, "solve_s": solve_s, "f_s": f_s,
            "per_eval_s": solve_s / stats.nfe - f_s}


def run_cases(cases: dict[str, Case | None], repeats: int) -> dict[str, dict[str, float] | None]:
    """Time every case, interleaved: each round times each callable of each case once
    (``eval``/``bridge`` :data:`EVAL_CALLS` times), so load changes hit all cases alike.

    Returns medians in seconds (wall ``*_s`` and CPU time ``*_cpu_s``), NFE and the overhead of a
    solver evaluation (forward time / NFE) over one evaluation.
    """
    live = {name: case for name, case in cases.items() if case is not None}
    wall = {name: {k: [] for k in TIMED if k in case} for name, case in live.items()}
    cpu = {name: {k: [] for k in TIMED if k in case} for name, case in live.items()}
    nfe = {}
    for name, case in live.items():
        nfe[name] = case["nfe"]()  # also warms up (traces, compiles)
        for key in wall[name]:
            case[key]()
    for _ in range(repeats):
        for name, case in live.items():
            for key in wall[name]:
                calls = EVAL_CALLS if key in ("eval", "bridge") else 1
                for _ in range(calls):
                    cpu_start, start = time.process_time(), time.perf_counter()
                    case[key]()
                    wall[name][key].append(time.perf_counter() - start)
                    cpu[name][key].append(time.process_time() - cpu_start)
    rows: dict[str, dict[str, float] | None] = {name: None for name in cases}
    for name in live:
        row = {f"{k}_s": statistics.median(v) for k, v in wall[name].items()}
        row.update({f"{k}_cpu_s": statistics.median(v) for k, v in cpu[name].items()})
        row.setdefault("bridge_s", float("nan"))
        row["nfe_forward"], row["nfe_backward"] = nfe[name]
        row["per_solver_eval_s"] = row["forward_s"] / row["nfe_forward"]
        row["overhead"] = row["per_solver_eval_s"] / row["eval_s"] - 1.0
        rows[name] = row
    return rows


def render(rows: dict[str, dict[str, float] | None], command: str, load: tuple[str, str] = ("?", "?"),
           floor: dict[str, float] | None = None) -> str:
    """The Markdown table of the measurements, with the command, machine and load average, and the
    solver's own work per evaluation (:func:`solver_floor`) where measured."""
    lines = [
        f"`{command}` on {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load[0]} before, {load[1]} after",
        "",
        "Medians of interleaved repetitions, wall time (CPU time of the process in brackets).",
        "",
        "| implementation | one eval (ms) | eval via numpy bridge (ms) | per solver eval (ms) "
        "| bridge+solver overhead | forward (s) | fwd+bwd (s) | fwd NFE | bwd NFE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if r is None:
            lines.append(f"| {name} | not installed | | | | | | | |")
            continue
        bridge = "–" if r["bridge_s"] != r["bridge_s"] else f"{1e3 * r['bridge_s']:.2f} ({1e3 * r['bridge_cpu_s']:.2f})"
        lines.append(
            f"| {name} | {1e3 * r['eval_s']:.2f} ({1e3 * r['eval_cpu_s']:.2f}) | {bridge} | "
            f"{1e3 * r['per_solver_eval_s']:.2f} | {100 * r['overhead']:.1f}% | "
            f"{r['forward_s']:.3f} ({r['forward_cpu_s']:.3f}) | "
            f"{r['forward_backward_s']:.3f} ({r['forward_backward_cpu_s']:.3f}) | "
            f"{r['nfe_forward']} | {r['nfe_backward']} |"
        )
    ours = rows.get(XLA)
    if floor is not None and ours:
        lines += ["", f"VODE Adams's own work on a state of this size ({floor['n']:,} entries, dy/dt = -k y, "
                  f"{floor['nfe']} NFE, f timed alone and subtracted): {1e3 * floor['per_eval_s']:.2f} ms per "
                  f"evaluation, {100 * floor['per_eval_s'] / ours['eval_s']:.1f}% of one XLA evaluation of the "
                  "block: the floor of the overhead column for a solver on the host"]
    theirs = rows.get(TORCH)
    if theirs:
        for name in (XLA, GRAPH):
            ours = rows.get(name)
            if ours:
                both = ours["forward_backward_s"] / theirs["forward_backward_s"]
                lines += ["", f"{name} / torchdiffeq: fwd+bwd time {both:.2f}; "
                          f"one evaluation {ours['eval_s'] / theirs['eval_s']:.2f} (CPU time "
                          f"{ours['eval_cpu_s'] / theirs['eval_cpu_s']:.2f})"]
    return "\n".join(lines)


XLA = "odegrad.tf (adams, adjoint, XLA)"
GRAPH = "odegrad.tf (adams, adjoint, graph)"
SEMINORM = "odegrad.tf (adams, adjoint, XLA, seminorm)"
TORCH = "torchdiffeq odeint_adjoint (dopri5)"


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tf_block", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported (default: %(default)s)")
    parser.add_argument("--tol", type=float, default=1e-3, help="solver rtol = atol (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=128, help="feature maps per batch (default: %(default)s)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.tf_block " + " ".join(argv if argv is not None else sys.argv[1:])
    before = _load()
    cases = {
        XLA: odegrad_case(args.batch, args.tol, jit_compile=True),
        GRAPH: odegrad_case(args.batch, args.tol, jit_compile=False),
        SEMINORM: odegrad_case(args.batch, args.tol, seminorm=True, jit_compile=True),
        TORCH: torchdiffeq_case(args.batch, args.tol),
    }
    rows = run_cases(cases, args.repeats)
    floor = solver_floor(args.batch, args.tol, args.repeats)
    table = render(rows, command.strip(), (before, _load()), floor)
    print(table)
    if args.out:
        from odegrad.atomic import write_atomic

        write_atomic(args.out, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
