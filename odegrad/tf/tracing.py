"""What ``f`` reads: one trace of the dynamics, its variables, captures and fingerprint.

The solver's compiled computations are cached per ``f``; :func:`reads_of` decides whether a cached
one may be reused. It traces ``f`` afresh before each solve (:func:`probe`) and records the
trainable variables it reads (on every branch of its ``tf.cond``\\ s), the eager tensors it
captures from enclosing scopes, and a fingerprint of the traced graph, in which every Python number
and NumPy array read by ``f`` appears as a constant. A changed attribute, a mutated array or a
rebound tensor changes the key (:attr:`Reads.key`), so a cache never changes the answer.

Which variables, captures and arguments are differentiated, which ``tf.Variable`` ``f`` reads for
each variable, and in which order they form the flat parameter vector ``θ``, is decided here and
nowhere else: :func:`reads_of` makes one frozen :class:`Reads` per solve, and everything
downstream (the dynamics, their VJPs and Jacobians, the compile-cache key) asks it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Callable, Sequence

import tensorflow as tf

TFCallable = Callable[..., tf.Tensor]
"""``f(t, y, *args) -> dy/dt`` on TensorFlow tensors."""


def trainable_of(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` behind ``variable`` (a Keras 3 variable wraps one; under a
    ``tf.distribute`` strategy that one is a distributed variable).

    Inside a Keras layer's call under a mixed-precision policy a Keras variable's ``.value`` is a
    cast copy (e.g. float16), not the variable, so the wrapped variable is taken from ``_value``.
    """
    if isinstance(variable, tf.Variable):
        return variable
    for attribute in ("_value", "value"):
        inner = getattr(variable, attribute, None)
        if isinstance(inner, tf.Variable):
            return inner
    kind = f"{type(variable).__module__}.{type(variable).__qualname__}"
    raise TypeError(f"variables must be tf.Variable or Keras variables, got {kind}")


def variable_ids(variable: Any) -> set[int]:
    """Ids of every ``tf.Variable`` that reading ``variable`` may touch: itself, the variable a
    Keras variable wraps, and the per-device components of a distributed variable."""
    inner = trainable_of(variable)
    found = {id(variable), id(inner)}
    for component in getattr(inner, "values", ()) or ():
        found.add(id(component))
    return found


def read_by(ids: frozenset[int], read: Sequence[tf.Variable], default: tf.Variable) -> tf.Variable:
    """The variable among ``read`` (read by a trace of ``f``) that is one of ``ids`` (the
    :func:`variable_ids` of a differentiated variable), else ``default``.

    Under a ``tf.distribute`` strategy, which component of a distributed variable a trace reads
    depends on the context the trace runs in, so each trace (the probe, each compiled VJP) matches
    its own reads (:meth:`Reads.variables_read`).
    """
    return next((r for r in read if id(r) in ids), default)


def differentiated_variables(given: Sequence[Any] | None,
                             read: Sequence[tf.Variable]) -> tuple[tuple[Any, ...], tuple[frozenset[int], ...]]:
    """The variables to differentiate, each once, with the ids under which a trace may read each.

    Parameters
    ----------
    given : sequence of tf.Variable or Keras variables, or None
        The user's ``variables=`` (``None``: every variable in ``read``). A variable listed more
        than once, directly or through a wrapper (a Keras variable and the ``tf.Variable`` inside
        it, a distributed variable and its component), is one variable: its first entry is kept,
        so its gradient is not counted twice.
    read : sequence of tf.Variable
        The trainable variables a trace of ``f`` reads (:attr:`Probe.variables`).

    Returns
    -------
    variables : tuple
        ``given`` without repeats, in order: the inputs that receive gradients.
    ids : tuple of frozenset of int
        For each, its :func:`variable_ids`.

    Raises
    ------
    ValueError
        If ``f`` reads a trainable variable that ``given`` omits (its gradient would be None).
    TypeError
        If an entry of ``given`` is not a variable.
    """
    variables: list[Any] = []
    ids: list[frozenset[int]] = []
    for variable in read if given is None else given:
        found = frozenset(variable_ids(variable))
        if not any(found & seen for seen in ids):
            variables.append(variable)
            ids.append(found)
    missing = [v.name for v in read if not any(id(v) in i for i in ids)]
    if missing:
        raise ValueError(
            f"f reads the trainable variables {missing}, which are not in variables=; their gradients "
            "would silently be None. Add them to variables=, leave variables=None (every trainable "
            "variable f reads), or make them non-trainable."
        )
    return tuple(variables), tuple(ids)


