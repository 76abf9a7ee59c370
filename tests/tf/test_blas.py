"""The TF door's solves run on one OpenBLAS thread too (:mod:`odegrad.blas`, through odegrad.solvers)."""

import numpy as np
import pytest

from odegrad import blas

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

THREADS = blas.scipy_openblas()


@pytest.mark.skipif(THREADS is None, reason="scipy does not bundle OpenBLAS here")
def test_tf_solve_runs_on_one_blas_thread_and_restores_the_count():
    before = THREADS.get()
    THREADS.set(2)
    try:
        if THREADS.get() != 2:
            pytest.skip("OpenBLAS does not take two threads here")
        seen = []

        def f(t, y):
            seen.append(THREADS.get())
            return -y

        y = otf.odeint(lambda t, y: tf.numpy_function(f, [t, y], tf.float64), tf.constant([1.0, 2.0], tf.float64),
                       [0.0, 1.0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(y[-1].numpy(), np.exp(-1.0) * np.array([1.0, 2.0]), rtol=1e-8)
        assert seen and set(seen) == {1}
        assert THREADS.get() == 2
    finally:
        THREADS.set(before)
