"""Table 1 models of experiments.mnist.models: shapes, parameter counts, the RK-Net block (dopri5 and RK4)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from experiments.mnist.models import ConcatConv2d, ODEFunc, RKBlock, build_model, count_parameters
from experiments.mnist.parameters import TORCHDIFFEQ_PARAMS
from experiments.mnist.protocol import MODEL_NAMES

EXPECTED_PARAMS = {"mlp": 238_510, "resnet": 576_778, "rknet": 208_266, "odenet": 208_266}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_match_torchdiffeq(name: str) -> None:
    model = build_model(name, seed=0, tol=1e-1)
    assert count_parameters(model) == EXPECTED_PARAMS[name]
    if TORCHDIFFEQ_PARAMS[name] is not None:
        assert count_parameters(model) == TORCHDIFFEQ_PARAMS[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shapes(name: str) -> None:
    model = build_model(name, seed=0, tol=1e-1)
    x = tf.random.uniform((3, 28, 28, 1), seed=1)
    assert model(x).shape == (3, 10)
    if name != "mlp":
        h = x
        for layer in model.stem:
            h = layer(h)
        assert h.shape == (3, 6, 6, 64)


def test_odenet_block_reports_nfe() -> None:
    model = build_model("odenet", seed=0, tol=1e-2)
    model(tf.random.uniform((2, 28, 28, 1), seed=2))
    assert model.ode_block.nfe_forward > 0


def test_resnet_depth_is_configurable() -> None:
    assert count_parameters(build_model("resnet", resnet_blocks=2)) == 576_778 - 4 * 73_984


class Decay(tf.keras.layers.Layer):
    def call(self, t: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        return -h * (1.0 + t)


def test_rk4_block_is_fourth_order() -> None:
    """dh/dt = -(1 + t) h on [0, 1]: h(1) = h(0) exp(-1.5); RK4 error falls ~16x per halving."""
    x = tf.constant([[1.0, 2.0]], dtype=tf.float64)
    exact = x.numpy() * np.exp(-1.5)
    errors = []
    for steps in (2, 4, 8):
        block = RKBlock(Decay(), "rk4", steps=steps)
        errors.append(np.abs(block(x).numpy() - exact).max())
        assert block.nfe_forward == 4 * steps and block.nfe_backward == 0
    assert errors[0] / errors[1] > 12 and errors[1] / errors[2] > 12
    assert errors[2] < 5e-5


def test_rk_block_rejects_bad_configurations() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        RKBlock(Decay(), "rk4", steps=0)
    with pytest.raises(ValueError, match="method='rk4'"):
        RKBlock(Decay(), "dopri5", steps=4)
    with pytest.raises(ValueError, match="unknown RK-Net method"):
        RKBlock(Decay(), "euler")
    with pytest.raises(ValueError, match="positive tolerances"):
        RKBlock(Decay(), rtol=0.0)
    with pytest.raises(ValueError, match="rk_method='rk4'"):
        build_model("rknet", rk_steps=4)


def test_dopri5_block_error_and_nfe_follow_tolerance() -> None:
    """The default RK-Net block on dh/dt = -(1 + t) h: error below the tolerance, NFE growing as it shrinks."""
    x = tf.constant([[1.0, 2.0], [-0.5, 0.25]], dtype=tf.float64)
    exact = x.numpy() * np.exp(-1.5)
    errors, nfes = [], []
    for tol in (1e-2, 1e-4, 1e-6, 1e-8):
        block = RKBlock(Decay(dtype="float64"), rtol=tol, atol=tol, dtype="float64")
        errors.append(np.abs(block(x).numpy() - exact).max())
        nfes.append(block.nfe_forward)
        assert isinstance(block.nfe_forward, int) and block.nfe_backward == 0
        assert errors[-1] < 2 * tol and (nfes[-1] - 2) % 6 == 0
    assert all(a < b for a, b in zip(nfes, nfes[1:]))


class ScaledDecay(tf.keras.layers.Layer):
    """dh/dt = -k h with a trainable rate k."""

    def __init__(self, rate: float) -> None:
        super().__init__(dtype="float64")
        self.rate = self.add_weight(shape=(), initializer=tf.keras.initializers.Constant(rate), dtype="float64")

    def call(self, t: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        return -self.rate * h


def test_dopri5_block_nfe_and_gradient_inside_tf_function() -> None:
    """One trace serves calls whose NFE differs; the NFE read in the traced step is that call's; d/dk is exact."""
    func = ScaledDecay(1.0)
    block = RKBlock(func, rtol=1e-8, atol=1e-8, dtype="float64")
    x = tf.constant([[1.0, 2.0]], dtype=tf.float64)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(block(x))
        return loss, tape.gradient(loss, func.rate), block.nfe_forward

    seen = []
    for rate in (1.0, 8.0):
        func.rate.assign(rate)
        loss, grad, nfe = step(x)
        assert int(nfe) == block.nfe_forward
        seen.append(int(nfe))
        np.testing.assert_allclose(loss.numpy(), 3.0 * np.exp(-rate), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(grad.numpy(), -3.0 * np.exp(-rate), rtol=1e-6, atol=1e-7)
        eager = RKBlock(func, rtol=1e-8, atol=1e-8, dtype="float64")
        eager(x)
        assert eager.nfe_forward == int(nfe)
    assert seen[1] > seen[0]
    assert step.experimental_get_tracing_count() == 1


def test_rknet_default_is_dopri5_at_the_odenet_tolerance() -> None:
    model = build_model("rknet", seed=0)
    block = model.ode_block
    assert block.method == "dopri5" and block.rtol == block.atol == 1e-3
    assert block.nfe_forward > 2 and (block.nfe_forward - 2) % 6 == 0
    assert not any("nfe" in w.name for w in model.weights)
    rk4 = build_model("rknet", seed=0, rk_method="rk4", rk_steps=2).ode_block
    assert rk4.method == "rk4" and rk4.nfe_forward == 8


def test_concat_conv_uses_time() -> None:
    layer = ConcatConv2d(4, 4)
    h = tf.random.uniform((1, 5, 5, 4), seed=3)
    assert layer.conv.kernel.shape == (3, 3, 5, 4)
    assert not np.allclose(layer(tf.constant(0.0), h), layer(tf.constant(1.0), h))


def test_odefunc_preserves_shape() -> None:
    func = ODEFunc(64)
    h = tf.random.uniform((2, 6, 6, 64), seed=4)
    assert func(tf.constant(0.5), h).shape == h.shape


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")
