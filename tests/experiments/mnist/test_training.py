"""Training, checkpoint/resume, Table 1 writing and memory measurement of experiments/."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.mnist import memory, table1
from experiments.mnist.data import MNIST
from experiments.mnist.protocol import CHECKPOINT, MODEL_NAMES, PROTOCOLS, RESULTS, Protocol, move_aside
from experiments.mnist.training import (
    CheckpointError,
    LineProgress,
    load_checkpoint_state,
    random_crop,
    restore_model,
    select_data,
    train,
)
from odegrad import atomic

TINY = Protocol("tiny", epochs=2, batch_size=8, train_size=16, test_size=8, seed=3)
CONFIGS = {
    "mlp": {},
    "resnet": {"resnet_blocks": 1},
    "rknet": {"rk_method": "dopri5", "tol": 0.1},
    "odenet": {"tol": 0.1, "jit_compile": False},
}
"""Small models; the ODE-Net without XLA here (seconds of compilation per model), with it in the
resume test (the long runs' setting: XLA under deterministic ops must resume bit-identically)."""


@pytest.fixture(scope="module")
def data() -> MNIST:
    """Synthetic 28x28 'digits': a bright square whose position encodes the label."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            row, col = divmod(int(label), 5)
            image[4 + 10 * row : 12 + 10 * row, 2 + 5 * col : 7 + 5 * col] = 255
        return images, labels

    return MNIST(*make(32), *make(16))


def weights_of(run_dir: Path) -> list[np.ndarray]:
    with np.load(run_dir / CHECKPOINT) as archive:
        return [archive[k] for k in sorted(archive.files) if k != "state"]


def test_learning_rate_schedule() -> None:
    paper = PROTOCOLS["paper"]
    assert [paper.learning_rate(e) for e in (0, 59, 60, 100, 140, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001, 0.0001]
    )
    assert dataclasses.replace(paper, batch_size=256).learning_rate(0) == pytest.approx(0.2)
    assert paper.epochs == 160 and paper.momentum == 0.9 and paper.augment


def test_protocol_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="positive"):
        Protocol("bad", epochs=0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        table1.make_protocol(quick=True, smoke=True)


def test_random_crop() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(random_crop(images, rng, padding=0), images)
    crops = random_crop(images, np.random.default_rng(1))
    assert crops.shape == images.shape and crops.dtype == images.dtype
    offsets = np.random.default_rng(1).integers(0, 9, size=(2, 5))
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4)))
    for i in range(5):
        dy, dx = offsets[0, i], offsets[1, i]
        np.testing.assert_array_equal(crops[i], padded[i, dy : dy + 28, dx : dx + 28])


def test_select_data(data: MNIST) -> None:
    subset = select_data(data, TINY)
    assert len(subset.x_train) == 16 and len(subset.x_test) == 8
    again = select_data(data, TINY)
    np.testing.assert_array_equal(subset.x_train, again.x_train)
    with pytest.raises(ValueError, match="less than one batch"):
        select_data(data, dataclasses.replace(TINY, train_size=4))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_epoch_each_model(name: str, data: MNIST, tmp_path: Path) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    result = train(name, protocol, data, tmp_path / name, model_config=CONFIGS[name], verbose=0)
    assert result["finished"] and result["epochs_done"] == 1
    assert 0.0 <= result["test_error"] <= 1.0 and result["seconds_per_step"] > 0
    entry = result["log"][0]
    assert np.isfinite(entry["train_loss"]) and entry["steps"] == 2
    if name == "odenet":
        assert entry["nfe_forward"] > 0 and entry["nfe_backward"] > 0
    if name == "rknet":
        per_step = load_checkpoint_state(tmp_path / name)["log"][0]["nfe_forward_per_step"]
        assert all(n > 2 and (n - 2) % 6 == 0 for n in per_step) and entry["nfe_backward"] == 0
    saved = json.loads((tmp_path / name / RESULTS).read_text())
    assert saved["params"] == result["params"]


def test_rknet_fixed_rk4_option_trains(data: MNIST, tmp_path: Path) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    config = table1.model_config("rknet", 1e-3, "rk4", 1)
    assert config == {"rk_method": "rk4", "rk_steps": 1}
    result = train("rknet", protocol, data, tmp_path, model_config=config, verbose=0)
    assert load_checkpoint_state(tmp_path)["log"][0]["nfe_forward_per_step"] == [4, 4]
    assert result["params"] == 208_266


def test_table1_rknet_configuration() -> None:
    assert table1.model_config("rknet", 1e-2) == {"rk_method": "dopri5", "tol": 1e-2}
    assert table1.model_config("rknet", 1e-2, "rk4") == {"rk_method": "rk4", "rk_steps": 4}
    assert table1.model_config("odenet", 1e-2, "rk4", 3) == {"tol": 1e-2}
    with pytest.raises(ValueError, match="rk_method='rk4'"):
        table1.model_config("rknet", 1e-3, "dopri5", 4)
    args = table1.build_parser().parse_args(["--model", "rknet"])
    assert (args.rk_method, args.rk_steps, args.tol) == ("dopri5", None, 1e-3)
    with pytest.raises(SystemExit):
        table1.main(["--model", "rknet", "--rk-steps", "4", "--smoke"])


@pytest.mark.parametrize(
    "name",
    # The RK-Net's three traces of a compiled step with a dopri5 while loop take minutes on 2 cores.
    [pytest.param(n, marks=pytest.mark.slow) if n == "rknet" else n for n in MODEL_NAMES],
)
def test_resume_gives_identical_weights(name: str, data: MNIST, tmp_path: Path) -> None:
    config = {"tol": 0.1} if name == "odenet" else CONFIGS[name]
    straight = train(name, TINY, data, tmp_path / "straight", model_config=config, verbose=0)
    first = train(name, TINY, data, tmp_path / "resumed", model_config=config, max_epochs=1, verbose=0)
    assert not first["finished"] and load_checkpoint_state(tmp_path / "resumed")["epoch"] == 1
    resumed = train(name, TINY, data, tmp_path / "resumed", model_config=config, verbose=0)
    assert resumed["finished"]
    for a, b in zip(weights_of(tmp_path / "straight"), weights_of(tmp_path / "resumed")):
        np.testing.assert_array_equal(a, b)
    assert straight["test_error_per_epoch"] == resumed["test_error_per_epoch"]
    assert [e["train_loss"] for e in straight["log"]] == [e["train_loss"] for e in resumed["log"]]


@pytest.mark.parametrize("name", ["mlp", "odenet"])
def test_resume_inside_an_epoch_gives_identical_weights(name: str, data: MNIST, tmp_path: Path) -> None:
    """Interrupted after step 1 of epoch 1 and after step 1 of epoch 2 (2 steps per epoch), the
    run ends bit-identical to an uninterrupted one, per-step logs included."""
    config = CONFIGS[name]
    straight = train(name, TINY, data, tmp_path / "straight", model_config=config, verbose=0, checkpoint_seconds=0)
    run = tmp_path / "resumed"
    assert train(name, TINY, data, run, model_config=config, max_steps=1, verbose=0) == {}
    state = load_checkpoint_state(run)
    assert state["epoch"] == 0 and state["partial"]["step"] == 1
    first = train(name, TINY, data, run, model_config=config, max_steps=2, verbose=0)
    state = load_checkpoint_state(run)
    assert not first["finished"] and state["epoch"] == 1 and state["partial"]["step"] == 1
    resumed = train(name, TINY, data, run, model_config=config, verbose=0, checkpoint_seconds=1e-9)
    assert resumed["finished"] and "partial" not in load_checkpoint_state(run)
    for a, b in zip(weights_of(tmp_path / "straight"), weights_of(run)):
        np.testing.assert_array_equal(a, b)
    logs = [load_checkpoint_state(d)["log"] for d in (tmp_path / "straight", run)]
    for key in ("train_loss", "nfe_forward_per_step", "nfe_backward_per_step", "test_error"):
        assert [e[key] for e in logs[0]] == [e[key] for e in logs[1]]
    assert straight["test_error_per_epoch"] == resumed["test_error_per_epoch"]


def test_resume_refuses_other_protocol(data: MNIST, tmp_path: Path) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    done = train("mlp", protocol, data, tmp_path, verbose=0)
    with pytest.raises(ValueError, match="cannot resume"):
        train("mlp", dataclasses.replace(protocol, base_lr=0.5), data, tmp_path, verbose=0)
    with pytest.raises(ValueError, match="exists; continue it with --resume, start over with --fresh"):
        train("mlp", protocol, data, tmp_path, resume=False, verbose=0)
    again = train("mlp", protocol, data, tmp_path, verbose=0)
    assert again["log"] == done["log"]


def test_restore_model_reproduces_predictions(data: MNIST, tmp_path: Path) -> None:
    import tensorflow as tf

    from experiments.mnist.models import build_model

    protocol = dataclasses.replace(TINY, epochs=1)
    train("mlp", protocol, data, tmp_path, verbose=0)
    model, state = restore_model(tmp_path)
    assert state["model"] == "mlp"
    fresh = build_model("mlp", seed=123)
    x = tf.constant(data.x_test[:4, ..., None] / 255.0, tf.float32)
    with np.load(tmp_path / CHECKPOINT) as archive:
        fresh.set_weights([archive[f"model/{i}"] for i in range(len(fresh.get_weights()))])
    np.testing.assert_array_equal(model(x).numpy(), fresh(x).numpy())


def test_write_table(data: MNIST, tmp_path: Path) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    train("mlp", protocol, data, tmp_path / "mlp", verbose=0, command="python -m experiments.mnist.table1 --model mlp --x")
    rows = [
        {"model": "resnet", "depth": d, "tf_peak_mb": 10.0 + 2.0 * d, "rss_peak_mb": 11.0 + 2.0 * d,
         "step_seconds": 0.1 * d, "nfe_forward": 0, "nfe_backward": 0, "batch_size": 8}
        for d in (1, 2, 4)
    ]
    (tmp_path / "memory.json").write_text(json.dumps({"batch_size": 8, "models": memory.summarize(rows)}))
    path = table1.write_table(tmp_path, "python -m experiments.mnist.table1 --model mlp")
    text = path.read_text()
    assert "Produced by: `python -m experiments.mnist.table1 --model mlp`" in text
    assert "| 1-Layer MLP |" in text and "0.239M" in text and "1.60%" in text
    assert "| ResNet | not run |" in text and "0.41%" in text
    assert "resnet sweep" in text
    assert "- mlp: `python -m experiments.mnist.table1 --model mlp --x`" in text
    assert "- training protocol of mlp: `{" in text


def test_memory_summary_slopes() -> None:
    rows = [
        {"model": "odenet", "depth": tol, "tf_peak_mb": 50.0, "rss_peak_mb": None, "step_seconds": 0.01 * nfe,
         "nfe_forward": nfe, "nfe_backward": nfe, "batch_size": 8}
        for tol, nfe in ((1e-1, 8), (1e-2, 14), (1e-3, 26))
    ]
    summary = memory.summarize(rows)["odenet"]
    assert summary["unit"] == "forward NFE" and summary["x"] == [8, 14, 26]
    assert summary["tf_peak_mb_per_unit"] == pytest.approx(0.0, abs=1e-9)
    assert summary["step_seconds_per_unit"] == pytest.approx(0.01)
    assert summary["rss_peak_mb_per_unit"] is None


def test_memory_workers_measure_with_tensorflow_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's worker processes get TF's allocator statistics on every CPU and see every block.

    Without ``TF_CPU_ALLOCATOR_USE_BFC=true`` in the workers this fails on CPUs where TensorFlow
    does not pick the BFC allocator itself (AVX2-only AMD EPYC: ``tf_peak_mb`` is None there).
    At batch 32 the allocator's chunk rounding makes the peak uneven in depth (on that CPU 1, 4
    and 8 blocks give 78, 73 and 95 MB), so the two depths are far apart.
    """
    monkeypatch.delenv(memory.ALLOCATOR_VAR, raising=False)
    shallow = memory.measure("resnet", 1, batch_size=32, timed_steps=1)
    deep = memory.measure("resnet", 8, batch_size=32, timed_steps=1)
    assert shallow["allocator"] == "true" and shallow["tf_stats_unavailable"] is None
    per_block = (deep["tf_peak_mb"] - shallow["tf_peak_mb"]) / 7
    activation = 32 * 6 * 6 * 64 * 4 / 2**20
    assert 3 * activation < per_block < 20 * activation
    assert shallow["step_seconds"] > 0
    summary = memory.summarize([shallow, deep])["resnet"]
    assert summary["memory_source"] == "tf" and summary["memory_note"] is None
    assert summary["peak_mb_per_unit"] == summary["tf_peak_mb_per_unit"] == pytest.approx(per_block)


def test_memory_falls_back_to_rss_and_says_so(
    monkeypatch: pytest.MonkeyPatch, data: MNIST, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An explicit TF_CPU_ALLOCATOR_USE_BFC=false is respected: no TF statistics, RSS instead, noted.

    TensorFlow's default allocator keeps statistics only with its oneDNN operations off, which
    are on by default on CPUs with AVX-512 VNNI, BF16 or AMX: turned off here on every CPU.
    """
    monkeypatch.setenv(memory.ALLOCATOR_VAR, "false")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    result = memory.sweep({"resnet": (1,)}, batch_size=8, timed_steps=1, out=tmp_path / "memory.json")
    row = result["models"]["resnet"]["rows"][0]
    assert row["allocator"] == "false" and row["tf_peak_mb"] is None
    assert "TF_CPU_ALLOCATOR_USE_BFC=false" in row["tf_stats_unavailable"]
    assert row["rss_peak_mb"] > 0
    info = result["models"]["resnet"]
    assert info["memory_source"] == "rss" and info["peak_mb"] == [row["rss_peak_mb"]]
    assert info["tf_peak_mb_per_unit"] is None and "RSS high-water mark" in info["memory_note"]
    assert result["allocator"] == "TF_CPU_ALLOCATOR_USE_BFC=false in the worker processes"
    assert json.loads((tmp_path / "memory.json").read_text())["notes"] == [f"resnet: {info['memory_note']}"]
    printed = capsys.readouterr().out
    assert "TF peak      n/a MB" in printed and "[memory] note: resnet:" in printed

    train("resnet", dataclasses.replace(TINY, epochs=1), data, tmp_path / "resnet",
          model_config={"resnet_blocks": 1}, verbose=0)
    text = table1.write_table(tmp_path, "python -m experiments.mnist.table1 --model resnet").read_text()
    resnet_row = next(line for line in text.splitlines() if line.startswith("| ResNet |"))
    assert f"{row['rss_peak_mb']:.0f} MB" in resnet_row and "(RSS)" in resnet_row
    assert "- resnet memory (marked RSS): TensorFlow keeps no CPU allocator statistics" in text


def test_memory_without_any_figure_is_reported_not_crashed(data: MNIST, tmp_path: Path) -> None:
    rows = [{"model": "resnet", "depth": d, "tf_peak_mb": None, "rss_peak_mb": None, "step_seconds": 0.1,
             "nfe_forward": 0, "nfe_backward": 0, "tf_stats_unavailable": "no statistics"} for d in (1, 2)]
    info = memory.summarize(rows)["resnet"]
    assert info["memory_source"] is None and info["peak_mb_per_unit"] is None
    (tmp_path / "memory.json").write_text(json.dumps({"batch_size": 8, "models": {"resnet": info}}))
    train("resnet", dataclasses.replace(TINY, epochs=1), data, tmp_path / "resnet",
          model_config={"resnet_blocks": 1}, verbose=0)
    text = table1.write_table(tmp_path, "cmd").read_text()
    assert "not measured (no TensorFlow allocator statistics, no RSS high-water mark)" in text
    assert "1 -> n/a / 0.10 s" in text


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty", "bit-flipped"])
def test_damaged_checkpoint_names_the_file_and_the_way_out(damage: str, data: MNIST, tmp_path: Path) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    train("mlp", protocol, data, tmp_path, verbose=0)
    path = tmp_path / CHECKPOINT
    raw = bytearray(path.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "garbled":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif damage == "empty":
        raw = bytearray()
    else:
        raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    for call in (lambda: train("mlp", protocol, data, tmp_path, verbose=0),
                 lambda: load_checkpoint_state(tmp_path), lambda: restore_model(tmp_path)):
        with pytest.raises(CheckpointError) as info:
            call()
        message = str(info.value)
        assert f"checkpoint {path} cannot be read" in message
        assert "--fresh" in message and f"delete {path}" in message


def test_fresh_moves_the_old_run_aside(data: MNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    protocol = dataclasses.replace(TINY, epochs=1)
    train("mlp", protocol, data, tmp_path / "mlp", verbose=0)
    (tmp_path / "mlp" / CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    monkeypatch.setattr("experiments.mnist.data.load_mnist", lambda data_dir: data)
    table1.run(["mlp"], protocol, None, tmp_path, fresh=True, measure_memory=False, verbose=0)
    assert (tmp_path / "mlp.old-1" / CHECKPOINT).read_bytes() == b"PK\x03\x04 cut short"
    assert load_checkpoint_state(tmp_path / "mlp")["epoch"] == 1
    assert move_aside(tmp_path / "mlp") == tmp_path / "mlp.old-2"
    assert move_aside(tmp_path / "mlp") is None


def test_interrupted_results_write_leaves_the_previous_results(
    data: MNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while writing epoch 2's results.json: epoch 1's file is intact and the table still builds."""
    real_replace = os.replace
    results_writes = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == RESULTS:
            results_writes.append(dst)
            if len(results_writes) == 2:
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        train("mlp", TINY, data, tmp_path / "mlp", verbose=0)
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    saved = json.loads((tmp_path / "mlp" / RESULTS).read_text())
    assert saved["epochs_done"] == 1 and not saved["finished"]
    assert sorted(p.name for p in (tmp_path / "mlp").iterdir()) == [CHECKPOINT, RESULTS]
    assert "(epoch 1/2)" in table1.write_table(tmp_path, "cmd", ["mlp"]).read_text()


def test_unreadable_results_do_not_break_the_table(data: MNIST, tmp_path: Path) -> None:
    train("mlp", dataclasses.replace(TINY, epochs=1), data, tmp_path / "mlp", verbose=0)
    (tmp_path / "resnet").mkdir()
    (tmp_path / "resnet" / RESULTS).write_text('{"model": "resn')
    text = table1.write_table(tmp_path, "cmd").read_text()
    assert "| ResNet | results unreadable |" in text and "| 1-Layer MLP | " in text
    assert f"{tmp_path / 'resnet' / RESULTS} cannot be read (JSONDecodeError" in text


def test_smoke_table_says_it_is_a_smoke_run(data: MNIST, tmp_path: Path) -> None:
    smoke = dataclasses.replace(TINY, name="smoke", epochs=1)
    train("mlp", smoke, data, tmp_path / "mlp", verbose=0)
    text = table1.write_table(tmp_path, "python -m experiments.mnist.smoke").read_text()
    assert text.startswith("# Table 1: MNIST (smoke run)\n") and "**Smoke run**" in text
    train("mlp", dataclasses.replace(TINY, epochs=1), data, tmp_path / "other" / "mlp", verbose=0)
    assert "smoke" not in table1.write_table(tmp_path / "other", "cmd").read_text().lower()


def test_training_progress_in_a_log_is_plain_text(data: MNIST, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train("odenet", dataclasses.replace(TINY, epochs=1), data, tmp_path, model_config=CONFIGS["odenet"], verbose=1)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\b" not in out
    assert "[odenet] step 2/2, " in out and "nfe_f " in out


def test_line_progress_averages_like_progbar() -> None:
    stream = io.StringIO()
    bar = LineProgress(3, "[m]", stateful_metrics=("nfe_f",), interval=0.0, stream=stream)
    bar.update(1, [("loss", 3.0), ("nfe_f", 10)])
    bar.update(2, [("loss", 1.0), ("nfe_f", 14)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("[m] step 2/3, ") and lines[1].endswith("loss 2 nfe_f 14")
    quiet = io.StringIO()
    bar = LineProgress(3, "[m]", interval=3600.0, stream=quiet)
    for step in (1, 2, 3):
        bar.update(step, [("loss", float(step))])
    assert quiet.getvalue().count("\n") == 1 and "step 3/3" in quiet.getvalue()


def test_line_progress_of_a_resumed_epoch_averages_its_own_steps() -> None:
    stream = io.StringIO()
    bar = LineProgress(300, "[m]", interval=0.0, stream=stream)
    bar.update(201, [("acc", 0.99)])
    bar.update(202, [("acc", 0.97)])
    assert stream.getvalue().splitlines()[-1].endswith("acc 0.98")


@pytest.mark.slow
def test_memory_subprocess_sweep(tmp_path: Path) -> None:
    result = memory.sweep({"resnet": (1, 3), "odenet": (1e-1, 1e-3)}, batch_size=16, timed_steps=1,
                          out=tmp_path / "m.json", verbose=False)
    assert result["models"]["resnet"]["tf_peak_mb_per_unit"] > 0
    ode = result["models"]["odenet"]
    assert ode["x"][1] > ode["x"][0]
    assert abs(ode["tf_peak_mb_per_unit"]) * (ode["x"][1] - ode["x"][0]) < 0.1 * ode["rows"][0]["tf_peak_mb"]


def test_compiled_odenet_step_reports_the_nfe_of_the_solve_it_ran(data: MNIST) -> None:
    """The ODE-Net's step is compiled; its NFE come from the solve that ran, read after the call.

    Inside the trace they would be the trace-time counts (0), and after another graph calling the
    block (an evaluation) was traced, the block would report that graph's counts.
    """
    import keras
    import tensorflow as tf

    from experiments.mnist.models import build_model
    from experiments.mnist.training import default_jit, evaluate, make_step, to_input

    assert default_jit("odenet")
    x, y = to_input(data.x_train[:8]), tf.constant(data.y_train[:8].astype(np.int32))
    blank = np.zeros((4, 28, 28), np.uint8)
    counts = {}
    for jit in (False, True):
        model = build_model("odenet", seed=0, tol=0.1, jit_compile=False)
        optimizer = keras.optimizers.SGD(learning_rate=0.0)
        optimizer.build(model.trainable_variables)
        step = make_step(model, optimizer, jit)
        first = step(x, y)[2:]
        test_nfe = evaluate(model, blank, np.zeros(4, np.uint8), batch_size=4, jit=jit)["nfe_forward"]
        counts[jit] = (first, step(x, y)[2:], test_nfe)
    (first, second, test_nfe) = counts[True]
    assert first[0] > 0 and first[1] > 0
    assert first == second == counts[False][0] == counts[False][1]
    assert test_nfe == counts[False][2] and test_nfe != first[0]
