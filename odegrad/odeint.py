"""``odeint``: ``scipy.integrate.odeint`` that autograd differentiates, to any order.

The forward pass is a plain scipy solve (:mod:`odegrad.solvers`). The vector-Jacobian product is
Algorithm 1 with Appendix C (:func:`odegrad.adjoint.backward`), run with this module's primitive
as its ``solve`` and ``autograd.numpy`` as its ``ops``; autograd therefore differentiates the VJP
again, which gives Hessians and grad-of-grad.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
import scipy.integrate
from autograd import jacobian, make_jvp, make_vjp
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import solvers
from .adjoint import ADJOINT_MODES, augmented_options, backward
from .pytree import flatten_args, open_containers
from .stats import SolveInfo, new_info
from .validation import as_real_array, check_methods, check_times, tolerance

_MAX_AUTO_JACOBIAN_SIZE = 200
_LSODA_ONLY = {"ml": None, "mu": None, "tcrit": None, "ixpr": 0, "mxhnil": 0, "mxordn": 12,
               "mxords": 5, "printmessg": 0}

Rhs = Callable[[Any, Any, Any], Any]


@dataclasses.dataclass(eq=False)
class _Problem:
    """The static part of one solve: dynamics on flat states, options, where statistics go."""

    rhs: Rhs
    n: int
    n_params: int
    opts: solvers.SolverOptions
    adjoint_opts: solvers.SolverOptions
    mode: str
    seminorm: bool
    use_jacobian: bool | None
    info: SolveInfo
    role: str
    make_fun: Callable[[np.ndarray], Callable[[np.ndarray, float], np.ndarray]]
    make_jac: Callable[[np.ndarray], Callable | None] = lambda theta: None

    def record(self, stats: solvers.SolveStats) -> None:
        getattr(self.info, self.role).add(stats)

    @functools.cached_property
    def augmented(self) -> "_Problem":
        """The problem of ``[y, a, a_t, a_theta]`` solved backwards by the adjoint."""
        n, rhs = self.n, self.rhs
        n_aug = 2 * n + 1 + self.n_params

        def aug_rhs(s, t, theta):
            vjp, dy = make_vjp(rhs, argnum=(0, 1, 2))(s[:n], t, theta)
            v_y, v_t, v_theta = vjp(s[n:2 * n])
            return anp.concatenate([dy, -v_y, -anp.reshape(v_t, (1,)), -v_theta])

        opts = augmented_options(self.adjoint_opts, n, self.n_params, self.seminorm)
        return dataclasses.replace(
            self, rhs=aug_rhs, n=n_aug, opts=opts, adjoint_opts=opts, role="backward",
            make_fun=lambda theta: (lambda s, t: aug_rhs(s, t, theta)),
            make_jac=self._backward_jacobian(aug_rhs, opts.method, n_aug),
        )

    def _backward_jacobian(self, rhs: Rhs, method: str, size: int) -> Callable:
        """``make_jac`` of a backward problem: autograd's exact Jacobian when it is wanted."""
        wanted = self.use_jacobian
        if wanted is None:
            wanted = method in ("bdf", "lsoda") and size <= _MAX_AUTO_JACOBIAN_SIZE
        if not wanted:
            return lambda theta: None
        jac = jacobian(rhs, 0)
        return lambda theta: (lambda s, t: jac(s, t, theta))


    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray]) -> "_Problem":
        """The problem of ``[a, a_t, a_theta]`` with ``y(t)`` read from a forward interpolant."""
        n, rhs = self.n, self.rhs

        def adj_rhs(s, t, theta):
            vjp, _ = make_vjp(rhs, argnum=(0, 1, 2))(y_of_t(t), t, theta)
            v_y, v_t, v_theta = vjp(s[:n])
            return -anp.concatenate([v_y, anp.reshape(v_t, (1,)), v_theta])

        opts = augmented_options(self.adjoint_opts, n, self.n_params, self.seminorm, with_state=False)
        size = n + 1 + self.n_params
        return dataclasses.replace(
            self, rhs=adj_rhs, n=size, opts=opts, adjoint_opts=opts, role="backward",
            make_fun=lambda theta: (lambda s, t: adj_rhs(s, t, theta)),
            make_jac=self._backward_jacobian(adj_rhs, opts.method, size),
        )

    def dense_forward(self, y_start: np.ndarray, t_start: float, t_end: float, theta: np.ndarray):
        """Solve forwards over ``[t_start, t_end]`` with scipy's dense output (solve_ivp)."""
        method = "BDF" if self.adjoint_opts.method == "bdf" else "LSODA"
        fun, jac = self.make_fun(theta), self.make_jac(theta)
        solution = scipy.integrate.solve_ivp(
            lambda t, y: fun(y, t), (t_start, t_end), y_start, method=method, dense_output=True,
            rtol=self.opts.rtol, atol=self.opts.atol,
            **({} if jac is None else {"jac": lambda t, y: jac(y, t)}),
        )
        if not solution.success:
            raise solvers.ODESolveError(
                f"the dense forward solve of adjoint='interpolate' ({method}) failed between "
                f"t = {t_start:.6g} and {t_end:.6g}: {solution.message}"
            )
        self.info.backward.add(solvers.SolveStats(method=method.lower(), nfe=int(solution.nfev),
                                                  nst=len(solution.t) - 1, nje=int(solution.njev),
                                                  nsolves=1))
        return solution.sol

    @functools.cached_property
    def tangent(self) -> "_Problem":
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


