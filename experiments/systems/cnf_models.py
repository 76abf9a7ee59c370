"""Models of the CNF experiment (Chen et al. 2018, section 4): targets, data, the hypernetwork CNF, the planar NF.

The continuous normalizing flow is the paper's: ``dz/dt = f(z, t) = (1/M) sum_m u_m(t) tanh(w_m(t).z + b_m(t))``
whose ``M`` hidden units have weights ``w_m(t)``, biases ``b_m(t)`` and output vectors
``u_m(t) = u'_m(t) * sigmoid(g_m(t))`` all generated from ``t`` by a hypernetwork
(``1 -> H -> H -> 7M``, tanh hidden layers; torchdiffeq's ``examples/cnf.py`` uses ``H = 32``).
By Theorem 1 (instantaneous change of variables) ``d log p(z(t))/dt = -tr(df/dz)``, and for this
field the trace is exact and costs ``O(M)`` per sample::

    tr(df/dz) = (1/M) sum_m (1 - tanh^2(w_m.z + b_m)) (u_m . w_m)

The augmented state ``[z, log p]`` of a batch is one ``(N, 3)`` state of :func:`odegrad.odeint`,
so parameter gradients come from the adjoint method.

The baseline is the planar normalizing flow of depth ``K`` (Rezende & Mohamed, 2015) with their
invertibility reparametrisation of ``u``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.extend import defvjp_argnums, primitive
from autograd.scipy.special import logsumexp

from odegrad import odeint

LOG_2PI = float(np.log(2 * np.pi))
EVAL_TOL = {"rtol": 1e-7, "atol": 1e-7}
"""Solver tolerances of every reported number and figure."""
HYPER_HIDDEN = 32
BOX = 4.0
"""Half-width of the square ``[-BOX, BOX]^2`` on which Rezende & Mohamed draw U1-U4."""
WALL = 0.1
"""Width of the Gaussian wall that confines ``z1`` of U2-U4 to ``|z1| <= BOX``."""
CONFINED = ("U2", "U3", "U4")
"""Targets whose ``exp(-U)`` does not confine ``z1`` by itself (no finite ``log Z``, no KL)."""


# ---------------------------------------------------------------------------------------------
# Targets and data


def _w1(z: Any) -> Any:
    return anp.sin(2 * np.pi * z[..., 0] / 4)


def energy(name: str, z: Any) -> Any:
    """Rezende & Mohamed's (2015, Table 1) energies ``U(z)``, target ``p(z) ~ exp(-U(z))``.

    U2-U4 depend on ``z1`` only through the periodic ``w1``, so their ``exp(-U)`` has infinite mass
    and ``KL(q || p)`` is undefined: a flow that spreads along ``z1`` scores ever lower. Here they
    are confined to the box of Rezende & Mohamed's figures by the wall
    ``0.5 (max(|z1| - BOX, 0) / WALL)^2``: exactly their energy inside ``|z1| <= BOX``, a proper
    density whose ``log Z`` the grid of :func:`log_normalizer` resolves.

    Parameters
    ----------
    name : {"U1", "U2", "U3", "U4"}
        ``U1`` a ring with two lobes, ``U2`` a sinusoid, ``U3``/``U4`` split sinusoids.
    z : array, shape (..., 2)

    Returns
    -------
    array, shape (...)
    """
    z1 = z[..., 0]
    if name in CONFINED:
        return _open_energy(name, z) + 0.5 * (anp.maximum(anp.abs(z1) - BOX, 0.0) / WALL) ** 2
    return _open_energy(name, z)


def target_settings(name: str) -> dict[str, float]:
    """What shapes target ``name`` beyond its formula (the confining wall), stored with each fit."""
    return {"box": BOX, "wall": WALL} if name in CONFINED else {}


def _open_energy(name: str, z: Any) -> Any:
    """Rezende & Mohamed's energies as they wrote them (U2-U4 not normalizable)."""
    z1, z2 = z[..., 0], z[..., 1]
    if name == "U1":
        r = anp.sqrt(z1 ** 2 + z2 ** 2 + 1e-12)
        lobes = anp.stack([-0.5 * ((z1 - 2) / 0.6) ** 2, -0.5 * ((z1 + 2) / 0.6) ** 2], -1)
        return 0.5 * ((r - 2) / 0.4) ** 2 - logsumexp(lobes, axis=-1)
    if name == "U2":
        return 0.5 * ((z2 - _w1(z)) / 0.4) ** 2
    if name == "U3":
        w2 = 3 * anp.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
        parts = anp.stack([-0.5 * ((z2 - _w1(z)) / 0.35) ** 2,
                           -0.5 * ((z2 - _w1(z) + w2) / 0.35) ** 2], -1)
        return -logsumexp(parts, axis=-1)
    if name == "U4":
        w3 = 3 / (1 + anp.exp(-(z1 - 1) / 0.3))
        parts = anp.stack([-0.5 * ((z2 - _w1(z)) / 0.4) ** 2,
                           -0.5 * ((z2 - _w1(z) + w3) / 0.35) ** 2], -1)
        return -logsumexp(parts, axis=-1)
    raise ValueError(f"unknown energy {name!r}; choose one of U1, U2, U3, U4")


