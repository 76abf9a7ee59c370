"""The differentiable TF solve (:mod:`odegrad.tf.backend`): forward mode, higher derivatives inside a
``tf.function``, the time ``f`` sees, and the cache of compiled dynamics letting ``f`` go.

References are closed forms: the logistic equation ``y' = k y (1 - y)`` has
``y(t) = y0 e^{kt} / (1 - y0 + y0 e^{kt})``, whose derivatives autograd takes exactly.
"""

import gc
import weakref

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian_vector_product

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

TOL = 1e-10
T = np.array([0.0, 0.4, 1.0])
Y0 = np.array([0.2, 0.7])


def _logistic_closed_form(y0, k, t):
    e = anp.exp(k * t)[:, None]
    return y0 * e / (1.0 - y0 + y0 * e)


def _logistic(k):
    return lambda t, y: k * y * (1.0 - y)


def test_forward_mode_jvp_matches_the_closed_form():
    """tf.autodiff.ForwardAccumulator over odeint (it raised KeyError: 'ys')."""
    k = tf.Variable(1.3, dtype=tf.float64)
    y0 = tf.constant(Y0)
    v_y0, v_k = np.array([0.3, -1.1]), 0.7
    with tf.autodiff.ForwardAccumulator([y0, k], [tf.constant(v_y0), tf.constant(v_k, tf.float64)]) as acc:
        ys = otf.odeint(_logistic(k), y0, T, rtol=TOL, atol=TOL)
    jvp = acc.jvp(ys).numpy()

    def along(s):
        return _logistic_closed_form(Y0 + s * v_y0, 1.3 + s * v_k, T)

    exact = np.stack([[grad(lambda s, i=i, j=j: along(s)[i, j])(0.0) for j in range(2)] for i in range(len(T))])
    np.testing.assert_allclose(jvp, exact, rtol=1e-7, atol=1e-9)


def test_forward_over_reverse_hessian_vector_product():
    """TensorFlow's recommended HVP (a ForwardAccumulator around a GradientTape) against the
    closed form's Hessian-vector product."""
    k = tf.Variable(1.3, dtype=tf.float64)
    y0 = tf.constant(Y0)
    v = np.array([0.3, -1.1, 0.7])  # (y0[0], y0[1], k)
    weights = np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 3.0]])
    with tf.autodiff.ForwardAccumulator([y0, k], [tf.constant(v[:2]), tf.constant(v[2], tf.float64)]) as acc:
        with tf.GradientTape() as tape:
            tape.watch(y0)
            loss = tf.reduce_sum(weights * otf.odeint(_logistic(k), y0, T, rtol=TOL, atol=TOL) ** 2)
        g_y0, g_k = tape.gradient(loss, [y0, k])
    hvp = np.concatenate([acc.jvp(g_y0).numpy(), [float(acc.jvp(g_k))]])

    def closed_loss(p):
        return anp.sum(weights * _logistic_closed_form(p[:2], p[2], T) ** 2)

    exact = hessian_vector_product(closed_loss)(np.array([*Y0, 1.3]), v)
    np.testing.assert_allclose(hvp, exact, rtol=1e-6, atol=1e-9)


def test_nested_tapes_inside_tf_function_raise_a_clear_error():
    """A second derivative inside a tf.function: it failed with "Cannot convert 0.0 to EagerTensor of
    dtype int32", or (differentiating by a variable only) silently returned None."""
    k = tf.Variable(1.3, dtype=tf.float64)
    y0 = tf.constant(Y0)

    @tf.function
    def second(wrt_y0):
        with tf.GradientTape() as outer:
            outer.watch(y0)
            with tf.GradientTape() as inner:
                inner.watch(y0)
                end = tf.reduce_sum(otf.odeint(_logistic(k), y0, T)[-1] ** 2)
            g = inner.gradient(end, y0 if wrt_y0 else k)
            g = tf.reduce_sum(g)
        return outer.gradient(g, y0 if wrt_y0 else k)

    for wrt_y0 in (True, False):
        with pytest.raises(NotImplementedError, match="inside a tf.function.*eager"):
            second(wrt_y0)


def test_float32_state_sees_the_time_at_full_precision():
    """y' = cos(t) from t0 = 1e4 with a float32 state: f's time was cast to float32 (spacing 1e-3
    there), a piecewise constant dynamics on which the solver gave up ("excess work")."""
    t = 1e4 + np.array([0.0, 0.5, 2.0, 5.0])
    y0 = tf.constant([0.0, 1.0], tf.float32)
    with tf.GradientTape() as tape:
        t_tf = tf.constant(t)
        tape.watch(t_tf)
        ys = otf.odeint(lambda s, y: tf.cast(tf.cos(s), y.dtype) * tf.ones_like(y), y0, t_tf, rtol=1e-7, atol=1e-7)
        total = tf.reduce_sum(ys[:, 0])
    assert ys.dtype == tf.float32
    exact = np.sin(t) - np.sin(t[0])
    np.testing.assert_allclose(ys.numpy(), np.stack([exact, exact + 1.0], 1), rtol=0, atol=2e-6)
    g_t = tape.gradient(total, t_tf).numpy()
    np.testing.assert_allclose(g_t, np.concatenate([[-(len(t) - 1) * np.cos(t[0])], np.cos(t[1:])]),
                               rtol=0, atol=1e-5)


def test_time_of_another_dtype_than_the_state_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"tf.cast\(t, y.dtype\)"):
        otf.odeint(lambda t, y: -t * y, tf.constant([1.0], tf.float32), [0.0, 1.0])
    ys = otf.odeint(lambda t, y: -t * y, tf.constant([1.0], tf.float32), tf.constant([0.0, 1.0], tf.float32))
    np.testing.assert_allclose(ys.numpy()[-1], np.exp(-0.5), rtol=1e-6)


@pytest.mark.parametrize("differentiate", [False, True])
def test_a_fresh_callable_is_freed_after_the_call(differentiate):
    """The compile cache is keyed weakly on f; its compiled functions held f strongly, so a lambda or
    closure made per call (about 1 MiB of compiled graphs each) was never freed."""
    k = tf.Variable(0.5, dtype=tf.float64)
    refs = []
    for _ in range(3):
        f = _logistic(k)
        refs.append(weakref.ref(f))
        y0 = tf.constant(Y0)
        with tf.GradientTape() as tape:
            tape.watch(y0)
            end = tf.reduce_sum(otf.odeint(f, y0, [0.0, 1.0]))
        if differentiate:
            tape.gradient(end, [y0, k])
        del f, tape, end
    gc.collect()
    assert [ref() for ref in refs] == [None] * 3
