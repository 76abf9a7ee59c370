"""Eager and graph calls of :func:`odegrad.tf.odeint` accept the same output times.

A ``tf.function`` used to integrate repeated times that an eager call rejects ("strictly monotonic").
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

Y0 = tf.constant([1.0], tf.float64)
BAD_TIMES = [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.5]]


def _decay(t, y):
    return -y


@pytest.mark.parametrize("t", BAD_TIMES)
def test_repeated_or_unsorted_times_are_rejected_eagerly_and_in_a_graph(t):
    with pytest.raises(ValueError, match="strictly monotonic") as eager:
        otf.odeint(_decay, Y0, t)
    with pytest.raises(ValueError, match="strictly monotonic") as graph_constant:
        tf.function(lambda: otf.odeint(_decay, Y0, tf.constant(t, tf.float64)))()
    assert str(eager.value) in str(graph_constant.value)  # tf.function prefixes where it was traced
    # Times only known when the graph runs are checked when it runs.
    run_time = tf.function(lambda times: otf.odeint(_decay, Y0, times))
    with pytest.raises(tf.errors.InvalidArgumentError, match="strictly monotonic"):
        run_time(tf.Variable(t, dtype=tf.float64))


def test_good_times_in_a_graph_give_the_closed_form():
    run_time = tf.function(lambda times: otf.odeint(_decay, Y0, times, rtol=1e-10, atol=1e-10))
    t = tf.Variable([0.0, 0.5, 2.0], dtype=tf.float64)
    np.testing.assert_allclose(run_time(t).numpy()[:, 0], np.exp(-t.numpy()), rtol=1e-8)
