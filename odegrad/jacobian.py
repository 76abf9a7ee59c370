"""Many vector-Jacobian products of one autograd trace in one vectorised reverse pass.

Forward sensitivities need the whole Jacobian ``∂f/∂[y, θ]`` at every evaluation of their
dynamics, and the stiff solvers' Newton iterations need ``∂f/∂y``. autograd gets a Jacobian
from one trace and one backward pass per row, and on small dynamics both are dominated by
autograd's bookkeeping per node, not by arithmetic: a trace and a backward pass of a 3-state
kinetics model each cost many times an evaluation of the dynamics (``python -m benchmarks.profile``).

:func:`trace_vjps` records the trace without building autograd's VJP closures and then runs
*one* backward pass that carries all ``k`` cotangents at once, as arrays with a leading axis of
length ``k``. The common primitives of dynamics (arithmetic, elementwise functions, indexing,
slicing, stacking, reshaping, sums and matrix products) have batched rules here, written to
match autograd's own VJPs; every other primitive falls back to autograd's VJP, applied to each
of the ``k`` cotangents in turn, so any function autograd can differentiate works and only the
uncommon nodes cost ``k`` times. The result is plain arrays: this is for evaluations that are
not themselves differentiated (the callers use autograd's own passes on traced inputs).
"""

from __future__ import annotations

from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd.core import SparseObject, VJPNode, VSpace, primitive_vjps, sparse_add, sum_outgrads
from autograd.numpy import numpy_wrapper
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vjps import untake
from autograd.numpy.numpy_vspaces import ArrayVSpace
from autograd.tracer import isbox, notrace_primitives, toposort
from autograd.util import func

from .pytree import put_slice, take_slice
from .reverse import trace


class _RecordingNode(VJPNode):
    """A node of the trace that keeps its recipe; autograd's VJP closure is built on demand."""

    __slots__ = ["recipe"]

    def __init__(self, value, fun, args, kwargs, parent_argnums, parents):
        if fun not in primitive_vjps:
            raise NotImplementedError(f"VJP of {getattr(fun, '__name__', fun)} wrt argnums {parent_argnums} not defined")
        self.parents = parents
        self.recipe = (fun, value, args, kwargs, parent_argnums)

    def initialize_root(self):
        self.parents = []
        self.recipe = None


# Primitives that a VJP trace passes through untraced (shape queries, comparisons, ...) are
# registered per node type: share VJPNode's set, so this trace treats them identically.
notrace_primitives[_RecordingNode] = notrace_primitives[VJPNode]


def _shape(value: Any) -> tuple[int, ...]:
    """Shape of an array-like value; a ``SparseObject`` (a gradient being accumulated) has its space's."""
    return value.vs.shape if isinstance(value, SparseObject) else np.shape(value)


