"""Every built-in gradient method on the TF door, against closed forms.

The matrix: each mode × the four kinds of inputs (``y0``, the output times, a variable, an
argument), on ``y' = s A y`` with ``A`` a variable and ``s`` an argument, whose solution
``expm(s A (t - t0)) y0`` gives every gradient exactly (:func:`odegrad.gradcheck.problems.linear_gradients`,
with ``∂/∂A = s ∂/∂M`` and ``∂/∂s = Σ ∂/∂M ∘ A`` for ``M = s A``). float64 solves at 1e-10 are
compared at ``GRAD_RTOL``; float32 states solved at 1e-6 at 2e-4 (global errors 10-100 times the
local tolerance, :mod:`tests.tolerances`; measured 2e-6 to 3e-5).

Second derivatives (nested tapes) of the forward sensitivities and ``auto`` are compared with the
logistic equation's closed form, and ``auto``'s choice is read from ``info.gradient_methods``.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from odegrad.gradcheck import relative_error
from odegrad.gradcheck.problems import linear_gradients
from tests.tolerances import GRAD_RTOL, TOL

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

MODES = ["checkpoint", "backsolve", "interpolate", "forward", "auto"]
A0 = np.array([[-0.4, 1.0], [-1.0, -0.3]])
S0 = 0.8
Y0 = np.array([1.0, -0.5])
T = np.array([0.0, 0.3, 1.1, 2.0])
W = np.array([[0.5, -1.0], [1.0, 0.2], [-0.3, 0.7], [0.9, 1.1]])


def _exact():
    g_m, g_y0, g_t = linear_gradients(S0 * A0, Y0, T, W)
    return g_y0, g_t, S0 * g_m, float(np.sum(g_m * A0))


def _tf_gradients(mode, dtype, tol):
    A = tf.Variable(A0, dtype=dtype)
    s = tf.constant(S0, dtype)
    y0, t = tf.constant(Y0, dtype), tf.constant(T)

    def f(_, y, s):
        return s * tf.linalg.matvec(A, y)

    with tf.GradientTape() as tape:
        tape.watch([y0, t, s])
        ys, info = otf.odeint(f, y0, t, args=(s,), rtol=tol, atol=tol, adjoint=mode, full_output=True)
        loss = tf.reduce_sum(tf.constant(W, dtype) * ys)
    grads = tape.gradient(loss, [y0, t, A, s])
    assert [g.dtype for g in grads] == [dtype, tf.float64, dtype, dtype]
    return [g.numpy() for g in grads], info


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype, tol, rtol", [(tf.float64, TOL, GRAD_RTOL), (tf.float32, 1e-6, 2e-4)],
                         ids=["float64", "float32"])
def test_every_method_gives_every_gradient(mode, dtype, tol, rtol):
    grads, info = _tf_gradients(mode, dtype, tol)
    for name, got, exact in zip(["y0", "t", "A", "s"], grads, _exact()):
        assert relative_error(got, exact) < rtol, name
    ran = info.gradient_methods
    assert len(ran) == 1 and (ran[0] == mode or mode == "auto"), ran
    assert info.backward.nfe > 0


def _logistic_loss(k_value, y0_value):
    """``Σ (y(1) · w)²`` for ``y' = k y (1 - y)``: ``y(t) = y0 e^{kt} / (1 - y0 + y0 e^{kt})``."""
    e = anp.exp(k_value * 1.0)
    end = y0_value * e / (1.0 - y0_value + y0_value * e)
    return anp.sum((end * np.array([1.0, -2.0])) ** 2)


