"""One solve as the autograd door sees it: dynamics on flat states, options, where statistics go.

A :class:`Problem` is configuration (the dynamics, sizes, solver and gradient options), where its
statistics go, its plain scipy solves, and the caches of what is derived from it: the compiled
derivative evaluations of :mod:`odegrad.compiled` and the derived problems built by
:mod:`odegrad.derived`. The differentiable solve of a problem is
:func:`odegrad.autograd_backend.solve`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
from autograd.tracer import getval

from . import solvers
from .compiled import CompiledRhs, checked_solve
from .options import AdjointOptions
from .stats import SolveInfo

Rhs = Callable[[Any, Any, Any], Any]
"""``rhs(y, t, theta) -> dy``: dynamics on flat states, written with ``autograd.numpy``."""


@dataclasses.dataclass(eq=False)
class Problem:
    """The static part of one solve: dynamics on flat states, options, where statistics go.

    Attributes
    ----------
    rhs : Rhs
        The dynamics, differentiable by autograd.
    n, n_params : int
        Entries of the flat state and of the flat parameter vector.
    opts : SolverOptions
        Options of this problem's solve.
    backward_opts : SolverOptions
        Options of the backward solves of the adjoint (before the augmented layout's tolerances).
    adjoint : AdjointOptions
        How gradients are computed.
    info : SolveInfo
        Receives the statistics of every solve of this problem and of its derived problems.
    stage : {"forward", "backward"}
        Which count of ``info`` this problem's solves add to.
    make_fun, make_jac : callable
        ``make_fun(theta) -> fun(y, t)`` on plain float arrays for the scipy solver (the fast path,
        no tracing); ``make_jac(theta) -> jac(y, t)`` or ``None``.
    derived : dict
        The problems derived from this one (:mod:`odegrad.derived`), built once per key.
    """

    rhs: Rhs
    n: int
    n_params: int
    opts: solvers.SolverOptions
    backward_opts: solvers.SolverOptions
    adjoint: AdjointOptions
    info: SolveInfo
    stage: str
    make_fun: Callable[[np.ndarray], Callable[[np.ndarray, float], np.ndarray]]
    make_jac: Callable[[np.ndarray], Callable | None] = lambda theta: None
    derived: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _compiled: CompiledRhs | None = dataclasses.field(default=None, init=False, repr=False)

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve of this problem."""
        self.info.record(self.stage, stats)

    def plain_solve(self, y0: np.ndarray, t: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, solvers.SolveStats]:
        """One scipy solve of this problem on plain arrays: ``(ys, stats)``, not yet recorded.

        Compiled derivative evaluations made in it are verified before it returns
        (:func:`odegrad.compiled.checked_solve`).
        """
        return checked_solve(lambda: solvers.solve(self.make_fun(theta), y0, t, self.opts, self.make_jac(theta)))

    def resolver(self, theta: Any) -> Callable[..., np.ndarray]:
        """``resolve(y0, t, theta=None) -> ys``: plain solves of this problem on float64 arrays,
        their work counted as backward work (:class:`odegrad.methods.base.Resolve`); ``theta=None``
        solves with the value of ``theta`` given here."""
        current = np.asarray(getval(theta), dtype=np.float64)

        def resolve(y0: np.ndarray, t: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
            params = current if theta is None else np.asarray(theta, dtype=np.float64)
            ys, stats = self.plain_solve(np.asarray(y0, dtype=np.float64), np.asarray(t, dtype=np.float64), params)
            self.info.record("backward", stats)
            return ys

        return resolve

    def dense_forward(self, y_start: np.ndarray, t_start: float, t_end: float,
                      theta: np.ndarray) -> Callable[[float], np.ndarray]:
        """Solve forwards over ``[t_start, t_end]`` with dense output (the backward method,
        the forward tolerances); the work counts as backward work."""
        opts = dataclasses.replace(self.opts, method=self.backward_opts.method)
        y_of_t, stats = solvers.dense_solve(self.make_fun(theta), y_start, t_start, t_end, opts,
                                            self.make_jac(theta))
        self.info.record("backward", stats)
        return y_of_t

    @property
    def compiled(self) -> CompiledRhs | None:
        """Compiled derivative evaluations of ``rhs`` (:mod:`odegrad.compiled`), made at first use.

        A derived problem (an adjoint or sensitivity solve) compiles too: its ``rhs`` is traced
        through autograd's own derivative of ``f``, so the solves of a second derivative
        (Hessians, grad-of-grad) evaluate compiled where every operation has a JAX counterpart.
        """
        if self._compiled is None:
            report = self._report_derivatives if self.stage == "forward" else self._report_second
            self._compiled = CompiledRhs(self.rhs, self.make_fun, self.n, self.n_params, report)
        return self._compiled

    def _report_derivatives(self, backend: str, note: str | None) -> None:
        self.info.derivatives, self.info.derivatives_note = backend, note

    def _report_second(self, backend: str, note: str | None) -> None:
        """A derived problem's backend: only why its own derivatives stay autograd's where the first
        derivatives are compiled, as a note beside their backend (which ``info.derivatives`` keeps
        describing); where those are autograd's, their note already says why."""
        if backend == "autograd" and self.info.derivatives == "jax" and note is not None and "warming up" not in note:
            self.info.derivatives_note = f"derivatives of the gradient's own solves (second derivatives) by autograd: {note}"
