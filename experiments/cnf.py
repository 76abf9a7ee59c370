"""Continuous normalizing flows (Chen et al. 2018, section 4): Figures 4 and 5 at small budgets.

The planar CNF moves samples with ``dz/dt = f(z, t) = sum_n sigma_n(t) u_n h(w_n.z + b_n + c_n t)``
(``h = tanh``, ``sigma_n(t)`` the sigmoid outputs of a small gating network of ``t``) and,
by Theorem 1 (instantaneous change of variables), their log-density with
``d log p / dt = -tr(df/dz) = -sum_n sigma_n(t) h'(w_n.z + b_n + c_n t) u_n.w_n``: the trace is
exact and costs ``O(M)`` per sample. The augmented state ``[z, log p]`` of a whole batch is one
``(N, 3)`` state of :func:`odegrad.odeint`, so gradients come from the adjoint method.

The comparison is the planar normalizing flow of depth ``K`` (Rezende & Mohamed, 2015) with the
invertibility constraint on ``u``.

Experiments
-----------
density matching (Figure 4)
    Minimise ``KL(q || p)`` to the unnormalised energies ``U1, U2, U3`` of Rezende & Mohamed.
    The reported loss is the KL in nats (``log Z`` of the target is computed on a grid), for
    ``K = M`` in ``--sizes`` (default 1 2 8 32 64), estimated on 4000 fresh samples.
maximum likelihood (Figure 5)
    Fit a planar CNF to samples of two concentric circles and of two moons; data sits at ``t=0``
    and noise at ``t=T``, so likelihood integrates forward and sampling integrates backwards. The
    figure shows the noise-to-data transformation at several times and the learned density.

Run ``python -m experiments.cnf`` (``--quick`` for a smoke run). The default budget (150 Adam
steps per density-matching fit, 300 per maximum-likelihood fit, batches of 128/256) is a few
percent of the paper's; ``--iters``, ``--ml-iters``, ``--batch`` and ``--lr`` set a paper-scale
budget (e.g. ``--iters 10000 --ml-iters 10000 --batch 512 --lr 1e-3``). Writes
``cnf_density_matching.png``, ``cnf_maximum_likelihood.png`` and ``cnf.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.scipy.special import logsumexp

from odegrad import odeint

from .paper_utils import DEFAULT_OUT, Packer, pyplot, save_json, train

LOG_2PI = float(np.log(2 * np.pi))
ODE_TOL = {"rtol": 1e-5, "atol": 1e-5, "method": "adams"}


# ---------------------------------------------------------------------------------------------
# Targets and data


def _w1(z):
    return anp.sin(2 * np.pi * z[..., 0] / 4)


def energy(name: str, z: Any) -> Any:
    """Rezende & Mohamed's (2015, Table 1) energies ``U(z)``, target ``p(z) ~ exp(-U(z))``.

    Parameters
    ----------
    name : {"U1", "U2", "U3", "U4"}
        ``U1`` a ring with two lobes, ``U2`` a sinusoid, ``U3``/``U4`` split sinusoids.
    z : array, shape (..., 2)

    Returns
    -------
    array, shape (...)
    """
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
    raise ValueError(f"unknown energy {name!r}")


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
# Planar CNF


def init_cnf(m: int, rng: np.random.Generator, gate_hidden: int = 16) -> dict[str, np.ndarray]:
    """Parameters of a planar CNF with ``m`` hidden units and a ``1 -> gate_hidden -> m`` gate."""
    return {
        "u": rng.normal(size=(m, 2)) / np.sqrt(m),
        "w": rng.normal(size=(m, 2)),
        "b": rng.normal(size=m) * 0.5,
        "c": np.zeros(m),
        "g1": rng.normal(size=(1, gate_hidden)),
        "gb1": rng.normal(size=gate_hidden) * 0.5,
        "g2": rng.normal(size=(gate_hidden, m)) / np.sqrt(gate_hidden),
        "gb2": np.zeros(m),
    }


def cnf_gate(t: Any, p: dict) -> Any:
    """``sigma(t)``, shape ``(M,)``: sigmoid of a one-hidden-layer tanh network of ``t``."""
    h = anp.tanh(t * p["g1"][0] + p["gb1"])
    return 1 / (1 + anp.exp(-(anp.dot(h, p["g2"]) + p["gb2"])))


def cnf_field(z: Any, t: Any, p: dict) -> tuple[Any, Any]:
    """Velocity ``f(z, t)`` (shape ``(N, 2)``) and exact ``tr(df/dz)`` (shape ``(N,)``)."""
    sig = cnf_gate(t, p)
    h = anp.tanh(anp.dot(z, p["w"].T) + p["b"] + p["c"] * t)
    f = anp.dot(h * sig, p["u"])
    trace = anp.dot(1 - h ** 2, sig * anp.sum(p["u"] * p["w"], axis=1))
    return f, trace


def augmented_dynamics(field: Callable[..., tuple[Any, Any]]) -> Callable[..., Any]:
    """Theorem 1: dynamics of the ``(N, 3)`` state ``[z, log p]`` given ``field -> (f, tr)``."""

    def dynamics(state, t, *args):
        f, trace = field(state[:, :2], t, *args)
        return anp.concatenate([f, -trace[:, None]], axis=1)

    return dynamics


cnf_dynamics = augmented_dynamics(cnf_field)


def cnf_flow(z: Any, logp: Any, p: dict, times: np.ndarray, **tol: Any) -> tuple[Any, Any]:
    """Integrate samples ``z`` (N, 2) with log-densities ``logp`` (N,) over ``times``.

    Returns
    -------
    zs : array, shape (len(times), N, 2)
    logps : array, shape (len(times), N)
    """
    state = anp.concatenate([z, anp.reshape(logp, (-1, 1))], axis=1)
    out = odeint(cnf_dynamics, state, times, args=(p,), **{**ODE_TOL, **tol})
    return out[:, :, :2], out[:, :, 2]


def cnf_log_density(x: Any, p: dict, t_end: float = 1.0, **tol: Any) -> Any:
    """``log p_0(x)`` of data at ``t=0`` whose flow reaches ``N(0, I)`` at ``t=t_end``."""
    zs, deltas = cnf_flow(x, anp.zeros(x.shape[0]), p, np.array([0.0, t_end]), **tol)
    return log_normal(zs[-1]) - deltas[-1]


def cnf_sample_forward(z0: Any, p: dict, t_end: float = 1.0, **tol: Any) -> tuple[Any, Any]:
    """Push ``N(0, I)`` samples ``z0`` from ``t=0`` to ``t_end``: returns ``(z_T, log q(z_T))``."""
    zs, logps = cnf_flow(z0, log_normal(z0), p, np.array([0.0, t_end]), **tol)
    return zs[-1], logps[-1]


# ---------------------------------------------------------------------------------------------
# Planar normalizing flow


def init_nf(k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Parameters of a planar flow of depth ``k``."""
    return {"u": rng.normal(size=(k, 2)) * 0.1, "w": rng.normal(size=(k, 2)) * 0.1,
            "b": np.zeros(k)}


