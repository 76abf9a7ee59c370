"""The built-in suite of ODE problems behind ``python -m odegrad.gradcheck``."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import autograd.numpy as anp
import numpy as np
import scipy.linalg
from autograd import grad as ag_grad

from ..integrate import odeint
from ..ivp import solve_ivp
from ..solvers import IVP_METHODS
from .checks import CheckResult, check_grad, check_hessian, make_result

# ---------------------------------------------------------------------------
# Built-in suite of ODE problems for odegrad.odeint
# ---------------------------------------------------------------------------

#: Tolerances of every solve in the suite; finite differences of such solves are
#: accurate to roughly ``_SOLVE_TOL / step``.
_SOLVE_TOL = 1e-10


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
class Problem:
    """An ODE problem of the suite.

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
    name = "linear"
    a0 = np.array([[-0.3, 1.0, 0.0], [-1.0, -0.3, 0.2], [0.1, 0.0, -0.5]])
    y0 = np.array([1.0, -0.5, 0.25])
    t = np.array([0.0, 0.4, 1.1, 2.0])
    weights = np.random.default_rng(1).standard_normal((len(t), 3))

    def f(y, s, a):
        return anp.dot(a, y)

    def loss(y, s, a):
        return anp.sum(weights * odeint(f, y, s, (a,), rtol=_SOLVE_TOL, atol=_SOLVE_TOL))

    rows = _standard_checks(name, loss, y0, t, a0, tol, quick)
    taus = t - t[0]
    phis = [scipy.linalg.expm(a0 * tau) for tau in taus]
    ys = np.array([phi @ y0 for phi in phis])
    exact_y0 = sum(phi.T @ w for phi, w in zip(phis, weights))
    rates = np.array([w @ (a0 @ y) for w, y in zip(weights, ys)])
    exact_t = np.concatenate([[-rates[1:].sum()], rates[1:]])
    exact_a = np.zeros_like(a0)
    for tau, w in zip(taus, weights):
        for j, k in np.ndindex(*a0.shape):
            e = np.zeros_like(a0)
            e[j, k] = tau
            exact_a[j, k] += w @ scipy.linalg.expm_frechet(a0 * tau, e, compute_expm=False) @ y0
    rows += [
        _compare(name, "d/dy0 vs expm", lambda: ag_grad(lambda y: loss(y, t, a0))(y0), exact_y0, tol),
        _compare(name, "d/dA vs expm_frechet", lambda: ag_grad(lambda a: loss(y0, t, a))(a0), exact_a, tol),
        _compare(name, "d/dt vs closed form", lambda: ag_grad(lambda s: loss(y0, s, a0))(t), exact_t, tol),
    ]
    return rows


def _decay(tol: float, quick: bool) -> list[SuiteRow]:
    """Scalar y' = -k y, y0 a float, k a float; closed form y0 exp(-k (t - t0))."""
    name = "decay"
    y0, k0 = 2.0, 0.7
    t = np.array([0.0, 0.5, 1.5, 3.0])
    weights = np.array([0.3, -1.0, 2.0, 0.5])

    def f(y, s, k):
        return -k * y

    def loss(y, s, k):
        return anp.sum(weights * odeint(f, y, s, (k,), rtol=_SOLVE_TOL, atol=_SOLVE_TOL)[:, 0])

    rows = _standard_checks(name, loss, y0, t, k0, tol, quick)
    tau = t - t[0]
    e = np.exp(-k0 * tau)
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
    theta = np.array([1.1, 0.4, 0.1, 0.4])
    y0 = np.array([10.0, 5.0])
    t = np.array([0.0, 1.0, 2.5, 4.0, 6.0])
    weights = np.random.default_rng(2).standard_normal((len(t), 2))

    def f(y, s, p):
        return anp.array([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])

    def loss(y, s, p):
        ys = odeint(f, y, s, (p,), rtol=_SOLVE_TOL, atol=_SOLVE_TOL)
        return anp.sum(weights * ys) / 10.0

    return _standard_checks("lotka-volterra", loss, y0, t, theta, tol, quick, taylor_h0=0.02)


