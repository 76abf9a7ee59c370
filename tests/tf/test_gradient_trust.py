"""No silent wrong gradient on the TensorFlow door: the same references as the autograd door's
``tests/core/test_gradient_trust.py`` (central differences of tight plain-scipy solves)."""

import numpy as np
import pytest

from odegrad.adjoint import DriftError
from tests.core.test_gradient_trust import (
    C_WIDE,
    LAM,
    LV_REF,
    LV_T,
    LV_THETA,
    LV_WEIGHTS,
    LV_Y0,
    OUT_WIDE,
    T_WIDE,
    W_WIDE,
    Y0_WIDE,
    _wide_fd,
)

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")


def _wide_grad(**options):
    k = tf.Variable(0.5, dtype=tf.float64)
    lam, c, W = (tf.constant(a) for a in (LAM, C_WIDE, W_WIDE))

    def f(t, y):
        return -lam * (y - c) + k * tf.tanh(tf.linalg.matvec(W, y))

    with tf.GradientTape() as tape:
        ys, info = otf.odeint(f, tf.constant(Y0_WIDE), T_WIDE, full_output=True, **options)
        loss = tf.reduce_sum(tf.constant(OUT_WIDE) * ys[-1])
    return float(tape.gradient(loss, k)), info


def test_auto_retries_a_drifted_reconstruction_on_the_tf_door():
    g, info = _wide_grad(adjoint="auto")
    assert abs(g - _wide_fd(0.5)) < 1e-5 * abs(_wide_fd(0.5))
    assert info.gradient_methods == ["interpolate"]


def test_checkpoint_raises_on_drift_on_the_tf_door():
    with pytest.raises(DriftError, match="rebuilt backwards"):
        _wide_grad(adjoint="checkpoint")


@pytest.mark.parametrize("mode", ["checkpoint", "interpolate", "backsolve"])
@pytest.mark.parametrize("scale", [1.0, 1e-8])
def test_tf_adjoints_are_scale_invariant(mode, scale):
    theta = tf.Variable(LV_THETA)

    def f(t, y):
        a, b, c, d = theta[0], theta[1], theta[2], theta[3]
        return tf.stack([a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]])

    with tf.GradientTape() as tape:
        ys = otf.odeint(f, tf.constant(LV_Y0), LV_T, rtol=1.49012e-8, atol=1.49012e-8, adjoint=mode)
        loss = scale * tf.reduce_sum(ys * LV_WEIGHTS)
    g = tape.gradient(loss, theta).numpy()
    assert np.max(np.abs(g - scale * LV_REF)) < 1e-5 * np.max(np.abs(scale * LV_REF))
