"""The benchmark problems, written once over an array namespace ``xp``.

Every problem is ``loss(odeint(rhs, y0, t, args=(p,)))`` with a flat parameter vector ``p``;
``rhs(y, t, p, xp)`` and ``loss(ys, data, xp)`` use only operations that ``autograd.numpy``,
``numpy``, ``torch`` and ``jax.numpy`` share (``stack``, ``reshape``, ``tanh``, ``exp``, ``@``), so
every peer integrates exactly the same dynamics. ``reference_gradient`` is independent of the
adjoint method where that is affordable (forward sensitivities with scipy at tight tolerances).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np
import scipy.integrate

DEFAULT_TOL = 1.49012e-8  # scipy.integrate.odeint's default rtol and atol


@dataclasses.dataclass
class Problem:
    name: str
    description: str
    rhs: Callable[..., Any]            # rhs(y, t, p, xp) -> dy/dt
    loss: Callable[..., Any]           # loss(ys, data, xp) -> scalar
    y0: np.ndarray
    t: np.ndarray
    p0: np.ndarray
    rtol: float
    atol: float
    data: dict = dataclasses.field(default_factory=dict)
    odegrad_variants: tuple = ("lsoda",)   # "method[+adjoint][+seminorm][+mxstep]", see variant_kwargs
    peers: tuple = ("autograd", "fd", "torchdiffeq-adjoint", "torchdiffeq-adjoint+seminorm",
                    "torchdiffeq", "jax")
    reference: str = "sensitivity"     # or "odegrad-tight"
    reference_method: str = "DOP853"
    sens_rtol: float = 1e-11
    sens_atol: float = 1e-13
    fd_max_params: int = 2000          # central FD beyond this is only estimated
    stiff: bool = False

    @property
    def n_params(self) -> int:
        return int(self.p0.size)


# ---------------------------------------------------------------------------------------- kinetics

def _kinetics_rhs(y, t, p, xp):
    a, b = y[0], y[1]
    return xp.stack([-p[0] * a, p[0] * a - p[1] * b, p[1] * b])


def _mean_abs_loss(ys, data, xp):
    return xp.mean(xp.abs(ys - data["target"]))


def kinetics() -> Problem:
    y0 = np.array([1.0, 0.0, 0.0])
    t = np.linspace(0.0, 10.0, 5)
    target = scipy.integrate.odeint(lambda y, tt: _kinetics_rhs(y, tt, np.ones(2), np), y0, t,
                                    rtol=1e-12, atol=1e-12)
    return Problem(
        name="kinetics", description="A->B->C, k=(2,2), y0=(1,0,0), t=linspace(0,10,5), "
        "loss=mean|y-y(k=(1,1))|, default odeint tolerances (autograd issue #561)",
        rhs=_kinetics_rhs, loss=_mean_abs_loss, y0=y0, t=t, p0=np.array([2.0, 2.0]),
        rtol=DEFAULT_TOL, atol=DEFAULT_TOL, data={"target": target},
        odegrad_variants=("lsoda", "lsoda+checkpoint", "lsoda+forward", "adams", "bdf", "ivp-RK45", "ivp-LSODA"),
        peers=("autograd", "fd", "fd:ivp-RK45", "torchdiffeq-adjoint", "torchdiffeq-adjoint+seminorm", "torchdiffeq", "jax"),
        reference_method="LSODA", sens_rtol=1e-12, sens_atol=1e-14,
    )


# -------------------------------------------------------------------------------------- spiral-mlp

_SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
_HIDDEN = 50


def _spiral_mlp_rhs(y, t, p, xp):
    h = _HIDDEN
    w1 = xp.reshape(p[: 2 * h], (h, 2))
    b1 = p[2 * h: 3 * h]
    w2 = xp.reshape(p[3 * h: 5 * h], (2, h))
    b2 = p[5 * h: 5 * h + 2]
    return w2 @ xp.tanh(w1 @ (y ** 3) + b1) + b2


def _mse_loss(ys, data, xp):
    return xp.mean((ys - data["target"]) ** 2)


def spiral_mlp() -> Problem:
    y0 = np.array([2.0, 0.0])
    t_all = np.linspace(0.0, 25.0, 1000)
    true_y = scipy.integrate.odeint(lambda y, tt: (y ** 3) @ _SPIRAL_A, y0, t_all,
                                    rtol=1e-10, atol=1e-10)
    rng = np.random.default_rng(0)
    h = _HIDDEN  # torchdiffeq ode_demo: weights N(0, 0.1), biases 0
    p0 = np.concatenate([rng.normal(0, 0.1, 2 * h), np.zeros(h), rng.normal(0, 0.1, 2 * h),
                         np.zeros(2)])
    return Problem(
        name="spiral-mlp", description="torchdiffeq ode_demo: y'=W2 tanh(W1 y**3+b1)+b2, 50 hidden "
        "(252 params), MSE over the first 100 of 1000 points on [0,25], rtol=atol=1e-6",
        rhs=_spiral_mlp_rhs, loss=_mse_loss, y0=y0, t=t_all[:100], p0=p0, rtol=1e-6, atol=1e-6,
        data={"target": true_y[:100]},
        odegrad_variants=("lsoda", "lsoda+checkpoint", "lsoda+checkpoint+seminorm", "lsoda+forward", "adams",
                          "ivp-RK45", "ivp-LSODA"),
        peers=("autograd", "fd", "fd:ivp-RK45", "torchdiffeq-adjoint", "torchdiffeq-adjoint+seminorm", "torchdiffeq", "jax"),
    )


# --------------------------------------------------------------------------------------- robertson

_ROBERTSON_W = np.array([1.0, 1e4, 0.0])


def _robertson_rhs(y, t, p, xp):
    k1, k2, k3 = xp.exp(p[0]), xp.exp(p[1]), xp.exp(p[2])
    y1, y2, y3 = y[0], y[1], y[2]
    return xp.stack([-k1 * y1 + k3 * y2 * y3,
                     k1 * y1 - k3 * y2 * y3 - k2 * y2 ** 2,
                     k2 * y2 ** 2])


def _weighted_sum_loss(ys, data, xp):
    return xp.sum(ys * data["w"])


def robertson() -> Problem:
    t = np.concatenate([[0.0], np.logspace(-5, 5, 11)])
    return Problem(
        name="robertson", description="Robertson, k=(0.04,3e7,1e4), y0=(1,0,0), outputs at 0 and "
        "logspace(-5,5,11), loss=sum_i y1(t_i)+1e4*y2(t_i), gradient w.r.t. log k, rtol=1e-6, "
        "atol=1e-10",
        rhs=_robertson_rhs, loss=_weighted_sum_loss, y0=np.array([1.0, 0.0, 0.0]), t=t,
        p0=np.log(np.array([0.04, 3e7, 1e4])), rtol=1e-6, atol=1e-10, data={"w": _ROBERTSON_W},
        odegrad_variants=("lsoda", "lsoda+interpolate", "lsoda+checkpoint", "bdf+mxstep"),
        reference_method="LSODA", sens_rtol=1e-10, sens_atol=1e-16, stiff=True,
    )


# ------------------------------------------------------------------------------------------ mlp-64

_MLP_N, _MLP_H = 64, 256


def _mlp64_rhs(y, t, p, xp):
    n, h = _MLP_N, _MLP_H
    w1 = xp.reshape(p[: h * n], (h, n))
    b1 = p[h * n: h * n + h]
    w2 = xp.reshape(p[h * n + h: 2 * h * n + h], (n, h))
    b2 = p[2 * h * n + h:]
    return w2 @ xp.tanh(w1 @ y + b1) + b2


def _mean_square_loss(ys, data, xp):
    return xp.mean(ys ** 2)


def mlp64() -> Problem:
    n, h = _MLP_N, _MLP_H
    rng = np.random.default_rng(1)
    p0 = np.concatenate([rng.normal(0, 1 / np.sqrt(n), h * n), rng.normal(0, 0.1, h),
                         rng.normal(0, 1 / np.sqrt(h), n * h), rng.normal(0, 0.1, n)])
    return Problem(
        name="mlp-64", description="64-dim state, y'=W2 tanh(W1 y+b1)+b2 with width 256 (33088 "
        "params), t=linspace(0,1,5), loss=mean y**2, rtol=atol=1e-6",
        rhs=_mlp64_rhs, loss=_mean_square_loss, y0=rng.normal(0, 1, n), t=np.linspace(0, 1, 5),
        p0=p0, rtol=1e-6, atol=1e-6,
        odegrad_variants=("lsoda", "lsoda+seminorm", "adams+seminorm"),
        reference="odegrad-tight", fd_max_params=2000,
    )


def variant_kwargs(variant: str) -> dict:
    """odegrad keyword arguments of a variant label: ``"adams+seminorm"``, ``"bdf+mxstep"``, ...;
    ``"ivp-RK45"`` (any solve_ivp method after ``ivp-``) is ``odegrad.solve_ivp`` with that method."""
    if variant.startswith("ivp-"):
        return {"ivp_method": variant[4:]}
    method, *flags = variant.split("+")
    kwargs: dict = {"method": method}
    for flag in flags:
        if flag == "seminorm":
            kwargs["adjoint_seminorm"] = True
        elif flag in ("interpolate", "backsolve", "checkpoint", "forward", "auto"):
            kwargs["adjoint"] = flag
        elif flag == "mxstep":
            kwargs["mxstep"] = 100000
        else:
            raise ValueError(f"unknown odegrad variant flag {flag!r} in {variant!r}")
    return kwargs


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "kinetics": kinetics, "spiral-mlp": spiral_mlp, "robertson": robertson, "mlp-64": mlp64,
}


@functools.lru_cache(maxsize=None)
def get(name: str) -> Problem:
    return PROBLEMS[name]()


# ------------------------------------------------------------------------------------- reference

def reference_gradient(problem: Problem) -> tuple[np.ndarray, str]:
    """dL/dp by forward sensitivities (scipy, tight tolerances), or tight-tolerance odegrad."""
    if problem.reference == "odegrad-tight":
        return _odegrad_tight(problem), "odegrad, adams, rtol=atol=1e-10"
    return _forward_sensitivities(problem), (
        f"forward sensitivities, scipy {problem.reference_method}, rtol={problem.sens_rtol:g}, "
        f"atol={problem.sens_atol:g}")


def _odegrad_tight(problem: Problem) -> np.ndarray:
    import autograd
    import autograd.numpy as anp

    from odegrad import odeint

    def loss(p):
        ys = odeint(lambda y, t, q: problem.rhs(y, t, q, anp), problem.y0, problem.t, args=(p,),
                    rtol=1e-10, atol=1e-10, method="adams", adjoint_seminorm=True)
        return problem.loss(ys, problem.data, anp)

    return np.asarray(autograd.grad(loss)(problem.p0))


def _forward_sensitivities(problem: Problem) -> np.ndarray:
    import autograd
    import autograd.numpy as anp

    n, P = problem.y0.size, problem.n_params
    p = problem.p0
    jac_yp = autograd.jacobian(lambda yp, t: problem.rhs(yp[:n], t, yp[n:], anp), 0)

    def jac_y(y, t):
        return jac_yp(np.concatenate([y, p]), t)[:, :n]

    def f(z, t):
        y, S = z[:n], z[n:].reshape(n, P)
        dy = problem.rhs(y, t, p, np)
        J = jac_yp(np.concatenate([y, p]), t)
        dS = J[:, :n] @ S + J[:, n:]
        return np.concatenate([dy, dS.ravel()])

    def jac(z, t):  # block lower-triangular Jacobian, for the stiff reference solve
        y = z[:n]
        J = jac_y(y, t)
        out = np.zeros((z.size, z.size))
        out[:n, :n] = J
        for k in range(P):
            out[n:, n:][np.ix_(np.arange(k, n * P, P), np.arange(k, n * P, P))] = J
        # d(J S)/dy and d(J_p)/dy by finite differences of the sensitivity rhs (tiny problems)
        eps = 1e-7 * np.maximum(1.0, np.abs(y))
        for j in range(n):
            zp, zm = z.copy(), z.copy()
            zp[j] += eps[j]
            zm[j] -= eps[j]
            out[n:, j] = (f(zp, t)[n:] - f(zm, t)[n:]) / (2 * eps[j])
        return out

    z0 = np.concatenate([problem.y0, np.zeros(n * P)])
    if problem.reference_method == "LSODA":
        zs = scipy.integrate.odeint(f, z0, problem.t, Dfun=jac, rtol=problem.sens_rtol,
                                    atol=problem.sens_atol, mxstep=100000)
    else:
        sol = scipy.integrate.solve_ivp(lambda t, z: f(z, t), (problem.t[0], problem.t[-1]), z0,
                                        method=problem.reference_method, t_eval=problem.t,
                                        rtol=problem.sens_rtol, atol=problem.sens_atol)
        zs = sol.y.T
    ys, S = zs[:, :n], zs[:, n:].reshape(len(problem.t), n, P)
    g_ys = autograd.grad(lambda y: problem.loss(y, problem.data, anp))(ys)
    return np.einsum("ti,tip->p", g_ys, S)
