"""``adjoint="forward"``: forward sensitivities, one solve over all output times for every cotangent.

The state ``z = [y, S]`` (:class:`odegrad.sensitivity.SensitivityLayout`) is solved once by the
door's differentiable ``solve`` with the dynamics ``request.dynamics.sensitivity(layout)``; each
cotangent then costs a few array operations (:meth:`SensitivityLayout.cotangents`). Where the
door solved ``z`` in the forward pass already (:meth:`ForwardSensitivities.sensitivities_in_forward`,
``request.sensitivities``), a first derivative runs no solve at all.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..sensitivity import SensitivityLayout
from .base import ForwardShape, Gradient, GradientMethod, GradientRequest, Vjp


def layout_of(request: GradientRequest) -> SensitivityLayout:
    """The sensitivity layout of what ``request`` differentiates."""
    return SensitivityLayout(request.n, request.n_params, with_y0=request.wrt.y0, with_t0=request.wrt.t,
                             with_params=request.wrt.params)


class ForwardSensitivities(GradientMethod):
    """``adjoint="forward"``: ``S' = ∂f/∂y S + ∂f/∂θ`` solved forwards with ``y``; every
    derivative order, no restarts at the outputs, one solve for all cotangents."""

    name: ClassVar[str] = "forward"
    title: ClassVar[str] = "forward sensitivities"
    without_seminorm: ClassVar[str] = (
        "every entry of the forward sensitivities S enters the gradient, so none may leave the error control")
    without_checkpoints: ClassVar[str] = "solves y with its sensitivities forwards instead"

    def sensitivities_in_forward(self, shape: ForwardShape) -> bool:
        """Yes: the sensitivity solve also solves ``y``, so it can be the forward solve."""
        return shape.door in self.doors

    def vjp(self, request: GradientRequest) -> Vjp:
        layout, ops, dynamics = layout_of(request), request.ops, request.dynamics
        ys, t, n_times = request.ys, request.t, request.n_times
        solved: list[Any] = []
        presolved = request.sensitivities
        if presolved is not None and presolved[0] == layout and not request.higher_order:
            solved.append(presolved[1])         # solved in the forward pass: nothing left to run

        def vjp(g: Any) -> Gradient:
            if n_times == 1:        # nothing to solve: y(t_0) = y0
                return Gradient(g[0] if layout.with_y0 else None,
                                ops.zeros(1, like=g) if layout.with_t0 else None,
                                ops.zeros(request.n_params, like=g) if layout.with_params else None,
                                self.name, ran=False)
            ran = len(solved) < 2
            if ran:     # the solve and the rates f(y_i, t_i) do not depend on g: once for every cotangent
                if not solved:
                    f0 = dynamics.f(request.y0, t[0]) if layout.with_t0 else None
                    solved.append(request.solve(layout.initial_state(request.y0, f0, ops), t,
                                                dynamics.sensitivity(layout)))
                solved.append(ops.stack([dynamics.f(ys[i], t[i]) for i in range(1, n_times)])
                              if layout.with_t0 else None)
            return Gradient(*layout.cotangents(g, solved[0], solved[1], ops), self.name, ran=ran)

        return vjp
