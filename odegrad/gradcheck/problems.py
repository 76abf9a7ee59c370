"""The ODE problems of odegrad's gradient checks, tests and benchmarks, each written once.

Dynamics follow :func:`odegrad.odeint`'s convention ``f(y, t, p)`` and are written with
``autograd.numpy``, so autograd differentiates them. The dynamics the benchmarks also run in
PyTorch and JAX (:func:`robertson`, :func:`chain_kinetics`, :func:`cubic_spiral`,
:func:`spiral_mlp`, :func:`wide_mlp`) take the array namespace as a keyword, ``xp`` (default
``autograd.numpy``), and use only operations that ``autograd.numpy``, ``numpy``, ``torch`` and
``jax.numpy`` share.

Each problem's nominal numbers (initial state, output times, parameters), its stiffness and the
tolerances at which its solves are accurate enough for finite differences are one
:class:`ODEProblem`; closed-form solutions and gradients (:func:`decay_solution`,
:func:`linear_solution`, :func:`linear_gradients`, :func:`landing_time`, :func:`landing_time_gradient`) and an independent
reference for Robertson's gradient (:func:`robertson_sensitivities`) sit beside them. The suite of
``python -m odegrad.gradcheck`` (:mod:`odegrad.gradcheck.suite`), odegrad's tests and
``benchmarks/`` read their problems from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
import scipy.integrate
import scipy.linalg

TIGHT_TOL = 1e-10
"""Default tolerance hint: solves at ``rtol = atol = 1e-10`` difference to about ``1e-10 / step``."""


@dataclass(frozen=True)
class ODEProblem:
    """An initial value problem ``y' = f(y, t, p)``, ``y(t[0]) = y0``, at its nominal values.

    Attributes
    ----------
    name : str
        Short name.
    description : str
        One line: the dynamics and what makes the problem worth checking.
    f : callable
        The dynamics ``f(y, t, p)`` (a keyword ``xp`` where the benchmarks' peers need it).
    y0 : float or numpy.ndarray
        Initial state.
    t : numpy.ndarray
        Output times, ``t[0]`` the initial time.
    p : Any
        Nominal parameters, passed as ``args=(p,)``.
    stiff : bool
        Whether the Jacobian's eigenvalues span orders of magnitude (implicit methods needed).
    rtol, atol : float
        Tolerances at which a solve is accurate enough to difference (``python -m
        odegrad.gradcheck`` solves at them).
    solution : callable or None
        Closed form ``solution(y0, t, p) -> ys`` of shape ``(len(t),) + shape(y0)``, if any.
    jac : callable or None
        Hand-written Jacobian ``jac(y, t, p) = df/dy`` (plain NumPy), if any.
    """

    name: str
    description: str
    f: Callable[..., Any]
    y0: Any
    t: np.ndarray
    p: Any
    stiff: bool = False
    rtol: float = TIGHT_TOL
    atol: float = TIGHT_TOL
    solution: Callable[..., Any] | None = None
    jac: Callable[..., Any] | None = None


# --- decay and linear systems ----------------------------------------------------------------


def decay(y: Any, t: Any, k: Any) -> Any:
    """``y' = -k y``: ``y(t) = y0 exp(-k (t - t0))``."""
    return -k * y


def decay_solution(y0: Any, t: Any, k: float) -> np.ndarray:
    """``y0 exp(-k (t_i - t_0))`` for every output time, shape ``(len(t),) + shape(y0)``."""
    tau = np.asarray(t, dtype=float) - t[0]
    return np.multiply.outer(np.exp(-k * tau), np.asarray(y0, dtype=float))


def linear(y: Any, t: Any, A: Any) -> Any:
    """``y' = A y``: ``y(t) = expm(A (t - t0)) y0``."""
    return anp.dot(A, y)


def linear_solution(y0: Any, t: Any, A: Any) -> np.ndarray:
    """``y(t_i) = expm(A (t_i - t_0)) y0`` for every output time."""
    return np.stack([scipy.linalg.expm(np.asarray(A) * (tt - t[0])) @ y0 for tt in t])


def linear_gradients(A: Any, y0: Any, t: Any, G: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact gradients of ``L = sum_i G_i . expm(A (t_i - t_0)) y0`` with respect to ``A``, ``y0``, ``t``.

    ``dL/dA`` from the Frechet derivative of the matrix exponential (``scipy.linalg.expm_frechet``),
    ``dL/dy0 = sum_i expm(A tau_i)^T G_i``, ``dL/dt_i = G_i . A y(t_i)`` and
    ``dL/dt_0 = -sum_{i>0} dL/dt_i``.

    Parameters
    ----------
    A : array_like, shape (n, n)
    y0 : array_like, shape (n,)
    t : array_like, shape (m,)
    G : array_like, shape (m, n)
        The weights (cotangent) of each output.

    Returns
    -------
    tuple of numpy.ndarray
        ``(dL/dA, dL/dy0, dL/dt)`` with the shapes of ``A``, ``y0`` and ``t``.
    """
    A = np.asarray(A, dtype=float)
    y0 = np.asarray(y0, dtype=float)
    t = np.asarray(t, dtype=float)
    gA = np.zeros_like(A)
    gy0 = np.array(G[0], dtype=float)
    gt = np.zeros_like(t)
    for i in range(1, len(t)):
        tau = t[i] - t[0]
        E = scipy.linalg.expm(A * tau)
        gy0 = gy0 + E.T @ G[i]
        for j, k in np.ndindex(*A.shape):
            D = np.zeros_like(A)
            D[j, k] = tau
            gA[j, k] += G[i] @ scipy.linalg.expm_frechet(A * tau, D, compute_expm=False) @ y0
        dydt = A @ E @ y0
        gt[i] += G[i] @ dydt
        gt[0] -= G[i] @ dydt
    return gA, gy0, gt


# --- Lotka-Volterra and Van der Pol ----------------------------------------------------------


def lotka_volterra(y: Any, t: Any, a: Any, b: Any, c: Any, d: Any) -> Any:
    """Predator-prey dynamics ``(a x - b x z, c x z - d z)`` with the four rates as separate ``args``."""
    return anp.array([a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]])


def lotka_volterra_p(y: Any, t: Any, p: Any) -> Any:
    """:func:`lotka_volterra` with the rates in one parameter vector ``p``."""
    return lotka_volterra(y, t, p[0], p[1], p[2], p[3])


def lotka_volterra_jac(y: Any, t: Any, a: float, b: float, c: float, d: float) -> np.ndarray:
    """Jacobian ``df/dy`` of :func:`lotka_volterra` (a ``Dfun``)."""
    return np.array([[a - b * y[1], -b * y[0]], [c * y[1], c * y[0] - d]])


def van_der_pol(y: Any, t: Any, mu: Any) -> Any:
    """Van der Pol's oscillator ``x'' = mu (1 - x^2) x' - x`` as a first-order system."""
    return anp.array([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])


# --- chemical kinetics ------------------------------------------------------------------------

K_ROBERTSON = np.array([0.04, 3e7, 1e4])
"""Robertson's rate constants: ``A -> B`` (k1), ``2B -> B + C`` (k2), ``B + C -> A + C`` (k3)."""


def robertson_rates(y: Any, t: Any, k: Any, xp: ModuleType = anp) -> Any:
    """Robertson's kinetics with rate constants ``k``."""
    r1, r2, r3 = k[0] * y[0], k[1] * y[1] ** 2, k[2] * y[1] * y[2]
    return xp.stack([-r1 + r3, r1 - r2 - r3, r2])


def robertson(y: Any, t: Any, log_k: Any, xp: ModuleType = anp) -> Any:
    """Robertson's kinetics parametrised by the log rate constants (eigenvalues down to -1e4)."""
    return robertson_rates(y, t, xp.exp(log_k), xp)


def robertson_jac(y: Any, t: Any, log_k: Any) -> np.ndarray:
    """Jacobian ``df/dy`` of :func:`robertson` (plain NumPy)."""
    k1, k2, k3 = np.exp(log_k)
    return np.array([[-k1, k3 * y[2], k3 * y[1]],
                     [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]],
                     [0.0, 2 * k2 * y[1], 0.0]])


def robertson_dlogk(y: Any, k: Any) -> np.ndarray:
    """``df/d log k`` of :func:`robertson` at rate constants ``k`` (plain NumPy)."""
    k1, k2, k3 = k
    return np.array([[-k1 * y[0], 0.0, k3 * y[1] * y[2]],
                     [k1 * y[0], -k2 * y[1] ** 2, -k3 * y[1] * y[2]],
                     [0.0, k2 * y[1] ** 2, 0.0]])


def _robertson_sensitivity_system(log_k: Any) -> tuple[Callable, Callable]:
    """``(rhs, jac)`` of Robertson's state with its sensitivities ``S = dy/d log k``, ``solve_ivp`` style."""
    k = np.exp(log_k)
    k1, k2, k3 = k
    d_jac = [np.zeros((3, 3)),                                                  # dJ/dy_0
             np.array([[0, 0, k3], [0, -2 * k2, -k3], [0, 2 * k2, 0]], float),  # dJ/dy_1
             np.array([[0, k3, 0], [0, -k3, 0], [0, 0, 0]], float)]             # dJ/dy_2

    def d_dlogk_dy(y: np.ndarray) -> list[np.ndarray]:
        return [np.array([[-k1, 0, 0], [k1, 0, 0], [0, 0, 0]], float),
                np.array([[0, 0, k3 * y[2]], [0, -2 * k2 * y[1], -k3 * y[2]], [0, 2 * k2 * y[1], 0]]),
                np.array([[0, 0, k3 * y[1]], [0, 0, -k3 * y[1]], [0, 0, 0]])]

    def rhs(tt: float, z: np.ndarray) -> np.ndarray:
        y, S = z[:3], z[3:].reshape(3, 3)
        J = robertson_jac(y, tt, log_k)
        return np.concatenate([np.asarray(robertson(y, tt, log_k)), (J @ S + robertson_dlogk(y, k)).ravel()])

    def jac(tt: float, z: np.ndarray) -> np.ndarray:
        y, S = z[:3], z[3:].reshape(3, 3)
        J = robertson_jac(y, tt, log_k)
        out = np.zeros((12, 12))
        out[:3, :3] = J
        out[3:, 3:] = np.kron(J, np.eye(3))        # d(J S)_{ij} / d S_{lj} = J_{il}
        by_y = d_dlogk_dy(y)
        for m in range(3):
            out[3:, m] = (d_jac[m] @ S + by_y[m]).ravel()
        return out

    return rhs, jac


def robertson_sensitivities(t: Any, log_k: Any, weights: Any, atol: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y(t_i)`` and ``d(sum_i weights . y(t_i))/d log k`` from the forward sensitivity equations.

    ``S' = J S + df/d log k`` integrated with ``y`` (from ``y0 = (1, 0, 0)``) by scipy's Radau at
    ``rtol = 1e-12`` with the exact Jacobian of the whole system: an implicit method independent
    of LSODA, VODE and odegrad's gradients.

    Parameters
    ----------
    t : array_like, shape (m,)
        Output times, ``t[0]`` the initial time.
    log_k : array_like, shape (3,)
        Log rate constants.
    weights : array_like, shape (3,)
        Weights of the states in the loss (the same at every output).
    atol : float or array_like
        The state's absolute tolerance; a hundredth of it is used.

    Returns
    -------
    tuple of numpy.ndarray
        ``ys`` of shape ``(m, 3)`` and the gradient of shape ``(3,)``.

    Raises
    ------
    RuntimeError
        If Radau fails.
    """
    rhs, jac = _robertson_sensitivity_system(log_k)
    z0 = np.concatenate([ROBERTSON.y0, np.zeros(9)])
    sol = scipy.integrate.solve_ivp(rhs, (t[0], t[-1]), z0, method="Radau", t_eval=t, rtol=1e-12,
                                    atol=np.concatenate([np.asarray(atol) * 1e-2 * np.ones(3), np.full(9, 1e-14)]),
                                    jac=jac)
    if not sol.success:
        raise RuntimeError(f"Robertson's reference sensitivity solve failed: {sol.message}")
    ys = sol.y[:3].T
    S = sol.y[3:].T.reshape(len(t), 3, 3)
    return ys, np.einsum("j,tjk->k", weights, S)


def reversible_kinetics(y: Any, t: Any, log_k: Any) -> Any:
    """``A <-> B`` fast (rates 100, 50 at the nominal ``log_k``), ``2 B -> C`` slow: stiff."""
    k = anp.exp(log_k)
    r0, r1, r2 = k[0] * y[0], k[1] * y[1], k[2] * y[1] ** 2
    return anp.array([-r0 + r1, r0 - r1 - 2.0 * r2, r2])


def chain_kinetics(y: Any, t: Any, k: Any, xp: ModuleType = anp) -> Any:
    """``A -> B -> C`` with rates ``k = (k_AB, k_BC)`` (autograd issue #561)."""
    a, b = y[0], y[1]
    return xp.stack([-k[0] * a, k[0] * a - k[1] * b, k[1] * b])


# --- neural dynamics ----------------------------------------------------------------------------

_NEURAL_SHAPES = {"W1": (8, 4), "b1": (8,), "c": (8,), "W2": (4, 8), "b2": (4,)}
_NEURAL_BOUNDS = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in _NEURAL_SHAPES.values()])])


