"""Derivative evaluations of autograd dynamics at compiled speed: one trace, replayed in JAX under XLA.

Every evaluation of the derived dynamics (the adjoint's VJP of ``f``, the forward sensitivities'
Jacobian of ``f``, the stiff solvers' Newton Jacobians) is otherwise one autograd trace of ``f``
and a backward pass through it: 30-60 times a NumPy evaluation of ``f`` on small dynamics, all of
it bookkeeping. Users still write ``func`` with ``autograd.numpy``; here it is traced once per
solve, as a function of the one vector ``x = [y, θ, t]``, and the recorded primitives are mapped
one by one to their ``jax.numpy`` counterparts. The rebuilt function, its VJP and its Jacobian are
compiled by ``jax.jit`` once per structure of the trace (the primitives and their static
arguments; constant arrays are inputs, so a new solve re-records without recompiling) and called
from NumPy.

A recorded trace holds only where it was recorded if ``func`` branches on values. So:

* a trace in which ``func`` applied a value-dependent operation to ``y``, ``t`` or ``args``
  (a comparison, ``sign``, ``floor``, ``isfinite``, ... — everything autograd passes through
  untraced) is not compiled at all: ``func`` keeps autograd's evaluations;
* every compiled evaluation is checked against a direct evaluation of ``func`` at the same point
  (the value the derived dynamics return anyway). A mismatch, e.g. a branch on the truth value
  of a traced array, which autograd cannot see, re-records the trace at that point; if the new
  trace disagrees too, ``func`` falls back to autograd for the rest of the solve.

Primitives without a counterpart here (and ``func`` that cannot be traced in one vector) fall back
the same way, per ``func``, with the reason in :attr:`odegrad.SolveInfo.derivatives_note`. All of
this is for plain-array evaluations only: where a derived solve is itself differentiated
(Hessians, grad-of-grad) the callers keep autograd's passes. Without JAX installed, or inside
:func:`disabled`, nothing here runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from typing import Any, Callable, Iterator

import autograd.numpy as anp
import numpy as np
from autograd.core import VJPNode
from autograd.numpy import numpy_wrapper
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.tracer import Node, isbox, notrace_primitives, toposort

from .pytree import take_slice
from .reverse import trace

GUARD_RTOL = 1e-9
"""A compiled ``f`` agrees with ``func`` where ``|f_c - f| <= GUARD_RTOL (|f| + max |f|)`` entrywise."""

MAX_RETRACES = 8
"""Re-recordings of one solve's trace before ``func`` falls back to autograd for that solve."""

MAX_PROGRAMS = 256
"""Compiled programs kept (one per structure of a trace); the oldest is dropped beyond this."""

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "odegrad_compiled", default=os.environ.get("ODEGRAD_COMPILED", "1") != "0")
"""Whether compiled evaluations may be used: ``ODEGRAD_COMPILED=0`` in the environment turns them off
for the process (as without JAX), :func:`disabled` for a block."""

# autograd's nograd functions that read only shapes and dtypes: a trace through them holds everywhere.
_SHAPE_ONLY = {anp.size, anp.result_type, anp.iscomplexobj, anp.zeros_like, anp.ones_like, anp.empty_like,
               anp.full_like, anp.isscalar, anp.isreal, anp.iscomplex, anp.ndim, anp.shape}


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block with autograd's derivative evaluations only (no JAX), as without JAX installed.

    Examples
    --------
    >>> with odegrad.compiled.disabled():              # doctest: +SKIP
    ...     g = grad(loss)(params)
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


@functools.lru_cache(maxsize=1)
def _jax() -> Any:
    """The ``jax`` module, or the reason it cannot be used (a string)."""
    try:
        import jax
        import jax.numpy  # noqa: F401
    except ImportError as exc:
        return f"JAX is not installed ({exc}); pip install 'odegrad[jax]' for compiled derivative evaluations"
    return jax


def unavailable() -> str | None:
    """Why compiled evaluations are off here (JAX missing, :func:`disabled`), or ``None``."""
    if not _ENABLED.get():
        return "disabled by odegrad.compiled.disabled() or ODEGRAD_COMPILED=0"
    jax = _jax()
    return jax if isinstance(jax, str) else None


class Unsupported(Exception):
    """A trace that cannot be compiled; the message says why."""


class _CompileNode(Node):
    """A node of a recorded trace: the primitive, its arguments and which of them are traced."""

    __slots__ = ["parents", "recipe"]

    def __init__(self, value, fun, args, kwargs, parent_argnums, parents):
        self.parents = parents
        self.recipe = (fun, args, kwargs, parent_argnums)

    def initialize_root(self):
        self.parents = []
        self.recipe = None


