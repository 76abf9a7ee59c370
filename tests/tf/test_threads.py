"""Solves and statistics across threads: a nested solve from a worker thread inside the dynamics
raises instead of deadlocking, concurrent solves take turns, and ``record_stats`` counts solves run
in threads started inside its block.

A thread's solve that finds another thread's solve stuck in one evaluation of its dynamics for
``solver_guard.NESTED_WAIT_S`` seconds concludes it was started from inside that evaluation (scipy's
solvers are not re-entrant, so it cannot run before the outer one ends). The tests shorten that wait;
every join has a timeout, so a regression fails instead of hanging the suite.
"""

import threading

import numpy as np
import pytest

from odegrad import record_stats, solver_guard, solvers

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

OPTS = solvers.SolverOptions(rtol=1e-8, atol=1e-8)


def _in_thread(target, timeout=60.0):
    """Run ``target`` in a thread; return what it returned or raised (a hang fails the test)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = target()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the thread is still blocked: a deadlock"
    return outcome


@pytest.mark.parametrize("door", ["solvers", "tf"])
def test_solve_from_a_worker_thread_inside_func_raises(monkeypatch, door):
    monkeypatch.setattr(solver_guard, "NESTED_WAIT_S", 0.5)
    inner_outcomes = []

    def inner():
        if door == "tf":
            return otf.odeint(lambda t, z: -z, tf.constant([1.0], tf.float64), [0.0, 1.0]).numpy()
        return solvers.solve(lambda z, t: -z, np.array([1.0]), np.array([0.0, 1.0]), OPTS)[0]

    def func(y, t):
        if not inner_outcomes:
            inner_outcomes.append(_in_thread(inner, timeout=20.0))
        return -y

    outer = _in_thread(lambda: solvers.solve(func, np.array([1.0]), np.array([0.0, 1.0]), OPTS)[0])
    assert "value" in outer, outer.get("error")
    np.testing.assert_allclose(outer["value"][-1], np.exp(-1.0), rtol=1e-7)
    error = inner_outcomes[0]["error"]
    assert isinstance(error, RuntimeError)
    assert "another thread" in str(error) and "not re-entrant" in str(error)


def test_concurrent_solves_from_several_threads_take_turns(monkeypatch):
    """Solves longer than NESTED_WAIT_S in all, whose evaluations each return quickly, wait for
    each other (as the replicas of a MirroredStrategy do) and are all right."""
    monkeypatch.setattr(solver_guard, "NESTED_WAIT_S", 1.0)
    rates = [0.5, 1.0, 2.0]

    def solve(rate):
        def func(y, t):
            threading.Event().wait(0.001)  # a dynamics that takes time, and releases the GIL
            return -rate * y

        return solvers.solve(func, np.array([1.0]), np.linspace(0.0, 1.0, 200), OPTS)

    results = [None] * len(rates)

    def run(i):
        results[i] = _in_thread(lambda: solve(rates[i]), timeout=120.0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(rates))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180.0)
    for rate, result in zip(rates, results):
        ys, stats = result["value"]
        np.testing.assert_allclose(ys[:, 0], np.exp(-rate * np.linspace(0.0, 1.0, 200)), rtol=1e-6)
        assert stats.nfe > 0


def test_record_stats_counts_solves_in_child_threads():
    y0 = tf.constant([1.0], tf.float64)
    with record_stats() as recorder:
        here = otf.odeint(lambda t, y: -y, y0, [0.0, 1.0], full_output=True)[1]
        child = _in_thread(lambda: otf.odeint(lambda t, y: -2 * y, y0, [0.0, 1.0], full_output=True)[1])["value"]
    assert [id(info) for info in recorder.calls] == [id(here), id(child)]
    assert recorder.forward.nfe == here.forward.nfe + child.forward.nfe > here.forward.nfe
    otf.odeint(lambda t, y: -y, y0, [0.0, 1.0])
    assert len(recorder.calls) == 2  # closed: later calls are not recorded
