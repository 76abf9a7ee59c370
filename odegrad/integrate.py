"""The front door: ``odeint``, ``scipy.integrate.odeint`` that autograd differentiates, to any order.

This module turns scipy-style arguments (any-shaped ``y0``, ``args`` as nested containers, the
flat adjoint keywords) into one :class:`odegrad.problem.Problem` and calls the
backend's ``solve`` primitive: a plain scipy solve forwards (:mod:`odegrad.solvers`), and
backwards the gradient method that ``adjoint`` names (:mod:`odegrad.methods`: Algorithm 1 with
Appendix C, forward sensitivities, ``auto``, or a registered method of the user's).
"""

from __future__ import annotations

from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval, isbox

from . import solvers
from .adjoint import refine_times
from .autograd_backend import AutogradOps, solve_with_stats
from .options import AdjointOptions, adjoint_options
from .problem import Problem
from .pytree import as_traced, flatten_args, open_containers
from .solver_registry import either, methods
from .stats import SolveInfo, new_info
from .validation import ShapeError, as_real_array, check_method, check_times, check_traced_output, tolerance

_LSODA_KWARGS = {"ml": None, "mu": None, "tcrit": None, "ixpr": 0, "mxhnil": 0, "mxordn": 12,
                 "mxords": 5, "printmessg": 0}
"""scipy's defaults of the options that go to ``scipy.integrate.odeint`` as they are (``lsoda_kwargs``)."""
_STEP_DEFAULTS = {"h0": 0.0, "hmax": 0.0, "hmin": 0.0, "mxstep": 0, "full_output": False}
"""scipy's defaults of the options that every method of scipy's ``odeint`` door takes."""

def _full_of_band(band: np.ndarray, ml: int, mu: int) -> np.ndarray:
    """The (n, n) Jacobian of scipy's banded layout ``band[mu + i - j, j] = J[i, j]``."""
    n = band.shape[1]
    full = np.zeros((n, n))
    for k in range(-ml, mu + 1):
        rows = np.arange(max(-k, 0), n - max(k, 0))
        full[rows, rows + k] = band[mu - k, rows + k]
    return full


def _scipy_infodict(stats: solvers.SolveStats | None, t: np.ndarray, checkpoints: int, info: SolveInfo) -> dict:
    """scipy's ``infodict`` of the forward solve (rows of the output times only) plus ``"odegrad"``."""
    if stats is None or stats.infodict is None:
        scipy_info = solvers.infodict_of_no_steps(t)
    else:
        rows = (checkpoints + 1) * np.arange(1, len(t)) - 1
        scipy_info = {key: value[rows] if isinstance(value, np.ndarray) else value
                      for key, value in stats.infodict.items()}
    return {**scipy_info, "odegrad": info}


def _changed_options(given: dict, method: str) -> list[str]:
    """The options of ``given`` that differ from scipy's defaults; ``ValueError`` where ``method`` does not take one."""
    defaults = {**_LSODA_KWARGS, **_STEP_DEFAULTS}
    changed = [k for k, v in given.items() if ((v is not None) if defaults[k] is None else bool(v != defaults[k]))]
    refused = [k for k in changed if k not in solvers.solver(method).options]
    if refused:
        takers = methods("odeint", lambda spec: set(refused) <= spec.options)
        raise ValueError(f"{', '.join(refused)} only apply to method={either(takers)}, not {method!r}")
    return changed


def _dynamics(func: Callable[..., Any], shape: tuple[int, ...],
              unflatten: Callable[[Any], tuple]) -> tuple[Callable, Callable]:
    """``(rhs, make_fun)`` of :class:`odegrad.problem.Problem` for ``func(y, t, *args)``
    on states of ``shape``: the traced flat dynamics, and plain ones that check ``func``'s output."""
    flat_state = len(shape) == 1

    def rhs(y, tt, th):
        out = func(y if flat_state else anp.reshape(y, shape), tt, *unflatten(th))
        if isinstance(out, (list, tuple)):
            out = anp.array(out)
        check_traced_output("func", out)
        return out if flat_state and anp.ndim(out) == 1 else anp.ravel(out)

    def make_fun(th):
        bound = unflatten(th)

        def fun(y, tt):
            out = func(y if flat_state else y.reshape(shape), tt, *bound)
            if type(out) is np.ndarray and out.shape == shape:     # the common case, checked cheaply
                return out if flat_state else out.ravel()
            if isbox(out) or (isinstance(out, (list, tuple)) and any(isbox(o) for o in out)):
                raise _closure_error()
            if np.shape(out) != shape and not (flat_state and np.ndim(out) < 2 and np.size(out) == shape[0]):
                raise ShapeError(
                    f"func returned shape {np.shape(out)} but y0 has shape {shape}; "
                    "func(y, t, *args) must return dy/dt with y0's shape"
                )
            return np.ravel(out)

        return fun

    return rhs, make_fun


