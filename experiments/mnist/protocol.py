"""What the Table 1 runs train, without TensorFlow: model names, budgets, run-directory files.

:class:`Protocol` is a training budget and :data:`PROTOCOLS` the four the commands offer;
:func:`protocol_for` adapts one to a model; :data:`CHECKPOINT` and :data:`RESULTS` name the files of
a run directory and :func:`move_aside` starts one over.  The training itself is
:mod:`experiments.mnist.training`; this module imports no TensorFlow so that the commands can
parse their options and check their extras before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

MODEL_NAMES = ("mlp", "resnet", "rknet", "odenet")
"""The four models of Table 1, in the table's order."""

RK_METHODS = ("dopri5", "rk4")
"""Solvers of the RK-Net: adaptive Dormand-Prince 5(4) (the paper's) or fixed-step RK4."""

CHECKPOINT = "checkpoint.npz"
"""A run directory's checkpoint (see :mod:`experiments.mnist.training`)."""

RESULTS = "results.json"
"""A run directory's results, rewritten every epoch."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A training budget.

    Attributes
    ----------
    name : str
        ``paper``, ``quick``, ``smoke`` or a custom label.
    epochs : int
        Number of epochs.
    batch_size : int
        Training batch size (the learning rate scales with ``batch_size / 128``).
    base_lr : float
        Learning rate at batch size 128.
    momentum : float
        SGD momentum.
    decay_epochs : tuple of int
        Epochs at which the learning rate is multiplied by ``decay_rate``.
    decay_rate : float
        Learning-rate factor at each of ``decay_epochs``.
    augment : bool
        Random crop 28 with padding 4.
    train_size, test_size : int or None
        Use a fixed random subset of this many training images / the first ``test_size``
        test images; ``None`` = all.
    seed : int
        Seed of the initial weights, the subset, the batch order and the crops.
    """

    name: str
    epochs: int
    batch_size: int = 128
    base_lr: float = 0.1
    momentum: float = 0.9
    decay_epochs: tuple[int, ...] = (60, 100, 140)
    decay_rate: float = 0.1
    augment: bool = True
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        object.__setattr__(self, "decay_epochs", tuple(int(e) for e in self.decay_epochs))

    def learning_rate(self, epoch: int) -> float:
        """Learning rate during ``epoch`` (0-based).

        Parameters
        ----------
        epoch : int

        Returns
        -------
        float
        """
        drops = sum(epoch >= boundary for boundary in self.decay_epochs)
        return self.base_lr * self.batch_size / 128 * self.decay_rate**drops

    def to_json(self) -> dict[str, Any]:
        """Return the protocol as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol("paper", epochs=160),
    "full": Protocol("full", epochs=12, decay_epochs=(6, 9)),
    "quick": Protocol("quick", epochs=3, decay_epochs=(2,), train_size=8_000),
    "smoke": Protocol("smoke", epochs=1, train_size=1_024, test_size=1_000),
}
"""``paper``: torchdiffeq's protocol on all 60k images.  ``full``: the same data, optimiser and
augmentation on a budget that fits 2 CPU cores: 12 epochs, learning rate 0.1, then 0.01 from
epoch 7 and 0.001 from epoch 10.  ``quick``: 3 epochs on a fixed random
8k-image subset, learning rate 0.1 then 0.01 in the last epoch, full 10k test set.  ``smoke``:
one epoch of 8 batches (1,024 images), evaluated on the first 1,000 test images.  What each costs,
measured, is in the README's table of runs."""


def protocol_for(model_name: str, protocol: Protocol) -> Protocol:
    """The protocol ``model_name`` trains with: the MLP is LeCun et al.'s, trained without crops.

    Parameters
    ----------
    model_name : str
    protocol : Protocol

    Returns
    -------
    Protocol
    """
    return dataclasses.replace(protocol, augment=False) if model_name == "mlp" else protocol


def move_aside(run_dir: str | os.PathLike[str]) -> Path | None:
    """Rename a run directory to ``<run_dir>.old-<n>`` (first free ``n``) so that a run starts over.

    Nothing is deleted: the old checkpoint and results stay in the renamed directory.

    Parameters
    ----------
    run_dir : str or path-like

    Returns
    -------
    pathlib.Path or None
        The new name, or ``None`` if ``run_dir`` did not exist.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    os.replace(run_dir, target)
    return target
