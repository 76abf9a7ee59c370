"""What LSODA and VODE report, in ``scipy.integrate.odeint``'s words: their failures and the ``infodict``.

Both Fortran solvers stop with an ODEPACK ``istate`` code; :func:`_failure` turns one into an
:class:`odegrad.solvers.ODESolveError` that says what went wrong and what to try.
:func:`infodict_of_no_steps` is odeint's ``infodict`` of a solve that takes no step; the VODE runner
fills the same keys.
"""

from __future__ import annotations

import numpy as np

from .solver_registry import SolverSpec, either, methods, solver
from .solver_types import ODESolveError

_ISTATE_MESSAGES = {
    -1: "excess work done (the solver hit mxstep steps before reaching the next output time)",
    -2: "excess accuracy requested (the tolerances are too small for float64)",
    -3: "illegal input",
    -4: "repeated error-test failures (the solution may be singular or the dynamics discontinuous)",
    -5: "repeated convergence failures (the problem may be stiff, or the Jacobian wrong)",
    -6: "an error weight became zero (a component vanished while its atol is 0)",
    -7: "the work space was too small",
}

_ADVICE = {
    -1: "raise mxstep{stiff}; check the dynamics for finite-time blow-up",
    -2: "loosen rtol/atol",
    -3: "check the arguments",
    -4: "check the dynamics for discontinuities or blow-up, or tighten/loosen the tolerances",
    -5: "use method={implicit} for stiff problems, or check a user-supplied Jacobian",
    -6: "give atol > 0 for every component",
    -7: "report this as a bug",
}


def _implicit(spec: SolverSpec) -> bool:
    """Methods that iterate with a Jacobian: the ones that solve stiff problems (LSODA once it switched)."""
    return spec.takes_jacobian


def _failure(method: str, t_reached: float, istate: int, t_target: float) -> ODESolveError:
    what = _ISTATE_MESSAGES.get(istate, f"status {istate}")
    stiff_methods = either(methods("odeint", lambda spec: spec.stiff))
    stiff = "" if solver(method).stiff else f", or use method={stiff_methods} if the problem is stiff"
    implicit = either(methods("odeint", _implicit))
    advice = _ADVICE.get(istate, "check the dynamics and tolerances").format(stiff=stiff, implicit=implicit)
    return ODESolveError(
        f"{method} failed at t = {t_reached:.6g} on its way to t = {t_target:.6g}: {what}. "
        f"Try: {advice}."
    )


_INFO_FLOATS = ("hu", "tcur", "tolsf", "tsw")
_INFO_INTS = ("nst", "nfe", "nje", "nqu", "mused")


def infodict_of_no_steps(t: np.ndarray, message: str = "Nothing was done; the integration time was 0.") -> dict:
    """The ``infodict`` of ``scipy.integrate.odeint`` for output times all equal to ``t[0]``.

    scipy returns this message with uninitialised rows (zero rows for a single time); here every
    row says that no step was taken: 0 steps, evaluations, step size and order, ``mused`` 0, and
    ``tcur = tsw = t[0]``.
    """
    rows = max(len(t) - 1, 0)
    start = t[0] if len(t) else 0.0
    info = {key: np.full(rows, start if key in ("tcur", "tsw") else 0.0) for key in _INFO_FLOATS}
    info.update({key: np.zeros(rows, dtype=np.int32) for key in _INFO_INTS[:4]})
    info.update(imxer=0, lenrw=0, leniw=0, mused=np.zeros(rows, dtype=np.int32), message=message)
    return info
