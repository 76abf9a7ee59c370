"""Keras models of Table 1: 1-layer MLP, ResNet, RK-Net and ODE-Net.

The convolutional models follow torchdiffeq's ``examples/odenet_mnist.py`` (the code
released with the paper, ``--downsampling-method conv``), in NHWC layout:

* downsampling: ``Conv 3x3, 64, valid`` (28 -> 26), GroupNorm, ReLU,
  ``Conv 4x4, 64, stride 2, pad 1`` (26 -> 13), GroupNorm, ReLU,
  ``Conv 4x4, 64, stride 2, pad 1`` (13 -> 6).  PyTorch's symmetric ``padding=1`` is a
  :class:`~keras.layers.ZeroPadding2D` followed by a ``valid`` convolution (Keras ``same``
  padding would give 7x7 instead of 6x6 on the 13x13 map);
* feature layers: ResNet = six pre-activation residual blocks (GroupNorm, ReLU, conv3x3
  without bias, GroupNorm, ReLU, conv3x3 without bias, identity shortcut); ODE-Net = one
  ODE block (:class:`odegrad.tf.ODEBlock`, adjoint gradients) whose dynamics are
  :class:`ODEFunc` (GroupNorm, ReLU, ConcatConv2d 3x3, GroupNorm, ReLU, ConcatConv2d 3x3,
  GroupNorm; the time is concatenated as an extra input channel); RK-Net = the same
  dynamics integrated on ``[0, 1]`` by :class:`RKBlock`, by default the **adaptive
  Dormand-Prince 5(4)** solver at the ODE-Net's tolerance written in TensorFlow
  (:mod:`experiments.mnist.runge_kutta`), gradients backpropagated directly through all its
  steps (as the paper's RK-Net); fixed-step classical RK4 is an option;
* head: GroupNorm, ReLU, global average pooling, ``Dense(10)``.

GroupNorm is :class:`keras.layers.GroupNormalization` with ``min(32, channels)`` groups and
``epsilon=1e-5`` (PyTorch's default), which has the same ``2 * channels`` parameters as
``torch.nn.GroupNorm``.  The parameter counts therefore equal torchdiffeq's exactly:
576,778 (ResNet) and 208,266 (ODE-Net and RK-Net); ``python -m experiments.mnist.parameters``
prints them beside the paper's.  The paper's Table 1 gives 0.60M and 0.22M and does not say which
variant it counted: torchdiffeq's other downsampling (``--downsampling-method res``, two
strided residual blocks with 1x1 projections) adds 24,704 parameters, giving 601,482
(0.60M) for the ResNet but 232,970 (0.23M) for the ODE-Net, so neither released variant
matches both figures.  We use the script's default, ``conv``.

The MLP is LeCun et al. (1998)'s one-hidden-layer network: 784 -> 300 (ReLU) -> 10,
238,510 parameters (the paper's 0.24M).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from experiments.mnist.protocol import MODEL_NAMES, RK_METHODS
from experiments.mnist.runge_kutta import dopri5, rk4

WIDTH = 64
IMAGE_SHAPE = (28, 28, 1)
INTEGRATION_TIME = (0.0, 1.0)


def group_norm(channels: int) -> keras.layers.GroupNormalization:
    """GroupNorm with ``min(32, channels)`` groups, as torchdiffeq's ``norm``.

    Parameters
    ----------
    channels : int
        Number of channels (last axis).

    Returns
    -------
    keras.layers.GroupNormalization
    """
    return keras.layers.GroupNormalization(groups=min(32, channels), epsilon=1e-5)


class ResBlock(keras.layers.Layer):
    """Pre-activation residual block of torchdiffeq (``ResBlock(64, 64)``).

    Parameters
    ----------
    channels : int
        Input and output channels.
    """

    def __init__(self, channels: int = WIDTH, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels = channels
        self.norm1 = group_norm(channels)
        self.conv1 = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)
        self.norm2 = group_norm(channels)
        self.conv2 = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)

    def build(self, input_shape: tuple) -> None:
        shape = (None, None, None, self.channels)
        for layer in (self.norm1, self.conv1, self.norm2, self.conv2):
            layer.build(shape)
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        out = self.conv1(tf.nn.relu(self.norm1(x)))
        out = self.conv2(tf.nn.relu(self.norm2(out)))
        return out + x


class ConcatConv2d(keras.layers.Layer):
    """3x3 convolution of ``[t, x]``: the time is broadcast as an extra input channel.

    Parameters
    ----------
    channels_in, channels_out : int
        Channels of ``x`` and of the output (the kernel has ``channels_in + 1`` inputs).
    kernel_size : int
        Square kernel size; ``same`` padding (torchdiffeq's ``ksize=3, padding=1``).
    """

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(channels_out, kernel_size, padding="same", use_bias=True)
        self.conv.build((None, None, None, channels_in + 1))
        self.built = True

    def call(self, t: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        tt = tf.ones_like(x[..., :1]) * tf.cast(t, x.dtype)
        return self.conv(tf.concat([tt, x], axis=-1))


class ODEFunc(keras.layers.Layer):
    """Dynamics ``dh/dt = f(t, h)`` of the ODE-Net and RK-Net (torchdiffeq's ``ODEfunc``).

    GroupNorm, ReLU, ConcatConv2d, GroupNorm, ReLU, ConcatConv2d, GroupNorm.  Sub-layers are
    built in the constructor so that ``call(t, h)`` may be invoked by any solver.

    Parameters
    ----------
    channels : int
        Channels of the state ``h``.
    """

    def __init__(self, channels: int = WIDTH, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels = channels
        shape = (None, None, None, channels)
        self.norm1 = group_norm(channels)
        self.conv1 = ConcatConv2d(channels, channels)
        self.norm2 = group_norm(channels)
        self.conv2 = ConcatConv2d(channels, channels)
        self.norm3 = group_norm(channels)
        for norm in (self.norm1, self.norm2, self.norm3):
            norm.build(shape)
        self.built = True

    def call(self, t: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        out = self.conv1(t, tf.nn.relu(self.norm1(h)))
        out = self.conv2(t, tf.nn.relu(self.norm2(out)))
        return self.norm3(out)


class RKBlock(keras.layers.Layer):
    """RK-Net feature block: a Runge-Kutta solve on ``[t0, t1]``, backpropagated directly.

    The solver (:mod:`experiments.mnist.runge_kutta`) is written in TensorFlow, so the gradient is
    ordinary reverse-mode differentiation through every stage: the memory of a training
    step grows linearly with the number of dynamics evaluations L~ (the paper's O(L~)),
    unlike the adjoint ODE block.

    * ``method="dopri5"`` (the paper's RK-Net): adaptive Dormand-Prince 5(4) at
      ``rtol``/``atol``; L~ = ``2 + 6 * steps`` varies with the input and over training.
    * ``method="rk4"``: ``steps`` fixed steps of classical RK4, L~ = ``4 * steps``.

    NFE.  ``nfe_forward`` is the number of dynamics evaluations of the last call: a Python
    ``int`` when read eagerly, and, for dopri5, a scalar ``int32`` tensor when read inside
    the :func:`tf.function` that made the call (it is kept in a non-trainable
    :class:`tf.Variable` outside the model's weights, assigned in :meth:`call`).
    ``nfe_backward`` is 0: backpropagation evaluates the dynamics no further times; it runs
    the vector-Jacobian product of each evaluation recorded by the forward pass instead, so
    the backward work and memory follow ``nfe_forward``.  (The ODE-Net's ``nfe_backward``
    counts evaluations of its adjoint system.)

    Parameters
    ----------
    func : keras.layers.Layer
        Dynamics with ``call(t, h)``.
    method : {"dopri5", "rk4"}
        Solver.
    steps : int, optional
        RK4 steps (default 4); only with ``method="rk4"``.
    rtol, atol : float
        Tolerances of dopri5.
    max_steps : int
        Most dopri5 steps (accepted plus rejected) per call; beyond it the call raises
        :class:`tf.errors.InvalidArgumentError`.
    t : tuple of float
        Integration interval.

    Raises
    ------
    ValueError
        If ``method`` is unknown, ``steps`` is given for dopri5 or is below 1, or the
        tolerances are not positive.
    """

    def __init__(
        self,
        func: keras.layers.Layer,
        method: str = "dopri5",
        *,
        steps: int | None = None,
        rtol: float = 1e-3,
        atol: float = 1e-3,
        max_steps: int = 1000,
        t: tuple[float, float] = (0.0, 1.0),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if method not in RK_METHODS:
            raise ValueError(f"unknown RK-Net method {method!r}; choose one of {', '.join(RK_METHODS)}")
        if method == "dopri5" and steps is not None:
            raise ValueError("steps is the step count of method='rk4'; dopri5 chooses its steps from rtol/atol")
        if method == "rk4":
            steps = 4 if steps is None else int(steps)
            if steps < 1:
                raise ValueError(f"RKBlock needs at least one step, got steps={steps}")
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"RKBlock needs positive tolerances, got rtol={rtol}, atol={atol}")
        self.func = func
        self.method = method
        self.steps = steps
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.t0, self.t1 = float(t[0]), float(t[-1])
        self._nfe = tf.Variable(0, dtype=tf.int32, trainable=False, name="nfe_forward")
        self.nfe_backward = 0

    @property
    def nfe_forward(self) -> int | tf.Tensor:
        """Dynamics evaluations of the last call (a tensor inside a traced function, for dopri5)."""
        if self.method == "rk4":
            return 4 * self.steps
        return int(self._nfe.numpy()) if tf.executing_eagerly() else self._nfe.read_value()

    def build(self, input_shape: tuple) -> None:
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.method == "rk4":
            return rk4(self.func, x, self.t0, self.t1, self.steps)
        h, stats = dopri5(self.func, x, self.t0, self.t1, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps)
        self._nfe.assign(stats.nfe)
        return h


class Classifier(keras.Model):
    """``stem -> feature layers -> head`` as a subclassed model (runs eagerly or in graphs).

    Parameters
    ----------
    stem, features, head : list of keras.layers.Layer
        Applied in order.
    name : str
        Model name.
    """

    def __init__(
        self,
        stem: Sequence[keras.layers.Layer],
        features: Sequence[keras.layers.Layer],
        head: Sequence[keras.layers.Layer],
        name: str,
    ) -> None:
        super().__init__(name=name)
        self.stem = list(stem)
        self.features = list(features)
        self.head = list(head)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        for layer in (*self.stem, *self.features, *self.head):
            x = layer(x)
        return x

    @property
    def ode_block(self) -> keras.layers.Layer | None:
        """The feature block exposing ``nfe_forward``/``nfe_backward``, if any."""
        for layer in self.features:
            if hasattr(layer, "nfe_forward"):
                return layer
        return None


def downsampling() -> list[keras.layers.Layer]:
    """torchdiffeq's ``conv`` downsampling: 28x28x1 -> 6x6x64.

    Returns
    -------
    list of keras.layers.Layer
    """
    return [
        keras.layers.Conv2D(WIDTH, 3, padding="valid"),
        group_norm(WIDTH),
        keras.layers.ReLU(),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(WIDTH, 4, strides=2, padding="valid"),
        group_norm(WIDTH),
        keras.layers.ReLU(),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(WIDTH, 4, strides=2, padding="valid"),
    ]


def classification_head() -> list[keras.layers.Layer]:
    """GroupNorm, ReLU, global average pooling, ``Dense(10)``.

    Returns
    -------
    list of keras.layers.Layer
    """
    return [group_norm(WIDTH), keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]


def build_model(
    name: str,
    *,
    resnet_blocks: int = 6,
    rk_method: str = "dopri5",
    rk_steps: int | None = None,
    tol: float = 1e-3,
    method: str = "adams",
    jit_compile: bool = True,
    seed: int | None = None,
) -> Classifier:
    """Build and initialise one Table 1 model.

    Parameters
    ----------
    name : {"mlp", "resnet", "rknet", "odenet"}
        Which model.
    resnet_blocks : int
        Residual blocks of the ResNet (6 in the paper).
    rk_method : {"dopri5", "rk4"}
        Solver of the RK-Net (:class:`RKBlock`): adaptive dopri5 at ``tol`` (the paper's) or
        fixed-step RK4.
    rk_steps : int, optional
        Fixed RK4 steps of the RK-Net (default 4); only with ``rk_method="rk4"``.
    tol : float
        ``rtol = atol`` of the ODE-Net's solver (torchdiffeq's ``--tol``, default 1e-3) and of
        the RK-Net's dopri5.
    method : str
        Solver of the ODE block (passed to :class:`odegrad.tf.ODEBlock`).
    jit_compile : bool
        Compile the ODE block's dynamics evaluations with XLA (:class:`odegrad.tf.ODEBlock`);
        on by default here: per training step it is measured faster on the Table 1 block
        (``python -m benchmarks.odenet_step``), and the long runs amortise its compile time.
    seed : int, optional
        If given, :func:`keras.utils.set_random_seed` is called first so the initial weights
        are reproducible.

    Returns
    -------
    Classifier
        The model, already built on a ``(1, 28, 28, 1)`` input.

    Raises
    ------
    ValueError
        If ``name`` is unknown, a depth is not positive, or ``rk_steps`` is given with
        ``rk_method="dopri5"`` (checkpoints that stored only ``rk_steps`` were RK4: pass
        ``rk_method="rk4"``).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if name == "mlp":
        model = Classifier(
            [keras.layers.Flatten()],
            [keras.layers.Dense(300, activation="relu")],
            [keras.layers.Dense(10)],
            name="mlp",
        )
    elif name == "resnet":
        if resnet_blocks < 0:
            raise ValueError(f"resnet_blocks must be >= 0, got {resnet_blocks}")
        model = Classifier(downsampling(), [ResBlock(WIDTH) for _ in range(resnet_blocks)], classification_head(), "resnet")
    elif name == "rknet":
        if rk_method == "dopri5" and rk_steps is not None:
            raise ValueError(
                "rk_steps sets the fixed steps of rk_method='rk4'; the dopri5 RK-Net chooses its steps from tol. "
                "Pass rk_method='rk4' with rk_steps (RK-Net checkpoints that store only rk_steps are RK4)."
            )
        block = RKBlock(ODEFunc(WIDTH), rk_method, steps=rk_steps, rtol=tol, atol=tol, t=INTEGRATION_TIME)
        model = Classifier(downsampling(), [block], classification_head(), "rknet")
    elif name == "odenet":
        from odegrad.tf import ODEBlock

        # Appendix D's (and torchdiffeq's) absolute atol on the adjoint, the setting the committed
        # Table 1 runs were trained with; odegrad's default normalises the cotangent instead.
        block = ODEBlock(ODEFunc(WIDTH), t=INTEGRATION_TIME, rtol=tol, atol=tol, method=method,
                         jit_compile=jit_compile, adjoint_normalize=False)
        model = Classifier(downsampling(), [block], classification_head(), "odenet")
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    model(tf.zeros((1, *IMAGE_SHAPE)))
    return model


def count_parameters(model: keras.Model) -> int:
    """Number of trainable scalars.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    int
    """
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
