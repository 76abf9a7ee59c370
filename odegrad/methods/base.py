"""What a gradient method is: one object that validates its options and returns the VJP of a solve.

Each door (autograd: :mod:`odegrad.autograd_backend`; TensorFlow: :mod:`odegrad.tf.backend`) turns
one differentiated solve into a :class:`GradientRequest` (the forward solution, its inputs, the
backend's primitives) and asks the registered method named by ``AdjointOptions.mode`` for its VJP
(:func:`odegrad.methods.registry.get`). A method touches arrays only through ``request.ops`` and
``request.solve`` and evaluates dynamics only through ``request.dynamics``, so one method object
serves both doors, and the door's own differentiation of the VJP gives higher derivatives.

Adding a method is one subclass of :class:`GradientMethod` and one call of
:func:`odegrad.methods.registry.register`; nothing else in odegrad changes.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..adjoint import Dynamics, Ops, Solve
    from ..options import AdjointOptions
    from ..solvers import SolverOptions, SolveStats
    from ..stats import SolveInfo

DOORS = ("autograd", "tensorflow")
"""The front doors: ``odegrad.odeint``/``solve_ivp`` (autograd) and ``odegrad.tf.odeint``."""


@dataclasses.dataclass(frozen=True)
class Wrt:
    """Which inputs of the solve are differentiated: ``y0``, the output times, the parameters."""

    y0: bool = True
    t: bool = True
    params: bool = True


class Resolve(Protocol):
    """A plain (undifferentiated) forward solve of the same problem with other inputs.

    ``resolve(y0, t, theta) -> ys``: NumPy float64 arrays, ``y0`` flat (n,), ``t`` (T,), ``theta``
    the flat parameters (``n_params``) or ``None`` for the current ones; ``ys`` is (T, n). For
    methods that differentiate by solving again (finite differences, checks).
    """

    def __call__(self, y0: np.ndarray, t: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class GradientRequest:
    """Everything one VJP of one solve needs, from either door.

    Attributes
    ----------
    ys : array, shape (T, n)
        The forward solution at the output times (the backend's array, possibly traced).
    y0 : array, shape (n,)
    t : array, shape (T,)
    dynamics : Dynamics
        The forward dynamics with their parameters bound (:class:`odegrad.adjoint.Dynamics`, plus
        ``sensitivity(layout)`` for forward sensitivities).
    solve : Solve
        The backend's differentiable solve, ``solve(s0, times, dynamics) -> states``.
    ops : Ops
        The backend's array operations.
    options : AdjointOptions
        The gradient options of the call.
    forward_opts, backward_opts : SolverOptions
        The forward solve's options, and the options of the derived (backward, sensitivity) solves
        of the state (:meth:`odegrad.options.AdjointOptions.backward_solver`).
    stats : SolveStats or None
        The forward solve's statistics (evaluations, LSODA's switches to BDF).
    info : SolveInfo
        Receives the statistics of the derived solves (through the dynamics).
    wrt : Wrt
        What is differentiated; the VJP returns ``None`` for the rest.
    door : {"autograd", "tensorflow"}
    higher_order : bool
        Whether the VJP is itself differentiated (its inputs are traced).
    derived : bool
        Whether the solve is itself part of a gradient (a derived solve being differentiated).
    resolve : Resolve
        Plain forward solves of the same problem.
    """

    ys: Any
    y0: Any
    t: Any
    dynamics: "Dynamics"
    solve: "Solve"
    ops: "Ops"
    options: "AdjointOptions"
    forward_opts: "SolverOptions"
    backward_opts: "SolverOptions"
    stats: "SolveStats | None"
    info: "SolveInfo"
    wrt: Wrt
    door: str
    higher_order: bool
    derived: bool
    resolve: Resolve

    @property
    def n(self) -> int:
        """Entries of the flat state."""
        return int(self.ys.shape[1])

    @property
    def n_params(self) -> int:
        """Entries of the flat parameter vector."""
        return int(self.dynamics.n_params)

    @property
    def n_times(self) -> int:
        """Output times (checkpoints included)."""
        return int(self.ys.shape[0])


@dataclasses.dataclass(frozen=True)
class Gradient:
    """The VJP of a solve for one cotangent: ``∂L/∂y0``, ``∂L/∂t``, ``∂L/∂θ`` (``None`` where not
    differentiated) and the name of the method that computed them (``auto``: the one it ran)."""

    y0: Any
    t: Any
    params: Any
    method: str


Vjp = Callable[[Any], Gradient]
"""``vjp(g) -> Gradient`` for a cotangent ``g`` of shape (T, n); may keep work across cotangents."""


class GradientMethod(abc.ABC):
    """A way to compute the VJP of a solve.

    Class attributes say what the method supports; :meth:`check` turns them into errors that name
    the alternatives, so a subclass usually only writes :meth:`vjp`.

    Attributes
    ----------
    name : str
        The registry key, the value of ``adjoint=`` that selects it.
    doors : frozenset of str
        The doors (:data:`DOORS`) that can run it.
    first_order_only : bool
        Whether its VJP cannot be differentiated again (Hessians need another method).
    seminorm : bool
        Whether it accepts ``adjoint_seminorm=True``.
    checkpoints : bool
        Whether it uses ``checkpoints`` (extra stored forward states).
    """

    name: ClassVar[str]
    doors: ClassVar[frozenset[str]] = frozenset(DOORS)
    first_order_only: ClassVar[bool] = False
    seminorm: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = False

    def check(self, options: "AdjointOptions", door: str | None = None) -> None:
        """Raise ``ValueError`` for options this method cannot honour (``door=None``: any door)."""
        from .registry import names

        def others(flag: str) -> str:
            return ", ".join(repr(name) for name in names() if getattr(_registered(name), flag))

        if door is not None and door not in self.doors:
            raise ValueError(f"adjoint={self.name!r} is not available on the {door} door; "
                             f"choose one of {[n for n in names() if door in _registered(n).doors]}")
        if options.seminorm and not self.seminorm:
            raise ValueError(f"adjoint_seminorm=True does not apply to adjoint={self.name!r}; "
                             f"the methods that take it: {others('seminorm')}")
        if options.checkpoints and not self.checkpoints:
            raise ValueError(f"checkpoints only apply to {others('checkpoints')}, not adjoint={self.name!r}")

    @abc.abstractmethod
    def vjp(self, request: GradientRequest) -> Vjp:
        """The VJP of the solve described by ``request``."""


def _registered(name: str) -> GradientMethod:
    from .registry import get

    return get(name)
