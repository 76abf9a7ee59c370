"""Which variables ``f`` reads and which ones are differentiated, decided once (:mod:`odegrad.tf.tracing`).

A variable listed twice in ``variables=`` (e.g. the concatenated variable lists of two sub-modules that
share a layer) is one input of the solve: before the fix its gradient came out doubled, silently.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

TOL = 1e-10
Y0 = np.array([1.0, 2.0])


def test_a_variable_listed_twice_gets_its_gradient_once():
    """y' = -k y: d/dk sum y(1) = -sum(y0) exp(-k), whatever the variables list repeats."""
    k = tf.Variable(0.5, dtype=tf.float64)
    y0 = tf.constant(Y0)
    expected = -Y0.sum() * np.exp(-0.5)
    for variables in ([k, k], [k, k, k], None):
        with tf.GradientTape() as tape:
            end = tf.reduce_sum(otf.odeint(lambda t, y: -k * y, y0, [0.0, 1.0], rtol=TOL, atol=TOL,
                                           variables=variables)[-1])
        assert float(tape.gradient(end, k)) == pytest.approx(expected, rel=1e-7), variables


class SharedTwice(tf.keras.layers.Layer):
    """Two sub-modules sharing one Dense layer: their variable lists both hold its weights."""

    def __init__(self):
        super().__init__(dtype="float64")
        self.shared = tf.keras.layers.Dense(2, dtype="float64")
        self.first = tf.keras.Sequential([self.shared])
        self.second = tf.keras.Sequential([self.shared])

    def call(self, t, y):
        return -0.5 * tf.tanh(self.first(y)) + 0.1 * self.second(y)


def test_shared_sub_layer_gradient_matches_finite_differences():
    func = SharedTwice()
    func(tf.constant(0.0, tf.float64), tf.zeros([1, 2], tf.float64))
    func.shared.kernel.assign([[0.3, -0.7], [0.5, 0.2]])
    func.shared.bias.assign([0.1, -0.2])
    y0 = tf.constant([[1.0, -0.5]], tf.float64)
    variables = func.first.trainable_variables + func.second.trainable_variables + [func.shared.kernel.value]
    assert len(variables) == 5  # kernel three times (once unwrapped), bias twice

    def loss():
        return tf.reduce_sum(otf.odeint(func, y0, [0.0, 1.0], rtol=1e-12, atol=1e-12, variables=variables)[-1] ** 2)

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, [func.shared.kernel, func.shared.bias])
    h = 1e-5
    for variable, g in zip([func.shared.kernel, func.shared.bias], grads):
        base = variable.numpy()
        fd = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[index] = h
            variable.assign(base + step)
            up = float(loss())
            variable.assign(base - step)
            down = float(loss())
            fd[index] = (up - down) / (2 * h)
        variable.assign(base)
        np.testing.assert_allclose(g.numpy(), fd, rtol=1e-5, atol=1e-8)
