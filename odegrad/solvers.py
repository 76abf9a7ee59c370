"""The scipy back-ends behind one signature, and the records that register them.

Each back-end integrates ``dy/dt = fun(y, t)`` for a flat float64 state and returns the states at
the requested output times together with :class:`SolveStats`. Every failure, including the ones
scipy only warns about (LSODA's "Excess work done" returns garbage rows), raises
:class:`ODESolveError`. Each of scipy's methods is one :class:`odegrad.solver_registry.SolverSpec`,
registered at the end of this module; :func:`solve` and :func:`dense_solve` run a method through
its record, and :data:`METHODS`, :data:`IVP_METHODS`, :data:`STIFF_METHODS` and
:data:`JACOBIAN_METHODS` are computed from the records.

Neither LSODA (``scipy.integrate.odeint``) nor VODE is re-entrant: their Fortran state lives in
common blocks, so a solve started from inside another solve's dynamics corrupts the outer one
(LSODA then reports "Illegal input" and returns a wrong answer). :func:`solve` refuses nesting,
and solves started from several threads run one at a time. A solve started from a worker thread
of another solve's dynamics would wait for ever (the outer solve cannot finish before its dynamics
return): a solve that finds the running one stuck in one evaluation for :data:`NESTED_WAIT_S`
seconds raises instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import scipy.integrate

from .solver_registry import DIRECTIONS, SOLVERS, SolverSpec, either, methods, register_solver, solver

DEFAULT_TOL = 1.49012e-8
"""scipy's ``odeint`` default for ``rtol`` and ``atol``, used for every method."""
_VODE_DEFAULT_STEPS = 5000
"""VODE's step budget per output interval when ``mxstep`` is 0. LSODA's is scipy's 500; VODE
needs about four times LSODA's steps on Robertson (2001 to reach t = 1e5), so 500 would fail
ordinary stiff problems."""

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


class ODESolveError(RuntimeError):
    """An ODE solve failed; the message names the method, the time reached and what to try."""