class _AutogradDynamics:
    """A :class:`odegrad.adjoint.Dynamics` over autograd arrays: a problem with ``theta`` bound."""

    def __init__(self, problem: _Problem, theta: Any):
        self.problem = problem
        self.theta = theta
        self.n_params = problem.n_params

    def f(self, y: Any, t: Any) -> Any:
        return self.problem.rhs(y, t, self.theta)

    def augmented(self) -> "_AutogradDynamics":
        return _AutogradDynamics(self.problem.augmented, self.theta)

    def dense_forward(self, y_start: Any, t_start: Any, t_end: Any) -> Callable[[float], np.ndarray]:
        if any(isbox(x) for x in (y_start, t_start, t_end, self.theta)):
            raise NotImplementedError(
                "adjoint='interpolate' gives first derivatives only; use adjoint='checkpoint' "
                "for Hessians, grad-of-grad and other higher derivatives"
            )
        return self.problem.dense_forward(y_start, float(t_start), float(t_end), self.theta)

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray]) -> "_AutogradDynamics":
        return _AutogradDynamics(self.problem.adjoint_along(y_of_t), self.theta)


class _AutogradOps:
    concat = staticmethod(anp.concatenate)
    stack = staticmethod(anp.stack)

    @staticmethod
    def zeros(n: int, like: Any) -> Any:
        return anp.zeros(n)

    @staticmethod
    def vdot(a: Any, b: Any) -> Any:
        return anp.sum(a * b)


@primitive
def _solve(y0: np.ndarray, t: np.ndarray, theta: np.ndarray, problem: _Problem) -> np.ndarray:
    ys, stats = solvers.solve(problem.make_fun(theta), y0, t, problem.opts, problem.make_jac(theta))
    problem.record(stats)
    return ys


def _solve_dynamics(s0: Any, times: Any, dynamics: _AutogradDynamics) -> Any:
    return _solve(s0, times, dynamics.theta, dynamics.problem)


def _solve_vjp(argnums, ys, args, kwargs):
    _, t, theta, problem = args

    def vjp(g):
        try:
            grads = backward(g, ys, t, _AutogradDynamics(problem, theta), _solve_dynamics,
                             _AutogradOps, problem.mode)
        except solvers.ODESolveError as exc:
            if problem.mode == "interpolate":
                raise
            raise solvers.ODESolveError(
                f"the backward (adjoint) solve failed: {exc} For stiff problems, reconstructing y "
                "backwards is unstable: use adjoint='interpolate' (with method='lsoda')."
            ) from exc
        return tuple(grads[k] for k in argnums)

    return vjp


