"""MNIST from the four standard gzip IDX files.

The directory is taken, in this order, from the ``data_dir`` argument (the ``--data-dir``
option of the command-line tools), the environment variable ``ODEGRAD_MNIST_DIR``, or
``../shared/data/mnist`` relative to the repository root when that folder exists.

Every file is checked: gzip integrity, the IDX magic number (2051 for images, 2049 for
labels), the item count (60000 train / 10000 test), the 28x28 image size, and that the
payload length matches the header.  Anything missing or wrong raises
:class:`MNISTDataError` naming the directory and the expected files.

Nothing is downloaded unless asked: ``--download`` (of ``python -m experiments.mnist.data``, and of
the ``table1``, ``smoke`` and ``figure3`` commands, all through :func:`add_data_arguments`) or
:func:`download_mnist` fetch the missing files from the standard mirrors into the directory
above (``../shared/data/mnist`` is created if nothing else is given).
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from experiments.cli import run_command
from odegrad.atomic import write_atomic

ENV_VAR = "ODEGRAD_MNIST_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
IMAGE_SIDE = 28
TRAIN_COUNT = 60000
TEST_COUNT = 10000

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class MNISTDataError(RuntimeError):
    """The MNIST directory is missing, incomplete or holds a corrupt file."""


class MNIST(NamedTuple):
    """The four MNIST arrays.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        ``uint8`` images of shape ``(n, 28, 28)``.
    y_train, y_test : numpy.ndarray
        ``uint8`` labels in ``0..9`` of shape ``(n,)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _expected_listing(directory: Path) -> str:
    return f"{directory} (expected files: {', '.join(FILES)})"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None, *, for_download: bool = False) -> Path:
    """Return the MNIST directory to use.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Explicit directory; wins over the environment.
    for_download : bool
        The directory is a download target: the default is returned even if it does not exist.

    Returns
    -------
    pathlib.Path
        ``data_dir`` if given, else ``$ODEGRAD_MNIST_DIR`` if set, else the default
        ``../shared/data/mnist`` next to the repository.

    Raises
    ------
    MNISTDataError
        If no directory is given, the variable is unset and the default does not exist
        (and ``for_download`` is False).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    if DEFAULT_DIR.is_dir() or for_download:
        return DEFAULT_DIR
    raise MNISTDataError(
        f"no MNIST directory: pass --data-dir, set {ENV_VAR}, or create {DEFAULT_DIR}; "
        f"it must hold {', '.join(FILES)} (use --download to fetch them)"
    )


def read_idx(path: Path, magic: int, count: int | None = None) -> np.ndarray:
    """Read one gzip-compressed IDX file of unsigned bytes.

    Parameters
    ----------
    path : pathlib.Path
        The ``.gz`` file.
    magic : int
        Expected magic number: 2051 (images, 3 dimensions) or 2049 (labels, 1 dimension).
    count : int, optional
        Expected number of items (first dimension); not checked if ``None``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the shape given in the header.

    Raises
    ------
    MNISTDataError
        If the file is missing, not gzip, truncated, or its header or size is wrong.
    """
    if not path.is_file():
        raise MNISTDataError(f"missing MNIST file {path.name} in {_expected_listing(path.parent)}")
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise MNISTDataError(
            f"corrupt MNIST file {path} (not a complete gzip stream: {exc}); "
            f"directory {_expected_listing(path.parent)}"
        ) from exc
    ndim = {IMAGE_MAGIC: 3, LABEL_MAGIC: 1}[magic]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise MNISTDataError(f"corrupt MNIST file {path}: {len(raw)} bytes, shorter than the IDX header")
    found_magic = struct.unpack(">i", raw[:4])[0]
    if found_magic != magic:
        raise MNISTDataError(f"corrupt MNIST file {path}: IDX magic number {found_magic}, expected {magic}")
    shape = struct.unpack(f">{ndim}i", raw[4:header_len])
    if count is not None and shape[0] != count:
        raise MNISTDataError(f"corrupt MNIST file {path}: header says {shape[0]} items, expected {count}")
    if ndim == 3 and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise MNISTDataError(f"corrupt MNIST file {path}: images are {shape[1]}x{shape[2]}, expected 28x28")
    expected_bytes = header_len + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise MNISTDataError(
            f"corrupt MNIST file {path}: {len(raw)} bytes after decompression, header implies {expected_bytes}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    expected_counts: tuple[int, int] | None = (TRAIN_COUNT, TEST_COUNT),
) -> MNIST:
    """Load and check the four MNIST files.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Directory holding the four files; see :func:`resolve_data_dir`.
    expected_counts : tuple of int or None
        ``(train, test)`` item counts to enforce; ``None`` accepts any count (used by tests
        with a tiny synthetic IDX fixture).

    Returns
    -------
    MNIST
        The images (``uint8``, ``(n, 28, 28)``) and labels (``uint8``, ``(n,)``).

    Raises
    ------
    MNISTDataError
        If the directory or a file is missing or corrupt, or labels do not match images.
    """
    directory = resolve_data_dir(data_dir)
    if not directory.is_dir():
        raise MNISTDataError(f"MNIST directory does not exist: {_expected_listing(directory)}")
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise MNISTDataError(
            f"missing MNIST files {', '.join(missing)} in {_expected_listing(directory)}; "
            "pass --download to fetch them"
        )
    n_train, n_test = expected_counts if expected_counts is not None else (None, None)
    x_train = read_idx(directory / TRAIN_IMAGES, IMAGE_MAGIC, n_train)
    y_train = read_idx(directory / TRAIN_LABELS, LABEL_MAGIC, n_train)
    x_test = read_idx(directory / TEST_IMAGES, IMAGE_MAGIC, n_test)
    y_test = read_idx(directory / TEST_LABELS, LABEL_MAGIC, n_test)
    for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(images) != len(labels):
            raise MNISTDataError(
                f"corrupt MNIST {split} split in {directory}: {len(images)} images but {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise MNISTDataError(f"corrupt MNIST {split} labels in {directory}: label {labels.max()} > 9")
    return MNIST(x_train, y_train, x_test, y_test)


def download_mnist(
    data_dir: str | os.PathLike[str],
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = 60.0,
) -> Path:
    """Download the four files that are not already in ``data_dir``, then check them.

    Parameters
    ----------
    data_dir : str or path-like
        Destination directory, created if needed.
    mirrors : sequence of str
        Base URLs tried in order for each file.
    timeout : float
        Seconds per HTTP request.

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    MNISTDataError
        If a file cannot be fetched from any mirror or the result fails :func:`load_mnist`.
    """
    directory = Path(data_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = directory / name
        if target.is_file():
            continue
        errors = []
        for base in mirrors:
            try:
                with urllib.request.urlopen(base + name, timeout=timeout) as response:
                    write_atomic(target, response.read())
                break
            except OSError as exc:
                errors.append(f"{base}{name}: {exc}")
        else:
            raise MNISTDataError(f"could not download {name} into {directory}: " + "; ".join(errors))
    load_mnist(directory)
    return directory


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` and ``--download`` to a command's parser (see :func:`data_dir_from_args`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--data-dir", default=None,
                        help=f"MNIST directory (default: ${ENV_VAR}, else {DEFAULT_DIR})")
    parser.add_argument("--download", action="store_true",
                        help="first fetch the MNIST files missing from that directory from the standard mirrors")


def data_dir_from_args(args: argparse.Namespace) -> str | None:
    """Download the MNIST files if ``args.download`` asks for it; return ``args.data_dir``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser given :func:`add_data_arguments`.

    Returns
    -------
    str or None
        The ``--data-dir`` given, or the download directory when ``--download`` had to choose one.

    Raises
    ------
    MNISTDataError
        If a download fails or the files are then not valid.
    """
    if not args.download:
        return args.data_dir
    return str(download_mnist(resolve_data_dir(args.data_dir, for_download=True)))


def main(argv: Sequence[str] | None = None) -> None:
    """Check (and with ``--download`` fetch) the MNIST files; print a summary."""
    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.data", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    data_dir = data_dir_from_args(args)
    data = load_mnist(data_dir)
    print(f"MNIST OK in {resolve_data_dir(data_dir)}: train {data.x_train.shape}, test {data.x_test.shape}")


if __name__ == "__main__":
    run_command(__spec__.name, main)
