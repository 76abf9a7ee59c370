"""Training loop of the Table 1 models with per-epoch checkpoints and exact resume.

Protocol (torchdiffeq ``odenet_mnist.py`` defaults, see :data:`experiments.mnist.protocol.PROTOCOLS`): SGD with momentum
0.9, learning rate ``0.1 * batch_size / 128`` multiplied by 0.1 at epochs 60, 100 and 140,
160 epochs, batches of 128 (last incomplete batch dropped), cross-entropy on logits, no
weight decay; augmentation = random 28x28 crop of the image zero-padded by 4 pixels
(torchvision ``RandomCrop(28, padding=4)``); pixels scaled to ``[0, 1]``, no other
normalisation.  Keras' SGD keeps ``v <- 0.9 v - lr g`` (PyTorch keeps ``v <- 0.9 v + g`` and
multiplies by ``lr`` afterwards); the two agree except for the momentum carried across a
learning-rate drop.

Every epoch ends with an evaluation on the test set and an atomic checkpoint
``checkpoint.npz`` in the run directory holding the model weights, the optimizer variables
(iteration count, learning rate, momenta), the epoch, the state of the NumPy generator that
draws the batch order and the crops (the only randomness during training), the protocol and
the training log.  Restarting the same command resumes from it; with op determinism on and
Grappler off (:func:`deterministic_ops`) the resumed run ends with weights bit-identical to
an uninterrupted one.  Long epochs are also checkpointed inside the epoch every
``checkpoint_seconds`` (10 minutes by default: the epoch's generator state, the step reached and
the per-step logs so far), so an interrupted ODE-Net epoch loses at most that.
``results.json`` beside it is rewritten (atomically, as the checkpoint) each epoch.  A
checkpoint that cannot be read raises :class:`CheckpointError` naming the file;
:func:`experiments.mnist.protocol.move_aside` starts a run over without deleting the old one (``--fresh`` of
:mod:`experiments.mnist.table1`).

Progress: a Keras progress bar when stdout is a terminal; otherwise (a log file, a pipe)
plain lines without terminal escapes, at most every :data:`PROGRESS_SECONDS` seconds and at the
end of each epoch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from experiments.mnist.data import MNIST
from experiments.mnist.models import build_model, count_parameters
from experiments.mnist.protocol import CHECKPOINT, MODEL_NAMES, RESULTS, Protocol
from odegrad.atomic import write_atomic

PROGRESS_SECONDS = 30.0
"""Seconds between two plain progress lines when stdout is not a terminal."""


class CheckpointError(ValueError):
    """A run directory's checkpoint cannot be read, or does not fit the run asked for."""


@contextlib.contextmanager
def deterministic_ops() -> Iterator[None]:
    """Make TensorFlow bit-reproducible inside the block, restoring the previous settings after.

    Two switches are needed on CPU: :func:`tf.config.experimental.enable_op_determinism`, and
    turning Grappler's graph rewriting off (``disable_meta_optimizer``).  With Grappler on,
    the compiled RK-Net step (one set of weights used by 16 dynamics evaluations) gave
    losses differing in the 5th digit between identical processes; with it off, runs are
    identical and no slower on this model.  Op determinism is process-wide and has no public
    inverse; the private ``disable_op_determinism`` of ``tensorflow.python.framework.config``
    is used when present so that other code in the same process (e.g. a test session) is not
    affected.
    """
    try:
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
        disable = tf_config.disable_op_determinism
    except (ImportError, AttributeError):
        was_enabled, disable = True, None
    grappler_was_off = bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": grappler_was_off})
        if not was_enabled and disable is not None:
            disable()


