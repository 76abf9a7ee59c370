"""One latent-ODE training step (Table 2's model, full batch): ``python -m benchmarks.latent_step``.

Times ``value_and_grad`` of the negative ELBO of :mod:`experiments.systems.latent_ode` on its 800
training spirals, with the dynamics' ELU as the experiment writes it (``maximum(a, 0) +
expm1(minimum(a, 0))``, whose adjoint derivative evaluations compile) and as a ``where`` on
``a > 0`` (the mask is computed from the state, so :mod:`odegrad.compiled` keeps the trace on
autograd), in one process, each step inside :func:`odegrad.compiled.at_once` as the training runs
them, and prints the ratio. Each variant is warmed up (compiled) first; the best of ``--rounds``
interleaved rounds of ``--steps`` steps is kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import autograd.numpy as anp
import numpy as np

from experiments.systems import latent_ode as lo
from experiments.systems import latent_ode_data as ld
from odegrad import compiled


def _elu_where(a):
    return anp.where(a > 0, a, anp.exp(anp.minimum(a, 0.0)) - 1.0)


def _step_seconds(step, steps: int) -> float:
    start = time.perf_counter()
    for k in range(steps):
        step(k)
    return (time.perf_counter() - start) / steps


def _best_seconds(data: dict, n_obs: int, steps: int, rounds: int, variants: dict) -> dict[str, float]:
    """Best seconds per training step of each ELU of ``variants`` at ``n_obs`` observations."""
    run = lo.Run("latent_ode", data, n_obs, 0, 800, 0.01, Path("unused"))
    flat, objective = run.packer.pack(run.init), run.objective()

    def step(k):
        objective(flat, np.random.default_rng(k))

    best = {name: float("inf") for name in variants}
    with compiled.at_once():
        for rnd in range(rounds + 1):
            for name, elu in variants.items():
                lo._elu = elu
                try:
                    seconds = _step_seconds(step, 2 if rnd == 0 else steps)
                finally:
                    lo._elu = variants["compilable ELU"]
                if rnd:
                    best[name] = min(best[name], seconds)
    return best


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    """Print and return the seconds per step of both ELUs at each ``--n-obs``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.latent_step", description=__doc__.split("\n")[0])
    ap.add_argument("--n-obs", type=int, nargs="+", default=[30, 100],
                    help="observed points per spiral, one timing each (default: 30 100)")
    ap.add_argument("--steps", type=int, default=5, help="training steps per round (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds after the warm-up; the best is kept (default: %(default)s)")
    args = ap.parse_args(argv)
    data = ld.make_spirals(1000, seed=0)
    variants = {"compilable ELU": lo._elu, "where ELU": _elu_where}
    results: dict[int, dict[str, float]] = {}
    for n_obs in args.n_obs:
        best = results[n_obs] = _best_seconds(data, n_obs, args.steps, args.rounds, variants)
        print(f"n={n_obs:>3}: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in best.items())
              + f"; where / compilable = {best['where ELU'] / best['compilable ELU']:.2f}x", flush=True)
    return results


if __name__ == "__main__":
    main()
