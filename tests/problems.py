"""The test problems of the odegrad suite, each defined once.

Dynamics follow ``odeint``'s ``func(y, t, *args)`` convention and are written with
``autograd.numpy`` so that they can be differentiated. Reference solutions come from closed forms
or from solvers independent of the adjoint (scipy's Radau on the forward sensitivity equations).
"""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import scipy.integrate
import scipy.linalg

from odegrad.solvers import METHODS  # noqa: F401  (re-exported: the methods every test runs)

# --- decay and linear systems ----------------------------------------------------------------

def decay(y, t, k):
    """``y' = -k y``: ``y(t) = y0 exp(-k t)``."""
    return -k * y


def linear(y, t, A):
    """``y' = A y``: ``y(t) = expm(A (t - t0)) y0``."""
    return np.dot(A, y)


def linear_solution(A, y0, t):
    """``y(t_i) = expm(A (t_i - t_0)) y0`` for every output time."""
    return onp.stack([scipy.linalg.expm(onp.asarray(A) * (tt - t[0])) @ y0 for tt in t])


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


# --- Lotka-Volterra ----------------------------------------------------------------------------

def lotka_volterra(y, t, a, b, c, d):
    """Predator-prey dynamics with the four rates as separate ``args``."""
    return np.array([a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]])


def lotka_volterra_p(y, t, p):
    """:func:`lotka_volterra` with the rates in one parameter vector ``p``."""
    return lotka_volterra(y, t, p[0], p[1], p[2], p[3])


def lotka_volterra_jac(y, t, a, b, c, d):
    """Jacobian ``∂f/∂y`` of :func:`lotka_volterra` (a ``Dfun``)."""
    return onp.array([[a - b * y[1], -b * y[0]], [c * y[1], c * y[0] - d]])


# --- stiff chemical kinetics -------------------------------------------------------------------

K_ROBERTSON = onp.array([0.04, 3e7, 1e4])
"""Robertson's rate constants: ``A -> B`` (k1), ``2B -> B + C`` (k2), ``B + C -> A + C`` (k3)."""


def robertson_rates(y, t, k):
    """Robertson's kinetics with rate constants ``k``."""
    r1, r2, r3 = k[0] * y[0], k[1] * y[1] ** 2, k[2] * y[1] * y[2]
    return np.array([-r1 + r3, r1 - r2 - r3, r2])


def robertson(y, t, log_k):
    """Robertson's kinetics parametrised by the log rate constants."""
    return robertson_rates(y, t, np.exp(log_k))


def robertson_jac(y, t, log_k):
    """Jacobian ``∂f/∂y`` of :func:`robertson` (plain numpy)."""
    k1, k2, k3 = onp.exp(log_k)
    return onp.array([[-k1, k3 * y[2], k3 * y[1]],
                      [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]],
                      [0.0, 2 * k2 * y[1], 0.0]])


def robertson_dlogk(y, k):
    """``∂f/∂log k`` of :func:`robertson` at rate constants ``k`` (plain numpy)."""
    k1, k2, k3 = k
    return onp.array([[-k1 * y[0], 0.0, k3 * y[1] * y[2]],
                      [k1 * y[0], -k2 * y[1] ** 2, -k3 * y[1] * y[2]],
                      [0.0, k2 * y[1] ** 2, 0.0]])


def robertson_sensitivities(t, log_k, weights, atol):
    """``y(t_i)`` and ``d(Σ_i weights·y(t_i))/d log k`` from the forward sensitivity equations.

    ``S' = J S + ∂f/∂log k`` integrated with ``y`` by scipy's Radau at ``rtol = 1e-12`` with the
    exact Jacobian of the whole system: an implicit method independent of LSODA, VODE and the
    adjoint. ``atol`` is the state's absolute tolerance (a hundredth of it is used).
    """
    k = onp.exp(log_k)
    k1, k2, k3 = k
    d_jac = [onp.zeros((3, 3)),                                                  # ∂J/∂y_0
             onp.array([[0, 0, k3], [0, -2 * k2, -k3], [0, 2 * k2, 0]], float),  # ∂J/∂y_1
             onp.array([[0, k3, 0], [0, -k3, 0], [0, 0, 0]], float)]             # ∂J/∂y_2

    def d_dlogk_dy(y):
        return [onp.array([[-k1, 0, 0], [k1, 0, 0], [0, 0, 0]], float),
                onp.array([[0, 0, k3 * y[2]], [0, -2 * k2 * y[1], -k3 * y[2]], [0, 2 * k2 * y[1], 0]]),
                onp.array([[0, 0, k3 * y[1]], [0, 0, -k3 * y[1]], [0, 0, 0]])]

    def aug(tt, z):
        y, S = z[:3], z[3:].reshape(3, 3)
        J = robertson_jac(y, tt, log_k)
        return onp.concatenate([onp.asarray(robertson(y, tt, log_k)), (J @ S + robertson_dlogk(y, k)).ravel()])

    def aug_jac(tt, z):
        y, S = z[:3], z[3:].reshape(3, 3)
        J = robertson_jac(y, tt, log_k)
        out = onp.zeros((12, 12))
        out[:3, :3] = J
        out[3:, 3:] = onp.kron(J, onp.eye(3))        # d(J S)_{ij} / d S_{lj} = J_{il}
        by_y = d_dlogk_dy(y)
        for m in range(3):
            out[3:, m] = (d_jac[m] @ S + by_y[m]).ravel()
        return out

    z0 = onp.concatenate([[1.0, 0.0, 0.0], onp.zeros(9)])
    sol = scipy.integrate.solve_ivp(aug, (t[0], t[-1]), z0, method="Radau", t_eval=t, rtol=1e-12,
                                    atol=onp.concatenate([onp.asarray(atol) * 1e-2, onp.full(9, 1e-14)]),
                                    jac=aug_jac)
    assert sol.success, sol.message
    ys = sol.y[:3].T
    S = sol.y[3:].T.reshape(len(t), 3, 3)
    return ys, onp.einsum("j,tjk->k", weights, S)


def reversible_kinetics(y, t, log_k):
    """``A <-> B`` fast (rates 100, 50 at the usual ``log_k``), ``2 B -> C`` slow: stiff."""
    k = np.exp(log_k)
    r0, r1, r2 = k[0] * y[0], k[1] * y[1], k[2] * y[1] ** 2
    return np.array([-r0 + r1, r0 - r1 - 2.0 * r2, r2])
