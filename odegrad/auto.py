"""The cost model behind ``adjoint="auto"``: forward sensitivities or the adjoint, per solve.

The method itself, with every fallback (retries after a drifted or failed backward solve, the switch
to forward sensitivities on a second cotangent), is :mod:`odegrad.methods.auto`.

Both methods pay autograd work at every evaluation of their dynamics, and that work dominates
(``python -m benchmarks.profile``): one trace of ``f`` and one backward pass through it per
evaluation of the adjoint (:func:`odegrad.adjoint.backward`), one trace and one vectorised
backward pass carrying all ``n`` rows of the Jacobian per evaluation of the forward
sensitivities (:mod:`odegrad.sensitivity`, :mod:`odegrad.jacobian`), each row adding
``ROW_COST`` to it. What differs most is how many evaluations each needs:

* forward sensitivities solve ``n (1 + q)`` entries once over all output times (``q``: the
  columns differentiated, ``n`` for ``y0``, one for ``t_0``, one per parameter), taking
  ``FORWARD_EVALUATIONS`` times the forward solve's evaluations, and one solve serves every
  cotangent (all rows of a Jacobian or Hessian);
* the adjoint takes ``ADJOINT_EVALUATIONS`` times the forward evaluations plus a restart per
  output interval, each costing :func:`restart_evaluations` while the multistep method builds
  its order up again (more at tight tolerances), and runs again for every cotangent.

:func:`choose` estimates both costs in traces (a backward pass costing ``PASS_COST`` of a trace)
and takes the cheaper, forward sensitivities only while LSODA's work arrays for their state fit
in ``FORWARD_MAX_BYTES`` (LSODA keeps a dense ``size × size`` matrix for its stiff phase). So
small states with many outputs get forward sensitivities and wide states (neural ODEs) the
paper's adjoint: the trade SciMLSensitivity's default makes from the numbers of states and
parameters. The constants were fitted to the gradient times and evaluation counts of the
benchmark problems (``benchmarks.cases`` and the
README Quickstart, rtol 1e-4 to 1e-10).

With compiled derivative evaluations (:mod:`odegrad.compiled`, JAX installed) an evaluation of
either method's dynamics is one XLA call (and, one evaluation in ``GUARD_EVERY``, a direct
evaluation of ``f`` as its check) whose cost hardly grows with the rows of a small Jacobian, so
forward sensitivities gain at least as much as the adjoint and every choice above stands; the
constants stay those measured with autograd's evaluations, which a process uses until a
structure of ``f`` is compiled (``python -m benchmarks.peers --problems kinetics spiral-mlp --impls
odegrad:lsoda odegrad:lsoda+checkpoint`` compares the two choices; results in ``benchmarks/results_peers.md``).

Stiffness (LSODA switched to BDF in the forward solve, or ``method="bdf"``) rules out solving
``y`` backwards: then forward sensitivities with the exact Jacobian of their dynamics while that
Jacobian is small (``MAX_AUTO_JACOBIAN_SIZE`` entries per side), else the interpolating adjoint
for first derivatives, else (higher derivatives of a wide stiff problem) the checkpoint adjoint,
whose failure raises an error that says so.
"""

from __future__ import annotations

import math

FORWARD_EVALUATIONS = 1.25
"""Evaluations of the forward-sensitivity solve per evaluation of the forward solve (measured
1.0-1.6)."""

ADJOINT_EVALUATIONS = 1.25
"""Evaluations of the adjoint per evaluation of the forward solve, restarts aside (1.1-1.35)."""

PASS_COST = 0.25
"""Cost of one backward pass through ``f`` in traces of ``f`` (0.1-2 on the problems measured:
small where the trace's bookkeeping dominates, large for matrix products)."""

ROW_COST = 0.02
"""Cost of each row of the vectorised backward pass after the first, relative to one trace and
one pass (measured 0.004-0.015 on tanh MLPs with 2 and 8 states and 160-550 parameters: the
rows share the pass's bookkeeping and add only their arithmetic)."""