class _NotraceSpy(set):
    """autograd's untraced primitives for this node type, noting each one applied to a traced value."""

    hits: list | None = None

    def __contains__(self, fun: Any) -> bool:
        if fun in notrace_primitives[VJPNode]:
            if self.hits is not None and fun not in _SHAPE_ONLY:
                self.hits.append(fun)
            return True
        return False


_SPY = _NotraceSpy()
notrace_primitives[_CompileNode] = _SPY


# ------------------------------------------------------------------------------ primitive table

_NAMES = (
    "add subtract multiply true_divide divide negative power float_power exp exp2 expm1 log log2 log10 "
    "log1p sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh sqrt cbrt square "
    "reciprocal absolute fabs maximum minimum fmax fmin logaddexp logaddexp2 arctan2 hypot sinc "
    "sum mean prod max min amax amin var std cumsum cumprod dot vdot matmul inner outer tensordot einsum "
    "kron reshape ravel transpose swapaxes moveaxis expand_dims squeeze broadcast_to atleast_1d "
    "atleast_2d atleast_3d where clip diag diagonal trace tril triu flip fliplr flipud roll rot90 "
    "repeat tile real imag conj conjugate"
).split()
_LINALG = "solve inv det slogdet norm cholesky".split()
_SPECIAL = "expit logit logsumexp erf erfc gammaln".split()


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    """``{autograd primitive: jax function}`` for everything a trace of ``f`` may be replayed with."""
    import autograd.numpy.linalg as alinalg
    import autograd.scipy.special as aspecial
    import jax.numpy as jnp
    import jax.scipy.special as jspecial

    table: dict[Any, Callable] = {}
    for source, target, names in ((anp, jnp, _NAMES), (alinalg, jnp.linalg, _LINALG),
                                  (aspecial, jspecial, _SPECIAL)):
        for name in names:
            prim, fun = getattr(source, name, None), getattr(target, name, None)
            if prim is not None and fun is not None and hasattr(prim, "fun"):
                table[prim] = fun
    table.update({
        ArrayBox.__getitem__: lambda A, idx: A[idx],
        take_slice: lambda flat, start, stop, shape=None: (flat[start:stop] if shape is None
                                                           else jnp.reshape(flat[start:stop], shape)),
        numpy_wrapper.concatenate_args: lambda axis, *arrays: jnp.concatenate(arrays, axis),
        numpy_wrapper.array_from_args: lambda args, kwargs, *items: jnp.array(items, *args, **kwargs),
        numpy_wrapper._array_from_scalar_or_array: lambda args, kwargs, scalar: jnp.array(scalar, *args, **kwargs),
    })
    return table


def _name(fun: Any) -> str:
    raw = getattr(fun, "fun", fun)
    return getattr(raw, "__name__", None) or repr(raw)