def random_crop(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Random ``28x28`` crops of the images zero-padded by ``padding`` on each side.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, h, w)`` array.
    rng : numpy.random.Generator
        Draws the offsets (``2 n`` integers).
    padding : int

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``images``.
    """
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding)))
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def to_input(images: np.ndarray) -> tf.Tensor:
    """``uint8`` ``(n, 28, 28)`` images to a float32 NHWC tensor in ``[0, 1]``."""
    return tf.convert_to_tensor(images[..., None].astype(np.float32) / 255.0)


def select_data(data: MNIST, protocol: Protocol) -> MNIST:
    """Apply the protocol's subset sizes (a fixed random training subset, the first test images).

    Parameters
    ----------
    data : MNIST
    protocol : Protocol

    Returns
    -------
    MNIST
    """
    x_train, y_train, x_test, y_test = data
    if protocol.train_size is not None and protocol.train_size < len(x_train):
        keep = np.sort(np.random.default_rng([protocol.seed, 1]).permutation(len(x_train))[: protocol.train_size])
        x_train, y_train = x_train[keep], y_train[keep]
    if protocol.test_size is not None:
        x_test, y_test = x_test[: protocol.test_size], y_test[: protocol.test_size]
    if len(x_train) < protocol.batch_size:
        raise ValueError(f"{len(x_train)} training images is less than one batch of {protocol.batch_size}")
    return MNIST(x_train, y_train, x_test, y_test)


def _save_checkpoint(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict) -> None:
    arrays = {f"model/{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"optimizer/{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays["state"] = np.array(json.dumps(state))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array and the JSON state of a ``checkpoint.npz``.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        ``model/<i>`` and ``optimizer/<i>`` arrays.
    state : dict
        Protocol, model configuration, epoch, generator state and training log.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    CheckpointError
        If the file is truncated, garbled or not a checkpoint; the message names the file and
        how to start over.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}")

    def unreadable(reason: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {path} cannot be read ({reason}); it is truncated or corrupt (a copy cut short, a full "
            f"disk, or a crash mid-write). Rerun the command with --fresh to start this run over, or delete {path}"
        )

    try:
        loaded = np.load(path)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise unreadable("a single NumPy array, not an .npz archive")
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
        state = json.loads(str(arrays.pop("state")))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise unreadable(f"{type(exc).__name__}: {exc}") from exc
    return arrays, state


def _load_checkpoint(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict:
    arrays, state = read_checkpoint(path)
    n_model = sum(key.startswith("model/") for key in arrays)
    n_opt = sum(key.startswith("optimizer/") for key in arrays)
    if n_model != len(model.get_weights()) or n_opt != len(optimizer.variables):
        raise CheckpointError(f"checkpoint {path} does not match this model/optimizer ({n_model}, {n_opt} arrays)")
    model.set_weights([arrays[f"model/{i}"] for i in range(n_model)])
    for i, variable in enumerate(optimizer.variables):
        variable.assign(arrays[f"optimizer/{i}"])
    return state


def load_checkpoint_state(run_dir: str | os.PathLike[str]) -> dict:
    """Read the JSON state (protocol, model config, log, epoch) of a run's checkpoint.

    Parameters
    ----------
    run_dir : str or path-like

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
        If the run directory holds no checkpoint.
    CheckpointError
        If the checkpoint cannot be read.
    """
    return _read_run_checkpoint(run_dir)[1]


def _read_run_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[dict, dict]:
    """``(arrays, state)`` of ``run_dir``'s checkpoint; FileNotFoundError if it has none."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {CHECKPOINT} in {run_dir}")
    return read_checkpoint(path)


def restore_model(run_dir: str | os.PathLike[str], **overrides: Any) -> tuple[keras.Model, dict]:
    """Rebuild a trained model from a run directory.

    Parameters
    ----------
    run_dir : str or path-like
    **overrides
        Replace entries of the stored model configuration (e.g. ``tol`` of an ODE-Net).

    Returns
    -------
    model : keras.Model
    state : dict
        The checkpoint's JSON state.

    Raises
    ------
    FileNotFoundError
        If the run directory holds no checkpoint.
    CheckpointError
        If the checkpoint cannot be read.
    """
    arrays, state = _read_run_checkpoint(run_dir)
    config = {**state["model_config"], **overrides}
    model = build_model(state["model"], **config)
    model.set_weights([arrays[f"model/{i}"] for i in range(len(model.get_weights()))])
    return model, state


