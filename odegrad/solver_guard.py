"""The guards around the user's callbacks, and the lock that keeps the Fortran solvers from nesting.

:class:`_Guarded` and :class:`_GuardedJacobian` wrap the dynamics and the Jacobian for every
runner: they count calls and keep the first exception, wrong shape or non-finite value, which
:func:`odegrad.solvers.solve` raises once the solver has returned. LSODA and VODE divide by the
error weight ``rtol*|y0| + atol``; :func:`_check_error_weights` refuses a zero one before they run.

Neither LSODA (``scipy.integrate.odeint``) nor VODE is re-entrant: their Fortran state lives in
common blocks, so a solve started from inside another solve's dynamics corrupts the outer one
(LSODA then reports "Illegal input" and returns a wrong answer). :func:`_exclusive` refuses nesting,
and solves started from several threads run one at a time. A solve started from a worker thread
of another solve's dynamics would wait for ever (the outer solve cannot finish before its dynamics
return): a solve that finds the running one stuck in one evaluation for :data:`NESTED_WAIT_S`
seconds raises instead.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Callable, Iterator

import numpy as np

from .solver_types import ODESolveError, SolverOptions


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


def finite_total(v: np.ndarray) -> float:
    """A sum of ``v``'s entries (squared for short vectors) that is finite where they all are, or
    overflows: a short vector's dot product is the cheapest test, a long one's goes to BLAS threads."""
    return v.dot(v) if v.size <= 4096 else np.add.reduce(v)


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
        if not math.isfinite(finite_total(dy)) and not np.isfinite(dy).all():   # the cheap test, exact where finite
            self.error = ODESolveError(
                f"func returned non-finite values (NaN or inf) at t = {t!r}; check the dynamics "
                "and its parameters for overflow, division by zero or a blow-up"
            )
        return dy


class _GuardedJacobian:
    """Wrap a Jacobian like :class:`_Guarded` wraps the dynamics: keep its first exception.

    An exception raised inside a callback of VODE's Fortran code surfaces as a chain of dozens
    of ``SystemError``s; keeping it and returning NaNs lets the solver stop, and :func:`odegrad.solvers.solve`
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
                "really takes that long, raise odegrad.solver_guard.NESTED_WAIT_S.)"
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
