"""Bad input to the TensorFlow door raises at once and says what to change; good input is not lost.

Each case was accepted before the fix and gave a wrong or degraded answer without a word (or
failed only at the first call, for the layer's options).
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

from tests.tf.test_tf import SmallDynamics  # noqa: E402


def test_derivative_of_the_wrong_shape_is_rejected():
    y0 = tf.ones([2, 3])
    with pytest.raises(ValueError, match="shape"):
        otf.odeint(lambda t, y: -tf.transpose(y), y0, [0.0, 1.0])


def test_complex_state_is_rejected():
    with pytest.raises(ValueError, match="complex"):
        otf.odeint(lambda t, y: -y, tf.constant([1.0 + 1.0j, 2.0]), [0.0, 1.0])


def test_close_times_stay_distinct_for_a_float32_state():
    """Times are float64 on the host: 1 and 1 + 1e-8 are distinct outputs of a float32 solve."""
    y0 = tf.constant([1.0, 2.0], tf.float32)
    t = tf.Variable([0.0, 1.0, 1.0 + 1e-8], dtype=tf.float64)
    with tf.GradientTape() as tape:
        ys = otf.odeint(lambda t, y: -y, y0, t, rtol=1e-8, atol=1e-8)
        loss = tf.reduce_sum(ys[1])
    assert ys.dtype == tf.float32 and ys.shape == (3, 2)
    np.testing.assert_allclose(ys.numpy()[1:], [np.exp(-1.0) * np.array([1.0, 2.0])] * 2, rtol=1e-6)
    g = tape.gradient(loss, t)
    assert g.dtype == tf.float64
    np.testing.assert_allclose(g.numpy(), [3 * np.exp(-1.0), -3 * np.exp(-1.0), 0.0], rtol=1e-5, atol=1e-7)


def test_variables_on_every_branch_are_found():
    """Variables are discovered from a trace (both branches of a tf.cond), not one eager call at
    t[0]: the variable used only for t > 0.5 gets its gradient (it was silently None)."""
    early = tf.Variable(-1.0, dtype=tf.float64)
    late = tf.Variable(-2.0, dtype=tf.float64)

    def f(t, y):
        return tf.cond(t < 0.5, lambda: early * y, lambda: late * y)

    y0 = tf.constant([1.0], tf.float64)
    with tf.GradientTape() as tape:
        end = otf.odeint(f, y0, [0.0, 0.5, 1.0], rtol=1e-10, atol=1e-10)[-1, 0]
    g_early, g_late = tape.gradient(end, [early, late])
    # y(1) = exp(0.5 early + 0.5 late)
    expected = 0.5 * np.exp(0.5 * (-1.0) + 0.5 * (-2.0))
    assert float(g_early) == pytest.approx(expected, rel=1e-6)
    assert float(g_late) == pytest.approx(expected, rel=1e-6)


def test_incomplete_variables_list_is_an_error():
    w1 = tf.Variable(-1.0, dtype=tf.float64, name="w1")
    w2 = tf.Variable(-2.0, dtype=tf.float64, name="w2")
    with pytest.raises(ValueError, match="w2"):
        otf.odeint(lambda t, y: w1 * w2 * y, tf.constant([1.0], tf.float64), [0.0, 1.0], variables=[w1])


@pytest.mark.parametrize("options, message", [
    ({"method": "rk45"}, "method"),
    ({"rtol": -1.0}, "rtol"),
    ({"adjoint": "magic"}, "adjoint must be one of"),
    ({"adjoint": "interpolate", "checkpoints": 2}, "checkpoints only apply"),
    ({"t": (0.0, float("nan"))}, "interval"),
])
def test_odeblock_validates_its_options_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        otf.ODEBlock(SmallDynamics(), **options)