def _jacobian(Dfun: Callable[..., Any] | None, shape: tuple[int, ...], unflatten: Callable[[Any], tuple],
              col_deriv: int, ml: int | None, mu: int | None) -> Callable:
    """``make_jac(theta) -> jac(y, t)`` (full, unbanded, not transposed) from scipy's ``Dfun``,
    or ``None`` without one; checks the shape ``Dfun`` returns."""
    flat_state = len(shape) == 1
    n = int(np.prod(shape))

    def make_jac(th):
        if Dfun is None:
            return None
        bound = unflatten(th)
        banded = ml is not None or mu is not None
        rows = (ml or 0) + (mu or 0) + 1 if banded else n
        expected = (n, rows) if col_deriv else (rows, n)

        def jac(y, tt):
            matrix = np.asarray(Dfun(y.reshape(shape), tt, *bound), dtype=float)
            if flat_state and matrix.shape != expected and not (matrix.ndim < 2 and expected[0] == 1
                                                                and matrix.size == expected[1]):
                raise ShapeError(f"Dfun returned shape {matrix.shape}; expected {expected} "
                                 f"({'banded, ml + mu + 1 rows' if banded else 'the full Jacobian'}"
                                 f"{', transposed (col_deriv)' if col_deriv else ''})")
            matrix = np.reshape(matrix, expected)
            matrix = matrix.T if col_deriv else matrix
            return _full_of_band(matrix, ml or 0, mu or 0) if banded else matrix

        return jac

    return make_jac