def neural_net(y: Any, t: Any, params: dict) -> Any:
    """Time-dependent tanh MLP ``W2 tanh(W1 y + b1 + t c) + b2``, parameters in a dict."""
    return anp.dot(params["W2"], anp.tanh(anp.dot(params["W1"], y) + params["b1"] + t * params["c"])) + params["b2"]


def neural_net_params(flat: Any) -> dict:
    """The dict of :func:`neural_net`'s parameters from a flat vector (differentiable)."""
    return {
        key: anp.reshape(flat[lo:hi], shape)
        for (key, shape), lo, hi in zip(_NEURAL_SHAPES.items(), _NEURAL_BOUNDS[:-1], _NEURAL_BOUNDS[1:])
    }


def _mlp(z: Any, p: Any, n: int, hidden: int, xp: ModuleType) -> Any:
    """``W2 tanh(W1 z + b1) + b2`` with ``p = (W1 (hidden x n), b1, W2 (n x hidden), b2)`` flattened."""
    h = hidden
    w1 = xp.reshape(p[: h * n], (h, n))
    b1 = p[h * n: h * n + h]
    w2 = xp.reshape(p[h * n + h: 2 * h * n + h], (n, h))
    b2 = p[2 * h * n + h:]
    return w2 @ xp.tanh(w1 @ z + b1) + b2


