"""How a gradient is computed: one immutable :class:`AdjointOptions`, shared by both front doors.

``odegrad.odeint`` and ``odegrad.tf.odeint`` take the options either as one object
(``adjoint=AdjointOptions(mode="interpolate", seminorm=True)``) or as scipy-style flat keywords
(``adjoint="interpolate", adjoint_seminorm=True``); :func:`adjoint_options` turns either into the
same object, once, and :meth:`AdjointOptions.backward_solver` derives the solver options of the
backward solves from the forward ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .methods.registry import get
from .solvers import SolverOptions, derived_options, solver
from .validation import tolerance

BUILTIN_MODES = ("checkpoint", "backsolve", "interpolate", "forward", "auto")
"""The built-in gradient methods (:mod:`odegrad.methods.builtins`); any method registered with
:func:`odegrad.methods.register` is a mode too. ``auto`` (default): one of the others per solve
(:mod:`odegrad.methods.auto`); ``checkpoint``: the adjoint, restarting ``y`` from the stored
forward state at every output time; ``backsolve``: the paper's Algorithm 1 verbatim;
``interpolate``: the adjoint reading ``y`` from a dense forward solution (stiff problems, first
derivatives); ``forward``: forward sensitivities solved once over all output times
(:mod:`odegrad.methods.forward`)."""


@dataclasses.dataclass(frozen=True)
class AdjointOptions:
    """Options of the gradient (the backward, adjoint solves) of one ``odeint`` call.

    Parameters
    ----------
    mode : {"checkpoint", "backsolve", "interpolate", "forward", "auto"} or str
        How the gradient is computed: the name of a registered gradient method
        (:func:`odegrad.methods.registry.names`; the built-ins: :data:`BUILTIN_MODES`).
    checkpoints : int
        Extra evenly spaced forward states stored per output interval (``checkpoint`` and
        ``backsolve`` restart ``y`` from them).
    method : {"lsoda", "adams", "bdf"} or None
        Method of the backward (or sensitivity) solves; ``None``: the forward method.
    rtol, atol : float or array_like or None
        Tolerances of the backward (or sensitivity) solves; ``None``: the forward ones.
    seminorm : bool
        Leave the quadrature components ``a_t``, ``a_theta`` out of the backward step-size
        control (Kidger et al., 2021). Only where ``y`` is solved backwards beside them
        (``"checkpoint"``, ``"backsolve"``): every entry of the forward sensitivities ``S`` enters
        the gradient, and without ``y`` the steps follow ``a`` alone, too long for the
        quadratures on stiff problems; so ``"forward"`` and ``"interpolate"`` refuse it and
        ``"auto"`` applies it only when it picks an adjoint that solves ``y``.
    jacobian : bool or None
        Give the backward (or sensitivity) solves the exact Jacobian of their dynamics;
        ``None``: when their method is ``"lsoda"`` or ``"bdf"`` and their state is small.
    normalize : bool
        Solve the adjoint for the cotangent scaled to ``max |∂L/∂ys| = 1`` (a power of two) and
        scale the result back: the adjoint is linear in the cotangent, so ``atol`` then acts
        relative to the cotangent's size and a gradient's relative accuracy does not depend on
        the loss's scale (default). ``False``: Appendix D's (and torchdiffeq's) behaviour,
        ``atol`` absolute on ``a`` and ``a_theta``, so a small cotangent (a loss near its
        optimum, a batch mean) escapes the error control. Forward sensitivities do not depend on
        the cotangent and are scale-invariant either way.

    Raises
    ------
    ValueError
        For an unknown mode or method, a negative or fractional ``checkpoints``, bad
        tolerances, or ``checkpoints`` or ``seminorm`` that the mode's method does not take
        (:meth:`odegrad.methods.GradientMethod.check`: ``"interpolate"`` and ``"forward"``
        refuse both).
    """

    mode: str = "auto"
    checkpoints: int = 0
    method: str | None = None
    rtol: Any = None
    atol: Any = None
    seminorm: bool = False
    jacobian: bool | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        method = get(self.mode)
        if self.method is not None:
            solver(self.method, "adjoint_method")  # raises for an unregistered method, naming the registered ones
        checkpoints = self.checkpoints
        if isinstance(checkpoints, bool) or int(checkpoints) != checkpoints or checkpoints < 0:
            raise ValueError(f"checkpoints must be a non-negative integer, got {checkpoints!r}")
        object.__setattr__(self, "checkpoints", int(checkpoints))
        method.check(self)
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None:
                tolerance(f"adjoint_{name}", value, np.shape(value))

    def backward_solver(self, forward: SolverOptions, shape: tuple[int, ...]) -> SolverOptions:
        """The solver options of the backward solves for a state of ``shape``.

        Parameters
        ----------
        forward : SolverOptions
            The forward solve's options: method, tolerances and step controls default to them.
        shape : tuple of int
            Shape of the state; vector tolerances broadcast to it.

        Returns
        -------
        SolverOptions
            With a scalar ``rtol`` (the smallest, where a vector was given: VODE and LSODA
            take one ``rtol`` for the augmented system). For solves in the forward direction
            (sensitivities): ``h0``, ``hmax``, ``hmin``, ``mxstep`` and LSODA's ``tcrit`` keep their
            meaning; the state's banded Jacobian (``ml``, ``mu``) does not describe a derived state
            and is dropped. Solves that run backwards adjust these further
            (:meth:`odegrad.augmented.AugmentedLayout.solver_options`).
        """
        rtol = forward.rtol if self.rtol is None else tolerance("adjoint_rtol", self.rtol, shape)
        atol = forward.atol if self.atol is None else tolerance("adjoint_atol", self.atol, shape)
        return dataclasses.replace(derived_options(forward, self.method or forward.method),
                                   rtol=float(np.min(rtol)), atol=atol)


def adjoint_options(
    adjoint: str | AdjointOptions = "auto",
    *,
    checkpoints: int = 0,
    adjoint_method: str | None = None,
    adjoint_rtol: Any = None,
    adjoint_atol: Any = None,
    adjoint_seminorm: bool = False,
    adjoint_jacobian: bool | None = None,
    adjoint_normalize: bool = True,
) -> AdjointOptions:
    """Build :class:`AdjointOptions` from the flat scipy-style keywords of ``odeint``.

    Parameters
    ----------
    adjoint : str or AdjointOptions
        A mode name, or a complete options object (then the other keywords must keep their
        defaults).
    checkpoints, adjoint_method, adjoint_rtol, adjoint_atol, adjoint_seminorm, adjoint_jacobian, adjoint_normalize
        The fields of :class:`AdjointOptions`.

    Returns
    -------
    AdjointOptions

    Raises
    ------
    ValueError
        If ``adjoint`` is an :class:`AdjointOptions` and flat keywords are given too.
    """
    flat = {"checkpoints": checkpoints, "method": adjoint_method, "rtol": adjoint_rtol,
            "atol": adjoint_atol, "seminorm": adjoint_seminorm, "jacobian": adjoint_jacobian,
            "normalize": adjoint_normalize}
    if isinstance(adjoint, AdjointOptions):
        defaults = AdjointOptions()
        given = [name for name, value in flat.items()
                 if ((value is not None) if getattr(defaults, name) is None
                     else (value != getattr(defaults, name)))]
        if given:
            raise ValueError(
                f"adjoint is an AdjointOptions object; also passing {', '.join(given)} as "
                "keywords is ambiguous: set them in the AdjointOptions (dataclasses.replace)"
            )
        return adjoint
    return AdjointOptions(mode=adjoint, **flat)
