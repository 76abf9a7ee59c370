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
  untraced — or the truth value of a traced array, ``if y[0]:``) is not compiled at all: ``func``
  keeps autograd's evaluations. What is left, a trace without such operations, can go stale only
  where ``func`` is not a pure function of ``y``, ``t`` and ``args`` (it reads state that changes,
  or unwraps autograd's boxes);
* compiled evaluations are checked against a direct evaluation of ``func`` at the same point: the
  first after each recording, then one in every :data:`GUARD_EVERY`, and the last of every solve
  (:func:`checked_solve`; evaluations outside such a solve, and those whose compiled result is
  not finite, are all checked). A check that fails
  after unchecked evaluations discards the solve and repeats it with every evaluation checked; a
  failing check re-records the trace at that point, and where the new trace disagrees too,
  ``func`` falls back to autograd for the rest of the solve. A direct evaluation of a small
  ``func`` costs about as much as the compiled evaluation itself (``python -m benchmarks.profile``),
  which is why not every evaluation pays it.

Primitives without a counterpart here (and ``func`` that cannot be traced in one vector) fall back
the same way, per ``func``, with the reason in :attr:`odegrad.SolveInfo.derivatives_note`. All of
this is for plain-array evaluations: where a derived solve is itself differentiated (Hessians,
grad-of-grad), its dynamics are traced with autograd's derivative of ``f`` inside, and that trace
(autograd's vector-space primitives, ``untake`` and ``put_slice`` included) compiles the same way
for the derived solve's own plain-array evaluations (:attr:`odegrad.problem.Problem.compiled`).
Without JAX installed, or inside :func:`disabled`, nothing here runs.

Costs (``python -m benchmarks.profile``; CPU, small ``f``): a compiled evaluation is one jitted
call (about 10 us of JAX dispatch, run on the calling thread where odegrad started JAX's CPU backend:
:data:`SYNCHRONOUS_CPU_DISPATCH`) and, at checked evaluations, a direct evaluation of ``func``;
compiling a program takes 0.1-0.3 s and the first compilation in a process imports JAX (about 1 s).
Compiled programs are kept on disk for later processes on the same machine
(:mod:`odegrad.compile_cache`): a rerun of a script reads them instead of compiling, and compiles a
stored structure at its first evaluation instead of after the warm-up (:data:`COMPILE_AFTER`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import math
import os
import threading
from typing import Any, Callable, Iterator

import autograd.numpy as anp
import numpy as np
from autograd.core import VJPNode, VSpace, sparse_add
from autograd.numpy import numpy_wrapper
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vjps import untake
from autograd.numpy.numpy_vspaces import ArrayVSpace
from autograd.tracer import Node, isbox, notrace_primitives, toposort

from . import compile_cache
from .pytree import put_slice, take_slice
from .reverse import trace
from .solver_guard import finite_total

GUARD_RTOL = 1e-9
"""A compiled ``f`` agrees with ``func`` where ``|f_c - f| <= GUARD_RTOL (|f| + max |f|)`` entrywise."""

MAX_RETRACES = 8
"""Re-recordings of one solve's trace before ``func`` falls back to autograd for that solve."""

GUARD_EVERY = max(1, int(os.environ.get("ODEGRAD_GUARD_EVERY", "8")))
"""Inside a solve, one compiled evaluation in this many is checked against a direct evaluation of
``func`` (besides the first after each recording and the last of the solve); 1 checks every one.
``ODEGRAD_GUARD_EVERY`` in the environment sets it."""

COMPILE_AFTER = int(os.environ.get("ODEGRAD_COMPILE_AFTER", "1000"))
"""Derived evaluations of one structure of trace (in this process) made by autograd before it is
compiled, counted in evaluations of a trace of :data:`COMPILE_AFTER_OPS` operations (a larger trace
counts in proportion). Compiling the first structure imports JAX and starts XLA, and each later one
costs about what a thousand or more autograd evaluations of a small ``f`` cost
(``python -m benchmarks.profile``): a one-off gradient stays on autograd, a fit compiles within its
first few gradients. A structure whose program an earlier process stored on disk
(:mod:`odegrad.compile_cache`) is compiled at once. Set it to 0 (or ``ODEGRAD_COMPILE_AFTER=0`` in
the environment) to compile at once, as benchmarks of steady-state speed do."""

COMPILE_AFTER_OPS = 20
"""Operations of the trace one evaluation counts as (:data:`COMPILE_AFTER`). An autograd evaluation
costs in proportion to its operations, a compilation mostly a fixed amount: the README Quickstart's
``f`` (19 operations) pays for its compilation after about a thousand evaluations, the dynamics of
its Hessian's own sensitivity solve (103 operations, 1.4 ms each) after about two hundred; counted
by evaluations alone, that Hessian ran a second on autograd (1.15 s against 0.43 s compiled at once,
with JAX already imported). Counting operations keeps when a structure compiles a function of the
program, not of the machine's speed."""

FAST_COMPILE = {"xla_backend_optimization_level": 0}
"""XLA options of programs with at most :data:`FAST_COMPILE_MAX_INPUTS` inputs: their calls cost
JAX's dispatch, not their arithmetic, while compiling them is what a one-off fit pays (LLVM at -O0
cut the compile times of the README Quickstart's two programs from 0.19 s and 0.52 s to 0.13 s and
0.32 s, with the same steady-state gradient and Hessian times)."""

FAST_COMPILE_MAX_INPUTS = 256
"""Largest input (``[y, θ, t]`` and the extra vector) compiled with :data:`FAST_COMPILE`. Above it the
arithmetic shows: spiral-mlp's forward-sensitivity program (761 inputs) at -O0 made its gradient
take 12.5 ms against 9.2 ms at XLA's default level (the Quickstart's programs are far below it)."""

MAX_INPUTS = 16384
"""Largest ``[y, θ, t]`` compiled. Beyond it autograd's evaluations, whole-array NumPy operations
with little per-operation overhead, are the faster: on mlp-64 (33,153 entries, a 64-256-64 MLP)
the compiled VJP took 230 us per call on inputs already on the device and 550 us per evaluation
against autograd's 275 us, while spiral-mlp (255 entries) runs 30 times faster compiled
(``python -m benchmarks.profile --problems mlp-64 spiral-mlp``)."""

_SOURCES = (__file__, compile_cache.__file__)
"""The files that build a compiled program: part of the environment of its disk entries."""

MAX_PROGRAMS = 256
"""Compiled programs kept (one per structure of a trace); the oldest is dropped beyond this."""

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "odegrad_compiled", default=os.environ.get("ODEGRAD_COMPILED", "1") != "0")
"""Whether compiled evaluations may be used: ``ODEGRAD_COMPILED=0`` in the environment turns them off
for the process (as without JAX), :func:`disabled` for a block."""

_AT_ONCE: contextvars.ContextVar[bool] = contextvars.ContextVar("odegrad_compile_at_once", default=False)
"""Whether every structure is compiled at its first evaluation (:func:`at_once`)."""

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


@contextlib.contextmanager
def at_once() -> Iterator[None]:
    """Compile each structure of ``func`` at its first derived evaluation inside the block.

    Outside it, a structure runs on autograd until it is warm (:data:`COMPILE_AFTER`) or found on
    disk (:mod:`odegrad.compile_cache`), and the two paths agree to rounding, not bit for bit. A
    training loop that checkpoints and resumes should run inside this block: every derivative
    evaluation of the fit is then compiled from its first step, whatever this process evaluated
    before and whatever earlier processes stored, so a fit resumed in a new process repeats the
    uninterrupted one bit for bit. Without JAX, or where a trace cannot be compiled, it changes
    nothing.

    Examples
    --------
    >>> with odegrad.compiled.at_once():               # doctest: +SKIP
    ...     for step in range(start, steps):
    ...         loss, g = value_and_grad(loss_fn)(params)
    """
    token = _AT_ONCE.set(True)
    try:
        yield
    finally:
        _AT_ONCE.reset(token)


@functools.lru_cache(maxsize=1)
def _installed() -> str | None:
    """Why JAX cannot be used (not installed), or ``None``; JAX itself is imported only to compile."""
    if importlib.util.find_spec("jax") is None:
        return "JAX is not installed; pip install 'odegrad[jax]' for compiled derivative evaluations"
    return None


SYNCHRONOUS_CPU_DISPATCH = True
"""Whether odegrad, where it is the first to start JAX's CPU backend in a process, starts it without
asynchronous dispatch (``jax_cpu_enable_async_dispatch = False``: each computation runs on the
calling thread). odegrad's programs are tiny and each result is needed at once, so handing them to
a worker thread and waiting for it costs more than the arithmetic: spiral-mlp's forward-sensitivity
program took 23 us per call in a solve against 60-70 us with async dispatch, halving its gradient
(``python -m benchmarks.peers --problems spiral-mlp``). The setting is JAX's, for the whole process:
it changes only when JAX's CPU computations return (not what they compute), and never where JAX's
backends were started before odegrad's first compilation or ``JAX_CPU_ENABLE_ASYNC_DISPATCH`` is set
in the environment. Set this to ``False`` before the first compilation to leave JAX as it is."""


def _jax() -> Any:
    """The ``jax`` module (imported at the first compilation: about a second), its CPU dispatch set
    by :data:`SYNCHRONOUS_CPU_DISPATCH`."""
    try:
        import jax
        import jax.experimental.serialize_executable  # noqa: F401
        import jax.numpy  # noqa: F401
        import jax.scipy.special  # noqa: F401
        from jax._src import xla_bridge
    except ImportError as exc:
        raise Unsupported(f"JAX could not be imported ({exc})") from exc
    if (SYNCHRONOUS_CPU_DISPATCH and "JAX_CPU_ENABLE_ASYNC_DISPATCH" not in os.environ
            and not xla_bridge.backends_are_initialized()):
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    return jax


def unavailable() -> str | None:
    """Why compiled evaluations are off here (JAX missing, else :func:`disabled`), or ``None``."""
    missing = _installed()
    if missing is None and not _ENABLED.get():
        return "disabled by odegrad.compiled.disabled() or ODEGRAD_COMPILED=0"
    return missing


class Unsupported(Exception):
    """A trace that cannot be compiled; the message says why."""


class StaleTrace(Exception):
    """A check failed after unchecked compiled evaluations: the solve that made them is repeated."""


_SOLVE: contextvars.ContextVar[set | None] = contextvars.ContextVar("odegrad_checked_solve", default=None)
"""The :class:`CompiledRhs` with unchecked evaluations in the innermost :func:`checked_solve`."""


def checked_solve(solve: Callable[[], Any]) -> Any:
    """``solve()`` (one solve), with every compiled evaluation it makes verified before it returns.

    Inside ``solve`` compiled evaluations are checked one in :data:`GUARD_EVERY`; when it returns,
    the last evaluation of each compiled ``func`` it used is checked too. Where a check fails after
    unchecked evaluations, their trace may have gone stale before they ran: the solve is repeated
    (that ``func`` now checked at every evaluation, so each repetition ends one source of them;
    :attr:`odegrad.SolveInfo.derivatives_note` says so).
    """
    while True:
        used: set = set()
        token = _SOLVE.set(used)
        try:
            result = solve()
            for rhs in used:
                rhs.check_last()
            return result
        except StaleTrace:
            continue
        finally:
            _SOLVE.reset(token)
            for rhs in used:
                rhs.forget_unchecked()


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
    """autograd's untraced primitives for this node type, noting each one applied to a traced value
    (in the recording of the calling thread)."""

    def __init__(self):
        super().__init__()
        self.local = threading.local()

    def __contains__(self, fun: Any) -> bool:
        if fun in notrace_primitives[VJPNode]:
            hits = getattr(self.local, "hits", None)
            if hits is not None and fun not in _SHAPE_ONLY:
                hits.append(fun)
            return True
        return False


_SPY = _NotraceSpy()
notrace_primitives[_CompileNode] = _SPY
_ARRAY_BOX_BOOL = ArrayBox.__bool__


def _noted_truth_value(box: ArrayBox) -> bool:
    """``bool(box)``, noted (as ``bool``) when ``box`` belongs to a recording: a branch autograd cannot see."""
    hits = getattr(_SPY.local, "hits", None)
    if hits is not None and type(box._node) is _CompileNode:
        hits.append(bool)
    return _ARRAY_BOX_BOOL(box)


ArrayBox.__bool__ = ArrayBox.__nonzero__ = _noted_truth_value


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


def _as_jax_index(idx: Any) -> Any:
    """A NumPy index as JAX takes it: lists of integers (NumPy's fancy indices) as arrays."""
    if isinstance(idx, list):
        return np.asarray(idx)
    if isinstance(idx, tuple):
        return tuple(np.asarray(part) if isinstance(part, list) else part for part in idx)
    return idx


def _lookup(module: str, name: str, jax: Any) -> Callable:
    fun = getattr(importlib.import_module(f"jax.{module}"), name, None)
    if fun is None:
        raise Unsupported(f"jax.{module} has no {name}")
    return fun


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    """``{autograd primitive: resolve(jax) -> jax function}`` for everything a trace of ``f`` may be
    replayed with (built without importing JAX)."""
    import autograd.numpy.linalg as alinalg
    import autograd.scipy.special as aspecial

    table: dict[Any, Callable] = {}
    for source, module, names in ((numpy_wrapper, "numpy", _NAMES), (alinalg, "numpy.linalg", _LINALG),
                                  (aspecial, "scipy.special", _SPECIAL)):
        for name in names:         # the primitive itself where autograd.numpy wraps it (mean, where)
            prim = getattr(source, f"_primitive_{name}", None) or getattr(source, name, None)
            if prim is not None and hasattr(prim, "fun"):
                table[prim] = functools.partial(_lookup, module, name)
    if hasattr(getattr(anp, "_original_where", None), "fun"):     # autograd.numpy.where wraps it
        table[anp._original_where] = functools.partial(_lookup, "numpy", "where")
    table.update({                 # autograd's own primitives, met where a gradient is traced again
        VSpace.add: lambda jax: (lambda vs, x, y: x + y),
        VSpace.mut_add: lambda jax: (lambda vs, x, y: y if x is None else x + y),
        VSpace.scalar_mul: lambda jax: (lambda vs, x, a: x * a),
        VSpace.inner_prod: lambda jax: (lambda vs, x, y: jax.numpy.sum(x * y)),
        sparse_add: lambda jax: (lambda vs, x, y: y if x is None else x + y),
        untake: lambda jax: (lambda x, idx, vs: jax.numpy.zeros(vs.shape, vs.dtype).at[_as_jax_index(idx)].add(x)),
        ArrayBox.__getitem__: lambda jax: (lambda A, idx: A[_as_jax_index(idx)]),
        put_slice: lambda jax: (lambda piece, start, size: jax.numpy.zeros(size, piece.dtype).at[
            start:start + piece.size].set(jax.numpy.ravel(piece))),
        take_slice: lambda jax: (lambda flat, start, stop, shape=None: (
            flat[start:stop] if shape is None else jax.numpy.reshape(flat[start:stop], shape))),
        numpy_wrapper.concatenate_args: lambda jax: (lambda axis, *arrays: jax.numpy.concatenate(arrays, axis)),
        numpy_wrapper.array_from_args: lambda jax: (
            lambda args, kwargs, *items: jax.numpy.array(items, *args, **kwargs)),
        numpy_wrapper._array_from_scalar_or_array: lambda jax: (
            lambda args, kwargs, scalar: jax.numpy.array(scalar, *args, **kwargs)),
    })
    return table


def _name(fun: Any) -> str:
    raw = getattr(fun, "fun", fun)
    return getattr(raw, "__name__", None) or repr(raw)


def _stable_name(fun: Any, resolve: Callable) -> tuple:
    """What names the primitive ``fun`` (replayed by ``resolve``) in another process: its function's
    module and qualified name, and the JAX function it is looked up as."""
    raw = getattr(fun, "fun", fun)
    module = getattr(raw, "__module__", None) or type(raw).__module__
    name = getattr(raw, "__qualname__", None) or getattr(raw, "__name__", None) or repr(raw)
    return module, name, resolve.args if isinstance(resolve, functools.partial) else None


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
    if isinstance(value, ArrayVSpace) and value.dtype.kind == "f":
        return ("vspace", tuple(value.shape), str(value.dtype))
    if isbox(value):
        raise Unsupported("func closes over a value traced by an outer derivative")
    raise Unsupported(f"an argument of type {type(value).__name__} has no compiled counterpart")


def _is_constant_array(value: Any) -> bool:
    """Whether ``value`` is passed to the compiled program as an input (float data) rather than baked in."""
    return (isinstance(value, np.ndarray) and value.dtype.kind == "f") or isinstance(value, np.floating)


class Trace:
    """One recorded trace of ``f`` as a function of ``x``: its operations, key and constants.

    ``ops[i] = (resolve(jax) -> jax function, argument specs, kwargs)``; a spec is ``("node", j)`` (the value of
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
            resolve = table.get(fun)
            if resolve is None:
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
            self.ops.append((resolve, tuple(specs), dict(kwargs)))
            index[node] = len(self.ops)
        self.key = tuple(key)
        self.weight = max(1.0, len(self.ops) / COMPILE_AFTER_OPS)
        """Evaluations of :data:`COMPILE_AFTER` one evaluation of this trace counts as."""
        self.size, self.n_out = size, n_out
        self.consts = np.concatenate(consts).astype(float) if consts else np.zeros(0)

    @functools.cached_property
    def digest(self) -> str | None:
        """:attr:`key` as another process computes it (:func:`odegrad.compile_cache.digest`: each
        primitive by :func:`_stable_name`), or ``None`` where it cannot be (the programs of this
        structure are then not kept on disk). Computed only where the disk cache is on."""
        table = _table()
        return compile_cache.digest((*self.key[:2], *((_stable_name(fun, table[fun]), *rest)
                                                      for fun, *rest in self.key[2:])))

    @functools.cached_property
    def stored(self) -> bool:
        """Whether a program of this structure was on disk (:mod:`odegrad.compile_cache`) when this
        trace first asked: once per recording, not at every warm-up evaluation."""
        disk = compile_cache.store(_SOURCES)
        return disk is not None and self.digest is not None and disk.known(self.digest)


def record(fun: Callable[[Any], Any], x: np.ndarray) -> tuple[Trace, np.ndarray]:
    """``(trace, fun(x))``: ``fun`` traced once at ``x`` into a :class:`Trace`.

    Raises
    ------
    Unsupported
        Where the trace could not be compiled, or holds only near ``x`` (``fun`` applied a
        value-dependent operation to its input); the message says which.
    """
    start = _CompileNode.new_root()
    _SPY.local.hits = []
    try:
        value, end = trace(start, fun, x)
    except Unsupported:
        raise
    except Exception as exc:            # anything autograd's trace of one vector cannot run
        raise Unsupported(f"func could not be traced as a function of one vector ({type(exc).__name__}: {exc})") from exc
    finally:
        hits, _SPY.local.hits = _SPY.local.hits, None
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
    """The compiled ``f`` and its derived evaluations for one structure of trace (float64, XLA).

    Each compiled evaluation takes two vectors (one transfer each; every further argument costs
    about as much as the arithmetic of a small ``f``): ``[y, θ, t, *extra]`` and the trace's
    constants, and returns ``[f, result...]``, ``f`` the compiled ``f`` (what a check compares
    with ``func``). The kinds (:meth:`__call__`) compute what the derived dynamics return, so that
    their algebra runs in the same compiled call.
    """

    def __init__(self, trace_: Trace):
        self._jax = _jax()
        self._trace = trace_
        self._ops = [(resolve(self._jax), specs, kwargs) for resolve, specs, kwargs in trace_.ops]
        self._functions: dict[tuple, Callable] = {}

    def _f(self, x: Any, consts: Any) -> Any:
        jnp = self._jax.numpy
        values = [x]
        for jfun, specs, kwargs in self._ops:
            args = [values[spec[1]] if spec[0] == "node" else spec[1] if spec[0] == "static"
                    else jnp.reshape(consts[spec[1]:spec[1] + math.prod(spec[2])], spec[2])
                    for spec in specs]
            values.append(jfun(*args, **kwargs))
        return jnp.ravel(values[-1])

    def _body(self, kind: tuple) -> tuple[int, Callable]:
        """``(entries of extra, body(fun, x, extra) -> (f, result))`` of one kind."""
        jax, jnp = self._jax, self._jax.numpy
        m, n = self._trace.size, self._trace.n_out
        p = m - n - 1

        def vjp(fun, x, a):
            out, back = jax.vjp(fun, x)
            return out, back(a)[0]

        def jacobian(fun, x, _):
            out, back = jax.vjp(fun, x)
            return out, jax.vmap(lambda e: back(e)[0])(jnp.eye(n, dtype=out.dtype))

        if kind[0] == "adjoint":                 # [f if with_state, -a·∂f/∂y, -a·∂f/∂t, -a·∂f/∂θ]
            _, with_state, with_time, with_params = kind

            def adjoint(fun, x, a):
                out, v = vjp(fun, x, a)
                parts = ([out] if with_state else []) + [-v[:n]] + ([-v[n + p:]] if with_time else []) + \
                    ([-v[n:n + p]] if with_params else [])
                return out, jnp.concatenate(parts)

            return n, adjoint
        if kind[0] == "sensitivity":             # [f, ∂f/∂y S + [0 | ∂f/∂θ]] for S of q columns
            _, q, with_params = kind

            def sensitivity(fun, x, S):
                out, J = jacobian(fun, x, None)
                JS = J[:, :n] @ jnp.reshape(S, (n, q))
                if with_params and p:
                    JS = JS.at[:, q - p:].add(J[:, n:n + p])
                return out, jnp.concatenate([out, jnp.ravel(JS)])

            return n * q, sensitivity
        if kind[0] == "jacobian":
            return 0, lambda fun, x, _: (lambda out, J: (out, jnp.concatenate([out, jnp.ravel(J)])))(
                *jacobian(fun, x, None))
        if kind[0] == "vjp_jacobian":

            def vjp_jacobian(fun, x, a):
                both = lambda xx, aa: jnp.concatenate(vjp(fun, xx, aa))  # noqa: E731
                jx, ja = jax.jacfwd(both, argnums=(0, 1))(x, a)
                return fun(x), jnp.ravel(jnp.concatenate([jx, ja], axis=1))

            return n, vjp_jacobian
        raise ValueError(f"unknown kind of compiled evaluation {kind!r}")

    def _function(self, kind: tuple) -> Callable:
        """The compiled program of ``kind``: read from disk (:mod:`odegrad.compile_cache`) where an
        earlier process stored it, else traced, compiled ahead of time and stored."""
        jax, jnp = self._jax, self._jax.numpy
        m = self._trace.size
        n_extra, body = self._body(kind)

        def run(packed, consts):
            out, result = body(lambda xx: self._f(xx, consts), packed[:m], packed[m:m + n_extra])
            return jnp.concatenate([out, result])

        options = FAST_COMPILE if self._trace.size + n_extra <= FAST_COMPILE_MAX_INPUTS else None
        specs = (jax.ShapeDtypeStruct((m + n_extra,), np.float64),
                 jax.ShapeDtypeStruct(self._trace.consts.shape, np.float64))
        disk = compile_cache.store(_SOURCES)
        structure = None if disk is None else self._trace.digest
        name = compile_cache.digest(kind)
        serialize_executable = jax.experimental.serialize_executable
        trees = (jax.tree_util.tree_structure(((0, 0), {})), jax.tree_util.tree_structure(0))
        with jax.enable_x64(True):
            if structure is not None:
                found = disk.load(structure, name, lambda blob: serialize_executable.deserialize_and_load(blob, *trees))
                if found is not None:
                    return found
            compiled = jax.jit(run, compiler_options=options).lower(*specs).compile()
            compile_cache.STATS["compiles"] += 1
            if structure is not None:
                blob, *made = serialize_executable.serialize(compiled)
                if tuple(made) == trees:
                    disk.save(structure, name, blob)
            return compiled

    def put(self, consts: np.ndarray) -> Any:
        """``consts`` as a float64 JAX array, transferred once per trace rather than at every call."""
        with self._jax.enable_x64(True):
            return self._jax.device_put(consts)

    def __call__(self, kind: tuple, packed: np.ndarray, consts: Any) -> np.ndarray:
        """One compiled evaluation: ``kind`` is ``("adjoint", with_state, with_time, with_params)``,
        ``("sensitivity", q, with_params)``, ``("jacobian",)`` or ``("vjp_jacobian",)``; ``consts``
        as :meth:`put` returns them."""
        try:
            function = self._functions.get(kind)
            first = function is None
            if first:
                function = self._function(kind)
            with self._jax.enable_x64(True):
                out = np.asarray(function(packed, consts))
            if first:   # the C++ entry point JAX builds at the first call: skips Compiled.__call__ (0.5 of 9 us)
                self._functions[kind] = getattr(function, "_call", None) or function
            return out
        except Exception as exc:           # JAX could not trace or compile the replayed f
            raise Unsupported(f"JAX could not compile the trace of func ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


_PROGRAMS: dict[tuple, Program] = {}
_EVALUATIONS: dict[tuple, float] = {}


def program(trace_: Trace) -> Program:
    """The compiled program of ``trace_``'s structure, built at its first use."""
    found = _PROGRAMS.get(trace_.key)
    if found is None:
        if len(_PROGRAMS) >= MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        found = _PROGRAMS[trace_.key] = Program(trace_)
    return found


def _pack(y: np.ndarray, t: Any, theta: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
    """The one input vector of a compiled evaluation: ``[y, θ, t, extra]``."""
    return np.concatenate((y, theta, (t,)) if extra is None else (y, theta, (t,), extra))


def _agrees(compiled_f: np.ndarray, direct: np.ndarray) -> bool:
    """Whether the compiled ``f`` agrees with ``func``'s direct evaluation (:data:`GUARD_RTOL`)."""
    scale = GUARD_RTOL * (np.abs(direct) + np.max(np.abs(direct)))
    return bool(np.all(np.abs(compiled_f - direct) <= scale))


class CompiledRhs:
    """Compiled derivative evaluations of one solve's dynamics, checked against ``func``.

    Each evaluation method returns ``None`` where the evaluation must be autograd's: compiled
    evaluations are unavailable (:attr:`reason` says why) or ``f`` is not finite at the point.
    Which evaluations are checked: the module docstring.

    Parameters
    ----------
    rhs : callable
        ``rhs(y, t, theta)`` on flat arrays, written with ``autograd.numpy`` (what is traced).
    make_fun : callable
        ``make_fun(theta) -> fun(y, t)``: the same dynamics on plain arrays with ``theta`` bound
        (what the forward solve calls), the direct evaluation of a check.
    n, n_params : int
        Entries of ``y`` and ``theta``.
    report : callable
        ``report(backend, note)``: called when the backend (``"jax"`` or ``"autograd"``) is decided
        or changes, with the reason for autograd (or a note on a repeated solve).
    """

    def __init__(self, rhs: Callable[[Any, Any, Any], Any], make_fun: Callable[[np.ndarray], Callable],
                 n: int, n_params: int, report: Callable[[str, str | None], None]):
        self.rhs, self.make_fun, self.n, self.n_params, self._report = rhs, make_fun, n, n_params, report
        self.reason: str | None = unavailable()
        self.retraces = 0
        self.guard_every = GUARD_EVERY
        """Check one evaluation in this many inside a solve (1 after a stale trace was found)."""
        self._countdown = 0
        """Unchecked evaluations left before the next check (0: check the next one)."""
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        """``(packed input, compiled output)`` of the last evaluation, where it was unchecked."""
        self._trace: Trace | None = None
        self._program: Program | None = None
        self._consts: Any = np.zeros(0)
        self._bound: tuple[Any, Callable | None] = (None, None)
        if self.reason is not None:
            report("autograd", self.reason)

    def _fun(self, x: Any) -> Any:
        n, p = self.n, self.n_params
        return self.rhs(take_slice(x, 0, n), take_slice(x, n + p, n + p + 1, ()), take_slice(x, n, n + p))

    def _fall_back(self, reason: str) -> None:
        self.reason, self._program = reason, None
        self._report("autograd", reason)

    def _use(self, program_: Program | None) -> None:
        """Evaluate with ``program_`` (``None``: not yet) and the constants of the current trace;
        the next evaluation is checked."""
        self._program, self._countdown, self._last = program_, 0, None
        if program_ is not None:
            self._consts = program_.put(self._trace.consts)

    def _record(self, x: np.ndarray, compile_now: bool) -> bool:
        """Record the trace at ``x``, and compile it now or once it is warm (:data:`COMPILE_AFTER`)."""
        if x.size > MAX_INPUTS:
            self._fall_back(f"y, args and t have {x.size} entries, more than odegrad.compiled.MAX_INPUTS = "
                            f"{MAX_INPUTS}: autograd's whole-array evaluations are the faster there")
            return False
        try:
            self._trace, _ = record(self._fun, x)
            self._use(program(self._trace) if compile_now or self._warm() else None)
        except Unsupported as exc:
            self._fall_back(str(exc))
            return False
        return True

    def _warm(self) -> bool:
        """Count one evaluation of this trace's structure (weighted by its operations,
        :data:`COMPILE_AFTER_OPS`); whether it is (to be) compiled."""
        key = self._trace.key
        if len(_EVALUATIONS) > 4 * MAX_PROGRAMS:
            _EVALUATIONS.clear()
        count = _EVALUATIONS[key] = _EVALUATIONS.get(key, 0) + self._trace.weight
        return key in _PROGRAMS or count > COMPILE_AFTER or _AT_ONCE.get() or self._trace.stored

    def _direct(self, y: np.ndarray, t: Any, theta: np.ndarray) -> np.ndarray:
        """``func`` evaluated directly at ``(y, t, theta)`` (bound once per parameter vector)."""
        bound = self._bound
        if bound[0] is not theta:
            bound = self._bound = (theta, self.make_fun(theta))
        return np.asarray(bound[1](y, t), dtype=np.float64)

    def evaluate(self, kind: tuple, y: np.ndarray, t: Any, theta: np.ndarray,
                 extra: np.ndarray | None = None) -> np.ndarray | None:
        """The compiled evaluation ``kind`` (see :meth:`Program.__call__`) at ``(y, t, theta)``, or
        ``None`` (autograd's evaluation is needed).

        Once a program is in use, the compiled call and, at checked evaluations, the direct
        evaluation of ``func`` are all that runs here; recording, compiling and re-recording are
        :meth:`_prepare` and :meth:`_disagreed`.

        Raises
        ------
        StaleTrace
            A check failed after unchecked evaluations of the current solve (:func:`checked_solve`
            repeats it).
        """
        program_ = self._program
        if program_ is None:
            return self._prepare(kind, y, t, theta, extra)
        packed = _pack(y, t, theta, extra)
        try:
            out = program_(kind, packed, self._consts)
        except Unsupported as exc:
            self._fall_back(str(exc))
            return None
        n = self.n
        if self._countdown and math.isfinite(finite_total(out)):
            used = _SOLVE.get()
            if used is not None:           # unchecked, verified before the solve returns
                self._countdown -= 1
                self._last = (packed, out)
                used.add(self)
                return out[n:]
        direct = self._direct(y, t, theta)
        if _agrees(out[:n], direct):
            self._countdown, self._last = self.guard_every - 1, None
            return out[n:]
        if self._last is not None:
            self._stale()
        return self._disagreed(kind, packed, direct)

    def check_last(self) -> None:
        """Check the last evaluation where it was not checked (the end of a :func:`checked_solve`).

        Raises
        ------
        StaleTrace
            Where the compiled ``f`` disagrees with ``func`` there.
        """
        if self._last is None:
            return
        packed, out = self._last
        n, p = self.n, self.n_params
        if not _agrees(out[:n], self._direct(packed[:n], packed[n + p], packed[n:n + p])):
            self._stale()
        self._countdown, self._last = self.guard_every - 1, None

    def forget_unchecked(self) -> None:
        """End the current window of unchecked evaluations (its solve returned or was abandoned)."""
        self._last = None

    def _stale(self) -> None:
        """Give up the unchecked evaluations of this solve: check every evaluation from now on."""
        self.guard_every, self._countdown, self._last = 1, 0, None
        self._report("jax", "a check found the compiled func disagreeing with func after unchecked "
                     "evaluations; the solve was repeated with every evaluation checked")
        raise StaleTrace("the compiled func disagreed with func after unchecked evaluations")

    def _prepare(self, kind: tuple, y: np.ndarray, t: Any, theta: np.ndarray,
                 extra: np.ndarray | None) -> np.ndarray | None:
        """:meth:`evaluate` before a program is in use: record the trace, count it towards
        :data:`COMPILE_AFTER`, compile it once warm; ``None`` while autograd evaluates."""
        if self.reason is not None:
            return None
        if self._trace is None:
            if not self._record(np.concatenate([y, theta, [t]]), compile_now=False):
                return None
            if self._program is None:
                evaluations = math.ceil(COMPILE_AFTER / self._trace.weight)
                self._report("autograd", f"compiled after {evaluations} evaluations of this func in this process "
                             "(odegrad.compiled.COMPILE_AFTER, per its operations); warming up")
        elif self._warm():
            try:
                self._use(program(self._trace))
            except Unsupported as exc:
                self._fall_back(str(exc))
                return None
        if self._program is None:
            return None
        out = self.evaluate(kind, y, t, theta, extra)
        if out is not None:
            self._report("jax", None)
        return out

    def _disagreed(self, kind: tuple, packed: np.ndarray, direct: np.ndarray) -> np.ndarray | None:
        """The compiled ``f`` disagreed with ``direct`` at a checked evaluation that no unchecked one
        preceded: autograd's evaluation where ``f`` is not finite, else re-record the trace at this
        point (up to :data:`MAX_RETRACES` times) and evaluate again; fall back to autograd where the
        new trace disagrees too."""
        if not np.all(np.isfinite(direct)):
            return None
        if self.retraces < MAX_RETRACES:
            self.retraces += 1
            if not self._record(packed[:self.n + self.n_params + 1], compile_now=True):
                return None
            try:
                out = self._program(kind, packed, self._consts)
            except Unsupported as exc:
                self._fall_back(str(exc))
                return None
            if _agrees(out[:self.n], direct):
                self._countdown = self.guard_every - 1
                return out[self.n:]
        self._fall_back("the compiled func disagreed with func at a point it was recorded at "
                        "(func is not a pure function of y, t and args), or kept changing its trace "
                        f"({self.retraces} re-recordings)")
        return None

    def jacobian(self, y: np.ndarray, t: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(f, ∂f/∂[y, θ, t])`` (shapes ``(n,)`` and ``(n, n + p + 1)``), or ``None``."""
        out = self.evaluate(("jacobian",), y, t, theta)
        return None if out is None else (out[:self.n], out[self.n:].reshape(self.n, -1))

    def vjp_jacobian(self, y: np.ndarray, t: Any, theta: np.ndarray, a: np.ndarray) -> np.ndarray | None:
        """The Jacobian of ``(x, a) -> [f(x), a · ∂f/∂x]`` with ``x = [y, θ, t]``, or ``None``.

        Shape ``(n + m, m + n)`` with ``m = n + p + 1``: rows ``f`` then the VJP, columns ``x``
        then ``a``.
        """
        out = self.evaluate(("vjp_jacobian",), y, t, theta, a)
        m = self.n + self.n_params + 1
        return None if out is None else out.reshape(self.n + m, m + self.n)
