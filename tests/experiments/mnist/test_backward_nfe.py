"""The Figure 3(c) study script runs end to end and measures what it says (no timing assertions)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.mnist.backward_nfe import Setting, render, settings, study
from experiments.mnist.models import build_model


def test_study_rows_on_a_small_batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 8).astype(np.uint8)
    rows = [Setting("mean", "mean", 0.1), Setting("sum", "sum", 0.1), Setting("mean, tight", "mean", 1e-4)]
    out = study(build_model("odenet", seed=0, jit_compile=False), images, labels, rows, ref_tol=1e-5, jit_compile=False)
    mean, total, tight = out
    assert all(r["nfe_forward"] > 0 and r["nfe_backward"] > 0 for r in out)
    # a(t1) of the summed loss is the batch size times that of the mean
    assert total["adjoint_rms"] == pytest.approx(8 * mean["adjoint_rms"], rel=1e-5)
    assert total["loss"] == pytest.approx(8 * mean["loss"], rel=1e-5)
    # a tighter solve is closer to the reference
    assert tight["grad_rel_error"] < mean["grad_rel_error"]
    text = render({"fresh": out}, "python -m experiments.mnist.backward_nfe", 1e-5)
    assert "| mean, tight |" in text and "**fresh weights**" in text


def test_settings_scale_the_adjoint_tolerance_with_the_batch():
    rows = {s.name: s for s in settings(128)}
    assert rows["mean loss, adjoint_atol = atol/128"].adjoint_atol == pytest.approx(1e-3 / 128)
    assert rows["sum loss, adjoint_atol = atol*128"].adjoint_atol == pytest.approx(0.128)
