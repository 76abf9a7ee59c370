"""Algorithm 1 of Chen et al. (2018), extended as in their Appendix C — written once.

The vector-Jacobian product of ``ys = odeint(f, y0, t, theta)`` is computed by solving the
augmented system

    s = [y, a, a_t, a_theta],   ds/dt = [f, -a·∂f/∂y, -a·∂f/∂t, -a·∂f/∂θ]

backwards over each interval ``[t_{i-1}, t_i]``. The adjoint ``a`` jumps by ``∂L/∂y(t_i)`` at each
output time, ``∂L/∂t_i = g_i · f(y(t_i), t_i)`` for the later output times, and ``∂L/∂t_0`` is the
integrated time component ``a_t`` (Appendix C).

The algorithm is generic over its backend (autograd or TensorFlow): it touches arrays only through
``ops`` and the backend's own differentiable ``solve``, and evaluates dynamics only through a
:class:`Dynamics`. Because ``solve`` is the backend's differentiable ``odeint`` and every other
operation is a backend operation, the backend can differentiate this function again: Hessians and
grad-of-grad come from the same code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from .solvers import SolverOptions

ADJOINT_MODES = ("checkpoint", "backsolve", "interpolate")

UNCONTROLLED_ATOL = 1e250
"""``atol`` that removes a component from LSODA's/VODE's error norm (its weight becomes ~0)."""


def augmented_options(opts: SolverOptions, n: int, n_params: int, seminorm: bool,
                      with_state: bool = True) -> SolverOptions:
    """Options of the backward solve of ``[y, a, a_t, a_theta]`` for a state of ``n`` entries.

    ``y`` and ``a`` get the per-component ``atol`` of the state (without ``y`` when
    ``with_state`` is false: the system ``[a, a_t, a_theta]`` of the interpolating adjoint). With ``seminorm`` the quadrature
    components ``a_t`` and ``a_theta`` are left out of the step-size control (Kidger et al.,
    2021): they do not feed back into the dynamics, so their accuracy follows from the others'.
    """
    atol = opts.atol
    if np.ndim(atol) or seminorm:
        per_state = np.broadcast_to(np.asarray(atol, dtype=float), (n,))
        tail = UNCONTROLLED_ATOL if seminorm else float(np.min(per_state))
        atol = np.concatenate([per_state] * (2 if with_state else 1) + [np.full(n_params + 1, tail)])
    return dataclasses.replace(opts, atol=atol, lsoda_kwargs={})


class Ops(Protocol):
    """The array operations Algorithm 1 needs, from the backend's namespace."""

    def concat(self, parts: Sequence[Any]) -> Any: ...

    def stack(self, parts: Sequence[Any]) -> Any: ...

    def zeros(self, n: int, like: Any) -> Any: ...

    def vdot(self, a: Any, b: Any) -> Any: ...


class Dynamics(Protocol):
    """Dynamics ``f(y, t)`` with its parameters bound, on flat states of the backend's arrays."""

    n_params: int

    def f(self, y: Any, t: Any) -> Any: ...

    def augmented(self) -> "Dynamics":
        """Dynamics of ``[y, a, a_t, a_theta]`` with the same parameters (see module docstring)."""
        ...

    def dense_forward(self, y_start: Any, t_start: Any, t_end: Any) -> Callable[[float], Any]:
        """Solve forwards from ``y_start`` and return a dense interpolant ``y(t)`` (optional)."""
        ...

    def adjoint_along(self, y_of_t: Callable[[float], Any]) -> "Dynamics":
        """Dynamics of ``[a, a_t, a_theta]`` with ``y`` read from ``y_of_t`` (optional)."""
        ...


def backward(
    g: Any,
    ys: Any,
    t: Any,
    dynamics: Dynamics,
    solve: Callable[[Any, Any, Dynamics], Any],
    ops: Ops,
    mode: str = "checkpoint",
) -> tuple[Any, Any, Any]:
    """Run the adjoint backwards and return ``(∂L/∂y0, ∂L/∂t, ∂L/∂theta)``.

    Parameters
    ----------
    g : array, shape (T, n)
        ``∂L/∂ys``, the cotangent of the solution at every output time.
    ys : array, shape (T, n)
        The forward solution at the output times.
    t : array, shape (T,)
        The output times.
    dynamics : Dynamics
        The forward dynamics; ``dynamics.augmented()`` is solved backwards.
    solve : callable
        ``solve(s0, times, dynamics) -> states``: the backend's differentiable solve.
    ops : Ops
        The backend's array operations.
    mode : {"checkpoint", "backsolve"}
        ``"checkpoint"`` restarts the state ``y`` of every backward interval from the stored
        forward state (no drift between outputs). ``"backsolve"`` is the paper's Algorithm 1
        verbatim: ``y`` is reconstructed backwards from ``y(t_N)`` alone, through all intervals.
        ``"interpolate"`` does not integrate ``y`` backwards at all: each interval is solved
        forwards again with dense output and the adjoint reads ``y`` from that interpolant.
        Reconstructing ``y`` backwards is unstable for stiff dynamics (``-f`` has eigenvalues of
        large positive real part); the adjoint alone is linear and stable backwards. First
        derivatives only: the interpolant is not differentiated.

    Returns
    -------
    g_y0 : array, shape (n,)
    g_t : array, shape (T,)
    g_theta : array, shape (dynamics.n_params,)
    """
    if mode not in ADJOINT_MODES:
        raise ValueError(f"adjoint mode must be one of {ADJOINT_MODES}, got {mode!r}")
    n_times = len(t) if not hasattr(t, "shape") else int(t.shape[0])
    n = int(ys.shape[1])
    augmented = dynamics.augmented() if mode != "interpolate" else None
    a = g[n_times - 1]
    a_t = ops.zeros(1, like=a)
    a_theta = ops.zeros(dynamics.n_params, like=a)
    y = ys[n_times - 1]
    time_grads = []
    for i in range(n_times - 1, 0, -1):
        direct = ops.vdot(dynamics.f(ys[i], t[i]), g[i])
        time_grads.append(direct)
        a_t = a_t - direct
        times = ops.stack([t[i], t[i - 1]])
        if mode == "interpolate":
            along = dynamics.adjoint_along(dynamics.dense_forward(ys[i - 1], t[i - 1], t[i]))
            s = solve(ops.concat([a, a_t, a_theta]), times, along)[1]
            a, a_t, a_theta = s[:n], s[n:n + 1], s[n + 1:]
        else:
            start = ys[i] if mode == "checkpoint" else y
            s = solve(ops.concat([start, a, a_t, a_theta]), times, augmented)[1]
            y, a, a_t, a_theta = s[:n], s[n:2 * n], s[2 * n:2 * n + 1], s[2 * n + 1:]
        a = a + g[i - 1]
    time_grads.append(a_t[0])
    return a, ops.stack(time_grads[::-1]), a_theta
