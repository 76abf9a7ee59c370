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
    from ..adjoint import Dynamics, Solve
    from ..ops import Ops
    from ..options import AdjointOptions
    from ..sensitivity import SensitivityLayout
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


def _untraced(x: Any) -> bool:
    """The default of :attr:`GradientRequest.traced`: nothing is traced."""
    return False


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
    params : array, shape (n_params,), or None
        The flat parameter vector the dynamics are bound to (the backend's array, possibly
        traced); ``None`` where the door keeps its parameters elsewhere (TensorFlow variables).
    traced : callable
        ``traced(x) -> bool``: whether the door's differentiation traces ``x`` (a cotangent
        ``g`` that is itself differentiated, so the VJP must be differentiable in it).
    sensitivities : (SensitivityLayout, ndarray) or None
        Where the forward pass solved ``y`` together with its forward sensitivities (the door asked
        :meth:`GradientMethod.sensitivities_in_forward`): their layout and the plain solution
        ``zs`` (T, ``layout.size``) whose first ``n`` columns are ``ys``. A method may use them
        for first derivatives; they are plain arrays, so a VJP that is differentiated again
        (``higher_order``) must solve afresh.
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
    params: Any = None
    traced: Callable[[Any], bool] = dataclasses.field(default=_untraced, repr=False)
    sensitivities: "tuple[SensitivityLayout, np.ndarray] | None" = None

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
class ForwardShape:
    """What a door knows of a differentiated solve before solving it (:meth:`GradientMethod.sensitivities_in_forward`).

    Attributes
    ----------
    n : int
        Entries of the flat state.
    columns : int
        Sensitivity columns of what is differentiated (:attr:`odegrad.sensitivity.SensitivityLayout.columns`).
    n_intervals : int
        Output intervals (output times minus one).
    rtol : float
        Relative tolerance of the derived solves.
    door : str
    """

    n: int
    columns: int
    n_intervals: int
    rtol: float
    door: str


