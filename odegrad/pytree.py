"""Flatten the ``args`` of ``odeint`` into one parameter vector, and back.

``args`` is whatever the user passes to ``scipy.integrate.odeint``: a tuple whose entries may be
floats, arrays, lists, tuples, dicts (nested), or anything else. Float-valued leaves (Python
floats, float arrays, autograd boxes) become parameters: they are raveled into one flat vector
that autograd differentiates. Every other leaf (ints, bools, strings, functions, None) is static
and passed through unchanged, so ``args=(p, 3)`` with an integer exponent just works.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd.extend import SparseObject, defjvp, defvjp, primitive, vspace
from autograd.tracer import getval, isbox


@primitive
def take_slice(flat: np.ndarray, start: int, stop: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``flat[start:stop]`` (reshaped to ``shape`` if given) whose gradient is a slice assignment.

    autograd's own slicing gradient scatters with ``np.add.at``, which dominated the backward
    pass for wide networks (a scatter per slice costs about a hundred times an assignment).
    ``take_slice`` and :func:`put_slice` are each other's derivative, so every order works; one
    node per leaf, reshape included, keeps the traces of small dynamics short.
    """
    piece = flat[start:stop]
    return piece if shape is None else piece.reshape(shape)


@functools.lru_cache(maxsize=256)
def _vector_space(size: int, dtype: np.dtype) -> Any:
    return vspace(np.zeros(size, dtype=dtype))


@primitive
def put_slice(piece: np.ndarray, start: int, size: int) -> SparseObject:
    """A vector of ``size`` zeros with the entries of ``piece`` at ``[start:start + piece.size]``.

    Returned as autograd's ``SparseObject`` (as autograd's own indexing gradient is): the entries
    are added in place into the gradient being accumulated, so a slice of a long vector costs
    its own length, not a fresh vector of ``size`` zeros and an addition of two.
    """
    flat = np.ravel(piece)

    def mut_add(accumulated: np.ndarray) -> np.ndarray:
        accumulated[start:start + flat.size] += flat
        return accumulated

    return SparseObject(_vector_space(int(size), np.result_type(piece, float)), mut_add)


defvjp(take_slice, lambda ans, flat, start, stop, shape=None:
       lambda g: put_slice(g, start, np.size(flat)))
defvjp(put_slice, lambda ans, piece, start, size:
       lambda g: take_slice(g, start, start + np.size(piece), np.shape(piece)))
defjvp(take_slice, lambda g, ans, flat, start, stop, shape=None: take_slice(g, start, stop, shape))
defjvp(put_slice, lambda g, ans, piece, start, size: put_slice(g, start, size))


def _is_param(leaf: Any) -> bool:
    value = getval(leaf)
    if isinstance(value, (bool, np.bool_, int, np.integer, str, bytes)) or value is None:
        return False
    if isinstance(value, (float, np.floating)):
        return True
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            raise ValueError("odegrad does not support complex-valued args; split them into real and imaginary parts")
        return np.issubdtype(value.dtype, np.floating)
    if isinstance(value, complex):
        raise ValueError("odegrad does not support complex-valued args; split them into real and imaginary parts")
    return False


def open_containers(node: Any) -> Any:
    """Turn containers that autograd is tracing (``autograd.builtins.tuple`` and friends, which
    arrive as ``SequenceBox``/``DictBox``) into plain containers of traced entries, recursively."""
    value = getval(node)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        items = [open_containers(node[i]) for i in range(len(value))]
        return list(items) if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {key: open_containers(node[key]) for key in value}
    return node


def _refuse_traced_attributes(leaf: Any) -> None:
    """A static leaf (an object odegrad does not open) must not hold a value autograd is tracing:
    its derivative would be lost, or func would return a traced value."""
    attributes = getattr(leaf, "__dict__", None)
    if not isinstance(attributes, dict):
        return
    traced = [name for name, value in attributes.items() if holds_box(value)]
    if traced:
        raise TypeError(
            f"args holds a {type(leaf).__name__} whose attribute {traced[0]!r} is being differentiated: "
            "odeint differentiates the floats and arrays of args and of the tuples, lists and dicts in "
            f"it, not attributes of other objects. Pass the value directly (args=({traced[0]},)) or in a "
            f"dict (args=({{{traced[0]!r}: {traced[0]}}},)) and read it from there in func."
        )


def holds_box(value: Any) -> bool:
    """Whether ``value`` is, or (in nested lists, tuples and dicts) holds, a value autograd traces."""
    if isinstance(value, (list, tuple)):
        return any(holds_box(item) for item in value)
    if isinstance(value, dict):
        return any(holds_box(item) for item in value.values())
    return isbox(value)


def as_traced(value: Any) -> Any:
    """A list or tuple with traced entries (``t=[0.0, T]`` under ``grad``) as one traced array."""
    if isinstance(value, (list, tuple)) and holds_box(value):
        return anp.array(value)
    return value


def flatten_args(args: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Return ``(theta, unflatten)``: the float leaves of ``args`` as one flat vector.

    ``unflatten(theta)`` rebuilds a structure like ``args`` whose float leaves are taken from
    ``theta`` (reshaped to their original shapes) and whose other leaves are the originals. Both
    directions are written with ``autograd.numpy``, so derivatives flow through them. ``theta``
    is float64 whatever the leaves' precision, so ``func`` sees float64 parameters.
    """
    args = open_containers(args)
    leaves: list[Any] = []
    shapes: list[tuple[int, ...]] = []

    def collect(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            for item in node:
                collect(item)
        elif isinstance(node, dict):
            for item in node.values():
                collect(item)
        elif _is_param(node):
            leaves.append(node)
            shapes.append(np.shape(getval(node)))
        else:
            _refuse_traced_attributes(node)

    collect(args)
    if leaves:
        theta = anp.concatenate([anp.ravel(leaf) for leaf in leaves])
        if getval(theta).dtype != np.float64:
            # float32 (or float16) parameters would make every evaluation, forwards and in the
            # adjoint, round to single precision: the solvers then need up to ~5x the steps and
            # fail at tight tolerances. Their gradients are cast back by astype's own VJP.
            theta = theta.astype(np.float64)
    else:
        theta = np.zeros(0)
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    # Which leaf goes where, decided once: unflatten runs at every evaluation of the dynamics.
    slots = [(int(offsets[k]), int(offsets[k + 1]), tuple(shapes[k]) if len(shapes[k]) != 1 else None)
             for k in range(len(shapes))]

    def plan(node: Any) -> Any:
        if isinstance(node, (list, tuple)):
            items = [plan(item) for item in node]
            if hasattr(node, "_fields"):
                return lambda flat, it: type(node)(*(item(flat, it) for item in items))
            return lambda flat, it: type(node)(item(flat, it) for item in items)
        if isinstance(node, dict):
            entries = [(key, plan(item)) for key, item in node.items()]
            return lambda flat, it: type(node)((key, item(flat, it)) for key, item in entries)
        if _is_param(node):
            if slots == [(0, int(offsets[-1]), None)]:  # one vector leaf: theta itself, no slice
                return lambda flat, it: flat
            return lambda flat, it: take_slice(flat, *next(it))
        return lambda flat, it: node

    build = plan(args)

    def unflatten(flat: Any) -> Any:
        return build(flat, iter(slots))

    return theta, unflatten