SPIRAL_HIDDEN = 50
"""Hidden width of :func:`spiral_mlp` (torchdiffeq's ``ode_demo.py``)."""
WIDE_STATE, WIDE_HIDDEN = 64, 256
"""State size and hidden width of :func:`wide_mlp`."""


def cubic_spiral(y: Any, t: Any, A: Any, xp: ModuleType = anp) -> Any:
    """torchdiffeq's ``ode_demo.py`` truth ``y' = (y**3) A``: a spiral into the origin."""
    return (y ** 3) @ A


def spiral_mlp(y: Any, t: Any, p: Any, xp: ModuleType = anp) -> Any:
    """torchdiffeq's ``ode_demo.py`` model ``y' = W2 tanh(W1 y**3 + b1) + b2`` (50 hidden, 252 parameters)."""
    return _mlp(y ** 3, p, 2, SPIRAL_HIDDEN, xp)


def wide_mlp(y: Any, t: Any, p: Any, xp: ModuleType = anp) -> Any:
    """``y' = W2 tanh(W1 y + b1) + b2`` with a 64-dimensional state and width 256 (33,088 parameters)."""
    return _mlp(y, p, WIDE_STATE, WIDE_HIDDEN, xp)


# --- a projectile (an event time with a closed form) ---------------------------------------


