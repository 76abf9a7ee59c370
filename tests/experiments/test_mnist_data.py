"""MNIST IDX loading of experiments.mnist.data on tiny synthetic files (never downloads)."""

from __future__ import annotations

import gzip
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from experiments.mnist import data as mnist
from experiments.mnist.data import MNISTDataError, load_mnist, resolve_data_dir


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, count: int | None = None) -> None:
    """Write ``array`` (uint8) as a gzip IDX file, optionally with a wrong magic or count."""
    magic = (2051 if array.ndim == 3 else 2049) if magic is None else magic
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    header = struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def make_mnist_dir(directory: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> mnist.MNIST:
    """Four tiny valid IDX files in ``directory``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    data = mnist.MNIST(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(mnist.FILES, data):
        write_idx(directory / name, array)
    return data


@pytest.fixture()
def tiny_dir(tmp_path: Path) -> Path:
    make_mnist_dir(tmp_path / "mnist")
    return tmp_path / "mnist"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(mnist.urllib.request, "urlopen", refuse)


def test_loads_tiny_idx(tmp_path: Path) -> None:
    written = make_mnist_dir(tmp_path / "d", 20, 10)
    data = load_mnist(tmp_path / "d", expected_counts=(20, 10))
    for got, want in zip(data, written):
        np.testing.assert_array_equal(got, want)
    assert data.x_train.shape == (20, 28, 28) and data.y_test.shape == (10,)


def test_standard_counts_are_enforced(tiny_dir: Path) -> None:
    with pytest.raises(MNISTDataError, match="expected 60000"):
        load_mnist(tiny_dir)


def test_missing_file_names_directory_and_files(tiny_dir: Path) -> None:
    (tiny_dir / mnist.TEST_LABELS).unlink()
    with pytest.raises(MNISTDataError) as info:
        load_mnist(tiny_dir, expected_counts=None)
    message = str(info.value)
    assert str(tiny_dir) in message and mnist.TEST_LABELS in message and mnist.TRAIN_IMAGES in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MNISTDataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere", expected_counts=None)


@pytest.mark.parametrize(
    "name, writer, match",
    [
        (mnist.TRAIN_IMAGES, lambda p: write_idx(p, np.zeros((20, 28, 28)), magic=2049), "magic number 2049"),
        (mnist.TRAIN_LABELS, lambda p: write_idx(p, np.zeros(20), magic=2051), "magic number 2051"),
        (mnist.TEST_IMAGES, lambda p: write_idx(p, np.zeros((10, 27, 27))), "27x27"),
        (mnist.TEST_LABELS, lambda p: write_idx(p, np.zeros(10), count=11), "bytes after decompression"),
        (mnist.TRAIN_LABELS, lambda p: write_idx(p, np.full(20, 10)), "label 10"),
        (mnist.TRAIN_LABELS, lambda p: write_idx(p, np.zeros(19)), "20 images but 19 labels"),
        (mnist.TRAIN_IMAGES, lambda p: p.write_bytes(b"not gzip at all"), "not a complete gzip stream"),
        (mnist.TEST_IMAGES, lambda p: p.write_bytes(gzip.compress(b"\x00" * 4000)[:-20]), "not a complete gzip"),
        (mnist.TEST_LABELS, lambda p: p.write_bytes(gzip.compress(b"\x00\x00")), "shorter than the IDX header"),
    ],
)
def test_corrupt_files_raise(tiny_dir: Path, name: str, writer, match: str) -> None:
    writer(tiny_dir / name)
    with pytest.raises(MNISTDataError, match=match) as info:
        load_mnist(tiny_dir, expected_counts=None)
    assert str(tiny_dir) in str(info.value)


def test_resolve_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(mnist.ENV_VAR)
    monkeypatch.setattr(mnist, "DEFAULT_DIR", tmp_path / "absent")
    with pytest.raises(MNISTDataError, match="--data-dir"):
        resolve_data_dir()


def test_cli_checks_directory(tiny_dir: Path) -> None:
    with pytest.raises(MNISTDataError, match="expected 60000"):
        mnist.main(["--data-dir", str(tiny_dir)])


def test_resolve_for_download_returns_the_default_even_if_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist, "DEFAULT_DIR", tmp_path / "absent")
    assert resolve_data_dir(for_download=True) == tmp_path / "absent"


def test_download_writes_each_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing mirror is skipped; the files land complete (atomically) and pass the checks."""
    served = tmp_path / "server"
    served.mkdir()
    sizes = {mnist.TRAIN_IMAGES: (60000, 28, 28), mnist.TRAIN_LABELS: (60000,),
             mnist.TEST_IMAGES: (10000, 28, 28), mnist.TEST_LABELS: (10000,)}
    for name, shape in sizes.items():
        write_idx(served / name, np.zeros(shape, np.uint8))
    requested = []

    class Response(io.BytesIO):
        """What ``urlopen`` returns: a readable context manager."""

    def urlopen(url: str, timeout: float) -> Response:
        requested.append(url)
        if url.startswith("https://down.example/"):
            raise urllib.error.URLError("mirror down")
        return Response((served / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(mnist.urllib.request, "urlopen", urlopen)
    target = tmp_path / "new" / "mnist"
    assert mnist.download_mnist(target, mirrors=("https://down.example/", "https://up.example/")) == target
    assert len(requested) == 8
    assert sorted(p.name for p in target.iterdir()) == sorted(mnist.FILES)
    assert load_mnist(target).x_train.shape == (60000, 28, 28)


@pytest.mark.parametrize("command", ["smoke", "table1", "data"])
def test_commands_take_download(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--download`` exists where the error messages tell users to pass it, and fetches first."""
    import importlib

    fetched, ran = [], []
    monkeypatch.setattr(mnist, "download_mnist", lambda directory: fetched.append(directory) or directory)
    module = importlib.import_module(f"experiments.mnist.{command}")
    if command == "smoke":
        monkeypatch.setattr(module, "run_smoke", lambda data_dir, *args: ran.append(data_dir))
    elif command == "table1":
        monkeypatch.setattr(module, "run", lambda models, protocol, data_dir, *args, **kwargs: ran.append(data_dir))
    else:
        monkeypatch.setattr(mnist, "load_mnist", lambda data_dir: ran.append(data_dir) or make_mnist_dir(tmp_path / "x"))
    module.main(["--download", "--data-dir", str(tmp_path / "d")])
    assert fetched == [tmp_path / "d"] and ran == [str(tmp_path / "d")]
