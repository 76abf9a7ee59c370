"""The Keras layer :class:`ODEBlock`: ``h(t1)`` from ``h(t0)`` by an adjoint-differentiated solve."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ..options import AdjointOptions
from ..stats import SolveInfo
from .integrate import odeint, tf_options


def _state_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype the block integrates a state of ``dtype`` in: float32 for half precision (the
    compute dtype of a mixed-precision policy, whose variables are float32), else ``dtype``."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


@tf.keras.utils.register_keras_serializable(package="odegrad")
class ODEBlock(tf.keras.layers.Layer):
    """A Keras layer mapping ``h(t0)`` to ``h(t1)`` by solving ``dh/dt = func(t, h)``.

    Gradients come from the adjoint method (:func:`odeint`), so training memory does not grow
    with the number of solver steps. Works in ``Sequential`` and functional models, with
    ``model.fit``/``predict``/``evaluate`` (compiled models run the solver through
    ``tf.py_function``, so the model itself is not XLA-compiled; the batch dimension may be
    unknown, e.g. a last partial batch), custom ``tf.GradientTape`` loops,
    ``tf.distribute.MirroredStrategy``, ``MultiWorkerMirroredStrategy`` in custom
    ``strategy.run`` loops (Keras 3's ``fit`` does not support that strategy), ``.keras``
    saving (``func`` must be serializable), and mixed precision: under a policy such as
    ``"mixed_float16"`` the state is integrated in float32 while ``func`` computes in its own
    compute dtype, and the block returns its compute dtype.

    Parameters
    ----------
    func : tf.keras.layers.Layer
        The dynamics: ``func(t, h)`` with a scalar tensor ``t`` and ``h`` of the block input's
        shape, returning ``dh/dt``.
    t : tuple of float, optional
        Integration interval ``(t0, t1)``, default ``(0.0, 1.0)``.
    rtol, atol : float, optional
        Forward tolerances (default 1e-3, the paper's MNIST setting).
    method : {"adams", "lsoda", "bdf"}, optional
        Default ``"adams"``: VODE's implicit Adams, as in the paper.
    adjoint : {"checkpoint", "backsolve", "interpolate", "forward", "auto"}, str or AdjointOptions, optional
        How the gradient is computed (:func:`odegrad.tf.odeint`); default ``"checkpoint"``, the
        paper's adjoint, which suits the wide states of neural ODEs (``"auto"`` picks it for them;
        ``"forward"`` is for small states).
    checkpoints, adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm, adjoint_normalize : optional
        Options of the backward solves (default: as the forward solve; ``adjoint_normalize=True``,
        see :func:`odegrad.tf.odeint`).
    jit_compile : bool, optional
        Compile the solver's evaluations of ``func`` (and of ``func`` fused with its VJP) with
        XLA (default ``False``; see :func:`odegrad.tf.odeint`).
    device : str, optional
        Device of the compiled dynamics (default: where the block's input is, else the first GPU,
        else the CPU).

    Raises
    ------
    ValueError
        For a bad interval, method, tolerance or adjoint option, at construction.

    Attributes
    ----------
    nfe_forward : int
        Dynamics evaluations of the last forward solve that ran (eagerly, or in an executed graph:
        read it after the compiled call returns).
    nfe_backward : int
        Dynamics evaluations (of the augmented system) of the backward solve of that call.
    """

    def __init__(self, func: tf.keras.layers.Layer, t: Sequence[float] = (0.0, 1.0),
                 rtol: float = 1e-3, atol: float = 1e-3, method: str = "adams",
                 adjoint: str | AdjointOptions = "checkpoint", checkpoints: int = 0,
                 adjoint_method: str | None = None, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, adjoint_seminorm: bool = False,
                 jit_compile: bool = False, device: str | None = None, adjoint_normalize: bool = True,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(adjoint, AdjointOptions):
            given = tf_options(adjoint=adjoint).adjoint
            adjoint, checkpoints, adjoint_method = given.mode, given.checkpoints, given.method
            adjoint_rtol, adjoint_atol, adjoint_seminorm = given.rtol, given.atol, given.seminorm
            adjoint_normalize = given.normalize
        if len(t) != 2 or not all(np.isfinite(np.asarray(t, dtype=float))) or float(t[0]) == float(t[1]):
            raise ValueError(f"t must be an interval (t0, t1) of finite times with t0 != t1, got {t!r}")
        options = dict(rtol=rtol, atol=atol, method=method, adjoint=adjoint, checkpoints=checkpoints,
                       adjoint_method=adjoint_method, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                       adjoint_seminorm=adjoint_seminorm, adjoint_normalize=bool(adjoint_normalize))
        tf_options(**options)
        if device is not None and not isinstance(device, str):
            raise ValueError(f"device must be a device string such as '/GPU:0', got {device!r}")
        self.func = func
        self.t = (float(t[0]), float(t[1]))
        self.options = dict(options, jit_compile=bool(jit_compile), device=device)
        self.supports_jit = False
        self._info: SolveInfo | None = None

    def build(self, input_shape: Any) -> None:
        # A dynamics layer without its own build() is marked built by Keras (e.g. when a .keras
        # file is loaded) before its sub-layers exist: one call creates them.
        if not self.func.built or not self.func.weights:
            self.func(tf.constant(self.t[0]), tf.zeros([1 if d is None else d for d in input_shape]))
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        state = tf.cast(x, _state_dtype(x.dtype))
        ys, info = odeint(self.func, state, tf.constant(self.t, dtype=tf.float64),
                          variables=self.func.trainable_variables, full_output=True, **self.options)
        out = tf.cast(ys[-1], self.compute_dtype)
        if tf.executing_eagerly():
            object.__setattr__(self, "_info", info)
            return out
        # In a graph, every trace has its own info, which each execution restarts; the block
        # reports the info of the solve that ran last, so it is selected when the graph runs.
        def select() -> np.ndarray:
            object.__setattr__(self, "_info", info)
            return np.zeros((), np.int32)

        with tf.control_dependencies([ys]):
            selected = tf.numpy_function(select, [], tf.int32, stateful=True)
        with tf.control_dependencies([selected]):
            return tf.identity(out)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    @property
    def nfe_forward(self) -> int:
        return 0 if self._info is None else self._info.forward.nfe

    @property
    def nfe_backward(self) -> int:
        return 0 if self._info is None else self._info.backward.nfe

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(func=tf.keras.utils.serialize_keras_object(self.func), t=self.t, **self.options)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "ODEBlock":
        config = dict(config)
        config["func"] = tf.keras.utils.deserialize_keras_object(config["func"])
        return cls(**config)
