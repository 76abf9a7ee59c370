"""The TensorFlow backend: dynamics as TF computations and the differentiable solve.

A host-side scipy solver does the stepping; each of its evaluations is one call of a
``tf.function``-compiled computation (forward: ``f``; backward: ``f`` and its VJP fused; forward
sensitivities: ``f`` and its Jacobian), one state in and one derivative out, placed on one device
(:func:`default_device`). The gradient is the registered gradient method that ``adjoint=`` names
(:mod:`odegrad.methods`, the same objects as on the autograd door) given a
:class:`odegrad.methods.GradientRequest` of :class:`TFOps`, a :class:`TFDynamics` and
:func:`solve_eager`: eagerly through ``tf.custom_gradient`` (differentiable again), or inside a
``tf.function`` through ``tf.py_function`` (first derivatives).

Compiled computations are cached per ``f`` and reused only for the same trace of ``f``
(:func:`odegrad.tf.tracing.probe`), so a cache never changes the answer. The cache holds ``f``
weakly and its computations do not hold ``f`` (:class:`_WeakRhs`), so an ``f`` made afresh for
each call (a lambda, a closure) is freed with its compiled computations.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import weakref
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .. import methods, solvers
from ..augmented import AugmentedLayout
from ..methods import Gradient, GradientRequest, Wrt
from ..methods.base import Vjp
from ..options import AdjointOptions
from ..sensitivity import SensitivityLayout
from ..stats import SolveInfo
from .tracing import TFCallable, check_output, read_by, trainable_of, variable_ids

try:  # TensorFlow's own JVPs (tf.autodiff.ForwardAccumulator) use this to record tapes inside
    from tensorflow.python.eager.forwardprop_util import push_forwardprop_state
except ImportError:  # pragma: no cover - a TensorFlow without it: forward mode is refused
    push_forwardprop_state = None

try:  # whether a tape or accumulator records: a gradient being computed is then differentiated again
    from tensorflow.python.eager.record import could_possibly_record
except ImportError:  # pragma: no cover - a TensorFlow without it: every gradient counts as higher order
    could_possibly_record = None

CACHE_SIZE = 16
"""Compiled computations kept per ``f`` (least recently used ones are dropped)."""


class TFOps:
    """:class:`odegrad.ops.Ops` from TensorFlow."""

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

    @staticmethod
    def value(x: tf.Tensor) -> np.ndarray:
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)

    @staticmethod
    def reshape(x: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
        return tf.reshape(x, shape)

    @staticmethod
    def einsum(spec: str, *operands: tf.Tensor) -> tf.Tensor:
        return tf.einsum(spec, *operands)

    @staticmethod
    def constant(array: np.ndarray, like: tf.Tensor) -> tf.Tensor:
        """``array`` (NumPy) as a constant tensor of ``like``'s dtype."""
        return tf.constant(np.asarray(array), dtype=like.dtype)


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
        return user._rhs(*args)


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

    This is what the scipy solver evaluates (through :meth:`TFDynamics.numpy_f`): a flat float64
    state of ``n`` entries and a float64 time in, the flat float64 derivative out; inside, the
    state is cast to ``dtype``, so the computation runs in ``dtype`` end to end and only the
    boundary is float64 (with XLA the casts fuse into the first and last kernels).

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