def nf_forward(z: Any, p: dict) -> tuple[Any, Any]:
    """Apply the planar flow to ``z`` (N, 2): returns ``(z_K, sum_k log|det dz_k/dz_{k-1}|)``."""
    logdet = 0.0
    for k in range(p["u"].shape[0]):
        u, w, b = p["u"][k], p["w"][k], p["b"][k]
        wu = anp.sum(w * u)
        u_hat = u + (anp.logaddexp(0.0, wu) - 1 - wu) * w / (anp.sum(w * w) + 1e-12)
        h = anp.tanh(anp.dot(z, w) + b)
        z = z + h[:, None] * u_hat
        logdet = logdet + anp.log(anp.abs(1 + (1 - h ** 2) * anp.sum(u_hat * w)) + 1e-12)
    return z, logdet


# ---------------------------------------------------------------------------------------------
# Training


def reverse_kl_loss(model: str, p: dict, z0: Any, target: str, t_end: float = 1.0) -> Any:
    """Monte Carlo ``E_q[log q(z) + U(z)]`` (= ``KL(q||p) - log Z``) from base samples ``z0``."""
    if model == "cnf":
        z, logq = cnf_sample_forward(z0, p, t_end)
    else:
        z, logdet = nf_forward(z0, p)
        logq = log_normal(z0) - logdet
    return anp.mean(logq + energy(target, z))


