"""Latent ODEs for irregularly sampled time series (Chen et al. 2018, section 5) at small budgets.

Data
    Bi-directional spirals: ``x(t) = r0 exp(-0.1 t) [cos(s t + phi), sin(s t + phi)]`` with
    direction ``s = -1`` (clockwise) for half of them and ``s = +1`` for the other half, random
    radius ``r0 ~ U(1.5, 2.5)`` and phase ``phi``, sampled at 200 equally spaced times on
    ``[0, 12]``: the first 100 are the observation window, the last 100 are to be extrapolated.
    Gaussian noise (std 0.1) is added to observations. Each trajectory keeps ``n`` (30, 50 or
    100) of its 100 window points, chosen without replacement.

Models
    latent ODE: an RNN (25 hidden units) reads the observations backwards in time (input
    ``[x_i, t_i, t_{i+1} - t_i]``) and gives a Gaussian posterior over the 4-D ``z_{t0}``; a
    reparameterised sample is integrated by :func:`odegrad.odeint` with dynamics
    ``4 -> 20 -> 4`` (tanh) and decoded by ``4 -> 20 -> 2``; the loss is the negative ELBO with
    Gaussian observation noise of std 0.1. The whole mini-batch is one ``(B, 4)`` ODE state,
    integrated over the union of the batch's observation times.
    RNN baselines (25 hidden units, Gaussian NLL of the next observation): the plain RNN gets
    ``x_i``; the time-gap RNN also gets ``t_{i+1} - t_i``. They extrapolate autoregressively.

Table 2 is the RMSE of the 100 extrapolated points against the noise-free trajectory on held-out
spirals. A Poisson-process likelihood (Figure 7) is fitted to toy event sequences: the state is
``[z, Lambda]`` with ``dLambda/dt = lambda(z)`` so that ``log p = sum_i log lambda(z(t_i)) -
Lambda(T)`` comes from the same solve.

Run ``python -m experiments.latent_ode`` (``--quick`` for a smoke run). The default budget is
200 Adam steps of 50 spirals per model and ``n``; ``--iters``, ``--batch``, ``--n-spirals`` and
``--n-train`` set a larger one (torchdiffeq's spiral demo uses 2000 full-batch steps, e.g.
``--iters 2000 --batch 800``). Writes
``latent_ode_fig8.png``, ``latent_ode_fig8c.png``, ``latent_ode_fig9.png``,
``latent_ode_poisson.png`` and ``latent_ode.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from odegrad import odeint

from .paper_utils import DEFAULT_OUT, Packer, init_linear, pyplot, save_json, train

PAPER_TABLE2 = {"rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813},
                "latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346}}
LATENT, RNN_HIDDEN, ODE_HIDDEN, DEC_HIDDEN = 4, 25, 20, 20
OBS_STD = 0.1
TRAIN_TOL = {"rtol": 1e-3, "atol": 1e-4, "method": "adams", "adjoint_seminorm": True}
EVAL_TOL = {"rtol": 1e-6, "atol": 1e-7, "method": "adams"}


# ---------------------------------------------------------------------------------------------
# Data


def make_spirals(n_spirals: int = 1000, n_window: int = 100, t_end: float = 12.0,
                 noise: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Bi-directional spirals on ``2 * n_window`` equally spaced times in ``[0, t_end]``.

    Returns
    -------
    dict
        ``t`` (2W,), ``truth`` (S, 2W, 2) noise-free, ``noisy`` (S, 2W, 2), ``direction`` (S,)
        with +1 counter-clockwise and -1 clockwise (first half clockwise).
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, t_end, 2 * n_window)
    direction = np.where(np.arange(n_spirals) < n_spirals // 2, -1.0, 1.0)
    radius = rng.uniform(1.5, 2.5, n_spirals)
    phase = rng.uniform(0, 2 * np.pi, n_spirals)
    angle = direction[:, None] * t[None, :] + phase[:, None]
    r = radius[:, None] * np.exp(-0.1 * t)[None, :]
    truth = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=-1)
    noisy = truth + noise * rng.normal(size=truth.shape)
    return {"t": t, "truth": truth, "noisy": noisy, "direction": direction}


def subsample(n_spirals: int, n_window: int, n_obs: int, seed: int = 0) -> np.ndarray:
    """Sorted indices ``(S, n_obs)`` of the kept window points, drawn without replacement."""
    rng = np.random.default_rng(seed)
    return np.sort(np.stack([rng.choice(n_window, n_obs, replace=False)
                             for _ in range(n_spirals)]), axis=1)


def make_events(n_seq: int = 4, t_end: float = 10.0, seed: int = 0
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Toy Poisson-process data: ``lambda_s(t) = exp(0.5 + 1.2 sin(t + phi_s))`` (by thinning).

    Returns
    -------
    events : list of ndarray
        Sorted event times of each sequence.
    phases : ndarray, shape (n_seq,)
    """
    rng = np.random.default_rng(seed)
    phases = np.linspace(0, 2 * np.pi, n_seq, endpoint=False)
    lam_max = np.exp(1.7)
    events = []
    for phi in phases:
        cand = np.sort(rng.uniform(0, t_end, rng.poisson(lam_max * t_end)))
        keep = rng.random(len(cand)) < true_intensity(cand, phi) / lam_max
        events.append(cand[keep])
    return events, phases