class LineProgress:
    """Progress as plain text lines, for logs: no terminal escapes, no carriage returns.

    Same ``update`` interface as :class:`keras.utils.Progbar`: metrics named in
    ``stateful_metrics`` are shown as last given, the others as their mean over the steps this
    bar was given (an epoch resumed from a checkpoint starts at a later step).

    Parameters
    ----------
    total : int
        Steps in the epoch.
    label : str
        Prefix of each line (e.g. ``[odenet]``).
    stateful_metrics : sequence of str
    interval : float
        Minimum seconds between two lines; the last step always prints one.
    stream : file-like, optional
        Default :data:`sys.stdout` (looked up at each line).
    """

    def __init__(self, total: int, label: str, stateful_metrics: Sequence[str] = (),
                 interval: float = PROGRESS_SECONDS, stream: Any = None):
        self.total, self.label, self.interval, self.stream = total, label, interval, stream
        self.stateful = set(stateful_metrics)
        self.sums: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.updates = 0
        self.start = self.printed = time.perf_counter()

    def update(self, step: int, values: Sequence[tuple[str, float]]) -> None:
        """Record the metrics of ``step`` (1-based) and print a line if one is due."""
        self.updates += 1
        for name, value in values:
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
            self.last[name] = float(value)
        now = time.perf_counter()
        if step < self.total and now - self.printed < self.interval:
            return
        self.printed = now
        shown = " ".join(
            f"{name} {self.last[name] if name in self.stateful else self.sums[name] / self.updates:.4g}"
            for name in self.last
        )
        elapsed = now - self.start
        print(f"{self.label} step {step}/{self.total}, {elapsed:.0f} s ({elapsed / self.updates:.3g} s/step) {shown}",
              file=self.stream or sys.stdout, flush=True)


def progress(total: int, label: str, stateful_metrics: Sequence[str] = ()) -> Any:
    """A :class:`keras.utils.Progbar` when stdout is a terminal, else a :class:`LineProgress`.

    Parameters
    ----------
    total : int
    label : str
    stateful_metrics : sequence of str

    Returns
    -------
    keras.utils.Progbar or LineProgress
    """
    if getattr(sys.stdout, "isatty", lambda: False)():
        return keras.utils.Progbar(total, stateful_metrics=list(stateful_metrics), unit_name="step")
    return LineProgress(total, label, stateful_metrics)