def fit_density(model: str, size: int, target: str, iters: int, batch: int, lr: float,
                seed: int = 0, log_every: int = 0) -> tuple[dict, list[float]]:
    """Train a planar CNF (``model='cnf'``, M=size) or NF (``'nf'``, K=size) by reverse KL."""
    rng = np.random.default_rng(seed)
    params = init_cnf(size, rng) if model == "cnf" else init_nf(size, rng)
    packer = Packer(params)
    vg = value_and_grad(lambda flat, z0: reverse_kl_loss(model, packer.unpack(flat), z0, target))

    def step(flat, it):
        return vg(flat, rng.normal(size=(batch, 2)))

    flat, losses = train(step, packer.pack(params), iters, lr, log_every, f"{model}{size}-{target}")
    return packer.unpack(flat), losses


def fit_likelihood(data: Callable[[int, np.random.Generator], np.ndarray], m: int, iters: int,
                   batch: int, lr: float, seed: int = 0, log_every: int = 0
                   ) -> tuple[dict, list[float]]:
    """Maximum likelihood: minimise the mean negative log-likelihood of fresh data batches."""
    rng = np.random.default_rng(seed)
    params = init_cnf(m, rng)
    packer = Packer(params)
    vg = value_and_grad(lambda flat, x: -anp.mean(cnf_log_density(x, packer.unpack(flat))))

    def step(flat, it):
        return vg(flat, data(batch, rng))

    flat, losses = train(step, packer.pack(params), iters, lr, log_every, "cnf-ml")
    return packer.unpack(flat), losses


# ---------------------------------------------------------------------------------------------
# Figures


