"""The TensorFlow backend: dynamics as TF computations and the differentiable solve.

A host-side scipy solver does the stepping; each of its evaluations is one call of a
``tf.function``-compiled computation (forward: ``f``; backward: ``f`` and its VJP fused), one
state in and one derivative out. The adjoint is :func:`odegrad.adjoint.backward` run with
:class:`TFOps`: eagerly through ``tf.custom_gradient`` (differentiable again), or inside a
``tf.function`` through ``tf.py_function`` (first derivatives).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from .. import solvers
from ..adjoint import backward
from ..augmented import AugmentedLayout
from ..options import AdjointOptions
from ..stats import SolveInfo

TFCallable = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
"""``f(t, y) -> dy/dt`` on TensorFlow tensors."""


class TFOps:
    """:class:`odegrad.adjoint.Ops` from TensorFlow."""

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


_compiled_cache: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def cache_of(f: TFCallable) -> dict:
    """The cache of compiled dynamics of ``f``, kept as long as ``f`` lives (so repeated calls do
    not retrace); a fresh dict for an ``f`` that cannot be weakly referenced."""
    try:
        return _compiled_cache.setdefault(f, {})
    except TypeError:
        return {}


def flatten_dynamics(f: TFCallable, shape: Sequence[int]) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """``flat_f(y, t)``: ``f(t, y)`` on flat states for a state of ``shape``."""
    def flat_f(y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return tf.reshape(f(t, tf.reshape(y, shape)), [-1])

    return flat_f


def compile_dynamics(flat_f: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], n: int,
                     dtype: tf.DType, jit_compile: bool = False) -> Callable[[np.ndarray, float], np.ndarray]:
    """``flat_f`` compiled with ``tf.function``, called with and returning float64 NumPy.

    This is the callable the scipy solver evaluates: a flat float64 state of ``n`` entries and a
    time in, the flat float64 derivative out; inside, the state is cast to ``dtype``, so the
    computation runs in ``dtype`` end to end and only the boundary is float64 (with XLA the casts
    fuse into the first and last kernels).

    Parameters
    ----------
    flat_f : callable
        ``flat_f(y, t) -> dy`` on flat tensors of ``dtype``.
    n : int
        Entries of the flat state.
    dtype : tf.DType
        The dtype ``flat_f`` computes in.
    jit_compile : bool
        Compile with XLA (``tf.function(jit_compile=True)``). On the Table 1 block this takes
        about 40% less CPU time per evaluation than a plain graph (GroupNorm fuses into a few
        kernels; ``python -m benchmarks.tf_block``), at seconds of compilation per shape.

    Returns
    -------
    callable
        ``fun(y, t) -> ndarray (n,)``.
    """
    @tf.function(input_signature=[tf.TensorSpec([n], tf.float64), tf.TensorSpec([], tf.float64)],
                 jit_compile=jit_compile)
    def compiled(y, t):
        return tf.cast(flat_f(tf.cast(y, dtype), tf.cast(t, dtype)), tf.float64)

    return lambda y, t: compiled(y, t).numpy()


@dataclasses.dataclass(eq=False)
class TFDynamics:
    """A :class:`odegrad.adjoint.Dynamics` whose ``f`` is a TensorFlow computation.

    Attributes
    ----------
    flat_f : callable
        ``flat_f(y, t)`` maps a flat state (of ``dtype``) to its flat derivative; it may read
        ``variables``, the parameters the adjoint differentiates.
    n : int
        Entries of the flat state.
    dtype : tf.DType
    variables : tuple of tf.Variable
    opts, backward_opts : SolverOptions
        Options of this solve and of the backward solves.
    adjoint : AdjointOptions
    info : SolveInfo
    stage : {"forward", "backward"}
        Which count of ``info`` this dynamics' solves add to.
    jit_compile : bool
        Compile the solver's evaluations with XLA (:func:`compile_dynamics`).
    compiled : dict
        Cache of compiled dynamics, keyed by ``key``.
    key : tuple
    """

    flat_f: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    n: int
    dtype: tf.DType
    variables: tuple[tf.Variable, ...]
    opts: solvers.SolverOptions
    backward_opts: solvers.SolverOptions
    adjoint: AdjointOptions
    info: SolveInfo
    compiled: dict
    key: tuple
    stage: str = "forward"
    jit_compile: bool = False
    _derived: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.variables))

    def f(self, y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return self.flat_f(y, t)

    @property
    def numpy_f(self) -> Callable[[np.ndarray, float], np.ndarray]:
        """:func:`compile_dynamics` of ``flat_f``, compiled once per ``key`` and XLA setting."""
        key = self.key + (self.jit_compile,)
        if key not in self.compiled:
            self.compiled[key] = compile_dynamics(self.flat_f, self.n, self.dtype, self.jit_compile)
        return self.compiled[key]

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve."""
        self.info.record(self.stage, stats)

    def augmented(self, layout: AugmentedLayout) -> "TFDynamics":
        """The dynamics of the backward state ``layout``, built once per layout."""
        if layout not in self._derived:
            self._derived[layout] = self._augmented(layout)
        return self._derived[layout]

    def _augmented(self, layout: AugmentedLayout) -> "TFDynamics":
        flat_f, variables = self.flat_f, list(self.variables)
        watched = variables if layout.with_params else []

        def aug_f(s, t):
            y, a, _, _ = layout.split(s)
            with tf.GradientTape() as tape:
                tape.watch([y, t] if layout.with_time else [y])
                dy = flat_f(y, t)
            sources = [y] + ([t] if layout.with_time else []) + watched
            v_y, *rest = tape.gradient(dy, sources, output_gradients=a, unconnected_gradients="zero")
            v_t = tf.reshape(rest.pop(0), [1]) if layout.with_time else None
            flat_theta = [tf.reshape(tf.cast(v, s.dtype), [-1]) for v in rest]
            v_theta = TFOps.concat(flat_theta) if flat_theta else tf.zeros([0], s.dtype)
            return layout.join(TFOps.concat, dy, -v_y, None if v_t is None else -v_t, -v_theta)

        opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
        return dataclasses.replace(
            self, flat_f=aug_f, n=layout.size, opts=opts, backward_opts=opts, stage="backward",
            key=self.key + ("augmented", layout),
        )

    def split_params(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """Split a flat parameter cotangent into one tensor per variable."""
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        parts = tf.split(flat, sizes) if sizes else []
        return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, self.variables)]


