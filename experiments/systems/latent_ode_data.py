"""Data and resumable training for the latent-ODE experiment (Chen et al. 2018, section 5).

Spirals
    The generator of the authors' ``examples/latent_ode.py`` in torchdiffeq (``generate_spiral2d``
    as its ``__main__`` calls it), rewritten here: two Archimedean spirals on ``n_total = 500``
    equally spaced ``theta`` in ``[0, 6 pi]``,

    * clockwise: ``z = 6 pi + 1 - theta``, ``r = a + b * 50 / z``, ``x = (r cos z - 5, r sin z)``;
    * counter-clockwise: ``r = a + b * theta``, ``x = (r cos theta + 5, r sin theta)``;

    with ``a = 0``, ``b = 0.3``. Each of the ``n_spirals = 1000`` trajectories picks a direction
    with probability 1/2 and a start index drawn, as the authors do, from ``[100, 400)``, so that the
    training windows cover the curve from index 100 to its end (499); its ``n_window = 100``
    consecutive points from the start are observed with Gaussian noise of std 0.3. Times are
    relative to the window's first point (the dynamics are autonomous, as the authors'
    ``samp_ts = orig_ts[:nsample]``).

    The paper's Table 2 predicts the 100 points after the window. They exist on the 500-point
    curve only for starts up to 300 (the clockwise formula diverges at ``theta = 6 pi + 1``, so
    the curve cannot be extended), so :func:`split` draws the test spirals from those: their
    extrapolated points then lie on the part of the curve that the training windows observe. (An
    earlier protocol drew every start from ``[100, 300]``: no window then ever saw curve indices
    400-499, where the clockwise radius grows from 3.1 to 15, yet the extrapolations of the
    later starts ran there.) Where the curve has ended, ``truth`` is NaN.

Irregular observations
    For ``n`` (30, 50 or 100) observations, each trajectory keeps ``n`` of its 100 window points,
    drawn uniformly without replacement and sorted (the paper: "we randomly sample points from
    each trajectory without replacement"); ``n = 100`` keeps them all.

Resumable training
    :func:`train_resumable` runs Adam and writes the parameters, Adam's moments, the step and the
    loss history atomically to an ``.npz`` checkpoint every ``every`` steps. The random numbers of
    step ``k`` come from ``default_rng([seed, k])`` and every derivative evaluation is compiled from
    the first step (:func:`odegrad.compiled.at_once`), so a run resumed from any checkpoint takes
    exactly the steps of an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odegrad import compiled
from odegrad.atomic import write_atomic

from .common import Adam

SPIRAL = {"n_total": 500, "n_window": 100, "t_stop": 6 * np.pi, "a": 0.0, "b": 0.3, "noise": 0.3}
CENTRE = 5.0


def spiral_curves(n_total: int = 500, t_stop: float = 6 * np.pi, a: float = 0.0, b: float = 0.3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two noise-free spirals ``(theta, clockwise, counter_clockwise)``, each curve (n_total, 2)."""
    theta = np.linspace(0.0, t_stop, n_total)
    z_cw = t_stop + 1.0 - theta
    r_cw = a + b * 50.0 / z_cw
    cw = np.stack([r_cw * np.cos(z_cw) - CENTRE, r_cw * np.sin(z_cw)], axis=1)
    r_cc = a + b * theta
    cc = np.stack([r_cc * np.cos(theta) + CENTRE, r_cc * np.sin(theta)], axis=1)
    return theta, cw, cc


