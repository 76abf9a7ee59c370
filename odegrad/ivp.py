"""The second front door: ``solve_ivp``, ``scipy.integrate.solve_ivp`` that autograd differentiates.

With plain numpy inputs :func:`solve_ivp` is scipy's ``solve_ivp``, called directly. When
``y0``, ``t_span``, ``t_eval`` or ``args`` hold values autograd is tracing, it

1. runs scipy's ``solve_ivp`` on the plain values, with every option the caller gave: this solve
   finds the events, the step times (``t_eval=None``), ``sol`` and the counts;
2. builds one :class:`odegrad.problem.Problem` (as :func:`odegrad.odeint` does) whose
   method is the ``solve_ivp`` method (a registered one: scipy's :data:`odegrad.solvers.IVP_METHODS`
   or another :func:`odegrad.solvers.ivp_record`), and calls the
   backend's ``solve`` primitive once at every time it returns a state for: ``t_eval`` (or the
   step times), the event times. Its derivatives are odegrad's own: the adjoint (Algorithm 1)
   or forward sensitivities, as ``adjoint`` says, with the derived solves run by the same
   ``solve_ivp`` method;
3. gives the event times their derivatives by the implicit function theorem (:func:`_event_time`),
   and states at times that coincide in value with a solved time (an event, ``t_eval[0] ==
   t_span[0]``) a first-order step from it.

So the forward problem is solved twice: once by scipy with the caller's options, once (at the
output times) inside the primitive.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import autograd.numpy as anp
import numpy as np
from autograd import grad as ag_grad
from autograd.tracer import getval, isbox

from . import solvers
from .autograd_backend import solve_with_stats
from .options import AdjointOptions, adjoint_options
from .problem import Problem
from .pytree import as_traced, flatten_args, holds_box, open_containers
from .solver_ivp import ivp_spec
from .stats import new_info
from .validation import as_real_array, check_traced_output, tolerance

_JACOBIAN_KEYWORDS = ("jac", "jac_sparsity", "lband", "uband")
"""Keywords that shape the Newton iterations of the forward solve only; the derived (adjoint,
sensitivity) solves use odegrad's exact Jacobians of their own dynamics instead."""


def _nested(value: Any) -> bool:
    """Whether ``value`` is traced by two nested derivatives (a Hessian, grad-of-grad)."""
    return isbox(value) and isbox(value._value)


def _closure_error() -> TypeError:
    return TypeError(
        "fun returned a value that autograd is tracing: fun closes over a variable that is being "
        "differentiated. solve_ivp differentiates only through y0, t_span, t_eval and args: write "
        "fun(t, y, p) and call solve_ivp(fun, t_span, y0, args=(p,)) instead of closing over p."
    )


def _higher_order_error(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what} is differentiated to first order only (the implicit function theorem, or a "
        "first-order step from a solved time of equal value): Hessians and other higher "
        "derivatives through it are not available. States at t_eval times and step times "
        "that differ from t_span[0] and from every event time are differentiable to any order."
    )


def _method_name(method: Any) -> str:
    """The registered name of a method name or ``OdeSolver`` class that the ``solve_ivp`` door accepts."""
    spec = ivp_spec(method)
    if spec is not None and "solve_ivp" in spec.doors:
        return spec.name
    accepted = solvers.methods("solve_ivp")
    raise ValueError(
        f"method must be one of {accepted} or one of their scipy classes to be differentiated, got "
        f"{method!r}. A custom OdeSolver class runs with plain (untraced) inputs only, unless registered: "
        "odegrad.solver_registry.register_solver(odegrad.solvers.ivp_record(name, cls)) lets odegrad run "
        "its derived (gradient) solves."
    )


def _plain_fun(fun: Callable) -> Callable:
    """``fun`` for scipy, refusing outputs that autograd is tracing (a closure over one)."""
    def checked(t, y, *args):
        out = fun(t, y, *args)
        if holds_box(out):
            raise _closure_error()
        if np.shape(out) != np.shape(y):
            raise ValueError(f"fun returned shape {np.shape(out)} for a state of shape {np.shape(y)}; "
                             "fun(t, y, *args) must return dy/dt of y's shape")
        return out

    return checked