def _neural(tol: float, quick: bool) -> list[SuiteRow]:
    """Time-dependent tanh MLP dynamics, 4 states, parameters in a dict (76 floats)."""
    rng = np.random.default_rng(3)
    n, hidden = 4, 8
    shapes = {"W1": (hidden, n), "b1": (hidden,), "c": (hidden,), "W2": (n, hidden), "b2": (n,)}
    sizes = [int(np.prod(s)) for s in shapes.values()]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    theta = rng.standard_normal(bounds[-1]) / 3.0

    def unflatten(flat):
        return {
            key: anp.reshape(flat[lo:hi], shape)
            for (key, shape), lo, hi in zip(shapes.items(), bounds[:-1], bounds[1:])
        }

    y0 = rng.standard_normal(n)
    t = np.array([0.0, 0.5, 1.0, 2.0])

    def f(y, s, p):
        return anp.dot(p["W2"], anp.tanh(anp.dot(p["W1"], y) + p["b1"] + s * p["c"])) + p["b2"]

    def loss(y, s, flat):
        ys = odeint(f, y, s, (unflatten(flat),), rtol=_SOLVE_TOL, atol=_SOLVE_TOL)
        return anp.sum(ys[1:] ** 2) / 2.0

    return _standard_checks("neural-net", loss, y0, t, theta, tol, quick, hessian="y0")


def _stiff_kinetics(tol: float, quick: bool) -> list[SuiteRow]:
    """Stiff kinetics A <-> B (fast, rates 100 and 50), 2 B -> C (rate 1); log rate constants.

    The fast equilibrium makes the Jacobian's eigenvalues span two orders of
    magnitude. The backward reconstruction of ``y`` amplifies errors in the fast
    mode, so the solve stores ``checkpoints`` to restart it often.
    """
    log_k = np.log(np.array([100.0, 50.0, 1.0]))
    y0 = np.array([1.0, 0.0, 0.0])
    t = np.array([0.0, 0.5, 1.0, 2.0])
    weights = np.random.default_rng(4).standard_normal((len(t), 3))

    def f(y, s, lk):
        k = anp.exp(lk)
        r0, r1, r2 = k[0] * y[0], k[1] * y[1], k[2] * y[1] ** 2
        return anp.array([-r0 + r1, r0 - r1 - 2.0 * r2, r2])

    def loss(y, s, lk):
        ys = odeint(f, y, s, (lk,), method="lsoda", rtol=_SOLVE_TOL, atol=1e-12, checkpoints=10)
        return anp.sum(weights * ys)

    return _standard_checks("stiff-kinetics", loss, y0, t, log_k, tol, quick, hessian=None, n_random=1)


def _robertson(tol: float, quick: bool) -> list[SuiteRow]:
    """Robertson's stiff chemical kinetics (eigenvalues down to -1e4), log rate constants.

    LSODA forwards, and the interpolating adjoint backwards: reconstructing y backwards is
    unstable on stiff dynamics, so the adjoint reads y from a dense forward solution.
    """
    log_k = np.log(np.array([0.04, 3e7, 1e4]))
    y0 = np.array([1.0, 0.0, 0.0])
    t = np.array([0.0, 0.4, 4.0, 40.0])
    scale = np.array([1.0, 1e4, 1.0])
    weights = np.random.default_rng(4).standard_normal((len(t), 3))

    def f(y, s, lk):
        k = anp.exp(lk)
        r1, r2, r3 = k[0] * y[0], k[1] * y[1] ** 2, k[2] * y[1] * y[2]
        return anp.array([-r1 + r3, r1 - r2 - r3, r2])

    def loss(lk):
        ys = odeint(f, y0, t, (lk,), method="lsoda", adjoint="interpolate", rtol=_SOLVE_TOL,
                    atol=1e-14, mxstep=20000)
        return anp.sum(weights * scale * ys)

    check = lambda: check_grad(loss, log_k, tol=tol, step=1e-3, n_random=1)  # noqa: E731
    return [_timed("robertson (lsoda, interpolate)", "d/dtheta", check)]