def _static_key(value: Any) -> Any:
    """A hashable key of a static argument (part of the compiled program)."""
    if value is None or value is Ellipsis or isinstance(value, (bool, int, float, str, np.integer, np.bool_)):
        return (type(value).__name__, value)
    if isinstance(value, slice):
        return ("slice", _static_key(value.start), _static_key(value.stop), _static_key(value.step))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(_static_key(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple(sorted((str(k), _static_key(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (np.dtype, type)):
        return ("dtype", str(np.dtype(value)))
    if isbox(value):
        raise Unsupported("func closes over a value traced by an outer derivative")
    raise Unsupported(f"an argument of type {type(value).__name__} has no compiled counterpart")


def _is_constant_array(value: Any) -> bool:
    """Whether ``value`` is passed to the compiled program as an input (float data) rather than baked in."""
    return (isinstance(value, np.ndarray) and value.dtype.kind == "f") or isinstance(value, np.floating)


class Trace:
    """One recorded trace of ``f`` as a function of ``x``: its operations, key and constants.

    ``ops[i] = (jax function, argument specs, kwargs)``; a spec is ``("node", j)`` (the value of
    operation ``j``, ``0`` being ``x``), ``("const", offset, shape)`` (a constant array, read from
    the vector :attr:`consts` of all of them, an input of the program) or ``("static", value)``.
    ``key`` identifies the program: two traces with equal keys compile to the same program and
    differ only in ``consts``.
    """

    def __init__(self, start: _CompileNode, end: _CompileNode, size: int, n_out: int):
        table = _table()
        order = list(reversed(list(toposort(end))))
        if order[0] is not start:
            raise Unsupported("the trace of func does not start at its input")
        index = {start: 0}
        self.ops: list[tuple] = []
        consts: list[np.ndarray] = []
        offset = 0
        key: list[Any] = [size, n_out]
        for node in order[1:]:
            fun, args, kwargs, argnums = node.recipe
            jfun = table.get(fun)
            if jfun is None:
                raise Unsupported(f"the primitive {_name(fun)} has no JAX counterpart in odegrad.compiled")
            parents = dict(zip(argnums, node.parents))
            specs, spec_key = [], []
            for i, arg in enumerate(args):
                if i in parents:
                    specs.append(("node", index[parents[i]]))
                    spec_key.append(("node", index[parents[i]]))
                elif _is_constant_array(arg) and fun is not ArrayBox.__getitem__:
                    specs.append(("const", offset, np.shape(arg)))
                    spec_key.append(("const", np.shape(arg)))
                    consts.append(np.ravel(arg))
                    offset += consts[-1].size
                else:
                    specs.append(("static", arg))
                    spec_key.append(_static_key(arg))
            key.append((fun, tuple(spec_key), _static_key(dict(kwargs))))
            self.ops.append((jfun, tuple(specs), dict(kwargs)))
            index[node] = len(self.ops)
        self.key = tuple(key)
        self.size, self.n_out = size, n_out
        self.consts = np.concatenate(consts).astype(float) if consts else np.zeros(0)


def record(fun: Callable[[Any], Any], x: np.ndarray) -> tuple[Trace, np.ndarray]:
    """``(trace, fun(x))``: ``fun`` traced once at ``x`` into a :class:`Trace`.

    Raises
    ------
    Unsupported
        Where the trace could not be compiled, or holds only near ``x`` (``fun`` applied a
        value-dependent operation to its input); the message says which.
    """
    start = _CompileNode.new_root()
    _SPY.hits = []
    try:
        value, end = trace(start, fun, x)
    except Unsupported:
        raise
    except Exception as exc:            # anything autograd's trace of one vector cannot run
        raise Unsupported(f"func could not be traced as a function of one vector ({type(exc).__name__}: {exc})") from exc
    finally:
        hits, _SPY.hits = _SPY.hits, None
    if hits:
        names = sorted({_name(h) for h in hits})
        raise Unsupported(f"func applies {', '.join(names)} to the values of y, t or args (a branch or mask): "
                          "a recorded trace would hold only near where it was recorded")
    if isbox(value):
        raise Unsupported("func closes over a value traced by an outer derivative")
    if end is None:
        raise Unsupported("func does not depend on y, t or args")
    if np.ndim(value) != 1 or np.asarray(value).dtype.kind != "f":
        raise Unsupported("func's flat output is not one real vector")
    return Trace(start, end, int(np.size(x)), int(np.size(value))), np.asarray(value)


class Program:
    """The compiled ``f``, its VJP and its Jacobian for one structure of trace (float64, XLA).

    Each compiled function takes two vectors (one transfer each; every further argument costs
    about as much as the arithmetic of a small ``f``): ``[y, θ, t, *extra, direct]`` and the
    trace's constants, and returns ``[ok, result...]``, ``ok`` being 1 where the compiled ``f``
    agrees with ``direct`` (``func`` evaluated by NumPy at the same point, :data:`GUARD_RTOL`),
    else 0.
    """

    def __init__(self, trace_: Trace):
        jax = _jax()
        jnp = jax.numpy
        ops, m, n = trace_.ops, trace_.size, trace_.n_out

        def f(x, consts):
            values = [x]
            for jfun, specs, kwargs in ops:
                args = [values[spec[1]] if spec[0] == "node" else spec[1] if spec[0] == "static"
                        else jnp.reshape(consts[spec[1]:spec[1] + math.prod(spec[2])], spec[2])
                        for spec in specs]
                values.append(jfun(*args, **kwargs))
            return jnp.ravel(values[-1])

        def checked(body, n_extra):
            def run(packed, consts):
                x, extra, direct = packed[:m], packed[m:m + n_extra], packed[m + n_extra:]
                out, result = body(lambda xx: f(xx, consts), x, *([extra] if n_extra else []))
                scale = GUARD_RTOL * (jnp.abs(direct) + jnp.max(jnp.abs(direct)))
                ok = jnp.all(jnp.abs(out - direct) <= scale).astype(out.dtype)
                return jnp.concatenate([jnp.reshape(ok, (1,)), jnp.ravel(result)])
            return run

        def vjp(fun, x, a):
            out, back = jax.vjp(fun, x)
            return out, back(a)[0]

        def jacobian(fun, x):
            out, back = jax.vjp(fun, x)
            return out, jax.vmap(lambda e: back(e)[0])(jnp.eye(out.shape[0], dtype=out.dtype))

        def vjp_jacobian(fun, x, a):
            both = lambda xx, aa: jnp.concatenate(vjp(fun, xx, aa))  # noqa: E731
            jx, ja = jax.jacfwd(both, argnums=(0, 1))(x, a)
            return fun(x), jnp.concatenate([jx, ja], axis=1)

        self._x64 = jax.enable_x64
        with self._x64(True):
            self.vjp = jax.jit(checked(vjp, n))
            self.jacobian = jax.jit(checked(jacobian, 0))
            self.vjp_jacobian = jax.jit(checked(vjp_jacobian, n))

    def __call__(self, kind: str, packed: np.ndarray, consts: np.ndarray) -> np.ndarray:
        """One compiled evaluation (``kind``: ``"vjp"``, ``"jacobian"`` or ``"vjp_jacobian"``)."""
        with self._x64(True):
            return np.asarray(getattr(self, kind)(packed, consts))


_PROGRAMS: dict[tuple, Program] = {}


def program(trace_: Trace) -> Program:
    """The compiled program of ``trace_``'s structure, built at its first use."""
    found = _PROGRAMS.get(trace_.key)
    if found is None:
        if len(_PROGRAMS) >= MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        found = _PROGRAMS[trace_.key] = Program(trace_)
    return found


class CompiledRhs:
    """Compiled derivative evaluations of one solve's dynamics ``rhs(y, t, theta)``, checked at every call.

    Each method returns ``None`` where the evaluation must be autograd's: compiled evaluations are
    unavailable (:attr:`reason` says why) or ``rhs`` has non-finite values at the point.

    Parameters
    ----------
    rhs : callable
        ``rhs(y, t, theta)`` on flat arrays, written with ``autograd.numpy``.
    n, n_params : int
        Entries of ``y`` and ``theta``.
    report : callable
        ``report(backend, note)``: called when the backend (``"jax"`` or ``"autograd"``) is decided
        or changes, with the reason for autograd.
    """

    def __init__(self, rhs: Callable[[Any, Any, Any], Any], n: int, n_params: int,
                 report: Callable[[str, str | None], None]):
        self.rhs, self.n, self.n_params, self._report = rhs, n, n_params, report
        self.reason: str | None = unavailable()
        self.retraces = 0
        self._program: Program | None = None
        self._consts = np.zeros(0)
        if self.reason is not None:
            report("autograd", self.reason)

    def _fun(self, x: Any) -> Any:
        n, p = self.n, self.n_params
        return self.rhs(take_slice(x, 0, n), take_slice(x, n + p, n + p + 1, ()), take_slice(x, n, n + p))

    def _fall_back(self, reason: str) -> None:
        self.reason, self._program = reason, None
        self._report("autograd", reason)

    def _record(self, x: np.ndarray) -> bool:
        try:
            trace_, _ = record(self._fun, x)
            prog = program(trace_)
        except Unsupported as exc:
            self._fall_back(str(exc))
            return False
        self._program, self._consts = prog, trace_.consts
        return True

    def _evaluate(self, kind: str, y: np.ndarray, t: Any, theta: np.ndarray, *extra: Any):
        """``(f(y, t, theta), compiled result)`` or ``None``; ``f`` evaluated directly, as the guard."""
        if self.reason is not None:
            return None
        direct = self.rhs(y, t, theta)
        if isbox(direct):
            return None
        packed = np.concatenate([y, theta, [t], *extra, direct])
        first = self._program is None
        if first and not self._record(packed[:self.n + self.n_params + 1]):
            return None
        for attempt in range(2):
            out = self._program(kind, packed, self._consts)
            if out[0]:
                if first:
                    self._report("jax", None)
                return direct, out[1:]
            if not np.all(np.isfinite(direct)):
                return None
            if attempt or self.retraces >= MAX_RETRACES:
                break
            self.retraces += 1
            if not self._record(packed[:self.n + self.n_params + 1]):
                return None
        self._fall_back("the compiled func disagreed with func at a point it was recorded at "
                        "(func is not a pure function of y, t and args), or kept changing its trace "
                        f"({self.retraces} re-recordings)")
        return None

    def vjp(self, y: np.ndarray, t: Any, theta: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(f, a · ∂f/∂[y, θ, t])`` (lengths ``n`` and ``n + p + 1``), or ``None``."""
        result = self._evaluate("vjp", y, t, theta, a)
        return None if result is None else (result[0], result[1])

    def jacobian(self, y: np.ndarray, t: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(f, ∂f/∂[y, θ, t])`` (shapes ``(n,)`` and ``(n, n + p + 1)``), or ``None``."""
        result = self._evaluate("jacobian", y, t, theta)
        return None if result is None else (result[0], result[1].reshape(self.n, -1))

    def vjp_jacobian(self, y: np.ndarray, t: Any, theta: np.ndarray, a: np.ndarray) -> np.ndarray | None:
        """The Jacobian of ``(x, a) -> [f(x), a · ∂f/∂x]`` with ``x = [y, θ, t]``, or ``None``.

        Shape ``(n + m, m + n)`` with ``m = n + p + 1``: rows ``f`` then the VJP, columns ``x``
        then ``a``.
        """
        result = self._evaluate("vjp_jacobian", y, t, theta, a)
        if result is None:
            return None
        m = self.n + self.n_params + 1
        return result[1].reshape(self.n + m, m + self.n)