def _is_array(value: Any) -> bool:
    """Whether cotangents of ``value`` are carried as one real array of shape ``(k, *shape)``."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fiub"
    if isinstance(value, SparseObject):
        return isinstance(value.vs, ArrayVSpace) and not value.vs.iscomplex
    return isinstance(value, (float, int, np.floating, np.integer, np.bool_))


def _unbroadcast(G: np.ndarray, target: Any) -> np.ndarray:
    """Sum the batched ``G`` (k, *broadcast shape) down to ``(k, *shape(target))``."""
    shape = np.shape(target)
    if G.shape[1:] == shape:
        return G
    extra = G.ndim - 1 - len(shape)
    if extra > 0:
        G = G.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, size in enumerate(shape) if size == 1 and G.shape[i + 1] != 1)
    if axes:
        G = G.sum(axis=axes, keepdims=True)
    return G


def _elementwise(*grads: Callable[..., np.ndarray]) -> Callable:
    """A batched rule from one ``grad(G, ans, *args)`` per argument of an elementwise primitive."""

    def rule(G, argnum, ans, args, kwargs):
        if kwargs:
            return NotImplemented
        return _unbroadcast(grads[argnum](G, ans, *args), args[argnum])

    return rule


def _batched_index(idx: Any) -> tuple | None:
    """``idx`` with a leading full slice for the batch axis, or None where that would move axes.

    Basic indices (integers, slices, ``None``, ``...``) and one integer array beside slices keep
    their axes in place; several advanced indices (integers count as such beside an array) may
    move the indexed axes to the front, and boolean masks are left to autograd's own VJP.
    """
    parts = idx if isinstance(idx, tuple) else (idx,)
    arrays = 0
    for part in parts:
        if isinstance(part, (bool, np.bool_)):
            return None
        if isinstance(part, (list, np.ndarray)):
            if np.asarray(part).dtype.kind not in "iu":
                return None
            arrays += 1
        elif not (part is None or part is Ellipsis or isinstance(part, (slice, int, np.integer))):
            return None
    if arrays and (arrays > 1 or any(not (isinstance(p, (slice, list, np.ndarray)) or p is Ellipsis)
                                     for p in parts)):
        return None
    return (slice(None),) + tuple(np.asarray(p) if isinstance(p, list) else p for p in parts)


def _getitem(G, argnum, ans, args, kwargs):
    A, idx = args
    index = _batched_index(idx)
    if index is None:
        return NotImplemented
    out = np.zeros((G.shape[0],) + np.shape(A), dtype=G.dtype)
    if any(isinstance(p, np.ndarray) for p in index):
        np.add.at(out, index, G)             # repeated indices add up, as in autograd's untake
    else:
        out[index] += G
    return out


def _untake(G, argnum, ans, args, kwargs):
    x, idx = args[0], args[1]
    index = _batched_index(idx)
    return NotImplemented if index is None else G[index].reshape((G.shape[0],) + np.shape(x))


def _identity(G, argnum, ans, args, kwargs):
    return G


def _take_slice(G, argnum, ans, args, kwargs):
    flat, start, stop = args[:3]
    out = np.zeros((G.shape[0], np.size(flat)), dtype=G.dtype)
    out[:, start:stop] = G.reshape(G.shape[0], -1)
    return out


def _put_slice(G, argnum, ans, args, kwargs):
    piece, start = args[0], args[1]
    return G[:, start:start + np.size(piece)].reshape((G.shape[0],) + np.shape(piece))


def _concatenate(G, argnum, ans, args, kwargs):
    axis, arrays = args[0], args[1:]
    axis = axis % np.ndim(ans)
    start = sum(np.shape(a)[axis] for a in arrays[:argnum - 1])
    index = (slice(None),) * (axis + 1) + (slice(start, start + np.shape(arrays[argnum - 1])[axis]),)
    return G[index]


def _reshape_back(G, argnum, ans, args, kwargs):
    order = kwargs.get("order", args[2] if len(args) > 2 else None)
    if order not in (None, "C"):
        return NotImplemented
    return G.reshape((G.shape[0],) + np.shape(args[0]))


def _ravel_back(G, argnum, ans, args, kwargs):
    order = kwargs.get("order", args[1] if len(args) > 1 else None)
    if order not in (None, "C"):
        return NotImplemented
    return G.reshape((G.shape[0],) + np.shape(args[0]))


def _array_from_scalar(G, argnum, ans, args, kwargs):
    array_args, array_kwargs, scalar = args
    if array_args or set(array_kwargs) - {"ndmin", "dtype"}:
        return NotImplemented
    return G.reshape((G.shape[0],) + np.shape(scalar))


def _array_from_args(G, argnum, ans, args, kwargs):
    return G[:, argnum - 2]


def _sum(G, argnum, ans, args, kwargs):
    if len(args) > 2 or set(kwargs) - {"axis", "keepdims"}:
        return NotImplemented
    x = args[0]
    axis = args[1] if len(args) > 1 else kwargs.get("axis")
    shape = np.shape(x)
    k = G.shape[0]
    if axis is None:
        return np.broadcast_to(G.reshape((k,) + (1,) * len(shape)), (k,) + shape)
    axes = tuple(a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,)))
    if not kwargs.get("keepdims", False):
        G = np.expand_dims(G, tuple(a + 1 for a in axes))
    return np.broadcast_to(G, (k,) + shape)


def _transpose(G, argnum, ans, args, kwargs):
    x = args[0]
    axes = kwargs.get("axes", args[1] if len(args) > 1 else None)
    ndim = np.ndim(x)
    axes = tuple(reversed(range(ndim))) if axes is None else tuple(a % ndim for a in axes)
    return G.transpose((0,) + tuple(1 + int(a) for a in np.argsort(axes)))


def _matmul(G, argnum, ans, args, kwargs):
    A, B = args
    a, b = np.ndim(A), np.ndim(B)
    if kwargs or a not in (1, 2) or b not in (1, 2):
        return NotImplemented
    if argnum == 0:
        if b == 1:                                       # (k, m) or (k,) with B (n,)
            return (G[..., None] * B) if a == 2 else G[:, None] * B
        return G @ np.swapaxes(B, 0, 1)                  # (k, m, p) @ (p, n), or (k, p) @ (p, n)
    if a == 1:                                           # A (n,)
        return A[:, None] * G[:, None, :] if b == 2 else G[:, None] * A
    if b == 1:                                           # A (m, n), G (k, m)
        return G @ A
    return np.swapaxes(A, 0, 1) @ G                      # (n, m) @ (k, m, p)


_RULES: dict[Any, Callable] = {
    anp.add: _elementwise(lambda G, ans, x, y: G, lambda G, ans, x, y: G),
    anp.subtract: _elementwise(lambda G, ans, x, y: G, lambda G, ans, x, y: -G),
    anp.multiply: _elementwise(lambda G, ans, x, y: G * y, lambda G, ans, x, y: x * G),
    anp.true_divide: _elementwise(lambda G, ans, x, y: G / y, lambda G, ans, x, y: -G * x / y ** 2),
    anp.power: _elementwise(lambda G, ans, x, y: G * y * x ** np.where(y, y - 1, 1.0),
                            lambda G, ans, x, y: G * np.log(np.where(x, x, 1.0)) * ans),
    anp.negative: _elementwise(lambda G, ans, x: -G),
    anp.exp: _elementwise(lambda G, ans, x: G * ans),
    anp.log: _elementwise(lambda G, ans, x: G / x),
    anp.sin: _elementwise(lambda G, ans, x: G * np.cos(x)),
    anp.cos: _elementwise(lambda G, ans, x: -G * np.sin(x)),
    anp.tanh: _elementwise(lambda G, ans, x: G / np.cosh(x) ** 2),
    anp.square: _elementwise(lambda G, ans, x: G * 2 * x),
    anp.sqrt: _elementwise(lambda G, ans, x: G * 0.5 * x ** -0.5),
    func(ArrayBox.__getitem__): _getitem,
    take_slice: _take_slice,
    put_slice: _put_slice,
    numpy_wrapper.concatenate_args: _concatenate,
    anp.reshape: _reshape_back,
    anp.ravel: _ravel_back,
    anp.expand_dims: lambda G, argnum, ans, args, kwargs: G.reshape((G.shape[0],) + np.shape(args[0])),
    numpy_wrapper._array_from_scalar_or_array: _array_from_scalar,
    numpy_wrapper.array_from_args: _array_from_args,
    anp.sum: _sum,
    anp.transpose: _transpose,
    anp.matmul: _matmul,
    anp.dot: _matmul,
    untake: _untake,
    sparse_add: _identity,
    func(VSpace.add): _identity,
    func(VSpace.mut_add): _identity,
}


def _dense(row: Any, value: Any) -> np.ndarray:
    """One cotangent of an array-valued node as a dense array of ``value``'s shape."""
    shape = _shape(value)
    if isinstance(row, SparseObject):
        return row.mut_add(np.zeros(shape))
    row = np.asarray(row, dtype=float)
    return row if row.shape == shape else np.broadcast_to(row, shape)