def make_spirals(n_spirals: int = 1000, n_total: int = 500, n_window: int = 100,
                 t_stop: float = 6 * np.pi, a: float = 0.0, b: float = 0.3, noise: float = 0.3,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Noisy windows of the authors' spirals and the noise-free window + extrapolation.

    Returns
    -------
    dict
        ``t`` (2W,) times relative to the window start, ``truth`` (S, 2W, 2) noise-free (the
        window, then the W points to extrapolate; NaN past the curve's end), ``noisy`` (S, W, 2)
        observations, ``direction`` (S,) +1 counter-clockwise / -1 clockwise, ``start`` (S,)
        index of the window's first point on the ``n_total``-point curve, drawn from
        ``[W, n_total - W)``, and ``extrapolable`` (S,) whether all W points after the window lie
        on the curve (``start <= n_total - 2W``).

    Raises
    ------
    ValueError
        If the curve is too short for the 100-point margin, the window and the extrapolation.
    """
    if n_total < 3 * n_window or n_window < 1:
        raise ValueError(f"n_total={n_total} must be at least 3 * n_window={3 * n_window} (a margin of "
                         f"n_window points before the window and n_window extrapolated points after it); "
                         f"raise n_total or lower n_window")
    rng = np.random.default_rng(seed)
    theta, cw, cc = spiral_curves(n_total, t_stop, a, b)
    start = rng.integers(n_window, n_total - n_window, size=n_spirals)
    ccw = rng.random(n_spirals) > 0.5
    idx = start[:, None] + np.arange(2 * n_window)[None, :]
    on_curve = idx < n_total
    idx = np.minimum(idx, n_total - 1)
    truth = np.where(on_curve[..., None], np.where(ccw[:, None, None], cc[idx], cw[idx]), np.nan)
    noisy = truth[:, :n_window] + noise * rng.normal(size=(n_spirals, n_window, 2))
    dt = theta[1] - theta[0]
    return {"t": dt * np.arange(2 * n_window), "truth": truth, "noisy": noisy,
            "direction": np.where(ccw, 1.0, -1.0), "start": start, "extrapolable": on_curve.all(axis=1)}


def subsample(n_spirals: int, n_window: int, n_obs: int, seed: int = 0) -> np.ndarray:
    """Sorted indices ``(S, n_obs)`` of the kept window points, drawn without replacement."""
    if not 1 <= n_obs <= n_window:
        raise ValueError(f"n_obs={n_obs} must lie in [1, n_window={n_window}]")
    rng = np.random.default_rng(seed)
    return np.sort(np.stack([rng.choice(n_window, n_obs, replace=False) for _ in range(n_spirals)]), axis=1)


def split(n_spirals: int, n_train: int, seed: int, testable: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Training and test rows: ``n_spirals - n_train`` test rows drawn (seeded) from the ``testable``
    ones (all by default), the rest train."""
    if not 0 < n_train < n_spirals:
        raise ValueError(f"n_train={n_train} must lie strictly between 0 and n_spirals={n_spirals}")
    candidates = np.arange(n_spirals) if testable is None else np.flatnonzero(testable)
    if len(candidates) < n_spirals - n_train:
        raise ValueError(f"only {len(candidates)} of {n_spirals} spirals can be test spirals (room for the "
                         f"extrapolation), fewer than the {n_spirals - n_train} asked; raise n_train")
    test = np.sort(np.random.default_rng([seed, 1]).permutation(candidates)[:n_spirals - n_train])
    return np.setdiff1d(np.arange(n_spirals), test), test


def batch_data(data: dict, idx: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``(B, n, 2)`` and their times ``(B, n)`` of spirals ``rows``."""
    return data["noisy"][rows[:, None], idx[rows]], data["t"][idx[rows]]


def make_events(n_seq: int = 4, t_end: float = 10.0, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Toy Poisson-process data for Figure 7: ``lambda_s(t) = exp(0.5 + 1.2 sin(t + phi_s))`` (by thinning).

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
# Checkpoints


class RunCheckpointError(ValueError):
    """A latent-ODE run checkpoint cannot be read or belongs to another run."""


def save_checkpoint(path: Path, opt: Adam, losses: list[float], seconds: float, meta: dict) -> None:
    """Write the Adam state, the loss history and ``meta`` to ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, x=opt.x, m=opt.m, v=opt.v, step=np.array(opt.t), losses=np.asarray(losses, float),
             seconds=np.array(seconds), meta=np.array(json.dumps(meta, sort_keys=True)))
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path, meta: dict | None = None) -> dict[str, Any]:
    """Read a checkpoint of :func:`save_checkpoint`; with ``meta``, check it is the same run.

    Raises
    ------
    RunCheckpointError
        If the file is unreadable or its ``meta`` differs from the one given.
    """
    try:
        with np.load(path) as f:
            ck = {k: f[k] for k in f.files}
        ck["meta"] = json.loads(str(ck["meta"]))
        ck["step"], ck["seconds"] = int(ck["step"]), float(ck["seconds"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise RunCheckpointError(f"checkpoint {path} cannot be read ({exc}); delete it to start that run afresh"
                                 ) from exc
    if meta is not None and ck["meta"] != meta:
        raise RunCheckpointError(f"checkpoint {path} belongs to another run ({ck['meta']}, asked for {meta}); "
                                 f"use another --out or delete the file")
    return ck


def read_json(path: Path, default: Any) -> Any:
    """The JSON content of ``path``, or ``default`` if there is no such file."""
    return json.loads(path.read_text()) if path.exists() else default


def train_resumable(loss_and_grad: Callable[[np.ndarray, np.random.Generator], tuple[float, np.ndarray]],
                    x0: np.ndarray, iters: int, lr: float, path: Path, meta: dict, every: int = 50,
                    log_every: int = 0, name: str = "", schedule: Callable[[int], float] | None = None,
                    stop_at: int | None = None) -> dict[str, Any]:
    """Adam for ``iters`` steps, resuming from and checkpointing to ``path``.

    Parameters
    ----------
    loss_and_grad : callable
        ``loss_and_grad(x, rng) -> (loss, grad)``; ``rng`` is step ``k``'s own generator
        ``default_rng([meta["seed"], k])``.
    x0 : ndarray
        Initial parameters (ignored when a checkpoint exists).
    iters : int
        Total steps; a checkpoint further on than ``iters`` is returned as it is.
    lr : float
        Adam step size (where there is no ``schedule``).
    path : Path
        The checkpoint file.
    meta : dict
        JSON-able description of the run (must contain ``seed``); a checkpoint with another
        ``meta`` raises :class:`RunCheckpointError`.
    every : int
        Steps between checkpoints (and one at the end).
    log_every : int
        Steps between progress lines on stdout (and one at the end); 0 prints none.
    name : str
        The run's name on those lines.
    schedule : callable, optional
        ``schedule(k)``: the step size of 0-based step ``k`` (e.g. a cosine decay over ``iters``).
    stop_at : int, optional
        Stop (checkpointed) after this many steps, as if interrupted there.

    Returns
    -------
    dict
        ``x`` parameters, ``losses``, ``step``, ``seconds`` (training time over all sessions).
    """
    opt, losses, seconds = Adam(x0, lr=lr), [], 0.0
    if path.exists():
        ck = load_checkpoint(path, meta)
        opt.x, opt.m, opt.v, opt.t = ck["x"], ck["m"], ck["v"], ck["step"]
        losses, seconds = list(ck["losses"]), ck["seconds"]
    start = time.time() - seconds
    with compiled.at_once():
        end = iters if stop_at is None else min(stop_at, iters)
        while opt.t < end:
            loss, g = loss_and_grad(opt.x, np.random.default_rng([meta["seed"], opt.t]))
            losses.append(float(loss))
            opt.step(g, lr=None if schedule is None else schedule(opt.t))
            if opt.t % every == 0 or opt.t == end:
                save_checkpoint(path, opt, losses, time.time() - start, meta)
            if log_every and (opt.t % log_every == 0 or opt.t == iters):
                print(f"  {name} step {opt.t:5d}  loss {loss:.4f}  ({time.time() - start:.0f}s)", flush=True)
    return {"x": opt.x, "losses": losses, "step": opt.t, "seconds": time.time() - start}
