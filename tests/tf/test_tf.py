"""The TensorFlow path against the autograd path, finite differences and Keras usage.

Solves run at rtol = atol = 1e-10, so states and adjoint gradients of the two paths (the same
algorithm over different dynamics code) agree to ~1e-8; finite differences with step 1e-5 carry
an error of ~tol/h + h² ≈ 1e-5 relative.
"""


import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import odegrad

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

TOL = 1e-10


@pytest.fixture
def mlp():
    rng = np.random.RandomState(0)
    w1 = tf.Variable(rng.randn(3, 8) * 0.5)
    w2 = tf.Variable(rng.randn(8, 3) * 0.5)

    def f_tf(t, y):
        return tf.matmul(tf.tanh(tf.matmul(y, w1)) * tf.cos(t), w2)

    def f_ag(y, t, a, b):
        return anp.dot(anp.tanh(anp.dot(y, a)) * anp.cos(t), b)

    y0 = rng.randn(2, 3)
    t = np.array([0.0, 0.5, 1.2])
    return f_tf, f_ag, w1, w2, y0, t


@pytest.mark.parametrize("method", ["lsoda", "adams"])
def test_states_and_gradients_match_autograd_path(mlp, method):
    f_tf, f_ag, w1, w2, y0, t = mlp
    y0_tf, t_tf = tf.constant(y0), tf.constant(t)
    with tf.GradientTape() as tape:
        tape.watch([y0_tf, t_tf])
        ys = otf.odeint(f_tf, y0_tf, t_tf, rtol=TOL, atol=TOL, method=method)
        loss = tf.reduce_sum(ys ** 2)
    grads_tf = tape.gradient(loss, [y0_tf, t_tf, w1, w2])

    def loss_ag(y0, t, a, b):
        return anp.sum(odegrad.odeint(f_ag, y0, t, args=(a, b), rtol=TOL, atol=TOL, method=method) ** 2)

    args = (y0, t, w1.numpy(), w2.numpy())
    ys_ag = odegrad.odeint(f_ag, y0, t, args=args[2:], rtol=TOL, atol=TOL, method=method)
    np.testing.assert_allclose(ys.numpy(), ys_ag, rtol=1e-8, atol=1e-9)
    for k, g in enumerate(grads_tf):
        np.testing.assert_allclose(g.numpy(), grad(loss_ag, k)(*args), rtol=1e-7, atol=1e-8)


def test_parameter_gradient_matches_finite_differences(mlp):
    f_tf, _, w1, _, y0, t = mlp

    def loss():
        return float(tf.reduce_sum(otf.odeint(f_tf, y0, t, rtol=TOL, atol=TOL)[-1] ** 2))

    with tf.GradientTape() as tape:
        value = tf.reduce_sum(otf.odeint(f_tf, y0, t, rtol=TOL, atol=TOL)[-1] ** 2)
    g = tape.gradient(value, w1).numpy()
    base, h = w1.numpy(), 1e-5
    for i, j in [(0, 0), (1, 4), (2, 7)]:
        e = np.zeros_like(base)
        e[i, j] = h
        w1.assign(base + e)
        up = loss()
        w1.assign(base - e)
        down = loss()
        w1.assign(base)
        assert g[i, j] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_second_derivative_through_nested_tapes(mlp):
    """d/dW ||dL/dy0||² (the gradient of an input-gradient norm) against central differences."""
    f_tf, _, w1, _, y0, t = mlp
    y0 = tf.constant(y0)

    def input_grad_norm():
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(y0)
                loss = tf.reduce_sum(otf.odeint(f_tf, y0, t, rtol=TOL, atol=TOL)[-1] ** 2)
            norm = tf.reduce_sum(inner.gradient(loss, y0) ** 2)
        return float(norm), outer.gradient(norm, w1).numpy()

    _, g = input_grad_norm()
    base, h = w1.numpy(), 1e-5
    e = np.zeros_like(base)
    e[1, 2] = h
    w1.assign(base + e)
    up, _ = input_grad_norm()
    w1.assign(base - e)
    down, _ = input_grad_norm()
    w1.assign(base)
    assert g[1, 2] == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_float32_feature_maps_keep_shape_and_dtype():
    conv = tf.keras.layers.Conv2D(4, 3, padding="same")
    x = tf.random.stateless_normal([2, 6, 6, 4], seed=[1, 2])

    def f(t, h):
        return conv(tf.nn.relu(h)) * 0.1

    with tf.GradientTape() as tape:
        tape.watch(x)
        ys, info = otf.odeint(f, x, [0.0, 1.0], rtol=1e-3, atol=1e-3, method="adams", full_output=True)
        loss = tf.reduce_sum(ys[-1])
    gx, gk = tape.gradient(loss, [x, conv.kernel])
    assert ys.shape == (2, 2, 6, 6, 4) and ys.dtype == tf.float32
    assert gx.shape == x.shape and gk.shape == conv.kernel.shape
    assert info.forward.nfe > 0 and info.backward.nfe > 0


