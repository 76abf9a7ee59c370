"""Runge-Kutta solvers written in TensorFlow, differentiated by backpropagation through their steps.

These drive the RK-Net of Table 1: the same dynamics as the ODE-Net, but the gradient is
ordinary reverse-mode differentiation through every stage of the solver instead of the
adjoint, so the memory of a training step grows with the number of dynamics evaluations
(the paper's O(L~)).

* :func:`rk4`: classical fourth-order Runge-Kutta with a fixed number of equal steps,
  unrolled in Python (``4 * steps`` evaluations).
* :func:`dopri5`: adaptive Dormand-Prince 5(4) (Dormand & Prince 1980; Hairer, Norsett &
  Wanner, *Solving ODEs I*, Sec. II.4-5), the default solver of torchdiffeq and of the
  paper's experiments.  FSAL (the last stage of an accepted step is the first of the next),
  fifth-order solution, embedded fourth-order error estimate, error ratio
  ``RMS(err / (atol + rtol * max(|y0|, |y1|)))`` over all elements of the state (the whole
  batch shares one step size, as in torchdiffeq's ``odenet_mnist.py``), step-size control
  ``dt * clip(safety * ratio**(-1/5), dfactor, ifactor)`` (an accepted step never shrinks
  the next one), Hairer's initial step, and the last step clipped so that ``t1`` is hit
  exactly.  The loop is a :func:`tf.while_loop`: it runs as a Python loop eagerly and as a
  graph loop inside :func:`tf.function`, where TensorFlow's gradient of the loop keeps the
  intermediates of every iteration.

Gradients.  The step sizes are held constant under differentiation (``tf.stop_gradient`` on
the controller's output): the gradient is that of the discrete solution on the mesh the
solver chose, which converges to the gradient of the exact flow as the tolerance falls.  This
is what diffrax does; differentiating the controller as well would add the sensitivity of the
mesh, a discretisation artefact, and a backward pass through the error estimates.  Rejected
steps leave the state unchanged (``tf.where``); their stages are still recorded, so the
memory and the backward work follow the total number of evaluations, accepted or not.

Cost.  ``nfe = 2 + 6 * (accepted + rejected)``: one evaluation at ``(t0, y0)`` (also the
first stage), one more for the initial step size, and six per attempted step.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

Dynamics = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
"""``f(t, y) -> dy/dt`` with ``t`` a scalar tensor of ``y``'s dtype."""

# Dormand-Prince 5(4) tableau.  Row ``i`` of ``_A`` holds the coefficients of stage ``i + 1``
# (stage 0 is ``f(t, y)``); ``_B`` is the fifth-order solution (equal to the last row of
# ``_A``, hence FSAL) and ``_E = _B - b*`` the difference to the embedded fourth-order one.
_C = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = _A[-1]
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
ORDER = 5
"""Order of the dopri5 solution; the step-size exponent is ``1 / ORDER`` (error of order 4)."""


class Dopri5Stats(NamedTuple):
    """Work done by one :func:`dopri5` call (``int32`` scalar tensors).

    Attributes
    ----------
    nfe : tf.Tensor
        Evaluations of the dynamics, ``2 + 6 * (accepted + rejected)``.
    accepted, rejected : tf.Tensor
        Steps accepted and rejected by the error control.
    """

    nfe: tf.Tensor
    accepted: tf.Tensor
    rejected: tf.Tensor


def rms_norm(x: tf.Tensor) -> tf.Tensor:
    """Root mean square over all elements, torchdiffeq's default error norm.

    Parameters
    ----------
    x : tf.Tensor
        Any shape.

    Returns
    -------
    tf.Tensor
        Scalar of ``x``'s dtype.
    """
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


def _weighted_sum(coefficients: tuple[float, ...], ks: list[tf.Tensor]) -> tf.Tensor:
    """``sum_j coefficients[j] * ks[j]``, skipping zero coefficients."""
    terms = [c * k for c, k in zip(coefficients, ks) if c != 0.0]
    return tf.add_n(terms)