def _plain_event(event: Callable) -> Callable:
    def checked(t, y, *args):
        out = event(t, y, *args)
        if holds_box(out):
            raise TypeError(f"the event function {getattr(event, '__name__', event)!r} returned a value that "
                            "autograd is tracing: it closes over a variable being differentiated; pass it "
                            "through args instead")
        return out

    return checked


def _plain_events(events: Any) -> Any:
    """The event functions for scipy's solve: ``terminal``/``direction`` kept, traced outputs refused."""
    if events is None:
        return None
    wrapped = []
    for event in ((events,) if callable(events) else events):
        plain = _plain_event(event)
        for attribute in ("terminal", "direction"):
            if hasattr(event, attribute):
                setattr(plain, attribute, getattr(event, attribute))
        wrapped.append(plain)
    return wrapped


def _event_list(events: Any) -> list:
    return [] if events is None else ([events] if callable(events) else list(events))


class _Solved:
    """The states of one differentiable solve at chosen times, and at times of equal value.

    The primitive is solved once, from ``t0`` at every distinct value among ``times`` (each
    represented by the first time of that value). :meth:`at` returns the state at any time
    whose value is one of them: the solved row itself, or, for another traced time of the same
    value, the row plus a first-order step ``(t - t_rep) f``: the right value and the right
    first derivatives.
    """

    def __init__(self, problem: Problem, y0: Any, t0: Any, theta: Any, times: Sequence[Any], direction: float):
        reps = {float(getval(t0)): t0}
        for time in times:
            reps.setdefault(float(getval(time)), time)
        values = sorted(reps, key=lambda v: direction * v)
        if values[0] != float(getval(t0)):
            raise ValueError(
                f"a state was asked for at t = {values[0]!r}, before t_span[0] = {getval(t0)!r} in the "
                "direction of integration; differentiable states exist only between t_span[0] and "
                "the end of the solve"
            )
        self.problem, self.theta, self.reps = problem, theta, reps
        self.index = {value: i for i, value in enumerate(values)}
        self.ys = solve_with_stats(y0, anp.array([reps[v] for v in values]), theta, problem,
                                   sensitivities_in_forward=True)[0]

    def at(self, time: Any) -> Any:
        """The state at ``time`` (its value must be one of the solved times)."""
        value = float(getval(time))
        rep, y = self.reps[value], self.ys[self.index[value]]
        if time is rep or not (isbox(time) or isbox(rep)):
            return y
        if _nested(time) or _nested(rep) or _nested(y):
            raise _higher_order_error(f"the state at t = {value!r} (equal in value to another solved time)")
        # (time - rep) is 0: f's own derivatives would be multiplied by 0, so f's value suffices.
        return y + (time - rep) * self.problem.make_fun(getval(self.theta))(getval(y), value)


def _event_time(event: Callable, value: float, solved: _Solved, bound: Sequence, plain: Sequence) -> Any:
    """The traced time of an event found by scipy at ``value``: the implicit function theorem.

    ``g(y(t*; θ), t*, θ) = 0`` gives ``dt*/dθ = -(∂g/∂θ + ∂g/∂y dy/dθ) / ġ`` with
    ``ġ = ∂g/∂t + ∂g/∂y·f``; so ``t* = value - (G - G_value) / ġ_value`` with ``G = g(y(value),
    value, θ)`` on the differentiable state: value ``value`` exactly, first derivatives exact.
    """
    state = solved.at(value)
    try:
        g = anp.reshape(event(value, state, *bound), ())
    except (TypeError, ValueError, AttributeError) as exc:
        raise TypeError(
            f"the event function {getattr(event, '__name__', event)!r} could not be evaluated on the "
            "traced state: to differentiate event times, write it with autograd.numpy (as fun), "
            "returning one number"
        ) from exc
    if not isbox(g):
        return value
    if _nested(g):
        raise _higher_order_error(f"the event time t = {value!r}")
    y_value = getval(state)
    rate_value = solved.problem.make_fun(getval(solved.theta))(y_value, value)
    rate = float(ag_grad(lambda s: anp.reshape(event(value + s, y_value + s * rate_value, *plain), ()))(0.0))
    if not np.isfinite(rate) or rate == 0.0:
        raise ValueError(
            f"the event {getattr(event, '__name__', event)!r} at t = {value!r} is crossed tangentially "
            f"(d/dt g(t, y(t)) = {rate!r}): its time is not differentiable there"
        )
    return value - (g - getval(g)) / rate


