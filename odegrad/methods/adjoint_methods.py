"""The adjoint methods: ``checkpoint``, ``backsolve`` and ``interpolate``.

Each is a thin wrapper over :func:`odegrad.adjoint.backward` (Algorithm 1 with Appendix C, written
once): it runs that algorithm in its mode with the door's ``solve`` and ``ops``, holds the rebuilt
``y`` to the mode's drift bound (:data:`odegrad.adjoint.DRIFT_FACTORS`) and turns a failed backward
solve into an error that says what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..adjoint import DriftError, backward
from ..solvers import ODESolveError
from .base import Gradient, GradientMethod, GradientRequest, Vjp

_SEMINORM_NOTE = "y's error control keeps the steps the quadratures need"


def run_backward(request: GradientRequest, g: Any, mode: str, drift_factor: float | None = None) -> Gradient:
    """One run of :func:`odegrad.adjoint.backward` in ``mode`` for the cotangent ``g``.

    The rebuilt ``y`` is checked against the stored forward states at the backward solves'
    tolerances, beyond ``drift_factor`` error weights (default: the mode's
    :data:`odegrad.adjoint.DRIFT_FACTORS`).
    """
    opts, wrt = request.backward_opts, request.wrt
    g_y0, g_t, g_theta = backward(
        g, request.ys, request.t, request.dynamics, request.solve, request.ops, mode,
        wrt_t=wrt.t, wrt_theta=wrt.params, normalize=request.options.normalize,
        drift_tolerance=(float(np.min(opts.rtol)), opts.atol), drift_factor=drift_factor,
    )
    return Gradient(g_y0 if wrt.y0 else None, g_t, g_theta, mode)


class _RebuildingAdjoint(GradientMethod):
    """An adjoint that solves ``y`` backwards beside ``a``: seminorm and checkpoints apply."""

    seminorm = True
    checkpoints = True
    seminorm_note = _SEMINORM_NOTE

    def vjp(self, request: GradientRequest) -> Vjp:
        def vjp(g: Any) -> Gradient:
            try:
                return run_backward(request, g, self.name)
            except DriftError:
                raise
            except ODESolveError as exc:
                raise ODESolveError(
                    f"the backward (adjoint) solve failed: {exc} For stiff problems, reconstructing y "
                    "backwards is unstable: use adjoint='auto' (forward sensitivities or the "
                    "interpolating adjoint for stiff problems), 'forward' or 'interpolate'."
                ) from exc

        return vjp


class CheckpointAdjoint(_RebuildingAdjoint):
    """``adjoint="checkpoint"``: the adjoint restarting ``y`` from the stored forward state at
    every output time (and every checkpoint), so ``y`` drifts only within an interval."""

    name: ClassVar[str] = "checkpoint"
    title: ClassVar[str] = "the adjoint restarted at the stored forward states"


class BacksolveAdjoint(_RebuildingAdjoint):
    """``adjoint="backsolve"``: the paper's Algorithm 1 verbatim, ``y`` rebuilt backwards from
    the final state alone through every interval."""

    name: ClassVar[str] = "backsolve"
    title: ClassVar[str] = "the paper's Algorithm 1"


class InterpolatingAdjoint(GradientMethod):
    """``adjoint="interpolate"``: the adjoint reading ``y`` from a dense forward solution of each
    interval instead of rebuilding it backwards (stiff problems; first derivatives only, the
    interpolant is not differentiated)."""

    name: ClassVar[str] = "interpolate"
    title: ClassVar[str] = "the adjoint along a dense forward solution"
    first_order_only: ClassVar[bool] = True
    without_seminorm: ClassVar[str] = (
        "its backward state holds no y, so only the adjoint a would set the steps; on stiff "
        "problems a decays within a few steps and the quadratures a_t, a_theta were then "
        "integrated with steps far too long (relative errors up to 1e-3 at tolerance 1e-8)")
    without_checkpoints: ClassVar[str] = "reads y from a dense forward solution instead"

    def vjp(self, request: GradientRequest) -> Vjp:
        return lambda g: run_backward(request, g, self.name)
