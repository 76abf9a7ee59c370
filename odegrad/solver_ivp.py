"""The ``scipy.integrate.solve_ivp`` runner: scipy's six methods, any ``OdeSolver`` subclass, every dense solve.

:func:`ivp_record` builds the record of a method that ``solve_ivp`` steps; its ``run``
(:func:`_solve_ivp_method`) solves once with the output times as ``t_eval``, its ``dense``
(:func:`_dense_ivp`) once with ``dense_output=True`` (the Fortran methods' dense solves step with
``solve_ivp``'s LSODA or BDF). :class:`IvpJacobian` carries ``solve_ivp``'s own Jacobian keywords,
and :func:`scipy_solve_ivp` is the front door's plain scipy call, one LSODA at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable

import numpy as np
import scipy.integrate

from .solver_guard import _exclusive, _Guarded, _GuardedJacobian
from .solver_registry import DIRECTIONS, SOLVERS, SolverSpec, either, methods, solver
from .solver_status import _implicit
from .solver_types import ODESolveError, SolverOptions, SolveStats


@dataclasses.dataclass(frozen=True)
class IvpJacobian:
    """The Jacobian keywords of one ``scipy.integrate.solve_ivp`` method, in scipy's convention.

    Attributes
    ----------
    method : str
        The method (one of :data:`odegrad.solvers.IVP_METHODS`) the keywords were given for; another method
        (a derived solve with a different ``adjoint_method``) ignores them.
    keywords : dict
        ``jac`` (``jac(t, y)``, a matrix or a sparse matrix), ``jac_sparsity``, ``lband``,
        ``uband``: passed to scipy unchanged.
    """

    method: str
    keywords: dict


_REPEATED_WARNINGS = ("At least one element of `rtol` is too small",
                      "The following arguments have no effect for a chosen solver")
"""scipy warnings the front door's own scipy solve has shown already; the solves behind it (at
the output times, and the derived solves) would repeat them once per solve."""


def _ivp_keywords(spec: SolverSpec, opts: SolverOptions, jac, guarded: _Guarded, n: int) -> dict:
    """scipy ``solve_ivp`` keywords for the method of ``spec`` from :class:`odegrad.solvers.SolverOptions` and a Jacobian."""
    keywords: dict = {"rtol": opts.rtol, "atol": opts.atol}
    if opts.h0:
        keywords["first_step"] = opts.h0
    if opts.hmax:
        keywords["max_step"] = opts.hmax
    if opts.hmin and "hmin" in spec.options:
        keywords["min_step"] = opts.hmin
    if isinstance(jac, IvpJacobian):
        if jac.method == spec.name:
            keywords.update(jac.keywords)
    elif jac is not None and spec.takes_jacobian:
        guarded_jac = _GuardedJacobian(jac, n, guarded)
        keywords["jac"] = _raising(guarded_jac, spec, guarded)
    return keywords


def _raising(call: Callable, spec: SolverSpec, guarded: _Guarded) -> Callable:
    """The guarded ``call(y, t)`` as scipy's ``fun(t, y)`` for a solve_ivp method: scipy's Python methods
    stop at an exception, but step on NaNs (a NaN first step never ends), so the kept error is raised at
    once. The Fortran callbacks (LSODA's: not re-entrant) keep the NaN route of :class:`_Guarded`."""
    if not spec.reentrant:
        return lambda tt, y: call(y, tt)

    def raising(tt, y):
        out = call(y, tt)
        if guarded.error is not None:
            raise guarded.error
        return out

    return raising


def _solve_ivp_method(guarded: _Guarded, y0, t, opts: SolverOptions, jac):
    """The ``run`` of the ``solve_ivp`` methods: one solve with the output times as ``t_eval``."""
    spec = solver(opts.method)
    keywords = _ivp_keywords(spec, opts, jac, guarded, len(y0))
    with warnings.catch_warnings():
        for message in _REPEATED_WARNINGS:
            warnings.filterwarnings("ignore", message, UserWarning)
        solution = scipy.integrate.solve_ivp(
            _raising(guarded, spec, guarded), (float(t[0]), float(t[-1])), y0,
            method=spec.ivp_solver, t_eval=t, dense_output=True, **keywords,
        )
    if guarded.error is not None:
        raise guarded.error
    if not solution.success:
        reached = float(solution.sol.ts[-1]) if solution.sol is not None else float(t[0])
        raise ODESolveError(
            f"{opts.method} failed at t = {reached:.6g} on its way to t = {t[-1]:.6g}: "
            f"{solution.message} Try: loosen rtol/atol, raise max_step, use method="
            f"{either(methods('solve_ivp', _implicit))} if the problem is stiff, or check the dynamics for blow-up."
        )
    ys = np.asarray(solution.y, dtype=np.float64).T.copy()
    ys[0] = y0
    stats = SolveStats(method=opts.method, nfe=int(solution.nfev), nst=len(solution.sol.ts) - 1,
                       nje=int(solution.njev), nsolves=1, method_switches=_switches(spec, solution))
    return ys, stats


def _switches(spec: SolverSpec, solution: Any) -> int:
    """Switches between LSODA's Adams and BDF phases, as far as ``solve_ivp`` shows them: scipy does
    not expose LSODA's method indicator, but only its BDF phase evaluates a Jacobian (Adams iterates
    without one), so a solve with Jacobian evaluations switched at least once."""
    return int(spec.ivp_solver is scipy.integrate.LSODA and solution.njev > 0)


def _dense_ivp(guarded: _Guarded, y0, t_start: float, t_end: float, opts: SolverOptions, jac,
               stepper: str | None = None):
    """The ``dense`` of scipy's methods: one ``solve_ivp`` solve with ``dense_output=True``.

    ``stepper``: the registered ``solve_ivp`` method that steps for a method scipy's ``solve_ivp``
    cannot run (``"LSODA"`` for odeint's LSODA and VODE's Adams, ``"BDF"`` for VODE's BDF); these
    keep scipy's default steps, as before the ``solve_ivp`` methods came. ``None``: the method itself.
    """
    spec = solver(opts.method if stepper is None else stepper)
    # The interval is one of the output intervals: a forward first_step may not fit in it.
    keywords = _ivp_keywords(spec, dataclasses.replace(opts, h0=0.0, hmin=0.0, hmax=0.0 if stepper else opts.hmax),
                             jac, guarded, y0.size)
    lock = contextlib.nullcontext() if spec.reentrant else _exclusive(opts.method, guarded)
    with lock, warnings.catch_warnings():
        for message in _REPEATED_WARNINGS:
            warnings.filterwarnings("ignore", message, UserWarning)
        solution = scipy.integrate.solve_ivp(
            _raising(guarded, spec, guarded), (t_start, t_end), y0, method=spec.ivp_solver,
            dense_output=True, **keywords,
        )
    if guarded.error is not None:
        raise guarded.error
    if not solution.success:
        raise ODESolveError(
            f"the dense solve ({spec.name}) failed between t = {t_start:.6g} and {t_end:.6g}: "
            f"{solution.message}. Try: loosen rtol/atol, or check the dynamics."
        )
    stats = SolveStats(method=spec.name.lower(), nfe=int(solution.nfev), nst=len(solution.t) - 1,
                       nje=int(solution.njev), nsolves=1)
    return solution.sol, stats


def ivp_spec(method: Any) -> SolverSpec | None:
    """The record of a ``solve_ivp`` method given by name or class; ``None`` for one not registered."""
    return next((spec for spec in SOLVERS.values() if spec.ivp_solver is not None
                 and ((isinstance(method, str) and method == spec.name) or method is spec.ivp_solver)), None)


def scipy_solve_ivp(fun: Callable, t_span, y0, **keywords) -> Any:
    """``scipy.integrate.solve_ivp(fun, t_span, y0, **keywords)``, one LSODA at a time.

    The front door :func:`odegrad.solve_ivp` calls scipy through here: with plain inputs its
    result is scipy's, bit for bit; with traced inputs this solve finds the events, the step
    times and ``sol``. A registered method's name becomes its ``OdeSolver`` class (scipy
    does the same for its own names).
    """
    spec = ivp_spec(keywords.get("method", "RK45"))
    if spec is not None:
        keywords = {**keywords, "method": spec.ivp_solver}
    lock = _exclusive(spec.name) if spec is not None and not spec.reentrant else contextlib.nullcontext()
    with lock:
        return scipy.integrate.solve_ivp(fun, t_span, y0, **keywords)


def ivp_record(name: str, ivp_solver: type, *, stiff: bool = False, takes_jacobian: bool = False,
               min_step: bool = False, directions: frozenset = DIRECTIONS,
               doors: frozenset = frozenset({"solve_ivp"}), reentrant: bool = True) -> SolverSpec:
    """The record of a method that ``scipy.integrate.solve_ivp`` steps with ``ivp_solver``.

    scipy's six methods are registered with it; a ``scipy.integrate.OdeSolver`` subclass of one's
    own plugs in with ``register_solver(ivp_record("name", MySolver))``, and
    :func:`odegrad.solve_ivp` then differentiates solves with ``method="name"`` or
    ``method=MySolver``.

    Parameters
    ----------
    name : str
        The ``method`` string.
    ivp_solver : type
        The ``scipy.integrate.OdeSolver`` subclass.
    stiff, takes_jacobian, directions, doors, reentrant
        As in :class:`odegrad.solver_registry.SolverSpec`; ``takes_jacobian``: it reads
        ``solve_ivp``'s ``jac`` (and ``jac_sparsity``, ``lband``, ``uband``).
    min_step : bool, optional
        Whether it reads ``solve_ivp``'s ``min_step`` (scipy's LSODA).

    Returns
    -------
    SolverSpec
        Not yet registered.
    """
    return SolverSpec(
        name=name, family="ivp", stiff=stiff, takes_jacobian=takes_jacobian,
        jacobian_layout="solve_ivp" if takes_jacobian else None, directions=frozenset(directions),
        options=frozenset({"h0", "hmax"} | ({"hmin"} if min_step else set())), doors=frozenset(doors),
        reentrant=reentrant, run=_solve_ivp_method, dense=_dense_ivp, ivp_solver=ivp_solver,
    )