def _adjoint_modes(tol: float, quick: bool) -> list[SuiteRow]:
    """Lotka-Volterra under each gradient method, all inputs at once; Robertson by default.

    ``checkpoint`` (the adjoint), ``forward`` (forward sensitivities) and ``auto`` (the default)
    must each give d/d(y0, t, theta) of the same loss; Hessian-vector products through forward
    sensitivities; and Robertson's stiff kinetics with no adjoint option at all.
    """
    theta0 = np.array([1.1, 0.4, 0.1, 0.4])
    y0 = np.array([10.0, 5.0])
    t = np.array([0.0, 1.0, 2.5, 4.0])
    weights = np.random.default_rng(6).standard_normal((len(t), 2))

    def f(y, s, p):
        return anp.array([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])

    def packed_loss(x, adjoint):
        ys = odeint(f, x[:2], x[2:6], (x[6:],), rtol=_SOLVE_TOL, atol=_SOLVE_TOL, adjoint=adjoint)
        return anp.sum(weights * ys) / 10.0

    x0 = np.concatenate([y0, t, theta0])
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
    log_k = np.log(np.array([0.04, 3e7, 1e4]))
    t_rob = np.array([0.0, 0.4, 4.0, 40.0])
    scale = np.array([1.0, 1e4, 1.0])
    weights_rob = np.random.default_rng(4).standard_normal((len(t_rob), 3))

    def robertson(y, s, lk):
        k = anp.exp(lk)
        r1, r2, r3 = k[0] * y[0], k[1] * y[1] ** 2, k[2] * y[1] * y[2]
        return anp.array([-r1 + r3, r1 - r2 - r3, r2])

    def robertson_loss(lk):
        ys = odeint(robertson, np.array([1.0, 0.0, 0.0]), t_rob, (lk,), rtol=_SOLVE_TOL, atol=1e-14,
                    mxstep=20000)
        return anp.sum(weights_rob * scale * ys)

    rows.append(_timed("robertson (default options)", "d/dtheta",
                       lambda: check_grad(robertson_loss, log_k, tol=tol, step=1e-3, n_random=1)))
    return rows


def _output_times(tol: float, quick: bool) -> list[SuiteRow]:
    """Van der Pol oscillator observed at 9 uneven times, forwards and backwards in time."""
    name = "output-times"
    mu = 1.5
    y0 = np.array([2.0, 0.0])
    t = np.array([0.0, 0.3, 0.45, 1.0, 1.7, 2.2, 3.1, 3.3, 4.0])
    weights = np.random.default_rng(5).standard_normal((len(t), 2))

    def f(y, s, m):
        return anp.array([y[1], m * (1.0 - y[0] ** 2) * y[1] - y[0]])

    def loss(s):
        ys = odeint(f, y0, s, (mu,), rtol=_SOLVE_TOL, atol=_SOLVE_TOL)
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
    theta = np.array([1.1, 0.4, 0.1, 0.4])
    y0 = np.array([10.0, 5.0])
    t = np.array([1.0, 2.5, 4.0])
    weights = np.random.default_rng(6).standard_normal((2, len(t)))

    def f(s, y, p):
        return anp.array([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])

    rows: list[SuiteRow] = []
    for method in ("RK45", "LSODA") if quick else IVP_METHODS:
        def loss(y, s, p, method=method):
            res = solve_ivp(f, (0.0, 4.5), y, method=method, t_eval=s, args=(p,), rtol=_SOLVE_TOL, atol=_SOLVE_TOL)
            return anp.sum(weights * res.y) / 10.0

        rows += _standard_checks(f"solve_ivp {method}", loss, y0, t, theta, tol, True, n_random=1)

    def fall(s, y, g):
        return anp.array([y[1], -g])

    def ground(s, y, g):
        return y[0]

    ground.terminal, ground.direction = True, -1
    x = np.array([2.0, 3.0, 9.81])          # height, upward speed, gravity

    def landing(v):
        res = solve_ivp(fall, (0.0, 10.0), v[:2], args=(v[2],), events=ground, rtol=_SOLVE_TOL, atol=_SOLVE_TOL)
        return res.t_events[0][0]

    root = math.sqrt(x[1] ** 2 + 2 * x[2] * x[0])
    exact = (1 / root, (1 + x[1] / root) / x[2], x[0] / (x[2] * root) - (x[1] + root) / x[2] ** 2)
    rows.append(_compare("solve_ivp event", "d(landing time)/d(h0, v0, g) vs closed form",
                         lambda: ag_grad(landing)(x), exact, tol))
    return rows


#: The suite, by name.
PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem("linear", "y' = A y, 3 states, closed form via expm", _linear),
        Problem("decay", "scalar y' = -k y, closed form", _decay),
        Problem("lotka-volterra", "predator-prey, 2 states, 4 parameters", _lotka_volterra),
        Problem("neural-net", "tanh MLP dynamics, 4 states, 76 parameters in a dict", _neural),
        Problem("stiff-kinetics", "A <-> B fast, 2 B -> C slow, lsoda with checkpoints", _stiff_kinetics),
        Problem("robertson", "Robertson stiff kinetics, interpolating adjoint, log rate constants", _robertson),
        Problem("output-times", "Van der Pol at 9 uneven output times, d/dt of every time", _output_times),
        Problem("adjoint-modes", "the gradient methods (checkpoint, forward, auto) on one loss; Robertson "
                "with default options", _adjoint_modes),
        Problem("solve-ivp", "solve_ivp: Lotka-Volterra through each method (quick: RK45, LSODA); a "
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