def solve_ivp(
    fun: Callable[..., Any],
    t_span: Sequence[Any],
    y0: Any,
    method: str | type = "RK45",
    t_eval: Any = None,
    dense_output: bool = False,
    events: Callable | Sequence[Callable] | None = None,
    vectorized: bool = False,
    args: tuple | None = None,
    *,
    adjoint: str | AdjointOptions = "auto",
    **options: Any,
) -> Any:
    """Solve ``dy/dt = fun(t, y, *args)``; scipy's ``solve_ivp``, differentiable by autograd.

    Same call and result as :func:`scipy.integrate.solve_ivp`; with plain numpy inputs it *is*
    scipy's (called directly, the result bit for bit scipy's). Under autograd (``grad``,
    ``jacobian``, ``make_vjp``, ``make_jvp``, ...) the result's ``y``, ``t``, ``t_events``,
    ``y_events`` and ``sol(t)`` are differentiable with respect to ``y0``, both ends of
    ``t_span``, every entry of ``t_eval`` and every float in ``args``.

    Parameters
    ----------
    fun : callable
        ``fun(t, y, *args) -> dy/dt``, shape (n,), written with ``autograd.numpy`` when
        differentiated. Values to differentiate must come in through ``args``, not a closure.
        With ``vectorized=True``, ``y`` has shape (n, k) as in scipy.
    t_span : pair of floats
        ``(t0, tf)``; either may be traced.
    y0 : array_like, shape (n,)
        Initial state; real when differentiated (complex states run with plain inputs only).
    method : {"RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA"} or scipy's class of that name
        As in scipy. The derived (adjoint or sensitivity) solves use the same method unless
        ``adjoint`` names another (``AdjointOptions(method=...)``, one of odeint's methods).
    t_eval : array_like, optional
        Output times, as in scipy; each is differentiable. Without ``t_eval`` the result holds
        every step scipy took: the interior step times are then constants of the solve (they
        have no derivative), the states at them are differentiable, and ``t[0]``/``t[-1]`` are
        ``t_span``'s ends (or a terminal event's time).
    dense_output : bool, optional
        Under autograd, ``sol`` is a :class:`DifferentiableSolution`: ``sol(t)`` solves again
        from ``t0`` to the requested times (differentiable, also in ``t``); ``sol.plain`` is
        scipy's ``OdeSolution`` of the plain values.
    events : callable or list of callables, optional
        As in scipy (``terminal``, ``direction`` attributes). Event times and states are
        differentiable (implicit function theorem, first derivatives); with a terminal event,
        so are the final time and state. Differentiated event functions must be written with
        ``autograd.numpy``.
    vectorized : bool, optional
        As in scipy.
    args : tuple, optional
        Extra arguments of ``fun`` (and of ``jac`` and the events): floats, arrays and nested
        lists, tuples or dicts of them; float leaves are differentiated.
    adjoint : str or AdjointOptions, optional
        How gradients are computed, as in :func:`odegrad.odeint` (``"auto"``, ``"checkpoint"``,
        ``"backsolve"``, ``"interpolate"``, ``"forward"``, or a method registered with
        :func:`odegrad.methods.register`).
    **options
        scipy's solver options. ``rtol``, ``atol`` (scalars or arrays) and ``max_step`` apply to
        the forward and the derived solves (the derived solves take the smallest ``rtol``);
        ``first_step``, ``min_step`` (LSODA) and the Jacobian options ``jac``, ``jac_sparsity``,
        ``lband``, ``uband`` apply to the forward solve only: the derived solves use odegrad's
        exact Jacobians of their own dynamics.

    Returns
    -------
    OdeResult
        scipy's fields: ``t``, ``y`` (shape (n, T)), ``sol``, ``t_events``, ``y_events``,
        ``nfev``, ``njev``, ``nlu`` (of scipy's own solve), ``status``, ``message``, ``success``.
        Under autograd the values are still scipy's numbers; their derivatives come from a
        second, differentiable solve at the output times (the two agree to the solver's
        tolerance), so the forward problem costs two solves (``odegrad.record_stats`` counts
        the second one and the gradient's).

    Raises
    ------
    ODESolveError
        When a differentiated solve fails (scipy's ``success`` is False): a failed solve has no
        gradient.
    ValueError
        scipy's errors for bad input; a complex ``y0`` when differentiated; an event crossed
        tangentially; ``sol(t)`` outside the solved interval.
    TypeError
        When ``fun`` (or an event) closes over a value that autograd is differentiating.
    NotImplementedError
        For second and higher derivatives of event times, and of states at times that coincide
        in value with another solved time (``t_eval[0] == t_span[0]`` when both are traced).
    """
    keywords = {"method": method, "t_eval": t_eval, "dense_output": dense_output, "events": events,
                "vectorized": vectorized, "args": args, **options}
    if not holds_box([t_span, y0, t_eval, args]):
        try:
            return solvers.scipy_solve_ivp(fun, t_span, y0, **keywords)
        except (TypeError, ValueError) as exc:
            if _returns_box(fun, t_span, y0, args):
                raise _closure_error() from exc
            raise
    return _traced_solve(fun, t_span, y0, keywords, adjoint_options(adjoint), options)