defvjp_argnums(_solve, _solve_vjp)


def _solve_jvp(argnums, tangents, ys, args, kwargs):
    """Forward mode: the forward sensitivity equations, solved by the same primitive."""
    y0, t, theta, problem = args
    given = dict(zip(argnums, tangents))
    d_y0 = given.get(0, anp.zeros(problem.n))
    d_theta = given.get(2, anp.zeros(problem.n_params))
    s0 = d_y0
    if 1 in given:
        s0 = s0 - problem.rhs(y0, t[0], theta) * given[1][0]
    z = _solve(anp.concatenate([y0, s0]), t, anp.concatenate([theta, d_theta]), problem.tangent)
    d_ys = z[:, problem.n:]
    if 1 in given:
        rates = anp.stack([problem.rhs(ys[i], t[i], theta) for i in range(len(t))])
        d_ys = d_ys + rates * anp.reshape(given[1], (-1, 1))
    return d_ys


defjvp_argnums(_solve, _solve_jvp)


def _closure_error() -> TypeError:
    return TypeError(
        "func returned a value that autograd is tracing: func closes over a variable that is being "
        "differentiated. odeint differentiates only through y0, t and args: write "
        "func(y, t, p) and call odeint(func, y0, t, args=(p,)) instead of closing over p."
    )


def _refine(t: Any, checkpoints: int) -> Any:
    """Insert ``checkpoints`` evenly spaced times in each interval of ``t`` (differentiably)."""
    fractions = np.arange(checkpoints + 1) / (checkpoints + 1)
    pieces = [t[i] + (t[i + 1] - t[i]) * fractions for i in range(len(getval(t)) - 1)]
    return anp.concatenate(pieces + [anp.reshape(t[-1], (1,))])