def _closure_error() -> TypeError:
    return TypeError(
        "func returned a value that autograd is tracing: func closes over a variable that is being "
        "differentiated. odeint differentiates only through y0, t and args: write "
        "func(y, t, p) and call odeint(func, y0, t, args=(p,)) instead of closing over p."
    )


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
    adjoint: str | AdjointOptions = "auto",
    checkpoints: int = 0,
    adjoint_method: str | None = None,
    adjoint_rtol: float | np.ndarray | None = None,
    adjoint_atol: float | np.ndarray | None = None,
    adjoint_seminorm: bool = False,
    adjoint_jacobian: bool | None = None,
    adjoint_normalize: bool = True,
) -> Any:
    """Integrate ``dy/dt = func(y, t, *args)``; differentiable by autograd to any order.

    Same call as :func:`scipy.integrate.odeint`; with plain numpy inputs and ``method="lsoda"``
    it returns what scipy returns. Under autograd (``grad``, ``jacobian``, ``hessian``,
    ``make_vjp``, ...) the derivatives with respect to ``y0``, every entry of ``t`` and every
    float in ``args`` come from the adjoint method (Algorithm 1 and Appendix C of Chen et al.,
    2018) or from forward sensitivities, as ``adjoint`` chooses; autograd takes their own
    derivatives in turn.

    Parameters
    ----------
    func : callable
        ``func(y, t, *args) -> dy/dt`` with ``y`` and ``dy/dt`` of ``y0``'s shape, written with
        ``autograd.numpy``. Values to differentiate must come in through ``args``, not a closure.
        With ``tfirst=True`` the signature is ``func(t, y, *args)``.
    y0 : float or array_like
        Initial state at ``t[0]``, of any shape (a vector, a matrix, ...). A scalar is a state of
        one entry, as in scipy: ``func`` receives arrays of shape (1,) and ``ys`` has shape (T, 1).
    t : array_like, shape (T,)
        Output times, increasing or decreasing (repeated times allowed, as in scipy);
        ``t[0]`` is the initial time. An empty ``t`` gives an empty ``ys``.
    args : tuple, optional
        Extra arguments of ``func``: floats, arrays, and lists, tuples or dicts of them, nested.
        Float leaves are differentiated; other leaves (ints, strings, ...) are passed unchanged.
        A non-tuple is treated as ``(args,)`` (scipy requires a tuple).
    Dfun : callable, optional
        ``Dfun(y, t, *args)``: the Jacobian of ``func`` over the flattened state, shape (n, n),
        or banded (``ml``, ``mu``) as in scipy, for the forward solve (stiff problems).
        ``col_deriv`` as in scipy.
    full_output : bool, optional
        Also return scipy's ``infodict`` of the forward solve, with odegrad's
        :class:`odegrad.SolveInfo` (forward and, after a gradient, backward statistics) under
        the extra key ``"odegrad"``.
    ml, mu, tcrit, ixpr, mxhnil, mxordn, mxords, printmessg
        As in :func:`scipy.integrate.odeint`; LSODA only.
    rtol, atol : float or array_like, optional
        Relative and absolute tolerances (default 1.49012e-8 for every method, as scipy's
        odeint); arrays broadcast to ``y0``'s shape.
    h0, hmax, hmin, mxstep
        First, largest and smallest step size, and the step budget per output interval.
    method : {"lsoda", "adams", "bdf"} or another registered method, optional
        ``"lsoda"`` (scipy's odeint), ``"adams"`` (VODE implicit Adams, the paper's choice) or
        ``"bdf"`` (VODE BDF, for stiff problems); or any method registered
        (:func:`odegrad.solver_registry.register_solver`) with ``"odeint"`` among its doors.
    adjoint : {"auto", "checkpoint", "backsolve", "interpolate", "forward"}, str or AdjointOptions, optional
        How gradients are computed: a mode name with the flat ``checkpoints`` and
        ``adjoint_*`` keywords below, or one :class:`odegrad.AdjointOptions` holding them all.
        ``"auto"`` (default) picks one of the following per solve from the sizes, the number of
        outputs and stiffness (:func:`odegrad.auto.choose`): forward sensitivities for small
        states, the checkpoint adjoint for wide ones, for stiff problems forward sensitivities
        with their Jacobian or the interpolating adjoint. ``"checkpoint"`` is the adjoint
        restarting the backward reconstruction of ``y`` from the stored forward state at each
        output time (and each checkpoint); ``"backsolve"`` is the paper's Algorithm 1,
        reconstructing ``y`` backwards from the final state alone; ``"interpolate"`` reads ``y``
        from a dense forward solution instead of solving it backwards (stiff problems, first
        derivatives only); ``"forward"`` solves the forward sensitivities
        ``S' = ∂f/∂y S + ∂f/∂θ`` once over all output times (small states, many outputs, stiff
        problems; every derivative order). The name of a method registered with
        :func:`odegrad.methods.register` selects that method.
    checkpoints : int, optional
        Extra evenly spaced checkpoints per output interval stored by the forward solve, so the
        backward reconstruction of ``y`` restarts more often (for contracting dynamics).
    adjoint_method, adjoint_rtol, adjoint_atol : optional
        Method and tolerances of the backward (or sensitivity) solves; default: those of the
        forward solve.
    adjoint_seminorm : bool, optional
        Exclude the parameter and time components of the augmented state from the step-size
        control of the adjoint modes (Kidger et al. 2021); fewer steps, somewhat less accurate
        gradients. Refused by ``adjoint="forward"`` (every sensitivity enters the gradient) and
        ``"interpolate"`` (its steps would follow ``a`` alone); ``"auto"`` applies it only when it
        picks the checkpoint adjoint.
    adjoint_jacobian : bool, optional
        Give the backward (or sensitivity) solves the exact Jacobian of their dynamics (from
        autograd). Default: when their method is ``"bdf"`` or ``"lsoda"`` and their state has
        at most 200 entries.
    adjoint_normalize : bool, optional
        Solve the adjoint for the cotangent scaled to ``max |∂L/∂ys| = 1`` and scale back, so that
        a gradient's relative accuracy does not depend on the loss's scale (default). ``False``:
        Appendix D's absolute ``atol`` on the adjoint state (a small loss is then barely
        error-controlled).

    Returns
    -------
    ys : ndarray, shape (T,) + shape(y0), or (T, 1) for a scalar ``y0``
        ``ys[i]`` is the state at ``t[i]``; ``ys[0] == y0``.
    infodict : dict
        Only with ``full_output=True``: the keys of scipy's ``infodict`` (``hu``, ``tcur``,
        ``tolsf``, ``tsw``, ``nst``, ``nfe``, ``nje``, ``nqu``, ``mused``: one entry per output
        time after the first; ``imxer``, ``lenrw``, ``leniw``, ``message``) and ``"odegrad"``,
        the :class:`odegrad.SolveInfo` of this call. For ``"lsoda"`` they are LSODA's own (rows
        of output times equal to ``t[0]``, which scipy leaves unset, say that no step was
        taken: zeros, ``tcur = tsw = t[0]``). For ``"adams"`` and ``"bdf"`` they are what VODE
        reports; VODE never switches method, so ``mused`` is 1 (Adams) or 2 (BDF) and ``tsw``
        is ``t[0]``.

    Raises
    ------
    ODESolveError
        When the solver fails (excess work, step-size underflow, non-finite dynamics, blow-up).
    ValueError
        For non-monotonic or non-finite ``t``; empty or non-finite ``y0``; unknown methods, options
        the method does not take (its record's ``options``: ``ml`` ... ``printmessg`` are LSODA's) or
        bad tolerances (an error weight ``rtol*|y0| + atol`` of 0, e.g. ``rtol = atol = 0``).
        Where scipy accepts these (an infinite ``t``, an empty or non-finite ``y0``, a zero error
        weight) it returns an empty result, NaNs or garbage, at most with a warning.
    ShapeError
        A ``ValueError`` and a ``RuntimeError`` (scipy's error): ``func`` or ``Dfun`` returned
        the wrong shape.
    TypeError
        When ``func`` closes over a value that autograd is differentiating.
    """
    check_method("method", method)
    options = adjoint_options(
        adjoint, checkpoints=checkpoints, adjoint_method=adjoint_method, adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol, adjoint_seminorm=adjoint_seminorm, adjoint_jacobian=adjoint_jacobian,
        adjoint_normalize=adjoint_normalize,
    )
    lsoda_kwargs = {"ml": ml, "mu": mu, "tcrit": tcrit, "ixpr": ixpr, "mxhnil": mxhnil,
                    "mxordn": mxordn, "mxords": mxords, "printmessg": printmessg}
    changed = _changed_options({**lsoda_kwargs, "h0": h0, "hmax": hmax, "hmin": hmin, "mxstep": mxstep,
                                "full_output": full_output}, method)

    y0, t = as_traced(y0), as_traced(t)
    y0_value = as_real_array("y0", y0)
    if y0_value.size == 0:
        raise ValueError(f"y0 is empty (shape {y0_value.shape}); give y0 at least one entry")
    t_value = as_real_array("t", t)
    check_times(t_value, strict=False)
    shape = y0_value.shape or (1,)  # a scalar y0 is a state of one entry, as in scipy
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

    rhs, make_fun = _dynamics(func, shape, unflatten)
    make_jac = _jacobian(Dfun, shape, unflatten, col_deriv, ml, mu)

    rtol_v = tolerance("rtol", rtol, shape)
    atol_v = tolerance("atol", atol, shape)
    opts = solvers.SolverOptions(
        method=method, rtol=rtol_v, atol=atol_v, h0=h0, hmax=hmax, hmin=hmin, mxstep=mxstep,
        lsoda_kwargs={k: v for k, v in lsoda_kwargs.items() if k in changed},
    )
    backward_opts = options.backward_solver(opts, shape)
    problem = Problem(
        rhs=rhs, n=y0_value.size, n_params=int(np.size(getval(theta))), opts=opts,
        backward_opts=backward_opts, adjoint=options, info=new_info(method, backward_opts.method),
        stage="forward", make_fun=make_fun, make_jac=make_jac,
    )
    k = options.checkpoints
    stats = None
    if len(t_value):
        raw, stats = solve_with_stats(y0_flat, refine_times(t_in, k, AutogradOps) if k else t_in, theta, problem,
                                      sensitivities_in_forward=not (k or full_output))
    else:  # no output times: no rows, as in scipy
        raw = anp.reshape(y0_flat, (1, -1))[:0]
    ys = anp.reshape(raw[:: k + 1] if k else raw, (len(t_value),) + shape)
    if full_output:
        return ys, _scipy_infodict(stats, t_value, k, problem.info)
    return ys