def _returns_box(fun: Callable, t_span: Any, y0: Any, args: Any) -> bool:
    """Whether ``fun`` at the initial point returns a traced value (it closes over one)."""
    try:
        return holds_box(fun(t_span[0], y0, *(args or ())))
    except Exception:  # the caller re-raises scipy's own error
        return False


def _tolerances(options: dict, n: int) -> tuple[Any, Any]:
    rtol = options.get("rtol", 1e-3)
    atol = options.get("atol", 1e-6)
    return tolerance("rtol", rtol, (n,)), tolerance("atol", atol, (n,))


def _build_problem(fun, name: str, n: int, n_params: int, vectorized: bool, has_args: bool,
                   unflatten: Callable, adjoint: AdjointOptions, options: dict) -> Problem:
    """The :class:`Problem` of the forward solve, as :func:`odegrad.odeint` builds it."""
    def call(t, y, bound):
        out = fun(t, anp.reshape(y, (n, 1)) if vectorized else y, *bound)
        if isinstance(out, (list, tuple)):
            out = anp.array(out)
        check_traced_output("fun", out)
        return anp.reshape(out, (n,)) if vectorized else out

    def rhs(y, t, theta):
        return call(t, y, unflatten(theta) if has_args else ())

    def make_fun(theta):
        bound = unflatten(theta) if has_args else ()

        def plain(y, t):
            out = fun(t, y[:, None] if vectorized else y, *bound)
            if holds_box(out):
                raise _closure_error()
            out = np.asarray(out, dtype=np.float64)
            if vectorized and out.shape == (n, 1):
                out = out[:, 0]
            if out.shape != (n,):
                raise ValueError(f"fun returned shape {out.shape} but y0 has shape ({n},); "
                                 "fun(t, y, *args) must return dy/dt of y0's shape")
            return out

        return plain

    def make_jac(theta):
        given = {k: options[k] for k in _JACOBIAN_KEYWORDS if options.get(k) is not None}
        if solvers.solver(name).jacobian_layout != "solve_ivp" or not given:
            return None
        if callable(given.get("jac")) and has_args:
            user_jac, bound = given["jac"], unflatten(theta)
            given["jac"] = lambda t, y: user_jac(t, y, *bound)
        return solvers.IvpJacobian(name, given)

    rtol, atol = _tolerances(options, n)
    max_step = float(options.get("max_step", np.inf))
    hmax = max_step if np.isfinite(max_step) else 0.0
    hmin = float(options.get("min_step", 0.0)) if "hmin" in solvers.solver(name).options else 0.0
    opts = solvers.SolverOptions(method=name, rtol=rtol, atol=atol, h0=float(options.get("first_step") or 0.0),
                                 hmax=hmax, hmin=hmin)
    backward_rtol = rtol if adjoint.rtol is None else tolerance("adjoint_rtol", adjoint.rtol, (n,))
    backward = solvers.SolverOptions(
        method=adjoint.method or name, rtol=float(np.min(backward_rtol)), hmax=hmax,
        atol=atol if adjoint.atol is None else tolerance("adjoint_atol", adjoint.atol, (n,)),
    )
    return Problem(rhs=rhs, n=n, n_params=n_params, opts=opts, backward_opts=backward, adjoint=adjoint,
                   info=new_info(name, backward.method), stage="forward", make_fun=make_fun, make_jac=make_jac)