def log_normalizer(name: str, lim: float = 6.0, n: int = 600) -> float:
    """``log Z = log int exp(-U(z)) dz`` by the midpoint rule on ``[-lim, lim]^2``."""
    h = 2 * lim / n
    g = -lim + h * (np.arange(n) + 0.5)
    zz = np.stack(np.meshgrid(g, g), -1)
    u = np.asarray(energy(name, zz))
    return float(np.log(np.sum(np.exp(-u)) * h * h))


def sample_circles(n: int, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    """Two concentric circles (radii 1 and 2), equal mass, with Gaussian noise."""
    radius = np.where(rng.random(n) < 0.5, 1.0, 2.0)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return x + noise * rng.normal(size=(n, 2))


def sample_moons(n: int, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    """Two interleaving half-circles (sklearn's ``make_moons``), centred and scaled by 1.5."""
    upper = rng.random(n) < 0.5
    angle = rng.uniform(0, np.pi, n)
    x = np.where(upper[:, None], np.stack([np.cos(angle), np.sin(angle)], 1),
                 np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1))
    x = (x - np.array([0.5, 0.25])) * 1.5
    return x + noise * rng.normal(size=(n, 2))


DATASETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "circles": sample_circles, "moons": sample_moons}


def log_normal(z: Any) -> Any:
    """Log-density of the standard 2-D normal, over the last axis."""
    return -0.5 * anp.sum(z ** 2, axis=-1) - LOG_2PI


# ---------------------------------------------------------------------------------------------
# Hypernetwork CNF


def init_cnf(m: int, rng: np.random.Generator, hidden: int = HYPER_HIDDEN) -> np.ndarray:
    """Flat parameters of the hypernetwork ``t -> hidden -> hidden -> 7m`` of a CNF of width ``m``.

    PyTorch's ``Linear`` initialisation (uniform in ``+-1/sqrt(fan_in)``); the layout is that of
    :func:`unpack_cnf`.
    """
    parts = []
    for n_in, n_out in ((1, hidden), (hidden, hidden), (hidden, 7 * m)):
        bound = 1 / np.sqrt(n_in)
        parts += [rng.uniform(-bound, bound, n_in * n_out), rng.uniform(-bound, bound, n_out)]
    return np.concatenate(parts)


def cnf_size(m: int, hidden: int = HYPER_HIDDEN) -> int:
    """Number of parameters of the hypernetwork of a CNF of width ``m``."""
    return hidden * hidden + 3 * hidden + 7 * m * (hidden + 1)


@functools.lru_cache(maxsize=None)
def _layout(m: int, hidden: int) -> tuple[tuple[str, int, int, tuple[int, ...]], ...]:
    """``(name, start, stop, shape)`` of each block of the flat hypernetwork parameters."""
    out, start = [], 0
    for name, shape in (("w1", (1, hidden)), ("b1", (hidden,)), ("w2", (hidden, hidden)),
                        ("b2", (hidden,)), ("w3", (hidden, 7 * m)), ("b3", (7 * m,))):
        size = int(np.prod(shape))
        out.append((name, start, start + size, shape))
        start += size
    return tuple(out)


