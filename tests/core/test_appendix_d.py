"""odegrad against the paper's Appendix D code (appendix_d.integrate).

Where Appendix D works (1-D state, ``autograd.builtins.tuple`` args, non-stiff dynamics) both
give the same gradients to solver accuracy. The other tests document, each with its concrete
failure, the cases where Appendix D fails and what odegrad does instead.
"""

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.integrate
from autograd import grad, hessian
from autograd.builtins import tuple as ag_tuple

import appendix_d
from odegrad import odeint
from odegrad.gradcheck import central_differences, check_grad, relative_error
from odegrad.gradcheck.problems import (
    K_ROBERTSON,
    LOTKA_VOLTERRA,
    REVERSIBLE_KINETICS,
    ROBERTSON,
    decay,
    reversible_kinetics,
    robertson_rates,
)
from odegrad.gradcheck.problems import lotka_volterra_p as lotka_volterra

TOL = dict(rtol=1e-10, atol=1e-10)


LV_THETA, LV_Y0, LV_T = LOTKA_VOLTERRA.p, LOTKA_VOLTERRA.y0, LOTKA_VOLTERRA.t[:4]
LV_W = np.random.default_rng(0).standard_normal((len(LV_T), 2))


def _lv_loss(solve, wrap_args):
    def loss(y0, t, theta):
        return anp.sum(LV_W * solve(lotka_volterra, y0, t, wrap_args((theta,)), **TOL)) / 10.0

    return loss


# --- where Appendix D works ----------------------------------------------------------------------


def test_appendix_d_is_scipy_odeint_forward():
    ys = appendix_d.odeint(lotka_volterra, LV_Y0, LV_T, ag_tuple((LV_THETA,)), **TOL)
    np.testing.assert_array_equal(ys, scipy.integrate.odeint(lotka_volterra, LV_Y0, LV_T, (LV_THETA,), **TOL))
    np.testing.assert_allclose(odeint(lotka_volterra, LV_Y0, LV_T, (LV_THETA,), **TOL), ys, rtol=1e-12)


@pytest.mark.parametrize("argnum, name", [(0, "y0"), (1, "t"), (2, "theta")])
def test_gradients_agree_with_appendix_d_on_1d_state(argnum, name):
    ref = grad(_lv_loss(appendix_d.odeint, ag_tuple), argnum)(LV_Y0, LV_T, LV_THETA)
    ours = grad(_lv_loss(odeint, tuple), argnum)(LV_Y0, LV_T, LV_THETA)
    assert relative_error(ours, ref) < 1e-6, (name, ours, ref)


def test_hessians_agree_with_appendix_d():
    """Appendix D is differentiable twice too (its VJP calls its own primitive)."""
    t = np.array([0.0, 0.5, 1.0])

    def quadratic_decay(y, s, k):
        return -k * y**2

    def loss(solve, wrap):
        return lambda y0, k: anp.sum(solve(quadratic_decay, y0, t, wrap((k,)), **TOL))

    y0 = np.array([1.0, 2.0])
    for argnum in (0, 1):
        ref = hessian(loss(appendix_d.odeint, ag_tuple), argnum)(y0, 0.7)
        ours = hessian(loss(odeint, tuple), argnum)(y0, 0.7)
        assert relative_error(ours, ref) < 1e-6


# --- where Appendix D fails and odegrad works ------------------------------------------------------


def test_scalar_y0():
    """For a scalar y0 both return shape (T, 1), as scipy; Appendix D's gradient has shape (1,), odegrad's ()."""
    t = np.array([0.0, 1.0, 2.0])

    def loss(solve, wrap):
        return lambda y0: anp.sum(solve(decay, y0, t, wrap((0.5,)), **TOL))

    exact = np.sum(np.exp(-0.5 * t))
    assert appendix_d.odeint(decay, 2.0, t, ag_tuple((0.5,))).shape == (3, 1)
    g_ref = grad(loss(appendix_d.odeint, ag_tuple))(2.0)
    assert np.shape(g_ref) == (1,)  # the gradient of a scalar is not a scalar

    assert odeint(decay, 2.0, t, (0.5,)).shape == (3, 1)
    g = grad(loss(odeint, tuple))(2.0)
    assert np.shape(g) == ()
    assert abs(g - exact) < 1e-8 * exact


def test_matrix_y0():
    """Appendix D (scipy) rejects a 2-D y0; odegrad integrates Y' = A Y directly."""
    a = np.array([[-0.5, 1.0], [-1.0, -0.2]])
    y0 = np.array([[1.0, 0.5], [0.0, 2.0]])
    t = np.array([0.0, 1.0])

    def matrix_rhs(y, s, a):
        return anp.dot(a, y)

    with pytest.raises(ValueError, match="must be one-dimensional"):
        appendix_d.odeint(matrix_rhs, y0, t, ag_tuple((a,)))

    def loss(y0, a):
        return anp.sum(odeint(matrix_rhs, y0, t, (a,), **TOL)[-1] ** 2)

    def loss_columns(y0, a):  # the same problem as two 1-D solves
        cols = [odeint(matrix_rhs, y0[:, j], t, (a,), **TOL)[-1] for j in range(2)]
        return sum(anp.sum(c**2) for c in cols)

    for argnum in (0, 1):
        # Solved at 1e-10 (one solve of four states against two of two): agreement to 1e-8.
        np.testing.assert_allclose(grad(loss, argnum)(y0, a), grad(loss_columns, argnum)(y0, a),
                                   rtol=1e-8, atol=1e-9)


