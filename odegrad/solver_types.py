"""What a solve takes and gives: :class:`SolverOptions` in, :class:`SolveStats` out, :class:`ODESolveError` on failure.

The runners (:mod:`odegrad.solver_lsoda`, :mod:`odegrad.solver_vode`, :mod:`odegrad.solver_ivp`) and
the dispatch in :mod:`odegrad.solvers` all speak these types; :mod:`odegrad.solvers` re-exports them
under the names the rest of odegrad imports.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_TOL = 1.49012e-8
"""scipy's ``odeint`` default for ``rtol`` and ``atol``, used for every method."""


class ODESolveError(RuntimeError):
    """An ODE solve failed; the message names the method, the time reached and what to try."""


@dataclasses.dataclass
class SolveStats:
    """Work done by one or more solves.

    Attributes
    ----------
    method : str
        The method's registered name (a dense solve's: the ``solve_ivp`` method that stepped,
        lower-cased).
    nfe : int
        Number of evaluations of the dynamics.
    nst : int
        Number of accepted solver steps.
    nje : int
        Number of Jacobian evaluations (LSODA/BDF only; 0 for functional iteration).
    nsolves : int
        Number of solver runs added up here (one per backward interval for the adjoint).
    method_switches : int
        For LSODA, the number of switches between its Adams and BDF phases (``solve_ivp``'s
        LSODA: 1 where it evaluated a Jacobian, which only its BDF phase does; scipy does not
        expose the count).
    infodict : dict or None
        For one solve of :func:`odegrad.solvers.solve`: the ``infodict`` of ``scipy.integrate.odeint`` (one row per
        output time after the first; see :func:`odegrad.solvers.infodict_of_no_steps`). Not added up by :meth:`add`.
    """

    method: str
    nfe: int = 0
    nst: int = 0
    nje: int = 0
    nsolves: int = 0
    method_switches: int = 0
    infodict: dict | None = dataclasses.field(default=None, compare=False, repr=False)

    def add(self, other: "SolveStats") -> None:
        """Add ``other``'s counts to these, in place."""
        self.nfe += other.nfe
        self.nst += other.nst
        self.nje += other.nje
        self.nsolves += other.nsolves
        self.method_switches += other.method_switches


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Options of one solve, in scipy's ``odeint`` vocabulary.

    ``rtol``/``atol`` are scalars or vectors over the flat state. ``h0``, ``hmax``, ``hmin``
    and ``mxstep`` are mapped onto VODE's ``first_step``, ``max_step``, ``min_step`` and
    ``nsteps`` for the VODE methods, and ``h0``, ``hmax``, ``hmin`` onto ``solve_ivp``'s
    ``first_step``, ``max_step`` and (LSODA only) ``min_step`` for the :data:`odegrad.solvers.IVP_METHODS`
    (0: scipy's default); ``lsoda_kwargs`` go to ``scipy.integrate.odeint`` only.
    ``stop_at_end``: LSODA never steps past the last output time (its ``tcrit``), so the dynamics
    are not evaluated outside the solve's interval; the derived solves that run backwards use it,
    since ``f`` may be undefined before ``t_0`` (solve_ivp's methods never step past ``t_bound``).
    """

    method: str = "lsoda"
    rtol: float | np.ndarray = DEFAULT_TOL
    atol: float | np.ndarray = DEFAULT_TOL
    h0: float = 0.0
    hmax: float = 0.0
    hmin: float = 0.0
    mxstep: int = 0
    lsoda_kwargs: dict = dataclasses.field(default_factory=dict)
    stop_at_end: bool = False