def unpack_cnf(theta: Any, m: int, hidden: int = HYPER_HIDDEN) -> dict[str, Any]:
    """Split the flat parameters into ``w1 (1, H), b1, w2 (H, H), b2, w3 (H, 7m), b3``."""
    if np.shape(theta) != (cnf_size(m, hidden),):
        raise ValueError(f"theta has shape {np.shape(theta)}, but a CNF of width {m} with hidden size "
                         f"{hidden} has {cnf_size(m, hidden)} parameters; build it with init_cnf(m, ...)")
    return {name: anp.reshape(theta[a:b], shape) for name, a, b, shape in _layout(m, hidden)}


def hypernet(t: Any, theta: Any, m: int, hidden: int = HYPER_HIDDEN) -> tuple[Any, Any, Any]:
    """The field's parameters at time ``t``: ``W`` (M, 2), ``b`` (M,), gated ``U`` (M, 2)."""
    p = unpack_cnf(theta, m, hidden)
    h = anp.tanh(t * p["w1"][0] + p["b1"])
    h = anp.tanh(anp.dot(h, p["w2"]) + p["b2"])
    out = anp.dot(h, p["w3"]) + p["b3"]
    w = anp.reshape(out[:2 * m], (m, 2))
    u = anp.reshape(out[2 * m:4 * m], (m, 2))
    gate = anp.reshape(out[4 * m:6 * m], (m, 2))
    return w, out[6 * m:], u / (1 + anp.exp(-gate))


def cnf_field(z: Any, t: Any, theta: Any, m: int, hidden: int = HYPER_HIDDEN) -> tuple[Any, Any]:
    """Velocity ``f(z, t)`` (shape ``(N, 2)``) and its exact ``tr(df/dz)`` (shape ``(N,)``).

    Written with ``autograd.numpy`` (differentiable to any order); :func:`cnf_dynamics` computes
    the same with a hand-written VJP, which the training uses.
    """
    w, b, u = hypernet(t, theta, m, hidden)
    h = anp.tanh(anp.dot(z, w.T) + b)
    f = anp.dot(h, u) / m
    trace = anp.dot(1 - h ** 2, anp.sum(u * w, axis=1)) / m
    return f, trace


def augmented_dynamics(field: Callable[..., tuple[Any, Any]]) -> Callable[..., Any]:
    """Theorem 1: dynamics of the ``(N, 3)`` state ``[z, log p]`` given ``field -> (f, tr)``."""

    def dynamics(state, t, *args):
        f, trace = field(state[:, :2], t, *args)
        return anp.concatenate([f, -trace[:, None]], axis=1)

    return dynamics


def cnf_width(theta: Any, hidden: int = HYPER_HIDDEN) -> int:
    """Width ``M`` of the CNF whose flat hypernetwork parameters are ``theta``."""
    m, rest = divmod(int(np.size(theta)) - cnf_size(0, hidden), 7 * (hidden + 1))
    if m < 1 or rest:
        raise ValueError(f"{np.size(theta)} parameters fit no CNF with hidden size {hidden}; "
                         "build them with init_cnf(m, ...)")
    return m


def _forward_cache(state: np.ndarray, t: float, theta: np.ndarray, m: int, hidden: int) -> dict:
    """Every intermediate of :func:`cnf_field` (plain numpy) that the hand-written VJP needs."""
    p = {name: theta[a:b].reshape(shape) for name, a, b, shape in _layout(m, hidden)}
    c = {"p": p, "z": state[:, :2], "t": t}
    c["h1"] = np.tanh(t * p["w1"][0] + p["b1"])
    c["h2"] = np.tanh(c["h1"] @ p["w2"] + p["b2"])
    out = c["h2"] @ p["w3"] + p["b3"]
    c["w"], c["b"] = out[:2 * m].reshape(m, 2), out[6 * m:]
    c["u_raw"], gate = out[2 * m:4 * m].reshape(m, 2), out[4 * m:6 * m].reshape(m, 2)
    c["sig"] = 1 / (1 + np.exp(-gate))
    c["u"] = c["u_raw"] * c["sig"]
    c["h"] = np.tanh(c["z"] @ c["w"].T + c["b"])
    c["uw"] = np.sum(c["u"] * c["w"], axis=1)
    return c


_LAST_CACHE: list = []
"""``[state, t, theta, intermediates]`` of the latest :func:`cnf_dynamics` call, which the VJP of the
same call (the very same argument objects) reuses instead of recomputing."""


