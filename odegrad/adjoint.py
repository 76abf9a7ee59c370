"""Algorithm 1 of Chen et al. (2018), extended as in their Appendix C — written once.

The vector-Jacobian product of ``ys = odeint(f, y0, t, theta)`` is computed by solving the
augmented system (:mod:`odegrad.augmented`)

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

import math
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from .augmented import AugmentedLayout
from .ops import Ops
from .solvers import ODESolveError

if TYPE_CHECKING:
    from .sensitivity import SensitivityLayout

BACKWARD_MODES = ("checkpoint", "backsolve", "interpolate")
"""The modes :func:`backward` implements (each a registered method, :mod:`odegrad.methods.adjoint_methods`)."""


DRIFT_FACTORS = {"checkpoint": 1e6, "backsolve": 1e4}
"""How far the ``y`` rebuilt backwards over an interval may end from the stored forward state, in
units of the backward solve's error weight ``rtol·|y| + atol`` (RMS over the state), before an
explicitly chosen adjoint mode raises. Accurate reconstructions end within 0.01-20 of it on the test
problems; a contracting system rebuilt backwards over ``λT = 30`` ends about 1e13 beyond. Between the
two, how much of the drift reaches the gradient depends on the mode. ``checkpoint`` restarts ``y``
from the stored state, so the drift meets only an adjoint that has decayed with it (a stiff linear
system drifting by 1.2e4 kept its gradient right to 1e-8). ``backsolve`` carries the drifted ``y``
into the next interval, where the next output's fresh cotangent is integrated along it (a
contracting 3-state system drifting by 2.4e5 gave a gradient 1.2e-4 off at tolerance 1e-8).
``adjoint="auto"`` uses the stricter :data:`odegrad.auto.DRIFT_FACTOR` and retries with a method that
does not rebuild ``y`` (:mod:`odegrad.methods.auto`)."""


class DriftError(ODESolveError):
    """The ``y`` rebuilt backwards drifted from the forward solution: the gradient is not trusted."""

    def __init__(self, mode: str, t_start: float, t_end: float, ratio: float, allowed: float):
        self.mode, self.ratio = mode, ratio
        super().__init__(
            f"adjoint={mode!r}: the state y rebuilt backwards from t = {t_end:.6g} to {t_start:.6g} "
            f"ended {ratio:.3g} error weights (rtol*|y| + atol) away from the stored forward state "
            f"(allowed: {allowed:g}), so the gradient would be wrong. Rebuilding y backwards "
            "amplifies errors on contracting (dissipative, stiff) dynamics. Use adjoint='auto', "
            "'forward' or 'interpolate' (which do not rebuild y backwards), or more checkpoints "
            "(checkpoints=k stores k extra forward states per interval)."
        )


def cotangent_scale(g: Any, ops: Ops) -> float:
    """The power of two nearest ``max |g|`` (1 for a zero cotangent): dividing by it is exact."""
    values = ops.value(g)
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if not (largest > 0 and math.isfinite(largest)):
        return 1.0
    return 2.0 ** round(math.log2(largest))


def _drift_ratio(rebuilt: np.ndarray, stored: np.ndarray, rtol: float, atol: Any) -> float:
    """RMS of ``(rebuilt - stored) / (rtol·max(|rebuilt|, |stored|) + atol)``."""
    weight = rtol * np.maximum(np.abs(rebuilt), np.abs(stored)) + np.asarray(atol, dtype=float)
    return float(np.sqrt(np.mean(((rebuilt - stored) / weight) ** 2)))


class Dynamics(Protocol):
    """Dynamics ``f(y, t)`` with its parameters bound, on flat states of the backend's arrays."""

    n_params: int

    def f(self, y: Any, t: Any) -> Any: ...

    def augmented(self, layout: AugmentedLayout) -> "Dynamics":
        """Dynamics of the backward state ``layout`` (with ``y``: ``[y, a, a_t, a_theta]``) with
        the same parameters, computing only the parts the layout holds (module docstring)."""
        ...

    def dense_forward(self, y_start: Any, t_start: Any, t_end: Any) -> Callable[[float], Any]:
        """Solve forwards from ``y_start`` and return a dense interpolant ``y(t)``."""
        ...

    def adjoint_along(self, y_of_t: Callable[[float], Any], layout: AugmentedLayout) -> "Dynamics":
        """Dynamics of the backward state ``layout`` (without ``y``) reading ``y`` from ``y_of_t``."""
        ...

    def sensitivity(self, layout: "SensitivityLayout") -> "Dynamics":
        """Dynamics of the forward-sensitivity state ``z = [y, S]`` of ``layout``
        (:class:`odegrad.sensitivity.SensitivityLayout`) with the same parameters."""
        ...

    def backward_method(self, method: str) -> "Dynamics":
        """The same dynamics, whose derived solves (backward states, sensitivities) use ``method``."""
        ...


Solve = Callable[[Any, Any, Dynamics], Any]
"""``solve(s0, times, dynamics) -> states``: the backend's differentiable solve."""


def refine_times(t: Any, checkpoints: int, ops: Ops) -> Any:
    """Insert ``checkpoints`` evenly spaced times into each interval of ``t`` (differentiably).

    The forward solve stores its state at these times too, so the checkpoint and backsolve
    adjoints restart ``y`` from them; ``refine_times(t, k, ops)[::k + 1]`` is ``t`` again.
    """
    fractions = np.arange(checkpoints + 1) / (checkpoints + 1)
    n_times = len(t) if not hasattr(t, "shape") else int(t.shape[0])
    pieces = [t[i] + (t[i + 1] - t[i]) * fractions for i in range(n_times - 1)]
    return ops.concat(pieces + [ops.stack([t[n_times - 1]])])