def projectile(y: Any, t: Any, g: Any) -> Any:
    """Height and upward speed of a body falling under gravity ``g``."""
    return anp.array([y[1], -g])


def projectile_ground(t: Any, y: Any, g: Any) -> Any:
    """``solve_ivp`` event (time first): the height, falling through zero at the landing."""
    return y[0]


projectile_ground.terminal, projectile_ground.direction = True, -1


def landing_time(h0: Any, v0: Any, g: Any) -> Any:
    """Closed-form landing time ``(v0 + sqrt(v0^2 + 2 g h0)) / g`` of :func:`projectile` (differentiable)."""
    return (v0 + anp.sqrt(v0 ** 2 + 2 * g * h0)) / g


def landing_time_gradient(h0: float, v0: float, g: float) -> tuple[float, float, float]:
    """``d(landing time)/d(h0, v0, g)`` of :func:`projectile`, differentiated by hand."""
    root = np.sqrt(v0 ** 2 + 2 * g * h0)
    return 1 / root, (1 + v0 / root) / g, h0 / (g * root) - (v0 + root) / g ** 2


# --- the problems at their nominal values ----------------------------------------------------


DECAY = ODEProblem("decay", "scalar y' = -k y, closed form", decay, 2.0, np.array([0.0, 0.5, 1.5, 3.0]), 0.7,
                   solution=decay_solution)
LINEAR = ODEProblem("linear", "y' = A y, 3 states, closed form via expm", linear, np.array([1.0, -0.5, 0.25]),
                    np.array([0.0, 0.4, 1.1, 2.0]),
                    np.array([[-0.3, 1.0, 0.0], [-1.0, -0.3, 0.2], [0.1, 0.0, -0.5]]), solution=linear_solution)
LOTKA_VOLTERRA = ODEProblem("lotka-volterra", "predator-prey, 2 states, 4 parameters", lotka_volterra_p,
                            np.array([10.0, 5.0]), np.array([0.0, 1.0, 2.5, 4.0, 6.0]), np.array([1.1, 0.4, 0.1, 0.4]),
                            jac=lambda y, t, p: lotka_volterra_jac(y, t, *p))
