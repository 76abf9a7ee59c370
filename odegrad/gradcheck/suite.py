"""The built-in suite of ODE problems behind ``python -m odegrad.gradcheck``."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import autograd.numpy as anp
import numpy as np
from autograd import grad as ag_grad

from ..integrate import odeint
from ..ivp import solve_ivp
from ..solvers import IVP_METHODS
from . import problems as ode
from .checks import CheckResult, check_grad, check_hessian, make_result

# ---------------------------------------------------------------------------
# Built-in suite of ODE problems for odegrad.odeint
# ---------------------------------------------------------------------------

#: Relative accuracy of the suite's solves (the problems' tolerance hints): the noise level of the
#: Taylor remainders; finite differences of such solves are accurate to roughly ``_SOLVE_TOL / step``.
_SOLVE_TOL = ode.TIGHT_TOL


@dataclass(frozen=True)
class SuiteRow:
    """One line of the suite's table.

    Attributes
    ----------
    problem : str
        Name of the ODE problem.
    derivative : str
        What was checked, e.g. ``"d/dy0"`` or ``"HVP d2/dtheta2"``.
    max_rel_error : float
        Largest relative error of the check.
    passed : bool
        Whether the check passed.
    seconds : float
        Wall-clock time of the check.
    detail : str
        Full report of the check (``str`` of its result).
    """

    problem: str
    derivative: str
    max_rel_error: float
    passed: bool
    seconds: float
    detail: str = field(repr=False)


@dataclass(frozen=True)
class SuiteEntry:
    """One entry of the suite: a named set of checks on problems of :mod:`odegrad.gradcheck.problems`.

    Attributes
    ----------
    name : str
        Short name, used by ``--problems``.
    description : str
        One-line description.
    run : callable
        ``run(tol, quick) -> list[SuiteRow]``: runs the problem's checks with
        relative-error tolerance ``tol``; ``quick`` runs a cheaper subset.
    """

    name: str
    description: str
    run: Callable[[float, bool], list[SuiteRow]]


def _timed(problem: str, derivative: str, check: Callable[[], CheckResult]) -> SuiteRow:
    """Run one check; an exception (e.g. a failed solve) makes a failed row."""
    start = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 -- reported in the table, not swallowed
        detail = f"{type(exc).__name__}: {exc}"
        return SuiteRow(problem, derivative, math.nan, False, time.perf_counter() - start, detail)
    return SuiteRow(
        problem, derivative, result.max_rel_error, result.passed, time.perf_counter() - start, str(result)
    )


def _compare(
    problem: str, derivative: str, ad: Callable[[], Any], exact: Any, tol: float
) -> SuiteRow:
    """Row comparing the autograd gradient ``ad()`` with a closed-form one, entry by entry."""

    def check() -> CheckResult:
        ad_arr = np.ravel(np.asarray(ad(), dtype=float))
        exact_arr = np.ravel(np.asarray(exact, dtype=float))
        floor = 1e-3 * float(np.linalg.norm(exact_arr))
        labels = [f"e{i}" for i in range(ad_arr.size)]
        return make_result("gradient", ad_arr, exact_arr, floor, tol, labels, 0.0, 0)

    return _timed(problem, derivative, check)


def _standard_checks(
    name: str,
    loss: Callable[[Any, Any, Any], Any],
    y0: Any,
    t: np.ndarray,
    theta: Any,
    tol: float,
    quick: bool,
    *,
    step: float = 1e-3,
    hessian: str | None = "theta",
    taylor_h0: float = 0.2,
    n_random: int = 2,
) -> list[SuiteRow]:
    """Gradient checks of ``loss(y0, t, theta)`` in each argument, plus a Hessian check."""
    kw = dict(step=step, n_random=n_random)
    rows = [
        _timed(name, "d/dy0", lambda: check_grad(lambda y: loss(y, t, theta), y0, tol=tol, **kw)),
        _timed(name, "d/dtheta", lambda: check_grad(lambda p: loss(y0, t, p), theta, tol=tol, **kw)),
        _timed(
            name, f"d/dt ({len(t)} times)", lambda: check_grad(lambda s: loss(y0, s, theta), t, tol=tol, **kw)
        ),
    ]
    if hessian is not None and not quick:
        fun, x = {
            "theta": (lambda p: loss(y0, t, p), theta),
            "y0": (lambda y: loss(y, t, theta), y0),
        }[hessian]
        rows.append(
            _timed(
                name,
                f"HVP d2/d{hessian}^2",
                lambda: check_hessian(
                    fun, x, tol=10 * tol, step=step, max_coordinates=3, n_random=1, h0=taylor_h0,
                    noise=_SOLVE_TOL,
                ),
            )
        )
    return rows


def _linear(tol: float, quick: bool) -> list[SuiteRow]:
    """y' = A y with y(t) = expm(A (t - t0)) y0; gradients also against the closed form."""
    problem = ode.LINEAR
    name, a0, y0, t = problem.name, problem.p, problem.y0, problem.t
    weights = np.random.default_rng(1).standard_normal((len(t), 3))

    def loss(y, s, a):
        return anp.sum(weights * odeint(problem.f, y, s, (a,), rtol=problem.rtol, atol=problem.atol))

    rows = _standard_checks(name, loss, y0, t, a0, tol, quick)
    exact_a, exact_y0, exact_t = ode.linear_gradients(a0, y0, t, weights)
    rows += [
        _compare(name, "d/dy0 vs expm", lambda: ag_grad(lambda y: loss(y, t, a0))(y0), exact_y0, tol),
        _compare(name, "d/dA vs expm_frechet", lambda: ag_grad(lambda a: loss(y0, t, a))(a0), exact_a, tol),
        _compare(name, "d/dt vs closed form", lambda: ag_grad(lambda s: loss(y0, s, a0))(t), exact_t, tol),
    ]
    return rows


