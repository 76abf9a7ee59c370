"""The scipy back-ends behind one signature, and the records that register them.

Each back-end integrates ``dy/dt = fun(y, t)`` for a flat float64 state and returns the states at
the requested output times together with :class:`SolveStats`. Every failure, including the ones
scipy only warns about (LSODA's "Excess work done" returns garbage rows), raises
:class:`ODESolveError`. Each of scipy's methods is one :class:`odegrad.solver_registry.SolverSpec`,
registered at the end of this module; :func:`solve` and :func:`dense_solve` run a method through
its record, and :data:`METHODS`, :data:`IVP_METHODS`, :data:`STIFF_METHODS` and
:data:`JACOBIAN_METHODS` are computed from the records.

This module is the public face; the work is done in modules named for their job, whose public
names it re-exports: :mod:`odegrad.solver_types` (:class:`SolverOptions`, :class:`SolveStats`,
:class:`ODESolveError`), :mod:`odegrad.solver_guard` (the guards around the user's callbacks and the
nesting lock), :mod:`odegrad.solver_status` (LSODA's and VODE's failures, odeint's ``infodict``),
and the runners :mod:`odegrad.solver_lsoda`, :mod:`odegrad.solver_vode` and :mod:`odegrad.solver_ivp`.

Neither LSODA (``scipy.integrate.odeint``) nor VODE is re-entrant: :func:`solve` refuses nesting,
and solves started from several threads run one at a time. A solve that finds the running one stuck
in one evaluation of its dynamics for :data:`odegrad.solver_guard.NESTED_WAIT_S` seconds raises instead of waiting for
ever (it was most likely started from inside that evaluation); setting
``odegrad.solver_guard.NESTED_WAIT_S`` sets that wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Callable

import numpy as np
import scipy.integrate

from .allocator import raise_mmap_threshold
from .blas import one_blas_thread
from .solver_guard import _exclusive, _Guarded
from .solver_ivp import IvpJacobian as IvpJacobian
from .solver_ivp import _dense_ivp, ivp_record
from .solver_ivp import scipy_solve_ivp as scipy_solve_ivp
from .solver_lsoda import _solve_lsoda
from .solver_registry import DIRECTIONS, SOLVERS, SolverSpec, methods, register_solver, solver
from .solver_registry import either as either
from .solver_status import infodict_of_no_steps
from .solver_types import DEFAULT_TOL as DEFAULT_TOL
from .solver_types import ODESolveError, SolverOptions, SolveStats
from .solver_vode import _solve_vode
from .solver_vode import vode_reads_jacobian_transposed as vode_reads_jacobian_transposed


def _check_direction(spec: SolverSpec, t_start: float, t_end: float) -> None:
    """Raise ``ValueError`` unless the method of ``spec`` solves from ``t_start`` towards ``t_end``."""
    direction = "forward" if t_end > t_start else "backward"
    if direction not in spec.directions:
        able = tuple(name for name, other in SOLVERS.items() if direction in other.directions)
        raise ValueError(
            f"method {spec.name!r} only solves {' and '.join(sorted(spec.directions))} in time, but this solve "
            f"runs {direction} from t = {t_start:.6g} to {t_end:.6g} (the forward solve runs in t's direction, "
            "the adjoint backward, forward sensitivities forward): give a method or adjoint_method that "
            f"solves {direction} (one of {able}), or another adjoint mode (adjoint='forward' solves forward only)."
        )


def derived_options(opts: SolverOptions, method: str) -> SolverOptions:
    """``opts`` for a derived (backward or sensitivity) solve by ``method``: of LSODA's own options
    only ``tcrit`` keeps its meaning there, where ``method`` takes it (the state's banded Jacobian
    ``ml``, ``mu`` does not describe a derived state)."""
    return dataclasses.replace(opts, method=method,
                               lsoda_kwargs={k: v for k, v in opts.lsoda_kwargs.items()
                                             if k == "tcrit" and k in solver(method).options})


def solve(
    fun: Callable[[np.ndarray, float], np.ndarray],
    y0: np.ndarray,
    t: np.ndarray,
    opts: SolverOptions,
    jac: Callable[[np.ndarray, float], np.ndarray] | None = None,
) -> tuple[np.ndarray, SolveStats]:
    """Integrate ``dy/dt = fun(y, t)`` from ``t[0]`` and return the states at every ``t``.

    The ``run`` function of the method's record (:func:`odegrad.solver_registry.solver`) does the
    solve; the Fortran methods run one at a time and never nested.

    Parameters
    ----------
    fun : callable
        ``fun(y, t) -> dy`` on flat float64 arrays of shape ``(n,)``.
    y0 : ndarray, shape (n,)
        State at ``t[0]``.
    t : ndarray, shape (T,)
        Monotonic output times (increasing or decreasing); repeated times are allowed.
    opts : SolverOptions
        Method, tolerances and step controls.
    jac : callable or IvpJacobian, optional
        ``jac(y, t) -> J`` with ``J[i, j] = d fun_i / d y_j``, used by the methods whose record
        takes a Jacobian (LSODA's stiff phase, BDF, Radau); for the ``solve_ivp`` methods also an
        :class:`IvpJacobian` (scipy's own ``jac``, ``jac_sparsity``, ``lband``, ``uband``).

    Returns
    -------
    ys : ndarray, shape (T, n)
        ``ys[0] == y0``.
    stats : SolveStats

    Raises
    ------
    ODESolveError
        If the solver fails or ``fun`` returns NaN/inf.
    RuntimeError
        If a Fortran solve is called from inside the dynamics of another.
    ValueError
        If the method is not registered or does not solve in ``t``'s direction, the state is
        empty, or an error weight ``rtol*|y0| + atol`` is 0 (LSODA, VODE).
    """
    spec = solver(opts.method)
    y0 = np.asarray(y0, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    guarded = _Guarded(fun, y0.size)
    if y0.size == 0:
        raise ValueError("the state is empty (y0 has no entries); give y0 at least one entry")
    if len(t) == 1 or t[0] == t[-1]:  # all output times equal (t is monotonic): nothing to integrate
        return np.repeat(y0[None, :], len(t), axis=0), SolveStats(method=opts.method, infodict=infodict_of_no_steps(t))
    _check_direction(spec, float(t[0]), float(t[-1]))
    raise_mmap_threshold()
    with one_blas_thread(), contextlib.nullcontext() if spec.reentrant else _exclusive(opts.method, guarded):
        ys, stats = spec.run(guarded, y0, t, opts, jac)
    if guarded.error is not None:
        raise guarded.error
    if not np.all(np.isfinite(ys)):
        raise ODESolveError(
            f"{opts.method} returned non-finite states; the solution probably blows up before "
            f"t = {t[-1]:.6g}. Check the dynamics, or shorten the time span."
        )
    return ys, stats


def dense_solve(
    fun: Callable[[np.ndarray, float], np.ndarray],
    y0: np.ndarray,
    t_start: float,
    t_end: float,
    opts: SolverOptions,
    jac: Callable[[np.ndarray, float], np.ndarray] | None = None,
) -> tuple[Callable[[float], np.ndarray], SolveStats]:
    """Integrate from ``t_start`` to ``t_end`` and return a dense interpolant of the solution.

    The ``dense`` function of the method's record does the solve: for scipy's methods
    ``solve_ivp`` steps, with the method itself for the ``solve_ivp`` methods, BDF for
    ``method="bdf"``, else LSODA (all keep their own interpolants).

    Parameters
    ----------
    fun, jac : callable
        As in :func:`solve`.
    y0 : ndarray, shape (n,)
        State at ``t_start``.
    t_start, t_end : float
        The interval (either direction).
    opts : SolverOptions
        Method, tolerances and ``hmax`` (``h0``, ``hmin`` and ``mxstep`` are not used).

    Returns
    -------
    y_of_t : callable
        ``y_of_t(t) -> ndarray (n,)`` for ``t`` in the interval.
    stats : SolveStats

    Raises
    ------
    ODESolveError
        If the solve fails or ``fun`` returns NaN/inf.
    ValueError
        If the method has no dense output or does not solve in this direction.
    """
    spec = solver(opts.method)
    if spec.dense is None:
        with_dense = tuple(name for name, s in SOLVERS.items() if s.dense_output)
        raise ValueError(
            f"method {spec.name!r} has no dense output, which the interpolating adjoint reads: give an "
            f"adjoint_method with one (one of {with_dense}), or use adjoint='checkpoint'"
        )
    _check_direction(spec, float(t_start), float(t_end))
    y0 = np.asarray(y0, dtype=np.float64)
    guarded = _Guarded(fun, y0.size)
    raise_mmap_threshold()
    with one_blas_thread():
        y_of_t, stats = spec.dense(guarded, y0, t_start, t_end, opts, jac)
    if guarded.error is not None:
        raise guarded.error
    return y_of_t, stats


_STEPS = frozenset({"h0", "hmax", "hmin", "mxstep", "full_output"})
for _spec in (
    SolverSpec("lsoda", "odeint", stiff=False, takes_jacobian=True, jacobian_layout="odeint", directions=DIRECTIONS,
               options=_STEPS | {"ml", "mu", "tcrit", "ixpr", "mxhnil", "mxordn", "mxords", "printmessg"},
               doors=frozenset({"odeint"}), reentrant=False, run=_solve_lsoda,
               dense=functools.partial(_dense_ivp, stepper="LSODA")),
    SolverSpec("adams", "vode", stiff=False, takes_jacobian=False, jacobian_layout="vode", directions=DIRECTIONS,
               options=_STEPS, doors=frozenset({"odeint"}), reentrant=False, run=_solve_vode,
               dense=functools.partial(_dense_ivp, stepper="LSODA")),
    SolverSpec("bdf", "vode", stiff=True, takes_jacobian=True, jacobian_layout="vode", directions=DIRECTIONS,
               options=_STEPS, doors=frozenset({"odeint"}), reentrant=False, run=_solve_vode,
               dense=functools.partial(_dense_ivp, stepper="BDF")),
    ivp_record("RK45", scipy.integrate.RK45),
    ivp_record("RK23", scipy.integrate.RK23),
    ivp_record("DOP853", scipy.integrate.DOP853),
    ivp_record("Radau", scipy.integrate.Radau, stiff=True, takes_jacobian=True),
    ivp_record("BDF", scipy.integrate.BDF, stiff=True, takes_jacobian=True),
    ivp_record("LSODA", scipy.integrate.LSODA, takes_jacobian=True, min_step=True, reentrant=False),
):
    register_solver(_spec)

METHODS = methods("odeint")
"""scipy's methods of ``odeint`` (registered by this module): LSODA (``scipy.integrate.odeint``)
and VODE's Adams and BDF. The registry (:data:`odegrad.solver_registry.SOLVERS`) is the truth;
these tuples are computed from it at import."""

IVP_METHODS = methods("solve_ivp")
"""The methods of ``scipy.integrate.solve_ivp``, by scipy's case-sensitive names (``"BDF"`` is
scipy's Python BDF, ``"bdf"`` VODE's)."""

STIFF_METHODS = tuple(name for name, spec in SOLVERS.items() if spec.stiff)
"""Methods that are asked for because the problem is stiff (``adjoint="auto"`` reads this)."""

JACOBIAN_METHODS = tuple(name for name, spec in SOLVERS.items() if spec.takes_jacobian)
"""Methods whose Newton iterations use a Jacobian: derived solves get an exact one by default."""
