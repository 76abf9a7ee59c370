"""Table 1 models of experiments.models: shapes, parameter counts, the RK4 block."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from experiments.models import (
    MODEL_NAMES,
    TORCHDIFFEQ_PARAMS,
    ConcatConv2d,
    ODEFunc,
    RKBlock,
    build_model,
    count_parameters,
    parameter_table,
)

EXPECTED_PARAMS = {"mlp": 238_510, "resnet": 576_778, "rknet": 208_266, "odenet": 208_266}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_match_torchdiffeq(name: str) -> None:
    model = build_model(name, seed=0, tol=1e-1)
    assert count_parameters(model) == EXPECTED_PARAMS[name]
    if TORCHDIFFEQ_PARAMS[name] is not None:
        assert count_parameters(model) == TORCHDIFFEQ_PARAMS[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shapes(name: str) -> None:
    model = build_model(name, seed=0, tol=1e-1, rk_steps=1)
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
        block = RKBlock(Decay(), steps=steps)
        errors.append(np.abs(block(x).numpy() - exact).max())
        assert block.nfe_forward == 4 * steps and block.nfe_backward == 0
    assert errors[0] / errors[1] > 12 and errors[1] / errors[2] > 12
    assert errors[2] < 5e-5


def test_rk_block_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        RKBlock(Decay(), steps=0)


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


def test_parameter_table_lists_references() -> None:
    table = parameter_table(("mlp", "resnet"))
    assert "576,778" in table and "0.60M" in table and "238,510" in table
