"""Figures 4, 5 and 6 of the CNF experiment, drawn from finished fits (missing ones left blank)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import cnf_models as cm
from .common import pyplot

LIM = 4.0


def _hist(ax: Any, z: np.ndarray, lim: float, title: str) -> None:
    ax.hist2d(z[:, 0], z[:, 1], bins=100, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
    ax.set_title(title, fontsize=7)


def _blank(ax: Any, title: str) -> None:
    ax.text(0.5, 0.5, "not trained yet", ha="center", va="center", fontsize=6, transform=ax.transAxes)
    ax.set_title(title, fontsize=7)


def _density(ax: Any, logp: np.ndarray, lim: float, title: str) -> None:
    ax.imshow(np.exp(logp), origin="lower", extent=[-lim, lim, -lim, lim], cmap="viridis")
    ax.set_title(title, fontsize=7)


def _grid(lim: float, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-lim, lim, n)
    return g, np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


def _clean(axes: Any) -> None:
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")


def plot_figure4(table: dict, thetas: dict, budget: Any, path: Path, n: int = 20_000, res: int = 150) -> None:
    """Target, NF samples (every K), CNF samples (every M) per target, and KL against K = M.

    ``n`` samples per histogram, ``res`` x ``res`` grid points per density.
    """
    targets = sorted(t for t in table["per_seed"]) or ["U1"]
    sizes = sorted({int(k) for t in targets for k in table["per_seed"].get(t, {})}) or [1]
    plt = pyplot()
    cols = 2 + 2 * len(sizes)
    fig, axes = plt.subplots(len(targets), cols, figsize=(1.35 * cols, 1.45 * len(targets)), squeeze=False)
    z0 = np.random.default_rng(123).normal(size=(n, 2))
    g, grid = _grid(LIM, res)
    for row, target in zip(axes, targets):
        _density(row[0], -np.asarray(cm.energy(target, grid)).reshape(len(g), len(g)), LIM, f"target {target}")
        for j, size in enumerate(sizes):
            for offset, model, label in ((1, "nf", "NF K"), (1 + len(sizes), "cnf", "CNF M")):
                theta, ax = thetas.get(("dm", model, size, target)), row[offset + j]
                if theta is None:
                    _blank(ax, f"{label}={size}")
                    continue
                z = cm.nf_forward(z0, theta)[0] if model == "nf" else cm.cnf_sample(z0, theta, budget.t_end)[0]
                _hist(ax, np.asarray(z), LIM, f"{label}={size}")
        ax = row[-1]
        for model, style in (("nf", "s--"), ("cnf", "o-")):
            pts = [(int(k), v[model]) for k, v in table.get(target, {}).items() if model in v]
            if pts:
                k, v = zip(*sorted(pts))
                ax.plot(k, v, style, ms=3, label=model.upper())
        ax.set_xscale("log", base=2)
        ax.set_title("KL (nats) vs K=M", fontsize=7)
        ax.tick_params(labelsize=5)
        ax.legend(fontsize=5)
    _clean(axes[:, :-1])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _nf_paths(theta: np.ndarray, noise: np.ndarray, steps: int) -> list[np.ndarray]:
    """Noise pulled back through the last 0, K/steps, ..., K layers of a density-model planar NF."""
    us, ws, bs = cm.unpack_nf(theta)
    k = len(bs)
    out = []
    for j in np.linspace(0, k, steps).round().astype(int):
        if j == 0:
            out.append(noise)
            continue
        sub = np.concatenate([us[k - j:].ravel(), ws[k - j:].ravel(), bs[k - j:]])
        out.append(cm.nf_inverse(noise, sub))
    return out


def plot_figure5(table: dict, thetas: dict, budget: Any, path: Path, n: int = 20_000, res: int = 150,
                 steps: int = 5) -> None:
    """Maximum likelihood: noise carried to data by the CNF (over time) and the NF (over layers)."""
    names = sorted(table["per_seed"]) or list(cm.DATASETS)
    plt = pyplot()
    fig, axes = plt.subplots(2 * len(names), steps + 2, figsize=(1.6 * (steps + 2), 3.3 * len(names)),
                             squeeze=False)
    noise = np.random.default_rng(7).normal(size=(n, 2))
    lim = 3.0
    g, grid = _grid(lim, res)
    for i, name in enumerate(names):
        x = cm.DATASETS[name](n, np.random.default_rng(8))
        entropy = table["entropy"].get(name, float("nan"))
        for row, model in zip(axes[2 * i:2 * i + 2], ("cnf", "nf")):
            key = next((k for k in thetas if k[:2] == ("ml", model) and k[3] == name), None)
            nll = table.get(name, {}).get(f"{model}{key[2]}" if key else "", float("nan"))
            _hist(row[-1], x, lim, f"{name} data (H = {entropy:.2f})")
            if key is None:
                for ax in row[:-1]:
                    _blank(ax, f"{model.upper()} {name}")
                continue
            theta = thetas[key]
            if model == "cnf":
                times = np.linspace(budget.t_end, 0.0, steps)
                zs = np.asarray(cm.cnf_flow(noise, np.zeros(len(noise)), theta, times)[0])
                labels = [f"CNF t={t:.2f}" for t in times]
                logp = np.asarray(cm.cnf_log_density(grid, theta, budget.t_end))
            else:
                zs = _nf_paths(theta, noise, steps)
                labels = [f"NF layer {int(j)}" for j in np.linspace(key[2], 0, steps).round()]
                logp = np.asarray(cm.nf_log_density(grid, theta))
            for ax, z, label in zip(row, zs, labels):
                _hist(ax, np.asarray(z), lim, label)
            _density(row[-2], logp.reshape(len(g), len(g)), lim, f"{model.upper()}{key[2]} NLL {nll:.2f}")
    _clean(axes)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_figure6(thetas: dict, budget: Any, path: Path, n: int = 20_000, res: int = 150, steps: int = 6) -> None:
    """Density matching: the largest CNF of each target carrying noise (t=0) to the target (t=T)."""
    keys = sorted((k for k in thetas if k[:2] == ("dm", "cnf")), key=lambda k: (k[3], -k[2]))
    best = {}
    for k in keys:
        best.setdefault(k[3], k)
    plt = pyplot()
    rows = max(len(best), 1)
    fig, axes = plt.subplots(rows, steps + 1, figsize=(1.6 * (steps + 1), 1.7 * rows), squeeze=False)
    z0 = np.random.default_rng(11).normal(size=(n, 2))
    times = np.linspace(0.0, budget.t_end, steps)
    g, grid = _grid(LIM, res)
    for row, (target, key) in zip(axes, sorted(best.items())):
        zs = np.asarray(cm.cnf_flow(z0, np.zeros(len(z0)), thetas[key], times)[0])
        for ax, z, t in zip(row, zs, times):
            _hist(ax, z, LIM, f"M={key[2]}, t={t:.2f}")
        _density(row[-1], -np.asarray(cm.energy(target, grid)).reshape(len(g), len(g)), LIM, f"target {target}")
    _clean(axes)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