def true_intensity(t: np.ndarray, phase: float) -> np.ndarray:
    """The rate of :func:`make_events`."""
    return np.exp(0.5 + 1.2 * np.sin(t + phase))


# ---------------------------------------------------------------------------------------------
# Latent ODE


def init_latent_ode(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Encoder RNN, latent dynamics and decoder parameters."""
    p = {}
    p["rx"], p["rb"] = init_linear(rng, 4, RNN_HIDDEN)
    p["rh"] = np.eye(RNN_HIDDEN) * 0.5 + rng.normal(size=(RNN_HIDDEN, RNN_HIDDEN)) * 0.05
    p["ro"], p["rob"] = init_linear(rng, RNN_HIDDEN, 2 * LATENT)
    p["f1"], p["fb1"] = init_linear(rng, LATENT, ODE_HIDDEN)
    p["f2"], p["fb2"] = init_linear(rng, ODE_HIDDEN, LATENT, scale=0.5)
    p["d1"], p["db1"] = init_linear(rng, LATENT, DEC_HIDDEN)
    p["d2"], p["db2"] = init_linear(rng, DEC_HIDDEN, 2)
    return p


def latent_dynamics(z: Any, t: Any, p: dict) -> Any:
    """``dz/dt`` for a batch of latent states ``(B, 4)``."""
    return anp.dot(anp.tanh(anp.dot(z, p["f1"]) + p["fb1"]), p["f2"]) + p["fb2"]


def decode(z: Any, p: dict) -> Any:
    """Observation means ``(..., 2)`` from latent states ``(..., 4)``."""
    return anp.dot(anp.tanh(anp.dot(z, p["d1"]) + p["db1"]), p["d2"]) + p["db2"]


def encode(x: Any, t: np.ndarray, p: dict) -> tuple[Any, Any]:
    """Run the recognition RNN backwards over observations ``x`` (B, n, 2) at times ``t`` (B, n).

    Returns
    -------
    mean, logvar : arrays, shape (B, 4)
    """
    gaps = np.concatenate([t[:, 1:] - t[:, :-1], np.zeros((t.shape[0], 1))], axis=1)
    h = anp.zeros((x.shape[0], RNN_HIDDEN))
    for i in range(x.shape[1] - 1, -1, -1):
        inp = anp.concatenate([x[:, i], t[:, i:i + 1], gaps[:, i:i + 1]], axis=1)
        h = anp.tanh(anp.dot(inp, p["rx"]) + anp.dot(h, p["rh"]) + p["rb"])
    out = anp.dot(h, p["ro"]) + p["rob"]
    return out[:, :LATENT], out[:, LATENT:]


def dynamics_params(p: dict) -> dict:
    """The entries of ``p`` that the latent dynamics use (only these go through ``odeint``)."""
    return {k: p[k] for k in ("f1", "fb1", "f2", "fb2")}


def latent_path(z0: Any, times: np.ndarray, p: dict, **tol: Any) -> Any:
    """Integrate latent states ``z0`` (B, 4) from ``t=0`` over ``times`` (starting at 0)."""
    return odeint(latent_dynamics, z0, times, args=(dynamics_params(p),), **{**TRAIN_TOL, **tol})


def latent_ode_loss(p: dict, x: np.ndarray, t: np.ndarray, eps: np.ndarray) -> Any:
    """Negative ELBO per observation for a batch ``x`` (B, n, 2) observed at ``t`` (B, n)."""
    mean, logvar = encode(x, t, p)
    z0 = mean + anp.exp(0.5 * logvar) * eps
    times, inverse = np.unique(np.concatenate([[0.0], t.ravel()]), return_inverse=True)
    zs = latent_path(z0, times, p)
    idx = inverse[1:].reshape(t.shape)
    z_obs = zs[idx, np.arange(x.shape[0])[:, None]]
    loglik = -0.5 * anp.sum(((x - decode(z_obs, p)) / OBS_STD) ** 2) \
        - x.size * (np.log(OBS_STD) + 0.5 * np.log(2 * np.pi))
    kl = 0.5 * anp.sum(anp.exp(logvar) + mean ** 2 - 1 - logvar)
    return (kl - loglik) / x.size


def latent_ode_predict(p: dict, x: np.ndarray, t: np.ndarray, grid: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Decode the posterior mean path on ``grid`` (starting at 0): ``(x_hat, z)``, (B, G, ·)."""
    mean, _ = encode(x, t, p)
    zs = np.asarray(latent_path(mean, grid, p, **EVAL_TOL)).transpose(1, 0, 2)
    return np.asarray(decode(zs, p)), zs


# ---------------------------------------------------------------------------------------------
# RNN baselines


def init_rnn(rng: np.random.Generator, time_gap: bool) -> dict[str, np.ndarray]:
    """A tanh RNN predicting the mean and log-std of the next observation."""
    p = {}
    p["wx"], p["b"] = init_linear(rng, 3 if time_gap else 2, RNN_HIDDEN)
    p["wh"] = np.eye(RNN_HIDDEN) * 0.5 + rng.normal(size=(RNN_HIDDEN, RNN_HIDDEN)) * 0.05
    p["wo"], p["bo"] = init_linear(rng, RNN_HIDDEN, 4)
    return p


def _rnn_step(h: Any, x: Any, gap: Any, p: dict, time_gap: bool) -> tuple[Any, Any, Any]:
    inp = anp.concatenate([x, gap], axis=1) if time_gap else x
    h = anp.tanh(anp.dot(inp, p["wx"]) + anp.dot(h, p["wh"]) + p["b"])
    out = anp.dot(h, p["wo"]) + p["bo"]
    return h, x + out[:, :2], out[:, 2:]


def rnn_loss(p: dict, x: np.ndarray, t: np.ndarray, time_gap: bool) -> Any:
    """Gaussian negative log-likelihood per observation of each next observation."""
    h = anp.zeros((x.shape[0], RNN_HIDDEN))
    total = 0.0
    for i in range(x.shape[1] - 1):
        h, mu, logstd = _rnn_step(h, x[:, i], t[:, i + 1:i + 2] - t[:, i:i + 1], p, time_gap)
        total = total + anp.sum(0.5 * ((x[:, i + 1] - mu) / anp.exp(logstd)) ** 2 + logstd)
    return total / x[:, 1:].size + 0.5 * np.log(2 * np.pi)


def rnn_predict(p: dict, x: np.ndarray, t: np.ndarray, future: np.ndarray, time_gap: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """One-step predictions of the observations ``(B, n-1, 2)`` and the autoregressive
    extrapolation on the times ``future`` ``(F,)`` after the last observation: ``(B, F, 2)``."""
    h = np.zeros((x.shape[0], RNN_HIDDEN))
    recon = []
    for i in range(x.shape[1] - 1):
        h, mu, _ = _rnn_step(h, x[:, i], t[:, i + 1:i + 2] - t[:, i:i + 1], p, time_gap)
        recon.append(mu)
    prev_x, prev_t = x[:, -1], t[:, -1:]
    preds = []
    for tf in future:
        h, mu, _ = _rnn_step(h, prev_x, tf - prev_t, p, time_gap)
        preds.append(mu)
        prev_x, prev_t = mu, np.full_like(prev_t, tf)
    return np.stack(recon, 1), np.stack(preds, 1)


# ---------------------------------------------------------------------------------------------
# Poisson process


def init_poisson(rng: np.random.Generator, n_seq: int, latent: int = LATENT
                 ) -> dict[str, np.ndarray]:
    """Per-sequence initial latents, shared dynamics and the log-rate readout."""
    p = {"z0": rng.normal(size=(n_seq, latent)) * 0.5}
    p["f1"], p["fb1"] = init_linear(rng, latent, ODE_HIDDEN)
    p["f2"], p["fb2"] = init_linear(rng, ODE_HIDDEN, latent, scale=0.5)
    p["v"], p["c"] = init_linear(rng, latent, 1)
    return p


def intensity(z: Any, p: dict) -> Any:
    """Event rate ``lambda(z) = exp(z.v + c)``, shape ``z.shape[:-1]``."""
    return anp.exp(anp.dot(z, p["v"])[..., 0] + p["c"][0])


def poisson_dynamics(state: Any, t: Any, p: dict) -> Any:
    """Augmented ``(S, D + 1)`` dynamics: latent ODE and ``dLambda/dt = lambda(z)``."""
    z = state[:, :-1]
    return anp.concatenate([latent_dynamics(z, t, p), intensity(z, p)[:, None]], axis=1)


def poisson_path(p: dict, times: np.ndarray, **tol: Any) -> Any:
    """States ``[z, Lambda]`` of all sequences at ``times`` (starting at 0): (T, S, D + 1)."""
    s0 = anp.concatenate([p["z0"], anp.zeros((p["z0"].shape[0], 1))], axis=1)
    q = {k: p[k] for k in ("f1", "fb1", "f2", "fb2", "v", "c")}
    return odeint(poisson_dynamics, s0, times, args=(q,), **{**TRAIN_TOL, **tol})


def poisson_loglik(p: dict, events: list[np.ndarray], t_end: float) -> Any:
    """``sum_s [sum_i log lambda(z_s(t_i)) - int_0^T lambda(z_s(t)) dt]``, one ODE solve."""
    all_t = np.concatenate([[0.0, t_end]] + list(events))
    times, inverse = np.unique(all_t, return_inverse=True)
    path = poisson_path(p, times)
    total = -anp.sum(path[-1, :, -1])
    offset = 2
    for s, ev in enumerate(events):
        idx = inverse[offset:offset + len(ev)]
        offset += len(ev)
        total = total + anp.sum(anp.log(intensity(path[idx, s, :-1], p)))
    return total


# ---------------------------------------------------------------------------------------------
# Experiment drivers


def batch_data(data: dict, idx: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``(B, n, 2)`` and times ``(B, n)`` of spirals ``rows``."""
    x = data["noisy"][rows[:, None], idx[rows]]
    return x, data["t"][idx[rows]]


def run_table2(data: dict, n_obs: int, n_train: int, iters: int, batch: int, lr: float,
               seed: int, log_every: int) -> dict:
    """Train the latent ODE and both RNNs on ``n_obs`` observations per spiral; test RMSE."""
    n_spirals = data["truth"].shape[0]
    window = data["t"].shape[0] // 2
    idx = subsample(n_spirals, window, n_obs, seed=seed + n_obs)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_spirals)
    train_rows, test_rows = perm[:n_train], perm[n_train:]
    future = data["t"][window:]
    x_te, t_te = batch_data(data, idx, test_rows)
    truth_future = data["truth"][test_rows, window:]
    result = {"n_obs": n_obs, "models": {}}

    p0 = init_latent_ode(np.random.default_rng(seed))
    packer = Packer(p0)
    vg = value_and_grad(lambda flat, x, t, e: latent_ode_loss(packer.unpack(flat), x, t, e))

    def step(flat, it):
        rows = rng.choice(train_rows, batch, replace=False)
        x, t = batch_data(data, idx, rows)
        return vg(flat, x, t, rng.normal(size=(batch, LATENT)))

    start = time.time()
    flat, losses = train(step, packer.pack(p0), iters, lr, log_every, f"latent-ODE n={n_obs}")
    p = packer.unpack(flat)
    x_hat, zs = latent_ode_predict(p, x_te, t_te, data["t"])
    rmse = float(np.sqrt(np.mean((x_hat[:, window:] - truth_future) ** 2)))
    result["models"]["latent_ode"] = {"rmse": rmse, "seconds": time.time() - start,
                                      "final_loss": float(np.mean(losses[-20:]))}
    result["latent_ode"] = {"params": p, "x_hat": x_hat, "z": zs}

    for name, gap in (("rnn", False), ("rnn_time_gap", True)):
        q0 = init_rnn(np.random.default_rng(seed), gap)
        qpack = Packer(q0)
        qvg = value_and_grad(lambda flat, x, t, g=gap, qpack=qpack: rnn_loss(qpack.unpack(flat), x, t, g))

        def qstep(flat, it, qvg=qvg):
            rows = rng.choice(train_rows, batch, replace=False)
            return qvg(flat, *batch_data(data, idx, rows))

        start = time.time()
        qflat, qlosses = train(qstep, qpack.pack(q0), iters, lr, log_every, f"{name} n={n_obs}")
        q = qpack.unpack(qflat)
        recon, preds = rnn_predict(q, x_te, t_te, future, gap)
        rmse = float(np.sqrt(np.mean((preds - truth_future) ** 2)))
        result["models"][name] = {"rmse": rmse, "seconds": time.time() - start,
                                  "final_loss": float(np.mean(qlosses[-20:]))}
        result[name] = {"recon": recon, "preds": preds}
    result.update({"idx": idx, "test_rows": test_rows, "x_te": x_te, "t_te": t_te})
    return result


def fit_poisson(events: list[np.ndarray], t_end: float, iters: int, lr: float, seed: int,
                log_every: int) -> tuple[dict, list[float]]:
    """Maximum likelihood of the latent-ODE Poisson process on ``events``."""
    p0 = init_poisson(np.random.default_rng(seed), len(events))
    packer = Packer(p0)
    n_events = sum(len(e) for e in events)
    vg = value_and_grad(lambda flat: -poisson_loglik(packer.unpack(flat), events, t_end) / n_events)
    flat, losses = train(lambda flat, it: vg(flat), packer.pack(p0), iters, lr, log_every, "poisson")
    return packer.unpack(flat), losses


# ---------------------------------------------------------------------------------------------
# Figures


def plot_fig8(data: dict, res: dict, path: Path, n_show: int = 2) -> None:
    """Figures 8a/8b: RNN vs latent ODE reconstruction and extrapolation on test spirals."""
    plt = pyplot()
    window = data["t"].shape[0] // 2
    rows = res["test_rows"]
    dirs = data["direction"][rows]
    picks = [int(np.nonzero(dirs < 0)[0][0]), int(np.nonzero(dirs > 0)[0][0])][:n_show]
    fig, axes = plt.subplots(len(picks), 2, figsize=(7, 3.3 * len(picks)), squeeze=False)
    for r, k in enumerate(picks):
        truth = data["truth"][rows[k]]
        obs = res["x_te"][k]
        for c, (title, rec, ext) in enumerate((
                ("(a) RNN, time-gap input", res["rnn_time_gap"]["recon"][k],
                 res["rnn_time_gap"]["preds"][k]),
                ("(b) latent ODE", res["latent_ode"]["x_hat"][k, :window],
                 res["latent_ode"]["x_hat"][k, window:]))):
            ax = axes[r, c]
            ax.plot(truth[:, 0], truth[:, 1], color="0.7", lw=1, label="ground truth")
            ax.plot(obs[:, 0], obs[:, 1], "k.", ms=3, label="observations")
            ax.plot(rec[:, 0], rec[:, 1], "b-", lw=1.2, label="reconstruction")
            ax.plot(ext[:, 0], ext[:, 1], "r-", lw=1.2, label="extrapolation")
            ax.set_title(f"{title} (n={res['n_obs']})", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_fig8c(data: dict, res: dict, path: Path) -> None:
    """Figure 8c: latent trajectories (first two principal components) coloured by direction."""
    plt = pyplot()
    z = res["latent_ode"]["z"]
    flat = z.reshape(-1, z.shape[-1])
    mu = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mu, full_matrices=False)
    proj = (z - mu) @ vt[:2].T
    dirs = data["direction"][res["test_rows"]]
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for k in range(min(len(proj), 60)):
        ax.plot(proj[k, :, 0], proj[k, :, 1], color="tab:red" if dirs[k] < 0 else "tab:blue",
                lw=0.7, alpha=0.7)
        ax.plot(proj[k, 0, 0], proj[k, 0, 1], "k.", ms=2)
    ax.plot([], [], color="tab:red", label="clockwise")
    ax.plot([], [], color="tab:blue", label="counter-clockwise")
    ax.legend(fontsize=7)
    ax.set_title("(c) latent trajectories (PCA of z(t))", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_fig9(data: dict, res: dict, path: Path) -> tuple[int, float]:
    """Figure 9: decoded trajectories as the latent coordinate most tied to direction varies.

    Returns the coordinate and its correlation with the direction label.
    """
    plt = pyplot()
    p = res["latent_ode"]["params"]
    z0 = res["latent_ode"]["z"][:, 0]
    dirs = data["direction"][res["test_rows"]]
    corr = [abs(np.corrcoef(z0[:, j], dirs)[0, 1]) for j in range(z0.shape[1])]
    j = int(np.argmax(corr))
    base = z0.mean(0)
    values = np.linspace(z0[:, j].min(), z0[:, j].max(), 7)
    starts = np.repeat(base[None], len(values), 0)
    starts[:, j] = values
    grid = data["t"]
    zs = np.asarray(latent_path(starts, grid, p, **EVAL_TOL)).transpose(1, 0, 2)
    xs = np.asarray(decode(zs, p))
    fig, ax = plt.subplots(figsize=(4.2, 4))
    cmap = plt.get_cmap("viridis")
    for k, x in enumerate(xs):
        ax.plot(x[:, 0], x[:, 1], color=cmap(k / (len(xs) - 1)), lw=1.2,
                label=f"z{j}(t0)={values[k]:.2f}")
        ax.plot(x[0, 0], x[0, 1], "k.", ms=3)
    ax.legend(fontsize=6)
    ax.set_aspect("equal")
    ax.set_title(f"decoded paths as latent z{j}(t0) varies", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return j, float(corr[j])


def plot_poisson(events: list[np.ndarray], phases: np.ndarray, p: dict, t_end: float,
                 path: Path) -> None:
    """Figure 7: event times and the learned vs true intensity of each sequence."""
    plt = pyplot()
    grid = np.linspace(0, t_end, 300)
    path_states = np.asarray(poisson_path(p, grid, **EVAL_TOL))
    lam = np.asarray(intensity(path_states[:, :, :-1], p))
    fig, axes = plt.subplots(len(events), 1, figsize=(6, 1.4 * len(events)), sharex=True,
                             squeeze=False)
    for s, ax in enumerate(axes[:, 0]):
        ax.plot(grid, true_intensity(grid, phases[s]), color="0.6", lw=1, label="true rate")
        ax.plot(grid, lam[:, s], "b-", lw=1.3, label="learned rate")
        ax.plot(events[s], np.zeros_like(events[s]), "k|", ms=8, label="events")
        ax.set_ylabel(f"seq {s}", fontsize=8)
        if s == 0:
            ax.legend(fontsize=7, ncol=3, loc="upper right")
    axes[-1, 0].set_xlabel("t")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the JSON summary."""
    ap = argparse.ArgumentParser(prog="python -m experiments.latent_ode", description=__doc__.split("\n")[0])
    ap.add_argument("--n-obs", type=int, nargs="+", default=[30, 50, 100],
                    help="observed points per training spiral, one Table 2 row each (default: 30 50 100)")
    ap.add_argument("--n-spirals", type=int, default=1000, help="spirals generated (default: %(default)s)")
    ap.add_argument("--n-train", type=int, default=800,
                    help="of which used for training, the rest for testing (default: %(default)s)")
    ap.add_argument("--iters", type=int, default=200, help="Adam steps per model and n")
    ap.add_argument("--batch", type=int, default=50, help="spirals per Adam step (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam step size (default: %(default)s)")
    ap.add_argument("--poisson-iters", type=int, default=200,
                    help="Adam steps of the Poisson-process fit (Fig. 7) (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run (n=30 only, 10 steps)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data and initial parameters (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="directory of the figures and latent_ode.json (default: experiments/figures)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_obs, args.iters, args.poisson_iters = [30], 10, 10
        args.n_spirals, args.n_train = 200, 150
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_spirals(args.n_spirals, seed=args.seed)
    summary: dict[str, Any] = {
        "budget": {k: getattr(args, k) for k in ("n_obs", "n_spirals", "n_train", "iters",
                                                 "batch", "lr", "poisson_iters")},
        "paper_table2": PAPER_TABLE2, "table2": {}}
    log_every = max(args.iters // 5, 1)
    last = None
    for n_obs in args.n_obs:
        res = run_table2(data, n_obs, args.n_train, args.iters, args.batch, args.lr, args.seed,
                         log_every)
        summary["table2"][str(n_obs)] = res["models"]
        last = res
    print("\nTable 2: predictive RMSE over 100 extrapolated points (noise-free truth)")
    print(f"{'# obs':>6} | {'RNN':>7} {'RNN+gap':>8} {'latentODE':>9} | "
          f"{'paper RNN':>9} {'paper latODE':>12}")
    for n_obs in args.n_obs:
        m = summary["table2"][str(n_obs)]
        print(f"{n_obs:>6} | {m['rnn']['rmse']:7.4f} {m['rnn_time_gap']['rmse']:8.4f} "
              f"{m['latent_ode']['rmse']:9.4f} | {PAPER_TABLE2['rnn'].get(n_obs, float('nan')):9.4f} "
              f"{PAPER_TABLE2['latent_ode'].get(n_obs, float('nan')):12.4f}")
    plot_fig8(data, last, args.out / "latent_ode_fig8.png")
    plot_fig8c(data, last, args.out / "latent_ode_fig8c.png")
    coord, corr = plot_fig9(data, last, args.out / "latent_ode_fig9.png")
    summary["fig9"] = {"n_obs": last["n_obs"], "latent_coordinate": coord,
                       "abs_corr_with_direction": corr}
    events, phases = make_events(seed=args.seed)
    t_end = 10.0
    start = time.time()
    pp, plosses = fit_poisson(events, t_end, args.poisson_iters, args.lr, args.seed,
                              max(args.poisson_iters // 5, 1))
    grid = np.linspace(0, t_end, 300)
    lam = np.asarray(intensity(np.asarray(poisson_path(pp, grid, **EVAL_TOL))[:, :, :-1], pp))
    truth = np.stack([true_intensity(grid, ph) for ph in phases], 1)
    summary["poisson"] = {"n_events": int(sum(len(e) for e in events)),
                          "final_nll_per_event": float(plosses[-1]),
                          "rate_rel_l2_error": float(np.linalg.norm(lam - truth) / np.linalg.norm(truth)),
                          "seconds": time.time() - start}
    print(f"Poisson process: NLL/event {plosses[-1]:.4f}, relative rate error "
          f"{summary['poisson']['rate_rel_l2_error']:.3f}")
    plot_poisson(events, phases, pp, t_end, args.out / "latent_ode_poisson.png")
    save_json(summary, args.out, "latent_ode.json")
    return summary


if __name__ == "__main__":
    main()
