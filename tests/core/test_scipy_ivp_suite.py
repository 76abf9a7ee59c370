"""scipy's own ``solve_ivp`` test suite, run against :func:`odegrad.solve_ivp`.

``scipy/integrate/_ivp/tests/test_ivp.py`` is loaded from the installed scipy at test time, twice:

* ``plain``: its ``solve_ivp`` replaced by ``odegrad.solve_ivp`` as it is, so plain numpy inputs
  take odegrad's front door (which must hand them to scipy unchanged);
* ``traced``: replaced by a wrapper that gives ``odegrad.solve_ivp`` an initial state autograd is
  tracing and returns the plain values of the result, so every test also runs odegrad's
  differentiable path (scipy's solve for the events and steps, the primitive's solve at the
  output times, the event times by the implicit function theorem, ``sol`` solved again).

Every test function of scipy's module runs in both modes, as ``test_plain_<name>`` and
``test_traced_<name>``; the ``num_parallel_threads`` fixture scipy's conftest provides is supplied
by ``tests/core/conftest.py`` (one thread), which also registers scipy's ``thread_unsafe`` and
``fail_slow`` marks. scipy's ``slow`` test (``test_integration_stiff``) stays marked slow. Skipped, each with its reason:

* ``traced`` ``test_integration_complex``: the differentiable path integrates real states only
  and refuses a complex ``y0`` with a clear error (checked in :mod:`tests.core.test_ivp`);
* ``traced`` ``test_empty``: an empty state has nothing to differentiate; the differentiable
  path refuses it with a clear error;
* ``traced`` ``test_duplicate_timestamps``: it evaluates ``sol(0.01)`` after the terminal event
  at t = 0.0020, where scipy's ``sol`` extrapolates the last step's polynomial; the
  differentiable ``sol`` is defined on the solved interval only and says so;
* tests that never call ``solve_ivp`` (scipy's solver classes, ``OdeSolution``, ``num_jac``)
  run only in the ``plain`` mode, where they are scipy's.
"""

from __future__ import annotations

import importlib.util
import inspect
import os

import numpy as np
import pytest
import scipy.integrate
from autograd.core import VJPNode
from autograd.tracer import getval, new_box, trace_stack

import odegrad

_PATH = os.path.join(os.path.dirname(scipy.integrate.__file__), "_ivp", "tests", "test_ivp.py")

_TRACED_SKIPS = {
    "test_duplicate_timestamps": "calls sol(0.01) after the terminal event at t = 0.0020: scipy's sol extrapolates, "
                                 "the differentiable sol is defined on the solved interval only (clear ValueError)",
    "test_integration_complex": "complex states are refused by the differentiable path (clear ValueError)",
    "test_empty": "an empty state is refused by the differentiable path (clear ValueError)",
}


def _load(solve_ivp):
    spec = importlib.util.spec_from_file_location("scipy_ivp_suite", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.solve_ivp = solve_ivp
    return module


def _plain_values(value):
    if isinstance(value, list):
        return [_plain_values(v) for v in value]
    return getval(value)


class _PlainSolution:
    """``sol`` of the traced run with its outputs unboxed (the test reads plain arrays)."""

    def __init__(self, sol):
        self.sol = sol

    def __call__(self, t):
        return getval(self.sol(t))


def traced_solve_ivp(fun, t_span, y0, *args, **kwargs):
    """``odegrad.solve_ivp`` with ``y0`` traced by autograd, returning plain values."""
    with trace_stack.new_trace() as trace_id:
        box = new_box(np.asarray(y0, dtype=float), trace_id, VJPNode.new_root())
        result = odegrad.solve_ivp(fun, t_span, box, *args, **kwargs)
        for key in ("t", "y", "t_events", "y_events"):
            result[key] = _plain_values(result[key])
        if result.sol is not None:
            result.sol = _PlainSolution(result.sol)
    return result


def _calls_solve_ivp(function) -> bool:
    return "solve_ivp" in inspect.getsource(function)


_MODULES = {"plain": _load(odegrad.solve_ivp), "traced": _load(traced_solve_ivp)}


def _bind() -> None:
    """Each test function of scipy's module, once per mode, as a test of this module.

    The functions keep scipy's own marks (``parametrize``, ``slow``); pytest collects them here.
    """
    for mode, module in _MODULES.items():
        for name in sorted(dir(module)):
            function = getattr(module, name)
            if not name.startswith("test_") or not inspect.isfunction(function):
                continue
            if mode == "traced" and not _calls_solve_ivp(function):
                continue
            if mode == "traced" and name in _TRACED_SKIPS:
                function = pytest.mark.skip(reason=_TRACED_SKIPS[name])(function)
            globals()[f"test_{mode}_{name[len('test_'):]}"] = function


_bind()