@pytest.mark.parametrize("mode", ["forward", "auto", "checkpoint"])
def test_second_derivatives_through_nested_tapes(mode):
    k = tf.Variable(1.3, dtype=tf.float64)
    y0 = tf.constant([0.2, 0.7], tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(y0)
        with tf.GradientTape() as inner:
            inner.watch(y0)
            ys, info = otf.odeint(lambda t, y: k * y * (1.0 - y), y0, [0.0, 0.5, 1.0], rtol=TOL, atol=TOL,
                                  adjoint=mode, full_output=True)
            loss = tf.reduce_sum((ys[-1] * tf.constant([1.0, -2.0], tf.float64)) ** 2)
        g_y0 = inner.gradient(loss, y0)
        first = tf.reduce_sum(g_y0 * tf.constant([1.0, 3.0], tf.float64))
    d_y0, d_k = outer.gradient(first, [y0, k])

    def exact_first(p):
        return anp.sum(grad(_logistic_loss, 1)(p[0], p[1:]) * np.array([1.0, 3.0]))

    exact = grad(exact_first)(np.array([1.3, 0.2, 0.7]))
    assert relative_error(d_y0.numpy(), exact[1:]) < 1e-6 and abs(float(d_k) - exact[0]) < 1e-6 * abs(exact[0])
    if mode != "checkpoint":
        assert info.gradient_methods[0] == "forward"


def test_auto_picks_forward_sensitivities_for_a_small_state_with_many_outputs():
    k = tf.Variable(0.7, dtype=tf.float64)
    y0 = tf.constant([1.0, 0.5], tf.float64)
    t = np.linspace(0.0, 2.0, 60)
    with tf.GradientTape() as tape:
        ys, info = otf.odeint(lambda _, y: -k * y, y0, t, rtol=1e-8, atol=1e-8, adjoint="auto", full_output=True)
        loss = tf.reduce_sum(ys)
    g = tape.gradient(loss, k)
    assert info.gradient_methods == ["forward"]
    exact = -np.sum(t * np.exp(-0.7 * t)) * 1.5
    assert float(g) == pytest.approx(exact, rel=1e-6)


def test_auto_picks_the_checkpoint_adjoint_for_a_wide_state():
    k = tf.Variable(0.7, dtype=tf.float64)
    y0 = tf.constant(np.linspace(0.5, 1.5, 3000))
    with tf.GradientTape() as tape:
        ys, info = otf.odeint(lambda _, y: -k * y, y0, [0.0, 1.0], rtol=1e-8, atol=1e-8, adjoint="auto",
                              full_output=True)
        loss = tf.reduce_sum(ys[-1])
    g = tape.gradient(loss, k)
    assert info.gradient_methods == ["checkpoint"]
    assert info.backward.method == "adams"      # 6,002 backward entries after a non-stiff LSODA solve
    assert float(g) == pytest.approx(-np.exp(-0.7) * float(tf.reduce_sum(y0)), rel=1e-6)


def test_forward_sensitivities_serve_every_row_of_a_jacobian():
    """One sensitivity solve for all rows of ``tape.jacobian`` (TensorFlow asks for one cotangent per
    row); the Jacobian of ``y' = s A y`` is ``expm(s A τ)``."""
    import scipy.linalg

    y0 = tf.constant(Y0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y0)
        ys, info = otf.odeint(lambda _, y: S0 * tf.linalg.matvec(tf.constant(A0), y), y0, T, rtol=TOL, atol=TOL,
                              adjoint="forward", full_output=True)
    J = tape.jacobian(ys, y0, experimental_use_pfor=False).numpy()
    exact = np.stack([scipy.linalg.expm(S0 * A0 * (tt - T[0])) for tt in T])
    assert relative_error(J, exact) < GRAD_RTOL
    assert info.gradient_methods == ["forward"]


def test_jacobian_with_pfor_gets_a_clear_error():
    y0 = tf.constant(Y0)
    with tf.GradientTape() as tape:
        tape.watch(y0)
        ys = otf.odeint(lambda _, y: -y, y0, T)
    with pytest.raises(NotImplementedError, match="experimental_use_pfor=False"):
        tape.jacobian(ys, y0)


@pytest.mark.parametrize("mode", ["forward", "auto"])
def test_forward_over_reverse_hessian_vector_product(mode):
    """A ForwardAccumulator around a tape asks for the VJP while the solve is being recorded. The
    Jacobians of the sensitivity dynamics, traced then, were zero (and cached): ``jvp(ys)`` was the
    tangent of ``y0`` at every time."""
    k = tf.Variable(1.3, dtype=tf.float64)
    y0 = tf.constant([0.2, 0.7], tf.float64)
    v = np.array([0.3, -1.1])
    with tf.autodiff.ForwardAccumulator(y0, tf.constant(v)) as acc:
        with tf.GradientTape() as tape:
            tape.watch(y0)
            ys = otf.odeint(lambda t, y: k * y * (1.0 - y), y0, [0.0, 0.5, 1.0], rtol=TOL, atol=TOL, adjoint=mode)
            loss = tf.reduce_sum((ys[-1] * tf.constant([1.0, -2.0], tf.float64)) ** 2)
        g_y0 = tape.gradient(loss, y0)
    hvp = acc.jvp(g_y0).numpy()
    exact = grad(lambda p: anp.sum(grad(_logistic_loss, 1)(1.3, p) * v))(np.array([0.2, 0.7]))
    assert relative_error(hvp, exact) < 1e-6


def test_methods_run_inside_a_tf_function():
    """First derivatives in a graph: the forward solve's statistics reach ``auto`` through the graph."""
    k = tf.Variable(0.7, dtype=tf.float64)
    y0 = tf.constant([1.0, 0.5], tf.float64)
    t = np.linspace(0.0, 2.0, 30)
    infos = {}

    @tf.function
    def gradient(mode):
        with tf.GradientTape() as tape:
            ys, infos[mode] = otf.odeint(lambda _, y: -k * y, y0, t, rtol=1e-8, atol=1e-8, adjoint=mode,
                                         full_output=True)
            loss = tf.reduce_sum(ys)
        return tape.gradient(loss, k)

    exact = -np.sum(t * np.exp(-0.7 * t)) * 1.5
    for mode in ("forward", "auto", "checkpoint"):
        assert float(gradient(mode)) == pytest.approx(exact, rel=1e-6)
        assert infos[mode].gradient_methods == ["checkpoint" if mode == "checkpoint" else "forward"]
        assert infos[mode].forward.nfe > 0


def test_odeblock_takes_forward_sensitivities_in_keras():
    """``ODEBlock(adjoint="forward")`` in a compiled Keras step (the graph path) against the default
    checkpoint adjoint at tighter tolerances; float32 at 1e-6, compared at 1e-3 of the largest entry."""
    from tests.tf.test_tf import SmallDynamics

    def model(**options):
        tf.keras.utils.set_random_seed(3)
        return tf.keras.Sequential([tf.keras.Input((2,)), otf.ODEBlock(SmallDynamics(), **options),
                                    tf.keras.layers.Dense(1)])

    x = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    forward = model(rtol=1e-6, atol=1e-6, adjoint="forward")
    reference = model(rtol=1e-9, atol=1e-9)

    @tf.function
    def gradients(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(forward(inputs) ** 2)
        return tape.gradient(loss, forward.trainable_variables)

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(reference(x) ** 2)
    for got, exact in zip(gradients(tf.constant(x)), tape.gradient(loss, reference.trainable_variables)):
        np.testing.assert_allclose(got.numpy(), exact.numpy(), rtol=0, atol=1e-3 * float(np.abs(exact).max()))
    forward.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    history = forward.fit(x, x[:, :1], batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and forward.layers[0].nfe_backward > 0
