"""The TensorFlow front door: ``odeint`` for dynamics written in TensorFlow."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from .. import methods, solvers
from ..adjoint import refine_times
from ..options import AdjointOptions, adjoint_options
from ..stats import SolveInfo, new_info
from ..validation import as_real_array, check_method, check_times, tolerance
from .backend import solve_eager, solve_graph
from .compile import cache_of, default_device
from .dynamics import TFDynamics
from .ops import TFOps
from .tracing import TFCallable, reads_of


@dataclasses.dataclass(frozen=True)
class TFOptions:
    """Validated solver and adjoint options of the TensorFlow door (see :func:`odeint`)."""

    forward: solvers.SolverOptions
    backward: solvers.SolverOptions
    adjoint: AdjointOptions


def tf_options(rtol: float | None = None, atol: float | None = None, method: str = "lsoda",
               adjoint: str | AdjointOptions = "checkpoint", checkpoints: int = 0,
               adjoint_method: str | None = None, adjoint_rtol: float | None = None,
               adjoint_atol: float | None = None, adjoint_seminorm: bool = False,
               adjoint_normalize: bool = True) -> TFOptions:
    """Check the options of :func:`odeint` once and return them as solver options.

    Raises
    ------
    ValueError
        For an unknown method or adjoint mode (any method registered in :mod:`odegrad.methods` is
        one), options the mode's method does not take on this door, bad tolerances or
        checkpoints, or ``adjoint_jacobian`` (the derived solves of this door get no exact
        Jacobian: see the message).
    """
    check_method("method", method)
    options = adjoint_options(adjoint, checkpoints=checkpoints, adjoint_method=adjoint_method,
                              adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                              adjoint_seminorm=adjoint_seminorm, adjoint_normalize=adjoint_normalize)
    methods.get(options.mode).check(options, "tensorflow")
    if options.jacobian:
        raise ValueError(
            "adjoint_jacobian=True is not available in odegrad.tf.odeint: its derived (adjoint, "
            "sensitivity) dynamics are compiled TF computations of f and its VJP or Jacobian, and no "
            "Jacobian of those is computed (LSODA and BDF estimate one by finite differences where "
            "they need it); leave adjoint_jacobian unset, or use odegrad.odeint, which computes it exactly"
        )
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and np.ndim(value):
            raise ValueError(f"{name} must be a scalar in odegrad.tf.odeint, got shape {np.shape(value)}")
    forward = solvers.SolverOptions(method=method, rtol=tolerance("rtol", rtol, ()), atol=tolerance("atol", atol, ()))
    return TFOptions(forward, options.backward_solver(forward, ()), options)


def _state(y0: Any) -> tf.Tensor:
    y0 = tf.convert_to_tensor(y0)
    if y0.dtype.is_complex:
        raise ValueError(f"y0 is complex ({y0.dtype.name}); odegrad integrates real states: split it into "
                         "real and imaginary parts")
    if not y0.dtype.is_floating:
        y0 = tf.cast(y0, tf.float32)
    return y0


def _times(t: Any) -> tf.Tensor:
    """The output times as given (differentiable), kept in float64 where no dtype is given."""
    t = tf.convert_to_tensor(t, dtype_hint=tf.float64)
    if t.dtype.is_complex:
        raise ValueError("t is complex; output times must be real")
    return t if t.dtype.is_floating else tf.cast(t, tf.float64)


def _check_times(t: tf.Tensor) -> tf.Tensor:
    """``t`` checked as an eager call checks it: now when its value is known (eagerly, or a constant
    in a graph), else by an op that raises the same error when the graph runs."""
    known = t.numpy() if tf.executing_eagerly() else tf.get_static_value(t)
    if known is not None:
        check_times(as_real_array("t", known))
        return t
    if t.shape.rank != 1:
        raise ValueError(f"t must be a 1-D sequence of output times, got shape {t.shape}")

    def check(values: np.ndarray) -> np.ndarray:
        check_times(as_real_array("t", values))
        return np.zeros((), np.bool_)

    # Stateful: Grappler prunes a stateless op whose output only feeds a control dependency.
    checked = tf.numpy_function(check, [t], tf.bool, stateful=True, name="check_output_times")
    with tf.control_dependencies([checked]):
        return tf.identity(t)


def make_dynamics(f: TFCallable, y0: tf.Tensor, time_dtype: tf.DType, args: tuple[tf.Tensor, ...], options: TFOptions,
                  variables: Sequence[tf.Variable] | None = None, jit_compile: bool = False,
                  device: str | None = None) -> TFDynamics:
    """The forward :class:`TFDynamics` of ``f`` for the state ``y0`` (what :func:`odeint` solves).

    ``f`` is traced once (:func:`odegrad.tf.tracing.reads_of`) to find what it reads, what of that is
    differentiated, and the key under which its compiled computations are cached.

    Parameters
    ----------
    f : callable
        ``f(t, y, *args)``, as in :func:`odeint`.
    y0 : tf.Tensor
        The initial state (its shape and dtype are the state's).
    time_dtype : tf.DType
        The dtype of the time ``f`` receives.
    args : tuple of tf.Tensor
        The extra arguments of ``f``.
    options : TFOptions
        From :func:`tf_options`.
    variables, jit_compile, device
        As in :func:`odeint`.

    Returns
    -------
    TFDynamics

    Raises
    ------
    ValueError, TypeError
        As :func:`odeint`, for what ``f`` reads or returns.
    """
    reads = reads_of(f, tf.TensorSpec(y0.shape, y0.dtype), args, time_dtype, variables)
    return TFDynamics(
        func=f, shape=tuple(y0.shape), dtype=y0.dtype, time_dtype=time_dtype, reads=reads, args=args,
        opts=options.forward, backward_opts=options.backward, adjoint=options.adjoint,
        info=new_info(options.forward.method, options.backward.method), compiled=cache_of(f),
        jit_compile=bool(jit_compile), device=device or default_device(y0),
    )


def odeint(
    f: TFCallable,
    y0: Any,
    t: Any,
    *,
    args: Sequence[Any] = (),
    rtol: float | None = None,
    atol: float | None = None,
    method: str = "lsoda",
    adjoint: str | AdjointOptions = "checkpoint",
    checkpoints: int = 0,
    adjoint_method: str | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_seminorm: bool = False,
    variables: Sequence[tf.Variable] | None = None,
    jit_compile: bool = False,
    device: str | None = None,
    full_output: bool = False,
    adjoint_normalize: bool = True,
) -> tf.Tensor | tuple[tf.Tensor, SolveInfo]:
    """Integrate ``dy/dt = f(t, y, *args)`` for TensorFlow dynamics; differentiable by the adjoint.

    Parameters
    ----------
    f : callable
        ``f(t, y, *args) -> dy/dt``: a TensorFlow function, Keras layer or ``tf.Module``; ``t`` is
        a scalar tensor of the output times' dtype (float64 for Python and NumPy numbers, whatever
        ``y0``'s dtype, so that ``f`` sees the time at the solver's precision: a float32 time is
        piecewise constant in steps of 1e-3 at t = 1e4; ``tf.cast(t, y.dtype)`` where ``f``
        combines it with ``y``) and ``y`` has ``y0``'s shape and dtype. ``f`` must return ``y``'s
        shape. Values ``f`` reads are never frozen: before each solve ``f`` is
        traced once and compiled computations are reused only for an identical trace (the same
        Python numbers, NumPy arrays, tensors and variables).
    y0 : tf.Tensor or array_like
        Initial state, any real shape (e.g. a batch of feature maps; the batch dimension may be
        unknown while a graph is traced), float32 or float64; integers become float32.
    t : tf.Tensor or array_like, shape (T,)
        Strictly monotonic output times (checked when the graph runs if they are only known
        then). Python and NumPy numbers are kept in float64 (the solver works in float64 on the
        host), whatever ``y0``'s dtype.
    args : sequence of tf.Tensor, optional
        Extra arguments of ``f`` (e.g. a conditioning tensor); floating ones are differentiated.
        Inside a ``tf.function`` or Keras model, tensors computed there must come in this way.
        Eager tensors ``f`` reads from enclosing scopes are differentiated as well.
    rtol, atol : float, optional
        Tolerances of the forward solve (default 1.49012e-8, as scipy's odeint).
    method : {"lsoda", "adams", "bdf"}, optional
        The scipy back-end; ``"adams"`` is the paper's implicit Adams (VODE).
    adjoint : {"checkpoint", "backsolve", "interpolate", "forward", "auto"}, str or AdjointOptions, optional
        The gradient method, as in :func:`odegrad.odeint`: the same method objects
        (:mod:`odegrad.methods`, where a method registered with :func:`odegrad.methods.register`
        is available by its name too), run with TensorFlow operations. Default ``"checkpoint"``,
        the paper's Algorithm 1 with stored forward states. ``"forward"``: forward sensitivities,
        one solve over all output times that serves every cotangent (all rows of a
        ``tape.jacobian``), for small states. ``"auto"``: the autograd door's rule, forward
        sensitivities or the adjoint per solve from the state's size, the outputs and the forward
        solve's cost, with its fallbacks; which one ran is listed in ``info.gradient_methods``
        (``full_output=True``). ``"interpolate"`` gives first derivatives only.
    checkpoints : int, optional
        Extra forward states stored per output interval, as in :func:`odegrad.odeint`.
    adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm
        As in :func:`odegrad.odeint`.
    variables : sequence of tf.Variable, optional
        The trainable variables to differentiate. Default: every trainable variable ``f`` reads,
        found by tracing ``f`` (every branch of its ``tf.cond``\\ s, not one eager call). Given
        explicitly, it must contain every trainable variable ``f`` reads, or ``ValueError``; a
        variable listed more than once (e.g. the variable lists of two sub-modules sharing a
        layer, concatenated) is differentiated once.
    jit_compile : bool, optional
        Compile the evaluations the solver makes (``f``, and ``f`` fused with its VJP for the
        backward solves) with XLA. Default ``False``: a plain ``tf.function`` graph, no compile
        latency and any TF op. XLA pays off when evaluations are expensive and many (the Table 1
        block: less CPU time per evaluation, ``benchmarks/results_tf_block.md``) and
        costs seconds of compilation per new state shape.
    device : str, optional
        Device of the compiled dynamics, e.g. ``"/GPU:0"``. Default: the device of ``y0`` when
        it is an accelerator or set by a device scope, else the first GPU, else the CPU
        (:func:`odegrad.tf.compile.default_device`).
    full_output : bool, optional
        Also return the call's :class:`odegrad.SolveInfo` (backward statistics are filled in
        when a gradient is taken; in a graph, each execution restarts them).
    adjoint_normalize : bool, optional
        As in :func:`odegrad.odeint`: default ``True``, the adjoint is solved for the cotangent
        scaled to ``max |∂L/∂ys| = 1`` (the gradient's relative accuracy does not depend on the
        loss's scale); ``False``: Appendix D's (and torchdiffeq's) absolute ``atol`` on the
        adjoint state, the setting of the Table 1 ODE-Net.

    Returns
    -------
    ys : tf.Tensor, shape (T,) + y0.shape
        The states at ``t``. Differentiable with ``tf.GradientTape`` with respect to ``y0``,
        ``t``, ``args`` and ``variables``; memory does not grow with the number of solver steps.
        Forward mode (``tf.autodiff.ForwardAccumulator``) gives Jacobian-vector products; nested
        tapes, or an accumulator around a tape (Hessian-vector products), give second derivatives.
        Both need eager mode (and a method other than ``"interpolate"``): inside a
        ``tf.function`` only reverse-mode first derivatives are available, and the others raise
        ``NotImplementedError``. ``tape.jacobian`` needs ``experimental_use_pfor=False`` (the
        solves run on the host).

    Raises
    ------
    ValueError
        For bad times, complex or non-finite states, tolerances or methods, a derivative of the
        wrong shape, and trainable variables ``f`` reads that ``variables`` omits.
    TypeError
        If ``f`` reads a tensor of an enclosing graph instead of taking it through ``args``, or
        fails on a time of another dtype than ``y`` (cast ``t`` inside ``f``).
    """
    options = tf_options(rtol, atol, method, adjoint, checkpoints, adjoint_method, adjoint_rtol, adjoint_atol,
                         adjoint_seminorm, adjoint_normalize=adjoint_normalize)
    y0 = _state(y0)
    t = _times(t)
    args = tuple(tf.convert_to_tensor(a) for a in args)
    eager = tf.executing_eagerly()
    if eager:
        as_real_array("y0", y0.numpy())
    t = _check_times(t)
    dynamics = make_dynamics(f, y0, t.dtype, args, options, variables, jit_compile, device)
    k = options.adjoint.checkpoints
    t64 = tf.cast(t, tf.float64)
    times = refine_times(t64, k, TFOps) if k else t64
    s0 = tf.reshape(y0, [-1])
    ys = solve_eager(s0, times, dynamics) if eager else solve_graph(s0, times, dynamics, tf.shape(y0))
    if k:
        ys = ys[:: k + 1]
    ys = tf.reshape(ys, tf.concat([[-1], tf.shape(y0)], 0))
    ys.set_shape(t.shape.concatenate(y0.shape))
    return (ys, dynamics.info) if full_output else ys
