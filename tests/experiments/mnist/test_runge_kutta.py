"""The TensorFlow Runge-Kutta solvers of the RK-Net (experiments.mnist.runge_kutta) against exact solutions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.integrate import solve_ivp

from experiments.mnist.runge_kutta import dopri5, rk4
from odegrad.gradcheck import central_differences
from odegrad.gradcheck.problems import linear_gradients, linear_solution
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, TOL

ROTATION = np.array([[-0.5, 2.0], [-2.0, -0.5]])
"""A damped rotation: eigenvalues -0.5 +- 2i, solutions of size ~1 on [0, 1]."""
STIFF = np.array([[-50.0, 1.0], [0.0, -1.0]])
"""Fast and slow decay: dopri5 hits its stability limit and rejects steps."""
Y0 = np.array([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.2]])
"""Three initial states (rows) integrated together, as a batch."""
WEIGHTS = np.array([[0.3, -1.0], [2.0, 0.5], [-0.7, 1.1]])


def linear(matrix: tf.Variable | np.ndarray):
    """``dy/dt = A y`` for row-vector states ``y`` (a batch of rows)."""
    return lambda t, y: tf.matmul(y, matrix, transpose_b=True)


def exact(matrix: np.ndarray) -> np.ndarray:
    """``y(1)`` of every row of ``Y0``."""
    return np.stack([linear_solution(y0, [0.0, 1.0], matrix)[-1] for y0 in Y0])


def exact_gradients(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``L = sum(W * y(1))``: ``dL/dy0`` (per row) and ``dL/dA`` (summed over rows), exactly."""
    d_y0, d_a = np.zeros_like(Y0), np.zeros_like(matrix)
    for row, (y0, w) in enumerate(zip(Y0, WEIGHTS)):
        g_a, g_y0, _ = linear_gradients(matrix, y0, np.array([0.0, 1.0]), [np.zeros_like(w), w])
        d_y0[row], d_a = g_y0, d_a + g_a
    return d_y0, d_a


def solve_with_gradients(matrix: np.ndarray, tol: float, compiled: bool):
    a = tf.Variable(matrix)
    y0 = tf.constant(Y0)

    def loss_and_grads(y0: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(y0)
            y1, stats = dopri5(linear(a), y0, 0.0, 1.0, rtol=tol, atol=tol)
            loss = tf.reduce_sum(WEIGHTS * y1)
        d_y0, d_a = tape.gradient(loss, [y0, a])
        return y1, d_y0, d_a, stats

    fn = tf.function(loss_and_grads) if compiled else loss_and_grads
    y1, d_y0, d_a, stats = fn(y0)
    return y1.numpy(), d_y0.numpy(), d_a.numpy(), [int(s) for s in stats]


def test_dopri5_error_follows_tolerance() -> None:
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7, 1e-9):
        y1, stats = dopri5(linear(ROTATION), tf.constant(Y0), 0.0, 1.0, rtol=tol, atol=tol)
        errors.append(np.abs(y1.numpy() - exact(ROTATION)).max())
        nfes.append(int(stats.nfe))
        assert errors[-1] < 2 * tol
        assert int(stats.nfe) == 2 + 6 * (int(stats.accepted) + int(stats.rejected))
    assert all(a > 10 * b for a, b in zip(errors, errors[1:]))
    assert all(a < b for a, b in zip(nfes, nfes[1:]))


def test_dopri5_matches_scipy_rk45_work() -> None:
    """SciPy's RK45 is the same method and controller: the same number of evaluations, within a step or two."""
    for tol in (1e-4, 1e-7):
        ref = solve_ivp(lambda t, y: ROTATION @ y, (0.0, 1.0), Y0[0], method="RK45", rtol=tol, atol=tol)
        y1, stats = dopri5(linear(ROTATION), tf.constant(Y0[:1]), 0.0, 1.0, rtol=tol, atol=tol)
        assert abs(int(stats.nfe) - ref.nfev) <= 12
        ours, theirs = np.abs(y1.numpy()[0] - exact(ROTATION)[0]).max(), np.abs(ref.y[:, -1] - exact(ROTATION)[0]).max()
        assert 0.5 < ours / theirs < 2


def test_dopri5_rejects_steps_and_stays_accurate() -> None:
    y1, stats = dopri5(linear(STIFF), tf.constant(Y0), 0.0, 1.0, rtol=1e-3, atol=1e-3)
    assert int(stats.rejected) > 0
    assert np.abs(y1.numpy() - exact(STIFF)).max() < 2e-3


def test_dopri5_hits_t1_and_uses_the_stage_times() -> None:
    """The fifth-order quadrature is exact for ``dy/dt = 5 t^4``: ``y(t1) - y(t0) = t1^5 - t0^5`` to rounding."""
    y0 = tf.constant([0.3, -2.0], tf.float64)
    y1, stats = dopri5(lambda t, y: 5 * t**4 * tf.ones_like(y), y0, 0.2, 1.3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y1.numpy() - y0.numpy(), 1.3**5 - 0.2**5, rtol=0, atol=1e-13)
    assert int(stats.accepted) > 1