def _hist(ax: Any, z: np.ndarray, lim: float, title: str) -> None:
    ax.hist2d(z[:, 0], z[:, 1], bins=80, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


def plot_density_matching(targets: list[str], fitted: dict, size: int, path: Path) -> None:
    """Figure 4: target density, planar NF (K=size) and planar CNF (M=size) samples."""
    plt = pyplot()
    fig, axes = plt.subplots(len(targets), 3, figsize=(6.6, 2.2 * len(targets)), squeeze=False)
    lim = 4.0
    g = np.linspace(-lim, lim, 200)
    zz = np.stack(np.meshgrid(g, g), -1)
    rng = np.random.default_rng(123)
    z0 = rng.normal(size=(20000, 2))
    for row, target in zip(axes, targets):
        row[0].imshow(np.exp(-np.asarray(energy(target, zz))), origin="lower",
                      extent=[-lim, lim, -lim, lim], cmap="viridis")
        row[0].set_title(f"target {target}", fontsize=8)
        row[0].set_xticks([])
        row[0].set_yticks([])
        z_nf, _ = nf_forward(z0, fitted[("nf", size, target)])
        _hist(row[1], np.asarray(z_nf), lim, f"planar NF, K={size}")
        z_cnf, _ = cnf_sample_forward(z0, fitted[("cnf", size, target)])
        _hist(row[2], np.asarray(z_cnf), lim, f"planar CNF, M={size}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_maximum_likelihood(models: dict, data_fns: dict, path: Path, t_end: float = 1.0) -> None:
    """Figure 5: samples moving from noise (t=T) to data (t=0), data, and the learned density."""
    plt = pyplot()
    times = np.linspace(t_end, 0.0, 5)
    fig, axes = plt.subplots(len(models), len(times) + 2, figsize=(13, 2.1 * len(models)),
                             squeeze=False)
    rng = np.random.default_rng(7)
    lim = 3.0
    g = np.linspace(-lim, lim, 70)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for row, (name, p) in zip(axes, models.items()):
        noise = rng.normal(size=(4000, 2))
        zs, _ = cnf_flow(noise, np.zeros(len(noise)), p, times)
        zs = np.asarray(zs)
        for ax, z, tt in zip(row, zs, times):
            ax.scatter(z[:, 0], z[:, 1], s=0.3, c=noise[:, 0], cmap="coolwarm", alpha=0.6)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_title(f"{name}: t={tt:.2f}" + (" (noise)" if tt == t_end else ""), fontsize=8)
        x = data_fns[name](4000, rng)
        row[-2].scatter(x[:, 0], x[:, 1], s=0.3, c="k", alpha=0.5)
        row[-2].set_xlim(-lim, lim)
        row[-2].set_ylim(-lim, lim)
        row[-2].set_title("data samples", fontsize=8)
        logp = np.asarray(cnf_log_density(grid, p, t_end)).reshape(len(g), len(g))
        row[-1].imshow(np.exp(logp), origin="lower", extent=[-lim, lim, -lim, lim], cmap="viridis")
        row[-1].set_title("learned density", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the JSON summary."""
    ap = argparse.ArgumentParser(prog="python -m experiments.cnf", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 8, 32, 64],
                    help="K = M values for density matching")
    ap.add_argument("--targets", nargs="+", default=["U1", "U2", "U3"],
                    help="target densities of the density-matching fits (default: U1 U2 U3)")
    ap.add_argument("--iters", type=int, default=150, help="Adam steps per density-matching fit")
    ap.add_argument("--nf-iters", type=int, default=None,
                    help="steps for the planar NF (default: same as --iters)")
    ap.add_argument("--batch", type=int, default=128, help="samples per step")
    ap.add_argument("--ml-iters", type=int, default=300, help="Adam steps per maximum-likelihood fit")
    ap.add_argument("--ml-units", type=int, default=64, help="M of the maximum-likelihood CNF")
    ap.add_argument("--lr", type=float, default=2e-2, help="Adam step size (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 1 8, 15 steps")
    ap.add_argument("--skip-ml", action="store_true", help="leave out the maximum-likelihood fits (Fig. 5)")
    ap.add_argument("--skip-dm", action="store_true", help="leave out the density-matching fits (Fig. 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and samples (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="directory of the figures and cnf.json (default: experiments/figures)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.iters, args.ml_iters, args.ml_units = [1, 8], 15, 15, 16
    nf_iters = args.iters if args.nf_iters is None else args.nf_iters
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"budget": {"iters": args.iters, "nf_iters": nf_iters,
                                          "batch": args.batch, "ml_iters": args.ml_iters,
                                          "ml_units": args.ml_units, "lr": args.lr,
                                          "sizes": args.sizes, "t_end": 1.0}}
    if not args.skip_dm:
        fitted, table = {}, {}
        eval_z0 = np.random.default_rng(99).normal(size=(4000, 2))
        for target in args.targets:
            log_z = log_normalizer(target)
            for size in args.sizes:
                for model, iters in (("nf", nf_iters), ("cnf", args.iters)):
                    start = time.time()
                    p, _ = fit_density(model, size, target, iters, args.batch, args.lr, args.seed)
                    kl = float(reverse_kl_loss(model, p, eval_z0, target)) + log_z
                    fitted[(model, size, target)] = p
                    table[f"{target}/{model}/{size}"] = {"kl": kl, "seconds": time.time() - start}
                    print(f"{target} {model:3s} K=M={size:3d}  KL(q||p) = {kl:.4f}  "
                          f"({time.time() - start:.1f}s)", flush=True)
        summary["density_matching_kl"] = table
        plot_density_matching(args.targets, fitted, max(args.sizes),
                              args.out / "cnf_density_matching.png")
    if not args.skip_ml:
        models, ml = {}, {}
        for name, fn in DATASETS.items():
            start = time.time()
            p, losses = fit_likelihood(fn, args.ml_units, args.ml_iters, args.batch * 2, args.lr,
                                       args.seed, log_every=max(args.ml_iters // 5, 1))
            x = fn(2000, np.random.default_rng(5))
            nll = float(-np.mean(np.asarray(cnf_log_density(x, p))))
            models[name] = p
            ml[name] = {"test_nll": nll, "seconds": time.time() - start}
            print(f"ML {name}: test NLL {nll:.4f} nats ({time.time() - start:.1f}s)", flush=True)
        summary["maximum_likelihood"] = ml
        plot_maximum_likelihood(models, DATASETS, args.out / "cnf_maximum_likelihood.png")
    save_json(summary, args.out, "cnf.json")
    return summary


if __name__ == "__main__":
    main()
