"""Where odegrad's gradient time goes: ``python -m benchmarks.profile [--problems ...] [--top N]``.

For each problem it prints

* forward and gradient wall time, forward and backward NFE (``odegrad.record_stats``);
* per-evaluation costs, best of 5 interleaved rounds: the plain numpy dynamics (what a forward
  or finite-difference solve pays), odegrad's augmented dynamics (what the checkpoint adjoint's
  backward solve pays) and its sensitivity dynamics (what forward sensitivities pay), each with
  compiled derivative evaluations (``odegrad.compiled``, JAX; one XLA call, and one direct
  evaluation of ``f`` in ``GUARD_EVERY`` as their check, timed as inside one solve) and with
  autograd's (one trace and one vectorised backward pass), and autograd ``make_vjp`` of the raw
  user function with respect to ``(y, t, p)``, ``(y, p)`` and ``y`` alone (the floor without odegrad's wrapper); then each derived
  evaluation as a multiple of the numpy one;
* a cProfile of one gradient, by cumulative time, restricted to the top ``--top`` entries.

Compiled evaluations are measured in their steady state: ``odegrad.compiled.COMPILE_AFTER`` is set
to 0, so each structure of ``f`` is compiled at its first derived evaluation (in the warm-up).

The derived dynamics are captured by wrapping ``odegrad.solvers.solve`` for one gradient: the
profile relies on that internal entry point (the solve every odegrad solve goes through).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import time

import numpy as np

from . import cases


def _capture_derived(problem: cases.Case, variant: str, compiled: bool = True):
    """The dynamics of the last derived solve of one gradient (augmented or sensitivity), with
    compiled derivative evaluations where JAX is installed (``compiled``) or autograd's."""
    import contextlib

    import autograd
    import autograd.numpy as anp

    import odegrad
    import odegrad.compiled
    import odegrad.solvers as solvers

    captured = []
    original = solvers.solve

    def spy(fun, y0, t, opts, jac=None):
        captured.append((fun, np.array(y0)))
        return original(fun, y0, t, opts, jac)

    solvers.solve = spy
    try:
        with contextlib.nullcontext() if compiled else odegrad.compiled.disabled():
            autograd.grad(lambda q: anp.sum(odegrad.odeint(
                lambda y, t, p: problem.rhs(y, t, p, anp), problem.y0, problem.t[:3], args=(q,),
                rtol=problem.rtol, atol=problem.atol, **cases.variant_kwargs(variant))))(problem.p0)
    finally:
        solvers.solve = original
    return captured[-1]


def _repeat(fn, calls: int) -> None:
    for _ in range(calls):
        fn()


