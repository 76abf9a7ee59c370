"""The autograd backend: the ``solve`` primitive and its derivative rules.

``solve(y0, t, theta, problem)`` is a plain scipy solve (:func:`odegrad.solvers.solve`) that
autograd treats as a primitive. Its vector-Jacobian product is, by ``problem.adjoint.mode``,
Algorithm 1 with Appendix C (:func:`odegrad.adjoint.backward`) run with this primitive as its
``solve`` and ``autograd.numpy`` as its ``ops``, or the forward sensitivities of
:mod:`odegrad.sensitivity` solved by this primitive; ``"auto"`` picks one per solve
(:func:`odegrad.auto.choose`). Either way autograd differentiates the VJP again (Hessians,
grad-of-grad). Its Jacobian-vector product solves the forward sensitivity equations with the same
primitive.

The front door that builds a :class:`Problem` from scipy-style arguments is
:func:`odegrad.integrate.odeint`.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import auto, solvers
from .adjoint import DriftError, backward
from .augmented import AugmentedLayout
from .compiled import CompiledRhs
from .jacobian import trace_jacobian, trace_vjps
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
    latest: tuple[int, solvers.SolveStats] | None = None
    _derived: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _compiled: CompiledRhs | None = dataclasses.field(default=None, init=False, repr=False)

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve of this problem."""
        self.info.record(self.stage, stats)

    def stats_of(self, ys: Any) -> solvers.SolveStats | None:
        """The statistics of the solve that returned ``ys`` (``None`` if it was not the latest)."""
        if self.latest is not None and self.latest[0] == id(getval(ys)):
            return self.latest[1]
        return None

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
            wanted = solvers.solver(opts.method).takes_jacobian and size <= MAX_AUTO_JACOBIAN_SIZE
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
            make_fun=lambda theta: (lambda s, t: rhs(s, t, theta)), make_jac=make_jac, latest=None,
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

    @staticmethod
    def value(x: Any) -> np.ndarray:
        return np.asarray(getval(x), dtype=np.float64)


@primitive
def solve(y0: np.ndarray, t: np.ndarray, theta: np.ndarray, problem: Problem) -> np.ndarray:
    """``ys[i] = y(t[i])`` for ``dy/dt = problem.rhs(y, t, theta)``, ``y(t[0]) = y0`` (flat states)."""
    ys, stats = solvers.solve(problem.make_fun(theta), y0, t, problem.opts, problem.make_jac(theta))
    problem.record(stats)
    problem.latest = (id(ys), stats)
    return ys


def _solve_dynamics(s0: Any, times: Any, dynamics: AutogradDynamics) -> Any:
    return solve(s0, times, dynamics.theta, dynamics.problem)


def _is_stiff(problem: Problem, stats: solvers.SolveStats | None) -> bool:
    """Whether the forward solve was stiff: LSODA switched to BDF, or BDF was asked for."""
    if solvers.solver(problem.opts.method).stiff:
        return True
    return stats is not None and stats.method_switches > 0


def _sensitivity_vjp(argnums, ys, y0, t, theta, problem: Problem, record: bool = True):
    """The VJP from forward sensitivities: one sensitivity solve serves every cotangent."""
    layout = SensitivityLayout(problem.n, problem.n_params, with_y0=0 in argnums,
                               with_t0=1 in argnums, with_params=2 in argnums)
    solved: list[Any] = []

    def vjp(g):
        n_times = int(np.shape(getval(t))[0])
        if n_times == 1:
            zeros = {0: g[0], 1: anp.zeros(1), 2: anp.zeros(problem.n_params)}
            return tuple(zeros[k] for k in argnums)
        if not solved:
            if record:
                problem.info.gradient_methods.append("forward")
            f0 = problem.rhs(y0, t[0], theta) if layout.with_t0 else None
            solved.append(solve(layout.initial_state(y0, f0), t, theta, problem.sensitivity(layout)))
        rates = None
        if layout.with_t0:
            rates = anp.stack([problem.rhs(ys[i], t[i], theta) for i in range(1, n_times)])
        grads = dict(zip((0, 1, 2), layout.cotangents(g, solved[0], rates)))
        return tuple(grads[k] for k in argnums)

    return vjp


def _run_backward(g, ys, t, theta, problem: Problem, mode: str, argnums, automatic: bool = False) -> tuple:
    opts = problem.backward_opts
    return backward(g, ys, t, AutogradDynamics(problem, theta), _solve_dynamics, AutogradOps, mode,
                    wrt_t=1 in argnums, wrt_theta=2 in argnums, normalize=problem.adjoint.normalize,
                    drift_tolerance=(float(np.min(opts.rtol)), opts.atol),
                    drift_factor=auto.DRIFT_FACTOR if automatic else None)


