""":class:`TFOps`: the array operations a gradient method runs on the TensorFlow door."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


class TFOps:
    """:class:`odegrad.ops.Ops` from TensorFlow."""

    @staticmethod
    def concat(parts: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.concat(parts, axis=0)

    @staticmethod
    def stack(parts: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.stack(parts)

    @staticmethod
    def zeros(n: int, like: tf.Tensor) -> tf.Tensor:
        return tf.zeros([n], dtype=like.dtype)

    @staticmethod
    def vdot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(a * b)

    @staticmethod
    def value(x: tf.Tensor) -> np.ndarray:
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)

    @staticmethod
    def reshape(x: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
        return tf.reshape(x, shape)

    @staticmethod
    def einsum(spec: str, *operands: tf.Tensor) -> tf.Tensor:
        return tf.einsum(spec, *operands)

    @staticmethod
    def constant(array: np.ndarray, like: tf.Tensor) -> tf.Tensor:
        """``array`` (NumPy) as a constant tensor of ``like``'s dtype."""
        return tf.constant(np.asarray(array), dtype=like.dtype)