def test_plain_tuple_args():
    """Appendix D needs autograd.builtins.tuple: a plain tuple hides the traced parameter."""
    loss_ref = _lv_loss(appendix_d.odeint, tuple)
    with pytest.raises(ValueError, match="setting an array element with a sequence"):
        grad(loss_ref, 2)(LV_Y0, LV_T, LV_THETA)

    ours = grad(_lv_loss(odeint, tuple), 2)(LV_Y0, LV_T, LV_THETA)
    ref = grad(_lv_loss(appendix_d.odeint, ag_tuple), 2)(LV_Y0, LV_T, LV_THETA)
    assert relative_error(ours, ref) < 1e-6


def test_appendix_d_calling_convention_works_in_odegrad():
    """Code written for Appendix D passes args as autograd.builtins.tuple; odegrad should accept it."""
    ours = grad(_lv_loss(odeint, ag_tuple), 2)(LV_Y0, LV_T, LV_THETA)
    ref = grad(_lv_loss(appendix_d.odeint, ag_tuple), 2)(LV_Y0, LV_T, LV_THETA)
    assert relative_error(ours, ref) < 1e-6


def test_func_closing_over_traced_value():
    """A closure over the differentiated value: scipy chokes on Appendix D; odegrad names args."""
    t = np.array([0.0, 1.0])

    def loss(solve):
        return lambda k: anp.sum(solve(lambda y, s: -k * y, np.array([1.0]), t))

    with pytest.raises(ValueError, match="setting an array element with a sequence"):
        grad(loss(appendix_d.odeint))(0.5)
    with pytest.raises(TypeError, match="args"):
        grad(loss(odeint))(0.5)


@pytest.mark.parametrize("t", [[0.0, 1.0, 0.5], [0.0, 2.0, 1.0, 3.0]])
def test_non_monotonic_times(t):
    """Both reject non-monotonic t (scipy's own check for Appendix D) with ValueError."""
    t = np.array(t)
    with pytest.raises(ValueError, match="monotonically"):
        grad(lambda k: anp.sum(appendix_d.odeint(decay, np.array([1.0]), t, ag_tuple((k,)))))(0.5)
    with pytest.raises(ValueError, match="monotonic"):
        grad(lambda k: anp.sum(odeint(decay, np.array([1.0]), t, (k,))))(0.5)


def test_stiff_kinetics():
    """Appendix D reconstructs y backwards over whole output intervals: on a stiff problem the
    fast mode blows up (scipy warns of excess work) and the gradient is wrong by O(1). odegrad
    restarts the reconstruction at stored checkpoints and matches finite differences."""
    log_k, y0, t = REVERSIBLE_KINETICS.p, REVERSIBLE_KINETICS.y0, REVERSIBLE_KINETICS.t
    w = np.random.default_rng(4).standard_normal((len(t), 3))
    tol = dict(rtol=1e-10, atol=1e-12)

    def loss(lk):
        return anp.sum(w * odeint(reversible_kinetics, y0, t, (lk,), checkpoints=10, **tol))

    result = check_grad(loss, log_k, step=1e-3, n_random=0, tol=1e-5)
    assert result.passed, str(result)

    def loss_ref(lk):
        return anp.sum(w * appendix_d.odeint(reversible_kinetics, y0, t, ag_tuple((lk,)), **tol))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g_ref = grad(loss_ref)(log_k)
    assert any(issubclass(c.category, scipy.integrate.ODEintWarning) for c in caught)
    assert relative_error(g_ref, result.finite_diff) > 0.5


def test_robertson_appendix_d_gradient_is_wrong():
    """On Robertson's kinetics Appendix D's gradient of y_A(1) in k1 is off by two orders of
    magnitude (reference: central differences of tight scipy solves)."""
    k, y0 = K_ROBERTSON, ROBERTSON.y0
    t = np.array([0.0, 1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g_ref = grad(lambda k: appendix_d.odeint(robertson_rates, y0, t, ag_tuple((k,)),
                                                 rtol=1e-8, atol=1e-10)[-1, 0])(k)
    assert any(issubclass(c.category, scipy.integrate.ODEintWarning) for c in caught)

    def y_a(k1):
        kk = np.array([k1, k[1], k[2]])
        return scipy.integrate.odeint(robertson_rates, y0, t, (kk,), rtol=1e-12, atol=1e-14, mxstep=100000)[-1, 0]

    fd = central_differences(y_a, k[0], step=1e-5 * k[0], fd_order=2)
    assert fd == pytest.approx(-0.7666, rel=1e-3)
    assert abs(g_ref[0] - fd) > 0.5 * abs(fd)
