"""What sets the backward NFE of an ODE block (Figure 3(c)): the size of the adjoint against atol.

These are properties of Appendix D's absolute tolerance on the adjoint state
(``adjoint_normalize=False``, the setting of the Table 1 ODE-Net); by default odegrad solves the
adjoint for the normalised cotangent, and the loss's scale then does not matter (last test).

The backward solve of ``[y, a, a_t, a_theta]`` controls each component's error against
``atol + rtol |s_i|`` in an RMS norm over all components. The cotangent ``a = dL/dy(t1)`` of a
batch-mean loss is small: below ``atol`` the adjoint's error is not controlled at all, and the
steps are set by the reconstruction of ``y`` alone (the forward problem again, at a tolerance
loosened by the RMS over components that contribute no error): the backward NFE is then the same
for every loss scale, with or without the seminorm, and at most the forward NFE. Only when
``c·|a|`` reaches ``atol`` does the loss scale ``c`` raise the backward NFE, and only there does
the seminorm save steps. Below ``atol`` the backward NFE follows the backward solve's own
tolerance (``adjoint_rtol``/``adjoint_atol``), not the forward one. ``python -m
experiments.mnist.backward_nfe`` measures the same on the Table 1 block.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

TOL = 1e-3


@pytest.fixture(scope="module")
def block():
    rng = np.random.default_rng(0)
    w1 = tf.Variable(rng.standard_normal((8, 16)) * 0.5, dtype=tf.float32)
    w2 = tf.Variable(rng.standard_normal((16, 8)) * 0.5, dtype=tf.float32)

    def f(t, y):
        return tf.matmul(tf.tanh(tf.matmul(y, w1)), w2) - 0.1 * y

    y0 = tf.constant(rng.standard_normal((32, 8)), tf.float32)
    weights = tf.constant(rng.standard_normal((32, 8)), tf.float32)
    return f, y0, weights


def _nfe(block, scale, tol=TOL, **options):
    options.setdefault("adjoint_normalize", False)
    f, y0, weights = block
    with tf.GradientTape() as tape:
        tape.watch(y0)
        ys, info = otf.odeint(f, y0, [0.0, 1.0], rtol=tol, atol=tol, method="adams", full_output=True, **options)
        loss = scale * tf.reduce_sum(weights * ys[-1])   # a(t1) = scale * weights
    tape.gradient(loss, y0)
    return info.forward.nfe, info.backward.nfe


def test_an_adjoint_below_atol_leaves_the_backward_steps_to_y(block):
    forward, tiny = _nfe(block, 1e-6)
    assert _nfe(block, 1e-4)[1] == tiny                          # loss scale does not matter
    assert _nfe(block, 1e-6, adjoint_seminorm=True)[1] == tiny   # nor does the seminorm
    assert tiny <= forward                                       # the forward problem again


def test_an_adjoint_above_atol_costs_backward_steps(block):
    _, tiny = _nfe(block, 1e-6)
    _, large = _nfe(block, 10.0)
    assert large > 1.5 * tiny
    assert tiny < _nfe(block, 10.0, adjoint_seminorm=True)[1] < large   # a_theta's share of it


def test_below_atol_the_backward_steps_follow_the_backward_tolerance(block):
    """The ratio backward/forward is set by the two tolerances: the paper's "about half" needs a
    forward solve tighter than the backward one."""
    forward, backward = _nfe(block, 1e-6)
    assert _nfe(block, 1e-6, adjoint_rtol=TOL / 10, adjoint_atol=TOL / 10)[1] > backward
    assert _nfe(block, 1e-6, adjoint_rtol=TOL * 10, adjoint_atol=TOL * 10)[1] < backward
    tight_forward, same_backward = _nfe(block, 1e-6, tol=TOL / 10, adjoint_rtol=TOL, adjoint_atol=TOL)
    assert tight_forward > forward and abs(same_backward - backward) <= 2



def test_with_the_default_normalisation_the_loss_scale_does_not_set_the_backward_steps(block):
    """The adjoint is solved for the cotangent scaled to max |g| = 1 (a power of two): scales that
    differ by a power of two give the same solve; others differ only by that rounding."""
    _, reference = _nfe(block, 1.0, adjoint_normalize=True)
    assert _nfe(block, 2.0 ** -20, adjoint_normalize=True)[1] == reference
    for scale in (1e-6, 10.0):
        assert abs(_nfe(block, scale, adjoint_normalize=True)[1] - reference) <= 0.25 * reference
    assert _nfe(block, 1e-6)[1] < reference   # absolute atol: a tiny adjoint is not controlled