def check_output(out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """``out`` of ``f(t, y)`` if it has ``y``'s shape (statically, or checked at run time)."""
    out = tf.convert_to_tensor(out)
    if out.shape.rank is not None and y.shape.rank is not None and not out.shape.is_compatible_with(y.shape):
        raise ValueError(
            f"f(t, y) returned shape {out.shape} for y of shape {y.shape}; f must return dy/dt with "
            "y's shape (a transposed or reshaped derivative would be integrated as garbage)"
        )
    if not (out.shape.is_fully_defined() and y.shape.is_fully_defined()):
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(out), tf.shape(y), message="f(t, y) must return dy/dt with y's shape")]):
            out = tf.identity(out)
    return out


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one trace of ``f`` read.

    Attributes
    ----------
    variables : tuple of tf.Variable
        The trainable variables.
    captures : tuple of tf.Tensor
        Eager tensors read from enclosing scopes (not variables).
    fingerprint : str
        Hash of the traced graph: changes with every Python number, NumPy array or structure
        ``f`` bakes into its trace.
    """

    variables: tuple[tf.Variable, ...]
    captures: tuple[tf.Tensor, ...]
    fingerprint: str


def probe(f: TFCallable, y_spec: tf.TensorSpec, args: Sequence[tf.Tensor], time_dtype: tf.DType = tf.float64) -> Probe:
    """Trace ``f(t, y, *args)`` once, eagerly scoped, and report what it reads.

    ``t`` is a scalar of ``time_dtype`` (the dtype of the output times), as in the solver's
    compiled dynamics.

    Raises
    ------
    ValueError
        If ``f`` returns a tensor of another shape than ``y``.
    TypeError
        If ``f`` reads a tensor of an enclosing graph (a ``tf.function`` or Keras model being
        traced): its value exists only inside that graph, so it must be passed through ``args``;
        or if ``f`` fails on a time of another dtype than ``y`` but works on one of ``y``'s.
    """
    concrete = _trace(f, y_spec, args, time_dtype)
    captures = []
    for external, _ in concrete.graph.captures:
        if external.dtype == tf.resource:
            continue
        if tf.is_symbolic_tensor(external):
            raise TypeError(
                f"f reads the graph tensor {external.name!r} from an enclosing scope (a tensor computed "
                "inside the tf.function or Keras model that calls odeint, e.g. a conditioning input); the "
                "solver runs outside that graph and cannot see it. Pass it explicitly: "
                "odeint(f, y0, t, args=(tensor,)) with f(t, y, tensor)."
            )
        captures.append(external)
    digest = hashlib.sha1(concrete.graph.as_graph_def().SerializeToString(deterministic=True)).hexdigest()
    return Probe(tuple(concrete.trainable_variables), tuple(captures), digest)


def _trace(f: TFCallable, y_spec: tf.TensorSpec, args: Sequence[tf.Tensor], time_dtype: tf.DType) -> Any:
    """The concrete function of ``f(t, y, *args)`` with ``t`` of ``time_dtype``."""
    arg_specs = [tf.TensorSpec(a.shape, a.dtype) for a in args]

    def concrete(dtype: tf.DType) -> Any:
        def traced(y, t, *a):
            return check_output(f(tf.cast(t, dtype), y, *a), y)

        with tf.init_scope():  # as the solver's compiled dynamics will be: outside any enclosing graph
            return tf.function(traced).get_concrete_function(y_spec, tf.TensorSpec([], tf.float64), *arg_specs)

    try:
        return concrete(time_dtype)
    except (TypeError, ValueError) as exc:
        if time_dtype == y_spec.dtype:
            raise
        try:
            concrete(y_spec.dtype)
        except Exception:
            raise exc from None
        raise TypeError(
            f"f fails on its time argument: t is passed to f as a {time_dtype.name} scalar (the dtype of "
            f"the output times, float64 for Python and NumPy numbers, so that f sees the time at the "
            f"solver's precision) but f combines it with {y_spec.dtype.name} tensors ({exc}). Cast it "
            "inside f: tf.cast(t, y.dtype); or give the output times as a tensor of y0's dtype (f then "
            "sees t rounded to that dtype, coarse at large t)."
        ) from exc


@dataclasses.dataclass(frozen=True, eq=False)
class Reads:
    """What ``f`` reads in one solve, and what of it is differentiated: the door's one answer.

    Made once per solve by :func:`reads_of`; the dynamics, their VJPs and Jacobians, the flat
    parameter vector ``θ`` and the compile-cache key all ask it.

    Attributes
    ----------
    variables : tuple
        The trainable variables to differentiate (as given: ``tf.Variable``, Keras or distributed
        variables), each once; the solve's inputs that receive their cotangents.
    sources : tuple of tf.Variable
        For each, the variable the probe's trace of ``f`` read.
    ids : tuple of frozenset of int
        For each, the ids under which a trace may read it (:func:`variable_ids` and its source).
    captures : tuple of tf.Tensor
        Eager tensors ``f`` reads from enclosing scopes; the floating ones are differentiated.
    fingerprint : str
        Hash of the traced graph (:attr:`Probe.fingerprint`).
    """

    variables: tuple[Any, ...]
    sources: tuple[tf.Variable, ...]
    ids: tuple[frozenset[int], ...]
    captures: tuple[tf.Tensor, ...]
    fingerprint: str

    @property
    def key(self) -> tuple:
        """What identifies the trace of ``f``: fingerprint, the variables and captures read."""
        return self.fingerprint, tuple(id(v) for v in self.sources), tuple(id(c) for c in self.captures)

    @functools.cached_property
    def differentiated_captures(self) -> tuple[tf.Tensor, ...]:
        """The captures that are differentiated: the floating ones."""
        return tuple(c for c in self.captures if c.dtype.is_floating)

    @staticmethod
    def differentiated_args(args: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The explicit arguments of ``f`` that are differentiated: the floating ones."""
        return [a for a in args if a.dtype.is_floating]

    @staticmethod
    def replace_args(args: Sequence[tf.Tensor], values: Sequence[Any]) -> tuple[tf.Tensor, ...]:
        """``args`` with the differentiated ones replaced by ``values`` (NumPy, in order)."""
        replaced = iter(values)
        return tuple(tf.constant(next(replaced), dtype=a.dtype) if a.dtype.is_floating else a for a in args)

    def watched(self, args: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The tensors of ``θ`` a tape must watch (captures, then ``args``; variables watch themselves)."""
        return [*self.differentiated_captures, *self.differentiated_args(args)]

    def params(self, args: Sequence[tf.Tensor]) -> list[Any]:
        """``θ``'s parts, in order: variables (the ``tf.Variable`` of each, whose dtype a Keras
        mixed-precision policy does not change), floating captures, floating ``args``."""
        return [*(trainable_of(v) for v in self.variables), *self.watched(args)]

    def variables_read(self, watched: Sequence[tf.Variable]) -> list[tf.Variable]:
        """For each differentiated variable, the ``tf.Variable`` a trace read (``watched``: its
        tape's :meth:`tf.GradientTape.watched_variables`), else the probe's (:func:`read_by`)."""
        return [read_by(ids, watched, source) for ids, source in zip(self.ids, self.sources)]


def reads_of(f: TFCallable, y_spec: tf.TensorSpec, args: Sequence[tf.Tensor], time_dtype: tf.DType,
             variables: Sequence[Any] | None = None) -> Reads:
    """Trace ``f`` once (:func:`probe`) and decide what of what it reads is differentiated.

    Parameters
    ----------
    f : callable
        ``f(t, y, *args)``.
    y_spec : tf.TensorSpec
        The state's shape and dtype.
    args : sequence of tf.Tensor
        The explicit arguments of ``f``.
    time_dtype : tf.DType
        The dtype of the time ``f`` receives.
    variables : sequence of tf.Variable or Keras variables, optional
        The user's ``variables=`` (:func:`differentiated_variables`).

    Returns
    -------
    Reads

    Raises
    ------
    ValueError, TypeError
        As :func:`probe` and :func:`differentiated_variables`.
    """
    read = probe(f, y_spec, args, time_dtype)
    chosen, ids = differentiated_variables(variables, read.variables)
    sources = tuple(read_by(i, read.variables, trainable_of(v)) for v, i in zip(chosen, ids))
    ids = tuple(i | {id(s)} for i, s in zip(ids, sources))
    return Reads(chosen, sources, ids, read.captures, read.fingerprint)