def _decay(tol: float, quick: bool) -> list[SuiteRow]:
    """Scalar y' = -k y, y0 a float, k a float; closed form y0 exp(-k (t - t0))."""
    problem = ode.DECAY
    name, y0, k0, t = problem.name, problem.y0, problem.p, problem.t
    weights = np.array([0.3, -1.0, 2.0, 0.5])

    def loss(y, s, k):
        return anp.sum(weights * odeint(problem.f, y, s, (k,), rtol=problem.rtol, atol=problem.atol)[:, 0])

    rows = _standard_checks(name, loss, y0, t, k0, tol, quick)
    tau = t - t[0]
    e = problem.solution(1.0, t, k0)
    exact = (np.sum(weights * e), np.sum(-weights * tau * y0 * e))
    rows.append(
        _compare(
            name,
            "d/d(y0, k) vs closed form",
            lambda: ag_grad(lambda p: loss(p[0], t, p[1]))(np.array([y0, k0])),
            exact,
            tol,
        )
    )
    return rows


def _lotka_volterra(tol: float, quick: bool) -> list[SuiteRow]:
    """Predator-prey dynamics with four parameters."""
    problem = ode.LOTKA_VOLTERRA
    weights = np.random.default_rng(2).standard_normal((len(problem.t), 2))

    def loss(y, s, p):
        ys = odeint(problem.f, y, s, (p,), rtol=problem.rtol, atol=problem.atol)
        return anp.sum(weights * ys) / 10.0

    return _standard_checks(problem.name, loss, problem.y0, problem.t, problem.p, tol, quick, taylor_h0=0.02)


