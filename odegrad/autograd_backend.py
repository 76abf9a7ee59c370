"""The autograd backend: the ``solve`` primitive, its derivative rules, and the problems it solves.

``solve(y0, t, theta, problem)`` is a plain scipy solve (:func:`odegrad.solvers.solve`) that
autograd treats as a primitive; the solve's statistics travel with its result into the derivative
rules (:class:`Solved`). Its vector-Jacobian product is the registered gradient method named by
``problem.adjoint.mode`` (:mod:`odegrad.methods`), given a :class:`odegrad.methods.GradientRequest`
with this primitive as its ``solve``, :class:`AutogradOps` as its ``ops`` and
:class:`AutogradDynamics` as its dynamics; autograd differentiates that VJP again (Hessians,
grad-of-grad). Its Jacobian-vector product solves the forward sensitivity equations with the same
primitive. :class:`Problem` builds the derived dynamics the methods solve (the adjoint's backward
states, forward sensitivities).

The front door that builds a :class:`Problem` from scipy-style arguments is
:func:`odegrad.integrate.odeint`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import auto, solvers
from .augmented import AugmentedLayout
from .compiled import CompiledRhs
from .jacobian import trace_jacobian, trace_vjps
from .methods.base import GradientRequest, Wrt
from .methods.registry import get
from .options import AdjointOptions
from .pytree import take_slice
from .reverse import trace_vjp
from .sensitivity import SensitivityLayout
from .stats import SolveInfo

MAX_AUTO_JACOBIAN_SIZE = auto.MAX_AUTO_JACOBIAN_SIZE
"""Largest derived state for which the backward solves get autograd's exact Jacobian by default."""

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
    latest : tuple or None
        ``(id of the states, SolveStats)`` of this problem's latest solve, which the derivative
        rules read (autograd builds them right after the solve): the forward solve's evaluation
        count and LSODA's switch to BDF, for ``adjoint="auto"``.
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
    _compiled: CompiledRhs | None = dataclasses.field(default=None, init=False, repr=False)

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve of this problem."""
        self.info.record(self.stage, stats)

    def plain_solve(self, y0: np.ndarray, t: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, solvers.SolveStats]:
        """One scipy solve of this problem on plain arrays: ``(ys, stats)``, not yet recorded."""
        return solvers.solve(self.make_fun(theta), y0, t, self.opts, self.make_jac(theta))

    def resolver(self, theta: Any) -> Callable[..., np.ndarray]:
        """``resolve(y0, t, theta=None) -> ys``: plain solves of this problem, their work counted
        as backward work (:class:`odegrad.methods.base.Resolve`); ``None``: ``theta``'s value."""
        current = np.asarray(getval(theta), dtype=np.float64)

        def resolve(y0: np.ndarray, t: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
            params = current if theta is None else np.asarray(theta, dtype=np.float64)
            ys, stats = self.plain_solve(np.asarray(y0, dtype=np.float64), np.asarray(t, dtype=np.float64), params)
            self.info.record("backward", stats)
            return ys

        return resolve

    @property
    def compiled(self) -> CompiledRhs | None:
        """Compiled derivative evaluations of ``rhs`` (:mod:`odegrad.compiled`), made at first use.

        ``None`` for a derived problem (its dynamics hold derivatives of ``f`` already: second
        derivatives keep autograd's evaluations).
        """
        if self.stage != "forward":
            return None
        if self._compiled is None:
            self._compiled = CompiledRhs(self.rhs, self.make_fun, self.n, self.n_params, self._report_derivatives)
        return self._compiled

    def _report_derivatives(self, backend: str, note: str | None) -> None:
        self.info.derivatives, self.info.derivatives_note = backend, note

    def _derived_problem(self, rhs: Rhs, size: int, opts: solvers.SolverOptions,
                         structured_jac: Callable | None = None, exact_jac: Callable | None = None) -> "Problem":
        """A problem of a derived state (solved for the gradient) of ``size`` entries.

        Its Jacobian, where wanted (:attr:`AdjointOptions.jacobian`), is the exact one of ``rhs``:
        ``exact_jac(theta) -> jac(s, t)`` where given (compiled, returning ``None`` where it cannot
        evaluate), else :func:`odegrad.jacobian.trace_jacobian`; or by default
        ``structured_jac(theta) -> jac(s, t)`` where the derived dynamics give one from the
        Jacobian of ``f`` alone.
        """
        wanted = self.adjoint.jacobian
        if wanted is None:
            wanted = opts.method in solvers.JACOBIAN_METHODS and size <= MAX_AUTO_JACOBIAN_SIZE
        make_jac: Callable[[np.ndarray], Callable | None] = lambda theta: None
        if wanted and structured_jac is not None and self.adjoint.jacobian is None:
            make_jac = structured_jac
        elif wanted:
            def make_jac(theta):
                compiled = None if exact_jac is None else exact_jac(theta)

                def jac(s, t):
                    found = None if compiled is None else compiled(s, t)
                    return trace_jacobian(lambda x: rhs(x, t, theta), s)[0] if found is None else found

                return jac
        return dataclasses.replace(
            self, rhs=rhs, n=size, opts=opts, backward_opts=opts, stage="backward",
            make_fun=lambda theta: (lambda s, t: rhs(s, t, theta)), make_jac=make_jac,
        )

    def f_jacobian(self, y: np.ndarray, t: float, theta: np.ndarray) -> np.ndarray:
        """``[∂f/∂y | ∂f/∂θ | ∂f/∂t]`` at a point, shape (n, n + p + 1), from one trace and one
        vectorised backward pass (plain arrays: for the solvers' Newton iterations)."""
        n, p, rhs = self.n, self.n_params, self.rhs
        found = None if self.compiled is None else self.compiled.jacobian(y, t, theta)
        if found is not None:
            return np.array(found[1])
        J, _ = trace_jacobian(lambda x: rhs(take_slice(x, 0, n), take_slice(x, n + p, n + p + 1, ()),
                                            take_slice(x, n, n + p)),
                              np.concatenate([y, theta, [t]]))
        return J

    def _vjp_of_rhs(self, layout: AugmentedLayout) -> Callable[[Any, Any, Any, Any], tuple]:
        """``vjp(y, t, theta, a) -> (dy, a·∂f/∂y, a·∂f/∂t or None, a·∂f/∂θ or None)``.

        ``f`` is traced once, as a function of the one vector ``[y, θ, t]`` holding only what
        ``layout`` differentiates (fewer traced inputs, one cotangent vector back), and run
        back by :mod:`odegrad.jacobian`'s pass on plain arrays or, where the evaluation is
        itself differentiated, by autograd's (:func:`odegrad.reverse.trace_vjp`).
        """
        rhs, n, p = self.rhs, self.n, self.n_params
        with_t, with_theta = layout.with_time, layout.with_params
        stop = n + (p if with_theta else 0)

        def traced(y, t, theta, a):
            parts = [y] + ([theta] if with_theta else []) + ([anp.reshape(t, (1,))] if with_t else [])
            x = anp.concatenate(parts) if len(parts) > 1 else y

            def fun(xx):
                yy = take_slice(xx, 0, n)
                th = take_slice(xx, n, stop) if with_theta else theta
                tt = take_slice(xx, stop, stop + 1, ()) if with_t else t
                return rhs(yy, tt, th)

            if any(isbox(v) for v in (y, t, theta, a)):   # differentiated again: autograd's pass
                vjp, dy = trace_vjp(fun, x)
                v = vjp(a)
            else:
                vjps, dy = trace_vjps(fun, x)
                v = vjps(anp.reshape(a, (1, -1)))[0]
            return (dy, take_slice(v, 0, n), take_slice(v, stop, stop + 1) if with_t else None,
                    take_slice(v, n, stop) if with_theta else None)

        return traced

    def _compiled_adjoint(self, layout: AugmentedLayout) -> Callable[[Any, Any, Any, Any], Any]:
        """``fused(y, t, theta, a)``: the derivative of the backward state ``layout`` from one
        compiled evaluation (:mod:`odegrad.compiled`), or ``None`` (traced inputs, no compiled
        evaluations for this ``f``)."""
        compiled = self.compiled
        kind = ("adjoint", layout.with_state, layout.with_time, layout.with_params)

        def fused(y, t, theta, a):
            if compiled is None or any(isbox(v) for v in (y, t, theta, a)):
                return None
            return compiled.evaluate(kind, y, t, theta, a)

        return fused

    def augmented(self, layout: AugmentedLayout) -> "Problem":
        """The problem of the backward state ``layout`` (``[y, a, a_t, a_theta]``), built once."""
        if layout not in self._derived:
            traced, fused = self._vjp_of_rhs(layout), self._compiled_adjoint(layout)

            def aug_rhs(s, t, theta):
                y, a, _, _ = layout.split(s)
                out = fused(y, t, theta, a)
                if out is not None:
                    return out
                dy, v_y, v_t, v_theta = traced(y, t, theta, a)
                return layout.join(anp.concatenate, dy, -v_y, None if v_t is None else -v_t,
                                   None if v_theta is None else -v_theta)

            opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
            self._derived[layout] = self._derived_problem(aug_rhs, layout.size, opts,
                                                          exact_jac=self._compiled_augmented_jacobian(layout))
        return self._derived[layout]

    def _compiled_augmented_jacobian(self, layout: AugmentedLayout) -> Callable | None:
        """``make(theta) -> jac(s, t)``: the exact Jacobian of the backward state's dynamics from the
        compiled Jacobian of ``(x, a) -> [f, a·∂f/∂x]`` (``None`` where it cannot evaluate)."""
        compiled, n, p = self.compiled, self.n, self.n_params
        if compiled is None:
            return None
        m = n + p + 1

        def make(theta):
            def jac(s, t):
                y, a, _, _ = layout.split(s)
                K = compiled.vjp_jacobian(y, t, theta, a)
                if K is None:
                    return None
                rows = [K[:n], -K[n:2 * n]] + ([-K[2 * n + p:]] if layout.with_time else []) + \
                    ([-K[2 * n:2 * n + p]] if layout.with_params else [])
                R = np.concatenate(rows)
                out = np.zeros((layout.size, layout.size))
                out[:, :n] = R[:, :n]
                out[:, n:2 * n] = R[:, m:]
                return out

            return jac

        return make

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray], layout: AugmentedLayout) -> "Problem":
        """The problem of ``layout`` without ``y``, which is read from a forward interpolant.

        Its dynamics are linear in ``a``: the exact Jacobian is ``-[∂f/∂y | ∂f/∂t | ∂f/∂θ]ᵀ``
        in the first ``n`` columns, zeros elsewhere.
        """
        traced, fused = self._vjp_of_rhs(layout), self._compiled_adjoint(layout)
        n, p = self.n, self.n_params

        def adj_rhs(s, t, theta):
            _, a, _, _ = layout.split(s)
            y = y_of_t(t)
            out = fused(y, t, theta, a)
            if out is not None:
                return out
            _, v_y, v_t, v_theta = traced(y, t, theta, a)
            return layout.join(anp.concatenate, None, -v_y, None if v_t is None else -v_t,
                               None if v_theta is None else -v_theta)

        def structured_jac(theta):
            def jac(s, t):
                J = self.f_jacobian(y_of_t(t), t, theta)
                parts = [J[:, :n]] + ([J[:, n + p:]] if layout.with_time else []) + \
                    ([J[:, n:n + p]] if layout.with_params else [])
                out = np.zeros((layout.size, layout.size))
                out[:, :n] = -np.concatenate(parts, axis=1).T
                return out

            return jac

        opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
        return self._derived_problem(adj_rhs, layout.size, opts, structured_jac)

    def sensitivity(self, layout: SensitivityLayout) -> "Problem":
        """The problem of ``z = [y, S]`` (forward sensitivities, :mod:`odegrad.sensitivity`)."""
        if layout not in self._derived:
            n = self.n

            def structured_jac(theta):
                return lambda z, t: layout.jacobian(self.f_jacobian(z[:n], t, theta)[:, :n])

            opts = layout.solver_options(self.backward_opts)
            compiled, kind = self.compiled, ("sensitivity", layout.columns, layout.with_params)
            fused = None if compiled is None else (lambda z, t, theta: compiled.evaluate(kind, z[:n], t, theta, z[n:]))
            dynamics = layout.dynamics(self.rhs, fused)
            self._derived[layout] = self._derived_problem(dynamics, layout.size, opts, structured_jac)
        return self._derived[layout]

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

        rtol, atol = self.opts.rtol, self.opts.atol
        if np.ndim(rtol):
            rtol = np.concatenate([rtol, rtol])
        if np.ndim(atol):
            atol = np.concatenate([atol, atol])
        opts = dataclasses.replace(self.opts, rtol=rtol, atol=atol,
                                   lsoda_kwargs={k: v for k, v in self.opts.lsoda_kwargs.items() if k == "tcrit"})
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
                "adjoint='interpolate' gives first derivatives only; use adjoint='auto', "
                "'forward' or 'checkpoint' for Hessians, grad-of-grad and other higher derivatives"
            )
        return self.problem.dense_forward(y_start, float(t_start), float(t_end), self.theta)

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray],
                      layout: AugmentedLayout) -> "AutogradDynamics":
        return AutogradDynamics(self.problem.adjoint_along(y_of_t, layout), self.theta)

    def sensitivity(self, layout: SensitivityLayout) -> "AutogradDynamics":
        return AutogradDynamics(self.problem.sensitivity(layout), self.theta)


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
    z = solve(anp.concatenate([y0, s0]), t, anp.concatenate([theta, d_theta]), problem.tangent)
    d_ys = z[:, problem.n:]
    if 1 in given:
        rates = anp.stack([problem.rhs(ys[i], t[i], theta) for i in range(len(t))])
        d_ys = d_ys + rates * anp.reshape(given[1], (-1, 1))
    return d_ys


defjvp_argnums(_solved, _solve_jvp)
