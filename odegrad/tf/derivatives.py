"""The derivatives inside the derived dynamics: one VJP or one Jacobian of a flat ``rhs`` per trace.

The backward dynamics (:meth:`odegrad.tf.dynamics.TFDynamics.augmented`, ``adjoint_along``) fuse
``rhs`` with its vector-Jacobian product (:func:`vjp`); the forward-sensitivity dynamics fuse it
with its Jacobian (:func:`jacobian`). Both differentiate with respect to the flat parameters ``θ``
that :class:`odegrad.tf.tracing.Reads` decides, in its order.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from ..augmented import AugmentedLayout
from .tracing import Reads

try:  # TensorFlow's own JVPs (tf.autodiff.ForwardAccumulator) use this to record tapes inside
    from tensorflow.python.eager.forwardprop_util import push_forwardprop_state
except ImportError:  # pragma: no cover - a TensorFlow without it: forward mode is refused
    push_forwardprop_state = None


def _forwardprop_state() -> contextlib.AbstractContextManager:
    """Push the forward accumulators' state, as TensorFlow's own JVPs do.

    A forward accumulator computing the JVP of a solve calls its gradient while it processes the
    solve; a tape traced then records nothing (a zero VJP, cached for ever) unless it is pushed.
    """
    return (push_forwardprop_state or contextlib.nullcontext)()


def _recorded(reads: Reads, rhs: Callable[..., tf.Tensor], y: tf.Tensor, t: tf.Tensor, args: Sequence[tf.Tensor],
              times: list[tf.Tensor], with_params: bool) -> tuple[tf.GradientTape, tf.Tensor, list[Any]]:
    """``(tape, dy, sources)``: ``dy = rhs(y, t, *args)`` recorded by ``tape``, which watches the
    ``sources`` ``[y, *times, variables..., params...]`` (``θ``'s parts in order, with the variables
    this trace read, only ``with_params``)."""
    params = reads.watched(args) if with_params else []
    with _forwardprop_state(), tf.GradientTape() as tape:
        tape.watch([y, *times, *params])
        dy = rhs(y, t, *args)
    variables = reads.variables_read(tape.watched_variables()) if with_params else []
    return tape, dy, [y, *times, *variables, *params]


def vjp(reads: Reads, rhs: Callable[..., tf.Tensor], y: tf.Tensor, t: tf.Tensor, a: tf.Tensor,
        args: Sequence[tf.Tensor], layout: AugmentedLayout) -> tuple[Any, Any, Any, Any]:
    """``(dy, a·∂rhs/∂y, a·∂rhs/∂t, a·∂rhs/∂θ)`` of ``dy = rhs(y, t, *args)``.

    ``θ`` is the flattened :meth:`Reads.params` of ``args``; the parts ``layout`` leaves out are not
    computed (``None``).
    """
    tape, dy, sources = _recorded(reads, rhs, y, t, args, [t] if layout.with_time else [], layout.with_params)
    # The cotangent enters f's own backward pass scaled to order 1 (by a power of two, so
    # exactly): under a Keras mixed-precision policy that pass runs in float16, where the loss
    # scale (2**15) times an adjoint of order 10 overflows.
    scale = _power_of_two_below(a)
    v_y, *rest = tape.gradient(dy, sources, output_gradients=a / scale, unconnected_gradients="zero")
    v_y = v_y * scale
    v_t = tf.reshape(tf.cast(rest.pop(0), a.dtype), [1]) * scale if layout.with_time else None
    v_theta = None
    if layout.with_params:
        flat_theta = [tf.reshape(tf.cast(v, a.dtype), [-1]) for v in rest]
        v_theta = (tf.concat(flat_theta, 0) if flat_theta else tf.zeros([0], a.dtype)) * scale
    return dy, v_y, v_t, v_theta


def jacobian(reads: Reads, rhs: Callable[..., tf.Tensor], y: tf.Tensor, t: tf.Tensor, args: Sequence[tf.Tensor],
             with_params: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """``(dy, ∂rhs/∂y, ∂rhs/∂θ)``, shapes (n,), (n, n), (n, n_params); ``None`` for the last
    without ``with_params``.

    All rows from one trace of ``rhs`` and one reverse pass vectorised over the ``n`` rows
    (``GradientTape.jacobian`` with pfor): the states that take forward sensitivities are small,
    and on tanh MLPs of 2-8 states this was as fast as or faster than ``q`` batched JVPs
    (``tf.vectorized_map`` over ``tf.autodiff.ForwardAccumulator``), whose count grows with the
    parameters.
    """
    tape, dy, sources = _recorded(reads, rhs, y, t, args, [], with_params)
    with _forwardprop_state():
        J_y, *rest = tape.jacobian(dy, sources, unconnected_gradients="zero",
                                   experimental_use_pfor=True)
    J_theta = None
    if with_params:
        n = int(y.shape[0])
        columns = [tf.reshape(tf.cast(j, dy.dtype), [n, -1]) for j in rest]
        J_theta = tf.concat(columns, 1) if columns else tf.zeros([n, 0], dy.dtype)
    return dy, tf.cast(J_y, dy.dtype), J_theta


def _power_of_two_below(a: tf.Tensor) -> tf.Tensor:
    """``2**k <= max|a|`` with ``k`` an integer (1 where ``a`` is 0), a constant to differentiation
    (``s * vjp(a / s)`` equals ``vjp(a)`` whatever ``s``)."""
    peak = tf.stop_gradient(tf.reduce_max(tf.abs(a)))
    exponent = tf.math.floor(tf.math.log(peak) / np.log(2.0))
    return tf.where(peak > 0, tf.pow(tf.constant(2.0, a.dtype), exponent), tf.ones([], a.dtype))
