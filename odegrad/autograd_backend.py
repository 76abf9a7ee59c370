"""The autograd backend: the ``solve`` primitive and its derivative rules.

``solve(y0, t, theta, problem)`` is a plain scipy solve (:func:`odegrad.solvers.solve`) that
autograd treats as a primitive. Its vector-Jacobian product is Algorithm 1 with Appendix C
(:func:`odegrad.adjoint.backward`) run with this primitive as its ``solve`` and ``autograd.numpy``
as its ``ops``, so autograd differentiates the VJP again (Hessians, grad-of-grad). Its
Jacobian-vector product solves the forward sensitivity equations with the same primitive.

The front door that builds a :class:`Problem` from scipy-style arguments is
:func:`odegrad.integrate.odeint`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import jacobian, make_jvp, make_vjp
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import isbox

from . import solvers
from .adjoint import backward
from .augmented import AugmentedLayout
from .options import AdjointOptions
from .stats import SolveInfo

MAX_AUTO_JACOBIAN_SIZE = 200
"""Largest augmented state for which the backward solves get autograd's exact Jacobian by default."""

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
    _derived: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve of this problem."""
        self.info.record(self.stage, stats)

    def _backward_problem(self, rhs: Rhs, layout: AugmentedLayout) -> "Problem":
        """A problem of the backward state ``layout`` with dynamics ``rhs``."""
        opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
        wanted = self.adjoint.jacobian
        if wanted is None:
            wanted = opts.method in ("bdf", "lsoda") and layout.size <= MAX_AUTO_JACOBIAN_SIZE
        make_jac: Callable[[np.ndarray], Callable | None] = lambda theta: None
        if wanted:
            jac = jacobian(rhs, 0)
            make_jac = lambda theta: (lambda s, t: jac(s, t, theta))  # noqa: E731
        return dataclasses.replace(
            self, rhs=rhs, n=layout.size, opts=opts, backward_opts=opts, stage="backward",
            make_fun=lambda theta: (lambda s, t: rhs(s, t, theta)), make_jac=make_jac,
        )

    def augmented(self, layout: AugmentedLayout) -> "Problem":
        """The problem of the backward state ``layout`` (``[y, a, a_t, a_theta]``), built once."""
        if layout not in self._derived:
            rhs = self.rhs

            def aug_rhs(s, t, theta):
                y, a, _, _ = layout.split(s)
                vjp, dy = make_vjp(rhs, argnum=(0, 1, 2))(y, t, theta)
                v_y, v_t, v_theta = vjp(a)
                return layout.join(anp.concatenate, dy, -v_y, -anp.reshape(v_t, (1,)), -v_theta)

            self._derived[layout] = self._backward_problem(aug_rhs, layout)
        return self._derived[layout]

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray], layout: AugmentedLayout) -> "Problem":
        """The problem of ``layout`` without ``y``, which is read from a forward interpolant."""
        rhs = self.rhs

        def adj_rhs(s, t, theta):
            _, a, _, _ = layout.split(s)
            vjp, _ = make_vjp(rhs, argnum=(0, 1, 2))(y_of_t(t), t, theta)
            v_y, v_t, v_theta = vjp(a)
            return layout.join(anp.concatenate, None, -v_y, -anp.reshape(v_t, (1,)), -v_theta)

        return self._backward_problem(adj_rhs, layout)

    def dense_forward(self, y_start: np.ndarray, t_start: float, t_end: float,
                      theta: np.ndarray) -> Callable[[float], np.ndarray]:
        """Solve forwards over ``[t_start, t_end]`` with dense output (the backward method,
        the forward tolerances); the work counts as backward work."""
        opts = dataclasses.replace(self.opts, method=self.backward_opts.method)
        y_of_t, stats = solvers.dense_solve(self.make_fun(theta), y_start, t_start, t_end, opts,
                                            self.make_jac(theta))
        self.info.record("backward", stats)
        return y_of_t

    @functools.cached_property
    def tangent(self) -> "Problem":
        """The forward sensitivity problem of ``[y, s]`` with parameters ``[theta, dtheta]``.

        ``s' = ∂f/∂y s + ∂f/∂θ dθ``: the tangent of the solution, solved forwards with the
        state's tolerances for both halves.
        """
        n, p, rhs = self.n, self.n_params, self.rhs

        def tan_rhs(z, t, theta_and_tangent):
            theta, d_theta = theta_and_tangent[:p], theta_and_tangent[p:]
            jvp = make_jvp(lambda y, th: rhs(y, t, th), argnum=(0, 1))(z[:n], theta)
            dy, ds = jvp((z[n:], d_theta))
            return anp.concatenate([dy, ds])

        atol = self.opts.atol
        if np.ndim(atol):
            atol = np.concatenate([atol, atol])
        opts = dataclasses.replace(self.opts, atol=atol, lsoda_kwargs={})
        return dataclasses.replace(
            self, rhs=tan_rhs, n=2 * n, n_params=2 * p, opts=opts,
            make_fun=lambda th: (lambda z, t: tan_rhs(z, t, th)), make_jac=lambda th: None,
        )


class AutogradDynamics:
    """A :class:`odegrad.adjoint.Dynamics` over autograd arrays: a problem with ``theta`` bound."""

    def __init__(self, problem: Problem, theta: Any):
        self.problem = problem
        self.theta = theta
        self.n_params = problem.n_params

    def f(self, y: Any, t: Any) -> Any:
        return self.problem.rhs(y, t, self.theta)

    def augmented(self, layout: AugmentedLayout) -> "AutogradDynamics":
        return AutogradDynamics(self.problem.augmented(layout), self.theta)

    def dense_forward(self, y_start: Any, t_start: Any, t_end: Any) -> Callable[[float], np.ndarray]:
        if any(isbox(x) for x in (y_start, t_start, t_end, self.theta)):
            raise NotImplementedError(
                "adjoint='interpolate' gives first derivatives only; use adjoint='checkpoint' "
                "for Hessians, grad-of-grad and other higher derivatives"
            )
        return self.problem.dense_forward(y_start, float(t_start), float(t_end), self.theta)

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray],
                      layout: AugmentedLayout) -> "AutogradDynamics":
        return AutogradDynamics(self.problem.adjoint_along(y_of_t, layout), self.theta)


class AutogradOps:
    """:class:`odegrad.adjoint.Ops` from ``autograd.numpy``."""

    concat = staticmethod(anp.concatenate)
    stack = staticmethod(anp.stack)

    @staticmethod
    def zeros(n: int, like: Any) -> Any:
        return anp.zeros(n)

    @staticmethod
    def vdot(a: Any, b: Any) -> Any:
        return anp.sum(a * b)


@primitive
def solve(y0: np.ndarray, t: np.ndarray, theta: np.ndarray, problem: Problem) -> np.ndarray:
    """``ys[i] = y(t[i])`` for ``dy/dt = problem.rhs(y, t, theta)``, ``y(t[0]) = y0`` (flat states)."""
    ys, stats = solvers.solve(problem.make_fun(theta), y0, t, problem.opts, problem.make_jac(theta))
    problem.record(stats)
    return ys


def _solve_dynamics(s0: Any, times: Any, dynamics: AutogradDynamics) -> Any:
    return solve(s0, times, dynamics.theta, dynamics.problem)


def _solve_vjp(argnums, ys, args, kwargs):
    _, t, theta, problem = args

    def vjp(g):
        mode = problem.adjoint.mode
        try:
            grads = backward(g, ys, t, AutogradDynamics(problem, theta), _solve_dynamics,
                             AutogradOps, mode)
        except solvers.ODESolveError as exc:
            if mode == "interpolate":
                raise
            raise solvers.ODESolveError(
                f"the backward (adjoint) solve failed: {exc} For stiff problems, reconstructing y "
                "backwards is unstable: use adjoint='interpolate' (with method='lsoda')."
            ) from exc
        return tuple(grads[k] for k in argnums)

    return vjp


defvjp_argnums(solve, _solve_vjp)


def _solve_jvp(argnums, tangents, ys, args, kwargs):
    """Forward mode: the forward sensitivity equations, solved by the same primitive."""
    y0, t, theta, problem = args
    given = dict(zip(argnums, tangents))
    d_y0 = given.get(0, anp.zeros(problem.n))
    d_theta = given.get(2, anp.zeros(problem.n_params))
    s0 = d_y0
    if 1 in given:
        s0 = s0 - problem.rhs(y0, t[0], theta) * given[1][0]
    z = solve(anp.concatenate([y0, s0]), t, anp.concatenate([theta, d_theta]), problem.tangent)
    d_ys = z[:, problem.n:]
    if 1 in given:
        rates = anp.stack([problem.rhs(ys[i], t[i], theta) for i in range(len(t))])
        d_ys = d_ys + rates * anp.reshape(given[1], (-1, 1))
    return d_ys


defjvp_argnums(solve, _solve_jvp)
