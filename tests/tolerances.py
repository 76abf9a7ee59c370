"""Tolerances of the odegrad test suite (the checks themselves are odegrad.gradcheck's public
functions: ``central_differences``, ``relative_error``, ``check_grad``, ``taylor_test``).

Tolerance policy (used throughout, stated once here)
----------------------------------------------------
LSODA/VODE control the *local* error per step to ``rtol*|y| + atol``; the global error of a
well-conditioned problem over O(1) time spans is then a small multiple (10-100x) of the local
tolerance. The adjoint solves run at the same tolerances, so an adjoint gradient computed with
``rtol = atol = 1e-10`` carries a relative error of roughly 1e-9..1e-8. We compare such gradients
with exact closed forms at ``GRAD_RTOL = 1e-6`` relative, i.e. with a 100x safety margin.

Finite differences (FD) add truncation error O(h^2) (central differences) and a noise term
``eps_solver / h`` because the solver's error is not a smooth function of the parameters. With
the forward solve at ``FD_SOLVE_TOL = 1e-12`` and ``h = 1e-4`` the noise is ~1e-8 and truncation
~1e-8, so FD comparisons use ``FD_RTOL = 1e-5``. Hessians are FD of the (adjoint) gradient, whose
own error is ~1e-9..1e-8 at ``1e-10`` tolerances, giving ``1e-8/1e-4 = 1e-4`` noise: Hessians are
compared at ``HESS_RTOL = 1e-4`` against FD and at ``GRAD_RTOL``-like levels against closed forms.
"""

TOL = 1e-10          # forward/adjoint solver tolerance for closed-form comparisons
GRAD_RTOL = 1e-6     # gradient vs closed form at TOL
FD_SOLVE_TOL = 1e-12  # solver tolerance when differencing solver outputs
FD_RTOL = 1e-5       # gradient vs central FD
HESS_RTOL = 1e-4     # Hessian vs FD of gradient
FD = {"step": 1e-4, "fd_order": 2}  # odegrad.gradcheck.central_differences(fun, x, **FD): what FD_RTOL and HESS_RTOL assume