def _row_by_row(node: _RecordingNode, G: Any) -> list:
    """autograd's own VJP of ``node`` applied to each cotangent: batched cotangents per parent."""
    fun, ans, args, kwargs, argnums = node.recipe
    vjp = primitive_vjps[fun](argnums, ans, args, kwargs)
    rows = list(G) if isinstance(G, np.ndarray) else G
    per_parent = list(zip(*(tuple(vjp(row)) for row in rows)))
    out = []
    for argnum, grads in zip(argnums, per_parent):
        value = args[argnum]
        out.append(np.stack([_dense(g, value) for g in grads]) if _is_array(value) else list(grads))
    return out


def _backward(node: _RecordingNode, G: Any) -> list:
    """Batched cotangents of ``node``'s parents, by its rule where it has one."""
    fun, ans, args, kwargs, argnums = node.recipe
    rule = _RULES.get(fun)
    if rule is not None and type(G) is np.ndarray:
        out = []
        for argnum in argnums:
            if not _is_array(args[argnum]):
                break
            grad = rule(G, argnum, ans, args, kwargs)
            if grad is NotImplemented:
                break
            out.append(grad)
        else:
            return out
    return _row_by_row(node, G)


def _accumulate(previous: Any, new: Any) -> Any:
    if previous is None:
        return new
    if isinstance(previous, np.ndarray):
        return previous + new
    return [sum_outgrads([a, b]) for a, b in zip(previous, new)]