def rk4(func: Dynamics, y0: tf.Tensor, t0: float, t1: float, steps: int) -> tf.Tensor:
    """Classical RK4 with ``steps`` equal steps from ``t0`` to ``t1``.

    Parameters
    ----------
    func : callable
        Dynamics ``f(t, y)``.
    y0 : tf.Tensor
        Initial state, any shape, floating dtype.
    t0, t1 : float
        Integration interval.
    steps : int
        Number of steps (``4 * steps`` evaluations of ``func``).

    Returns
    -------
    tf.Tensor
        The state at ``t1``.

    Raises
    ------
    ValueError
        If ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"rk4 needs at least one step, got steps={steps}")
    dt = (t1 - t0) / steps
    h = y0
    for i in range(steps):
        t = tf.constant(t0 + i * dt, dtype=y0.dtype)
        k1 = func(t, h)
        k2 = func(t + dt / 2, h + (dt / 2) * k1)
        k3 = func(t + dt / 2, h + (dt / 2) * k2)
        k4 = func(t + dt, h + dt * k3)
        h = h + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return h


def initial_step(
    func: Dynamics, t0: tf.Tensor, y0: tf.Tensor, f0: tf.Tensor, rtol: float, atol: float, order: int = ORDER
) -> tf.Tensor:
    """Hairer's empirical first step size (*Solving ODEs I*, Sec. II.4; torchdiffeq's choice).

    With ``s = atol + rtol * |y0|``, ``d0 = ||y0 / s||``, ``d1 = ||f0 / s||``:
    ``h0 = 0.01 d0 / d1`` (``1e-6`` if either is below ``1e-5``), one explicit Euler step
    ``y0 + h0 f0``, ``d2 = ||(f(t0 + h0, y0 + h0 f0) - f0) / s|| / h0`` and
    ``h1 = (0.01 / max(d1, d2)) ** (1 / order)`` (``max(1e-6, 1e-3 h0)`` if both are below
    ``1e-15``); the result is ``min(100 h0, h1)``.  Costs one evaluation of ``func``.

    Parameters
    ----------
    func : callable
        Dynamics ``f(t, y)``.
    t0 : tf.Tensor
        Initial time (scalar of ``y0``'s dtype).
    y0, f0 : tf.Tensor
        Initial state and ``func(t0, y0)``.
    rtol, atol : float
        Tolerances.
    order : int
        Order of the local error estimate plus one (5 for dopri5).

    Returns
    -------
    tf.Tensor
        Positive scalar, held constant under differentiation.
    """
    dtype = y0.dtype
    y0 = tf.stop_gradient(y0)
    f0 = tf.stop_gradient(f0)
    scale = atol + rtol * tf.abs(y0)
    d0 = rms_norm(y0 / scale)
    d1 = rms_norm(f0 / scale)
    small = tf.logical_or(d0 < 1e-5, d1 < 1e-5)
    h0 = tf.where(small, tf.constant(1e-6, dtype), 0.01 * d0 / tf.where(small, tf.ones_like(d1), d1))
    f1 = tf.stop_gradient(func(t0 + h0, y0 + h0 * f0))
    d2 = rms_norm((f1 - f0) / scale) / h0
    dmax = tf.maximum(d1, d2)
    tiny = dmax <= 1e-15
    h1 = tf.where(
        tiny,
        tf.maximum(tf.constant(1e-6, dtype), 1e-3 * h0),
        (0.01 / tf.where(tiny, tf.ones_like(dmax), dmax)) ** (1.0 / order),
    )
    return tf.stop_gradient(tf.minimum(100.0 * h0, h1))


def dopri5(
    func: Dynamics,
    y0: tf.Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    max_steps: int = 1000,
    safety: float = 0.9,
    ifactor: float = 10.0,
    dfactor: float = 0.2,
) -> tuple[tf.Tensor, Dopri5Stats]:
    """Integrate ``dy/dt = func(t, y)`` from ``t0`` to ``t1`` with adaptive Dormand-Prince 5(4).

    Works eagerly and inside :func:`tf.function`; reverse-mode gradients (with respect to
    ``y0`` and to any variable ``func`` reads) go through every stage of every step, with the
    step sizes held constant (see the module notes).

    Parameters
    ----------
    func : callable
        Dynamics ``f(t, y)``, returning a tensor of ``y``'s shape and dtype.
    y0 : tf.Tensor
        Initial state, any shape (a leading batch dimension may be unknown), floating dtype.
    t0, t1 : float
        Integration interval, ``t1 > t0``.
    rtol, atol : float
        Relative and absolute tolerance of the error control.
    max_steps : int
        Most steps attempted (accepted plus rejected) before giving up.
    safety, ifactor, dfactor : float
        Step-size control: the next step is ``dt * clip(safety * ratio**(-1/5), dfactor,
        ifactor)``, with ``dfactor`` replaced by 1 after an accepted step; a non-finite error
        ratio rejects the step and shrinks it by ``dfactor``.

    Returns
    -------
    y1 : tf.Tensor
        The state at ``t1``.
    stats : Dopri5Stats
        Evaluations and steps taken.

    Raises
    ------
    ValueError
        If ``t1 <= t0``, a tolerance is not positive, ``max_steps < 1`` or the control factors
        are out of range.
    tf.errors.InvalidArgumentError
        When the solve stops before ``t1``: ``max_steps`` steps attempted, the step size
        underflowed, or the initial state or derivative is not finite.  The message names the
        time reached; loosen the tolerances, raise ``max_steps`` or check the dynamics.
    """
    if not t1 > t0:
        raise ValueError(f"dopri5 integrates forward in time: need t1 > t0, got t0={t0}, t1={t1}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"dopri5 needs positive tolerances, got rtol={rtol}, atol={atol}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if not (0 < safety <= 1 and ifactor > 1 and 0 < dfactor < 1):
        raise ValueError(
            f"need 0 < safety <= 1, ifactor > 1 and 0 < dfactor < 1; got {safety}, {ifactor}, {dfactor}"
        )
    y0 = tf.convert_to_tensor(y0)
    dtype = y0.dtype
    t_start = tf.constant(t0, dtype)
    t_end = tf.constant(t1, dtype)
    f0 = func(t_start, y0)
    dt0 = tf.minimum(initial_step(func, t_start, y0, f0, rtol, atol), t_end - t_start)
    finite = tf.logical_and(tf.math.is_finite(rms_norm(y0)), tf.math.is_finite(rms_norm(f0)))
    zero = tf.constant(0, tf.int32)

    def running(t, y, k1, dt, accepted, rejected):
        del y, k1, accepted, rejected
        return (t < t_end) & (t + tf.minimum(dt, t_end - t) > t) & finite

    def attempt(t, y, k1, dt, accepted, rejected):
        step = tf.minimum(dt, t_end - t)
        ks = [k1]
        for c, a in zip(_C, _A):
            ks.append(func(t + c * step, y + step * _weighted_sum(a, ks)))
        y_new = y + step * _weighted_sum(_B, ks)
        error = step * _weighted_sum(_E, ks)
        y_ref, y_new_ref = tf.stop_gradient(y), tf.stop_gradient(y_new)
        ratio = rms_norm(tf.stop_gradient(error) / (atol + rtol * tf.maximum(tf.abs(y_ref), tf.abs(y_new_ref))))
        accept = ratio <= 1.0
        ratio = tf.where(tf.math.is_finite(ratio), ratio, tf.constant(float("inf"), dtype))
        grow = tf.where(ratio > 0, safety * ratio ** (-1.0 / ORDER), tf.constant(ifactor, dtype))
        lower = tf.where(accept, tf.ones((), dtype), tf.constant(dfactor, dtype))
        dt_next = tf.stop_gradient(step * tf.clip_by_value(grow, lower, ifactor))
        t_next = tf.where(accept, tf.where(dt >= t_end - t, t_end, t + step), t)
        return (
            t_next,
            tf.where(accept, y_new, y),
            tf.where(accept, ks[-1], k1),
            dt_next,
            accepted + tf.cast(accept, tf.int32),
            rejected + tf.cast(tf.logical_not(accept), tf.int32),
        )

    t_final, y1, _, _, accepted, rejected = tf.while_loop(
        running, attempt, (t_start, y0, f0, dt0, zero, zero), maximum_iterations=max_steps
    )
    check = tf.debugging.Assert(
        t_final >= t_end,
        [
            f"dopri5 stopped before t1={t1} (rtol={rtol}, atol={atol}): {max_steps} steps attempted "
            "(max_steps), a step-size underflow, or a non-finite initial state or derivative. "
            "Loosen the tolerances, raise max_steps, or check the dynamics. Reached t, accepted, rejected:",
            t_final,
            accepted,
            rejected,
        ],
    )
    with tf.control_dependencies([check]):
        y1 = tf.identity(y1)
    return y1, Dopri5Stats(2 + 6 * (accepted + rejected), accepted, rejected)