@dataclasses.dataclass
class SolveStats:
    """Work done by one or more solves.

    Attributes
    ----------
    method : str
        The method's registered name (a dense solve's: the ``solve_ivp`` method that stepped,
        lower-cased).
    nfe : int
        Number of evaluations of the dynamics.
    nst : int
        Number of accepted solver steps.
    nje : int
        Number of Jacobian evaluations (LSODA/BDF only; 0 for functional iteration).
    nsolves : int
        Number of solver runs added up here (one per backward interval for the adjoint).
    method_switches : int
        For LSODA, the number of switches between its Adams and BDF phases.
    infodict : dict or None
        For one solve of :func:`solve`: the ``infodict`` of ``scipy.integrate.odeint`` (one row per
        output time after the first; see :func:`infodict_of_no_steps`). Not added up by :meth:`add`.
    """

    method: str
    nfe: int = 0
    nst: int = 0
    nje: int = 0
    nsolves: int = 0
    method_switches: int = 0
    infodict: dict | None = dataclasses.field(default=None, compare=False, repr=False)

    def add(self, other: "SolveStats") -> None:
        """Add ``other``'s counts to these, in place."""
        self.nfe += other.nfe
        self.nst += other.nst
        self.nje += other.nje
        self.nsolves += other.nsolves
        self.method_switches += other.method_switches


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Options of one solve, in scipy's ``odeint`` vocabulary.

    ``rtol``/``atol`` are scalars or vectors over the flat state. ``h0``, ``hmax``, ``hmin``
    and ``mxstep`` are mapped onto VODE's ``first_step``, ``max_step``, ``min_step`` and
    ``nsteps`` for the VODE methods, and ``h0``, ``hmax``, ``hmin`` onto ``solve_ivp``'s
    ``first_step``, ``max_step`` and (LSODA only) ``min_step`` for the :data:`IVP_METHODS`
    (0: scipy's default); ``lsoda_kwargs`` go to ``scipy.integrate.odeint`` only.
    ``stop_at_end``: LSODA never steps past the last output time (its ``tcrit``), so the dynamics
    are not evaluated outside the solve's interval; the derived solves that run backwards use it,
    since ``f`` may be undefined before ``t_0`` (solve_ivp's methods never step past ``t_bound``).
    """

    method: str = "lsoda"
    rtol: float | np.ndarray = DEFAULT_TOL
    atol: float | np.ndarray = DEFAULT_TOL
    h0: float = 0.0
    hmax: float = 0.0
    hmin: float = 0.0
    mxstep: int = 0
    lsoda_kwargs: dict = dataclasses.field(default_factory=dict)
    stop_at_end: bool = False


def _check_error_weights(y0: np.ndarray, opts: SolverOptions) -> None:
    """LSODA and VODE divide by the error weight ``rtol*|y0| + atol``: it must not be 0."""
    weight = np.asarray(opts.rtol) * np.abs(y0) + np.asarray(opts.atol)
    zero = np.nonzero(np.broadcast_to(weight, y0.shape) <= 0)[0]
    if len(zero):
        raise ValueError(
            f"rtol*|y0| + atol is 0 for state component(s) {zero[:10].tolist()} (rtol = "
            f"{np.min(opts.rtol):g}, atol = {np.min(opts.atol):g} there): the solvers measure "
            "errors relative to this weight. Give atol > 0 (e.g. atol=1e-12) for components that "
            "start at 0, and do not set rtol and atol both to 0."
        )


class _Guarded:
    """Wrap the dynamics: count calls, keep the first exception or non-finite value, check shape."""

    def __init__(self, fun: Callable[[np.ndarray, float], np.ndarray], n: int):
        self.fun = fun
        self.n = n
        self.nfe = 0
        self.calls = 0
        """Evaluations of ``fun`` and of the Jacobian begun: progress seen by other threads."""
        self.busy = False
        """Whether the user's code (``fun`` or the Jacobian) is running."""
        self.error: BaseException | None = None

    def __call__(self, y: np.ndarray, t: float) -> np.ndarray:
        self.nfe += 1
        if self.error is not None:
            return np.full(self.n, np.nan)
        try:
            self.calls, self.busy = self.calls + 1, True
            dy = np.asarray(self.fun(y, t), dtype=np.float64)
        except BaseException as exc:  # re-raised after the solver returns
            self.error = exc
            return np.full(self.n, np.nan)
        finally:
            self.busy = False
        if dy.shape != (self.n,):
            self.error = ValueError(
                f"func returned an array with {dy.size} entries (shape {dy.shape}) but the state "
                f"has {self.n}; func(y, t, *args) must return an array of y0's shape"
            )
            return np.full(self.n, np.nan)
        if not math.isfinite(dy.dot(dy)) and not np.isfinite(dy).all():   # dot: the cheap test, exact where finite
            self.error = ODESolveError(
                f"func returned non-finite values (NaN or inf) at t = {t!r}; check the dynamics "
                "and its parameters for overflow, division by zero or a blow-up"
            )
        return dy


class _GuardedJacobian:
    """Wrap a Jacobian like :class:`_Guarded` wraps the dynamics: keep its first exception.

    An exception raised inside a callback of VODE's Fortran code surfaces as a chain of dozens
    of ``SystemError``s; keeping it and returning NaNs lets the solver stop, and :func:`solve`
    re-raises the user's own exception.
    """

    def __init__(self, jac: Callable[[np.ndarray, float], np.ndarray], n: int, guarded: _Guarded):
        self.jac = jac
        self.n = n
        self.guarded = guarded

    def __call__(self, y: np.ndarray, t: float) -> np.ndarray:
        if self.guarded.error is not None:
            return np.full((self.n, self.n), np.nan)
        try:
            self.guarded.calls, self.guarded.busy = self.guarded.calls + 1, True
            matrix = np.asarray(self.jac(y, t), dtype=np.float64)
            if matrix.shape != (self.n, self.n):
                raise ValueError(
                    f"the Jacobian (Dfun) returned shape {matrix.shape} but the state has "
                    f"{self.n} entries; Dfun must return an ({self.n}, {self.n}) array"
                )
        except BaseException as exc:  # re-raised after the solver returns
            self.guarded.error = exc
            return np.full((self.n, self.n), np.nan)
        finally:
            self.guarded.busy = False
        return matrix


_active = threading.local()
_one_at_a_time = threading.Lock()
"""Held by the running solve: LSODA's and VODE's Fortran state is shared by all threads, so solves
from several threads (e.g. the replicas of ``tf.distribute.MirroredStrategy``) take turns."""
_running: list[_Guarded] = []
"""The dynamics of the solve holding the lock, watched by solves waiting in other threads."""

NESTED_WAIT_S = 60.0
"""Seconds a solve waits while the solve running in another thread stays inside one evaluation of
its dynamics (or Jacobian) before concluding that it was itself started from inside that evaluation
(from a worker thread of ``func``, which waits for it) and raising ``RuntimeError`` instead of
deadlocking. Solves whose evaluations return wait for each other however long they take; raise this
only for dynamics whose single evaluation takes longer while solves run in several threads."""


def _acquire(method: str) -> None:
    """Take the solver lock, after the solves of other threads; raise if the running one is stuck."""
    stuck_at, since = None, time.monotonic()
    while not _one_at_a_time.acquire(timeout=min(0.05, NESTED_WAIT_S)):
        running = _running[0] if _running else None
        state = (id(running), running.calls) if running is not None and running.busy else None
        if state is None or state != stuck_at:
            stuck_at, since = state, time.monotonic()
        elif time.monotonic() - since >= NESTED_WAIT_S:
            raise RuntimeError(
                f"odegrad.odeint ({method}) waited {NESTED_WAIT_S:g} s for a solve in another thread "
                "that is stuck inside one evaluation of its dynamics: this solve was most likely started "
                "from inside that evaluation (e.g. by a worker thread of func, which func waits for). "
                "scipy's LSODA and VODE are not re-entrant: a solve cannot run inside the dynamics of "
                "another, from any thread. Solve the inner problem before or after the outer solve, or "
                "combine both into one augmented state. (If one evaluation of the other thread's dynamics "
                "really takes that long, raise odegrad.solvers.NESTED_WAIT_S.)"
            )


@contextlib.contextmanager
def _exclusive(method: str, guarded: _Guarded | None = None) -> Iterator[None]:
    if getattr(_active, "method", None) is not None:
        raise RuntimeError(
            f"odegrad.odeint was called from inside the dynamics of another solve "
            f"({_active.method} is running). scipy's LSODA and VODE are not re-entrant: "
            "a nested solve would corrupt the outer one. Solve the inner problem before or "
            "after the outer solve, or combine both into one augmented state."
        )
    _acquire(method)
    _active.method = method
    if guarded is not None:  # None: scipy's solve_ivp on the user's own fun, not watched
        _running.append(guarded)
    try:
        yield
    finally:
        _running.clear()
        _active.method = None
        _one_at_a_time.release()


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
        vode_jac = (lambda tt, y: np.asarray(jac(y, tt)).T) if transpose else (lambda tt, y: jac(y, tt))
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


@dataclasses.dataclass(frozen=True)
class IvpJacobian:
    """The Jacobian keywords of one ``scipy.integrate.solve_ivp`` method, in scipy's convention.

    Attributes
    ----------
    method : str
        The method (one of :data:`IVP_METHODS`) the keywords were given for; another method
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
    """scipy ``solve_ivp`` keywords for the method of ``spec`` from :class:`SolverOptions` and a Jacobian."""
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
        keywords["jac"] = _raising(lambda tt, y: guarded_jac(y, tt), spec, guarded)
    return keywords


def _raising(call: Callable, spec: SolverSpec, guarded: _Guarded) -> Callable:
    """``call`` for a solve_ivp method: scipy's Python methods stop at an exception, but step on
    NaNs (a NaN first step never ends), so the kept error is raised at once. The Fortran callbacks
    (LSODA's: not re-entrant) keep the NaN route of :class:`_Guarded`."""
    if not spec.reentrant:
        return call

    def raising(tt, y):
        out = call(tt, y)
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
            _raising(lambda tt, y: guarded(y, tt), spec, guarded), (float(t[0]), float(t[-1])), y0,
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
                       nje=int(solution.njev), nsolves=1)
    return ys, stats


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
            _raising(lambda t, y: guarded(y, t), spec, guarded), (t_start, t_end), y0, method=spec.ivp_solver,
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


def _ivp_spec(method: Any) -> SolverSpec | None:
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
    spec = _ivp_spec(keywords.get("method", "RK45"))
    if spec is not None:
        keywords = {**keywords, "method": spec.ivp_solver}
    lock = _exclusive(spec.name) if spec is not None and not spec.reentrant else contextlib.nullcontext()
    with lock:
        return scipy.integrate.solve_ivp(fun, t_span, y0, **keywords)


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
    with contextlib.nullcontext() if spec.reentrant else _exclusive(opts.method, guarded):
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
    y_of_t, stats = spec.dense(guarded, y0, t_start, t_end, opts, jac)
    if guarded.error is not None:
        raise guarded.error
    return y_of_t, stats


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
