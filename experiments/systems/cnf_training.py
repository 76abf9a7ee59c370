"""Resumable training of the CNF experiment's fits (density matching and maximum likelihood).

One *fit* is one model (hypernetwork CNF of width ``M`` or planar NF of depth ``K``) trained on
one target (``U1``-``U3``, by reverse KL) or data set (``circles``, ``moons``, by maximum
likelihood) from one seed. :func:`run_fit` trains it with Adam under a cosine learning-rate
decay and writes a checkpoint (parameters, Adam moments, step, losses) every few hundred steps;
called again it resumes from the checkpoint and reaches the same parameters as an uninterrupted
run, because step ``i``'s batch is drawn from a generator seeded by ``(seed, i)`` alone. A finished
fit keeps only its parameters, losses and evaluation (small files that can be committed).
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from odegrad import ODESolveError
from odegrad.atomic import write_atomic

from . import cnf_models as cm
from .common import Adam, cosine_lr

EVAL_SEED = 12345


@dataclass(frozen=True)
class Budget:
    """Training budget and solver settings shared by all fits of one protocol.

    Attributes
    ----------
    cnf_iters, nf_iters : int
        Adam steps of each CNF / NF fit.
    cnf_lr, nf_lr : float
        Initial Adam step sizes; both decay to 0 along a cosine.
    batch : int
        Samples per step.
    train_rtol, train_atol : float
        Solver tolerances of the CNF during training (reported numbers use ``cm.EVAL_TOL``).
    t_end : float
        Length of the CNF's time interval.
    eval_samples : int
        Fresh samples of each reported KL or NLL.
    """

    cnf_iters: int = 10_000
    nf_iters: int = 20_000
    cnf_lr: float = 1e-2
    nf_lr: float = 1e-2
    batch: int = 256
    train_rtol: float = 1e-4
    train_atol: float = 1e-4
    t_end: float = 1.0
    eval_samples: int = 10_000

    def iters(self, model: str) -> int:
        """Number of Adam steps of ``model``."""
        return self.cnf_iters if model == "cnf" else self.nf_iters

    def lr(self, model: str, step: int) -> float:
        """Cosine-decayed step size of ``model`` at ``step``."""
        return cosine_lr(self.cnf_lr if model == "cnf" else self.nf_lr, step, self.iters(model))

    @property
    def train_tol(self) -> dict[str, float]:
        return {"rtol": self.train_rtol, "atol": self.train_atol}

    def settings(self, model: str) -> dict[str, Any]:
        """The fields that shape a fit of ``model`` (the planar NF ignores the CNF's, and vice versa)."""
        own = ("nf_iters", "nf_lr") if model == "nf" else ("cnf_iters", "cnf_lr", "train_rtol", "train_atol", "t_end")
        return {k: v for k, v in dataclasses.asdict(self).items() if k in own + ("batch", "eval_samples")}


@dataclass(frozen=True)
class Fit:
    """One fit: ``task`` ``"dm"`` (density matching) or ``"ml"`` (maximum likelihood)."""

    task: str
    model: str
    size: int
    data: str
    seed: int

    def __post_init__(self) -> None:
        if self.task not in ("dm", "ml") or self.model not in ("cnf", "nf") or self.size < 1:
            raise ValueError(f"bad fit {self}: task must be 'dm' or 'ml', model 'cnf' or 'nf', size >= 1")
        known = ("U1", "U2", "U3", "U4") if self.task == "dm" else tuple(cm.DATASETS)
        if self.data not in known:
            raise ValueError(f"unknown {'target' if self.task == 'dm' else 'data set'} {self.data!r}; "
                             f"choose one of {', '.join(known)}")

    @property
    def name(self) -> str:
        return f"{self.task}-{self.data}-{self.model}{self.size}-seed{self.seed}"

    def init(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.size, _code(self.data)])
        return cm.init_cnf(self.size, rng) if self.model == "cnf" else cm.init_nf(self.size, rng)


def _code(text: str) -> int:
    return zlib.crc32(text.encode())


def batch(fit: Fit, step: int, n: int) -> np.ndarray:
    """Step ``step``'s training batch: base samples (density matching) or data (likelihood)."""
    rng = np.random.default_rng([fit.seed, step, _code(fit.data), 1])
    if fit.task == "dm":
        return rng.normal(size=(n, 2))
    return cm.DATASETS[fit.data](n, rng)


def objective(fit: Fit, budget: Budget) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """``(theta, batch) -> (loss, gradient)``: reverse KL minus ``log Z``, or the mean NLL."""
    tol = budget.train_tol
    if fit.model == "nf":
        if fit.task == "dm":
            return lambda theta, z0: cm.nf_kl_and_grad(theta, z0, fit.data)
        return cm.nf_nll_and_grad
    if fit.task == "dm":
        return value_and_grad(lambda theta, z0: cm.reverse_kl_loss("cnf", theta, z0, fit.data, tol))
    return value_and_grad(lambda theta, x: -anp.mean(cm.cnf_log_density(x, theta, budget.t_end, tol)))