@tf.keras.utils.register_keras_serializable(package="odegrad_tests")
class SmallDynamics(tf.keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = tf.keras.layers.Dense(16, activation="tanh")
        self.out = tf.keras.layers.Dense(2)

    def call(self, t, h):
        return self.out(self.hidden(h))


def _model():
    return tf.keras.Sequential([
        tf.keras.Input((2,)),
        otf.ODEBlock(SmallDynamics(), rtol=1e-3, atol=1e-3),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])


def test_odeblock_learns_with_fit_and_round_trips_weights(tmp_path):
    tf.keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).randn(256, 2).astype("float32")
    y = (x[:, :1] * x[:, 1:] > 0).astype("float32")
    model = _model()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    start = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, epochs=12, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.8 * start
    block = model.layers[0]
    assert block.nfe_forward > 0 and block.nfe_backward > 0
    path = str(tmp_path / "ode.weights.h5")
    model.save_weights(path)
    clone = _model()
    clone.load_weights(path)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_odeblock_in_functional_model_with_custom_loop():
    inputs = tf.keras.Input((2,))
    block = otf.ODEBlock(SmallDynamics(), t=(0.0, 0.5), method="lsoda")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(block(inputs)))
    x = tf.random.stateless_normal([8, 2], seed=[3, 4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    config = block.get_config()
    assert otf.ODEBlock.from_config(config).t == (0.0, 0.5)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="strictly monotonic"):
        otf.odeint(lambda t, y: -y, tf.ones([2]), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="method"):
        otf.odeint(lambda t, y: -y, tf.ones([2]), [0.0, 1.0], method="rk45")
    with pytest.raises(ValueError, match="interval"):
        otf.ODEBlock(SmallDynamics(), t=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"adjoint_jacobian=True is not available.*odegrad.odeint"):
        otf.odeint(lambda t, y: -y, tf.ones([2]), [0.0, 1.0], adjoint=odegrad.AdjointOptions(jacobian=True))
    with pytest.raises(ValueError, match=r"adjoint_seminorm=True does not apply to adjoint='forward'"):
        otf.odeint(lambda t, y: -y, tf.ones([2]), [0.0, 1.0], adjoint="forward", adjoint_seminorm=True)


@pytest.mark.parametrize("n, n_times", [(1, 3), (3000, 2)])
def test_auto_makes_the_autograd_doors_choice(n, n_times):
    """One rule, one object: forward sensitivities for one state and three outputs, the checkpoint
    adjoint for 3,000 states, on both doors."""
    k = tf.Variable(0.7, dtype=tf.float64)
    y0, t = np.linspace(0.5, 1.5, n), np.linspace(0.0, 1.0, n_times)
    with tf.GradientTape() as tape:
        ys, info = otf.odeint(lambda _, y: -k * y, tf.constant(y0), t, rtol=1e-8, atol=1e-8, adjoint="auto",
                              full_output=True)
        loss = tf.reduce_sum(ys)
    g_tf = float(tape.gradient(loss, k))

    infos = []

    def loss_ag(k):
        ys, infodict = odegrad.odeint(lambda y, _, k: -k * y, y0, t, args=(k,), rtol=1e-8, atol=1e-8, adjoint="auto",
                                      full_output=True)
        infos.append(infodict["odegrad"])
        return anp.sum(ys)

    g_ag = grad(loss_ag)(0.7)
    assert info.gradient_methods == infos[0].gradient_methods == [("forward" if n == 1 else "checkpoint")]
    assert info.forward.nfe == infos[0].forward.nfe
    assert g_tf == pytest.approx(g_ag, rel=1e-6)
    assert g_tf == pytest.approx(-np.sum(t[1:] * np.exp(-0.7 * t[1:])) * y0.sum(), rel=1e-6)


def test_xla_and_graph_dynamics_agree(mlp):
    """jit_compile=True (XLA) and False (a plain graph, the default) compile the same dynamics
    and VJP."""
    f_tf, _, w1, w2, y0, t = mlp
    results = []
    for jit_compile in (True, False):
        y0_tf = tf.constant(y0)
        with tf.GradientTape() as tape:
            tape.watch(y0_tf)
            ys = otf.odeint(f_tf, y0_tf, t, rtol=TOL, atol=TOL, method="adams", jit_compile=jit_compile)
            loss = tf.reduce_sum(ys ** 2)
        results.append([ys] + tape.gradient(loss, [y0_tf, w1, w2]))
    for xla, graph in zip(*results):
        np.testing.assert_allclose(xla.numpy(), graph.numpy(), rtol=1e-8, atol=1e-10)