_OUTER_TRACE = (
    "the function mixes its input with a value traced by an outer derivative: trace_vjps returns "
    "plain arrays, so that derivative would be lost; use odegrad.reverse.trace_vjp for functions "
    "that close over traced values")


def trace_vjps(fun: Callable[[np.ndarray], Any], x: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """``(vjps, fun(x))``: ``vjps(G)`` gives the VJPs of ``k`` cotangents in one backward pass.

    Parameters
    ----------
    fun : callable
        A function of one real array, written with ``autograd.numpy``, returning an array.
    x : numpy.ndarray
        Where to linearise: a plain array (not traced by an outer derivative; for that use
        :func:`odegrad.reverse.trace_vjp`, whose VJPs autograd differentiates again).

    Returns
    -------
    vjps : callable
        ``vjps(G)`` for ``G`` of shape ``(k, *fun(x).shape)`` returns the array of shape
        ``(k, *x.shape)`` whose row ``i`` is ``G[i] · ∂fun/∂x``, equal to autograd's
        ``make_vjp(fun)(x)[0](G[i])`` up to rounding.
    value : array
        ``fun(x)``.
    """
    start = _RecordingNode.new_root()
    value, end = trace(start, fun, x)
    if isbox(value):
        raise TypeError(_OUTER_TRACE)
    shape = np.shape(x)
    if end is None:
        return (lambda G: np.zeros((np.shape(G)[0],) + shape)), value
    order = list(toposort(end))

    def vjps(G: np.ndarray) -> np.ndarray:
        G = np.asarray(G, dtype=float)
        outgrads: dict[Any, Any] = {end: G}
        for node in order:
            grad = outgrads.pop(node)
            if node is start:
                if isbox(grad) or getattr(grad, "dtype", None) is np.dtype(object):
                    raise TypeError(_OUTER_TRACE)
                return np.ascontiguousarray(np.broadcast_to(grad, (G.shape[0],) + shape))
            for parent, ingrad in zip(node.parents, _backward(node, grad)):
                outgrads[parent] = _accumulate(outgrads.get(parent), ingrad)
        return np.zeros((G.shape[0],) + shape)

    return vjps, value


def trace_jacobian(fun: Callable[[np.ndarray], Any], x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``(J, fun(x))`` with ``J[i, j] = ∂fun(x).flat[i] / ∂x.flat[j]`` from one trace and one pass.

    Parameters
    ----------
    fun : callable
        As for :func:`trace_vjps`.
    x : numpy.ndarray
        A plain array.

    Returns
    -------
    J : numpy.ndarray
        Shape ``(fun(x).size, x.size)``.
    value : array
        ``fun(x)``.
    """
    vjps, value = trace_vjps(fun, x)
    m = int(np.size(value))
    seeds = np.eye(m).reshape((m,) + np.shape(value))
    return vjps(seeds).reshape(m, int(np.size(x))), value