def backward(
    g: Any,
    ys: Any,
    t: Any,
    dynamics: Dynamics,
    solve: Solve,
    ops: Ops,
    mode: str = "checkpoint",
    *,
    wrt_t: bool = True,
    wrt_theta: bool = True,
    normalize: bool = True,
    drift_tolerance: tuple[float, Any] | None = None,
    drift_factor: float | None = None,
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
        The forward dynamics; ``dynamics.augmented(layout)`` is solved backwards.
    solve : Solve
        ``solve(s0, times, dynamics) -> states``: the backend's differentiable solve.
    ops : Ops
        The backend's array operations.
    mode : {"checkpoint", "backsolve", "interpolate"}
        ``"checkpoint"`` restarts the state ``y`` of every backward interval from the stored
        forward state (no drift between outputs). ``"backsolve"`` is the paper's Algorithm 1
        verbatim: ``y`` is reconstructed backwards from ``y(t_N)`` alone, through all intervals.
        ``"interpolate"`` does not integrate ``y`` backwards at all: each interval is solved
        forwards again with dense output and the adjoint reads ``y`` from that interpolant.
        Reconstructing ``y`` backwards is unstable for stiff dynamics (``-f`` has eigenvalues of
        large positive real part); the adjoint alone is linear and stable backwards. First
        derivatives only: the interpolant is not differentiated.
    wrt_t, wrt_theta : bool
        Whether ``∂L/∂t`` and ``∂L/∂theta`` are wanted. Without them the backward state holds
        no ``a_t`` (and no ``a·∂f/∂t`` is computed) or no ``a_theta``, and ``None`` is returned
        in their place.
    normalize : bool
        Solve for ``g / c`` with ``c`` the power of two nearest ``max |g|`` and multiply the
        results by ``c`` (the adjoint is linear in ``g``): the backward tolerances then act
        relative to the cotangent, and the gradient's relative accuracy does not depend on the
        loss's scale. ``c`` is a constant: higher derivatives are unchanged.
    drift_tolerance : (rtol, atol), optional
        Tolerances of ``y`` in the backward solves. Where ``y`` is rebuilt backwards
        (``"checkpoint"``, ``"backsolve"``), the rebuilt state at each interval's start is
        compared with the stored forward state, a check that costs nothing; beyond
        ``drift_factor`` error weights a :class:`DriftError` is raised. ``None``: no check.
    drift_factor : float, optional
        See ``drift_tolerance``; default: the mode's entry of :data:`DRIFT_FACTORS`.

    Returns
    -------
    g_y0 : array, shape (n,)
    g_t : array, shape (T,), or None
    g_theta : array, shape (dynamics.n_params,), or None

    Raises
    ------
    ValueError
        For a mode that is not one of :data:`BACKWARD_MODES`.
    DriftError
        When the rebuilt ``y`` drifted (``drift_tolerance``).
    """
    if mode not in BACKWARD_MODES:
        raise ValueError(f"adjoint.backward implements the modes {BACKWARD_MODES}, not {mode!r}")
    n_times = len(t) if not hasattr(t, "shape") else int(t.shape[0])
    interpolate = mode == "interpolate"
    layout = AugmentedLayout(int(ys.shape[1]), dynamics.n_params, with_state=not interpolate,
                             with_time=wrt_t, with_params=wrt_theta)
    augmented = None if interpolate else dynamics.augmented(layout)
    if drift_factor is None:
        drift_factor = DRIFT_FACTORS.get(mode, np.inf)
    scale = cotangent_scale(g, ops) if normalize else 1.0
    if scale != 1.0:
        g = g / scale
    a = g[n_times - 1]
    a_t = ops.zeros(1, like=a) if wrt_t else None
    a_theta = ops.zeros(dynamics.n_params, like=a) if wrt_theta else None
    y = ys[n_times - 1]
    time_grads = []
    for i in range(n_times - 1, 0, -1):
        if wrt_t:
            direct = ops.vdot(dynamics.f(ys[i], t[i]), g[i])
            time_grads.append(direct)
            a_t = a_t - direct
        times = ops.stack([t[i], t[i - 1]])
        if interpolate:
            along = dynamics.adjoint_along(dynamics.dense_forward(ys[i - 1], t[i - 1], t[i]), layout)
            s = solve(layout.join(ops.concat, None, a, a_t, a_theta), times, along)[1]
        else:
            start = ys[i] if mode == "checkpoint" else y
            s = solve(layout.join(ops.concat, start, a, a_t, a_theta), times, augmented)[1]
        y, a, a_t, a_theta = layout.split(s)
        if drift_tolerance is not None and not interpolate:
            ratio = _drift_ratio(ops.value(y), ops.value(ys[i - 1]), *drift_tolerance)
            if not ratio <= drift_factor:
                raise DriftError(mode, float(ops.value(t[i - 1])), float(ops.value(t[i])), ratio,
                                 drift_factor)
        a = a + g[i - 1]
    g_t = None
    if wrt_t:
        time_grads.append(a_t[0])
        g_t = ops.stack(time_grads[::-1])
    if scale != 1.0:
        a = a * scale
        g_t = None if g_t is None else g_t * scale
        a_theta = None if a_theta is None else a_theta * scale
    return a, g_t, a_theta
