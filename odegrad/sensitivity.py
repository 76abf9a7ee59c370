"""Forward sensitivities: the layout of their state, its dynamics (autograd) and the cotangents.

The gradient method ``adjoint="forward"`` that uses them is :mod:`odegrad.methods.forward`.

The sensitivity of the solution to what is differentiated, ``S = ∂y/∂[y0 | t0 | θ]`` (n × q),
obeys

    S' = ∂f/∂y S + [0 | 0 | ∂f/∂θ],    S(t_0) = [I | -f(y0, t0) | 0],

and is solved together with ``y`` as one state ``z = [y, S]`` over all output times at once: no
restart at the outputs, unlike the adjoint. Each evaluation of its dynamics is one autograd trace
of ``f`` and one backward pass through it that carries all ``n`` rows of the Jacobian
``[∂f/∂y | ∂f/∂θ]`` at once (:func:`odegrad.jacobian.trace_jacobian`); where the evaluation is
itself differentiated (Hessians), autograd's own passes, one per row.
The cotangents of every input then follow from the sensitivities at the outputs:

    ∂L/∂y0 = Σ_i S_y0(t_i)ᵀ g_i,   ∂L/∂θ = Σ_i S_θ(t_i)ᵀ g_i,
    ∂L/∂t_i = g_i · f(y_i, t_i) (i ≥ 1),   ∂L/∂t_0 = Σ_{i≥1} g_i · s_t0(t_i),

for any number of cotangents ``g`` from one sensitivity solve. The dynamics are written with
``autograd.numpy`` and solved by the backend's differentiable solve, so they are differentiated
again for Hessians; the initial state and the cotangents are written with a backend's ``ops``
(:class:`odegrad.ops.Ops`), for either door.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd.tracer import isbox

from .jacobian import trace_jacobian
from .pytree import take_slice
from .reverse import trace_vjp
from .solvers import SolverOptions

if TYPE_CHECKING:
    from .ops import Ops


@dataclasses.dataclass(frozen=True)
class SensitivityLayout:
    """Where ``y`` and the columns of ``S`` sit in the flat sensitivity state ``z = [y, S]``.

    Parameters
    ----------
    n : int
        Entries of the state ``y``.
    n_params : int
        Entries of the flat parameter vector ``theta``.
    with_y0, with_t0, with_params : bool
        Which columns ``S`` holds: ``∂y/∂y0`` (n columns), ``∂y/∂t_0`` (one), ``∂y/∂θ``
        (``n_params``), in this order. ``S`` is stored row by row after ``y``.
    """

    n: int
    n_params: int
    with_y0: bool = True
    with_t0: bool = True
    with_params: bool = True

    @property
    def columns(self) -> int:
        """Columns ``q`` of ``S``."""
        return self.n * self.with_y0 + int(self.with_t0) + self.n_params * self.with_params

    @property
    def size(self) -> int:
        """Entries of the flat state ``z``: ``n (1 + q)``."""
        return self.n * (1 + self.columns)

    def initial_state(self, y0: Any, f0: Any, ops: "Ops") -> Any:
        """``z(t_0) = [y0, S(t_0)]`` with ``S(t_0) = [I | -f0 | 0]``, in the backend of ``ops``.

        ``f0 = f(y0, t_0)`` is read only ``with_t0``.
        """
        n, q = self.n, self.columns
        start = np.zeros((n, q))
        if self.with_y0:
            start[:, :n] = np.eye(n)
        S = ops.constant(start, like=y0)
        if self.with_t0:
            column = np.zeros(q)
            column[n * self.with_y0] = 1.0
            S = S - ops.einsum("i,j->ij", f0, ops.constant(column, like=y0))
        return ops.concat([y0, ops.reshape(S, (n * q,))])

    def dynamics(self, rhs: Callable[[Any, Any, Any], Any],
                 compiled: Callable[[Any, Any, Any], Any] | None = None) -> Callable[[Any, Any, Any], Any]:
        """``dz/dt`` of ``z = [y, S]`` for the dynamics ``rhs(y, t, theta)``.

        ``compiled(z, t, theta) -> dz/dt`` or ``None``, where given, is tried first on plain
        arrays (one compiled evaluation, :mod:`odegrad.compiled`). Otherwise one trace of ``f``
        and the rows of ``[∂f/∂y | ∂f/∂θ]`` from one vectorised backward
        pass, then ``∂f/∂y S``; on traced inputs (a Hessian differentiates these dynamics) one
        autograd backward pass per row instead, which autograd differentiates again. (One
        forward-mode pass per column of ``S`` was measured slower on every problem tried,
        including Hessians, where ``S`` has few columns: an autograd JVP costs about three
        traces.)
        """
        n, q, p = self.n, self.columns, self.n_params
        with_params = self.with_params and p > 0
        basis = np.eye(n)

        def sens_rhs(z, t, theta):
            plain = not (isbox(z) or isbox(t) or isbox(theta))
            found = compiled(z, t, theta) if plain and compiled is not None else None
            if found is not None:
                return found
            y = take_slice(z, 0, n)
            S = anp.reshape(take_slice(z, n, n * (1 + q)), (n, q))
            if plain:                                           # plain arrays: one batched pass
                x = np.concatenate([y, theta]) if with_params else y
                J, dy = trace_jacobian(lambda xx: rhs(take_slice(xx, 0, n), t, take_slice(xx, n, n + p))
                                       if with_params else rhs(xx, t, theta), x)
                JS = J[:, :n] @ S
                if with_params:
                    JS[:, q - p:] += J[:, n:]
                return np.concatenate([dy, JS.ravel()])
            if with_params:
                vjp, dy = trace_vjp(lambda x: rhs(take_slice(x, 0, n), t, take_slice(x, n, n + p)),
                                    anp.concatenate([y, theta]))
                J = anp.stack([vjp(e) for e in basis])        # [∂f/∂y | ∂f/∂θ], row by row
                JS = anp.dot(J[:, :n], S)
                dS = anp.concatenate([JS[:, :q - p], JS[:, q - p:] + J[:, n:]], axis=1)
            else:
                vjp, dy = trace_vjp(lambda yy: rhs(yy, t, theta), y)
                dS = anp.dot(anp.stack([vjp(e) for e in basis]), S)
            return anp.concatenate([dy, anp.ravel(dS)])

        return sens_rhs

    def jacobian(self, J_y: np.ndarray) -> np.ndarray:
        """The Jacobian of the sensitivity dynamics without the coupling of ``S`` to ``y``.

        ``[[J_y, 0], [0, J_y ⊗ I_q]]``: exact in its diagonal blocks, and without the block
        ``∂(J_y S + ∂f/∂θ)/∂y``, which needs second derivatives of ``f``. The system is block
        lower triangular, so a Newton iteration with these exact diagonal blocks still
        converges as with the full Jacobian (the iteration error of the linear part vanishes
        after two iterations), at the cost of one Jacobian of ``f`` (CVODES' staggered corrector
        makes the same trade).
        """
        n, q = self.n, self.columns
        out = np.zeros((self.size, self.size))
        out[:n, :n] = J_y
        out[n:, n:] = np.kron(J_y, np.eye(q))
        return out

    def solver_options(self, opts: SolverOptions) -> SolverOptions:
        """Options of the sensitivity solve from those of the state.

        Row ``i`` of ``S`` gets the ``atol`` of state component ``i``. Every entry of ``S`` enters
        the gradient, so none leaves the error control (there is no seminorm here: leaving ``S``
        out, as CVODES without ``errconS``, gave gradients wrong by orders of magnitude on a
        linear spiral started at rest). The solve runs forwards like the state's, so the forward
        options (``h0``, ``tcrit``, ...) keep their meaning.
        """
        per_state = np.broadcast_to(np.asarray(opts.atol, dtype=float), (self.n,))
        rows = np.repeat(per_state, self.columns)
        return dataclasses.replace(opts, atol=np.concatenate([per_state, rows]))

    def cotangents(self, g: Any, zs: Any, rates: Any, ops: "Ops") -> tuple[Any, Any, Any]:
        """``(∂L/∂y0, ∂L/∂t, ∂L/∂θ)`` for ``g = ∂L/∂ys`` from the sensitivity solution ``zs``.

        ``rates[i - 1] = f(ys[i], t[i])`` for ``i >= 1``; read only ``with_t0``. Entries that
        are not held are ``None``. Written with ``ops``, so one formula serves both doors.
        """
        n, q = self.n, self.columns
        n_times = int(zs.shape[0])
        S = ops.reshape(zs[1:, n:], (n_times - 1, n, q))
        column_sums = ops.einsum("ti,tiq->q", g[1:], S)
        position = 0
        g_y0 = g_t = g_theta = None
        if self.with_y0:
            g_y0 = g[0] + column_sums[:n]
            position = n
        if self.with_t0:
            later = ops.einsum("ti,ti->t", g[1:], rates)
            g_t = ops.concat([column_sums[position:position + 1], later])
            position += 1
        if self.with_params:
            g_theta = column_sums[position:]
        return g_y0, g_t, g_theta