def _neural(tol: float, quick: bool) -> list[SuiteRow]:
    """Time-dependent tanh MLP dynamics, 4 states, parameters in a dict (76 floats)."""
    problem = ode.NEURAL_NET

    def loss(y, s, flat):
        ys = odeint(problem.f, y, s, (ode.neural_net_params(flat),), rtol=problem.rtol, atol=problem.atol)
        return anp.sum(ys[1:] ** 2) / 2.0

    return _standard_checks(problem.name, loss, problem.y0, problem.t, problem.p, tol, quick, hessian="y0")


def _stiff_kinetics(tol: float, quick: bool) -> list[SuiteRow]:
    """Stiff kinetics A <-> B (fast, rates 100 and 50), 2 B -> C (rate 1); log rate constants.

    The fast equilibrium makes the Jacobian's eigenvalues span two orders of
    magnitude. The backward reconstruction of ``y`` amplifies errors in the fast
    mode, so the solve stores ``checkpoints`` to restart it often.
    """
    problem = ode.REVERSIBLE_KINETICS
    weights = np.random.default_rng(4).standard_normal((len(problem.t), 3))

    def loss(y, s, lk):
        ys = odeint(problem.f, y, s, (lk,), method="lsoda", rtol=problem.rtol, atol=problem.atol, checkpoints=10)
        return anp.sum(weights * ys)

    return _standard_checks("stiff-kinetics", loss, problem.y0, problem.t, problem.p, tol, quick, hessian=None,
                            n_random=1)


def _robertson(tol: float, quick: bool) -> list[SuiteRow]:
    """Robertson's stiff chemical kinetics (eigenvalues down to -1e4), log rate constants.

    LSODA forwards, and the interpolating adjoint backwards: reconstructing y backwards is
    unstable on stiff dynamics, so the adjoint reads y from a dense forward solution.
    """
    loss = _robertson_loss(method="lsoda", adjoint="interpolate")
    check = lambda: check_grad(loss, ode.ROBERTSON.p, tol=tol, step=1e-3, n_random=1)  # noqa: E731
    return [_timed("robertson (lsoda, interpolate)", "d/dtheta", check)]


def _robertson_loss(**options: Any) -> Callable[[Any], Any]:
    """``sum(weights * scale * y(t_i))`` of Robertson's kinetics as a function of the log rate constants,
    solved with ``options`` (``y_B ~ 1e-5`` is scaled by 1e4 so that it matters)."""
    problem = ode.ROBERTSON
    scale = np.array([1.0, 1e4, 1.0])
    weights = np.random.default_rng(4).standard_normal((len(problem.t), 3))

    def loss(lk):
        ys = odeint(problem.f, problem.y0, problem.t, (lk,), rtol=problem.rtol, atol=problem.atol, mxstep=20000,
                    **options)
        return anp.sum(weights * scale * ys)

    return loss


def _adjoint_modes(tol: float, quick: bool) -> list[SuiteRow]:
    """Lotka-Volterra under each gradient method, all inputs at once; Robertson by default.

    ``checkpoint`` (the adjoint), ``forward`` (forward sensitivities) and ``auto`` (the default)
    must each give d/d(y0, t, theta) of the same loss; Hessian-vector products through forward
    sensitivities; and Robertson's stiff kinetics with no adjoint option at all.
    """
    problem = ode.LOTKA_VOLTERRA
    t = problem.t[:4]
    weights = np.random.default_rng(6).standard_normal((len(t), 2))

    def packed_loss(x, adjoint):
        ys = odeint(problem.f, x[:2], x[2:6], (x[6:],), rtol=problem.rtol, atol=problem.atol, adjoint=adjoint)
        return anp.sum(weights * ys) / 10.0

    x0 = np.concatenate([problem.y0, t, problem.p])
    rows = []
    for adjoint in ("checkpoint", "forward", "auto"):
        rows.append(_timed(
            f"adjoint={adjoint}", "d/d(y0, t, theta)",
            lambda a=adjoint: check_grad(lambda x: packed_loss(x, a), x0, tol=tol, step=1e-3, n_random=1),
        ))
    if not quick:
        rows.append(_timed(
            "adjoint=forward", "HVP d2/d(y0, t, theta)^2",
            lambda: check_hessian(lambda x: packed_loss(x, "forward"), x0, tol=10 * tol, step=1e-3,
                                  max_coordinates=3, n_random=1, h0=0.02, noise=_SOLVE_TOL),
        ))
    rows.append(_timed("robertson (default options)", "d/dtheta",
                       lambda: check_grad(_robertson_loss(), ode.ROBERTSON.p, tol=tol, step=1e-3, n_random=1)))
    return rows


