"""What ``f`` reads: one trace of the dynamics, its variables, captures and fingerprint.

The solver's compiled computations are cached per ``f``; :func:`probe` decides whether a cached
one may be reused. It traces ``f`` afresh before each solve and records the trainable variables
it reads (on every branch of its ``tf.cond``\\ s), the eager tensors it captures from enclosing
scopes, and a fingerprint of the traced graph, in which every Python number and NumPy array read by
``f`` appears as a constant. A changed attribute, a mutated array or a rebound tensor changes the
key, so a cache never changes the answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Sequence

import tensorflow as tf

TFCallable = Callable[..., tf.Tensor]
"""``f(t, y, *args) -> dy/dt`` on TensorFlow tensors."""


def trainable_of(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` behind ``variable`` (a Keras 3 variable wraps one as ``.value``; under a
    ``tf.distribute`` strategy that one is a distributed variable)."""
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(f"variables must be tf.Variable or Keras variables, got {type(variable).__name__}")


def variable_ids(variable: Any) -> set[int]:
    """Ids of every ``tf.Variable`` that reading ``variable`` may touch: itself, the variable a
    Keras variable wraps, and the per-device components of a distributed variable."""
    inner = trainable_of(variable)
    found = {id(variable), id(inner)}
    for component in getattr(inner, "values", ()) or ():
        found.add(id(component))
    return found


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


def probe(f: TFCallable, y_spec: tf.TensorSpec, args: Sequence[tf.Tensor]) -> Probe:
    """Trace ``f(t, y, *args)`` once, eagerly scoped, and report what it reads.

    Raises
    ------
    ValueError
        If ``f`` returns a tensor of another shape than ``y``.
    TypeError
        If ``f`` reads a tensor of an enclosing graph (a ``tf.function`` or Keras model being
        traced): its value exists only inside that graph, so it must be passed through ``args``.
    """
    arg_specs = [tf.TensorSpec(a.shape, a.dtype) for a in args]

    def traced(y, t, *a):
        return check_output(f(tf.cast(t, y.dtype), y, *a), y)

    with tf.init_scope():  # as the solver's compiled dynamics will be: outside any enclosing graph
        concrete = tf.function(traced).get_concrete_function(y_spec, tf.TensorSpec([], tf.float64), *arg_specs)
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
