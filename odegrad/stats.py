"""Solver statistics of ``odeint`` calls: forward and backward NFE without wrapping ``func``."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Iterator

from .solvers import SolveStats


@dataclasses.dataclass
class SolveInfo:
    """What one ``odeint`` call cost.

    Attributes
    ----------
    forward : SolveStats
        The forward solve.
    backward : SolveStats
        All gradient solves (adjoint, or forward sensitivities solved after the forward pass) run
        for this call so far, added up: it is filled in when a gradient is taken, and grows with
        every further gradient or higher-order derivative (see ``sensitivities_in_forward``).
    gradient_methods : list of str
        The gradient method run for this call so far, in order: one entry per adjoint run
        (``"checkpoint"``, ``"interpolate"``, ``"backsolve"``; one run per cotangent) and one per
        forward-sensitivity solve (``"forward"``, which serves every cotangent). This is where
        to see what ``adjoint="auto"`` picked.
    derivatives : str or None
        How the gradient solves evaluated the derivatives of ``func`` (:mod:`odegrad.compiled`):
        ``"jax"`` (compiled by XLA) or ``"autograd"``; ``None`` before any was evaluated.
    derivatives_note : str or None
        Why they are ``"autograd"`` (JAX not installed, a primitive without a JAX counterpart,
        ``func`` branching on values, ...); for ``"jax"``, ``None``, or why the derivatives of the
        gradient's own solves (second derivatives: Hessians, grad-of-grad) are autograd's, or that a
        solve was repeated with every compiled evaluation checked (:func:`odegrad.compiled.checked_solve`).
    sensitivities_in_forward : bool
        Whether the forward solve carried ``y``'s forward sensitivities (the gradient method asked
        for them before the solve: ``adjoint="forward"``, and ``"auto"`` where it expects to pick
        them): ``forward`` then counts the evaluations of the sensitivity dynamics, ``y`` comes
        from that solve, and a first derivative adds no backward work.
    """

    forward: SolveStats
    backward: SolveStats
    gradient_methods: list[str] = dataclasses.field(default_factory=list)
    derivatives: str | None = None
    derivatives_note: str | None = None
    sensitivities_in_forward: bool = False

    def record(self, stage: str, stats: SolveStats) -> None:
        """Add the statistics of one solve to ``stage`` (``"forward"`` or ``"backward"``)."""
        if stage == "forward":
            self.forward.add(stats)
        elif stage == "backward":
            self.backward.add(stats)
        else:
            raise ValueError(f"stage must be 'forward' or 'backward', got {stage!r}")

    def restart(self) -> None:
        """Zero both counts: a compiled TF graph runs the solve of one ``odeint`` call anew each
        time it executes, and each execution is counted on its own."""
        self.forward = SolveStats(method=self.forward.method)
        self.backward = SolveStats(method=self.backward.method)
        self.gradient_methods = []


@dataclasses.dataclass
class Recorder:
    """Collects the :class:`SolveInfo` of every ``odeint`` call made inside :func:`record_stats`."""

    calls: list[SolveInfo] = dataclasses.field(default_factory=list)

    def _total(self, role: str) -> SolveStats:
        total = SolveStats(method=self.calls[0].forward.method if self.calls else "")
        for info in self.calls:
            total.add(getattr(info, role))
        return total

    @property
    def forward(self) -> SolveStats:
        """Forward statistics added up over all recorded calls."""
        return self._total("forward")

    @property
    def backward(self) -> SolveStats:
        """Backward (adjoint) statistics added up over all recorded calls."""
        return self._total("backward")

    @property
    def gradient_methods(self) -> list[str]:
        """The gradient methods run, over all recorded calls in order (see :class:`SolveInfo`)."""
        return [method for info in self.calls for method in info.gradient_methods]


_recorders: list[Recorder] = []
"""The open recorders, in the order they were opened, of every thread."""
_recorders_lock = threading.Lock()


@contextlib.contextmanager
def record_stats() -> Iterator[Recorder]:
    """Record the solver statistics of every ``odeint`` call made while the block is open.

    Calls are recorded wherever they run: in the block's own thread, and in threads it starts or
    that run meanwhile (Keras and ``tf.distribute`` replicas, worker pools); two blocks open at the
    same time in two threads both see the calls of both. Nested blocks each record the calls made
    inside them.

    Examples
    --------
    >>> with record_stats() as rec:                       # doctest: +SKIP
    ...     g = grad(loss)(params)
    >>> rec.forward.nfe, rec.backward.nfe                 # doctest: +SKIP
    """
    recorder = Recorder()
    with _recorders_lock:
        _recorders.append(recorder)
    try:
        yield recorder
    finally:
        with _recorders_lock:
            _recorders.remove(recorder)


def new_info(method: str, adjoint_method: str) -> SolveInfo:
    """Create the :class:`SolveInfo` of one ``odeint`` call and register it with open recorders."""
    info = SolveInfo(forward=SolveStats(method=method), backward=SolveStats(method=adjoint_method))
    with _recorders_lock:
        for recorder in _recorders:
            recorder.calls.append(info)
    return info
