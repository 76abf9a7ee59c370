"""scipy's OpenBLAS on one thread while solves run, on either door (:mod:`odegrad.blas`), and its
thread count restored after the last of them, whatever the threads and nesting."""

import threading

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import value_and_grad

import odegrad
import odegrad.compiled
from odegrad import ODESolveError, blas

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
@pytest.mark.parametrize("adjoint", ["checkpoint", "interpolate"])
def test_solves_run_on_one_blas_thread_and_restore_the_count(two_threads, adjoint):
    """The forward solve, the adjoint's backward solves and the interpolating adjoint's dense solve."""
    seen = []

    def f(y, t, k):
        seen.append(THREADS.get())
        return -k * y

    def loss(k):
        return anp.sum(odegrad.odeint(f, np.array([1.0, 2.0]), np.array([0.0, 1.0]), args=(k,), rtol=1e-10,
                                      atol=1e-10, adjoint=adjoint)[-1])

    with odegrad.compiled.disabled():
        value, g = value_and_grad(loss)(0.5)
    np.testing.assert_allclose(value, 3 * np.exp(-0.5), rtol=1e-8)
    np.testing.assert_allclose(g, -3 * np.exp(-0.5), rtol=1e-6)
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
        odegrad.odeint(lambda y, t: np.log(-np.ones_like(y)) * y, np.array([1.0]), np.array([0.0, 1.0]))
    assert THREADS.get() == 2