def evaluate(fit: Fit, theta: np.ndarray, budget: Budget) -> dict[str, float]:
    """KL(q || p) in nats (density matching) or test NLL in nats (likelihood), with its standard error.

    ``budget.eval_samples`` fresh samples, the same for every fit of a target or data set; the CNF
    is integrated at ``cm.EVAL_TOL``.
    """
    rng = np.random.default_rng([EVAL_SEED, _code(fit.data)])
    if fit.task == "dm":
        z0 = rng.normal(size=(budget.eval_samples, 2))
        if fit.model == "cnf":
            z, logq = cm.cnf_sample(z0, theta, budget.t_end)
        else:
            z, logdet = cm.nf_forward(z0, theta)
            logq = cm.log_normal(z0) - logdet
        terms = np.asarray(logq + cm.energy(fit.data, z)) + cm.log_normalizer(fit.data)
        key = "kl"
    else:
        x = cm.DATASETS[fit.data](budget.eval_samples, rng)
        terms = -np.asarray(cm.cnf_log_density(x, theta, budget.t_end) if fit.model == "cnf"
                            else cm.nf_log_density(x, theta))
        key = "nll"
    return {key: float(np.mean(terms)), f"{key}_se": float(np.std(terms) / np.sqrt(len(terms)))}


def checkpoint_path(directory: Path, fit: Fit) -> Path:
    return Path(directory) / f"{fit.name}.npz"


def _save(path: Path, **arrays: Any) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(path, buf.getvalue())


def load_fit(directory: Path, fit: Fit) -> dict[str, Any] | None:
    """The stored state of ``fit`` (``theta``, ``losses``, ``step``, ``done``, ``metrics``...) or None."""
    path = checkpoint_path(directory, fit)
    if not path.exists():
        return None
    with np.load(path) as data:
        state = {k: data[k] for k in data.files}
    state["budget"] = json.loads(str(state["budget"]))
    state["metrics"] = json.loads(str(state["metrics"]))
    state["done"] = bool(state["done"])
    state["step"] = int(state["step"])
    return state


def fit_settings(fit: Fit, budget: Budget) -> dict[str, Any]:
    """Everything that shapes ``fit``'s result: the model's budget fields and the target's wall."""
    return {**budget.settings(fit.model), **(cm.target_settings(fit.data) if fit.task == "dm" else {})}


def load_current(directory: Path, fit: Fit, budget: Budget) -> dict[str, Any] | None:
    """:func:`load_fit`, refusing a checkpoint written under other settings than ``budget``'s.

    Raises
    ------
    ValueError
        When the checkpoint was written under other settings of this model or target (delete it or
        use them).
    """
    stored = load_fit(directory, fit)
    wanted = fit_settings(fit, budget)
    if stored is not None and {k: stored["budget"].get(k) for k in wanted} != wanted:
        raise ValueError(f"{checkpoint_path(directory, fit)} was trained under {stored['budget']}, "
                         f"not {wanted}; delete it or run with its settings")
    return stored


def run_fit(fit: Fit, budget: Budget, directory: Path, every: int = 200, stop_at: int | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``fit`` to ``budget.iters`` steps (or until ``stop_at``), resuming from its checkpoint.

    Parameters
    ----------
    fit, budget
        What to train and how.
    directory : path
        Where the checkpoint ``<fit.name>.npz`` lives.
    every : int
        Steps between checkpoints.
    stop_at : int, optional
        Stop (checkpointed, unfinished) after this step, as an interrupted run would.
    log : callable
        Progress printer.

    Returns
    -------
    dict
        The state as :func:`load_fit` returns it.

    Raises
    ------
    ValueError
        When the checkpoint was written under other settings (see :func:`load_current`).
    """
    iters = budget.iters(fit.model)
    stored = load_current(directory, fit, budget)
    if stored is not None and stored["done"]:
        return stored
    opt = Adam(fit.init() if stored is None else stored["theta"])
    losses = [] if stored is None else list(stored["losses"])
    failures = 0 if stored is None else int(stored["failures"])
    if stored is not None:
        opt.m, opt.v, opt.t = stored["adam_m"], stored["adam_v"], stored["step"]
    step_fn = objective(fit, budget)
    start, last = time.time(), opt.t
    end = iters if stop_at is None else min(stop_at, iters)
    while opt.t < end:
        try:
            loss, g = step_fn(opt.x, batch(fit, opt.t, budget.batch))
        except ODESolveError:
            loss, g, failures = float("nan"), np.zeros_like(opt.x), failures + 1
        losses.append(float(loss))
        opt.step(np.asarray(g), lr=budget.lr(fit.model, opt.t))
        if opt.t % every == 0 or opt.t == end:
            _write(directory, fit, budget, opt, losses, failures, done=False)
            log(f"{fit.name} step {opt.t}/{iters} loss {np.nanmean(losses[-every:]):.4f} "
                f"({(time.time() - start) / (opt.t - last):.3f} s/step)")
    if opt.t >= iters:
        seconds = (time.time() - start) / max(opt.t - last, 1)
        metrics = {**evaluate(fit, opt.x, budget), "seconds_per_step": seconds}
        _write(directory, fit, budget, opt, losses, failures, done=True, metrics=metrics)
        log(f"{fit.name} done: {metrics}")
    return load_fit(directory, fit)


def _write(directory: Path, fit: Fit, budget: Budget, opt: Adam, losses: list[float], failures: int,
           done: bool, metrics: dict | None = None) -> None:
    moments = {} if done else {"adam_m": opt.m, "adam_v": opt.v}
    _save(checkpoint_path(directory, fit), theta=opt.x, step=opt.t, losses=np.asarray(losses),
          failures=failures, done=done, budget=json.dumps(fit_settings(fit, budget), sort_keys=True),
          metrics=json.dumps(metrics or {}), **moments)
