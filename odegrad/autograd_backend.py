"""The autograd backend: the ``solve`` primitive and its derivative rules.

``solve(y0, t, theta, problem)`` is a plain scipy solve (:func:`odegrad.solvers.solve`) that
autograd treats as a primitive; the solve's statistics travel with its result into the derivative
rules (:class:`Solved`). Its vector-Jacobian product is the registered gradient method named by
``problem.adjoint.mode`` (:mod:`odegrad.methods`), given a :class:`odegrad.methods.GradientRequest`
with this primitive as its ``solve``, :class:`AutogradOps` as its ``ops`` and
:class:`AutogradDynamics` as its dynamics; autograd differentiates that VJP again (Hessians,
grad-of-grad). Its Jacobian-vector product solves the forward sensitivity equations with the same
primitive. Where the gradient method asks for it (:func:`sensitivities_to_solve`), the forward pass
of a first derivative solves ``y`` with its forward sensitivities and hands them to the VJP.
The problems it solves are :class:`odegrad.problem.Problem`; the derived dynamics the
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
from autograd.core import VJPNode
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import derived, solvers
from .augmented import AugmentedLayout
from .methods.base import ForwardShape, GradientRequest, Wrt
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

    def backward_method(self, method: str) -> "AutogradDynamics":
        opts = solvers.derived_options(self.problem.backward_opts, method)
        return AutogradDynamics(dataclasses.replace(self.problem, backward_opts=opts), self.theta)


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
    derivative rules read the solve's statistics (evaluations, LSODA's switches to BDF) and, where
    the forward pass solved them, ``y``'s forward sensitivities (layout and solution ``zs``)."""

    ys: np.ndarray
    stats: solvers.SolveStats
    sensitivities: tuple[SensitivityLayout, np.ndarray] | None = None


def _controls_y_alike(problem: Problem) -> bool:
    """Whether the derived solves of ``problem`` control ``y``'s error as its forward solve does
    (same method, tolerances and LSODA options), so that a sensitivity solve's ``y`` may stand for
    the forward solution."""
    forward, derived_opts = problem.opts, problem.backward_opts
    return (derived_opts.method == forward.method and np.ndim(forward.rtol) == 0
            and float(forward.rtol) == float(derived_opts.rtol)
            and np.array_equal(np.broadcast_to(forward.atol, (problem.n,)),
                               np.broadcast_to(derived_opts.atol, (problem.n,)))
            and set(forward.lsoda_kwargs) <= {"tcrit"})


def sensitivities_to_solve(y0: Any, t: Any, theta: Any, problem: Problem) -> tuple[SensitivityLayout, bool] | None:
    """The layout of the forward sensitivities to solve with ``y`` in this forward pass and whether
    that solve should go on where it turns stiff
    (:meth:`odegrad.methods.GradientMethod.sensitivities_in_forward_if_stiff`), or ``None``.

    Where the inputs are traced at one level by reverse mode (a first derivative will be asked for;
    a Hessian's inner solve is traced twice and its VJP solves afresh; forward mode solves its own
    tangents), the derived solves control ``y`` as
    the forward solve does, and the gradient method wants them
    (:meth:`odegrad.methods.GradientMethod.sensitivities_in_forward`).
    """
    inputs = (y0, t, theta)
    traced = [isbox(x) for x in inputs]
    boxes = [x for x in inputs if isbox(x)]
    if not boxes or len(getval(t)) < 2:
        return None
    if any(isbox(x._value) or not isinstance(x._node, VJPNode) for x in boxes):
        return None     # traced twice (solved afresh by its VJP), or by forward mode (its own tangent solve)
    if problem.stage != "forward" or not _controls_y_alike(problem):
        return None
    method = get(problem.adjoint.mode)
    try:
        method.check(problem.adjoint, "autograd")
    except ValueError:                  # refused again, with its message, when the gradient is asked for
        return None
    layout = SensitivityLayout(problem.n, problem.n_params, with_y0=traced[0], with_t0=traced[1],
                               with_params=traced[2])
    shape = ForwardShape(n=problem.n, columns=layout.columns, n_intervals=len(getval(t)) - 1,
                         rtol=float(problem.backward_opts.rtol), door="autograd")
    if not method.sensitivities_in_forward(shape):
        return None
    return layout, method.sensitivities_in_forward_if_stiff(shape)


class TurnedStiff(Exception):
    """The forward pass's sensitivity solve asked for a Jacobian it was not to estimate."""


def _refuse_jacobian(z: np.ndarray, t: float) -> np.ndarray:
    raise TurnedStiff(f"the solve of y with its sensitivities turned stiff at t = {t!r}")


def _solve_with_sensitivities(y0: np.ndarray, t: np.ndarray, theta: np.ndarray, problem: Problem,
                              layout: SensitivityLayout, if_stiff: bool) -> tuple[np.ndarray, solvers.SolveStats]:
    """``(zs, stats)``: the plain solve of ``z = [y, S]`` from ``y0`` that the gradient method's
    own sensitivity solve would run (:func:`odegrad.derived.sensitivity`); without ``if_stiff``,
    raising :class:`TurnedStiff` at the solver's first request for a Jacobian where its method
    reads one and the problem gives none (the solver would estimate it by finite differences).
    Methods that read no Jacobian get none: VODE would run its Adams method with Newton iterations
    on any Jacobian it is given."""
    f0 = problem.make_fun(theta)(y0, t[0]) if layout.with_t0 else None
    sensitivity = derived.sensitivity(problem, layout)
    if not if_stiff and solvers.solver(sensitivity.opts.method).takes_jacobian and sensitivity.make_jac(theta) is None:
        sensitivity = dataclasses.replace(sensitivity, make_jac=lambda theta: _refuse_jacobian)
    return sensitivity.plain_solve(layout.initial_state(y0, f0, AutogradOps), t, theta)


def solve_with_stats(y0: Any, t: Any, theta: Any, problem: Problem,
                     sensitivities_in_forward: bool = False) -> tuple[Any, solvers.SolveStats]:
    """:func:`solve` and the statistics of its scipy solve (recorded in ``problem.info``).

    With ``sensitivities_in_forward``, the forward pass solves ``y`` with its forward sensitivities
    where :func:`sensitivities_to_solve` says so (one solve instead of a forward solve and a
    sensitivity solve); where that solve fails (the solver, or ``func`` where its derivatives are
    traced: a ``func`` written with plain NumPy solves forwards but has no derivatives) or turns
    stiff where it was not to go on (:class:`TurnedStiff`), ``y`` is solved alone and the gradient
    method proceeds as usual, meeting the same failure if a gradient is asked for.
    """
    plain = [np.asarray(getval(x), dtype=np.float64) for x in (y0, t, theta)]
    fused = sensitivities_to_solve(y0, t, theta, problem) if sensitivities_in_forward else None
    solved = None
    if fused is not None:
        layout, if_stiff = fused
        try:
            zs, stats = _solve_with_sensitivities(*plain, problem, layout, if_stiff)
            solved = Solved(np.ascontiguousarray(zs[:, :problem.n]), stats, (layout, zs))
            problem.info.sensitivities_in_forward = True
        except Exception:   # noqa: BLE001 -- the gradient method meets the same failure, if it is asked
            solved = None
    if solved is None:
        solved = Solved(*problem.plain_solve(*plain))
    problem.record(solved.stats)
    return _solved(y0, t, theta, problem, solved), solved.stats


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
        sensitivities=solved.sensitivities,
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