def _forward_numpy(s0: np.ndarray, times: np.ndarray, dynamics: TFDynamics) -> np.ndarray:
    ys, stats = solvers.solve(dynamics.numpy_f, s0, times, dynamics.opts)
    dynamics.record(stats)
    return ys


def solve_eager(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> tf.Tensor:
    """Differentiable solve in eager mode; its gradient is again differentiable."""
    params = [tf.convert_to_tensor(v) for v in dynamics.variables]
    holder: dict[str, tf.Tensor] = {}

    @tf.custom_gradient
    def op(s0, times, *params):
        ys_np = _forward_numpy(s0.numpy().astype(np.float64), times.numpy().astype(np.float64), dynamics)

        def grad(g, variables=None):
            g_s0, g_t, g_theta = backward(g, holder["ys"], times, dynamics, solve_eager, TFOps,
                                          dynamics.adjoint.mode)
            grads = [g_s0, g_t] + dynamics.split_params(g_theta)
            return grads, [None] * len(variables or [])

        return tf.constant(ys_np, dtype=s0.dtype), grad

    ys = op(s0, times, *params)
    holder["ys"] = ys
    return ys


def solve_graph(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> tf.Tensor:
    """Solve inside a ``tf.function`` (e.g. ``model.fit``): eager solves bridged by py_function.

    The graph runs the solve of one traced ``odeint`` call at every execution, so each forward
    execution restarts the call's statistics. First derivatives only: the backward pass runs the
    eager adjoint inside ``tf.py_function``.
    """
    params = [tf.convert_to_tensor(v) for v in dynamics.variables]
    shape = [None, dynamics.n]

    @tf.custom_gradient
    def op(s0, times, *params):
        def forward(s0, times):
            dynamics.info.restart()
            return _forward_numpy(s0.numpy().astype(np.float64), times.numpy().astype(np.float64),
                                  dynamics).astype(s0.dtype.as_numpy_dtype)

        ys = tf.py_function(forward, [s0, times], Tout=s0.dtype)
        ys.set_shape(shape)

        def grad(g, variables=None):
            def eager_backward(g, ys, times):
                g_s0, g_t, g_theta = backward(g, ys, times, dynamics, solve_eager, TFOps,
                                              dynamics.adjoint.mode)
                return [g_s0, g_t] + dynamics.split_params(g_theta)

            tout = [s0.dtype, times.dtype] + [v.dtype for v in dynamics.variables]
            grads = tf.py_function(eager_backward, [g, ys, times], Tout=tout)
            for tensor, like in zip(grads, [s0, times, *params]):
                tensor.set_shape(like.shape)
            return grads, [None] * len(variables or [])

        return ys, grad

    return op(s0, times, *params)


def discover_variables(f: TFCallable, t0: tf.Tensor, y0: tf.Tensor) -> tuple[tf.Variable, ...]:
    """The trainable variables ``f`` reads when called once at ``(t0, y0)``."""
    with tf.GradientTape(watch_accessed_variables=True) as tape:
        f(t0, y0)
    return tuple(tape.watched_variables())
