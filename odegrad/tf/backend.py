"""The differentiable TensorFlow solve: the forward solve as one op, its gradient by a registered method.

A host-side scipy solver does the stepping (:meth:`odegrad.tf.dynamics.TFDynamics.solve_numpy`);
each of its evaluations is one call of a compiled computation (:mod:`odegrad.tf.compile`). The
gradient is the registered gradient method that ``adjoint=`` names (:mod:`odegrad.methods`, the
same objects as on the autograd door) given a :class:`odegrad.methods.GradientRequest` of
:class:`odegrad.tf.ops.TFOps`, a :class:`odegrad.tf.dynamics.TFDynamics` and :func:`solve_eager`:
eagerly through ``tf.custom_gradient`` (:func:`solve_eager`, differentiable again), or inside a
``tf.function`` through ``tf.py_function`` (:func:`solve_graph`, first derivatives).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from .. import methods, solvers
from ..methods import Gradient, GradientRequest, Wrt
from ..methods.base import Vjp
from .derivatives import push_forwardprop_state
from .dynamics import TFDynamics
from .ops import TFOps

try:  # whether a tape or accumulator records: a gradient being computed is then differentiated again
    from tensorflow.python.eager.record import could_possibly_record
except ImportError:  # pragma: no cover - a TensorFlow without it: every gradient counts as higher order
    could_possibly_record = None


def _recording() -> bool:
    """Whether a tape or forward accumulator may record the gradient being computed (it is then
    differentiated again); ``True`` where TensorFlow cannot tell."""
    return True if could_possibly_record is None else bool(could_possibly_record())


def gradient_request(ys: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics,
                     stats: solvers.SolveStats | None, higher_order: bool) -> GradientRequest:
    """The :class:`odegrad.methods.GradientRequest` of one differentiated solve on this door.

    Every input is differentiated (a ``tf.custom_gradient`` cannot tell which the caller wants);
    ``params`` is the flat parameter vector in the order of :attr:`TFDynamics.params`, in the
    state's dtype.

    Parameters
    ----------
    ys : tf.Tensor, shape (T, n)
        The solve's output (the recorded one, where it exists, so that the VJP differentiates again).
    s0 : tf.Tensor, shape (n,)
    times : tf.Tensor, shape (T,), float64
    dynamics : TFDynamics
        The dynamics that was solved.
    stats : SolveStats or None
        The statistics of that solve.
    higher_order : bool
        Whether a tape or forward accumulator may record the VJP (:func:`_recording`).

    Returns
    -------
    GradientRequest
    """
    flat = [tf.reshape(tf.cast(p, s0.dtype), [-1]) for p in dynamics.param_tensors()]
    return GradientRequest(
        ys=ys, y0=s0, t=times, dynamics=dynamics, solve=solve_eager, ops=TFOps, options=dynamics.adjoint,
        forward_opts=dynamics.opts, backward_opts=dynamics.backward_opts, stats=stats, info=dynamics.info,
        wrt=Wrt(), door="tensorflow", higher_order=higher_order, derived=dynamics.stage == "backward",
        resolve=dynamics.resolve, params=tf.concat(flat, 0) if flat else tf.zeros([0], s0.dtype),
        traced=lambda _: higher_order,
    )


def _vjp(ys: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics, stats: solvers.SolveStats | None,
         higher_order: bool) -> Vjp:
    """The VJP of one solve by the registered method ``dynamics.adjoint.mode``.

    TensorFlow only tells that a tape or accumulator *may* record the gradient (``higher_order``),
    not that it will be differentiated: a method that refuses higher derivatives
    (:meth:`odegrad.methods.GradientMethod.check_request`) then gives its first derivatives, and
    differentiating them raises its refusal.
    """
    method = methods.get(dynamics.adjoint.mode)
    method.check(dynamics.adjoint, "tensorflow")
    request = gradient_request(ys, s0, times, dynamics, stats, higher_order)
    try:
        method.check_request(request)
    except NotImplementedError as exc:
        if not higher_order:
            raise
        refusal = exc
    else:
        return method.vjp(request)
    first_order = method.vjp(dataclasses.replace(request, higher_order=False, traced=lambda _: False))
    return lambda g: _refused_beyond(first_order(g), refusal, (g, request.ys, s0, times, request.params))


def _refused_beyond(gradient: Gradient, refusal: NotImplementedError, inputs: Sequence[tf.Tensor]) -> Gradient:
    """``gradient`` with each part an identity whose own gradient raises ``refusal``.

    The identities also take the solve's ``inputs``, so that a tape recording any of them records
    the identities, even where a part is a constant (a method that re-solves on the host).
    """
    @tf.custom_gradient
    def refuse(x, *_):
        def grad(*__):
            raise NotImplementedError(str(refusal)) from refusal

        return tf.identity(x), grad

    return dataclasses.replace(gradient, **{part: None if getattr(gradient, part) is None else
                                            refuse(getattr(gradient, part), *inputs) for part in ("y0", "t", "params")})


def _gradients(vjp: Vjp, g: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> list[tf.Tensor]:
    """``[∂L/∂s0, ∂L/∂times, ∂L/∂params...]`` for the cotangent ``g``, by ``vjp``."""
    gradient = vjp(g)
    if gradient.ran:
        dynamics.info.gradient_methods.append(gradient.method)
    return ([tf.cast(gradient.y0, s0.dtype), tf.cast(gradient.t, times.dtype)]
            + dynamics.split_params(gradient.params))


def solve_eager(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> tf.Tensor:
    """Differentiable solve in eager mode; its gradient is again differentiable.

    ``times`` is float64 (the solver's times stay on the host in float64). The VJP is made once per
    solve and kind of request and serves every cotangent (``tape.jacobian`` asks for one per row),
    so a method may keep work across them (one forward-sensitivity solve for all rows).
    """
    holder: dict[Any, Any] = {}

    @tf.custom_gradient
    def op(s0, times, *params):
        solution, stats = dynamics.solve_numpy(TFOps.value(s0), TFOps.value(times))
        ys = tf.constant(solution, dtype=s0.dtype)

        def grad(g, variables=None):
            if not tf.executing_eagerly():
                raise NotImplementedError(
                    "the gradient of odegrad.tf.odeint (called eagerly) is being traced into a graph, as "
                    "tape.jacobian and tape.batch_jacobian do by default: its solves run on the host, one per "
                    "cotangent; pass experimental_use_pfor=False to them")
            # The adjoint reads the op's recorded output, so that differentiating this gradient
            # again goes through the op. Forward mode (tf.autodiff.ForwardAccumulator) asks for
            # the gradient while the op is being recorded, before that output exists, and
            # differentiates it by ``g`` alone: the unrecorded states serve it.
            if "ys" not in holder and push_forwardprop_state is None:  # pragma: no cover
                raise NotImplementedError("forward mode (tf.autodiff.ForwardAccumulator) over odegrad.tf.odeint "
                                          "needs TensorFlow's forwardprop_util, missing from this version; "
                                          "use reverse mode (tf.GradientTape)")
            key = (_recording(), "ys" in holder)
            if key not in holder:
                holder[key] = _vjp(holder.get("ys", ys), s0, times, dynamics, stats, higher_order=key[0])
            return _gradients(holder[key], g, s0, times, dynamics), [None] * len(variables or [])

        return ys, grad

    ys = op(s0, times, *dynamics.param_tensors())
    holder["ys"] = ys
    return ys


def _no_second_derivatives(*_: Any, **__: Any) -> Any:
    raise NotImplementedError(
        "odegrad.tf.odeint inside a tf.function gives first derivatives by reverse mode only (its "
        "adjoint runs eagerly inside tf.py_function, which TensorFlow cannot differentiate again): "
        "nested GradientTapes (second derivatives, Hessian-vector products) and "
        "tf.autodiff.ForwardAccumulator (forward mode) are not supported there. Compute them in eager "
        "mode, outside the tf.function, where both work (with adjoint='checkpoint', 'backsolve', 'forward' or "
        "'auto'); "
        "or use the autograd door, odegrad.odeint."
    )


_COUNTS = ("nfe", "nst", "nje", "nsolves", "method_switches")
"""The counts of a forward solve's :class:`odegrad.solvers.SolveStats` a graph passes to its gradient."""


def solve_graph(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics, shape: tf.Tensor) -> tf.Tensor:
    """Solve inside a ``tf.function`` (e.g. ``model.fit``): eager solves bridged by py_function.

    ``shape`` is the run-time shape of the state (its batch dimension may be unknown while
    tracing): each execution specialises ``dynamics`` to it and to the run-time ``args``. The
    graph runs the solve of one traced ``odeint`` call at every execution, so each forward
    execution restarts the call's statistics. First derivatives only: the backward pass runs the
    eager adjoint inside ``tf.py_function``, and differentiating it again (nested tapes, forward
    mode) raises ``NotImplementedError``.
    """
    params = dynamics.param_tensors()
    args = list(dynamics.args)
    n_args = len(args)

    @tf.custom_gradient
    def op(s0, times, *params):
        def forward(s0, times, shape, *args):
            concrete = dynamics.specialize(shape.numpy(), args)
            dynamics.info.restart()
            ys, stats = concrete.solve_numpy(TFOps.value(s0), TFOps.value(times))
            return ys.astype(s0.dtype.as_numpy_dtype), np.array([getattr(stats, k) for k in _COUNTS], np.int64)

        ys, counts = tf.py_function(forward, [s0, times, shape, *args], Tout=[s0.dtype, tf.int64])
        ys.set_shape([times.shape[0], s0.shape[0]])

        @tf.custom_gradient
        def first_derivatives(g, s0, times, *params):
            def eager_backward(g, ys, s0, times, counts, shape, *args):
                concrete = dynamics.specialize(shape.numpy(), args[:n_args])
                stats = solvers.SolveStats(concrete.opts.method, **dict(zip(_COUNTS, counts.numpy().tolist())))
                vjp = _vjp(ys, s0, times, concrete, stats, higher_order=False)
                return _gradients(vjp, g, s0, times, concrete)

            tout = [s0.dtype, times.dtype] + [p.dtype for p in params]
            grads = tf.py_function(eager_backward, [g, ys, s0, times, counts, shape, *args], Tout=tout)
            for tensor, like in zip(grads, [s0, times, *params]):
                tensor.set_shape(like.shape)
            return grads, _no_second_derivatives

        def grad(g, variables=None):
            return first_derivatives(g, s0, times, *params), [None] * len(variables or [])

        return ys, grad

    return op(s0, times, *params)
