"""Small shared helpers for the paper's non-MNIST experiments (CNF, latent ODE, learned dynamics).

Parameters are kept as dicts of numpy arrays and optimised as one flat vector: :class:`Packer`
converts between the two with :func:`odegrad.pytree.flatten_args` (the flattening ``odeint``
applies to its ``args``), so the dict handed to :func:`odegrad.odeint` holds plain array boxes.
:class:`Adam` is the usual Adam on that flat vector.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from odegrad.atomic import write_atomic
from odegrad.pytree import flatten_args

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures"


class Packer:
    """Flatten a dict of float arrays into one vector and back (differentiably).

    Parameters
    ----------
    params : mapping of str to ndarray
        The template: names, shapes and initial values.
    """

    def __init__(self, params: Mapping[str, np.ndarray]):
        self.names = list(params)
        _, self._unflatten = flatten_args(self._ordered(params))

    def _ordered(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(params[k], dtype=float) for k in self.names}

    def pack(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate the raveled arrays of ``params`` in the template's order."""
        return np.asarray(flatten_args(self._ordered(params))[0], dtype=float)

    def unpack(self, flat: Any) -> dict[str, Any]:
        """Rebuild the dict from ``flat`` (works on autograd boxes)."""
        return self._unflatten(flat)


class Adam:
    """Adam (Kingma & Ba, 2015) on a flat parameter vector.

    Parameters
    ----------
    x0 : ndarray
        Initial parameters.
    lr : float
        Step size.
    b1, b2, eps : float
        The usual moment decay rates and denominator offset.
    """

    def __init__(self, x0: np.ndarray, lr: float = 1e-2, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        self.x = np.array(x0, dtype=float)
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = np.zeros_like(self.x)
        self.v = np.zeros_like(self.x)
        self.t = 0

    def step(self, g: np.ndarray, lr: float | None = None) -> np.ndarray:
        """Apply one update with gradient ``g`` (non-finite entries are zeroed) and return x."""
        g = np.where(np.isfinite(g), g, 0.0)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        self.x = self.x - (self.lr if lr is None else lr) * mhat / (np.sqrt(vhat) + self.eps)
        return self.x


def cosine_lr(base: float, step: int, steps: int) -> float:
    """Step size at 0-based ``step`` of a schedule that decays ``base`` to 0 along a half cosine over ``steps``."""
    return base * 0.5 * (1 + math.cos(math.pi * step / steps))


def init_linear(rng: np.random.Generator, n_in: int, n_out: int, scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Glorot-style weights of shape ``(n_in, n_out)`` and zero biases."""
    w = rng.normal(size=(n_in, n_out)) * scale * np.sqrt(2.0 / (n_in + n_out))
    return w, np.zeros(n_out)


def train(loss_and_grad: Callable[[np.ndarray, int], tuple[float, np.ndarray]], x0: np.ndarray,
          iters: int, lr: float, log_every: int = 0, name: str = "") -> tuple[np.ndarray, list[float]]:
    """Run Adam for ``iters`` steps; ``loss_and_grad(x, it)`` returns ``(loss, grad)``.

    Returns
    -------
    x : ndarray
        Final parameters.
    losses : list of float
        The loss at each step.
    """
    opt = Adam(x0, lr=lr)
    losses = []
    start = time.time()
    for it in range(iters):
        loss, g = loss_and_grad(opt.x, it)
        losses.append(float(loss))
        opt.step(g)
        if log_every and (it % log_every == 0 or it == iters - 1):
            print(f"  {name} it {it:5d}  loss {float(loss):.4f}  ({time.time() - start:.1f}s)", flush=True)
    return opt.x, losses


def save_json(data: Any, out: Path, name: str) -> Path:
    """Write ``data`` as indented JSON to ``out / name`` (atomically) and return the path."""
    return write_atomic(out / name, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` set up for headless (Agg) rendering."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
