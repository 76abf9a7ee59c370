"""The TensorFlow dynamics: :class:`TFDynamics`, the forward dynamics and the ones derived from it.

A :class:`TFDynamics` is a :class:`odegrad.adjoint.Dynamics` whose ``f`` is a TensorFlow
computation: what it reads comes from :class:`odegrad.tf.tracing.Reads`, its compiled computation
from :mod:`odegrad.tf.compile`, the VJPs and Jacobians inside its derived dynamics from
:mod:`odegrad.tf.derivatives`. Its host-side solves (the plain forward solve, re-solves with other
parameters, dense forward solves) run here, with every tape paused (:func:`unrecorded`) and, as
every solve, one BLAS thread (:mod:`odegrad.blas`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .. import solvers
from ..augmented import AugmentedLayout
from ..options import AdjointOptions
from ..sensitivity import SensitivityLayout
from ..stats import SolveInfo
from . import derivatives
from .compile import compiled_for
from .ops import TFOps
from .tracing import Reads, TFCallable, check_output

Layout = AugmentedLayout | SensitivityLayout


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
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
    reads : Reads
        What ``func`` reads and what of it is differentiated (variables, captures; floating
        ``args``), decided once per solve.
    args : tuple of tf.Tensor
        Explicit extra arguments of ``func``.
    opts, backward_opts : SolverOptions
    adjoint : AdjointOptions
    info : SolveInfo
    compiled : OrderedDict
        Cache of compiled computations of ``func`` (:func:`odegrad.tf.compile.cache_of`).
    jit_compile : bool
    device : str
    stage : {"forward", "backward"}
        Which count of ``info`` this dynamics' solves add to.
    rhs : callable, optional
        ``rhs(s, t, *extra)``: the flat dynamics of a derived (backward) state.
    size : int
        Entries of that state.
    derivation : tuple of (str, layout)
        How it was derived: each step (``"augmented"``, ``"along"``, ``"sensitivity"``) with the
        layout of its state (part of the compile-cache key).
    y_of_t : callable, optional
        The dense forward solution read by the ``"along"`` (interpolating) adjoint.
    """

    func: TFCallable
    shape: tuple[int, ...]
    dtype: tf.DType
    time_dtype: tf.DType
    reads: Reads
    args: tuple[tf.Tensor, ...]
    opts: solvers.SolverOptions
    backward_opts: solvers.SolverOptions
    adjoint: AdjointOptions
    info: SolveInfo
    compiled: collections.OrderedDict
    jit_compile: bool = False
    device: str = "/CPU:0"
    stage: str = "forward"
    rhs: Callable[..., tf.Tensor] | None = None
    size: int = 0
    derivation: tuple[tuple[str, Layout], ...] = ()
    y_of_t: Callable[[float], np.ndarray] | None = None
    _layouts: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n(self) -> int:
        """Entries of this dynamics' flat state."""
        return self.size if self.rhs is not None else int(np.prod(self.shape, dtype=np.int64))

    @property
    def params(self) -> list[Any]:
        """What ``a_theta`` differentiates, in order (:meth:`odegrad.tf.tracing.Reads.params`)."""
        return self.reads.params(self.args)

    @property
    def n_params(self) -> int:
        return sum(_sizes(self.params))

    def flat(self, y: tf.Tensor, t: tf.Tensor, *args: tf.Tensor) -> tf.Tensor:
        """``func(t, y, *args)`` on a flat state, flat out (``t`` is cast to :attr:`time_dtype`)."""
        shaped = tf.reshape(y, self.shape)
        out = check_output(self.func(tf.cast(t, self.time_dtype), shaped, *args), shaped)
        return tf.reshape(tf.cast(out, y.dtype), [-1])

    @property
    def rhs_of_state(self) -> Callable[..., tf.Tensor]:
        """The flat dynamics of this dynamics' state: :meth:`flat`, or the derived ``rhs``."""
        return self.flat if self.rhs is None else self.rhs

    def f(self, y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """This dynamics on its flat state, with this call's arguments bound (differentiable)."""
        return self.rhs_of_state(y, t, *self.args)

    @property
    def numpy_f(self) -> Callable[[np.ndarray, float], np.ndarray]:
        """What the scipy solver calls: float64 NumPy state and time in, float64 NumPy out.

        The computation is traced (if it is new to this context) here and now, where tapes
        record: the VJP inside the backward dynamics is a tape of its own, and the solver then
        calls the traced computation with every tape paused (:func:`unrecorded`).
        """
        compiled, args, y_of_t = compiled_for(self).get_concrete_function(), self.args, self.y_of_t
        if y_of_t is not None:
            return lambda s, t: compiled(s, t, y_of_t(t), *args).numpy()
        return lambda s, t: compiled(s, t, *args).numpy()

    def record(self, stats: solvers.SolveStats) -> None:
        """Count the statistics of one solve."""
        self.info.record(self.stage, stats)

    def solve_numpy(self, s0: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, solvers.SolveStats]:
        """A plain (undifferentiated) solve of this dynamics, counted in its info by its stage."""
        ys, stats = self._solve(s0, times)
        self.record(stats)
        return ys, stats

    def _solve(self, s0: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, solvers.SolveStats]:
        fun = self.numpy_f
        with unrecorded():
            return solvers.solve(fun, np.asarray(s0, np.float64).ravel(), np.asarray(times, np.float64), self.opts)

    def _derived(self, rhs: Callable[..., tf.Tensor], layout: Layout, step: str, opts: solvers.SolverOptions,
                 y_of_t: Callable[[float], np.ndarray] | None = None) -> "TFDynamics":
        """The dynamics ``rhs`` of the derived state ``layout`` with solver options ``opts``, solved
        as backward work."""
        return dataclasses.replace(self, opts=opts, backward_opts=opts, stage="backward", rhs=rhs,
                                   size=layout.size, derivation=self.derivation + ((step, layout),), y_of_t=y_of_t)

    def augmented(self, layout: AugmentedLayout) -> "TFDynamics":
        """The dynamics of the backward state ``layout`` (``[y, a, a_t, a_theta]``), built once per layout."""
        if layout not in self._layouts:
            self._layouts[layout] = self._backward(layout, "augmented")
        return self._layouts[layout]

    def adjoint_along(self, y_of_t: Callable[[float], np.ndarray], layout: AugmentedLayout) -> "TFDynamics":
        """The dynamics of the backward state ``layout`` (no ``y``) reading ``y`` from ``y_of_t``."""
        return self._backward(layout, "along", y_of_t)

    def _backward(self, layout: AugmentedLayout, step: str,
                  y_of_t: Callable[[float], np.ndarray] | None = None) -> "TFDynamics":
        """The dynamics ``rhs(s, t, *args)`` of the backward state ``layout``: ``[f, -a·∂f/∂y,
        -a·∂f/∂t, -a·∂f/∂θ]`` (the parts the layout holds), one trace of this dynamics fused with
        its VJP (:func:`odegrad.tf.derivatives.vjp`). ``y`` is read from the state or, with
        ``y_of_t``, from the interpolated forward state the computation takes after ``t``."""
        parent, reads, along = self.rhs_of_state, self.reads, y_of_t is not None

        def rhs(s, t, *extra):
            y, a, _, _ = layout.split(s)
            if along:
                y, *extra = tf.cast(extra[0], s.dtype), *extra[1:]
            dy, v_y, v_t, v_theta = derivatives.vjp(reads, parent, y, t, a, extra, layout)
            return layout.join(TFOps.concat, dy, -v_y, _negated(v_t), _negated(v_theta))

        opts = layout.solver_options(self.backward_opts, self.adjoint.seminorm)
        return self._derived(rhs, layout, step, opts, y_of_t)

    def backward_method(self, method: str) -> "TFDynamics":
        """These dynamics, whose derived solves use ``method`` (their derived dynamics are built anew)."""
        return dataclasses.replace(self, backward_opts=solvers.derived_options(self.backward_opts, method))

    def sensitivity(self, layout: SensitivityLayout) -> "TFDynamics":
        """The dynamics of ``z = [y, S]`` (forward sensitivities), built once per layout.

        ``dz/dt = [f, ∂f/∂y S + [0 | 0 | ∂f/∂θ]]`` with ``S`` (n × q) stored row by row after ``y``,
        its columns ``∂y/∂y0``, ``∂y/∂t_0``, ``∂y/∂θ`` as the flags of ``layout`` say (``θ`` the
        flattened :attr:`params`, as in ``a_theta``); :mod:`odegrad.sensitivity` has the equations.
        Each evaluation is one compiled trace of ``f`` and one reverse pass vectorised over the rows
        of the Jacobian (:func:`odegrad.tf.derivatives.jacobian`); ``sensitivity`` and ``augmented``
        compose again for higher derivatives.

        Raises
        ------
        ValueError
            If ``layout`` is not one of a state of :attr:`n` entries and :attr:`n_params` parameters.
        """
        if (layout.n, layout.n_params) != (self.n, self.n_params):
            raise ValueError(f"a sensitivity layout for n={layout.n}, n_params={layout.n_params} does not fit "
                             f"dynamics with n={self.n}, n_params={self.n_params}")
        if layout not in self._layouts:
            parent, reads, n, q = self.rhs_of_state, self.reads, layout.n, layout.columns
            p = self.n_params if layout.with_params else 0

            def sensitivity(z, t, *args):
                y, S = z[:n], tf.reshape(z[n:], [n, q])
                dy, J_y, J_theta = derivatives.jacobian(reads, parent, y, t, args, p > 0)
                JS = tf.matmul(J_y, S)
                if p:
                    JS = tf.concat([JS[:, :q - p], JS[:, q - p:] + J_theta], 1)
                return tf.concat([dy, tf.reshape(JS, [-1])], 0)

            self._layouts[layout] = self._derived(sensitivity, layout, "sensitivity",
                                                  layout.solver_options(self.backward_opts))
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
            with unrecorded():
                for variable, value in assigned:
                    restore.append((variable, variable.read_value()))
                    variable.assign(value)
            ys, stats = dynamics._solve(y0, t)
            self.info.record("backward", stats)
        finally:
            with unrecorded():
                for variable, value in restore:
                    variable.assign(value)
        return ys

    def _with_params(self, theta: np.ndarray) -> tuple["TFDynamics", list[tuple[tf.Variable, tf.Tensor]]]:
        """This dynamics with the flat parameters ``theta``: its floating args replaced, and the
        values its variables are to be assigned."""
        if theta.size != self.n_params:
            raise ValueError(f"theta has {theta.size} entries; this dynamics has n_params={self.n_params}")
        params = self.params
        parts = [part.reshape(p.shape) for part, p in zip(np.split(theta, np.cumsum(_sizes(params))[:-1]), params)]
        n_variables, captures = len(self.reads.variables), self.reads.differentiated_captures
        for capture, part in zip(captures, parts[n_variables:]):
            if not np.array_equal(part, capture.numpy()):
                raise NotImplementedError(
                    "this gradient method solves again with other parameters, and f captures a tensor from an "
                    "enclosing scope, which cannot be replaced: pass it to odeint through args= "
                    "(f(t, y, tensor), args=(tensor,)) instead")
        args = self.reads.replace_args(self.args, parts[n_variables + len(captures):])
        assigned = [(variable, tf.constant(part, dtype=variable.dtype))
                    for variable, part in zip(params[:n_variables], parts)]
        return dataclasses.replace(self, args=args), assigned

    def dense_forward(self, y_start: tf.Tensor, t_start: tf.Tensor, t_end: tf.Tensor) -> Callable[[float], np.ndarray]:
        """Solve forwards over ``[t_start, t_end]`` with dense output (the backward method, the
        forward tolerances); the work counts as backward work."""
        opts = dataclasses.replace(self.opts, method=self.backward_opts.method)
        fun = self.numpy_f
        with unrecorded():
            y_of_t, stats = solvers.dense_solve(fun, np.asarray(y_start, np.float64), float(t_start), float(t_end), opts)
        self.info.record("backward", stats)
        return y_of_t

    def specialize(self, shape: Sequence[int], args: Sequence[tf.Tensor]) -> "TFDynamics":
        """This (forward) dynamics for the concrete state ``shape`` and ``args`` of one execution."""
        return dataclasses.replace(self, shape=tuple(int(d) for d in shape), args=tuple(args))

    def param_tensors(self) -> list[tf.Tensor]:
        """:attr:`params` as tensors (reading the variables): the inputs that receive ``a_theta``."""
        return [tf.convert_to_tensor(p) for p in self.params]

    def split_params(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """Split a flat parameter cotangent into one tensor per entry of :attr:`params`."""
        params = self.params
        parts = tf.split(flat, _sizes(params)) if params else []
        return [tf.cast(tf.reshape(part, p.shape), p.dtype) for part, p in zip(parts, params)]


def _sizes(params: Sequence[Any]) -> list[int]:
    """Entries of each of ``params``."""
    return [int(np.prod(p.shape)) for p in params]


def _negated(x: tf.Tensor | None) -> tf.Tensor | None:
    return None if x is None else -x
