"""Time the README Quickstart: ``python -m benchmarks.quickstart [--adjoint MODE] [--repeats N]``.

The Quickstart fits Lotka-Volterra's four rates with ``scipy.optimize.minimize`` (BFGS, gradient
by ``autograd.grad`` through ``odegrad.odeint``) and then takes the exact Hessian of the loss at
the fit. This script runs exactly that code (the README's data, start point and tolerances) and
prints the wall time (and this process's CPU time, steadier on a shared machine) of the fit and
of the Hessian, the number of loss and gradient calls, the
forward and backward NFE (``odegrad.record_stats``), the fitted rates and the Newton step.

``--adjoint`` passes an ``adjoint=`` option to every ``odeint`` call (default: none, i.e. what the
README runs). The fastest of ``--repeats`` runs is reported for each part. The first run on a
machine compiles its programs; later runs read them from the disk cache
(:mod:`odegrad.compile_cache`; ``ODEGRAD_CACHE_DIR=0`` to time a first run again): the last line
says which happened.
"""

from __future__ import annotations

import argparse
import os
import time

import autograd.numpy as np
import numpy as onp
from autograd import grad, hessian
from scipy.optimize import minimize

from odegrad import compile_cache, odeint, record_stats


def lotka_volterra(y, t, a, b, c, d):
    prey, pred = y[0], y[1]
    return np.array([a * prey - b * prey * pred, d * prey * pred - c * pred])


def make_loss(adjoint: str | None):
    """The Quickstart's loss, with ``adjoint`` passed to ``odeint`` when it is given."""
    t = np.linspace(0.0, 15.0, 31)
    y0 = np.array([10.0, 5.0])
    noise = onp.exp(0.05 * onp.random.default_rng(0).standard_normal((31, 2)))
    data = odeint(lotka_volterra, y0, t, args=(1.1, 0.4, 0.4, 0.1)) * noise
    extra = {} if adjoint is None else {"adjoint": adjoint}

    def loss(log_p):
        p = np.exp(log_p)
        ys = odeint(lotka_volterra, y0, t, args=(p[0], p[1], p[2], p[3]), rtol=1e-8, atol=1e-8,
                    **extra)
        return np.sum((np.log(ys) - np.log(data)) ** 2)

    return loss


def run_once(adjoint: str | None) -> dict:
    """One Quickstart: the BFGS fit, then the Hessian and the Newton step at the fit."""
    loss = make_loss(adjoint)
    with record_stats() as fit_rec:
        t0, c0 = time.perf_counter(), time.process_time()
        fit = minimize(loss, np.log([1.0, 0.5, 0.5, 0.2]), jac=grad(loss), method="BFGS")
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    with record_stats() as hess_rec:
        t0, c0 = time.perf_counter(), time.process_time()
        H = hessian(loss)(fit.x)
        t_hess, c_hess = time.perf_counter() - t0, time.process_time() - c0
    newton_step = onp.linalg.solve(H, grad(loss)(fit.x))
    return {"fit s": t_fit, "hessian s": t_hess, "fit cpu s": c_fit, "hessian cpu s": c_hess,
            "rates": onp.exp(fit.x), "nfev": fit.nfev,
            "njev": fit.njev, "fit fwd NFE": fit_rec.forward.nfe, "fit bwd NFE": fit_rec.backward.nfe,
            "hessian fwd NFE": hess_rec.forward.nfe, "hessian bwd NFE": hess_rec.backward.nfe,
            "newton step": newton_step, "H": H}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quickstart",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--adjoint", default=None, help="adjoint= of every odeint call (default: none)")
    parser.add_argument("--repeats", type=int, default=1, help="runs; the fastest of each part is reported (default: 1)")
    args = parser.parse_args(argv)
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs = [run_once(args.adjoint) for _ in range(args.repeats)]
    best_fit = min(r["fit s"] for r in runs)
    best_hess = min(r["hessian s"] for r in runs)
    cpu_fit = min(r["fit cpu s"] for r in runs)
    cpu_hess = min(r["hessian cpu s"] for r in runs)
    r = runs[0]
    label = "(README default)" if args.adjoint is None else f"adjoint={args.adjoint!r}"
    print(f"Quickstart {label}: fit {best_fit:.2f} s ({r['nfev']} loss, {r['njev']} gradient calls; "
          f"NFE forward {r['fit fwd NFE']}, backward {r['fit bwd NFE']}), Hessian {best_hess:.2f} s "
          f"(NFE forward {r['hessian fwd NFE']}, backward {r['hessian bwd NFE']}), "
          f"total {best_fit + best_hess:.2f} s; CPU time of this process: fit {cpu_fit:.2f} s, "
          f"Hessian {cpu_hess:.2f} s, total {cpu_fit + cpu_hess:.2f} s")
    print(f"rates {onp.array2string(r['rates'], precision=4)}, "
          f"Newton step {onp.array2string(r['newton step'], precision=3)}")
    print(f"Hessian diagonal {onp.array2string(onp.diag(r['H']), precision=6)}")
    stats, folder = compile_cache.STATS, compile_cache.directory()
    print(f"compiled programs: {stats['compiles']} compiled, {stats['hits']} read from the disk cache "
          f"({folder if folder is not None else 'off'}; a rerun reads what the first run compiled)")


if __name__ == "__main__":
    main()
