"""The benchmark cases: problems of :mod:`odegrad.gradcheck.problems` with a loss, tolerances and
the implementations that race on them.

Every case is ``loss(odeint(rhs, y0, t, args=(p,)))`` with a flat parameter vector ``p``; the
dynamics come from the collection, written once over an array namespace ``xp`` (``rhs(y, t, p, xp)``
with ``autograd.numpy``, ``numpy``, ``torch`` or ``jax.numpy``), and so does every number of the
problem (initial state, output times, parameters); ``loss(ys, data, xp)`` uses only operations those
namespaces share, so every peer integrates exactly the same dynamics and loss. ``reference_gradient``
is independent of the adjoint method where that is affordable (forward sensitivities with scipy at
tight tolerances).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np
import scipy.integrate

from odegrad.gradcheck import problems as ode

DEFAULT_TOL = 1.49012e-8  # scipy.integrate.odeint's default rtol and atol


@dataclasses.dataclass
class Case:
    """One benchmark: a problem's dynamics and numbers, a loss, tolerances and the implementations."""

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


# ------------------------------------------------------------------------------------------ losses

def _mean_abs_loss(ys, data, xp):
    return xp.mean(xp.abs(ys - data["target"]))


def _mse_loss(ys, data, xp):
    return xp.mean((ys - data["target"]) ** 2)


def _weighted_sum_loss(ys, data, xp):
    return xp.sum(ys * data["w"])


def _mean_square_loss(ys, data, xp):
    return xp.mean(ys ** 2)


# ------------------------------------------------------------------------------------------- cases

def kinetics() -> Case:
    problem = ode.CHAIN_KINETICS
    target = scipy.integrate.odeint(lambda y, tt: problem.f(y, tt, np.ones(2), np), problem.y0, problem.t,
                                    rtol=problem.rtol, atol=problem.atol)
    return Case(
        name="kinetics", description="A->B->C, k=(2,2), y0=(1,0,0), t=linspace(0,10,5), "
        "loss=mean|y-y(k=(1,1))|, default odeint tolerances (autograd issue #561)",
        rhs=problem.f, loss=_mean_abs_loss, y0=problem.y0, t=problem.t, p0=problem.p,
        rtol=DEFAULT_TOL, atol=DEFAULT_TOL, data={"target": target},
        odegrad_variants=("lsoda", "lsoda+checkpoint", "lsoda+forward", "adams", "bdf", "ivp-RK45", "ivp-LSODA"),
        peers=("autograd", "fd", "fd:ivp-RK45", "torchdiffeq-adjoint", "torchdiffeq-adjoint+seminorm", "torchdiffeq", "jax"),
        reference_method="LSODA", sens_rtol=1e-12, sens_atol=1e-14,
    )


def spiral_mlp() -> Case:
    truth, model = ode.CUBIC_SPIRAL, ode.SPIRAL_MLP
    true_y = scipy.integrate.odeint(lambda y, tt: truth.f(y, tt, truth.p), truth.y0, truth.t,
                                    rtol=truth.rtol, atol=truth.atol)
    return Case(
        name="spiral-mlp", description="torchdiffeq ode_demo: y'=W2 tanh(W1 y**3+b1)+b2, 50 hidden "
        "(252 params), MSE over the first 100 of 1000 points on [0,25], rtol=atol=1e-6",
        rhs=model.f, loss=_mse_loss, y0=model.y0, t=model.t, p0=model.p, rtol=1e-6, atol=1e-6,
        data={"target": true_y[: len(model.t)]},
        odegrad_variants=("lsoda", "lsoda+checkpoint", "lsoda+checkpoint+seminorm", "lsoda+forward", "adams",
                          "ivp-RK45", "ivp-LSODA"),
        peers=("autograd", "fd", "fd:ivp-RK45", "torchdiffeq-adjoint", "torchdiffeq-adjoint+seminorm", "torchdiffeq", "jax"),
    )


def robertson() -> Case:
    problem = ode.ROBERTSON
    return Case(
        name="robertson", description="Robertson, k=(0.04,3e7,1e4), y0=(1,0,0), outputs at 0 and "
        "logspace(-5,5,11), loss=sum_i y1(t_i)+1e4*y2(t_i), gradient w.r.t. log k, rtol=1e-6, "
        "atol=1e-10",
        rhs=problem.f, loss=_weighted_sum_loss, y0=problem.y0, t=np.concatenate([[0.0], np.logspace(-5, 5, 11)]),
        p0=problem.p, rtol=1e-6, atol=1e-10, data={"w": np.array([1.0, 1e4, 0.0])},
        odegrad_variants=("lsoda", "lsoda+interpolate", "lsoda+checkpoint", "bdf+mxstep"),
        reference_method="LSODA", sens_rtol=1e-10, sens_atol=1e-16, stiff=problem.stiff,
    )


def mlp64() -> Case:
    problem = ode.WIDE_MLP
    return Case(
        name="mlp-64", description="64-dim state, y'=W2 tanh(W1 y+b1)+b2 with width 256 (33088 "
        "params), t=linspace(0,1,5), loss=mean y**2, rtol=atol=1e-6",
        rhs=problem.f, loss=_mean_square_loss, y0=problem.y0, t=problem.t, p0=problem.p, rtol=1e-6, atol=1e-6,
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


CASES: dict[str, Callable[[], Case]] = {
    "kinetics": kinetics, "spiral-mlp": spiral_mlp, "robertson": robertson, "mlp-64": mlp64,
}


@functools.lru_cache(maxsize=None)
def get(name: str) -> Case:
    return CASES[name]()


# ------------------------------------------------------------------------------------- reference

def reference_gradient(problem: Case) -> tuple[np.ndarray, str]:
    """dL/dp by forward sensitivities (scipy, tight tolerances), or tight-tolerance odegrad."""
    if problem.reference == "odegrad-tight":
        return _odegrad_tight(problem), "odegrad, adams, rtol=atol=1e-10"
    return _forward_sensitivities(problem), (
        f"forward sensitivities, scipy {problem.reference_method}, rtol={problem.sens_rtol:g}, "
        f"atol={problem.sens_atol:g}")


def _odegrad_tight(problem: Case) -> np.ndarray:
    import autograd
    import autograd.numpy as anp

    from odegrad import odeint

    def loss(p):
        ys = odeint(lambda y, t, q: problem.rhs(y, t, q, anp), problem.y0, problem.t, args=(p,),
                    rtol=1e-10, atol=1e-10, method="adams", adjoint_seminorm=True)
        return problem.loss(ys, problem.data, anp)

    return np.asarray(autograd.grad(loss)(problem.p0))


def _forward_sensitivities(problem: Case) -> np.ndarray:
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
