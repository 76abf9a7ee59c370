"""The TF door has the autograd door's adjoint modes, from the same implementation.

On the contracting linear system of ``tests/core/test_adjoint.py`` (eigenvalues -50 and -1 over
[0, 2]) reconstructing ``y`` backwards over one interval is hopeless; ``checkpoints=19`` and
``adjoint="interpolate"`` are right to the closed form (``expm_frechet``), as on the autograd
door. Before the fix the TF door rejected both options.
"""

import numpy as np
import pytest

from odegrad.gradcheck import relative_error
from odegrad.gradcheck.problems import linear_gradients
from tests.tolerances import GRAD_RTOL, TOL

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

A_STIFF = np.array([[-50.0, 0.0], [1.0, -1.0]])
Y0 = np.array([1.0, 1.0])
T = np.array([0.0, 2.0])


def _gradients(method, **adjoint):
    a = tf.Variable(A_STIFF)

    def f(t, y):
        return tf.linalg.matvec(a, y)

    y0 = tf.constant(Y0)
    with tf.GradientTape() as tape:
        tape.watch(y0)
        ys, info = otf.odeint(f, y0, T, rtol=TOL, atol=TOL, method=method, full_output=True, **adjoint)
        loss = tf.reduce_sum(ys[-1])
    g_a, g_y0 = tape.gradient(loss, [a, y0])
    return g_a.numpy(), g_y0.numpy(), info


@pytest.mark.parametrize("method", ["lsoda", "bdf"])
@pytest.mark.parametrize("adjoint", [{"checkpoints": 19}, {"adjoint": "interpolate"}])
def test_checkpoints_and_interpolate_are_exact_on_a_contracting_problem(method, adjoint):
    exact_a, exact_y0, _ = linear_gradients(A_STIFF, Y0, T, np.array([[0.0, 0.0], [1.0, 1.0]]))
    g_a, g_y0, info = _gradients(method, **adjoint)
    assert relative_error(g_a, exact_a) < GRAD_RTOL and relative_error(g_y0, exact_y0) < GRAD_RTOL
    assert info.backward.nfe > 0


def test_interpolate_matches_the_autograd_door():
    from autograd import grad

    import odegrad
    from odegrad.gradcheck.problems import linear

    def loss(A):
        return odegrad.odeint(linear, Y0, T, args=(A,), rtol=TOL, atol=TOL, method="lsoda",
                              adjoint="interpolate")[-1].sum()

    g_a, _, _ = _gradients("lsoda", adjoint="interpolate")
    np.testing.assert_allclose(g_a, grad(loss)(A_STIFF), rtol=1e-7)


def test_interpolate_is_first_order_only():
    k = tf.Variable(0.5, dtype=tf.float64)
    y0 = tf.constant([1.0], tf.float64)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(y0)
            end = otf.odeint(lambda t, y: -k * y, y0, [0.0, 1.0], rtol=1e-10, atol=1e-10, adjoint="interpolate")[-1]
        g = inner.gradient(end, y0)
    assert float(g[0]) == pytest.approx(np.exp(-0.5), rel=1e-7)
    with pytest.raises(NotImplementedError, match=r"first derivatives only.*checkpoint"):
        outer.gradient(g, k)
