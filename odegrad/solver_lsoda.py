"""The LSODA runner: ``scipy.integrate.odeint``, its failures raised.

:func:`_solve_lsoda` is the ``run`` of the ``"lsoda"`` record (registered in :mod:`odegrad.solvers`).
scipy only warns about LSODA's failures ("Excess work done" returns garbage rows); here each one
raises :class:`odegrad.solvers.ODESolveError`, and "illegal input" after the dynamics ran is
reported as the nested solve that causes it.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import scipy.integrate

from .solver_guard import _check_error_weights, _Guarded, _GuardedJacobian
from .solver_status import _INFO_FLOATS, _INFO_INTS, _failure, infodict_of_no_steps
from .solver_types import ODESolveError, SolverOptions, SolveStats


def _banded(jac: Callable[[np.ndarray, float], np.ndarray], ml: int, mu: int):
    """A full Jacobian ``J`` as LSODA's band, ``band[mu + i - j, j] = J[i, j]`` (scipy's layout)."""
    def band(y, t):
        J = jac(y, t)
        out = np.zeros((ml + mu + 1, J.shape[1]))
        for k in range(-ml, mu + 1):
            out[mu - k, max(k, 0):J.shape[1] + min(k, 0)] = np.diagonal(J, k)
        return out

    return band


def _solve_lsoda(guarded: _Guarded, y0, t, opts: SolverOptions, jac):
    """The ``run`` of ``"lsoda"``: ``scipy.integrate.odeint``, its failures raised."""
    _check_error_weights(y0, opts)
    if jac is not None:
        jac = _GuardedJacobian(jac, len(y0), guarded)
        ml, mu = opts.lsoda_kwargs.get("ml"), opts.lsoda_kwargs.get("mu")
        if ml is not None or mu is not None:
            jac = _banded(jac, ml or 0, mu or 0)
    kwargs = dict(opts.lsoda_kwargs)
    if opts.stop_at_end and "tcrit" not in kwargs:
        kwargs["tcrit"] = np.asarray([t[-1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.integrate.ODEintWarning)
        ys, info = scipy.integrate.odeint(
            guarded, y0, t, Dfun=jac, rtol=opts.rtol, atol=opts.atol, h0=opts.h0,
            hmax=opts.hmax, hmin=opts.hmin, mxstep=opts.mxstep, full_output=True, **kwargs,
        )
    if guarded.error is not None:
        raise guarded.error
    if info["message"] != "Integration successful.":
        direction = np.sign(t[-1] - t[0])
        short = np.nonzero((np.asarray(info["tcur"]) - t[1:]) * direction < 0)[0]
        k = int(short[0]) if len(short) else len(t) - 2
        istate = _istate_of_lsoda_message(info["message"])
        if istate == -3 and guarded.nfe:
            raise _corrupted_state(opts.method, float(info["tcur"][k]), guarded.nfe)
        raise _failure(opts.method, float(info["tcur"][k]), istate, float(t[k + 1]))
    idle = infodict_of_no_steps(t[: int(np.count_nonzero(t == t[0]))])  # scipy leaves these rows unset
    for key in _INFO_FLOATS + _INFO_INTS:
        info[key][: len(idle[key])] = idle[key]
    mused = np.asarray(info["mused"])
    stats = SolveStats(
        method=opts.method, nfe=guarded.nfe, nst=int(info["nst"][-1]) if len(t) > 1 else 0,
        nje=int(info["nje"][-1]) if len(t) > 1 else 0, nsolves=1,
        # LSODA always starts in its Adams phase (mused = 1); count every change from there.
        method_switches=int(np.count_nonzero(np.diff(np.concatenate([[1], mused[mused > 0]])))),
        infodict=info,
    )
    return ys, stats


def _corrupted_state(method: str, t_reached: float, nfe: int) -> ODESolveError:
    """LSODA's "illegal input" after the dynamics ran: its state was changed under it."""
    return ODESolveError(
        f"{method} reported illegal input at t = {t_reached:.6g}, after {nfe} evaluations of "
        "func: the arguments were checked before the solve, so LSODA's internal state was "
        "changed while it ran. The usual cause is a scipy solver called inside func or Dfun "
        "(scipy.integrate.odeint, or another LSODA solve): scipy's LSODA is not re-entrant. "
        "Solve the inner problem before or after the outer solve, or combine both into one state."
    )


def _istate_of_lsoda_message(message: str) -> int:
    """Recover LSODA's status from the message scipy's odeint puts in ``infodict``."""
    keys = {"Excess work": -1, "Excess accuracy": -2, "Illegal input": -3,
            "Repeated error test": -4, "Repeated convergence": -5, "Error weight": -6}
    return next((code for key, code in keys.items() if message.startswith(key)), -3)