class DifferentiableSolution:
    """``sol`` of a differentiated :func:`solve_ivp` (``dense_output=True``).

    ``sol(t)`` is the state at ``t`` (a number: shape (n,); an array of times: shape (n, k)),
    solved again from ``t_span[0]`` to the requested times by the differentiable solve:
    differentiable in ``y0``, ``t_span[0]``, ``args`` and ``t`` itself, and equal to scipy's
    interpolant to the solver's tolerance. Each call is one more solve.

    Attributes
    ----------
    plain : scipy.integrate.OdeSolution
        scipy's dense output of the plain values (not differentiated).
    t_min, t_max : float
        The solved interval; ``sol(t)`` outside it raises ``ValueError`` (scipy's extrapolates),
        except for a solve of no length, where ``sol(t)`` is ``y0`` at every ``t``, as scipy's.
    """

    def __init__(self, plain: Any, states_at: Callable[[list], list]):
        self.plain = plain
        self.t_min, self.t_max = float(plain.t_min), float(plain.t_max)
        self._states_at = states_at

    def __call__(self, t: Any) -> Any:
        t = as_traced(t)
        value = np.asarray(getval(t), dtype=float)
        if value.ndim > 1:
            raise ValueError(f"sol(t) takes a number or a 1-D array of times, got shape {value.shape}")
        plain = self.plain(value)
        if value.size == 0:
            return plain
        if self.t_min == self.t_max:    # no integration: scipy's sol is y0 at every t
            times = [self.t_min] * value.size
        else:
            outside = value[(value < self.t_min) | (value > self.t_max)]
            if outside.size:
                raise ValueError(
                    f"sol(t) of a differentiated solve is defined on the solved interval [{self.t_min!r}, "
                    f"{self.t_max!r}], got t = {outside[0]!r}; use sol.plain for scipy's extrapolation"
                )
            times = [t] if value.ndim == 0 else [t[i] for i in range(value.size)]
        states = self._states_at(times)
        if value.ndim == 0:
            return _valued(states[0], plain)
        return anp.stack([_valued(state, plain[:, i]) for i, state in enumerate(states)], axis=1)


def _valued(traced: Any, value: np.ndarray) -> Any:
    """``traced`` with the value ``value`` (scipy's own number) and ``traced``'s derivatives.

    The differentiable solve runs at the output times and ends a terminal solve exactly at the
    event, where scipy's solve interpolates: the two agree to the solver's tolerance, and the
    result shows scipy's numbers.
    """
    return traced + (value - getval(traced)) if isbox(traced) else value


def _span(t_span: Any) -> tuple[Any, Any]:
    t_span = as_traced(t_span)
    if len(getval(t_span)) != 2:
        raise ValueError(f"t_span must be a pair (t0, tf), got {getval(t_span)!r}")
    return t_span[0], t_span[1]


