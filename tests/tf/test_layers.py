"""The Keras layer :class:`odegrad.tf.ODEBlock` under a mixed-precision policy.

Under ``mixed_float16`` the block used to fail ("variables must be tf.Variable or Keras variables, got
Variable"): inside a layer's call Keras returns a variable's ``.value`` cast to float16. The block now
solves in float32 (its variable dtype), lets the dynamics compute in float16, and returns its compute
dtype. The reference is the autograd door in float64 with the same weights; float16 dynamics carry
relative errors of about 1e-3 (float16's epsilon), so outputs and gradients agree to a few 1e-3.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import odegrad

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

from tests.tf.test_tf import SmallDynamics  # noqa: E402


@pytest.fixture
def mixed_float16():
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


class RecordingDynamics(SmallDynamics):
    """:class:`SmallDynamics` recording the dtypes of the states it is called with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.states = set()

    def __call__(self, t, h, **kwargs):
        self.states.add(h.dtype)
        return super().__call__(t, h, **kwargs)


def _reference(x, weights, t1):
    def f(y, t, w1, b1, w2, b2):
        return anp.dot(anp.tanh(anp.dot(y, w1) + b1), w2) + b2

    def loss(weights):
        return anp.sum(odegrad.odeint(f, x, np.array([0.0, t1]), args=tuple(weights), rtol=1e-10, atol=1e-10)[-1])

    out = odegrad.odeint(f, x, np.array([0.0, t1]), args=tuple(weights), rtol=1e-10, atol=1e-10)[-1]
    return out, grad(loss)(list(weights))


@pytest.mark.parametrize("loss_scale", [1.0, 2.0**15])
def test_odeblock_under_mixed_float16(mixed_float16, loss_scale):
    """Outputs and gradients against float64 references; the gradient also of a loss multiplied
    by Keras's initial loss scale 2**15 (then divided), which overflowed float16 inside the
    dynamics' backward pass before the cotangent was normalised there."""
    tf.keras.utils.set_random_seed(3)
    func = RecordingDynamics()
    block = otf.ODEBlock(func, t=(0.0, 0.5), rtol=1e-5, atol=1e-5)
    x = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    with tf.GradientTape() as tape:
        out = block(tf.constant(x))
        loss = tf.reduce_sum(tf.cast(out, tf.float32)) * loss_scale
    variables = [func.hidden.kernel, func.hidden.bias, func.out.kernel, func.out.bias]
    grads = [g / loss_scale for g in tape.gradient(loss, variables)]
    assert out.dtype == tf.float16 and block.compute_dtype == "float16"
    assert func.states == {tf.float32}  # the state the solver hands to func, before Keras casts it
    assert all(g.dtype == tf.float32 for g in grads)
    assert block.nfe_forward > 0 and block.nfe_backward > 0
    weights = [v.numpy().astype(np.float64) for v in variables]
    out_ref, grads_ref = _reference(x.astype(np.float16).astype(np.float64), weights, 0.5)
    np.testing.assert_allclose(out.numpy().astype(np.float64), out_ref, rtol=0, atol=1e-2)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g.numpy(), g_ref, rtol=0, atol=2e-2 * np.abs(g_ref).max())


def test_odeblock_trains_with_fit_under_mixed_float16(mixed_float16):
    """``fit`` wraps the optimizer in a LossScaleOptimizer under this policy (the loss scale reaches
    the block's backward solve) and runs the block in a graph."""
    tf.keras.utils.set_random_seed(0)
    block = otf.ODEBlock(SmallDynamics())
    model = tf.keras.Sequential([tf.keras.Input((2,)), block, tf.keras.layers.Dense(1, dtype="float32")])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02), loss="mse")
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32")
    y = x[:, :1] * x[:, 1:]
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    assert block.nfe_backward > 0
    assert model.predict(x[:2], verbose=0).dtype == np.float32
