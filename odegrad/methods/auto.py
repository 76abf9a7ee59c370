"""``adjoint="auto"``: one of the other methods per solve, and every fallback between them.

The choice is the cost model of :func:`odegrad.auto.choose` (forward sensitivities for small
states and stiff problems, the checkpoint adjoint for wide ones, the interpolating adjoint for
first derivatives of wide stiff problems); on a door without forward sensitivities, the
checkpoint adjoint. This method owns what happens after the choice:

* the adjoint it picked is held to the stricter drift bound :data:`odegrad.auto.DRIFT_FACTOR`;
  a drifted reconstruction of ``y`` (:class:`odegrad.adjoint.DriftError`) or a failed backward
  solve is retried by a method that does not rebuild ``y`` backwards: forward sensitivities where
  they fit, else the interpolating adjoint (first derivatives), else an error that says what to
  do. Warnings of the failed attempt are dropped, those of a successful one kept;
* a second cotangent (a Jacobian or Hessian row by row) switches from the adjoint to forward
  sensitivities where they fit: one sensitivity solve serves that cotangent and every later one;
* its checkpoint adjoint of a wide state after a non-stiff LSODA forward solve runs backwards with
  VODE's Adams method (:func:`odegrad.auto.backward_method`); its retries use the options as given.

Where the forward pass solved ``y`` with its forward sensitivities (:meth:`Auto.sensitivities_in_forward`),
a first derivative uses them: they are paid for, and no adjoint can be cheaper than no solve. A
forward pass whose sensitivity system is too large for the exact Jacobian a stiff solve needs
abandons that solve where it turns stiff (:meth:`Auto.sensitivities_in_forward_if_stiff`), and the
choice is made afresh with the stiffness known.

The methods it runs are looked up by name in the registry, so a replaced built-in is the one used.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

from .. import auto, solvers
from ..augmented import AugmentedLayout
from .adjoint_methods import run_backward
from .base import ForwardShape, Gradient, GradientMethod, GradientRequest, Vjp
from .forward import layout_of
from .registry import get


def is_stiff(request: GradientRequest) -> bool:
    """Whether the forward solve was stiff: LSODA switched to BDF, or BDF was asked for."""
    if solvers.solver(request.forward_opts.method).stiff:
        return True
    return request.stats is not None and request.stats.method_switches > 0


class Auto(GradientMethod):
    """``adjoint="auto"`` (the default): the cheapest fitting method per solve, with fallbacks."""

    name: ClassVar[str] = "auto"
    title: ClassVar[str] = "a method chosen per solve"
    seminorm: ClassVar[bool] = True
    checkpoints: ClassVar[bool] = True
    seminorm_note: ClassVar[str] = "which applies it only when it picks one of those"

    def sensitivities_in_forward(self, shape: ForwardShape) -> bool:
        """Where :func:`odegrad.auto.forward_in_forward_pass` expects forward sensitivities: the
        forward pass then solves them, and :meth:`vjp` uses them (they are paid for)."""
        forward = get("forward")
        return forward.sensitivities_in_forward(shape) and auto.forward_in_forward_pass(
            shape.n, shape.columns, shape.n_intervals, shape.rtol)

    def sensitivities_in_forward_if_stiff(self, shape: ForwardShape) -> bool:
        """Only where :func:`odegrad.auto.choose` takes forward sensitivities of a stiff solve too
        (their system small enough for its exact Jacobian); otherwise a stiff forward solve is
        better served by the interpolating adjoint than by a finite-difference Jacobian of the
        whole sensitivity system."""
        return auto.forward_fits(shape.n, shape.columns, stiff=True)

    def vjp(self, request: GradientRequest) -> Vjp:
        forward = get("forward")
        if request.sensitivities is not None and not request.higher_order:
            return forward.vjp(request)     # solved with y in the forward pass
        stiff = is_stiff(request)
        columns = layout_of(request).columns
        fits = request.door in forward.doors and auto.forward_fits(request.n, columns, stiff)
        mode = self.pick(request, stiff, columns)
        if mode == "forward":
            return forward.vjp(request)
        adjoint_vjp = self._adjoint(request, mode, fits)
        if not fits:
            return adjoint_vjp
        calls: list[Vjp] = []

        def vjp(g: Any) -> Gradient:
            # A second cotangent (a Jacobian or Hessian, row by row): one sensitivity solve serves
            # this one and every later one.
            if len(calls) == 1:
                calls.append(forward.vjp(request))
            elif not calls:
                calls.append(adjoint_vjp)
            return calls[-1](g)

        return vjp

    @staticmethod
    def pick(request: GradientRequest, stiff: bool, columns: int) -> str:
        """The method for this solve: :func:`odegrad.auto.choose`, or ``"checkpoint"`` on a door
        without forward sensitivities."""
        if request.door not in get("forward").doors:
            return "checkpoint"
        stats = request.stats
        return auto.choose(
            n=request.n, columns=columns, n_intervals=request.n_times - 1,
            nfe=0 if stats is None else stats.nfe, rtol=request.backward_opts.rtol, stiff=stiff,
            higher_order=request.higher_order, derived=request.derived,
        )

    def _adjoint(self, request: GradientRequest, mode: str, fits: bool) -> Vjp:
        """The adjoint ``mode`` under auto's drift bound, with the backward method of
        :func:`odegrad.auto.backward_method`, retried where it fails (module docstring)."""
        running = request
        backward_state = AugmentedLayout(request.n, request.n_params, with_time=request.wrt.t,
                                         with_params=request.wrt.params)
        method = auto.backward_method(request.forward_opts.method, is_stiff(request), request.options.method,
                                      backward_state.size) if mode == "checkpoint" else None
        if method is not None:
            running = dataclasses.replace(request, dynamics=request.dynamics.backward_method(method),
                                          backward_opts=solvers.derived_options(request.backward_opts, method))
            request.info.backward.method = method

        def vjp(g: Any) -> Gradient:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    gradient = run_backward(running, g, mode, drift_factor=auto.DRIFT_FACTOR)
            except solvers.ODESolveError as exc:
                request.info.backward.method = request.backward_opts.method    # the retry's options
                return self._retry(request, g, exc, fits)
            for item in caught:
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            return gradient

        return vjp

    @staticmethod
    def _retry(request: GradientRequest, g: Any, exc: solvers.ODESolveError, fits: bool) -> Gradient:
        """The gradient by a method that does not rebuild ``y`` backwards, after ``exc``."""
        if fits:
            return get("forward").vjp(request)(g)
        if not (request.higher_order or request.traced(g)):
            return get("interpolate").vjp(request)(g)
        raise solvers.ODESolveError(
            f"the backward (adjoint) solve failed: {exc} adjoint='auto' found no forward-sensitivity "
            "state small enough, and its interpolating adjoint gives first derivatives only: give "
            "more checkpoints (checkpoints=k), loosen the tolerances, shorten the time span, or "
            "differentiate fewer inputs."
        ) from exc
