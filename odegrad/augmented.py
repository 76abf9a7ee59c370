"""The state of the backward (adjoint) solves: ``[y, a, a_t, a_theta]``, its layout and tolerances.

One owner for the layout: :func:`odegrad.adjoint.backward` and the dynamics of both backends
build and take apart the augmented state only through :class:`AugmentedLayout`. Parts that are
not needed are left out of the state altogether: ``y`` for the interpolating adjoint (it reads
``y`` from a dense forward solution), ``a_t`` when no output time is differentiated, ``a_theta``
when no parameter is. Backends look at the flags to skip the matching parts of the VJP of ``f``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from .solvers import SolverOptions

UNCONTROLLED_ATOL = 1e250
"""``atol`` that removes a component from LSODA's/VODE's error norm (its weight becomes ~0)."""


@dataclasses.dataclass(frozen=True)
class AugmentedLayout:
    """Where ``y``, ``a``, ``a_t`` and ``a_theta`` sit in the flat backward state.

    Parameters
    ----------
    n : int
        Entries of the state ``y`` (and of the adjoint ``a``).
    n_params : int
        Entries of the flat parameter vector ``theta`` (and of ``a_theta``).
    with_state : bool
        ``True``: ``y`` is part of the state, solved backwards by the checkpoint and backsolve
        adjoints. ``False``: the interpolating adjoint, which reads ``y`` from a dense forward
        solution.
    with_time : bool
        Whether ``a_t = -∫ a·∂f/∂t`` (for ``∂L/∂t_0``) is part of the state.
    with_params : bool
        Whether ``a_theta = -∫ a·∂f/∂θ`` (for ``∂L/∂θ``) is part of the state.
    """

    n: int
    n_params: int
    with_state: bool = True
    with_time: bool = True
    with_params: bool = True

    @property
    def n_quadrature(self) -> int:
        """Entries of ``a_t`` and ``a_theta`` that are present."""
        return int(self.with_time) + (self.n_params if self.with_params else 0)

    @property
    def size(self) -> int:
        """Entries of the flat augmented state."""
        return (2 if self.with_state else 1) * self.n + self.n_quadrature

    def join(self, concat: Any, y: Any, a: Any, a_t: Any, a_theta: Any) -> Any:
        """The flat state from its parts; absent parts (see the flags) are ignored.

        ``a_t`` has shape (1,). ``concat`` is the backend's concatenation of a list of 1-D
        arrays.
        """
        parts: Sequence[Any] = (([y] if self.with_state else []) + [a]
                                + ([a_t] if self.with_time else [])
                                + ([a_theta] if self.with_params else []))
        return concat(parts)

    def split(self, s: Any) -> tuple[Any, Any, Any, Any]:
        """``(y, a, a_t, a_theta)`` of a flat state; absent parts are ``None``."""
        n = self.n
        start = n if self.with_state else 0
        y = s[:n] if self.with_state else None
        a = s[start:start + n]
        position = start + n
        a_t = None
        if self.with_time:
            a_t = s[position:position + 1]
            position += 1
        a_theta = s[position:] if self.with_params else None
        return y, a, a_t, a_theta

    def solver_options(self, opts: SolverOptions, seminorm: bool) -> SolverOptions:
        """Options of the backward solve, from the backward solver options of the state.

        ``y`` and ``a`` get the per-component ``atol`` of the state; ``a_t`` and ``a_theta`` the
        smallest of them, or, with ``seminorm``, none at all: they are left out of the step-size
        control (Kidger et al., 2021), since they do not feed back into the dynamics. Only while
        ``y`` is part of the state: without it (the interpolating adjoint) only ``a`` would set the
        steps, and on a stiff problem ``a`` decays within a few of them, after which the
        quadratures were integrated with steps far too long (relative errors up to 1e-3 at
        tolerance 1e-8 on 3-state stiff linear systems); ``y``'s error control keeps the steps that
        the quadratures need.

        The solves run backwards: the forward solve's first step ``h0`` and critical times
        ``tcrit`` do not apply (its ``hmax``, ``hmin`` and ``mxstep`` do), and LSODA stops at each
        interval's end (``stop_at_end``) rather than evaluating ``f`` beyond it.
        """
        atol = opts.atol
        seminorm = seminorm and self.with_state
        if np.ndim(atol) or (seminorm and self.n_quadrature):
            per_state = np.broadcast_to(np.asarray(atol, dtype=float), (self.n,))
            tail = UNCONTROLLED_ATOL if seminorm else float(np.min(per_state))
            copies = 2 if self.with_state else 1
            atol = np.concatenate([per_state] * copies + [np.full(self.n_quadrature, tail)])
        return dataclasses.replace(opts, atol=atol, h0=0.0, lsoda_kwargs={}, stop_at_end=True)