def make_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, jit: bool) -> Callable:
    """One training step ``step(x, y) -> (loss, accuracy, nfe_forward, nfe_backward)``.

    With ``jit`` the loss, gradient and update run as one :func:`tf.function`; an ODE block then
    runs its solver through ``tf.py_function`` and its NFE of the step are read from the block
    after the compiled call returns (inside the trace they would be trace-time constants).

    Parameters
    ----------
    model : keras.Model
        A Table 1 model (:func:`experiments.mnist.models.build_model`).
    optimizer : keras.optimizers.Optimizer
        Applies the gradients of the cross-entropy loss.
    jit : bool
        Compile the step as one :func:`tf.function` (:func:`default_jit`).

    Returns
    -------
    callable
        ``step(x, y)`` on a batch of images ``x`` and integer labels ``y``.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    block = model.ode_block

    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.float32))
        return loss, correct

    run = tf.function(train_step) if jit else train_step

    def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, int, int]:
        loss, correct = run(x, y)
        if block is None:
            return loss, correct, 0, 0
        return loss, correct, int(block.nfe_forward), int(block.nfe_backward)

    return step


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000, jit: bool = True) -> dict:
    """Accuracy of ``model`` and the mean forward NFE of its ODE block.

    Parameters
    ----------
    model : keras.Model
    images, labels : numpy.ndarray
        ``uint8`` images ``(n, 28, 28)`` and labels ``(n,)``.
    batch_size : int
    jit : bool
        Run the forward pass as a :func:`tf.function`.

    Returns
    -------
    dict
        ``accuracy``, ``error`` and ``nfe_forward`` (mean over batches; 0 without ODE block).
    """
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    if jit:
        forward = tf.function(forward)
    block = model.ode_block
    correct, nfes = 0, []
    for start in range(0, len(images), batch_size):
        logits = forward(to_input(images[start : start + batch_size]))
        correct += int(np.sum(np.argmax(logits.numpy(), -1) == labels[start : start + batch_size]))
        nfes.append(block.nfe_forward if block is not None else 0)
    accuracy = correct / len(images)
    return {"accuracy": accuracy, "error": 1.0 - accuracy, "nfe_forward": float(np.mean(nfes))}


def default_jit(model_name: str) -> bool:
    """Whether the model's training step is compiled with :func:`tf.function` (every model).

    The ODE-Net's step is compiled too: its solver runs inside the graph through
    ``tf.py_function``, and :func:`make_step` reads the step's NFE from the block afterwards.
    """
    return model_name in MODEL_NAMES


def train(model_name: str, protocol: Protocol, data: MNIST, run_dir: str | os.PathLike[str], **kwargs: Any) -> dict:
    """Train one model, checkpointing every epoch; resume from ``run_dir`` if possible.

    Runs :func:`train_deterministic` with TensorFlow op determinism enabled (see
    :func:`deterministic_ops`); the keyword arguments are passed on.

    Parameters
    ----------
    model_name : {"mlp", "resnet", "rknet", "odenet"}
    protocol : Protocol
    data : MNIST
    run_dir : str or path-like
    **kwargs
        ``model_config``, ``resume``, ``max_epochs``, ``verbose``, ``command``.

    Returns
    -------
    dict
        The results also written to ``results.json``.
    """
    with deterministic_ops():
        return train_deterministic(model_name, protocol, data, run_dir, **kwargs)


def train_deterministic(
    model_name: str,
    protocol: Protocol,
    data: MNIST,
    run_dir: str | os.PathLike[str],
    *,
    model_config: dict[str, Any] | None = None,
    resume: bool = True,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    checkpoint_seconds: float = 600.0,
    verbose: int = 1,
    command: str = "",
) -> dict:
    """The body of :func:`train` (call that instead; this one assumes deterministic ops).

    Parameters
    ----------
    model_name : {"mlp", "resnet", "rknet", "odenet"}
    protocol : Protocol
    data : MNIST
        Full data; :func:`select_data` applies the protocol's subsets.
    run_dir : str or path-like
        Holds ``checkpoint.npz`` and ``results.json``.
    model_config : dict, optional
        Keyword arguments of :func:`experiments.mnist.models.build_model` (``rk_steps``, ``tol``...).
    resume : bool
        Continue from an existing checkpoint (its protocol and model must match; only
        ``epochs`` may differ).  A finished run is not retrained, its results are rewritten.
        If False an existing checkpoint is an error.
    max_epochs : int, optional
        Stop after this many epochs *in this call* (simulates an interruption; used by tests).
    max_steps : int, optional
        Stop after this many training steps *in this call*, checkpointing mid-epoch (simulates an
        interruption inside an epoch; used by tests).
    checkpoint_seconds : float
        Also checkpoint inside an epoch once this many seconds have passed since the last
        checkpoint (default 600), so that an interrupted long epoch loses at most that much;
        0 checkpoints at epoch ends only.  The resumed run is bit-identical either way.
    verbose : int
        0 silent, 1 progress (a bar on a terminal, plain lines otherwise, see :func:`progress`),
        2 one line per epoch.
    command : str
        Command line recorded in the results.

    Returns
    -------
    dict
        The results also written to ``results.json``.

    Raises
    ------
    CheckpointError
        If a checkpoint exists with a different protocol or model, exists and ``resume`` is
        False, or cannot be read.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_config = dict(model_config or {})
    keras.utils.set_random_seed(protocol.seed)
    subset = select_data(data, protocol)
    model = build_model(model_name, seed=protocol.seed, **model_config)
    optimizer = keras.optimizers.SGD(learning_rate=protocol.learning_rate(0), momentum=protocol.momentum)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng([protocol.seed, 2])
    log: list[dict] = []
    start_epoch = 0
    partial: dict | None = None
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():
        if not resume:
            raise CheckpointError(
                f"{checkpoint} exists; continue it with --resume, start over with --fresh, or choose another --out"
            )
        state = _load_checkpoint(checkpoint, model, optimizer)
        stored = {k: v for k, v in state["protocol"].items() if k != "epochs"}
        wanted = {k: v for k, v in json.loads(json.dumps(protocol.to_json())).items() if k != "epochs"}
        if state["model"] != model_name or stored != wanted or state["model_config"] != model_config:
            raise CheckpointError(
                f"checkpoint {checkpoint} was written for model {state['model']} with protocol {state['protocol']} "
                f"and config {state['model_config']}; it cannot resume {model_name} with {protocol.to_json()} "
                f"and {model_config}: use another --out, or --fresh to start over"
            )
        rng.bit_generator.state = state["rng"]
        log = state["log"]
        start_epoch = state["epoch"]
        partial = state.get("partial")
        if verbose:
            inside = f", step {partial['step']} of epoch {start_epoch + 1}" if partial else ""
            print(f"[{model_name}] resuming from {checkpoint} after epoch {start_epoch}{inside}", flush=True)

    jit = default_jit(model_name)
    step = make_step(model, optimizer, jit)
    steps_per_epoch = len(subset.x_train) // protocol.batch_size
    params = count_parameters(model)
    end_epoch = protocol.epochs if max_epochs is None else min(protocol.epochs, start_epoch + max_epochs)
    steps_left = max_steps
    last_save = time.perf_counter()

    def save(epoch_done: int, partial_state: dict | None) -> None:
        state = {
            "model": model_name,
            "model_config": model_config,
            "protocol": protocol.to_json(),
            "epoch": epoch_done,
            "rng": rng.bit_generator.state,
            "log": log,
        }
        if partial_state is not None:
            state["partial"] = partial_state
        _save_checkpoint(checkpoint, model, optimizer, state)

    for epoch in range(start_epoch, end_epoch):
        lr = protocol.learning_rate(epoch)
        optimizer.learning_rate.assign(lr)
        if partial is None:
            epoch_rng = rng.bit_generator.state
            first_step, seen = 0, {"losses": [], "accs": [], "nfe_f": [], "nfe_b": [], "times": [], "seconds": 0.0}
        else:  # resume inside the epoch: the same batch order, the generator where it stopped
            epoch_rng, first_step, seen = partial["epoch_rng"], partial["step"], partial["seen"]
        order_rng = np.random.default_rng()
        order_rng.bit_generator.state = epoch_rng
        order = order_rng.permutation(len(subset.x_train))
        if partial is None:
            rng.bit_generator.state = order_rng.bit_generator.state
        partial = None
        if verbose:
            print(f"[{model_name}] epoch {epoch + 1}/{protocol.epochs} lr {lr:g}", flush=True)
        bar = progress(steps_per_epoch, f"[{model_name}]", ("nfe_f", "nfe_b")) if verbose == 1 else None
        losses, accs, nfe_f, nfe_b, times = (seen[k] for k in ("losses", "accs", "nfe_f", "nfe_b", "times"))
        epoch_start = time.perf_counter() - seen["seconds"]
        for i in range(first_step, steps_per_epoch):
            idx = order[i * protocol.batch_size : (i + 1) * protocol.batch_size]
            images = subset.x_train[idx]
            if protocol.augment:
                images = random_crop(images, rng)
            x, y = to_input(images), tf.convert_to_tensor(subset.y_train[idx].astype(np.int32))
            tic = time.perf_counter()
            loss, acc, nf, nb = step(x, y)
            loss, acc, nf, nb = float(loss), float(acc), int(nf), int(nb)
            times.append(time.perf_counter() - tic)
            losses.append(loss)
            accs.append(acc)
            nfe_f.append(nf)
            nfe_b.append(nb)
            if bar is not None:
                shown = [("loss", loss), ("acc", acc)]
                if model.ode_block is not None:
                    shown += [("nfe_f", nf), ("nfe_b", nb)]
                bar.update(i + 1, shown)
            if steps_left is not None:
                steps_left -= 1
            stop = steps_left == 0
            due = checkpoint_seconds > 0 and time.perf_counter() - last_save >= checkpoint_seconds
            if (stop or due) and i + 1 < steps_per_epoch:
                seen["seconds"] = time.perf_counter() - epoch_start
                save(epoch, {"epoch_rng": epoch_rng, "step": i + 1, "seen": seen})
                last_save = time.perf_counter()
            if stop and i + 1 < steps_per_epoch:
                return _results(model_name, model_config, protocol, params, log, command, jit) if log else {}
        train_time = time.perf_counter() - epoch_start
        test = evaluate(model, subset.x_test, subset.y_test, jit=jit)
        steady = times[1:] if len(times) > 1 else times
        entry = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(np.mean(losses)),
            "train_accuracy": float(np.mean(accs)),
            "test_accuracy": test["accuracy"],
            "test_error": test["error"],
            "nfe_forward": float(np.mean(nfe_f)),
            "nfe_backward": float(np.mean(nfe_b)),
            "nfe_forward_per_step": nfe_f,
            "nfe_backward_per_step": nfe_b,
            "test_nfe_forward": test["nfe_forward"],
            "steps": steps_per_epoch,
            "train_seconds": train_time,
            "step_seconds_median": float(np.median(steady)),
            "step_seconds_mean": float(np.mean(steady)),
        }
        log.append(entry)
        if verbose:
            print(
                f"[{model_name}] epoch {epoch + 1}: loss {entry['train_loss']:.4f} test error "
                f"{100 * entry['test_error']:.2f}% NFE-F {entry['nfe_forward']:.1f} NFE-B {entry['nfe_backward']:.1f} "
                f"{entry['step_seconds_median']:.3f} s/step",
                flush=True,
            )
        save(epoch + 1, None)
        last_save = time.perf_counter()
        results = _results(model_name, model_config, protocol, params, log, command, jit)
        write_atomic(run_dir / RESULTS, json.dumps(results, indent=2))
        if steps_left == 0:
            return results
    if not log:
        return {}
    results = _results(model_name, model_config, protocol, params, log, command, jit)
    write_atomic(run_dir / RESULTS, json.dumps(results, indent=2))
    return results


def _results(
    model_name: str, model_config: dict, protocol: Protocol, params: int, log: list[dict], command: str, jit: bool
) -> dict:
    last = log[-1]
    return {
        "model": model_name,
        "model_config": model_config,
        "protocol": protocol.to_json(),
        "command": command,
        "finished": last["epoch"] >= protocol.epochs,
        "epochs_done": last["epoch"],
        "params": params,
        "test_error": last["test_error"],
        "test_accuracy": last["test_accuracy"],
        "seconds_per_step": last["step_seconds_median"],
        "compiled_step": jit,
        "nfe_forward_per_epoch": [e["nfe_forward"] for e in log],
        "nfe_backward_per_epoch": [e["nfe_backward"] for e in log],
        "test_error_per_epoch": [e["test_error"] for e in log],
        "train_seconds_total": float(sum(e["train_seconds"] for e in log)),
        "log": [{k: v for k, v in e.items() if not k.endswith("_per_step")} for e in log],
    }