FORWARD_MAX_BYTES = 256 * 2 ** 20
"""Largest LSODA work array (:func:`lsoda_work_bytes`) of a forward-sensitivity solve in ``auto``: a
memory guard, not a cost (the costs decide below it). A state of 5,700 entries fits. (A fixed cap
on the state's size made ``auto`` take the far costlier adjoint on small states with many outputs.)"""


def lsoda_work_bytes(size: int) -> int:
    """Bytes of the real work array scipy's LSODA allocates for a state of ``size`` entries
    (``22 + 9 size + size²`` doubles: room for the dense Jacobian of its stiff phase)."""
    return 8 * (22 + 9 * size + size * size)

DRIFT_FACTOR = 100.0
"""How far ``auto``'s adjoint may let the ``y`` rebuilt backwards over an interval end from the
stored forward state (in error weights, :func:`odegrad.adjoint.backward`) before it retries with
forward sensitivities or the interpolating adjoint, which do not rebuild ``y``. Stricter than an
explicit mode's :data:`odegrad.adjoint.DRIFT_FACTORS`: the retry is correct, so ``auto`` need not
trust a drift whose effect on the gradient it cannot bound."""

MAX_AUTO_JACOBIAN_SIZE = 200
"""Largest derived state (augmented or sensitivity) that gets autograd's exact Jacobian by default."""


def restart_evaluations(rtol: float) -> float:
    """Evaluations one restarted backward interval costs the adjoint at relative tolerance ``rtol``.

    Measured on Lotka-Volterra, kinetics, spiral-mlp and mlp-64: about 10 at 1e-4, 20 at 1e-6,
    35 at 1e-8 and 50 at 1e-10, seven more per decade.
    """
    digits = -math.log10(max(float(rtol), 1e-300))
    return max(5.0, 7.0 * (digits - 2.5))


def forward_cost(n: int, nfe: int) -> float:
    """Estimated cost of forward sensitivities, in traces of ``f``."""
    return FORWARD_EVALUATIONS * nfe * (1.0 + PASS_COST) * (1.0 + ROW_COST * (n - 1))


def adjoint_cost(nfe: int, n_intervals: int, rtol: float) -> float:
    """Estimated cost of one adjoint VJP, in traces of ``f``."""
    evaluations = ADJOINT_EVALUATIONS * nfe + restart_evaluations(rtol) * n_intervals
    return (1.0 + PASS_COST) * evaluations


def forward_fits(n: int, columns: int, stiff: bool) -> bool:
    """Whether forward sensitivities are affordable at all for this solve."""
    size = n * (1 + columns)
    if stiff:
        return size <= MAX_AUTO_JACOBIAN_SIZE
    return lsoda_work_bytes(size) <= FORWARD_MAX_BYTES


FORWARD_PASS_NFE = 1000
"""Evaluations :func:`forward_in_forward_pass` assumes of a forward solve it has not seen (the
benchmark problems and the README Quickstart take 50-1,100 per solve)."""


WIDE_BACKWARD_STATE = 4096
"""Entries of the checkpoint adjoint's backward state ``[y, a, a_t, a_θ]`` from which ``auto`` solves it
with VODE's Adams method (:func:`backward_method`)."""


def backward_method(forward_method: str, stiff: bool, adjoint_method: str | None, backward_size: int) -> str | None:
    """The method of ``auto``'s checkpoint adjoint's backward solves, or ``None`` for the default
    (``adjoint_method``, else the forward method).

    ``"adams"`` where the forward solve was LSODA, it stayed non-stiff (no switch to BDF), no
    ``adjoint_method`` was given and the backward state is wide (:data:`WIDE_BACKWARD_STATE`): LSODA
    in its Adams phase and VODE's Adams method are the same family of methods, and on wide states
    LSODA's own work per step costs more (mlp-64, 33,217 backward entries: 102 evaluations in 0.065 s
    against VODE's 93 in 0.046 s, ``python -m benchmarks.peers --problems mlp-64``). A backward solve
    that turns stiff fails VODE's Adams within ``mxstep`` steps, and ``auto`` retries it as after any
    failed backward solve.
    """
    if adjoint_method is not None or stiff or forward_method != "lsoda" or backward_size < WIDE_BACKWARD_STATE:
        return None
    return "adams"


