"""The TensorFlow front door: ``odeint`` for dynamics written in TensorFlow."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from .. import solvers
from ..options import AdjointOptions, adjoint_options
from ..stats import SolveInfo, new_info
from ..validation import as_real_array, check_method, check_times, tolerance
from .backend import TFCallable, TFDynamics, cache_of, discover_variables, flatten_dynamics, solve_eager, solve_graph


def _check_supported(options: AdjointOptions) -> AdjointOptions:
    """Reject the adjoint options the TensorFlow door does not implement, naming them.

    ``"auto"`` resolves to the checkpoint adjoint, the best this door has.
    """
    if options.mode == "forward":
        raise ValueError(
            "adjoint='forward' (forward sensitivities) is not available in odegrad.tf.odeint; "
            "use adjoint='checkpoint', or odegrad.odeint"
        )
    if options.mode == "auto":
        options = dataclasses.replace(options, mode="checkpoint")
    if options.mode == "interpolate":
        raise ValueError(
            "adjoint='interpolate' is not available in odegrad.tf.odeint (it needs a dense "
            "forward solve of TF dynamics); use adjoint='checkpoint', or odegrad.odeint"
        )
    if options.checkpoints:
        raise ValueError("checkpoints is not available in odegrad.tf.odeint; use adjoint='checkpoint'")
    if options.jacobian:
        raise ValueError(
            "adjoint_jacobian=True is not available in odegrad.tf.odeint (an exact Jacobian of TF "
            "dynamics of this size would not fit); leave adjoint_jacobian unset"
        )
    return options


def odeint(
    f: TFCallable,
    y0: Any,
    t: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    method: str = "lsoda",
    adjoint: str | AdjointOptions = "checkpoint",
    adjoint_method: str | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_seminorm: bool = False,
    variables: Sequence[tf.Variable] | None = None,
    jit_compile: bool = False,
    full_output: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, SolveInfo]:
    """Integrate ``dy/dt = f(t, y)`` for TensorFlow dynamics; differentiable by the adjoint.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt``: a TensorFlow function, Keras layer or ``tf.Module``; ``t`` is a
        scalar tensor and ``y`` has ``y0``'s shape and dtype.
    y0 : tf.Tensor or array_like
        Initial state, any shape (e.g. a batch of feature maps), float32 or float64.
    t : tf.Tensor or array_like, shape (T,)
        Strictly monotonic output times.
    rtol, atol : float, optional
        Tolerances of the forward solve (default 1.49012e-8, as scipy's odeint).
    method : {"lsoda", "adams", "bdf"}, optional
        The scipy back-end; ``"adams"`` is the paper's implicit Adams (VODE).
    adjoint : {"checkpoint", "backsolve", "auto"} or AdjointOptions, optional
        As in :func:`odegrad.odeint` (``"interpolate"``, ``"forward"``, ``checkpoints`` and
        ``adjoint_jacobian`` are autograd-only; ``"auto"`` is ``"checkpoint"`` here).
    adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm
        As in :func:`odegrad.odeint`.
    variables : sequence of tf.Variable, optional
        The trainable variables ``f`` reads. Default: every trainable variable ``f`` reads when
        called once at ``(t[0], y0)``.
    jit_compile : bool, optional
        Compile the evaluations the solver makes (``f``, and ``f`` fused with its VJP for the
        backward solves) with XLA. Default ``False``: a plain ``tf.function`` graph, no compile
        latency and any TF op. XLA pays off when evaluations are expensive and many (the Table 1
        block: about 40% less CPU time per evaluation, ``python -m benchmarks.tf_block``) and
        costs seconds of compilation per new state shape.
    full_output : bool, optional
        Also return the call's :class:`odegrad.SolveInfo` (backward statistics are filled in
        when a gradient is taken).

    Returns
    -------
    ys : tf.Tensor, shape (T,) + y0.shape
        The states at ``t``. Differentiable with ``tf.GradientTape`` with respect to ``y0``,
        ``t`` and ``variables``; memory does not grow with the number of solver steps. Nested
        tapes give second derivatives in eager mode.

    Raises
    ------
    ValueError
        For bad times, states, tolerances or methods, and for adjoint options this door does
        not implement.
    """
    check_method("method", method)
    options = adjoint_options(adjoint, adjoint_method=adjoint_method, adjoint_rtol=adjoint_rtol,
                              adjoint_atol=adjoint_atol, adjoint_seminorm=adjoint_seminorm)
    options = _check_supported(options)
    y0 = tf.convert_to_tensor(y0)
    if not y0.dtype.is_floating:
        y0 = tf.cast(y0, tf.float32)
    t = tf.cast(tf.convert_to_tensor(t), y0.dtype)
    eager = tf.executing_eagerly()
    if eager:
        as_real_array("y0", y0.numpy())
        check_times(as_real_array("t", t.numpy()))
    shape = y0.shape
    if variables is None:
        variables = discover_variables(f, t[0], y0)

    n = int(np.prod(shape))
    opts = solvers.SolverOptions(method=method, rtol=tolerance("rtol", rtol, ()),
                                 atol=tolerance("atol", atol, ()))
    backward_opts = options.backward_solver(opts, ())
    dynamics = TFDynamics(
        flat_f=flatten_dynamics(f, shape), n=n, dtype=y0.dtype, variables=tuple(variables), opts=opts,
        backward_opts=backward_opts, adjoint=options, info=new_info(method, backward_opts.method),
        compiled=cache_of(f), jit_compile=bool(jit_compile),
        key=(tuple(shape), y0.dtype.name, tuple(id(v) for v in variables)),
    )
    solve = solve_eager if eager else solve_graph
    ys = tf.reshape(solve(tf.reshape(y0, [-1]), t, dynamics), tf.concat([[-1], tf.shape(y0)], 0))
    return (ys, dynamics.info) if full_output else ys