@pytest.mark.parametrize("matrix", [ROTATION, STIFF], ids=["rotation", "stiff"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_dopri5_gradients_match_exact_linear_ode(matrix: np.ndarray, compiled: bool) -> None:
    """Backpropagation through every step (rejected ones included) gives ``dL/dy0`` and ``dL/dA`` of the flow."""
    _, d_y0, d_a, stats = solve_with_gradients(matrix, TOL, compiled)
    exact_y0, exact_a = exact_gradients(matrix)
    np.testing.assert_allclose(d_y0, exact_y0, rtol=GRAD_RTOL, atol=GRAD_RTOL * np.abs(exact_y0).max())
    np.testing.assert_allclose(d_a, exact_a, rtol=GRAD_RTOL, atol=GRAD_RTOL * np.abs(exact_a).max())
    if matrix is STIFF:
        assert stats[2] > 0


def test_dopri5_gradient_error_follows_tolerance() -> None:
    exact_y0, exact_a = exact_gradients(ROTATION)
    errors = []
    for tol in (1e-3, 1e-6):
        _, d_y0, d_a, _ = solve_with_gradients(ROTATION, tol, compiled=False)
        errors.append(max(np.abs(d_y0 - exact_y0).max(), np.abs(d_a - exact_a).max()))
    assert errors[0] < 20 * 1e-3 and errors[1] < 20 * 1e-6 and errors[1] < errors[0] / 100


def test_dopri5_compiled_equals_eager() -> None:
    eager = solve_with_gradients(ROTATION, 1e-5, compiled=False)
    graph = solve_with_gradients(ROTATION, 1e-5, compiled=True)
    assert eager[3] == graph[3]
    for a, b in zip(eager[:3], graph[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_dopri5_nonlinear_gradient_matches_finite_differences() -> None:
    """``dy/dt = tanh(y W) + t``: d/dW of ``sum(y(1)^2)`` against central differences of tight solves."""
    w0 = np.random.default_rng(0).normal(size=(2, 2))
    y0 = tf.constant(Y0)

    def loss(w) -> tf.Tensor:
        y1, _ = dopri5(lambda t, y: tf.tanh(tf.matmul(y, w)) + t, y0, 0.0, 1.0, rtol=FD_SOLVE_TOL, atol=FD_SOLVE_TOL)
        return tf.reduce_sum(y1**2)

    w = tf.Variable(w0)
    with tf.GradientTape() as tape:
        value = loss(w)
    grad = tape.gradient(value, w).numpy()
    numeric = central_differences(lambda v: float(loss(tf.constant(v))), w0, **FD)
    np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=FD_RTOL * np.abs(numeric).max())


def test_dopri5_unknown_batch_in_tf_function() -> None:
    fn = tf.function(
        lambda y: dopri5(linear(ROTATION.astype(np.float32)), y, 0.0, 1.0, rtol=1e-4, atol=1e-4)[0],
        input_signature=[tf.TensorSpec((None, 2), tf.float32)],
    )
    out = fn(tf.constant(Y0, tf.float32)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, exact(ROTATION), atol=1e-3)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_dopri5_max_steps_is_an_error(compiled: bool) -> None:
    def solve(y0):
        return dopri5(linear(ROTATION), y0, 0.0, 1.0, rtol=1e-10, atol=1e-10, max_steps=5)[0]

    fn = tf.function(solve) if compiled else solve
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_steps"):
        fn(tf.constant(Y0))


def test_dopri5_non_finite_state_is_an_error() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        dopri5(linear(ROTATION), tf.constant([[np.nan, 1.0]]), 0.0, 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t1": 0.0}, "t1 > t0"),
        ({"rtol": 0.0}, "positive tolerances"),
        ({"max_steps": 0}, "max_steps"),
        ({"dfactor": 1.5}, "dfactor"),
    ],
)
def test_dopri5_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"t0": 0.0, "t1": 1.0, **kwargs}
    t0, t1 = args.pop("t0"), args.pop("t1")
    with pytest.raises(ValueError, match=match):
        dopri5(linear(ROTATION), tf.constant(Y0), t0, t1, **args)


def test_rk4_is_fourth_order_and_rejects_zero_steps() -> None:
    solves = [rk4(linear(ROTATION), tf.constant(Y0), 0.0, 1.0, n).numpy() for n in (4, 8)]
    errors = [np.abs(y1 - exact(ROTATION)).max() for y1 in solves]
    assert 14 < errors[0] / errors[1] < 18
    with pytest.raises(ValueError, match="at least one step"):
        rk4(linear(ROTATION), tf.constant(Y0), 0.0, 1.0, 0)