VAN_DER_POL = ODEProblem("van-der-pol", "Van der Pol oscillator, mu = 1.5", van_der_pol, np.array([2.0, 0.0]),
                         np.array([0.0, 0.3, 0.45, 1.0, 1.7, 2.2, 3.1, 3.3, 4.0]), 1.5)
_NEURAL_RNG = np.random.default_rng(3)
NEURAL_NET = ODEProblem("neural-net", "time-dependent tanh MLP, 4 states, 76 parameters (pass "
                        "neural_net_params(p))", neural_net,
                        p=_NEURAL_RNG.standard_normal(int(_NEURAL_BOUNDS[-1])) / 3.0,
                        y0=_NEURAL_RNG.standard_normal(4), t=np.array([0.0, 0.5, 1.0, 2.0]))
REVERSIBLE_KINETICS = ODEProblem("reversible-kinetics", "A <-> B fast (rates 100, 50), 2 B -> C slow, log rate "
                                 "constants", reversible_kinetics, np.array([1.0, 0.0, 0.0]),
                                 np.array([0.0, 0.5, 1.0, 2.0]), np.log(np.array([100.0, 50.0, 1.0])), stiff=True,
                                 atol=1e-12)
ROBERTSON = ODEProblem("robertson", "Robertson's stiff kinetics, log rate constants", robertson,
                       np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.4, 4.0, 40.0]), np.log(K_ROBERTSON), stiff=True,
                       atol=1e-14, jac=robertson_jac)
CHAIN_KINETICS = ODEProblem("chain-kinetics", "A -> B -> C, k = (2, 2) (autograd issue #561)", chain_kinetics,
                            np.array([1.0, 0.0, 0.0]), np.linspace(0.0, 10.0, 5), np.array([2.0, 2.0]), rtol=1e-12,
                            atol=1e-12)
CUBIC_SPIRAL = ODEProblem("cubic-spiral", "torchdiffeq ode_demo's truth y' = (y**3) A, 1,000 points on [0, 25]",
                          cubic_spiral, np.array([2.0, 0.0]), np.linspace(0.0, 25.0, 1000),
                          np.array([[-0.1, 2.0], [-2.0, -0.1]]))
_SPIRAL_RNG = np.random.default_rng(0)  # torchdiffeq ode_demo: weights N(0, 0.1), biases 0
SPIRAL_MLP = ODEProblem("spiral-mlp", "torchdiffeq ode_demo's model, 252 parameters, the first 100 points of "
                        "cubic-spiral", spiral_mlp, CUBIC_SPIRAL.y0, CUBIC_SPIRAL.t[:100],
                        np.concatenate([_SPIRAL_RNG.normal(0, 0.1, 2 * SPIRAL_HIDDEN), np.zeros(SPIRAL_HIDDEN),
                                        _SPIRAL_RNG.normal(0, 0.1, 2 * SPIRAL_HIDDEN), np.zeros(2)]))
_WIDE_RNG = np.random.default_rng(1)
WIDE_MLP = ODEProblem("wide-mlp", "64 states, tanh MLP of width 256, 33,088 parameters", wide_mlp,
                      p=np.concatenate([_WIDE_RNG.normal(0, 1 / np.sqrt(WIDE_STATE), WIDE_HIDDEN * WIDE_STATE),
                                        _WIDE_RNG.normal(0, 0.1, WIDE_HIDDEN),
                                        _WIDE_RNG.normal(0, 1 / np.sqrt(WIDE_HIDDEN), WIDE_STATE * WIDE_HIDDEN),
                                        _WIDE_RNG.normal(0, 0.1, WIDE_STATE)]),
                      y0=_WIDE_RNG.normal(0, 1, WIDE_STATE), t=np.linspace(0, 1, 5))
PROJECTILE = ODEProblem("projectile", "a body thrown up at 3 m/s from 2 m under g = 9.81 until it lands",
                        projectile, np.array([2.0, 3.0]), np.array([0.0, 10.0]), 9.81)

#: Every problem, by name.
ALL: dict[str, ODEProblem] = {
    p.name: p for p in (DECAY, LINEAR, LOTKA_VOLTERRA, VAN_DER_POL, NEURAL_NET, REVERSIBLE_KINETICS, ROBERTSON,
                        CHAIN_KINETICS, CUBIC_SPIRAL, SPIRAL_MLP, WIDE_MLP, PROJECTILE)
}