def _output_times(tol: float, quick: bool) -> list[SuiteRow]:
    """Van der Pol oscillator observed at 9 uneven times, forwards and backwards in time."""
    name = "output-times"
    problem = ode.VAN_DER_POL
    t = problem.t
    weights = np.random.default_rng(5).standard_normal((len(t), 2))

    def loss(s):
        ys = odeint(problem.f, problem.y0, s, (problem.p,), rtol=problem.rtol, atol=problem.atol)
        return anp.sum(weights * ys) + anp.sum(ys[:, 0] ** 2) / 4.0

    rows = [_timed(name, f"d/dt ({len(t)} times, increasing)", lambda: check_grad(loss, t, tol=tol, step=1e-3))]
    if not quick:
        rows.append(
            _timed(
                name,
                f"d/dt ({len(t)} times, decreasing)",
                lambda: check_grad(loss, t[::-1] - 4.0, tol=tol, step=1e-3),
            )
        )
    return rows


def _solve_ivp(tol: float, quick: bool) -> list[SuiteRow]:
    """``odegrad.solve_ivp``: Lotka-Volterra through every method (``t_eval``, ``args``), and a
    projectile's landing time (a terminal event) against its closed form."""
    lv = ode.LOTKA_VOLTERRA
    t = lv.t[1:4]
    weights = np.random.default_rng(6).standard_normal((2, len(t)))

    def f(s, y, p):
        return lv.f(y, s, p)

    rows: list[SuiteRow] = []
    for method in ("RK45", "LSODA") if quick else IVP_METHODS:
        def loss(y, s, p, method=method):
            res = solve_ivp(f, (0.0, 4.5), y, method=method, t_eval=s, args=(p,), rtol=lv.rtol, atol=lv.atol)
            return anp.sum(weights * res.y) / 10.0

        rows += _standard_checks(f"solve_ivp {method}", loss, lv.y0, t, lv.p, tol, True, n_random=1)

    fall = ode.PROJECTILE
    x = np.concatenate([fall.y0, [fall.p]])          # height, upward speed, gravity

    def landing(v):
        res = solve_ivp(lambda s, y, g: fall.f(y, s, g), (fall.t[0], fall.t[-1]), v[:2], args=(v[2],),
                        events=ode.projectile_ground, rtol=fall.rtol, atol=fall.atol)
        return res.t_events[0][0]

    exact = ode.landing_time_gradient(*x)
    rows.append(_compare("solve_ivp event", "d(landing time)/d(h0, v0, g) vs closed form",
                         lambda: ag_grad(landing)(x), exact, tol))
    return rows


#: The suite, by name.
PROBLEMS: dict[str, SuiteEntry] = {
    p.name: p
    for p in (
        SuiteEntry(ode.LINEAR.name, ode.LINEAR.description, _linear),
        SuiteEntry(ode.DECAY.name, ode.DECAY.description, _decay),
        SuiteEntry(ode.LOTKA_VOLTERRA.name, ode.LOTKA_VOLTERRA.description, _lotka_volterra),
        SuiteEntry("neural-net", "tanh MLP dynamics, 4 states, 76 parameters in a dict", _neural),
        SuiteEntry("stiff-kinetics", "A <-> B fast, 2 B -> C slow, lsoda with checkpoints", _stiff_kinetics),
        SuiteEntry("robertson", "Robertson stiff kinetics, interpolating adjoint, log rate constants", _robertson),
        SuiteEntry("output-times", "Van der Pol at 9 uneven output times, d/dt of every time", _output_times),
        SuiteEntry("adjoint-modes", "the gradient methods (checkpoint, forward, auto) on one loss; Robertson "
                "with default options", _adjoint_modes),
        SuiteEntry("solve-ivp", "solve_ivp: Lotka-Volterra through each method (quick: RK45, LSODA); a "
                "terminal event's time vs closed form", _solve_ivp),
    )
}


