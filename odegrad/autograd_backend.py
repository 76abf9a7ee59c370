"""The autograd backend: the ``solve`` primitive and its derivative rules.

``solve(y0, t, theta, problem)`` is a plain scipy solve (:func:`odegrad.solvers.solve`) that
autograd treats as a primitive; the solve's statistics travel with its result into the derivative
rules (:class:`Solved`). Its vector-Jacobian product is the registered gradient method named by
``problem.adjoint.mode`` (:mod:`odegrad.methods`), given a :class:`odegrad.methods.GradientRequest`
with this primitive as its ``solve``, :class:`AutogradOps` as its ``ops`` and
:class:`AutogradDynamics` as its dynamics; autograd differentiates that VJP again (Hessians,
grad-of-grad). Its Jacobian-vector product solves the forward sensitivity equations with the same
primitive. The problems it solves are :class:`odegrad.problem.Problem`; the derived dynamics the
methods solve (the adjoint's backward states, forward sensitivities) are built by
:mod:`odegrad.derived`.

The front door that builds a :class:`Problem` from scipy-style arguments is
:func:`odegrad.integrate.odeint`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import derived, solvers
from .augmented import AugmentedLayout
from .methods.base import GradientRequest, Wrt
from .methods.registry import get
from .problem import Problem
from .sensitivity import SensitivityLayout


class AutogradDynamics:
    """A :class:`odegrad.adjoint.Dynamics` over autograd arrays: a problem with ``theta`` bound."""

    def __init__(self, problem: Problem, theta: Any):
        self.problem = problem
        self.theta = theta
        self.n_params = problem.n_params

    def f(self, y: Any, t: Any) -> Any:
        return self.problem.rhs(y, t, self.theta)

    def augmented(self, layout: AugmentedLayout) -> "AutogradDynamics":
        return AutogradDynamics(derived.augmented(self.problem, layout), self.theta)

    def dense_forward(self, y_start: Any, t_start: Any, t_end: Any) -> Callable[[float], np.ndarray]:
        if any(isbox(x) for x in (y_start, t_start, t_end, self.theta)):
            raise NotImplementedError(
                "adjoint='interpolate' gives first derivatives only; use adjoint='auto', "
                "'forward' or 'checkpoint' for Hessians, grad-of-grad and other higher derivatives"
            )
        return self.problem.dense_forward(y_start, float(t_start), float(t_end), self.theta)

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray],
                      layout: AugmentedLayout) -> "AutogradDynamics":
        return AutogradDynamics(derived.adjoint_along(self.problem, y_of_t, layout), self.theta)

    def sensitivity(self, layout: SensitivityLayout) -> "AutogradDynamics":
        return AutogradDynamics(derived.sensitivity(self.problem, layout), self.theta)


class AutogradOps:
    """:class:`odegrad.ops.Ops` from ``autograd.numpy``."""

    concat = staticmethod(anp.concatenate)
    stack = staticmethod(anp.stack)

    @staticmethod
    def zeros(n: int, like: Any) -> Any:
        return anp.zeros(n)

    @staticmethod
    def vdot(a: Any, b: Any) -> Any:
        return anp.sum(a * b)

    reshape = staticmethod(anp.reshape)
    einsum = staticmethod(anp.einsum)

    @staticmethod
    def value(x: Any) -> np.ndarray:
        return np.asarray(getval(x), dtype=np.float64)

    @staticmethod
    def constant(array: np.ndarray, like: Any) -> np.ndarray:
        return np.asarray(array, dtype=np.result_type(getval(like)))


@dataclasses.dataclass(frozen=True, eq=False)
class Solved:
    """A plain scipy solve, handed to the primitive as a non-differentiated argument so that its
    derivative rules read the solve's statistics (evaluations, LSODA's switches to BDF)."""

    ys: np.ndarray
    stats: solvers.SolveStats


def solve_with_stats(y0: Any, t: Any, theta: Any, problem: Problem) -> tuple[Any, solvers.SolveStats]:
    """:func:`solve` and the statistics of its scipy solve (recorded in ``problem.info``)."""
    ys, stats = problem.plain_solve(getval(y0), getval(t), getval(theta))
    problem.record(stats)
    return _solved(y0, t, theta, problem, Solved(ys, stats)), stats


def solve(y0: Any, t: Any, theta: Any, problem: Problem) -> Any:
    """``ys[i] = y(t[i])`` for ``dy/dt = problem.rhs(y, t, theta)``, ``y(t[0]) = y0`` (flat states);
    differentiable by autograd in ``y0``, ``t`` and ``theta``, to any order."""
    return solve_with_stats(y0, t, theta, problem)[0]


@primitive
def _solved(y0: np.ndarray, t: np.ndarray, theta: np.ndarray, problem: Problem, solved: Solved) -> np.ndarray:
    """The primitive autograd differentiates: the states of the scipy solve ``solved`` of
    ``problem`` from ``(y0, t, theta)``."""
    return solved.ys


def _solve_dynamics(s0: Any, times: Any, dynamics: AutogradDynamics) -> Any:
    return solve(s0, times, dynamics.theta, dynamics.problem)


def _solve_vjp(argnums, ys, args, kwargs):
    """The VJP of the registered method ``problem.adjoint.mode``, in autograd's argument order."""
    y0, t, theta, problem, solved = args
    method = get(problem.adjoint.mode)
    method.check(problem.adjoint, "autograd")
    request = GradientRequest(
        ys=ys, y0=y0, t=t, dynamics=AutogradDynamics(problem, theta), solve=_solve_dynamics, ops=AutogradOps,
        options=problem.adjoint, forward_opts=problem.opts, backward_opts=problem.backward_opts,
        stats=solved.stats, info=problem.info, wrt=Wrt(y0=0 in argnums, t=1 in argnums, params=2 in argnums),
        door="autograd", higher_order=any(isbox(x) for x in (ys, y0, t, theta)),
        derived=problem.stage == "backward", resolve=problem.resolver(theta), params=theta, traced=isbox,
    )
    method.check_request(request)
    vjp = method.vjp(request)

    def ordered(g):
        gradient = vjp(g)
        if gradient.ran:
            problem.info.gradient_methods.append(gradient.method)
        grads = (gradient.y0, gradient.t, gradient.params)
        return tuple(grads[k] for k in argnums)

    return ordered


defvjp_argnums(_solved, _solve_vjp)


def _solve_jvp(argnums, tangents, ys, args, kwargs):
    """Forward mode: the forward sensitivity equations, solved by the same primitive."""
    y0, t, theta, problem, _ = args
    given = dict(zip(argnums, tangents))
    d_y0 = given.get(0, anp.zeros(problem.n))
    d_theta = given.get(2, anp.zeros(problem.n_params))
    s0 = d_y0
    if 1 in given:
        s0 = s0 - problem.rhs(y0, t[0], theta) * given[1][0]
    z = solve(anp.concatenate([y0, s0]), t, anp.concatenate([theta, d_theta]), derived.tangent(problem))
    d_ys = z[:, problem.n:]
    if 1 in given:
        rates = anp.stack([problem.rhs(ys[i], t[i], theta) for i in range(len(t))])
        d_ys = d_ys + rates * anp.reshape(given[1], (-1, 1))
    return d_ys


defjvp_argnums(_solved, _solve_jvp)
