"""Numerical checks of first and second derivatives computed by autograd.

Three checks apply to any scalar function ``fun(x)`` that autograd can
differentiate:

* :func:`check_grad` compares directional derivatives ``grad(fun)(x) . v``
  with central finite differences, along every coordinate (for small ``x``)
  and along random unit directions.
* :func:`taylor_test` checks that the first-order Taylor remainder
  ``|L(x + h v) - L(x) - h grad L(x) . v|`` falls as ``h**2``; a wrong
  gradient leaves a remainder that falls only as ``h``.
* :func:`check_hessian` compares Hessian-vector products with central
  differences of the gradient and checks that the second-order Taylor
  remainder falls as ``h**3``.

Each returns a :class:`CheckResult` (or :class:`TaylorResult`) with a
``passed`` flag and a readable ``str()`` report. Their two measurements are
public for comparisons with other references (closed forms, other solvers):
:func:`central_differences` (the derivative of any array-valued function along
every coordinate) and :func:`relative_error`.

:mod:`odegrad.gradcheck.problems` holds the ODE problems of the suite, of
odegrad's tests and of its benchmarks, each written once: dynamics, nominal
values, tolerance hints and closed forms.

Running ``python -m odegrad.gradcheck`` checks the gradients of
:func:`odegrad.odeint` (with respect to the initial state, the parameters and
every output time, plus Hessian-vector products) and of :func:`odegrad.solve_ivp` (every method,
and an event time) on the suite of checks in :mod:`odegrad.gradcheck.suite` and prints a table.
"""

from .checks import (
    CheckResult,
    TaylorResult,
    central_differences,
    check_grad,
    check_hessian,
    relative_error,
    taylor_test,
)
from .suite import PROBLEMS, SuiteEntry, SuiteRow, main, run_suite

__all__ = [
    "CheckResult",
    "TaylorResult",
    "check_grad",
    "taylor_test",
    "check_hessian",
    "central_differences",
    "relative_error",
    "SuiteEntry",
    "SuiteRow",
    "PROBLEMS",
    "run_suite",
    "main",
]
