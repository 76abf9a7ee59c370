"""TensorFlow dynamics: ``odeint`` for TF tensors and the Keras :class:`ODEBlock`.

As in the paper's experiments, a host-side scipy solver does the stepping while the dynamics and
their vector-Jacobian products run in TensorFlow (on the GPU when one is visible: TensorFlow's
normal placement; per evaluation one state goes in and one derivative comes out). The adjoint is
:func:`odegrad.adjoint.backward` — the same Algorithm 1 as the autograd front door — run with
TensorFlow operations, so nested ``tf.GradientTape``\\ s give higher derivatives in eager mode.

Importing this module imports TensorFlow; ``import odegrad`` alone does not.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Sequence

import numpy as np

try:
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError(
        "odegrad.tf needs TensorFlow; install it with `pip install -e \".[tf]\"` in a clone of odegrad, "
        "`pip install \"odegrad[tf]\"` otherwise (or `pip install tensorflow`)."
    ) from exc

from . import solvers
from .adjoint import augmented_options, backward
from .stats import SolveInfo, new_info
from .validation import as_real_array, check_methods, check_times, tolerance

__all__ = ["odeint", "ODEBlock"]

TFCallable = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

TF_ADJOINT_MODES = ("checkpoint", "backsolve")
"""``"interpolate"`` needs a dense forward solve of the dynamics, which only the autograd path has."""


class _TFOps:
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


@dataclasses.dataclass(eq=False)
class _TFDynamics:
    """A :class:`odegrad.adjoint.Dynamics` whose ``f`` is a TensorFlow computation.

    ``flat_f(y, t)`` maps a flat state (of ``dtype``) to its flat derivative; it may read
    ``variables``, which are the parameters the adjoint differentiates.
    """

    flat_f: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    n: int
    dtype: tf.DType
    variables: tuple[tf.Variable, ...]
    opts: solvers.SolverOptions
    adjoint_opts: solvers.SolverOptions
    mode: str
    seminorm: bool
    info: SolveInfo
    compiled: dict
    key: tuple
    role: str = "forward"

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.variables))

    def f(self, y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return self.flat_f(y, t)

    @property
    def numpy_f(self) -> Callable[[np.ndarray, float], np.ndarray]:
        """``f`` compiled with ``tf.function``, called with and returning float64 numpy."""
        if self.key not in self.compiled:
            dtype, flat_f = self.dtype, self.flat_f

            @tf.function(input_signature=[tf.TensorSpec([self.n], tf.float64),
                                          tf.TensorSpec([], tf.float64)])
            def compiled(y, t):
                return tf.cast(flat_f(tf.cast(y, dtype), tf.cast(t, dtype)), tf.float64)

            self.compiled[self.key] = lambda y, t: compiled(y, t).numpy()
        return self.compiled[self.key]

    def augmented(self) -> "_TFDynamics":
        if "_augmented" not in self.__dict__:
            n, flat_f, variables = self.n, self.flat_f, list(self.variables)

            def aug_f(s, t):
                y, a = s[:n], s[n:2 * n]
                with tf.GradientTape() as tape:
                    tape.watch([y, t])
                    dy = flat_f(y, t)
                v_y, v_t, *v_theta = tape.gradient(dy, [y, t] + variables, output_gradients=a,
                                                   unconnected_gradients="zero")
                flat_theta = [tf.reshape(tf.cast(v, s.dtype), [-1]) for v in v_theta]
                return tf.concat([dy, -v_y, -tf.reshape(v_t, [1])] + [-v for v in flat_theta], 0)

            opts = augmented_options(self.adjoint_opts, n, self.n_params, self.seminorm)
            self.__dict__["_augmented"] = dataclasses.replace(
                self, flat_f=aug_f, n=2 * n + 1 + self.n_params, opts=opts, adjoint_opts=opts,
                role="backward", key=self.key + ("augmented",),
            )
        return self.__dict__["_augmented"]

    def split_params(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """Split a flat parameter cotangent into one tensor per variable."""
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        parts = tf.split(flat, sizes) if sizes else []
        return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, self.variables)]


def _forward_numpy(s0: np.ndarray, times: np.ndarray, dynamics: _TFDynamics) -> np.ndarray:
    ys, stats = solvers.solve(dynamics.numpy_f, s0, times, dynamics.opts)
    if dynamics.role == "forward":
        # A traced call (model.fit) reuses one info for every step: a forward solve starts anew.
        dynamics.info.forward = stats
        dynamics.info.backward = solvers.SolveStats(method=dynamics.adjoint_opts.method)
    else:
        dynamics.info.backward.add(stats)
    return ys


def _solve_eager(s0: tf.Tensor, times: tf.Tensor, dynamics: _TFDynamics) -> tf.Tensor:
    """Differentiable solve in eager mode; its gradient is again differentiable."""
    params = [tf.convert_to_tensor(v) for v in dynamics.variables]
    holder: dict[str, tf.Tensor] = {}

    @tf.custom_gradient
    def op(s0, times, *params):
        ys_np = _forward_numpy(s0.numpy().astype(np.float64), times.numpy().astype(np.float64), dynamics)

        def grad(g, variables=None):
            g_s0, g_t, g_theta = backward(g, holder["ys"], times, dynamics, _solve_eager, _TFOps,
                                          dynamics.mode)
            grads = [g_s0, g_t] + dynamics.split_params(g_theta)
            return grads, [None] * len(variables or [])

        return tf.constant(ys_np, dtype=s0.dtype), grad

    ys = op(s0, times, *params)
    holder["ys"] = ys
    return ys


def _solve_graph(s0: tf.Tensor, times: tf.Tensor, dynamics: _TFDynamics) -> tf.Tensor:
    """Solve inside a ``tf.function`` (e.g. ``model.fit``): eager solves bridged by py_function.

    First derivatives only: the backward pass runs the eager adjoint inside ``tf.py_function``.
    """
    params = [tf.convert_to_tensor(v) for v in dynamics.variables]
    shape = [None, dynamics.n]

    @tf.custom_gradient
    def op(s0, times, *params):
        def forward(s0, times):
            return _forward_numpy(s0.numpy().astype(np.float64), times.numpy().astype(np.float64),
                                  dynamics).astype(s0.dtype.as_numpy_dtype)

        ys = tf.py_function(forward, [s0, times], Tout=s0.dtype)
        ys.set_shape(shape)

        def grad(g, variables=None):
            def eager_backward(g, ys, times):
                g_s0, g_t, g_theta = backward(g, ys, times, dynamics, _solve_eager, _TFOps,
                                              dynamics.mode)
                return [g_s0, g_t] + dynamics.split_params(g_theta)

            tout = [s0.dtype, times.dtype] + [v.dtype for v in dynamics.variables]
            grads = tf.py_function(eager_backward, [g, ys, times], Tout=tout)
            for tensor, like in zip(grads, [s0, times, *params]):
                tensor.set_shape(like.shape)
            return grads, [None] * len(variables or [])

        return ys, grad

    return op(s0, times, *params)


_compiled_cache: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _compiled_for(f: TFCallable) -> dict:
    """The cache of compiled dynamics of ``f`` (so repeated calls do not retrace)."""
    try:
        return _compiled_cache.setdefault(f, {})
    except TypeError:
        return {}


def _discover_variables(f: TFCallable, t0: tf.Tensor, y0: tf.Tensor) -> tuple[tf.Variable, ...]:
    with tf.GradientTape(watch_accessed_variables=True) as tape:
        f(t0, y0)
    return tuple(tape.watched_variables())


def odeint(
    f: TFCallable,
    y0: Any,
    t: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    method: str = "lsoda",
    adjoint: str = "checkpoint",
    adjoint_method: str | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_seminorm: bool = False,
    variables: Sequence[tf.Variable] | None = None,
    full_output: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, SolveInfo]:
    """Integrate ``dy/dt = f(t, y)`` for TensorFlow dynamics; differentiable by the adjoint.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt``: a TensorFlow function, Keras layer or ``tf.Module``; ``t`` is a
        scalar tensor and ``y`` has ``y0``'s shape and dtype.
    y0 : tf.Tensor or array_like
        Initial state, any shape (e.g. a batch of feature maps), float32 or float64.
    t : tf.Tensor or array_like, shape (T,)
        Strictly monotonic output times.
    rtol, atol : float, optional
        Tolerances of the forward solve (default 1.49012e-8, as scipy's odeint).
    method : {"lsoda", "adams", "bdf"}, optional
        The scipy back-end; ``"adams"`` is the paper's implicit Adams (VODE).
    adjoint : {"checkpoint", "backsolve"}, optional
        As in :func:`odegrad.odeint` (``"interpolate"`` is autograd-only).
    adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm
        As in :func:`odegrad.odeint`.
    variables : sequence of tf.Variable, optional
        The trainable variables ``f`` reads. Default: every trainable variable ``f`` reads when
        called once at ``(t[0], y0)``.
    full_output : bool, optional
        Also return the call's :class:`odegrad.SolveInfo` (backward statistics are filled in
        when a gradient is taken).

    Returns
    -------
    ys : tf.Tensor, shape (T,) + y0.shape
        The states at ``t``. Differentiable with ``tf.GradientTape`` with respect to ``y0``,
        ``t`` and ``variables``; memory does not grow with the number of solver steps. Nested
        tapes give second derivatives in eager mode.
    """
    adjoint_method = check_methods(method, adjoint_method, adjoint, TF_ADJOINT_MODES)
    y0 = tf.convert_to_tensor(y0)
    if not y0.dtype.is_floating:
        y0 = tf.cast(y0, tf.float32)
    t = tf.cast(tf.convert_to_tensor(t), y0.dtype)
    eager = tf.executing_eagerly()
    if eager:
        as_real_array("y0", y0.numpy())
        check_times(as_real_array("t", t.numpy()))
    shape = y0.shape
    if variables is None:
        variables = _discover_variables(f, t[0], y0)

    def flat_f(y, tt):
        return tf.reshape(f(tt, tf.reshape(y, shape)), [-1])

    n = int(np.prod(shape))
    opts = solvers.SolverOptions(method=method, rtol=tolerance("rtol", rtol, ()),
                                 atol=tolerance("atol", atol, ()))
    adjoint_opts = solvers.SolverOptions(
        method=adjoint_method,
        rtol=opts.rtol if adjoint_rtol is None else tolerance("adjoint_rtol", adjoint_rtol, ()),
        atol=opts.atol if adjoint_atol is None else tolerance("adjoint_atol", adjoint_atol, ()),
    )
    info = new_info(method, adjoint_method)
    dynamics = _TFDynamics(flat_f=flat_f, n=n, dtype=y0.dtype, variables=tuple(variables),
                           opts=opts, adjoint_opts=adjoint_opts, mode=adjoint,
                           seminorm=adjoint_seminorm, info=info, compiled=_compiled_for(f),
                           key=(tuple(shape), y0.dtype.name, tuple(id(v) for v in variables)))
    solve = _solve_eager if eager else _solve_graph
    ys = tf.reshape(solve(tf.reshape(y0, [-1]), t, dynamics), tf.concat([[-1], tf.shape(y0)], 0))
    return (ys, info) if full_output else ys


@tf.keras.utils.register_keras_serializable(package="odegrad")
class ODEBlock(tf.keras.layers.Layer):
    """A Keras layer mapping ``h(t0)`` to ``h(t1)`` by solving ``dh/dt = func(t, h)``.

    Gradients come from the adjoint method (:func:`odeint`), so training memory does not grow
    with the number of solver steps. Works in ``Sequential`` and functional models, with
    ``model.fit`` (compiled models run the solver through ``tf.py_function``, so XLA is off for
    this layer) and custom ``tf.GradientTape`` loops.

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
    adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm : optional
        Options of the backward solves (default: as the forward solve).

    Attributes
    ----------
    nfe_forward : int
        Dynamics evaluations of the last forward solve.
    nfe_backward : int
        Dynamics evaluations (of the augmented system) of the last backward solve.
    """

    def __init__(self, func: tf.keras.layers.Layer, t: Sequence[float] = (0.0, 1.0),
                 rtol: float = 1e-3, atol: float = 1e-3, method: str = "adams",
                 adjoint_method: str | None = None, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, adjoint_seminorm: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if len(t) != 2 or float(t[0]) == float(t[1]):
            raise ValueError(f"t must be an interval (t0, t1) with t0 != t1, got {t!r}")
        self.func = func
        self.t = (float(t[0]), float(t[1]))
        self.options = dict(rtol=rtol, atol=atol, method=method, adjoint_method=adjoint_method,
                            adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                            adjoint_seminorm=adjoint_seminorm)
        self.supports_jit = False
        self._info: SolveInfo | None = None

    def build(self, input_shape: Any) -> None:
        if not self.func.built:
            self.func(tf.constant(self.t[0]), tf.zeros([1 if d is None else d for d in input_shape]))
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        ys, info = odeint(self.func, x, tf.constant(self.t, dtype=x.dtype),
                          variables=self.func.trainable_variables, full_output=True, **self.options)
        object.__setattr__(self, "_info", info)
        return ys[-1]

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