@primitive
def cnf_dynamics(state: Any, t: Any, theta: Any, m: int, hidden: int = HYPER_HIDDEN) -> Any:
    """Theorem 1 for the hypernetwork CNF: ``d[z, log p]/dt = [f(z, t), -tr(df/dz)]``, shape (N, 3).

    ``state`` is ``(N, 3)``: the samples and their log-densities. An autograd primitive whose VJP
    (with respect to ``state``, ``t`` and ``theta``) is written by hand: one evaluation of it costs
    a few matrix products instead of an autograd trace of ``cnf_field``. First derivatives only.
    """
    c = _forward_cache(np.asarray(state), float(t), np.asarray(theta), m, hidden)
    _LAST_CACHE[:] = [state, t, theta, c]
    f = c["h"] @ c["u"] / m
    trace = (1 - c["h"] ** 2) @ c["uw"] / m
    return np.concatenate([f, -trace[:, None]], axis=1)


def _cnf_dynamics_vjp(c: dict, g: np.ndarray, m: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``g . d(cnf_dynamics)/d(state, t, theta)`` from the forward intermediates ``c``."""
    p, z, h, w, u = c["p"], c["z"], c["h"], c["w"], c["u"]
    g_f, g_tr = g[:, :2] / m, -g[:, 2] / m
    d = 1 - h ** 2
    g_u = h.T @ g_f
    g_uw = d.T @ g_tr
    g_a = ((g_f @ u.T) - 2 * h * np.outer(g_tr, c["uw"])) * d
    g_z = g_a @ w
    g_w = g_a.T @ z + g_uw[:, None] * u
    g_u = g_u + g_uw[:, None] * w
    g_gate = g_u * c["u_raw"] * c["sig"] * (1 - c["sig"])
    g_out = np.concatenate([g_w.ravel(), (g_u * c["sig"]).ravel(), g_gate.ravel(), g_a.sum(0)])
    g_s2 = (p["w3"] @ g_out) * (1 - c["h2"] ** 2)
    g_s1 = (p["w2"] @ g_s2) * (1 - c["h1"] ** 2)
    g_theta = np.concatenate([c["t"] * g_s1, g_s1, np.outer(c["h1"], g_s2).ravel(), g_s2,
                              np.outer(c["h2"], g_out).ravel(), g_out])
    g_state = np.concatenate([g_z, np.zeros((len(z), 1))], axis=1)
    return g_state, float(g_s1 @ p["w1"][0]), g_theta


def _cnf_dynamics_vjp_maker(argnums, ans, args, kwargs):
    state, t, theta, m = args[:4]
    hidden = args[4] if len(args) > 4 else kwargs.get("hidden", HYPER_HIDDEN)
    last = _LAST_CACHE
    if last and last[0] is state and last[1] is t and last[2] is theta and last[3]["p"]["b3"].size == 7 * m:
        c = last[3]
    else:
        c = _forward_cache(np.asarray(state), float(t), np.asarray(theta), m, hidden)

    def vjp(g):
        grads = _cnf_dynamics_vjp(c, np.asarray(g), m)
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(cnf_dynamics, _cnf_dynamics_vjp_maker)


def cnf_flow(z: Any, logp: Any, theta: Any, times: Any, tol: dict | None = None) -> tuple[Any, Any]:
    """Integrate samples ``z`` (N, 2) with log-densities ``logp`` (N,) over ``times``.

    ``tol`` holds :func:`odegrad.odeint` keywords (default :data:`EVAL_TOL`); the method is VODE's
    Adams (the paper's choice) and gradients come from the checkpointed adjoint.

    Returns
    -------
    zs : array, shape (len(times), N, 2)
    logps : array, shape (len(times), N)
    """
    state = anp.concatenate([z, anp.reshape(logp, (-1, 1))], axis=1)
    opts = {"method": "adams", "adjoint": "checkpoint", **(EVAL_TOL if tol is None else tol)}
    out = odeint(cnf_dynamics, state, np.asarray(times, dtype=float), args=(theta, cnf_width(theta)), **opts)
    return out[:, :, :2], out[:, :, 2]


def cnf_log_density(x: Any, theta: Any, t_end: float = 1.0, tol: dict | None = None) -> Any:
    """``log p_0(x)`` of data at ``t=0`` whose flow reaches ``N(0, I)`` at ``t=t_end``."""
    zs, deltas = cnf_flow(x, anp.zeros(x.shape[0]), theta, [0.0, t_end], tol)
    return log_normal(zs[-1]) - deltas[-1]


def cnf_sample(z0: Any, theta: Any, t_end: float = 1.0, tol: dict | None = None) -> tuple[Any, Any]:
    """Push ``N(0, I)`` samples ``z0`` from ``t=0`` to ``t_end``: returns ``(z_T, log q(z_T))``."""
    zs, logps = cnf_flow(z0, log_normal(z0), theta, [0.0, t_end], tol)
    return zs[-1], logps[-1]


# ---------------------------------------------------------------------------------------------
# Planar normalizing flow


def init_nf(k: int, rng: np.random.Generator) -> np.ndarray:
    """Flat parameters ``[u (k, 2), w (k, 2), b (k,)]`` of a planar flow of depth ``k``."""
    return np.concatenate([rng.normal(size=2 * k) * 0.1, rng.normal(size=2 * k) * 0.1, np.zeros(k)])


def unpack_nf(theta: Any) -> tuple[Any, Any, Any]:
    """``(u, w, b)`` of shapes ``(K, 2), (K, 2), (K,)`` from the flat parameters."""
    k, rest = divmod(int(np.size(theta)), 5)
    if rest or k < 1:
        raise ValueError(f"a planar flow has 5 parameters per layer, not {np.size(theta)} in all; "
                         "build them with init_nf(k, ...)")
    return anp.reshape(theta[:2 * k], (k, 2)), anp.reshape(theta[2 * k:4 * k], (k, 2)), theta[4 * k:]


def _u_hat(u: Any, w: Any) -> tuple[Any, Any]:
    """Rezende & Mohamed's invertible ``u_hat = u + coef w`` (``w.u_hat > -1``) and ``coef``."""
    wu = anp.sum(w * u)
    coef = (anp.logaddexp(0.0, wu) - 1 - wu) / (anp.sum(w * w) + 1e-12)
    return u + coef * w, coef


def nf_forward(z: Any, theta: Any) -> tuple[Any, Any]:
    """Apply the planar flow to ``z`` (N, 2): returns ``(z_K, sum_k log|det dz_k/dz_{k-1}|)``.

    Each layer is ``z + u_hat tanh(w.z + b)``; ``w.u_hat > -1`` makes it invertible, with
    ``det = 1 + tanh'(w.z + b) w.u_hat > 0``.
    """
    us, ws, bs = unpack_nf(theta)
    logdet = 0.0
    for u, w, b in zip(us, ws, bs):
        u_hat, _ = _u_hat(u, w)
        h = anp.tanh(anp.dot(z, w) + b)
        z = z + h[:, None] * u_hat
        logdet = logdet + anp.log(anp.abs(1 + (1 - h ** 2) * anp.sum(u_hat * w)) + 1e-12)
    return z, logdet


def nf_log_density(x: Any, theta: Any) -> Any:
    """``log p(x)`` of the planar flow used as a density model: ``x`` maps to ``N(0, I)`` noise."""
    z, logdet = nf_forward(x, theta)
    return log_normal(z) + logdet


def nf_inverse(z: np.ndarray, theta: np.ndarray, iters: int = 60) -> np.ndarray:
    """Invert :func:`nf_forward`: the ``x`` with ``nf_forward(x)[0] == z`` (sampling a density model).

    Each layer ``y = x + u_hat tanh(w.x + b)`` is inverted along ``w``: ``a = w.x`` solves
    ``w.y = a + (w.u_hat) tanh(a + b)``, increasing in ``a`` since ``w.u_hat > -1``, by bisection
    on a bracket of width ``2 |w.u_hat|`` (``iters`` halvings).
    """
    us, ws, bs = unpack_nf(np.asarray(theta, dtype=float))
    for u, w, b in zip(us[::-1], ws[::-1], bs[::-1]):
        u_hat, _ = _u_hat(u, w)
        wy, wu = z @ w, u_hat @ w
        lo, hi = wy - abs(wu) - 1e-12, wy + abs(wu) + 1e-12
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = mid + wu * np.tanh(mid + b) > wy
            lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
        z = z - np.tanh(0.5 * (lo + hi) + b)[:, None] * u_hat
    return z


_VALUE_AND_GRAD: dict[str, Callable] = {}


def _end_energy(name: str) -> Callable:
    """``value_and_grad`` of ``sum E(z)``: the target's ``U`` or (``"noise"``) ``-log N(z; 0, I)``."""
    if name not in _VALUE_AND_GRAD:
        fn = (lambda z: -anp.sum(log_normal(z))) if name == "noise" else (lambda z: anp.sum(energy(name, z)))
        _VALUE_AND_GRAD[name] = value_and_grad(fn)
    return _VALUE_AND_GRAD[name]


def _nf_loss_and_grad(theta: np.ndarray, z0: np.ndarray, end: str, base: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean(base - logdet + E_end(z_K))`` of the planar flow and its gradient (hand-written backward)."""
    us, ws, bs = unpack_nf(np.asarray(theta, dtype=float))
    n = len(z0)
    zs, hs, u_hats, coefs, dets = [z0], [], [], [], []
    for u, w, b in zip(us, ws, bs):
        u_hat, coef = _u_hat(u, w)
        h = np.tanh(zs[-1] @ w + b)
        zs.append(zs[-1] + h[:, None] * u_hat)
        hs.append(h), u_hats.append(u_hat), coefs.append(coef)
        dets.append(1 + (1 - h ** 2) * (u_hat @ w))
    e_sum, g_z = _end_energy(end)(zs[-1])
    logdet = sum(np.log(np.abs(d) + 1e-12) for d in dets)
    loss = float(np.mean(base - logdet) + e_sum / n)
    g_z = g_z / n
    grads = np.zeros((len(bs), 5))
    for k in range(len(bs) - 1, -1, -1):
        u, w, h, u_hat, coef, det, z = us[k], ws[k], hs[k], u_hats[k], coefs[k], dets[k], zs[k]
        g_det = -np.sign(det) / (np.abs(det) + 1e-12) / n
        g_h = g_z @ u_hat + g_det * (u_hat @ w) * (-2 * h)
        g_uw = g_det @ (1 - h ** 2)
        g_uhat = h @ g_z + g_uw * w
        g_a = g_h * (1 - h ** 2)
        g_w = g_a @ z + g_uw * u_hat + coef * g_uhat
        g_coef = g_uhat @ w
        wu, ww = u @ w, w @ w + 1e-12
        g_wu = g_coef * (1 / (1 + np.exp(-wu)) - 1) / ww
        grads[k, :2] = g_uhat + g_wu * w
        grads[k, 2:4] = g_w + g_wu * u - 2 * g_coef * coef / ww * w
        grads[k, 4] = g_a.sum()
        g_z = g_z + g_a[:, None] * w
    return loss, np.concatenate([grads[:, :2].ravel(), grads[:, 2:4].ravel(), grads[:, 4]])


def nf_kl_and_grad(theta: np.ndarray, z0: np.ndarray, target: str) -> tuple[float, np.ndarray]:
    """``reverse_kl_loss("nf", theta, z0, target)`` and its gradient by a hand-written backward pass.

    Equal to autograd's (tested) at a few numpy operations per layer instead of an autograd trace
    of the whole ``K``-layer loop.
    """
    return _nf_loss_and_grad(theta, z0, target, np.asarray(log_normal(z0)))


def nf_nll_and_grad(theta: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``-mean(nf_log_density(x, theta))`` and its gradient (hand-written backward pass)."""
    return _nf_loss_and_grad(theta, x, "noise", np.zeros(len(x)))


def reverse_kl_loss(model: str, p: dict, z0: Any, target: str, tol: dict | None = None) -> Any:
    """Monte Carlo ``E_q[log q(z) + U(z)]`` (= ``KL(q||p) - log Z``) from base samples ``z0``."""
    if model == "cnf":
        z, logq = cnf_sample(z0, p, tol=tol)
    elif model == "nf":
        z, logdet = nf_forward(z0, p)
        logq = log_normal(z0) - logdet
    else:
        raise ValueError(f"unknown model {model!r}; choose 'cnf' or 'nf'")
    return anp.mean(logq + energy(target, z))
