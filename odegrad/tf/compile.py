"""The compiled computations the scipy solver calls, their placement and their cache.

Each evaluation the solver makes is one call of a ``tf.function``-compiled computation
(:func:`compile_dynamics`), one flat float64 state in and one derivative out, placed on one device
(:func:`default_device`). Computations are cached per ``f`` (:func:`cache_of`) under one key,
built here and nowhere else (:func:`cache_key`), and reused only for the same trace of ``f``
(:attr:`odegrad.tf.tracing.Reads.key`), so a cache never changes the answer. The cache holds ``f``
weakly and its computations do not hold ``f`` (:class:`_WeakRhs`), so an ``f`` made afresh for
each call (a lambda, a closure) is freed with its compiled computations.
"""

from __future__ import annotations

import collections
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from .tracing import TFCallable

if TYPE_CHECKING:
    from .dynamics import TFDynamics

CACHE_SIZE = 16
"""Compiled computations kept per ``f`` (least recently used ones are dropped)."""

_compiled_cache: "weakref.WeakKeyDictionary[Any, collections.OrderedDict]" = weakref.WeakKeyDictionary()


def cache_of(f: TFCallable) -> collections.OrderedDict:
    """The cache of compiled computations of ``f``, kept as long as ``f`` lives (so repeated calls
    do not recompile); a fresh one for an ``f`` that cannot be weakly referenced."""
    try:
        return _compiled_cache.setdefault(f, collections.OrderedDict())
    except TypeError:
        return collections.OrderedDict()


class _WeakRhs:
    """The flat dynamics a cached computation traces, reached through the dynamics using it.

    The cache is keyed weakly on ``f``; a computation that held ``f`` (through its dynamics)
    would keep its own key, and so itself, alive for ever. This holds the dynamics that use the
    computation weakly instead: each fetch from the cache adds its dynamics, which lives while
    its solve runs, so a (re)trace, which happens inside a solve, always finds one. All of them
    share the cache key, so any one traces the same computation.
    """

    def __init__(self) -> None:
        self.users: "weakref.WeakSet[TFDynamics]" = weakref.WeakSet()

    def __call__(self, *args: tf.Tensor) -> tf.Tensor:
        user = next(iter(list(self.users)), None)
        if user is None:
            raise RuntimeError("odegrad.tf: a cached computation was traced with no live dynamics; "
                               "please report this as a bug")
        return user.rhs_of_state(*args)


_weak_rhs: "weakref.WeakKeyDictionary[Any, _WeakRhs]" = weakref.WeakKeyDictionary()
"""The :class:`_WeakRhs` each cached computation traces."""


def default_device(state: tf.Tensor | None = None) -> str:
    """Where the compiled dynamics run when ``device`` is not given.

    The device of ``state`` when it is an accelerator, or when ``state`` is a symbolic tensor
    placed by a device scope (e.g. one replica of ``tf.distribute.MirroredStrategy``); otherwise
    the first visible GPU, else the CPU.
    """
    placed = getattr(state, "device", "") or ""
    if placed and (tf.is_symbolic_tensor(state) or "CPU" not in placed.upper()):
        return placed
    return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def compile_dynamics(flat_f: Callable[..., tf.Tensor], n: int, dtype: tf.DType, jit_compile: bool = False,
                     device: str | None = None,
                     extra_specs: Sequence[tf.TensorSpec] = ()) -> Callable[..., tf.Tensor]:
    """``flat_f`` compiled with ``tf.function``: float64 state and time in, float64 derivative out.

    This is what the scipy solver evaluates (through :meth:`odegrad.tf.dynamics.TFDynamics.numpy_f`):
    a flat float64 state of ``n`` entries and a float64 time in, the flat float64 derivative out;
    inside, the state is cast to ``dtype``, so the computation runs in ``dtype`` end to end and only
    the boundary is float64 (with XLA the casts fuse into the first and last kernels).

    Parameters
    ----------
    flat_f : callable
        ``flat_f(y, t, *extra) -> dy`` on a flat state of ``dtype`` and a float64 time.
    n : int
        Entries of the flat state.
    dtype : tf.DType
        The dtype ``flat_f`` computes in.
    jit_compile : bool
        Compile with XLA (``tf.function(jit_compile=True)``). On the Table 1 block this takes
        less CPU time per evaluation than a plain graph (GroupNorm fuses into a few kernels;
        ``python -m benchmarks.tf_block``, ``benchmarks/results_tf_block.md``), at seconds of
        compilation per shape.
    device : str, optional
        Device scope of every operation of the computation (default: :func:`default_device`).
    extra_specs : sequence of tf.TensorSpec
        Further inputs after ``y`` and ``t`` (arguments of ``f``, an interpolated state).

    Returns
    -------
    tf.types.experimental.PolymorphicFunction
        ``compiled(y, t, *extra) -> tf.Tensor (n,)`` of float64.
    """
    device = device or default_device()
    signature = [tf.TensorSpec([n], tf.float64), tf.TensorSpec([], tf.float64), *extra_specs]

    @tf.function(input_signature=signature, jit_compile=jit_compile)
    def compiled(y, t, *extra):
        with tf.device(device):
            return tf.cast(flat_f(tf.cast(y, dtype), t, *extra), tf.float64)

    return compiled


def extra_specs(dynamics: "TFDynamics") -> list[tf.TensorSpec]:
    """The inputs of ``dynamics``' computation after ``y`` and ``t``: the interpolated forward
    state (float64, for the adjoint that reads ``y`` from a dense solution), then ``f``'s ``args``."""
    along = [tf.TensorSpec([int(np.prod(dynamics.shape))], tf.float64)] if dynamics.y_of_t is not None else []
    return along + [tf.TensorSpec(a.shape, a.dtype) for a in dynamics.args]


def cache_key(dynamics: "TFDynamics", extra: Sequence[tf.TensorSpec]) -> tuple:
    """The one key of ``dynamics``' compiled computation in the cache of its ``f``.

    How it was derived (each step and the layout of its state), the state's shape and dtype, the
    compilation options, the shapes and dtypes of the ``extra`` inputs, and what identifies the
    trace of ``f`` (:attr:`odegrad.tf.tracing.Reads.key`).
    """
    return (dynamics.derivation, dynamics.shape, dynamics.dtype.name, dynamics.jit_compile, dynamics.device,
            tuple((tuple(spec.shape), spec.dtype.name) for spec in extra), dynamics.reads.key)


def compiled_for(dynamics: "TFDynamics") -> Callable[..., tf.Tensor]:
    """:func:`compile_dynamics` of ``dynamics`` from the cache of its ``f``, compiled on a miss.

    ``dynamics`` becomes a user of the computation (:class:`_WeakRhs`) for as long as it lives.
    """
    cache, extra = dynamics.compiled, extra_specs(dynamics)
    key = cache_key(dynamics, extra)
    if key in cache:
        cache.move_to_end(key)
    else:
        rhs = _WeakRhs()
        cache[key] = compile_dynamics(rhs, dynamics.n, dynamics.dtype, dynamics.jit_compile, dynamics.device, extra)
        _weak_rhs[cache[key]] = rhs
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    _weak_rhs[cache[key]].users.add(dynamics)
    return cache[key]
