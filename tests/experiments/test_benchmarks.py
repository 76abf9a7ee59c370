"""The benchmark harness runs end to end on the kinetics problem (no timing assertions).

Peers that are not installed (torch/torchdiffeq, jax) are skipped by the harness itself, with a
note in the table; they are never test dependencies.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest

from benchmarks import cases, peers


def _table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return header, rows


def test_problems_are_consistent_across_namespaces():
    import autograd.numpy as anp

    for name in cases.CASES:
        problem = cases.get(name)
        y, t = problem.y0 + 0.01, float(problem.t[1])
        assert np.allclose(problem.rhs(y, t, problem.p0, np), problem.rhs(y, t, problem.p0, anp))
        assert problem.rhs(y, t, problem.p0, np).shape == problem.y0.shape


@pytest.mark.filterwarnings("ignore")
def test_kinetics_benchmark_table(monkeypatch):
    # The peers are imported only inside their cells. JAX (seconds of jit compilation) and the
    # extra torchdiffeq rows are left out to keep the test fast; torchdiffeq's adjoint runs
    # when torch and torchdiffeq are installed and is reported as skipped otherwise.
    impls = ["odegrad:lsoda", "odegrad:lsoda+checkpoint", "autograd", "fd", "torchdiffeq-adjoint",
             "jax"]
    real_missing = peers.missing_modules
    # JAX is reported as absent, installed or not: the skip path runs deterministically.
    monkeypatch.setattr(peers, "missing_modules",
                        lambda impl: ["jax"] if impl == "jax" else real_missing(impl))
    out = io.StringIO()
    text = peers.run(["--problems", "kinetics", "--repeats", "1", "--inline", "--impls", *impls],
                     stream=out)
    assert text == out.getvalue()
    assert "python -m benchmarks.peers --problems kinetics" in text
    assert re.search(r"machine: .*\d+ CPUs", text)
    header, rows = _table_rows(text)
    assert header == peers.COLUMNS
    by_impl = {row[0]: dict(zip(header, row)) for row in rows}
    assert {"odegrad:lsoda", "odegrad:lsoda+checkpoint", "autograd", "fd"} <= set(by_impl)
    for impl, row in by_impl.items():
        if row["note"].startswith("skipped"):
            assert row["forward s"] == "-", impl
            continue
        for col in ("forward s", "gradient s", "grad/fwd", "grad rel. error",
                    "fwd odegrad/this", "grad odegrad/this"):
            value = float(row[col])
            assert math.isfinite(value) and value >= 0, (impl, col, row[col])
        assert float(row["grad rel. error"]) < 1e-3, impl
    assert by_impl["jax"]["note"] == "skipped: jax not installed"
    og = by_impl["odegrad:lsoda"]
    assert int(og["fwd NFE"]) > 0 and int(og["bwd NFE"]) > 0
    assert float(og["grad odegrad/this"]) == 1.0
    assert "gradient by forward" in og["note"]
    assert "gradient by checkpoint" in by_impl["odegrad:lsoda+checkpoint"]["note"]
    assert "Targets:" in text and "backward NFE <= 2x forward NFE" in text


@pytest.mark.parametrize("name, picked", [("kinetics", "forward"), ("spiral-mlp", "forward"),
                                          ("robertson", "forward"), ("mlp-64", "checkpoint")])
def test_auto_picks_per_benchmark_problem(name, picked):
    """adjoint='auto' (the default) on each benchmark problem: the method it runs, a gradient
    right to the tolerance the table reports, and at most three times the forward evaluations.
    (mlp-64's loss is a mean, so its cotangent is small: with the normalised cotangent its backward
    solve takes 102 evaluations for a gradient 4.4e-7 off; Appendix D's absolute atol took 78 for
    8.9e-6, measured against a 1e-10 checkpoint solve.)"""
    import autograd
    import autograd.numpy as anp

    import odegrad

    problem = cases.get(name)

    def loss(p):
        ys = odegrad.odeint(lambda y, t, q: problem.rhs(y, t, q, anp), problem.y0, problem.t, args=(p,),
                            rtol=problem.rtol, atol=problem.atol)
        return problem.loss(ys, problem.data, anp)

    with odegrad.record_stats() as rec:
        g = autograd.grad(loss)(problem.p0)
    assert rec.gradient_methods == [picked]
    assert rec.backward.nfe <= 3 * rec.forward.nfe
    if problem.reference == "sensitivity" and not problem.stiff:  # Robertson's takes ~20 s
        g_ref, _ = cases.reference_gradient(problem)
        assert np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)) < 1e-4