def per_eval_costs(problem: cases.Case, variant: str = "lsoda", rounds: int = 5) -> dict[str, float]:
    """Seconds per call of the dynamics, of the adjoint's and of the sensitivities' dynamics."""
    import autograd.numpy as anp
    from autograd import make_vjp

    from odegrad.compiled import checked_solve

    p, t = problem.p0, float(problem.t[1])
    y, a = problem.y0 + 0.1, np.ones(problem.y0.size)
    method = variant.split("+")[0]
    derived = {}
    for backend, on in (("compiled", True), ("autograd", False)):
        aug, s_aug = _capture_derived(problem, f"{method}+checkpoint", on)
        derived[f"odegrad augmented dynamics (checkpoint), {backend}"] = functools.partial(aug, s_aug + 0.01, t)
        if problem.y0.size * (1 + p.size) <= 2000:
            sens, s_sens = _capture_derived(problem, f"{method}+forward", on)
            derived[f"odegrad sensitivity dynamics (forward), {backend}"] = functools.partial(sens, s_sens + 0.01, t)

    def f_ag(yy, tt, pp):
        return problem.rhs(yy, tt, pp, anp)

    def raw_ytp():
        vjp, dy = make_vjp(f_ag, argnum=(0, 1, 2))(y, t, p)
        v_y, v_t, v_p = vjp(-a)
        return np.concatenate([dy, v_y, [v_t], v_p])

    def raw_yp():
        vjp, dy = make_vjp(lambda yy, pp: f_ag(yy, t, pp), argnum=(0, 1))(y, p)
        v_y, v_p = vjp(-a)
        return np.concatenate([dy, v_y, v_p])

    def raw_y():
        vjp, dy = make_vjp(lambda yy: f_ag(yy, t, p))(y)
        return np.concatenate([dy, vjp(-a)])

    variants = {
        "dynamics, numpy": lambda: problem.rhs(y, t, p, np),
        "dynamics, autograd.numpy (untraced)": lambda: f_ag(y, t, p),
        **derived,
        "raw make_vjp wrt (y, t, p) + vjp": raw_ytp,
        "raw make_vjp wrt (y, p) + vjp": raw_yp,
        "raw make_vjp wrt y + vjp": raw_y,
    }
    calls = 50 if p.size > 1000 else 200
    best = {k: float("inf") for k in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            checked_solve(functools.partial(_repeat, fn, calls))   # as inside one solve
            best[key] = min(best[key], (time.perf_counter() - t0) / calls)
    return best


def gradient_profile(problem: cases.Case, variant: str = "lsoda", top: int = 25) -> tuple[dict, str]:
    import autograd
    import autograd.numpy as anp

    import odegrad

    kwargs = cases.variant_kwargs(variant)

    def loss(q):
        ys = odegrad.odeint(lambda y, t, p: problem.rhs(y, t, p, anp), problem.y0, problem.t,
                            args=(q,), rtol=problem.rtol, atol=problem.atol, **kwargs)
        return problem.loss(ys, problem.data, anp)

    value_and_grad = autograd.value_and_grad(loss)
    value_and_grad(problem.p0)
    t0 = time.perf_counter()
    loss(problem.p0)
    t_fwd = time.perf_counter() - t0
    with odegrad.record_stats() as rec:
        t0 = time.perf_counter()
        value_and_grad(problem.p0)
        t_grad = time.perf_counter() - t0
    profiler = cProfile.Profile()
    profiler.enable()
    value_and_grad(problem.p0)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    summary = {"forward s": t_fwd, "gradient s": t_grad, "fwd NFE": rec.forward.nfe,
               "bwd NFE": rec.backward.nfe, "bwd solves": rec.backward.nsolves,
               "bwd nje": rec.backward.nje, "method": ", ".join(sorted(set(rec.gradient_methods)))}
    return summary, out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["kinetics", "spiral-mlp"], choices=list(cases.CASES),
                        help="problems to profile (default: kinetics spiral-mlp)")
    parser.add_argument("--variant", default=None, help="odegrad variant, e.g. lsoda, adams+seminorm")
    parser.add_argument("--top", type=int, default=25, help="cProfile entries shown (default: %(default)s)")
    args = parser.parse_args(argv)
    import odegrad.compiled

    odegrad.compiled.COMPILE_AFTER = 0      # steady state: compile at the first derived evaluation
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.problems:
        problem = cases.get(name)
        variant = args.variant or problem.odegrad_variants[0]
        print(f"## {name} (odegrad:{variant}; n={problem.y0.size}, P={problem.n_params})")
        summary, text = gradient_profile(problem, variant, args.top)
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in summary.items()))
        bwd = summary["gradient s"] - summary["forward s"]
        if summary["bwd NFE"]:
            print(f"  backward time per backward evaluation: {bwd / summary['bwd NFE'] * 1e6:.0f} us")
        costs = per_eval_costs(problem, variant)
        for key, value in costs.items():
            print(f"  {key:52s} {value * 1e6:9.1f} us/call")
        for key, value in costs.items():
            if key.startswith("odegrad"):
                print(f"  {key:52s} {value / costs['dynamics, numpy']:9.1f} x numpy dynamics")
        print(text)


if __name__ == "__main__":
    main()
