"""The registry of solvers: one record per method, the only place that knows what a method can do.

Every decision that depends on the method reads its :class:`SolverSpec`: how
:func:`odegrad.solvers.solve` and :func:`odegrad.solvers.dense_solve` run it, whether it is asked
for because the problem is stiff (``adjoint="auto"``), whether derived solves get an exact Jacobian
by default, which of ``odeint``'s options it takes, which front door accepts it. scipy's methods
are registered by :mod:`odegrad.solvers`; another solver plugs in with :func:`register_solver`
(for a ``scipy.integrate.OdeSolver`` subclass, :func:`odegrad.solvers.ivp_record` builds the
record). The models are scipy's ``integrate/_ivp`` (one ``OdeSolver`` class per method, in
``METHODS``) and torchdiffeq's ``SOLVERS``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

FAMILIES = ("odeint", "vode", "ivp")
"""The scipy APIs that step scipy's methods: ``scipy.integrate.odeint`` (LSODA),
``scipy.integrate.ode("vode")`` and ``scipy.integrate.solve_ivp``. A registered solver of its own
may name another family; nothing but its ``run`` and ``dense`` functions depends on it."""

JACOBIAN_LAYOUTS = ("odeint", "vode", "solve_ivp")
"""How the scipy API behind a method wants the Jacobian. ``"odeint"``: ``Dfun(y, t)`` with rows
``J[i, :]``, or scipy's band ``band[mu + i - j, j] = J[i, j]`` when ``ml``/``mu`` are given;
``"vode"``: ``jac(t, y)``, which scipy 1.17.x hands VODE transposed (gh-24933, detected by
:func:`odegrad.solvers.vode_reads_jacobian_transposed`); ``"solve_ivp"``: ``jac(t, y)`` (dense or
sparse) and scipy's ``jac_sparsity``, ``lband``, ``uband`` keywords. Every ``run`` function takes
the full ``jac(y, t)`` and converts it to its layout; the ``solve_ivp`` door passes scipy's own
Jacobian keywords (:class:`odegrad.solvers.IvpJacobian`) only to methods of layout ``"solve_ivp"``."""

DIRECTIONS = frozenset({"forward", "backward"})
"""Time directions: ``"forward"`` (``t`` increasing) and ``"backward"`` (decreasing). The adjoint
solves backwards in time, forward sensitivities forwards."""

DOORS = frozenset({"odeint", "solve_ivp"})
"""Front doors that may accept a method as ``method``: :func:`odegrad.odeint` (and
``odegrad.tf.odeint``), and :func:`odegrad.solve_ivp`. Every registered method may be the
``adjoint_method`` of either door: the derived solves all go through :func:`odegrad.solvers.solve`."""

ODEINT_OPTIONS = frozenset({"ml", "mu", "tcrit", "ixpr", "mxhnil", "mxordn", "mxords", "printmessg",
                            "h0", "hmax", "hmin", "mxstep", "full_output"})
"""The options, in ``scipy.integrate.odeint``'s vocabulary, that a method may take. ``h0``,
``hmax``, ``hmin`` and ``mxstep`` are the fields of :class:`odegrad.solvers.SolverOptions` (the
``solve_ivp`` methods read ``h0``, ``hmax``, ``hmin`` as ``first_step``, ``max_step``,
``min_step``); ``full_output`` means that the solve returns scipy's ``infodict``."""


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """What odegrad knows about one method: everything that depends on the method reads it here.

    Attributes
    ----------
    name : str
        The ``method`` string (case-sensitive: ``"bdf"`` is VODE's BDF, ``"BDF"`` scipy's Python one).
    family : str
        The scipy API that steps it (one of :data:`FAMILIES`), or a name of the solver's own.
    stiff : bool
        Whether the method is asked for because the problem is stiff: ``adjoint="auto"`` treats
        its solves as stiff (LSODA is not: it is stiff where it switched to BDF).
    takes_jacobian : bool
        Whether its Newton iterations use a Jacobian unless given none (it then builds one by
        finite differences): derived solves get an exact one by default.
    jacobian_layout : str or None
        One of :data:`JACOBIAN_LAYOUTS`: how it reads a Jacobian given to it; ``None`` where it
        ignores one. Set for every method that takes a Jacobian, and for VODE's Adams, which
        wants none (functional iteration) but iterates with Newton on one that is given.
    directions : frozenset of str
        The time directions (:data:`DIRECTIONS`) it solves in.
    options : frozenset of str
        Which of :data:`ODEINT_OPTIONS` it takes; the doors refuse the others.
    doors : frozenset of str
        The front doors (:data:`DOORS`) that accept it as ``method``.
    reentrant : bool
        ``False`` for the Fortran codes (LSODA, VODE): their state lives in common blocks, so their
        solves take turns across threads and may not nest, and their callbacks return NaNs
        instead of raising through Fortran.
    run : callable
        ``run(fun, y0, t, opts, jac) -> (ys, stats)``: the states at the monotonic output times
        ``t`` (``t[0] != t[-1]``; ``ys[0] == y0``) and a :class:`odegrad.solvers.SolveStats`.
        ``fun(y, t)`` is the guarded dynamics: it counts its calls in ``fun.nfe`` and keeps the
        first exception or non-finite value in ``fun.error`` (returning NaNs from then on), which
        :func:`odegrad.solvers.solve` raises after ``run`` returns. ``opts`` is a
        :class:`odegrad.solvers.SolverOptions`; ``jac`` is ``None``, ``jac(y, t) -> J`` (the full
        Jacobian) or, from the ``solve_ivp`` door, an :class:`odegrad.solvers.IvpJacobian`.
    dense : callable or None
        ``dense(fun, y0, t_start, t_end, opts, jac) -> (y_of_t, stats)``: a dense interpolant of
        one solve (the interpolating adjoint reads it); ``None`` when the method has none.
    ivp_solver : type or None
        The ``scipy.integrate.OdeSolver`` subclass that steps it, for the ``solve_ivp`` door (scipy's
        own solve finds events, step times and ``sol``); ``None`` for methods scipy's
        ``solve_ivp`` cannot run.

    Raises
    ------
    ValueError
        For an inconsistent record: an empty name, unknown directions, doors, options or
        Jacobian layout, ``takes_jacobian`` without a layout, the ``solve_ivp`` door without
        ``ivp_solver``.
    """

    name: str
    family: str
    stiff: bool
    takes_jacobian: bool
    jacobian_layout: str | None
    directions: frozenset
    options: frozenset
    doors: frozenset
    reentrant: bool
    run: Callable
    dense: Callable | None = None
    ivp_solver: type | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        if not self.directions or not set(self.directions) <= DIRECTIONS:
            problems.append(f"directions must be a non-empty subset of {sorted(DIRECTIONS)}, got {self.directions!r}")
        if not set(self.doors) <= DOORS:
            problems.append(f"doors must be a subset of {sorted(DOORS)}, got {self.doors!r}")
        if not set(self.options) <= ODEINT_OPTIONS:
            problems.append(f"options {sorted(set(self.options) - ODEINT_OPTIONS)} are not among {sorted(ODEINT_OPTIONS)}")
        if self.jacobian_layout not in (None, *JACOBIAN_LAYOUTS) or (self.takes_jacobian and self.jacobian_layout is None):
            problems.append(f"jacobian_layout must be one of {JACOBIAN_LAYOUTS} (or None for a method that ignores a "
                            f"Jacobian), got {self.jacobian_layout!r} with takes_jacobian={self.takes_jacobian}")
        if "solve_ivp" in self.doors and self.ivp_solver is None:
            problems.append("the solve_ivp door needs ivp_solver (the scipy.integrate.OdeSolver subclass)")
        if not callable(self.run) or (self.dense is not None and not callable(self.dense)):
            problems.append("run (and dense, where given) must be callable")
        if problems:
            raise ValueError(f"SolverSpec {self.name!r} is inconsistent: " + "; ".join(problems))

    @property
    def dense_output(self) -> bool:
        """Whether the method gives a dense interpolant (:attr:`dense` is set)."""
        return self.dense is not None


