"""Values ``f`` reads besides ``y`` and ``t`` are never frozen by the cache of compiled dynamics.

Every kind of capture changes between two ``odeint`` calls on the same ``f`` (so that a cache
keyed on shapes, dtypes and variables would reuse the first trace); the second call must agree
with the closed form ``y(1) = y0 exp(k)`` of ``y' = k y`` for the new value, and so must its
gradient. Before the fix each of these returned the first call's answer.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

TOL = 1e-10
Y0 = np.array([1.0, 2.0])


def _end(f, **kwargs):
    return otf.odeint(f, tf.constant(Y0), [0.0, 1.0], rtol=TOL, atol=TOL, **kwargs)[-1].numpy()


def _assert_rate(f, k, **kwargs):
    np.testing.assert_allclose(_end(f, **kwargs), Y0 * np.exp(k), rtol=1e-8)


def test_rebound_enclosing_tensor():
    rate = tf.constant(-1.0, tf.float64)

    def f(t, y):
        return rate * y

    _assert_rate(f, -1.0)
    rate = tf.constant(-3.0, tf.float64)  # noqa: F841 - read by f through its closure
    _assert_rate(f, -3.0)


def test_python_attribute_of_a_layer():
    class Decay(tf.keras.layers.Layer):
        def __init__(self):
            super().__init__(dtype="float64")
            self.k = -1.0

        def call(self, t, y):
            return self.k * y

    layer = Decay()
    _assert_rate(layer, -1.0)
    layer.k = -3.0
    _assert_rate(layer, -3.0)


def test_numpy_array_mutated_in_place():
    rates = np.array([-1.0, -1.0])

    def f(t, y):
        return rates * y

    _assert_rate(f, -1.0)
    rates[:] = -3.0
    _assert_rate(f, -3.0)


def test_conditioning_tensor_gets_its_gradient_in_eager_mode():
    """A captured eager tensor is differentiated like a variable (was: silently no gradient)."""
    context = tf.constant(-0.5, tf.float64)

    def f(t, y):
        return context * y

    for value in (-0.5, -2.0):
        context = tf.constant(value, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(context)
            end = otf.odeint(f, tf.constant(Y0), [0.0, 1.0], rtol=TOL, atol=TOL)[-1]
            loss = tf.reduce_sum(end)
        np.testing.assert_allclose(end.numpy(), Y0 * np.exp(value), rtol=1e-8)
        # d/dk sum(y0 e^k) = sum(y0) e^k
        assert float(tape.gradient(loss, context)) == pytest.approx(Y0.sum() * np.exp(value), rel=1e-7)


def test_conditioning_tensor_inside_a_graph_goes_through_args():
    """Inside a tf.function a tensor of the graph cannot be captured: a clear error, and args works."""
    def f(t, y, k):
        return k * y

    @tf.function
    def with_args(k):
        return otf.odeint(f, tf.constant(Y0), [0.0, 1.0], args=(k,), rtol=TOL, atol=TOL)[-1]

    for value in (-1.0, -3.0):
        np.testing.assert_allclose(with_args(tf.constant(value, tf.float64)).numpy(), Y0 * np.exp(value), rtol=1e-8)

    @tf.function
    def captured(k):
        return otf.odeint(lambda t, y: k * y, tf.constant(Y0), [0.0, 1.0], rtol=TOL, atol=TOL)[-1]

    with pytest.raises(TypeError, match="args="):
        captured(tf.constant(-1.0, tf.float64))


def test_args_are_differentiated():
    def f(t, y, k):
        return k * y

    k = tf.constant(-0.7, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(k)
        loss = tf.reduce_sum(otf.odeint(f, tf.constant(Y0), [0.0, 1.0], args=(k,), rtol=TOL, atol=TOL)[-1])
    assert float(tape.gradient(loss, k)) == pytest.approx(Y0.sum() * np.exp(-0.7), rel=1e-7)


def test_same_trace_is_compiled_once():
    """Calls that read the same values reuse the compiled dynamics (the cache still caches)."""
    from odegrad.tf.compile import cache_of

    w = tf.Variable(-1.0, dtype=tf.float64)

    def f(t, y):
        return w * y

    _assert_rate(f, -1.0)
    entries = len(cache_of(f))
    w.assign(-2.0)  # variables are read when the compiled dynamics run: no recompilation
    _assert_rate(f, -2.0)
    assert len(cache_of(f)) == entries
