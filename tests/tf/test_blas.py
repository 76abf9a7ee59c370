"""scipy's OpenBLAS on one thread while the TF door's solves run (:mod:`odegrad.tf.blas`), and its
thread count restored after the last of them, whatever the threads and nesting."""

import threading

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")
from odegrad import ODESolveError  # noqa: E402
from odegrad.tf import blas  # noqa: E402

THREADS = blas.scipy_openblas()
needs_openblas = pytest.mark.skipif(THREADS is None, reason="scipy does not bundle OpenBLAS here")


@pytest.fixture
def two_threads():
    """OpenBLAS set to two threads for the test (so that one thread is a change), then restored."""
    before = THREADS.get()
    THREADS.set(2)
    if THREADS.get() != 2:
        THREADS.set(before)
        pytest.skip("OpenBLAS does not take two threads here")
    yield
    THREADS.set(before)


@needs_openblas
def test_solve_runs_on_one_blas_thread_and_restores_the_count(two_threads):
    seen = []

    def f(t, y):
        seen.append(THREADS.get())
        return -y

    y = otf.odeint(lambda t, y: tf.numpy_function(f, [t, y], tf.float64), tf.constant([1.0, 2.0], tf.float64),
                   [0.0, 1.0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y[-1].numpy(), np.exp(-1.0) * np.array([1.0, 2.0]), rtol=1e-8)
    assert seen and set(seen) == {1}
    assert THREADS.get() == 2


@needs_openblas
def test_overlapping_and_nested_bodies_restore_the_count_once_the_last_ends(two_threads):
    entered, release = threading.Event(), threading.Event()
    inside = []

    def other():
        with blas.one_blas_thread():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with blas.one_blas_thread():
        thread.start()
        assert entered.wait(10)
        with blas.one_blas_thread():
            inside.append(THREADS.get())
        inside.append(THREADS.get())
    inside.append(THREADS.get())  # the other thread's body still runs
    release.set()
    thread.join(10)
    assert inside == [1, 1, 1]
    assert THREADS.get() == 2


@needs_openblas
def test_the_count_is_restored_when_the_solve_fails(two_threads):
    with pytest.raises(ODESolveError, match="non-finite"):
        otf.odeint(lambda t, y: tf.math.log(-tf.ones_like(y)) * y, tf.constant([1.0], tf.float64), [0.0, 1.0])
    assert THREADS.get() == 2