SOLVERS: dict[str, SolverSpec] = {}
"""Every registered method by name, in registration order. Change it through
:func:`register_solver` and :func:`unregister_solver` only."""


def register_solver(spec: SolverSpec, *, replace: bool = False) -> SolverSpec:
    """Register ``spec`` under ``spec.name`` and return it.

    Parameters
    ----------
    spec : SolverSpec
        The record.
    replace : bool, optional
        Allow replacing a registered record of the same name.

    Returns
    -------
    SolverSpec
        ``spec``.

    Raises
    ------
    TypeError
        If ``spec`` is not a :class:`SolverSpec`.
    ValueError
        If the name is taken and ``replace`` is False.
    """
    if not isinstance(spec, SolverSpec):
        raise TypeError(f"register_solver takes a SolverSpec, got {type(spec).__name__}")
    if spec.name in SOLVERS and not replace:
        raise ValueError(f"a solver named {spec.name!r} is registered already; pass replace=True to replace it, "
                         "or choose another name")
    SOLVERS[spec.name] = spec
    return spec


def unregister_solver(name: str) -> SolverSpec:
    """Remove the method ``name`` from the registry and return its record.

    Raises
    ------
    ValueError
        If no method of that name is registered.
    """
    solver(name)
    return SOLVERS.pop(name)


def solver(name: str, what: str = "method") -> SolverSpec:
    """The record of the method ``name``.

    Parameters
    ----------
    name : str
        A registered method.
    what : str, optional
        The argument's name in the error message.

    Returns
    -------
    SolverSpec

    Raises
    ------
    ValueError
        For an unregistered method; the message names the registered ones.
    """
    spec = SOLVERS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"{what} must be one of {tuple(SOLVERS)}, got {name!r}")
    return spec


def methods(door: str | None = None, where: Callable[[SolverSpec], bool] | None = None) -> tuple[str, ...]:
    """The registered methods, in registration order.

    Parameters
    ----------
    door : str, optional
        Only those that this front door (:data:`DOORS`) accepts.
    where : callable, optional
        Only those whose record passes ``where(spec)``.

    Returns
    -------
    tuple of str
    """
    return tuple(name for name, spec in SOLVERS.items()
                 if (door is None or door in spec.doors) and (where is None or where(spec)))


def either(names: Sequence[str]) -> str:
    """``names`` quoted for a message: ``'a', 'b' or 'c'`` (``no registered method`` for none)."""
    quoted = [repr(name) for name in names]
    if len(quoted) < 2:
        return quoted[0] if quoted else "no registered method"
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"