@dataclasses.dataclass(eq=False)
class TFDynamics:
    """A :class:`odegrad.adjoint.Dynamics` whose ``f`` is a TensorFlow computation.

    The forward dynamics has ``rhs=None`` (it integrates ``func`` on the flat state ``y``);
    :meth:`augmented` and :meth:`adjoint_along` derive the dynamics of the backward states from
    it, :meth:`sensitivity` those of the forward sensitivities, and ``augmented`` and
    ``sensitivity`` compose again for higher derivatives.

    Attributes
    ----------
    func : callable
        The user's ``f(t, y, *args)``.
    shape : tuple of int
        Shape of the state ``y`` of ``func`` (concrete: graph-mode solves specialise at run time).
    dtype : tf.DType
    time_dtype : tf.DType
        The dtype of the time ``func`` receives (that of the output times, float64 by default):
        the solver's float64 time is cast to it, not to ``dtype``.
    variables : tuple
        The trainable variables to differentiate (as given: ``tf.Variable``, Keras or
        distributed variables); the solve's inputs that receive their cotangents.
    sources : tuple of tf.Variable
        The variables ``func`` actually reads for each of ``variables`` (as found by
        :func:`probe`), which the VJP inside the compiled dynamics differentiates.
    captures : tuple of tf.Tensor
        Eager tensors ``func`` reads from enclosing scopes; the floating ones are differentiated.
    args : tuple of tf.Tensor
        Explicit extra arguments of ``func``; the floating ones are differentiated.
    opts, backward_opts : SolverOptions
    adjoint : AdjointOptions
    info : SolveInfo
    compiled : OrderedDict
        Cache of compiled computations of ``func`` (:func:`cache_of`).
    key : tuple
        What identifies the trace of ``func``: fingerprint, variables, captures (:func:`probe`).
    jit_compile : bool
    device : str
    stage : {"forward", "backward"}
        Which count of ``info`` this dynamics' solves add to.
    rhs : callable, optional
        ``rhs(s, t, *extra)``: the flat dynamics of a derived (backward) state.
    size : int
        Entries of that state.
    chain : tuple of str
        How it was derived (``"augmented"``, ``"along"``, ``"sensitivity"``), part of the cache key.
    y_of_t : callable, optional
        The dense forward solution read by the ``"along"`` (interpolating) adjoint.
    """

    func: TFCallable
    shape: tuple[int, ...]
    dtype: tf.DType
    time_dtype: tf.DType
    variables: tuple[Any, ...]
    sources: tuple[tf.Variable, ...]
    captures: tuple[tf.Tensor, ...]
    args: tuple[tf.Tensor, ...]
    opts: solvers.SolverOptions
    backward_opts: solvers.SolverOptions
    adjoint: AdjointOptions
    info: SolveInfo
    compiled: collections.OrderedDict
    key: tuple
    jit_compile: bool = False
    device: str = "/CPU:0"
    stage: str = "forward"
    rhs: Callable[..., tf.Tensor] | None = None
    size: int = 0
    chain: tuple[str, ...] = ()
    y_of_t: Callable[[float], np.ndarray] | None = None
    _layouts: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n(self) -> int:
        """Entries of this dynamics' flat state."""
        return self.size if self.rhs is not None else int(np.prod(self.shape, dtype=np.int64))

    @functools.cached_property
    def _variable_ids(self) -> list[set[int]]:
        return [variable_ids(v) | {id(s)} for v, s in zip(self.variables, self.sources)]

    @functools.cached_property
    def _differentiated(self) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        return [c for c in self.captures if c.dtype.is_floating], [a for a in self.args if a.dtype.is_floating]

    @property
    def params(self) -> list[Any]:
        """What ``a_theta`` differentiates, in order: variables (the ``tf.Variable`` of each, whose
        dtype a Keras mixed-precision policy does not change), floating captures, floating args."""
        captures, args = self._differentiated
        return [*(trainable_of(v) for v in self.variables), *captures, *args]

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params))

    def flat(self, y: tf.Tensor, t: tf.Tensor, *args: tf.Tensor) -> tf.Tensor:
        """``func(t, y, *args)`` on a flat state, flat out (``t`` is cast to :attr:`time_dtype`)."""
        shaped = tf.reshape(y, self.shape)
        out = check_output(self.func(tf.cast(t, self.time_dtype), shaped, *args), shaped)
        return tf.reshape(tf.cast(out, y.dtype), [-1])

    @property
    def _rhs(self) -> Callable[..., tf.Tensor]:
        return self.flat if self.rhs is None else self.rhs

    def f(self, y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """This dynamics on its flat state, with this call's arguments bound (differentiable)."""
        return self._rhs(y, t, *self.args)

    def _vjp(self, rhs: Callable[..., tf.Tensor], y: tf.Tensor, t: tf.Tensor, a: tf.Tensor,
             args: Sequence[tf.Tensor], layout: AugmentedLayout) -> tuple[Any, Any, Any, Any]:
        """``(dy, a·∂rhs/∂y, a·∂rhs/∂t, a·∂rhs/∂θ)``, ``θ`` the flattened :attr:`params`; the
        parts ``layout`` leaves out are not computed (``None``)."""
        captures, _ = self._differentiated
        float_args = [x for x in args if x.dtype.is_floating]
        times = [t] if layout.with_time else []
        params = [*captures, *float_args] if layout.with_params else []
        # A forward accumulator computing the JVP of a solve calls its gradient while it processes
        # the solve; a tape traced then records nothing (a zero VJP, cached for ever) unless the
        # accumulators' state is pushed, as TensorFlow's own JVPs do.
        with (push_forwardprop_state or contextlib.nullcontext)(), tf.GradientTape() as tape:
            tape.watch([y, *times, *params])
            dy = rhs(y, t, *args)
        variables: list[Any] = []
        if layout.with_params:
            # The variables this trace read: under a tf.distribute strategy, the component of each
            # distributed variable that is read depends on the context the trace runs in.
            read = tape.watched_variables()
            variables = [read_by(ids, read, source) for ids, source in zip(self._variable_ids, self.sources)]
        sources = [y, *times, *variables, *params]
        # The cotangent enters f's own backward pass scaled to order 1 (by a power of two, so
        # exactly): under a Keras mixed-precision policy that pass runs in float16, where the loss
        # scale (2**15) times an adjoint of order 10 overflows.
        scale = _power_of_two_below(a)
        v_y, *rest = tape.gradient(dy, sources, output_gradients=a / scale, unconnected_gradients="zero")
        v_y = v_y * scale
        v_t = tf.reshape(tf.cast(rest.pop(0), a.dtype), [1]) * scale if layout.with_time else None
        v_theta = None
        if layout.with_params:
            flat_theta = [tf.reshape(tf.cast(v, a.dtype), [-1]) for v in rest]
            v_theta = (tf.concat(flat_theta, 0) if flat_theta else tf.zeros([0], a.dtype)) * scale
        return dy, v_y, v_t, v_theta

    def _jacobian(self, rhs: Callable[..., tf.Tensor], y: tf.Tensor, t: tf.Tensor, args: Sequence[tf.Tensor],
                  with_params: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """``(dy, ∂rhs/∂y, ∂rhs/∂θ)``, shapes (n,), (n, n), (n, n_params); ``None`` for the last
        without ``with_params``.

        All rows from one trace of ``rhs`` and one reverse pass vectorised over the ``n`` rows
        (``GradientTape.jacobian`` with pfor): the states that take forward sensitivities are small,
        and on tanh MLPs of 2-8 states this was as fast as or faster than ``q`` batched JVPs
        (``tf.vectorized_map`` over ``tf.autodiff.ForwardAccumulator``), whose count grows with the
        parameters.
        """
        captures, _ = self._differentiated
        float_args = [x for x in args if x.dtype.is_floating]
        params = [*captures, *float_args] if with_params else []
        with (push_forwardprop_state or contextlib.nullcontext)(), tf.GradientTape() as tape:
            tape.watch([y, *params])
            dy = rhs(y, t, *args)
        variables: list[Any] = []
        if with_params:
            read = tape.watched_variables()
            variables = [read_by(ids, read, source) for ids, source in zip(self._variable_ids, self.sources)]
        with (push_forwardprop_state or contextlib.nullcontext)():
            J_y, *rest = tape.jacobian(dy, [y, *variables, *params], unconnected_gradients="zero",
                                       experimental_use_pfor=True)
        J_theta = None
        if with_params:
            n = int(y.shape[0])
            columns = [tf.reshape(tf.cast(j, dy.dtype), [n, -1]) for j in rest]
            J_theta = tf.concat(columns, 1) if columns else tf.zeros([n, 0], dy.dtype)
        return dy, tf.cast(J_y, dy.dtype), J_theta

    @property
    def compiled_f(self) -> Callable[..., tf.Tensor]:
        """:func:`compile_dynamics` of this dynamics, once per trace key, shape and options."""
        arg_specs = [tf.TensorSpec(a.shape, a.dtype) for a in self.args]
        along = bool(self.chain) and self.chain[-1] == "along"
        extra = ([tf.TensorSpec([int(np.prod(self.shape))], tf.float64)] if along else []) + arg_specs
        key = (self.chain, self.shape, self.dtype.name, self.jit_compile, self.device,
               tuple((tuple(spec.shape), spec.dtype.name) for spec in extra)) + self.key
        if key in self.compiled:
            self.compiled.move_to_end(key)
        else:
            rhs = _WeakRhs()
            self.compiled[key] = compile_dynamics(rhs, self.n, self.dtype, self.jit_compile, self.device, extra)
            _weak_rhs[self.compiled[key]] = rhs
            while len(self.compiled) > CACHE_SIZE:
                self.compiled.popitem(last=False)
        _weak_rhs[self.compiled[key]].users.add(self)
        return self.compiled[key]

    @property
    def numpy_f(self) -> Callable[[np.ndarray, float], np.ndarray]:
        """What the scipy solver calls: float64 NumPy state and time in, float64 NumPy out.

        The computation is traced (if it is new to this context) here and now, where tapes
        record: the VJP inside the backward dynamics is a tape of its own, and the solver then
        calls the traced computation with every tape paused (:func:`_unrecorded`).
        """
        compiled, args, y_of_t = self.compiled_f.get_concrete_function(), self.args, self.y_of_t
        if y_of_t is not None:
            return lambda s, t: compiled(s, t, y_of_t(t), *args).numpy()
        return lambda s, t: compiled(s, t, *args).numpy()

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve."""
        self.info.record(self.stage, stats)

    def _derived(self, rhs: Callable[..., tf.Tensor], layout: AugmentedLayout | SensitivityLayout, step: str,
                 y_of_t: Callable[[float], np.ndarray] | None = None) -> "TFDynamics":
        """The dynamics ``rhs`` of the derived state ``layout``, solved as backward work."""
        if isinstance(layout, SensitivityLayout):
            opts = layout.solver_options(self.backward_opts)
        else:
            opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
        return dataclasses.replace(self, opts=opts, backward_opts=opts, stage="backward", rhs=rhs,
                                   size=layout.size, chain=self.chain + (step,), y_of_t=y_of_t,
                                   key=self.key + (layout,))

    def augmented(self, layout: AugmentedLayout) -> "TFDynamics":
        """The dynamics of the backward state ``layout`` (``[y, a, a_t, a_theta]``), built once per layout."""
        if layout not in self._layouts:
            parent = self._rhs

            def augmented(s, t, *args):
                y, a, _, _ = layout.split(s)
                dy, v_y, v_t, v_theta = self._vjp(parent, y, t, a, args, layout)
                return layout.join(TFOps.concat, dy, -v_y, _negated(v_t), _negated(v_theta))

            self._layouts[layout] = self._derived(augmented, layout, "augmented")
        return self._layouts[layout]

    def sensitivity(self, layout: SensitivityLayout) -> "TFDynamics":
        """The dynamics of ``z = [y, S]`` (forward sensitivities), built once per layout.

        ``dz/dt = [f, ∂f/∂y S + [0 | 0 | ∂f/∂θ]]`` with ``S`` (n × q) stored row by row after ``y``,
        its columns ``∂y/∂y0``, ``∂y/∂t_0``, ``∂y/∂θ`` as the flags of ``layout`` say (``θ`` the
        flattened :attr:`params`, as in ``a_theta``); :mod:`odegrad.sensitivity` has the equations.
        Each evaluation is one compiled trace of ``f`` and one reverse pass vectorised over the rows
        of the Jacobian (:meth:`_jacobian`); ``sensitivity`` and ``augmented`` compose again for
        higher derivatives.

        Raises
        ------
        ValueError
            If ``layout`` is not one of a state of :attr:`n` entries and :attr:`n_params` parameters.
        """
        if (layout.n, layout.n_params) != (self.n, self.n_params):
            raise ValueError(f"a sensitivity layout for n={layout.n}, n_params={layout.n_params} does not fit "
                             f"dynamics with n={self.n}, n_params={self.n_params}")
        if layout not in self._layouts:
            parent, n, q = self._rhs, layout.n, layout.columns
            p = self.n_params if layout.with_params else 0

            def sensitivity(z, t, *args):
                y, S = z[:n], tf.reshape(z[n:], [n, q])
                dy, J_y, J_theta = self._jacobian(parent, y, t, args, p > 0)
                JS = tf.matmul(J_y, S)
                if p:
                    JS = tf.concat([JS[:, :q - p], JS[:, q - p:] + J_theta], 1)
                return tf.concat([dy, tf.reshape(JS, [-1])], 0)

            self._layouts[layout] = self._derived(sensitivity, layout, "sensitivity")
        return self._layouts[layout]

    def resolve(self, y0: np.ndarray, t: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """A plain solve of this dynamics from ``y0`` at the times ``t``, with parameters ``theta``.

        Not differentiated; the work counts as backward work (it serves a gradient). Variables
        are assigned ``theta``'s entries for the solve and restored afterwards (other threads
        using them meanwhile see the assigned values); floating ``args`` are replaced.

        Parameters
        ----------
        y0 : ndarray, shape (n,)
        t : ndarray, shape (T,)
        theta : ndarray, shape (n_params,), optional
            The flat parameters in the order of :attr:`params`; ``None``: the current ones.

        Returns
        -------
        ndarray, shape (T, n), float64

        Raises
        ------
        ValueError
            If ``theta`` has another size than :attr:`n_params`.
        NotImplementedError
            If ``theta`` changes a tensor ``f`` captures from an enclosing scope (it cannot be
            replaced): pass such tensors to ``odeint`` through ``args``.
        """
        dynamics, assigned, restore = self, [], []
        if theta is not None:
            dynamics, assigned = self._with_params(np.asarray(theta, dtype=np.float64).ravel())
        try:
            with _unrecorded():
                for variable, value in assigned:
                    restore.append((variable, variable.read_value()))
                    variable.assign(value)
            fun = dynamics.numpy_f
            with _unrecorded():
                ys, stats = solvers.solve(fun, np.asarray(y0, np.float64).ravel(), np.asarray(t, np.float64),
                                          dynamics.opts)
            self.info.record("backward", stats)
        finally:
            with _unrecorded():
                for variable, value in restore:
                    variable.assign(value)
        return ys

    def _with_params(self, theta: np.ndarray) -> tuple["TFDynamics", list[tuple[tf.Variable, tf.Tensor]]]:
        """This dynamics with the flat parameters ``theta``: its floating args replaced, and the
        values its variables are to be assigned."""
        if theta.size != self.n_params:
            raise ValueError(f"theta has {theta.size} entries; this dynamics has n_params={self.n_params}")
        params = self.params
        sizes = [int(np.prod(p.shape)) for p in params]
        parts = [part.reshape(p.shape) for part, p in zip(np.split(theta, np.cumsum(sizes)[:-1]), params)]
        n_variables, (captures, _) = len(self.variables), self._differentiated
        for capture, part in zip(captures, parts[n_variables:]):
            if not np.array_equal(part, capture.numpy()):
                raise NotImplementedError(
                    "this gradient method solves again with other parameters, and f captures a tensor from an "
                    "enclosing scope, which cannot be replaced: pass it to odeint through args= "
                    "(f(t, y, tensor), args=(tensor,)) instead")
        replaced = iter(parts[n_variables + len(captures):])
        args = tuple(tf.constant(next(replaced), dtype=a.dtype) if a.dtype.is_floating else a for a in self.args)
        assigned = [(variable, tf.constant(part, dtype=variable.dtype))
                    for variable, part in zip(params[:n_variables], parts)]
        return dataclasses.replace(self, args=args), assigned

    def dense_forward(self, y_start: tf.Tensor, t_start: tf.Tensor, t_end: tf.Tensor) -> Callable[[float], np.ndarray]:
        """Solve forwards over ``[t_start, t_end]`` with dense output (the backward method, the
        forward tolerances); the work counts as backward work."""
        opts = dataclasses.replace(self.opts, method=self.backward_opts.method)
        fun = self.numpy_f
        with _unrecorded():
            y_of_t, stats = solvers.dense_solve(fun, np.asarray(y_start, np.float64), float(t_start), float(t_end), opts)
        self.info.record("backward", stats)
        return y_of_t

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray], layout: AugmentedLayout) -> "TFDynamics":
        """The dynamics of the backward state ``layout`` (no ``y``) reading ``y`` from ``y_of_t``."""
        parent = self._rhs

        def along(s, t, y, *args):
            _, a, _, _ = layout.split(s)
            _, v_y, v_t, v_theta = self._vjp(parent, tf.cast(y, s.dtype), t, a, args, layout)
            return layout.join(TFOps.concat, None, -v_y, _negated(v_t), _negated(v_theta))

        return self._derived(along, layout, "along", y_of_t)

    def specialize(self, shape: Sequence[int], args: Sequence[tf.Tensor]) -> "TFDynamics":
        """This (forward) dynamics for the concrete state ``shape`` and ``args`` of one execution."""
        return dataclasses.replace(self, shape=tuple(int(d) for d in shape), args=tuple(args))

    def param_tensors(self) -> list[tf.Tensor]:
        """:attr:`params` as tensors (reading the variables): the inputs that receive ``a_theta``."""
        return [tf.convert_to_tensor(p) for p in self.params]

    def split_params(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """Split a flat parameter cotangent into one tensor per entry of :attr:`params`."""
        params = self.params
        sizes = [int(np.prod(p.shape)) for p in params]
        parts = tf.split(flat, sizes) if sizes else []
        return [tf.cast(tf.reshape(part, p.shape), p.dtype) for part, p in zip(parts, params)]


def _power_of_two_below(a: tf.Tensor) -> tf.Tensor:
    """``2**k <= max|a|`` with ``k`` an integer (1 where ``a`` is 0), a constant to differentiation
    (``s * vjp(a / s)`` equals ``vjp(a)`` whatever ``s``)."""
    peak = tf.stop_gradient(tf.reduce_max(tf.abs(a)))
    exponent = tf.math.floor(tf.math.log(peak) / np.log(2.0))
    return tf.where(peak > 0, tf.pow(tf.constant(2.0, a.dtype), exponent), tf.ones([], a.dtype))


def _negated(x: tf.Tensor | None) -> tf.Tensor | None:
    return None if x is None else -x


@contextlib.contextmanager
def _unrecorded() -> Iterator[None]:
    """Stop every tape of this thread from recording the solver's evaluations.

    A solve runs inside a ``tf.custom_gradient`` op, whose body TensorFlow records like any other
    code: each evaluation of the compiled dynamics reads the trainable variables, so a recording
    tape kept every evaluation (its inputs, outputs and a gradient function of its own) until the
    tape was freed (with the gradient functions it built: a leak of compiled graphs, and memory
    growing with the number of steps). The op's gradient is the adjoint; nothing inside it is ever
    differentiated. Solves run eagerly, where ``tf.init_scope`` does exactly this (it pauses the
    tapes, and forward accumulators, of the thread).
    """
    with tf.init_scope():
        yield


def _forward_numpy(s0: np.ndarray, times: np.ndarray, dynamics: TFDynamics) -> tuple[np.ndarray, solvers.SolveStats]:
    """A plain solve of ``dynamics``, counted in its info; its statistics go to its gradient."""
    fun = dynamics.numpy_f
    with _unrecorded():
        ys, stats = solvers.solve(fun, s0, times, dynamics.opts)
    dynamics.record(stats)
    return ys, stats


def _host(x: tf.Tensor) -> np.ndarray:
    return np.asarray(x.numpy(), dtype=np.float64)


def _recording() -> bool:
    """Whether a tape or forward accumulator may record the gradient being computed (it is then
    differentiated again); ``True`` where TensorFlow cannot tell."""
    return True if could_possibly_record is None else bool(could_possibly_record())


def gradient_request(ys: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics,
                     stats: solvers.SolveStats | None, higher_order: bool) -> GradientRequest:
    """The :class:`odegrad.methods.GradientRequest` of one differentiated solve on this door.

    Every input is differentiated (a ``tf.custom_gradient`` cannot tell which the caller wants);
    ``params`` is the flat parameter vector in the order of :attr:`TFDynamics.params`, in the
    state's dtype.

    Parameters
    ----------
    ys : tf.Tensor, shape (T, n)
        The solve's output (the recorded one, where it exists, so that the VJP differentiates again).
    s0 : tf.Tensor, shape (n,)
    times : tf.Tensor, shape (T,), float64
    dynamics : TFDynamics
        The dynamics that was solved.
    stats : SolveStats or None
        The statistics of that solve.
    higher_order : bool
        Whether a tape or forward accumulator may record the VJP (:func:`_recording`).

    Returns
    -------
    GradientRequest
    """
    flat = [tf.reshape(tf.cast(p, s0.dtype), [-1]) for p in dynamics.param_tensors()]
    return GradientRequest(
        ys=ys, y0=s0, t=times, dynamics=dynamics, solve=solve_eager, ops=TFOps, options=dynamics.adjoint,
        forward_opts=dynamics.opts, backward_opts=dynamics.backward_opts, stats=stats, info=dynamics.info,
        wrt=Wrt(), door="tensorflow", higher_order=higher_order, derived=dynamics.stage == "backward",
        resolve=dynamics.resolve, params=tf.concat(flat, 0) if flat else tf.zeros([0], s0.dtype),
        traced=lambda _: higher_order,
    )


def _vjp(ys: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics, stats: solvers.SolveStats | None,
         higher_order: bool) -> Vjp:
    """The VJP of one solve by the registered method ``dynamics.adjoint.mode``.

    TensorFlow only tells that a tape or accumulator *may* record the gradient (``higher_order``),
    not that it will be differentiated: a method that refuses higher derivatives
    (:meth:`odegrad.methods.GradientMethod.check_request`) then gives its first derivatives, and
    differentiating them raises its refusal.
    """
    method = methods.get(dynamics.adjoint.mode)
    method.check(dynamics.adjoint, "tensorflow")
    request = gradient_request(ys, s0, times, dynamics, stats, higher_order)
    try:
        method.check_request(request)
    except NotImplementedError as exc:
        if not higher_order:
            raise
        refusal = exc
    else:
        return method.vjp(request)
    first_order = method.vjp(dataclasses.replace(request, higher_order=False, traced=lambda _: False))
    return lambda g: _refused_beyond(first_order(g), refusal, (g, request.ys, s0, times, request.params))


def _refused_beyond(gradient: Gradient, refusal: NotImplementedError, inputs: Sequence[tf.Tensor]) -> Gradient:
    """``gradient`` with each part an identity whose own gradient raises ``refusal``.

    The identities also take the solve's ``inputs``, so that a tape recording any of them records
    the identities, even where a part is a constant (a method that re-solves on the host).
    """
    @tf.custom_gradient
    def refuse(x, *_):
        def grad(*__):
            raise NotImplementedError(str(refusal)) from refusal

        return tf.identity(x), grad

    return dataclasses.replace(gradient, **{part: None if getattr(gradient, part) is None else
                                            refuse(getattr(gradient, part), *inputs) for part in ("y0", "t", "params")})


def _gradients(vjp: Vjp, g: tf.Tensor, s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> list[tf.Tensor]:
    """``[∂L/∂s0, ∂L/∂times, ∂L/∂params...]`` for the cotangent ``g``, by ``vjp``."""
    gradient = vjp(g)
    if gradient.ran:
        dynamics.info.gradient_methods.append(gradient.method)
    return ([tf.cast(gradient.y0, s0.dtype), tf.cast(gradient.t, times.dtype)]
            + dynamics.split_params(gradient.params))


def solve_eager(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics) -> tf.Tensor:
    """Differentiable solve in eager mode; its gradient is again differentiable.

    ``times`` is float64 (the solver's times stay on the host in float64). The VJP is made once per
    solve and kind of request and serves every cotangent (``tape.jacobian`` asks for one per row),
    so a method may keep work across them (one forward-sensitivity solve for all rows).
    """
    holder: dict[Any, Any] = {}

    @tf.custom_gradient
    def op(s0, times, *params):
        solution, stats = _forward_numpy(_host(s0), _host(times), dynamics)
        ys = tf.constant(solution, dtype=s0.dtype)

        def grad(g, variables=None):
            if not tf.executing_eagerly():
                raise NotImplementedError(
                    "the gradient of odegrad.tf.odeint (called eagerly) is being traced into a graph, as "
                    "tape.jacobian and tape.batch_jacobian do by default: its solves run on the host, one per "
                    "cotangent; pass experimental_use_pfor=False to them")
            # The adjoint reads the op's recorded output, so that differentiating this gradient
            # again goes through the op. Forward mode (tf.autodiff.ForwardAccumulator) asks for
            # the gradient while the op is being recorded, before that output exists, and
            # differentiates it by ``g`` alone: the unrecorded states serve it.
            if "ys" not in holder and push_forwardprop_state is None:  # pragma: no cover
                raise NotImplementedError("forward mode (tf.autodiff.ForwardAccumulator) over odegrad.tf.odeint "
                                          "needs TensorFlow's forwardprop_util, missing from this version; "
                                          "use reverse mode (tf.GradientTape)")
            key = (_recording(), "ys" in holder)
            if key not in holder:
                holder[key] = _vjp(holder.get("ys", ys), s0, times, dynamics, stats, higher_order=key[0])
            return _gradients(holder[key], g, s0, times, dynamics), [None] * len(variables or [])

        return ys, grad

    ys = op(s0, times, *dynamics.param_tensors())
    holder["ys"] = ys
    return ys


def _no_second_derivatives(*_: Any, **__: Any) -> Any:
    raise NotImplementedError(
        "odegrad.tf.odeint inside a tf.function gives first derivatives by reverse mode only (its "
        "adjoint runs eagerly inside tf.py_function, which TensorFlow cannot differentiate again): "
        "nested GradientTapes (second derivatives, Hessian-vector products) and "
        "tf.autodiff.ForwardAccumulator (forward mode) are not supported there. Compute them in eager "
        "mode, outside the tf.function, where both work (with adjoint='checkpoint', 'backsolve', 'forward' or "
        "'auto'); "
        "or use the autograd door, odegrad.odeint."
    )


_COUNTS = ("nfe", "nst", "nje", "nsolves", "method_switches")
"""The counts of a forward solve's :class:`odegrad.solvers.SolveStats` a graph passes to its gradient."""


def solve_graph(s0: tf.Tensor, times: tf.Tensor, dynamics: TFDynamics, shape: tf.Tensor) -> tf.Tensor:
    """Solve inside a ``tf.function`` (e.g. ``model.fit``): eager solves bridged by py_function.

    ``shape`` is the run-time shape of the state (its batch dimension may be unknown while
    tracing): each execution specialises ``dynamics`` to it and to the run-time ``args``. The
    graph runs the solve of one traced ``odeint`` call at every execution, so each forward
    execution restarts the call's statistics. First derivatives only: the backward pass runs the
    eager adjoint inside ``tf.py_function``, and differentiating it again (nested tapes, forward
    mode) raises ``NotImplementedError``.
    """
    params = dynamics.param_tensors()
    args = list(dynamics.args)
    n_args = len(args)

    @tf.custom_gradient
    def op(s0, times, *params):
        def forward(s0, times, shape, *args):
            concrete = dynamics.specialize(shape.numpy(), args)
            dynamics.info.restart()
            ys, stats = _forward_numpy(_host(s0), _host(times), concrete)
            return ys.astype(s0.dtype.as_numpy_dtype), np.array([getattr(stats, k) for k in _COUNTS], np.int64)

        ys, counts = tf.py_function(forward, [s0, times, shape, *args], Tout=[s0.dtype, tf.int64])
        ys.set_shape([times.shape[0], s0.shape[0]])

        @tf.custom_gradient
        def first_derivatives(g, s0, times, *params):
            def eager_backward(g, ys, s0, times, counts, shape, *args):
                concrete = dynamics.specialize(shape.numpy(), args[:n_args])
                stats = solvers.SolveStats(concrete.opts.method, **dict(zip(_COUNTS, counts.numpy().tolist())))
                vjp = _vjp(ys, s0, times, concrete, stats, higher_order=False)
                return _gradients(vjp, g, s0, times, concrete)

            tout = [s0.dtype, times.dtype] + [p.dtype for p in params]
            grads = tf.py_function(eager_backward, [g, ys, s0, times, counts, shape, *args], Tout=tout)
            for tensor, like in zip(grads, [s0, times, *params]):
                tensor.set_shape(like.shape)
            return grads, _no_second_derivatives

        def grad(g, variables=None):
            return first_derivatives(g, s0, times, *params), [None] * len(variables or [])

        return ys, grad

    return op(s0, times, *params)
