"""The VODE runner: ``scipy.integrate.ode("vode")`` for the ``"adams"`` and ``"bdf"`` records.

:func:`_solve_vode` steps from output time to output time and fills ``scipy.integrate.odeint``'s
``infodict`` keys from VODE's work arrays, so VODE's methods report like LSODA.
:func:`vode_reads_jacobian_transposed` finds out, once, whether this scipy hands VODE a user
Jacobian transposed (scipy gh-24933).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.integrate

from .solver_guard import _check_error_weights, _Guarded, _GuardedJacobian
from .solver_registry import either, methods, solver
from .solver_status import _INFO_FLOATS, _INFO_INTS, _failure, infodict_of_no_steps
from .solver_types import ODESolveError, SolverOptions, SolveStats

_VODE_DEFAULT_STEPS = 5000
"""VODE's step budget per output interval when ``mxstep`` is 0. LSODA's is scipy's 500; VODE
needs about four times LSODA's steps on Robertson (2001 to reach t = 1e5), so 500 would fail
ordinary stiff problems."""


@functools.lru_cache(maxsize=None)
def vode_reads_jacobian_transposed() -> bool:
    """Whether this scipy's VODE wrapper reads a user Jacobian transposed (scipy gh-24933).

    scipy 1.17.x copies a C-contiguous Jacobian into VODE's column-major buffer with ``memcpy``,
    so VODE sees ``J.T`` (fixed upstream by scipy PR 24934). A transposed Jacobian leaves the
    answer alone but wrecks the Newton iteration (Robertson: failure instead of ~2000 steps), so
    the layout is detected once, on the issue's own Robertson reproducer, rather than assumed.
    """
    def rhs(t, y):
        return [-0.04 * y[0] + 1e4 * y[1] * y[2],
                0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2]

    def jac(t, y):
        return np.array([[-0.04, 1e4 * y[2], 1e4 * y[1]],
                         [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]], [0.0, 6e7 * y[1], 0.0]])

    def steps(jacobian) -> int:
        solver = scipy.integrate.ode(rhs, jacobian)
        solver.set_integrator("vode", method="bdf", with_jacobian=True, nsteps=3000, rtol=1e-8, atol=1e-12)
        solver.set_initial_value([1.0, 0.0, 0.0], 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            solver.integrate(10.0)
        return int(solver._integrator.iwork[10]) if solver.successful() else 10 ** 9

    return steps(jac) > 3 * steps(lambda t, y: jac(t, y).T)


def _solve_vode(guarded: _Guarded, y0, t, opts: SolverOptions, jac):
    """The ``run`` of VODE's methods (``"adams"``, ``"bdf"``): ``scipy.integrate.ode("vode")``."""
    _check_error_weights(y0, opts)
    spec = solver(opts.method)
    vode_jac = None
    if jac is not None:
        jac = _GuardedJacobian(jac, len(y0), guarded)
        transpose = vode_reads_jacobian_transposed()
        vode_jac = (lambda tt, y: jac(y, tt).T) if transpose else (lambda tt, y: jac(y, tt))
    vode = scipy.integrate.ode(lambda tt, y: guarded(y, tt), vode_jac)
    vode.set_integrator(
        "vode", method=opts.method, rtol=opts.rtol, atol=opts.atol,
        with_jacobian=spec.takes_jacobian, nsteps=opts.mxstep or _VODE_DEFAULT_STEPS,
        first_step=opts.h0, max_step=opts.hmax, min_step=opts.hmin,
    )
    vode.set_initial_value(y0, t[0])
    ys = np.empty((len(t), len(y0)))
    ys[0] = y0
    info = infodict_of_no_steps(t, "Integration successful.")
    rwork, iwork = vode._integrator.rwork, vode._integrator.iwork
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for i in range(1, len(t)):
            if t[i] == t[i - 1]:  # VODE refuses a zero-length first interval ("illegal input")
                ys[i] = ys[i - 1]
                _copy_row(info, i - 1)
                continue
            try:
                ys[i] = vode.integrate(t[i])
            except RuntimeError as exc:  # scipy's "DVODE callback not initialized"
                if guarded.error is not None:
                    raise guarded.error from None
                if "callback" in str(exc):
                    raise ODESolveError(
                        f"{opts.method} lost its callback at t = {float(vode.t):.6g} ({exc}): a "
                        "VODE solve (scipy.integrate.ode('vode'), odegrad with method="
                        f"{either(methods(where=lambda s: s.family == 'vode'))}) ran inside func or Dfun, "
                        "and scipy's VODE is not re-entrant. Solve "
                        "the inner problem before or after the outer solve, or combine both into "
                        "one state."
                    ) from exc
                raise
            if guarded.error is not None:
                raise guarded.error
            if not vode.successful():
                raise _failure(opts.method, float(vode.t), vode.get_return_code(), float(t[i]))
            _vode_row(info, i - 1, rwork, iwork, spec.stiff)
    info.update(imxer=int(iwork[15]), lenrw=int(iwork[16]), leniw=int(iwork[17]))
    stats = SolveStats(method=opts.method, nfe=guarded.nfe, nst=int(iwork[10]),
                       nje=int(iwork[12]), nsolves=1, infodict=info)
    return ys, stats


def _copy_row(info: dict, row: int) -> None:
    """Row ``row`` of an infodict repeats the one before (a repeated output time)."""
    if row > 0:
        for key in _INFO_FLOATS + _INFO_INTS:
            info[key][row] = info[key][row - 1]


def _vode_row(info: dict, row: int, rwork: np.ndarray, iwork: np.ndarray, bdf: bool) -> None:
    """What VODE reports after reaching an output time, in odeint's infodict keys. VODE never
    switches method: ``mused`` is 1 (Adams) or 2 (BDF, VODE's stiff method) throughout and ``tsw``
    stays ``t[0]``."""
    for key, value in zip(_INFO_FLOATS[:3], rwork[[10, 12, 13]]):
        info[key][row] = value
    for key, value in zip(_INFO_INTS[:4], iwork[[10, 11, 12, 13]]):
        info[key][row] = value
    info["mused"][row] = 2 if bdf else 1
