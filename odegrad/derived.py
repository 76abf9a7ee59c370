"""The derived dynamics the gradient methods solve, built from an autograd :class:`Problem`.

Each builder returns another :class:`odegrad.problem.Problem` (solved by the same primitive, so it
is differentiated again for higher derivatives), built once per problem and key
(:attr:`Problem.derived`):

* :func:`augmented`: the adjoint's backward state ``[y, a, a_t, a_theta]`` (:mod:`odegrad.augmented`);
* :func:`adjoint_along`: the backward state without ``y``, read from a dense forward solution;
* :func:`sensitivity`: forward sensitivities ``z = [y, S]`` (:mod:`odegrad.sensitivity`);
* :func:`tangent`: the tangent ``[y, s]`` of autograd's forward mode.

Their evaluations trace ``f`` once and run it back by :mod:`odegrad.jacobian`'s pass on plain
arrays, by autograd's where the evaluation is itself differentiated, or call the compiled
evaluations of :mod:`odegrad.compiled` where they exist. Their exact Jacobians (for the stiff
methods' Newton iterations) come from the same sources.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp
from autograd.tracer import isbox

from . import auto, solvers
from .augmented import AugmentedLayout
from .jacobian import trace_jacobian, trace_vjps
from .problem import Problem, Rhs
from .pytree import take_slice
from .reverse import trace_vjp
from .sensitivity import SensitivityLayout


def derived_problem(problem: Problem, rhs: Rhs, size: int, opts: solvers.SolverOptions,
                    structured_jac: Callable | None = None, exact_jac: Callable | None = None) -> Problem:
    """A problem of a derived state (solved for the gradient) of ``size`` entries.

    Its Jacobian, where wanted (:attr:`AdjointOptions.jacobian`), is the exact one of ``rhs``:
    ``exact_jac(theta) -> jac(s, t)`` where given (compiled, returning ``None`` where it cannot
    evaluate), else :func:`odegrad.jacobian.trace_jacobian`; or by default
    ``structured_jac(theta) -> jac(s, t)`` where the derived dynamics give one from the
    Jacobian of ``f`` alone.
    """
    wanted = problem.adjoint.jacobian
    if wanted is None:
        wanted = solvers.solver(opts.method).takes_jacobian and size <= auto.MAX_AUTO_JACOBIAN_SIZE
    make_jac: Callable[[np.ndarray], Callable | None] = lambda theta: None
    if wanted and structured_jac is not None and problem.adjoint.jacobian is None:
        make_jac = structured_jac
    elif wanted:
        def make_jac(theta):
            compiled = None if exact_jac is None else exact_jac(theta)

            def jac(s, t):
                found = None if compiled is None else compiled(s, t)
                return trace_jacobian(lambda x: rhs(x, t, theta), s)[0] if found is None else found

            return jac
    return dataclasses.replace(
        problem, rhs=rhs, n=size, opts=opts, backward_opts=opts, stage="backward",
        make_fun=lambda theta: (lambda s, t: rhs(s, t, theta)), make_jac=make_jac,
    )


def f_jacobian(problem: Problem, y: np.ndarray, t: float, theta: np.ndarray) -> np.ndarray:
    """``[∂f/∂y | ∂f/∂θ | ∂f/∂t]`` at a point, shape (n, n + p + 1), from one trace and one
    vectorised backward pass (plain arrays: for the solvers' Newton iterations)."""
    n, p, rhs = problem.n, problem.n_params, problem.rhs
    found = None if problem.compiled is None else problem.compiled.jacobian(y, t, theta)
    if found is not None:
        return np.array(found[1])
    J, _ = trace_jacobian(lambda x: rhs(take_slice(x, 0, n), take_slice(x, n + p, n + p + 1, ()),
                                        take_slice(x, n, n + p)),
                          np.concatenate([y, theta, [t]]))
    return J


def f_state_jacobian(problem: Problem, y: np.ndarray, t: float, theta: np.ndarray) -> np.ndarray:
    """``∂f/∂y`` at a point, shape (n, n): the compiled Jacobian's first ``n`` columns where it
    exists, else one trace of ``f`` in ``y`` alone (no ``∂f/∂θ`` rows carried for nothing)."""
    found = None if problem.compiled is None else problem.compiled.jacobian(y, t, theta)
    if found is not None:
        return np.array(found[1][:, :problem.n])
    return trace_jacobian(lambda yy: problem.rhs(yy, t, theta), y)[0]


def vjp_of_rhs(problem: Problem, layout: AugmentedLayout) -> Callable[[Any, Any, Any, Any], tuple]:
    """``vjp(y, t, theta, a) -> (dy, a·∂f/∂y, a·∂f/∂t or None, a·∂f/∂θ or None)``.

    ``f`` is traced once, as a function of the one vector ``[y, θ, t]`` holding only what
    ``layout`` differentiates (fewer traced inputs, one cotangent vector back), and run
    back by :mod:`odegrad.jacobian`'s pass on plain arrays or, where the evaluation is
    itself differentiated, by autograd's (:func:`odegrad.reverse.trace_vjp`).
    """
    rhs, n, p = problem.rhs, problem.n, problem.n_params
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


def compiled_adjoint(problem: Problem, layout: AugmentedLayout) -> Callable[[Any, Any, Any, Any], Any]:
    """``fused(y, t, theta, a)``: the derivative of the backward state ``layout`` from one
    compiled evaluation (:mod:`odegrad.compiled`), or ``None`` (traced inputs, no compiled
    evaluations for this ``f``)."""
    compiled = problem.compiled
    kind = ("adjoint", layout.with_state, layout.with_time, layout.with_params)

    def fused(y, t, theta, a):
        if compiled is None or isbox(y) or isbox(t) or isbox(theta) or isbox(a):
            return None
        return compiled.evaluate(kind, y, t, theta, a)

    return fused


def _backward_rhs(problem: Problem, layout: AugmentedLayout,
                  y_of_t: Callable[[float], np.ndarray] | None = None) -> Callable[[Any, Any, Any], Any]:
    """``rhs(s, t, theta)`` of the backward state ``layout``: ``[f, -a·∂f/∂y, -a·∂f/∂t, -a·∂f/∂θ]``
    (the parts the layout holds), ``y`` read from the state or, without it, from ``y_of_t``; one
    compiled evaluation where available, else one trace of ``f`` and one backward pass."""
    traced, fused = vjp_of_rhs(problem, layout), compiled_adjoint(problem, layout)

    def rhs(s, t, theta):
        y, a, _, _ = layout.split(s)
        if y_of_t is not None:
            y = y_of_t(t)
        out = fused(y, t, theta, a)
        if out is not None:
            return out
        dy, v_y, v_t, v_theta = traced(y, t, theta, a)
        return layout.join(anp.concatenate, dy if layout.with_state else None, -v_y,
                           None if v_t is None else -v_t, None if v_theta is None else -v_theta)

    return rhs


def augmented(problem: Problem, layout: AugmentedLayout) -> Problem:
    """The problem of the backward state ``layout`` (``[y, a, a_t, a_theta]``), built once."""
    if layout not in problem.derived:
        aug_rhs = _backward_rhs(problem, layout)
        opts = layout.solver_options(problem.backward_opts, problem.adjoint.seminorm)
        problem.derived[layout] = derived_problem(problem, aug_rhs, layout.size, opts,
                                                  exact_jac=compiled_augmented_jacobian(problem, layout))
    return problem.derived[layout]


def compiled_augmented_jacobian(problem: Problem, layout: AugmentedLayout) -> Callable | None:
    """``make(theta) -> jac(s, t)``: the exact Jacobian of the backward state's dynamics from the
    compiled Jacobian of ``(x, a) -> [f, a·∂f/∂x]`` (``None`` where it cannot evaluate)."""
    compiled, n, p = problem.compiled, problem.n, problem.n_params
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


def adjoint_along(problem: Problem, y_of_t: Callable[[float], np.ndarray], layout: AugmentedLayout) -> Problem:
    """The problem of ``layout`` without ``y``, which is read from a forward interpolant.

    Its dynamics are linear in ``a``: the exact Jacobian is ``-[∂f/∂y | ∂f/∂t | ∂f/∂θ]ᵀ``
    in the first ``n`` columns, zeros elsewhere.
    """
    n, p = problem.n, problem.n_params
    adj_rhs = _backward_rhs(problem, layout, y_of_t)

    def structured_jac(theta):
        def jac(s, t):
            J = f_jacobian(problem, y_of_t(t), t, theta)
            parts = [J[:, :n]] + ([J[:, n + p:]] if layout.with_time else []) + \
                ([J[:, n:n + p]] if layout.with_params else [])
            out = np.zeros((layout.size, layout.size))
            out[:, :n] = -np.concatenate(parts, axis=1).T
            return out

        return jac

    opts = layout.solver_options(problem.backward_opts, problem.adjoint.seminorm)
    return derived_problem(problem, adj_rhs, layout.size, opts, structured_jac)


def sensitivity(problem: Problem, layout: SensitivityLayout) -> Problem:
    """The problem of ``z = [y, S]`` (forward sensitivities, :mod:`odegrad.sensitivity`), built once."""
    if layout not in problem.derived:
        n = problem.n

        def structured_jac(theta):
            return lambda z, t: layout.jacobian(f_state_jacobian(problem, z[:n], t, theta))

        opts = layout.solver_options(problem.backward_opts)
        compiled, kind = problem.compiled, ("sensitivity", layout.columns, layout.with_params)
        fused = None if compiled is None else (lambda z, t, theta: compiled.evaluate(kind, z[:n], t, theta, z[n:]))
        dynamics = layout.dynamics(problem.rhs, fused)
        problem.derived[layout] = derived_problem(problem, dynamics, layout.size, opts, structured_jac)
    return problem.derived[layout]


def tangent(problem: Problem) -> Problem:
    """The forward sensitivity problem of ``[y, s]`` with parameters ``[theta, dtheta]``, built once.

    ``s' = ∂f/∂y s + ∂f/∂θ dθ``: the tangent of the solution (autograd's forward mode), solved
    forwards with the state's tolerances for both halves.
    """
    if "tangent" not in problem.derived:
        n, p, rhs = problem.n, problem.n_params, problem.rhs

        def tan_rhs(z, t, theta_and_tangent):
            theta, d_theta = theta_and_tangent[:p], theta_and_tangent[p:]
            jvp = make_jvp(lambda y, th: rhs(y, t, th), argnum=(0, 1))(z[:n], theta)
            dy, ds = jvp((z[n:], d_theta))
            return anp.concatenate([dy, ds])

        rtol, atol = problem.opts.rtol, problem.opts.atol
        if np.ndim(rtol):
            rtol = np.concatenate([rtol, rtol])
        if np.ndim(atol):
            atol = np.concatenate([atol, atol])
        opts = dataclasses.replace(problem.opts, rtol=rtol, atol=atol,
                                   lsoda_kwargs={k: v for k, v in problem.opts.lsoda_kwargs.items() if k == "tcrit"})
        problem.derived["tangent"] = dataclasses.replace(
            problem, rhs=tan_rhs, n=2 * n, n_params=2 * p, opts=opts,
            make_fun=lambda th: (lambda z, t: tan_rhs(z, t, th)), make_jac=lambda th: None,
        )
    return problem.derived["tangent"]
