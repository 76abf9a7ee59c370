"""Figures 7-9 of the latent-ODE experiment and the linear probe of Figure 9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import pyplot


def linear_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray
                 ) -> tuple[np.ndarray, float]:
    """Least-squares linear probe of a label ``y`` (+-1) from latent codes ``z`` (B, D).

    Returns
    -------
    w : ndarray, shape (D,)
        The probe's weights (without the intercept): the latent direction of the label.
    corr : float
        Pearson correlation of ``z_test @ w`` with ``y_test`` (held-out spirals).
    """
    design = np.concatenate([z_train, np.ones((len(z_train), 1))], axis=1)
    coef = np.linalg.lstsq(design, y_train, rcond=None)[0]
    w = coef[:-1]
    return w, float(np.corrcoef(z_test @ w, y_test)[0, 1])


def plot_fig7(fit: dict, rates: np.ndarray, grid: np.ndarray, true_rates: np.ndarray, path: Path) -> None:
    """Figure 7: event times and the learned vs true intensity of each sequence."""
    plt = pyplot()
    events = fit["events"]
    fig, axes = plt.subplots(len(events), 1, figsize=(6, 1.4 * len(events)), sharex=True, squeeze=False)
    for s, ax in enumerate(axes[:, 0]):
        ax.plot(grid, true_rates[:, s], color="0.6", lw=1, label="true rate")
        ax.plot(grid, rates[:, s], "b-", lw=1.3, label="learned rate")
        ax.plot(events[s], np.zeros_like(events[s]), "k|", ms=8, label="events")
        ax.set_ylabel(f"seq {s}", fontsize=8)
        if s == 0:
            ax.legend(fontsize=7, ncol=3, loc="upper right")
    axes[-1, 0].set_xlabel("t")
    err = fit["summary"]["rate_rel_l2_error"]
    axes[0, 0].set_title(f"Poisson process, latent ODE rate (relative L2 error {err:.3f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _spiral_panel(ax: Any, truth: np.ndarray, obs: np.ndarray, rec: np.ndarray, ext: np.ndarray, title: str) -> None:
    ax.plot(truth[:, 0], truth[:, 1], color="0.7", lw=1, label="ground truth")
    ax.plot(obs[:, 0], obs[:, 1], "k.", ms=3, label="observations")
    ax.plot(rec[:, 0], rec[:, 1], "b-", lw=1.2, label="reconstruction")
    ax.plot(ext[:, 0], ext[:, 1], "r-", lw=1.2, label="extrapolation")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")


def plot_fig8(truth: np.ndarray, obs: np.ndarray, direction: np.ndarray, rnn: dict, latent: dict, n_obs: int,
              path: Path) -> None:
    """Figure 8: (a) RNN and (b) latent ODE on a clockwise and a counter-clockwise test spiral,
    (c) the latent trajectories (first two principal components) coloured by direction."""
    plt = pyplot()
    picks = [int(np.nonzero(direction < 0)[0][0]), int(np.nonzero(direction > 0)[0][0])]
    fig, axes = plt.subplots(2, 3, figsize=(11, 7))
    for r, k in enumerate(picks):
        _spiral_panel(axes[r, 0], truth[k], obs[k], rnn["reconstruction"][k], rnn["extrapolation"][k],
                      f"(a) RNN (n={n_obs})")
        _spiral_panel(axes[r, 1], truth[k], obs[k], latent["reconstruction"][k], latent["extrapolation"][k],
                      f"(b) latent ODE (n={n_obs})")
    axes[0, 0].legend(fontsize=7, loc="best")
    z = latent["z"]
    flat = z.reshape(-1, z.shape[-1])
    mu = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mu, full_matrices=False)
    proj = (z - mu) @ vt[:2].T
    gs = axes[0, 2].get_gridspec()
    for ax in axes[:, 2]:
        ax.remove()
    ax = fig.add_subplot(gs[:, 2])
    for k in range(min(len(proj), 80)):
        ax.plot(proj[k, :, 0], proj[k, :, 1], color="tab:red" if direction[k] < 0 else "tab:blue", lw=0.7, alpha=0.7)
        ax.plot(proj[k, 0, 0], proj[k, 0, 1], "k.", ms=2)
    ax.plot([], [], color="tab:red", label="clockwise")
    ax.plot([], [], color="tab:blue", label="counter-clockwise")
    ax.legend(fontsize=7)
    ax.set_title("(c) latent trajectories (PCA of z(t))", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_fig9(paths: np.ndarray, values: np.ndarray, corr: float, path: Path) -> None:
    """Figure 9: decoded paths ``(K, G, 2)`` as ``z_t0`` moves along the probe direction by ``values``.

    Colour marks progress through time (purple to yellow), as in the paper.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(paths), figsize=(2.2 * len(paths), 2.6), squeeze=False)
    for ax, x, v in zip(axes[0], paths, values):
        ax.scatter(x[:, 0], x[:, 1], c=np.arange(len(x)), cmap="plasma", s=3)
        ax.set_title(f"probe coord {v:+.2f}", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=6)
    fig.suptitle(f"decoded paths along the linear probe's direction of z_t0 (test correlation with "
                 f"direction r = {corr:.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
