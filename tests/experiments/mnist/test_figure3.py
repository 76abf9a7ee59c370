"""Figure 3 script of experiments.mnist.figure3 on a tiny trained ODE-Net."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.mnist import figure3
from experiments.mnist.data import MNIST
from experiments.mnist.figure3 import figure_title, make_figure, training_nfe
from experiments.mnist.protocol import CHECKPOINT, Protocol
from experiments.mnist.training import CheckpointError, train
from odegrad import atomic


@pytest.fixture(scope="module")
def odenet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MNIST]:
    rng = np.random.default_rng(5)
    data = MNIST(
        rng.integers(0, 256, (16, 28, 28)).astype(np.uint8),
        rng.integers(0, 10, 16).astype(np.uint8),
        rng.integers(0, 256, (8, 28, 28)).astype(np.uint8),
        rng.integers(0, 10, 8).astype(np.uint8),
    )
    run = tmp_path_factory.mktemp("runs") / "odenet"
    protocol = Protocol("tiny", epochs=2, batch_size=8, test_size=4)
    train("odenet", protocol, data, run, model_config={"tol": 0.1}, verbose=0)
    return run, data


def test_figure3_files(odenet_run: tuple[Path, MNIST], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, data = odenet_run
    renamed = []
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    png = make_figure(run, data.x_test[:4], data.y_test[:4], out=tmp_path, tols=(1e-1, 1e-3), ref_tol=1e-6, repeats=2)
    assert sorted(renamed) == ["figure3.csv", "figure3.json", "figure3.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(renamed)
    assert png == tmp_path / "figure3.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "figure3.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["tol"]) for r in rows] == [1e-1, 1e-3]
    assert int(rows[1]["nfe_forward"]) > int(rows[0]["nfe_forward"]) > 0
    assert float(rows[1]["error"]) < float(rows[0]["error"])
    assert all(int(r["nfe_backward"]) > 0 for r in rows)
    payload = json.loads((tmp_path / "figure3.json").read_text())
    train_nfe = payload["panel_c_d_training"]
    assert train_nfe["epoch"] == [1, 2] and len(train_nfe["step_nfe_forward"]) == 4
    assert train_nfe["step_epoch"] == [0.5, 1.0, 1.5, 2.0]
    assert payload["title"].startswith("ODE-Net trained with the 'tiny' protocol (2 epochs, all training images)")


def test_unfinished_run_says_how_far_it_got() -> None:
    title = figure_title({"name": "full", "epochs": 12, "train_size": None}, 128, epochs_done=2)
    assert title.startswith("ODE-Net trained with the 'full' protocol (after 2 of 12 epochs, all training images)")
    assert figure_title({"name": "full", "epochs": 12}, 128, epochs_done=12).startswith(
        "ODE-Net trained with the 'full' protocol (12 epochs,")


def test_smoke_figure_says_it_is_a_smoke_run() -> None:
    title = figure_title({"name": "smoke", "epochs": 1, "train_size": 1024}, 32)
    assert title == ("SMOKE RUN (a pipeline check, not a result): ODE-Net trained with the 'smoke' protocol "
                     "(1 epoch, 1,024 training images); tolerance sweep on 32 test images")


def test_figure3_without_checkpoint_names_the_command(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "odenet"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        figure3.main(["--run", str(run), "--data-dir", str(tmp_path / "no-mnist-needed")])
    message = str(info.value)
    assert f"no {CHECKPOINT} in {run}" in message
    assert f"`python -m experiments.mnist.table1 --model odenet --quick --out {run.parent}`" in message
    assert f"`python -m experiments.mnist.figure3 --run {run}`" in message


def test_figure3_with_damaged_checkpoint_names_the_file(odenet_run: tuple[Path, MNIST], tmp_path: Path) -> None:
    run, data = odenet_run
    broken = tmp_path / "odenet"
    broken.mkdir()
    raw = (run / CHECKPOINT).read_bytes()
    (broken / CHECKPOINT).write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CheckpointError, match=f"checkpoint {broken / CHECKPOINT} cannot be read"):
        make_figure(broken, data.x_test[:4], data.y_test[:4])


def test_figure3_rejects_other_models(odenet_run: tuple[Path, MNIST], tmp_path: Path) -> None:
    _, data = odenet_run
    protocol = Protocol("tiny", epochs=1, batch_size=8, test_size=4)
    train("mlp", protocol, data, tmp_path / "mlp", verbose=0)
    with pytest.raises(ValueError, match="needs an odenet run"):
        make_figure(tmp_path / "mlp", data.x_test[:4], data.y_test[:4])


def test_training_nfe_without_step_records() -> None:
    log = [{"epoch": 1, "nfe_forward": 20.0, "nfe_backward": 26.0}]
    assert training_nfe(log)["nfe_forward"] == [20.0] and training_nfe(log)["step_epoch"] == []


def test_readme_figure3c_step_statistics_come_from_the_committed_run() -> None:
    """The README's sentence on Figure 3(c) quotes step_ratio_summary of the committed figure3.json."""
    root = Path(__file__).resolve().parents[3]
    payload = json.loads((root / "experiments/results/full/odenet/figure3.json").read_text())
    summary = figure3.step_ratio_summary(payload["panel_c_d_training"])
    quoted = (f"the {summary['steps']:,} training steps scatter around `y = x`: {summary['above']:.0%} have a "
              f"backward NFE above the forward one, {summary['below']:.0%} below, {summary['equal']:.0%} equal, "
              f"median ratio {summary['median_ratio']:.2f}, and {summary['last_epoch_above']:.0%} above in the last epoch")
    readme = " ".join((root / "README.md").read_text().split())
    assert quoted.replace("%", " %") in readme