def run_suite(
    problems: Sequence[str] | None = None, *, tol: float = 1e-5, quick: bool = False
) -> list[SuiteRow]:
    """Run the built-in ODE gradient checks.

    Parameters
    ----------
    problems : sequence of str, optional
        Names from :data:`PROBLEMS`; default all.
    tol : float, optional
        Relative-error tolerance of the gradient checks (10 times this for
        Hessian-vector products, whose finite differences are of gradients).
    quick : bool, optional
        Skip the Hessian checks and the decreasing-time variant.

    Returns
    -------
    list of SuiteRow
        One row per check, in order.

    Raises
    ------
    ValueError
        For an unknown problem name.
    """
    names = list(PROBLEMS) if problems is None else list(problems)
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        raise ValueError(f"unknown problem(s) {unknown}; choose from {list(PROBLEMS)}")
    rows: list[SuiteRow] = []
    for n in names:
        rows += PROBLEMS[n].run(tol, quick)
    return rows


def _format_table(rows: Sequence[SuiteRow]) -> str:
    w_p = max([len("problem")] + [len(r.problem) for r in rows])
    w_d = max([len("derivative")] + [len(r.derivative) for r in rows])
    lines = [
        f"{'problem':<{w_p}}  {'derivative':<{w_d}}  {'max rel. error':>14}  {'time [s]':>8}  result",
        "-" * (w_p + w_d + 40),
    ]
    for r in rows:
        if r.passed:
            result = "pass"
        elif math.isnan(r.max_rel_error):
            result = "ERROR (" + r.detail.split(":", 1)[0] + ")"
        else:
            result = "FAIL"
        lines.append(
            f"{r.problem:<{w_p}}  {r.derivative:<{w_d}}  {r.max_rel_error:14.3e}  {r.seconds:8.2f}  {result}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``python -m odegrad.gradcheck``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``): ``--tol``,
        ``--problems NAME [NAME ...]``, ``--quick``, ``--verbose``. The
        report of every failed check is printed before the table.

    Returns
    -------
    int
        0 if every check passed, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m odegrad.gradcheck",
        description="Check odegrad.odeint's gradients and Hessian-vector products against finite "
        "differences (and closed forms) on a suite of ODE problems.",
        epilog="problems:\n" + "\n".join(f"  {p.name:<15} {p.description}" for p in PROBLEMS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tol", type=float, default=1e-5, help="relative-error tolerance of gradients (default 1e-5; "
        "Hessian-vector products get 10x this)"
    )
    parser.add_argument(
        "--problems", nargs="+", choices=list(PROBLEMS), metavar="NAME",
        help=f"problems to run (default all): {', '.join(PROBLEMS)}",
    )
    parser.add_argument("--quick", action="store_true", help="skip Hessian and decreasing-time checks")
    parser.add_argument("--verbose", action="store_true", help="print the full report of every check")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rows = run_suite(args.problems, tol=args.tol, quick=args.quick)
    elapsed = time.perf_counter() - start
    failed = [r for r in rows if not r.passed]
    for r in rows if args.verbose else failed:
        print(f"== {r.problem}: {r.derivative}\n{r.detail}\n")
    print(_format_table(rows))
    print(f"\n{len(rows) - len(failed)}/{len(rows)} checks passed in {elapsed:.1f} s")
    return 1 if failed else 0
