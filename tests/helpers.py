"""Shared numerical helpers and tolerances of the odegrad test suite.

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

from __future__ import annotations

import numpy as onp

TOL = 1e-10          # forward/adjoint solver tolerance for closed-form comparisons
GRAD_RTOL = 1e-6     # gradient vs closed form at TOL
FD_SOLVE_TOL = 1e-12  # solver tolerance when differencing solver outputs
FD_RTOL = 1e-5       # gradient vs central FD
HESS_RTOL = 1e-4     # Hessian vs FD of gradient

def rel_err(a, b, floor: float = 1e-300) -> float:
    """max |a-b| / max(|b|) — relative to the size of the reference as a whole."""
    a = onp.asarray(a, dtype=float)
    b = onp.asarray(b, dtype=float)
    return float(onp.max(onp.abs(a - b)) / max(float(onp.max(onp.abs(b))), floor))


def central_fd(fun, x, h: float = 1e-4):
    """Central-difference gradient of a scalar ``fun`` at the float array ``x``."""
    x = onp.asarray(x, dtype=float)
    g = onp.zeros_like(x)
    flat = g.reshape(-1)
    for k in range(x.size):
        e = onp.zeros(x.size)
        e[k] = h
        e = e.reshape(x.shape)
        flat[k] = (fun(x + e) - fun(x - e)) / (2 * h)
    return g


def central_fd_jac(fun, x, h: float = 1e-4):
    """Central-difference Jacobian ``d fun(x) / dx`` shaped ``fun(x).shape + x.shape``."""
    x = onp.asarray(x, dtype=float)
    out0 = onp.asarray(fun(x))
    jac = onp.zeros(out0.shape + (x.size,))
    for k in range(x.size):
        e = onp.zeros(x.size)
        e[k] = h
        e = e.reshape(x.shape)
        jac[..., k] = (onp.asarray(fun(x + e)) - onp.asarray(fun(x - e))) / (2 * h)
    return jac.reshape(out0.shape + x.shape)


def taylor_remainders(loss, grad_value, theta, direction, hs):
    """|L(θ+hv) − L(θ) − h ∇L·v| for each h."""
    base = loss(theta)
    slope = float(onp.sum(onp.asarray(grad_value) * direction))
    return onp.array([abs(loss(theta + h * direction) - base - h * slope) for h in hs])


def loglog_slope(hs, values) -> float:
    return float(onp.polyfit(onp.log(hs), onp.log(values), 1)[0])