def odeint(
    func: Callable[..., Any],
    y0: Any,
    t: Any,
    args: Any = (),
    Dfun: Callable[..., Any] | None = None,
    col_deriv: int = 0,
    full_output: bool = False,
    ml: int | None = None,
    mu: int | None = None,
    rtol: float | np.ndarray | None = None,
    atol: float | np.ndarray | None = None,
    tcrit: np.ndarray | None = None,
    h0: float = 0.0,
    hmax: float = 0.0,
    hmin: float = 0.0,
    ixpr: int = 0,
    mxstep: int = 0,
    mxhnil: int = 0,
    mxordn: int = 12,
    mxords: int = 5,
    printmessg: int = 0,
    tfirst: bool = False,
    *,
    method: str = "lsoda",
    adjoint: str = "checkpoint",
    checkpoints: int = 0,
    adjoint_method: str | None = None,
    adjoint_rtol: float | np.ndarray | None = None,
    adjoint_atol: float | np.ndarray | None = None,
    adjoint_seminorm: bool = False,
    adjoint_jacobian: bool | None = None,
) -> Any:
    """Integrate ``dy/dt = func(y, t, *args)``; differentiable by autograd to any order.

    Same call as :func:`scipy.integrate.odeint`; with plain numpy inputs and ``method="lsoda"``
    it returns what scipy returns. Under autograd (``grad``, ``jacobian``, ``hessian``,
    ``make_vjp``, ...) the derivatives with respect to ``y0``, every entry of ``t`` and every
    float in ``args`` come from the adjoint method (Algorithm 1 and Appendix C of Chen et al.,
    2018), whose own derivatives autograd takes in turn.

    Parameters
    ----------
    func : callable
        ``func(y, t, *args) -> dy/dt`` with ``y`` and ``dy/dt`` of ``y0``'s shape, written with
        ``autograd.numpy``. Values to differentiate must come in through ``args``, not a closure.
        With ``tfirst=True`` the signature is ``func(t, y, *args)``.
    y0 : float or array_like
        Initial state at ``t[0]``, of any shape (a scalar, a vector, a matrix, ...).
    t : array_like, shape (T,)
        Output times, strictly increasing or strictly decreasing; ``t[0]`` is the initial time.
    args : tuple, optional
        Extra arguments of ``func``: floats, arrays, and lists, tuples or dicts of them, nested.
        Float leaves are differentiated; other leaves (ints, strings, ...) are passed unchanged.
        A non-tuple is treated as ``(args,)``, as in scipy.
    Dfun : callable, optional
        ``Dfun(y, t, *args)``: the Jacobian of ``func`` over the flattened state, shape (n, n),
        for the forward solve (stiff problems). ``col_deriv`` as in scipy.
    full_output : bool, optional
        Also return a :class:`odegrad.SolveInfo` with forward and (after a gradient) backward
        statistics.
    ml, mu, tcrit, ixpr, mxhnil, mxordn, mxords, printmessg
        As in :func:`scipy.integrate.odeint`; LSODA only.
    rtol, atol : float or array_like, optional
        Relative and absolute tolerances (default 1.49012e-8 for every method, as scipy's
        odeint); arrays broadcast to ``y0``'s shape.
    h0, hmax, hmin, mxstep
        First, largest and smallest step size, and the step budget per output interval.
    method : {"lsoda", "adams", "bdf"}, optional
        ``"lsoda"`` (scipy's odeint), ``"adams"`` (VODE implicit Adams, the paper's choice) or
        ``"bdf"`` (VODE BDF, for stiff problems).
    adjoint : {"checkpoint", "backsolve", "interpolate"}, optional
        ``"checkpoint"`` (default) restarts the backward reconstruction of ``y`` from the stored
        forward state at each output time (and each checkpoint); ``"backsolve"`` is the paper's
        Algorithm 1, reconstructing ``y`` backwards from the final state alone;
        ``"interpolate"`` reads ``y`` from a dense forward solution instead of solving it
        backwards: use it for stiff problems (first derivatives only).
    checkpoints : int, optional
        Extra evenly spaced checkpoints per output interval stored by the forward solve, so the
        backward reconstruction of ``y`` restarts more often (for contracting dynamics).
    adjoint_method, adjoint_rtol, adjoint_atol : optional
        Method and tolerances of the backward solves; default: those of the forward solve.
    adjoint_seminorm : bool, optional
        Exclude the parameter and time components of the augmented state from the backward
        step-size control (Kidger et al. 2021); fewer backward steps for many parameters.
    adjoint_jacobian : bool, optional
        Give the backward solves the exact Jacobian of the augmented dynamics (from autograd).
        Default: when the backward method is ``"bdf"`` or ``"lsoda"`` and the augmented state
        has at most 200 entries.

    Returns
    -------
    ys : ndarray, shape (T,) + shape(y0)
        ``ys[i]`` is the state at ``t[i]``; ``ys[0] == y0``.
    info : SolveInfo
        Only with ``full_output=True``.

    Raises
    ------
    ODESolveError
        When the solver fails (excess work, step-size underflow, non-finite dynamics, blow-up).
    ValueError
        For non-monotonic, repeated or non-finite ``t``; non-finite ``y0``; a ``func`` whose
        output shape differs from ``y0``'s; unknown methods or bad tolerances.
    TypeError
        When ``func`` closes over a value that autograd is differentiating.
    """
    adjoint_method = check_methods(method, adjoint_method, adjoint, ADJOINT_MODES)
    if int(checkpoints) != checkpoints or checkpoints < 0:
        raise ValueError(f"checkpoints must be a non-negative integer, got {checkpoints!r}")
    lsoda_kwargs = {"ml": ml, "mu": mu, "tcrit": tcrit, "ixpr": ixpr, "mxhnil": mxhnil,
                    "mxordn": mxordn, "mxords": mxords, "printmessg": printmessg}
    changed = [k for k, v in lsoda_kwargs.items()
               if ((v is not None) if _LSODA_ONLY[k] is None else v != _LSODA_ONLY[k])]
    if method != "lsoda" and changed:
        raise ValueError(f"{', '.join(changed)} only apply to method='lsoda', not {method!r}")

    y0_value = as_real_array("y0", y0)
    t_value = as_real_array("t", t)
    check_times(t_value)
    shape = y0_value.shape
    args = open_containers(args)
    if not isinstance(args, tuple):
        args = (args,)
    if tfirst:
        user_func, user_dfun = func, Dfun
        func = lambda y, tt, *a: user_func(tt, y, *a)  # noqa: E731
        Dfun = None if user_dfun is None else (lambda y, tt, *a: user_dfun(tt, y, *a))

    theta, unflatten = flatten_args(args)
    y0_flat = anp.ravel(y0) if isbox(y0) else y0_value.ravel()
    t_in = t if isbox(t) else t_value

    flat_state = len(shape) == 1

    def rhs(y, tt, th):
        out = func(y if flat_state else anp.reshape(y, shape), tt, *unflatten(th))
        if isinstance(out, (list, tuple)):
            out = anp.array(out)
        return out if flat_state and anp.ndim(out) == 1 else anp.ravel(out)

    def make_fun(th):
        bound = unflatten(th)

        def fun(y, tt):
            out = func(y.reshape(shape), tt, *bound)
            if isbox(out) or (isinstance(out, (list, tuple)) and any(isbox(o) for o in out)):
                raise _closure_error()
            if np.shape(out) != shape:
                raise ValueError(
                    f"func returned shape {np.shape(out)} but y0 has shape {shape}; "
                    "func(y, t, *args) must return dy/dt with y0's shape"
                )
            return np.ravel(out)

        return fun

    def make_jac(th):
        if Dfun is None:
            return None
        bound = unflatten(th)
        n = y0_value.size

        def jac(y, tt):
            matrix = np.reshape(Dfun(y.reshape(shape), tt, *bound), (n, n))
            return matrix.T if col_deriv else matrix

        return jac

    rtol_v = tolerance("rtol", rtol, shape)
    atol_v = tolerance("atol", atol, shape)
    opts = solvers.SolverOptions(
        method=method, rtol=rtol_v, atol=atol_v, h0=h0, hmax=hmax, hmin=hmin, mxstep=mxstep,
        lsoda_kwargs={k: v for k, v in lsoda_kwargs.items() if k in changed},
    )
    adjoint_opts = solvers.SolverOptions(
        method=adjoint_method,
        rtol=rtol_v if adjoint_rtol is None else tolerance("adjoint_rtol", adjoint_rtol, shape),
        atol=atol_v if adjoint_atol is None else tolerance("adjoint_atol", adjoint_atol, shape),
        h0=h0, hmax=hmax, hmin=hmin, mxstep=mxstep,
    )
    if np.ndim(adjoint_opts.rtol):
        adjoint_opts.rtol = float(np.min(adjoint_opts.rtol))
    info = new_info(method, adjoint_method)
    problem = _Problem(
        rhs=rhs, n=y0_value.size, n_params=int(np.size(getval(theta))), opts=opts,
        adjoint_opts=adjoint_opts, mode=adjoint, seminorm=adjoint_seminorm,
        use_jacobian=adjoint_jacobian, info=info, role="forward", make_fun=make_fun,
        make_jac=make_jac,
    )
    if checkpoints:
        ys = _solve(y0_flat, _refine(t_in, int(checkpoints)), theta, problem)[:: int(checkpoints) + 1]
    else:
        ys = _solve(y0_flat, t_in, theta, problem)
    ys = anp.reshape(ys, (len(t_value),) + shape)
    return (ys, info) if full_output else ys