@dataclasses.dataclass(frozen=True)
class Gradient:
    """The VJP of a solve for one cotangent.

    Attributes
    ----------
    y0, t, params : array or None
        ``∂L/∂y0`` (n,), ``∂L/∂t`` (T,), ``∂L/∂θ`` (n_params,); ``None`` where not differentiated.
    method : str
        The name of the method that computed them (under ``auto``: the one it ran).
    ran : bool
        Whether this cotangent ran work of its own. ``False`` where it reused an earlier
        cotangent's solve (one forward-sensitivity solve serves every cotangent) or needed none;
        the door lists ``method`` in :attr:`odegrad.SolveInfo.gradient_methods` only when true.
    """

    y0: Any
    t: Any
    params: Any
    method: str
    ran: bool = True


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
    title : str
        A few words saying what it is (in error messages).
    doors : frozenset of str
        The doors (:data:`DOORS`) that can run it.
    first_order_only : bool
        Whether its VJP cannot be differentiated again (Hessians need another method).
    seminorm : bool
        Whether it accepts ``adjoint_seminorm=True``.
    checkpoints : bool
        Whether it uses ``checkpoints`` (extra stored forward states).
    without_seminorm : str
        Why it refuses the seminorm (ends the refusal's first sentence).
    seminorm_note : str
        For a method that takes the seminorm: a note on why or when, said where another method's
        refusal suggests it.
    without_checkpoints : str
        What it does instead of using checkpoints (ends the refusal).
    """

    name: ClassVar[str]
    title: ClassVar[str] = "a registered gradient method"
    doors: ClassVar[frozenset[str]] = frozenset(DOORS)
    first_order_only: ClassVar[bool] = False
    seminorm: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = False
    without_seminorm: ClassVar[str] = "it has no backward solve whose error control could leave anything out"
    seminorm_note: ClassVar[str] = ""
    without_checkpoints: ClassVar[str] = "does not restart from stored forward states"

    def check(self, options: "AdjointOptions", door: str | None = None) -> None:
        """Raise ``ValueError`` for options this method cannot honour (``door=None``: any door).

        Parameters
        ----------
        options : AdjointOptions
            The gradient options of a call (``options.mode`` names this method).
        door : {"autograd", "tensorflow"} or None
            The door that will run it.
        """
        from .registry import get, names

        methods = [get(name) for name in names()]
        if door is not None and door not in self.doors:
            here = [m.name for m in methods if door in m.doors]
            raise ValueError(f"adjoint={self.name!r} ({self.title}) is not available on the {door} door; "
                             f"use {_alternatives(here)}")
        if options.checkpoints and not self.checkpoints:
            here = [m.name for m in methods if m.checkpoints]
            raise ValueError(f"checkpoints only apply to {_alternatives(here)}; "
                             f"adjoint={self.name!r} {self.without_checkpoints}")
        if options.seminorm and not self.seminorm:
            groups: dict[str, list[str]] = {}
            for method in methods:
                if method.seminorm:
                    groups.setdefault(method.seminorm_note, []).append(method.name)
            uses = ", or ".join(_alternatives(group) + (f" ({note})" if note else "")
                                for note, group in groups.items())
            raise ValueError(f"adjoint_seminorm=True does not apply to adjoint={self.name!r}: "
                             f"{self.without_seminorm}. Use the seminorm with {uses}.")

    def check_request(self, request: GradientRequest) -> None:
        """Raise ``NotImplementedError`` where the VJP would be differentiated again
        (``request.higher_order``) and this method gives first derivatives only."""
        from .registry import get, names

        if self.first_order_only and request.higher_order:
            here = [name for name in names() if request.door in get(name).doors and not get(name).first_order_only]
            raise NotImplementedError(
                f"adjoint={self.name!r} gives first derivatives only; use {_alternatives(here)} for "
                "Hessians, grad-of-grad and other higher derivatives")

    def sensitivities_in_forward(self, shape: "ForwardShape") -> bool:
        """Whether the door should solve ``y`` with its forward sensitivities in the forward pass.

        A door asks before a forward solve whose result will be differentiated once (its inputs
        traced at one level) and whose derived solves control ``y``'s error as the forward solve
        does; it then hands the solution to :meth:`vjp` as ``request.sensitivities`` and returns
        its ``y`` as the forward result. It saves the forward solve of a method that would solve
        the sensitivities anyway. The default: no.
        """
        return False

    def sensitivities_in_forward_if_stiff(self, shape: "ForwardShape") -> bool:
        """Whether the forward pass's solve of ``y`` with its sensitivities should go on where it
        turns stiff with no Jacobian of its own (its solver would then estimate the Jacobian of
        all ``n (1 + columns)`` entries by finite differences).

        No: the door abandons that solve at the solver's first request for a Jacobian, solves
        ``y`` alone and leaves the choice to :meth:`vjp`, which then knows the solve was stiff.
        The default: yes (a method that solves the sensitivities whatever the stiffness would
        only solve them again).
        """
        return True

    @abc.abstractmethod
    def vjp(self, request: GradientRequest) -> Vjp:
        """The VJP of the solve described by ``request``.

        Called once per differentiated solve; the returned function is called once per cotangent
        and may keep work across cotangents. It raises :class:`odegrad.ODESolveError` (with what to
        do) where its solves fail, and returns a :class:`Gradient` naming what ran.
        """


def _alternatives(names: list[str]) -> str:
    """``adjoint='a'``, ``adjoint='a' or 'b'``, ``adjoint='a', 'b' or 'c'``."""
    quoted = [repr(name) for name in names]
    if not quoted:
        return "no registered method"
    if len(quoted) == 1:
        return f"adjoint={quoted[0]}"
    return f"adjoint={', '.join(quoted[:-1])} or {quoted[-1]}"
