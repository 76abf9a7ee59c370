"""Shared fixtures and helpers for the odegrad test-suite.

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
import pytest

TOL = 1e-10          # forward/adjoint solver tolerance for closed-form comparisons
GRAD_RTOL = 1e-6     # gradient vs closed form at TOL
FD_SOLVE_TOL = 1e-12  # solver tolerance when differencing solver outputs
FD_RTOL = 1e-5       # gradient vs central FD
HESS_RTOL = 1e-4     # Hessian vs FD of gradient

# Largest error seen per category, printed at the end of the run (for the closing note).
_MAX_ERRORS: dict[str, float] = {}


def _record(category: str, value: float) -> None:
    value = float(value)
    if category not in _MAX_ERRORS or value > _MAX_ERRORS[category]:
        _MAX_ERRORS[category] = value


@pytest.fixture
def record_error():
    """``record_error(category, err)`` keeps the maximum error observed per category."""
    return _record


def pytest_terminal_summary(terminalreporter):
    if _MAX_ERRORS:
        terminalreporter.write_sep("-", "odegrad: maximum observed errors per category")
        for key in sorted(_MAX_ERRORS):
            terminalreporter.write_line(f"{key:60s} {_MAX_ERRORS[key]:.3e}")


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


def lin_exact_grads(A, y0, t, G):
    """Exact gradients of ``L = Σ_i G_i · expm(A (t_i - t_0)) y0`` w.r.t. ``A``, ``y0`` and ``t``.

    ``∂/∂A`` from the Fréchet derivative of the matrix exponential (scipy.linalg.expm_frechet),
    ``∂/∂y0 = Σ_i expm(A τ_i)^T G_i``, ``∂/∂t_i = G_i · A y(t_i)`` and ``∂/∂t_0 = -Σ_{i>0} ∂/∂t_i``.
    """
    import scipy.linalg

    A = onp.asarray(A, dtype=float)
    y0 = onp.asarray(y0, dtype=float)
    t = onp.asarray(t, dtype=float)
    gA = onp.zeros_like(A)
    gy0 = onp.array(G[0], dtype=float)
    gt = onp.zeros_like(t)
    for i in range(1, len(t)):
        tau = t[i] - t[0]
        E = scipy.linalg.expm(A * tau)
        gy0 = gy0 + E.T @ G[i]
        for j in range(A.shape[0]):
            for k in range(A.shape[1]):
                D = onp.zeros_like(A)
                D[j, k] = tau
                gA[j, k] += G[i] @ scipy.linalg.expm_frechet(A * tau, D, compute_expm=False) @ y0
        dydt = A @ E @ y0
        gt[i] += G[i] @ dydt
        gt[0] -= G[i] @ dydt
    return gA, gy0, gt