def _traced_solve(fun, t_span, y0, keywords: dict, adjoint: AdjointOptions, options: dict) -> Any:
    """:func:`solve_ivp` with traced inputs (module docstring)."""
    name = _method_name(keywords["method"])
    y0 = as_traced(y0)
    if np.iscomplexobj(getval(y0)):
        raise ValueError("y0 is complex: a differentiated solve_ivp integrates real states (split y0 and fun "
                         "into real and imaginary parts); complex states run with plain inputs only")
    t0, tf = _span(t_span)
    args = keywords["args"]
    if args is not None:
        args = open_containers(args)
        try:
            args = tuple(args)
        except TypeError as exc:
            raise TypeError(f"Supplied 'args' cannot be unpacked. Please supply `args` as a tuple "
                            f"(e.g. `args=({args},)`)") from exc
    theta, unflatten = flatten_args(args or ())
    plain_args = None if args is None else unflatten(getval(theta))
    t_eval = as_traced(keywords["t_eval"])
    reference = solvers.scipy_solve_ivp(
        _plain_fun(fun), (float(getval(t0)), float(getval(tf))), np.asarray(getval(y0)),
        **{**keywords, "method": name, "args": plain_args, "events": _plain_events(keywords["events"]),
           "t_eval": None if t_eval is None else np.asarray(getval(t_eval), dtype=float)},
    )
    if not reference.success:
        raise solvers.ODESolveError(
            f"solve_ivp ({name}) failed: {reference.message} A failed solve has no gradient. Try: "
            f"loosen rtol/atol, use method={solvers.either(solvers.methods('solve_ivp', lambda s: s.takes_jacobian))} "
            "if the problem is stiff, or check the dynamics for blow-up."
        )
    y0_value = as_real_array("y0", y0)   # scipy has checked its shape and finiteness
    n = y0_value.size
    if n == 0:
        raise ValueError("y0 is empty: there is no state to differentiate; call solve_ivp with plain inputs")
    problem = _build_problem(fun, name, n, int(np.size(getval(theta))), keywords["vectorized"], args is not None,
                             unflatten, adjoint, options)
    y0_flat = y0 if isbox(y0) else y0_value
    direction = 1.0 if getval(tf) >= getval(t0) else -1.0
    bound = () if args is None else unflatten(theta)

    def states_at(times: list) -> list:
        solved = _Solved(problem, y0_flat, t0, theta, times, direction)
        return [solved.at(time) for time in times]

    return _results(reference, problem, y0_flat, t0, tf, t_eval, theta, bound, plain_args or (),
                    _event_list(keywords["events"]), direction, states_at)


def _results(reference, problem: Problem, y0, t0, tf, t_eval, theta, bound, plain_args, events: list,
             direction: float, states_at: Callable) -> Any:
    """The :class:`OdeResult` of a traced solve from scipy's solve of the plain values."""
    n_out = len(reference.t)
    if t_eval is not None:
        outputs = [t_eval[i] for i in range(n_out)]
    elif n_out > 1:
        end = tf if reference.status == 0 else float(reference.t[-1])
        outputs = [t0] + [float(v) for v in reference.t[1:-1]] + [end]
    else:
        outputs = [t0] if n_out else []
    event_values = [] if reference.t_events is None else [[float(v) for v in te] for te in reference.t_events]
    constants = [v for values in event_values for v in values]
    solved = _Solved(problem, y0, t0, theta, outputs + constants, direction)
    t_events = y_events = None
    if reference.t_events is not None:
        t_events, y_events = [], []
        for event, values, states in zip(events, event_values, reference.y_events):
            times = [_event_time(event, v, solved, bound, plain_args) for v in values]
            t_events.append(anp.stack(times) if times and holds_box(times) else np.asarray(values))
            y_events.append(anp.stack([_valued(solved.at(tt), state) for tt, state in zip(times, states)])
                            if times else states)
            if reference.status == 1 and t_eval is None and float(reference.t[-1]) in values:
                outputs[-1] = times[values.index(float(reference.t[-1]))]
    if n_out:
        t = anp.array(outputs) if holds_box(outputs) else reference.t
        y = anp.stack([_valued(solved.at(time), reference.y[:, k]) for k, time in enumerate(outputs)], axis=1)
    else:
        t, y = reference.t, reference.y
    sol = None if reference.sol is None else DifferentiableSolution(reference.sol, states_at)
    return type(reference)(t=t, y=y, sol=sol, t_events=t_events, y_events=y_events, nfev=reference.nfev,
                           njev=reference.njev, nlu=reference.nlu, status=reference.status,
                           message=reference.message, success=reference.success)