def forward_in_forward_pass(n: int, columns: int, n_intervals: int, rtol: float) -> bool:
    """Whether ``auto`` has the forward pass solve ``y`` with its forward sensitivities.

    Decided before the forward solve, so without its evaluation count and stiffness: yes where
    :func:`choose` takes forward sensitivities of a non-stiff solve, at :data:`FORWARD_PASS_NFE`
    evaluations. The gradient then runs no solve (the forward pass's ``y`` and ``S`` come from
    one solve of ``n (1 + columns)`` entries), which costs less than the forward solve plus the
    sensitivity solve that ``choose`` would have run, and less than a forward solve plus an
    adjoint wherever ``choose`` prefers sensitivities. A sensitivity system too large for a
    stiff solve (``forward_fits(..., stiff=True)`` false) is solved only until the solver asks
    for a Jacobian (:meth:`odegrad.methods.auto.Auto.sensitivities_in_forward_if_stiff`): a stiff
    problem then pays the abandoned part (at most its non-stiff phase) and gets ``choose``'s
    stiff choice.
    """
    if not forward_fits(n, columns, stiff=False):
        return False
    return choose(n=n, columns=columns, n_intervals=n_intervals, nfe=FORWARD_PASS_NFE, rtol=rtol,
                  stiff=False, higher_order=False) == "forward"


def choose(*, n: int, columns: int, n_intervals: int, nfe: int, rtol: float, stiff: bool,
           higher_order: bool, derived: bool = False) -> str:
    """The gradient method ``adjoint="auto"`` uses for one solve.

    Parameters
    ----------
    n : int
        Entries of the state.
    columns : int
        Sensitivity columns ``q`` of what is differentiated (``n`` for ``y0``, one for the
        initial time, one per parameter).
    n_intervals : int
        Output intervals (output times minus one, checkpoints included).
    nfe : int
        Evaluations the forward solve took (0 if unknown).
    rtol : float
        Relative tolerance of the backward (or sensitivity) solves.
    stiff : bool
        Whether the forward solve was stiff (LSODA switched to BDF, or ``method="bdf"``).
    higher_order : bool
        Whether this gradient is itself differentiated (Hessians, grad-of-grad, forward mode
        over it): the interpolating adjoint gives first derivatives only.
    derived : bool
        Whether the solve is itself part of a gradient (an adjoint or sensitivity solve being
        differentiated for a second derivative). Its dynamics hold a trace of ``f`` already, so
        tracing them costs far more than a backward pass through them: forward sensitivities
        then cost about one adjoint run (measured on the README's Lotka-Volterra Hessian) and
        serve every row of a Hessian, so they are taken whenever they fit.

    Returns
    -------
    {"forward", "checkpoint", "interpolate"}

    Notes
    -----
    The method (:class:`odegrad.methods.auto.Auto`) also switches a solve from the adjoint to forward
    sensitivities when its VJP is asked for a second cotangent (a Jacobian or Hessian row by row) and forward sensitivities
    fit: one sensitivity solve then serves that and every later cotangent.
    """
    if stiff:
        if forward_fits(n, columns, stiff=True):
            return "forward"
        return "checkpoint" if higher_order else "interpolate"
    if not forward_fits(n, columns, stiff=False):
        return "checkpoint"
    nfe = max(nfe, 1)
    if derived or forward_cost(n, nfe) <= adjoint_cost(nfe, n_intervals, rtol):
        return "forward"
    return "checkpoint"