def _adjoint_vjp(argnums, ys, y0, t, theta, problem: Problem, mode: str, automatic: bool):
    """The VJP from Algorithm 1 (:func:`odegrad.adjoint.backward`) in ``mode``.

    Under ``adjoint="auto"`` a failed backward solve or a drifted reconstruction of ``y``
    (:class:`odegrad.adjoint.DriftError`) is retried by a method that does not rebuild ``y``
    backwards: forward sensitivities where they fit, else the interpolating adjoint (first
    derivatives). Warnings of a failed attempt are dropped; those of a successful one kept.
    """
    def vjp(g):
        problem.info.gradient_methods.append(mode)
        if not automatic:
            try:
                grads = _run_backward(g, ys, t, theta, problem, mode, argnums)
            except DriftError:
                raise
            except solvers.ODESolveError as exc:
                if mode == "interpolate":
                    raise
                raise solvers.ODESolveError(
                    f"the backward (adjoint) solve failed: {exc} For stiff problems, reconstructing y "
                    "backwards is unstable: use adjoint='auto' (forward sensitivities or the "
                    "interpolating adjoint for stiff problems), 'forward' or 'interpolate'."
                ) from exc
            return tuple(grads[k] for k in argnums)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                grads = _run_backward(g, ys, t, theta, problem, mode, argnums, automatic=True)
        except solvers.ODESolveError as exc:
            return _retry(exc, g)
        for item in caught:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        return tuple(grads[k] for k in argnums)

    def _retry(exc: solvers.ODESolveError, g):
        columns = SensitivityLayout(problem.n, problem.n_params, with_y0=0 in argnums,
                                    with_t0=1 in argnums, with_params=2 in argnums).columns
        first_order = not any(isbox(x) for x in (g, ys, t, theta))
        if auto.forward_fits(problem.n, columns, _is_stiff(problem, problem.stats_of(ys))):
            problem.info.gradient_methods[-1] = "forward"
            return _sensitivity_vjp(argnums, ys, y0, t, theta, problem, record=False)(g)
        if first_order:
            problem.info.gradient_methods[-1] = "interpolate"
            grads = _run_backward(g, ys, t, theta, problem, "interpolate", argnums)
            return tuple(grads[k] for k in argnums)
        raise solvers.ODESolveError(
            f"the backward (adjoint) solve failed: {exc} adjoint='auto' found no forward-sensitivity "
            "state small enough, and its interpolating adjoint gives first derivatives only: give "
            "more checkpoints (checkpoints=k), loosen the tolerances, shorten the time span, or "
            "differentiate fewer inputs."
        ) from exc

    return vjp


def _solve_vjp(argnums, ys, args, kwargs):
    y0, t, theta, problem = args
    mode = problem.adjoint.mode
    if mode == "forward":
        return _sensitivity_vjp(argnums, ys, y0, t, theta, problem)
    if mode != "auto":
        return _adjoint_vjp(argnums, ys, y0, t, theta, problem, mode, automatic=False)
    stats = problem.stats_of(ys)
    stiff = _is_stiff(problem, stats)
    columns = SensitivityLayout(problem.n, problem.n_params, with_y0=0 in argnums,
                                with_t0=1 in argnums, with_params=2 in argnums).columns
    mode = auto.choose(
        n=problem.n, columns=columns, n_intervals=int(np.shape(getval(t))[0]) - 1,
        nfe=0 if stats is None else stats.nfe, rtol=problem.backward_opts.rtol, stiff=stiff,
        higher_order=any(isbox(x) for x in (ys, y0, t, theta)), derived=problem.stage == "backward",
    )
    if mode == "forward":
        return _sensitivity_vjp(argnums, ys, y0, t, theta, problem)
    adjoint_vjp = _adjoint_vjp(argnums, ys, y0, t, theta, problem, mode, automatic=True)
    if not auto.forward_fits(problem.n, columns, stiff):
        return adjoint_vjp
    calls: list[Callable] = []

    def vjp(g):
        # A second cotangent (a Jacobian or Hessian, row by row): one sensitivity solve serves
        # this one and every later one.
        if len(calls) == 1:
            calls.append(_sensitivity_vjp(argnums, ys, y0, t, theta, problem))
        elif not calls:
            calls.append(adjoint_vjp)
        return calls[-1](g)

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
