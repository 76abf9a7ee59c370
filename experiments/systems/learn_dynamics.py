"""Fit neural ODEs to trajectories of known 2-D systems (torchdiffeq's ``ode_demo``, extended).

Five systems: the linear spiral ``y' = y A`` with ``A = [[-0.1, 2], [-2, -0.1]]``, the cubic
spiral ``y' = y**3 A``, a random stable 2x2 linear system, Lotka-Volterra, and a damped
pendulum. For each, one noise-free trajectory is the data; the model ``y' = MLP(phi(y))`` (one
tanh hidden layer, ``phi(y) = y**3`` for the cubic spiral and a fixed affine normalisation
otherwise) is trained on random mini-batches of short segments, integrated as one ``(B, 2)``
state by :func:`odegrad.odeint`. The reported error is the RMSE of the whole trajectory
integrated from ``y0`` by the learned model against the truth.

Run ``python -m experiments.systems.learn_dynamics`` (``--quick`` for a smoke run, ``--iters`` to change
the budget). Writes ``learn_dynamics.png`` and ``learn_dynamics.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from experiments.cli import run_command
from odegrad import odeint

from .common import DEFAULT_OUT, Packer, init_linear, pyplot, save_json, train

SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])


@dataclasses.dataclass
class System:
    """A 2-D autonomous system and the trajectory used as data.

    Attributes
    ----------
    name : str
        Short identifier.
    rhs : callable
        ``rhs(y, t) -> dy/dt`` for ``y`` of shape ``(..., 2)`` (numpy).
    y0 : ndarray, shape (2,)
        Initial state.
    t_end : float
        Final time of the trajectory.
    n_times : int
        Number of equally spaced samples on ``[0, t_end]``.
    cubic : bool
        Feed ``y**3`` to the network (the torchdiffeq demo's model for the cubic spiral).
    """

    name: str
    rhs: Callable[[np.ndarray, float], np.ndarray]
    y0: np.ndarray
    t_end: float
    n_times: int
    cubic: bool = False


def random_stable_matrix(seed: int = 3) -> np.ndarray:
    """A random 2x2 matrix shifted so that its eigenvalues have real part at most -0.1."""
    a = np.random.default_rng(seed).normal(size=(2, 2))
    return a - (np.max(np.linalg.eigvals(a).real) + 0.1) * np.eye(2)


def make_systems(seed: int = 3) -> list[System]:
    """The five systems of the experiment."""
    rand_a = random_stable_matrix(seed)

    def lotka_volterra(y, t):
        x, p = y[..., 0], y[..., 1]
        return np.stack([1.5 * x - x * p, x * p - 3.0 * p], axis=-1)

    def pendulum(y, t):
        th, om = y[..., 0], y[..., 1]
        return np.stack([om, -np.sin(th) - 0.25 * om], axis=-1)

    return [
        System("linear_spiral", lambda y, t: y @ SPIRAL_A, np.array([2.0, 0.0]), 10.0, 400),
        System("cubic_spiral", lambda y, t: (y ** 3) @ SPIRAL_A, np.array([2.0, 0.0]), 25.0, 1000,
               cubic=True),
        System("random_linear", lambda y, t: y @ rand_a.T, np.array([1.5, -1.0]), 10.0, 400),
        System("lotka_volterra", lotka_volterra, np.array([1.0, 1.0]), 10.0, 400),
        System("damped_pendulum", pendulum, np.array([2.5, 0.0]), 20.0, 400),
    ]


def simulate(system: System) -> tuple[np.ndarray, np.ndarray]:
    """The true trajectory: times ``(T,)`` and states ``(T, 2)`` (tight tolerances)."""
    t = np.linspace(0.0, system.t_end, system.n_times)
    y = odeint(lambda y, tt: system.rhs(y, tt), system.y0, t, rtol=1e-10, atol=1e-10)
    return t, np.asarray(y)


def init_model(rng: np.random.Generator, hidden: int = 50) -> dict[str, np.ndarray]:
    """Parameters of the one-hidden-layer tanh network ``2 -> hidden -> 2``."""
    w1, b1 = init_linear(rng, 2, hidden)
    w2, b2 = init_linear(rng, hidden, 2, scale=0.5)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def model_rhs(y: Any, t: Any, p: dict, shift: Any, scale: Any, cubic: bool) -> Any:
    """Learned dynamics ``dy/dt`` for states ``y`` of shape ``(..., 2)``.

    The network sees ``y**3`` when ``cubic`` is set, else ``(y - shift) / scale``.
    """
    feat = y ** 3 if cubic else (y - shift) / scale
    return anp.dot(anp.tanh(anp.dot(feat, p["w1"]) + p["b1"]), p["w2"]) + p["b2"]


def fit_system(system: System, iters: int, batch_size: int = 16, batch_time: int = 10,
               hidden: int = 50, lr: float = 1e-2, seed: int = 0, log_every: int = 0) -> dict:
    """Train a neural ODE on ``system``'s trajectory and evaluate it.

    Returns
    -------
    dict
        ``t``, ``y_true``, ``y_pred`` (the learned model integrated from ``y0``), ``rmse``,
        ``losses`` and ``seconds``.
    """
    rng = np.random.default_rng(seed)
    t, y = simulate(system)
    shift, scale = y.mean(axis=0), y.std(axis=0) + 1e-3
    params = init_model(rng, hidden)
    packer = Packer(params)
    seg_t = t[:batch_time] - t[0]

    def loss(flat, y0s, targets):
        p = packer.unpack(flat)
        pred = odeint(model_rhs, y0s, seg_t, args=(p, shift, scale, system.cubic),
                      rtol=1e-5, atol=1e-6, method="adams")
        return anp.mean(anp.abs(pred - targets))

    vg = value_and_grad(loss)

    def step(flat, it):
        starts = rng.choice(len(t) - batch_time, size=batch_size, replace=False)
        idx = starts[None, :] + np.arange(batch_time)[:, None]
        return vg(flat, y[starts], y[idx])

    start = time.time()
    flat, losses = train(step, packer.pack(params), iters, lr, log_every, system.name)
    p = packer.unpack(flat)
    y_pred = np.asarray(odeint(model_rhs, system.y0, t, args=(p, shift, scale, system.cubic),
                               rtol=1e-7, atol=1e-8, method="adams"))
    rmse = float(np.sqrt(np.mean((y_pred - y) ** 2)))
    return {"t": t, "y_true": y, "y_pred": y_pred, "rmse": rmse, "losses": losses,
            "seconds": time.time() - start, "params": p, "shift": shift, "scale": scale}


def plot(systems: list[System], results: list[dict], path: Path) -> None:
    """Phase portrait (with the learned vector field) and time series, one row per system."""
    plt = pyplot()
    fig, axes = plt.subplots(len(systems), 2, figsize=(9, 2.6 * len(systems)))
    for row, system, res in zip(axes, systems, results):
        ax = row[0]
        y, yp = res["y_true"], res["y_pred"]
        lo, hi = y.min(axis=0), y.max(axis=0)
        pad = 0.15 * (hi - lo)
        gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 17),
                             np.linspace(lo[1] - pad[1], hi[1] + pad[1], 17))
        grid = np.stack([gx, gy], axis=-1)
        field = np.asarray(model_rhs(grid, 0.0, res["params"], res["shift"], res["scale"],
                                     system.cubic))
        norm = np.linalg.norm(field, axis=-1, keepdims=True) + 1e-9
        ax.quiver(gx, gy, (field / norm)[..., 0], (field / norm)[..., 1], color="0.75",
                  scale=30, width=0.003)
        ax.plot(y[:, 0], y[:, 1], "g-", lw=1.5, label="true")
        ax.plot(yp[:, 0], yp[:, 1], "b--", lw=1.2, label="learned")
        ax.set_title(f"{system.name}: phase portrait", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax = row[1]
        for k, c in enumerate(["g", "m"]):
            ax.plot(res["t"], y[:, k], c + "-", lw=1.5, label=f"true y{k}")
            ax.plot(res["t"], yp[:, k], c + "--", lw=1.2, label=f"learned y{k}")
        ax.set_title(f"{system.name}: time series (RMSE {res['rmse']:.3f})", fontsize=9)
        ax.set_xlabel("t", fontsize=8)
        ax.legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the JSON summary."""
    ap = argparse.ArgumentParser(prog="python -m experiments.systems.learn_dynamics", description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=400, help="Adam steps per system")
    ap.add_argument("--quick", action="store_true", help="smoke run (40 steps per system)")
    ap.add_argument("--batch-size", type=int, default=16,
                    help="trajectory segments per Adam step (default: %(default)s)")
    ap.add_argument("--batch-time", type=int, default=10, help="time points per segment (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam step size (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data and initial parameters (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="directory of learn_dynamics.png/.json (default: experiments/figures)")
    args = ap.parse_args(argv)
    iters = 40 if args.quick else args.iters
    systems = make_systems()
    results, summary = [], {"iters": iters, "batch_size": args.batch_size,
                            "batch_time": args.batch_time, "systems": {}}
    for system in systems:
        res = fit_system(system, iters, args.batch_size, args.batch_time, lr=args.lr,
                         seed=args.seed, log_every=max(iters // 4, 1))
        results.append(res)
        summary["systems"][system.name] = {"trajectory_rmse": res["rmse"],
                                           "final_train_loss": float(np.mean(res["losses"][-20:])),
                                           "seconds": res["seconds"]}
        print(f"{system.name:16s} trajectory RMSE {res['rmse']:.4f}  ({res['seconds']:.1f}s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(systems, results, args.out / "learn_dynamics.png")
    save_json(summary, args.out, "learn_dynamics.json")
    return summary


if __name__ == "__main__":
    run_command(__spec__.name, main)
