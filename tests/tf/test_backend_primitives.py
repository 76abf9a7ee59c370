"""What the TF backend gives gradient methods (:mod:`odegrad.tf.backend`): the forward-sensitivity
dynamics, plain re-solves with other inputs, and the array operations.

References are plain scipy solves of the same dynamics written in NumPy: the sensitivities ``S``
against central differences of those solves at tolerance 1e-12 (step 1e-4: truncation ~1e-8,
noise ~1e-8, so ``FD_RTOL``), and float32 sensitivities (solved at 1e-6) against the float64
differences at 1e-3, float32's evaluations carrying ~1e-7 relative noise amplified by the solver.
"""

import numpy as np
import pytest
from scipy.integrate import odeint as scipy_odeint

from odegrad.gradcheck import central_differences, relative_error
from odegrad.sensitivity import SensitivityLayout
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")
from odegrad.tf.backend import solve_eager  # noqa: E402
from odegrad.tf.integrate import make_dynamics, tf_options  # noqa: E402
from odegrad.tf.ops import TFOps  # noqa: E402

A0 = np.array([[-0.5, 1.0], [-1.0, -0.2]])
B0 = np.array([0.3, -0.1])
C0 = 2.0
Y0 = np.array([1.0, 0.5])
T = np.array([0.1, 0.7, 1.5])


def _numpy_solve(y0, t, theta, tol=FD_SOLVE_TOL):
    """The dynamics below in NumPy; ``theta = [A (row-major), c, b]`` (the order of ``params``)."""
    A, c, b = theta[:4].reshape(2, 2), theta[4], theta[5:]
    return scipy_odeint(lambda y, s: A @ y + c * b * np.cos(s), y0, t, rtol=tol, atol=tol)


def _theta():
    return np.concatenate([A0.ravel(), [C0], B0])


def _dynamics(dtype, tol):
    """``f(t, y, b) = A y + c b cos t``: a variable ``A``, a captured ``c``, an argument ``b``."""
    A = tf.Variable(A0, dtype=dtype)
    c = tf.constant(C0, dtype)

    def f(t, y, b):
        return tf.linalg.matvec(A, y) + c * b * tf.cast(tf.cos(t), y.dtype)

    y0 = tf.constant(Y0, dtype)
    dynamics = make_dynamics(f, y0, tf.float64, (tf.constant(B0, dtype),), tf_options(rtol=tol, atol=tol))
    return dynamics, A


def _fd_sensitivities():
    """``∂y(t_i)/∂[y0 | t0 | θ]`` by central differences of the NumPy solves."""
    x = np.concatenate([Y0, [T[0]], _theta()])

    def run(x):
        return _numpy_solve(x[:2], np.concatenate([[x[2]], T[1:]]), x[3:])

    return central_differences(run, x, **FD)


def _sensitivities(dynamics, layout, tol):
    """``S(t_i)`` from a solve of the sensitivity dynamics, ``S(t_0) = [I | -f0 | 0]``."""
    f0 = dynamics.f(tf.constant(Y0, dynamics.dtype), tf.constant(T[0], tf.float64)).numpy()
    blocks = ([np.eye(2)] if layout.with_y0 else []) + ([-f0[:, None]] if layout.with_t0 else []) + \
        ([np.zeros((2, dynamics.n_params))] if layout.with_params else [])
    z0 = np.concatenate([Y0, np.concatenate(blocks, 1).ravel()])
    zs = solve_eager(tf.constant(z0, dynamics.dtype), tf.constant(T), dynamics.sensitivity(layout)).numpy()
    np.testing.assert_allclose(zs[:, :2], _numpy_solve(Y0, T, _theta()), rtol=1e3 * tol, atol=1e3 * tol)
    return zs[:, 2:].reshape(len(T), 2, layout.columns)


@pytest.mark.parametrize("dtype, tol, rtol", [(tf.float64, 1e-11, FD_RTOL), (tf.float32, 1e-6, 1e-3)])
def test_sensitivities_match_finite_differences(dtype, tol, rtol):
    dynamics, _ = _dynamics(dtype, tol)
    assert dynamics.n_params == 7
    S = _sensitivities(dynamics, SensitivityLayout(2, 7), tol)
    assert relative_error(S[1:], _fd_sensitivities()[1:]) < rtol
    assert dynamics.info.backward.nfe > 0 and dynamics.info.forward.nfe == 0


@pytest.mark.parametrize("flags", [(True, False, False), (False, True, False), (False, False, True),
                                   (False, True, True)])
def test_sensitivity_columns_follow_the_layout(flags):
    dynamics, _ = _dynamics(tf.float64, 1e-11)
    layout = SensitivityLayout(2, 7, *flags)
    columns = [range(0, 2), range(2, 3), range(3, 10)]
    wanted = [i for flag, block in zip(flags, columns) if flag for i in block]
    S = _sensitivities(dynamics, layout, 1e-11)
    assert S.shape[-1] == layout.columns == len(wanted)
    assert relative_error(S[1:], _fd_sensitivities()[1:, :, wanted]) < FD_RTOL


def test_sensitivity_dynamics_are_built_once_per_layout_and_checked():
    dynamics, _ = _dynamics(tf.float64, 1e-8)
    layout = SensitivityLayout(2, 7)
    assert dynamics.sensitivity(layout) is dynamics.sensitivity(layout)
    assert dynamics.sensitivity(layout).stage == "backward"
    with pytest.raises(ValueError, match="n_params=3 does not fit"):
        dynamics.sensitivity(SensitivityLayout(2, 3))


def test_resolve_solves_with_other_inputs_and_restores_the_variables():
    dynamics, A = _dynamics(tf.float64, 1e-12)
    y0, t = np.array([0.2, -0.4]), np.array([0.0, 0.3, 2.0])
    theta = _theta() + np.array([0.1, -0.2, 0.05, 0.3, 0.0, -0.7, 0.4])
    theta[4] = C0  # the captured c cannot change
    np.testing.assert_allclose(dynamics.resolve(y0, t, theta), _numpy_solve(y0, t, theta), rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(A.numpy(), A0)
    np.testing.assert_allclose(dynamics.resolve(y0, t), _numpy_solve(y0, t, _theta()), rtol=1e-9, atol=1e-11)
    assert dynamics.info.backward.nsolves == 2


def test_resolve_refuses_what_it_cannot_replace():
    dynamics, A = _dynamics(tf.float64, 1e-8)
    theta = _theta()
    theta[4] += 1.0
    with pytest.raises(NotImplementedError, match=r"captures a tensor.*args="):
        dynamics.resolve(Y0, T, theta)
    with pytest.raises(ValueError, match="theta has 3 entries.*n_params=7"):
        dynamics.resolve(Y0, T, np.zeros(3))
    np.testing.assert_array_equal(A.numpy(), A0)


def test_ops_reshape_einsum_and_constant_keep_the_dtype():
    like = tf.constant([1.0, 2.0], tf.float32)
    c = TFOps.constant(np.arange(6.0), like)
    assert c.dtype == tf.float32
    m = TFOps.reshape(c, (2, 3))
    np.testing.assert_array_equal(TFOps.einsum("i,ij->j", like, m).numpy(), [6.0, 9.0, 12.0])
