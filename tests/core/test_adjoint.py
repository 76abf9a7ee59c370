"""Adjoint gradients against finite differences, Taylor remainders, closed-form second
derivatives, adjoint modes (checkpoint vs backsolve), seminorm, and property-based checks.

Tolerances: see the module docstring of ``tests/tolerances.py``.
"""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import pytest
import scipy.linalg
from autograd import grad, hessian, jacobian, make_jvp, make_vjp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odegrad import ODESolveError, odeint, record_stats
from odegrad.gradcheck import central_differences, relative_error, taylor_test
from odegrad.gradcheck.problems import linear, linear_gradients
from odegrad.gradcheck.problems import lotka_volterra_p as _lv
from odegrad.solvers import METHODS
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, HESS_RTOL, TOL

MODES = ("checkpoint", "backsolve")
SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


# --------------------------------------------------------------------------------------------
# Problems. Each is (loss(theta, tol, **kw), theta0) with theta a flat float vector.
# --------------------------------------------------------------------------------------------

T_LV = onp.array([0.0, 0.7, 1.6, 3.0])


def lv_loss(theta, tol=TOL, **kw):
    """Lotka-Volterra: theta = (a, b, c, d, y0_1, y0_2); intermediate output times."""
    ys = odeint(_lv, theta[4:], T_LV, args=(theta[:4],), rtol=tol, atol=tol, **kw)
    return np.sum(ys[1:] ** 2 * onp.array([1.0, 0.5])) + np.sum(ys[2])


LV_THETA = onp.array([1.1, 0.4, 0.1, 0.4, 1.0, 2.0])

_RNG = onp.random.default_rng(1234)
MLP_W1 = _RNG.normal(size=(6, 2)) * 0.8
MLP_B1 = _RNG.normal(size=6) * 0.3
MLP_W2 = _RNG.normal(size=(2, 6)) * 0.5
MLP_SHAPES = [(6, 2), (6,), (2, 6)]
MLP_THETA = onp.concatenate([MLP_W1.ravel(), MLP_B1, MLP_W2.ravel()])
T_MLP = onp.array([0.0, 0.5, 1.2, 2.0])
Y0_MLP = onp.array([0.5, -0.3])


def _mlp(y, t, W1, b1, W2):
    return np.dot(W2, np.tanh(np.dot(W1, y) + b1)) - 0.1 * y


def _unpack(theta):
    out, k = [], 0
    for shape in MLP_SHAPES:
        size = int(onp.prod(shape))
        out.append(np.reshape(theta[k:k + size], shape))
        k += size
    return out


def mlp_loss(theta, tol=TOL, **kw):
    """A small tanh-MLP vector field (the Neural ODE of the paper, in miniature)."""
    W1, b1, W2 = _unpack(theta)
    ys = odeint(_mlp, Y0_MLP, T_MLP, args=(W1, b1, W2), rtol=tol, atol=tol, **kw)
    return np.sum(np.sin(ys[1:])) + np.sum(ys[-1] ** 2)


def _forced(y, t, p):
    k, amp, omega = p[0], p[1], p[2]
    return -k * y + amp * np.sin(omega * t) * np.array([1.0, -0.5])


def forced_loss(theta, tol=TOL, **kw):
    """Non-autonomous dynamics: theta = (k, amp, omega, t0, t1, t2, t3) — grads through p and
    every output time, t0 included (where the integrated a_t of Appendix C matters)."""
    t = theta[3:]
    ys = odeint(_forced, onp.array([1.0, 0.5]), t, args=(theta[:3],), rtol=tol, atol=tol, **kw)
    return np.sum(ys[1:] * onp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, 0.3]]))


FORCED_THETA = onp.array([0.6, 1.5, 2.0, 0.1, 0.4, 1.3, 2.5])

PROBLEMS = {
    "lotka_volterra": (lv_loss, LV_THETA),
    "tanh_mlp": (mlp_loss, MLP_THETA),
    "non_autonomous": (forced_loss, FORCED_THETA),
}


# --------------------------------------------------------------------------------------------
# 3. Finite differences and Taylor remainders.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_gradient_vs_central_fd(name, method, record_error):
    loss, theta = PROBLEMS[name]
    g = grad(loss)(theta, tol=TOL, method=method)
    fd = central_differences(lambda th: loss(th, tol=FD_SOLVE_TOL, method=method), theta, **FD)
    err = relative_error(g, fd)
    record_error(f"grad vs FD: {name} ({method})", err)
    assert err < FD_RTOL


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_taylor_remainder_is_second_order(name, mode, record_error):
    loss, theta = PROBLEMS[name]
    direction = onp.random.default_rng(7).normal(size=theta.shape)
    direction /= onp.linalg.norm(direction)
    result = taylor_test(lambda th: loss(th, tol=FD_SOLVE_TOL), theta, direction,
                         grad=lambda th: grad(loss)(th, tol=FD_SOLVE_TOL, adjoint=mode),
                         h0=4e-2, n_steps=5, factor=0.5, noise=FD_SOLVE_TOL)   # h = 4e-2 ... 2.5e-3
    record_error(f"Taylor slope |p-2|: {name}", abs(result.order - 2.0))
    assert 1.8 < result.order < 2.2, str(result)
    # A wrong gradient would leave a first-order remainder: check it really is tiny.
    assert result.remainders[-1] < 1e-3 * abs(loss(theta)) + 1e-8


# --------------------------------------------------------------------------------------------
# 4. Second order.
# --------------------------------------------------------------------------------------------

def test_decay_second_derivative_closed_form(record_error):
    """d²/dk² of y0 exp(-k t) = t² y0 exp(-k t); also d²/dy0 dk = -t exp(-k t)."""
    t = onp.array([0.0, 0.8, 2.0])
    y0, k = 1.5, 0.6

    def final(y0, k):
        ys = odeint(lambda y, tt, k: -k * y, y0, t, args=(k,), rtol=TOL, atol=TOL)
        return ys[-1] + ys[1]

    d2k = grad(grad(final, 1), 1)(y0, k)
    d2y0k = grad(grad(final, 1), 0)(y0, k)
    exact_kk = onp.sum(t[1:] ** 2 * y0 * onp.exp(-k * t[1:]))
    exact_y0k = onp.sum(-t[1:] * onp.exp(-k * t[1:]))
    err = max(relative_error(d2k, exact_kk), relative_error(d2y0k, exact_y0k))
    record_error("Hessian vs closed form: decay", err)
    assert err < 10 * GRAD_RTOL


def test_mixed_time_param_grad_of_grad(record_error):
    """L = y(t1) = y0 exp(-k t1): ∂²L/∂k∂t1 = y0 exp(-k t1)(k t1 - 1); ∂²L/∂t1² = k² y0 e^{-k t1}."""
    y0, k = 2.0, 0.9
    t = onp.array([0.3, 1.7])

    def L(t, k):
        return odeint(lambda y, tt, k: -k * y, y0, t, args=(k,), rtol=TOL, atol=TOL)[-1]

    dt_dk = grad(lambda k: grad(L, 0)(t, k)[1])(k)
    dt_dt = jacobian(grad(L, 0))(t, k)
    tau = t[1] - t[0]
    e = y0 * onp.exp(-k * tau)
    exact_tk = e * (k * tau - 1.0)
    exact_tt = k ** 2 * e * onp.array([[1.0, -1.0], [-1.0, 1.0]])
    err = max(relative_error(dt_dk, exact_tk), relative_error(dt_dt, exact_tt))
    record_error("Hessian vs closed form: decay mixed t/k", err)
    assert err < 10 * GRAD_RTOL


def test_linear_hessian_wrt_y0_is_zero_and_mixed_is_expm():
    """L = g·y(T) is linear in y0: ∂²L/∂y0² = 0 and ∂²L/∂y0∂s for A = s·A0 is g·A0 expm(sA0T)T."""
    A0 = onp.array([[-0.4, 1.0], [-1.0, -0.2]])
    g = onp.array([1.0, -2.0])
    T = 1.3

    def L(y0, s):
        return np.dot(g, odeint(lambda y, t, s: s * np.dot(A0, y), y0, [0.0, T], args=(s,),
                                rtol=TOL, atol=TOL)[-1])

    y0 = onp.array([0.5, 1.0])
    assert onp.max(onp.abs(hessian(L)(y0, 1.0))) < 1e-12
    mixed = jacobian(grad(L, 0), 1)(y0, 1.0)
    exact = (scipy.linalg.expm(A0 * T) @ (A0 * T)).T @ g  # d/ds expm(s A0 T)^T g at s=1
    assert relative_error(mixed, exact) < GRAD_RTOL


def _lv_params_loss(p, tol):
    ys = odeint(_lv, onp.array([1.0, 2.0]), onp.array([0.0, 0.8, 1.5]), args=(p,), rtol=tol, atol=tol)
    return np.sum(ys[1:] ** 2)


@pytest.mark.parametrize("tol", [TOL])
def test_hessian_vs_fd_of_gradient_fast(tol, record_error):
    """Hessian w.r.t. the 4 Lotka-Volterra parameters (short span to keep it fast)."""
    theta = LV_THETA[:4]
    H = hessian(lambda p: _lv_params_loss(p, tol))(theta)
    H_fd = central_differences(grad(lambda p: _lv_params_loss(p, FD_SOLVE_TOL)), theta, **FD)
    err = relative_error(H, H_fd)
    record_error("Hessian vs FD of grad: lotka_volterra params (short)", err)
    assert err < HESS_RTOL
    assert relative_error(H, H.T) < HESS_RTOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lotka_volterra", "non_autonomous"])
def test_hessian_vs_fd_of_gradient(name, record_error):
    """Full Hessians (params, y0 / output times) at 1e-12: ~25 s each."""
    loss, theta = PROBLEMS[name]
    H = hessian(lambda th: loss(th, tol=FD_SOLVE_TOL))(theta)
    gradient = grad(lambda th: loss(th, tol=FD_SOLVE_TOL))
    H_fd = central_differences(gradient, theta, **FD)
    err = relative_error(H, H_fd)
    record_error(f"Hessian vs FD of grad: {name}", err)
    assert err < HESS_RTOL
    assert relative_error(H, H.T) < HESS_RTOL


def test_hessian_vector_product_and_make_vjp(record_error):
    loss, theta = PROBLEMS["tanh_mlp"]
    v = onp.random.default_rng(3).normal(size=theta.shape)
    gradient = grad(lambda th: loss(th, tol=TOL))
    hvp = grad(lambda th: np.dot(gradient(th), v))(theta)
    gradient = grad(lambda th: loss(th, tol=FD_SOLVE_TOL))
    # Independent reference: directional FD of the gradient along v.
    ref = central_differences(lambda s: gradient(theta + s * v), 0.0, **FD)
    err = relative_error(hvp, ref)
    record_error("HVP vs FD of grad: tanh_mlp", err)
    assert err < HESS_RTOL
    # make_vjp of the gradient gives the same product (H is symmetric). Its gradient is traced
    # twice, so it solves y alone and then the sensitivities, where a first derivative takes y
    # from the sensitivity solve of the forward pass: the two agree to the solver's tolerance.
    vjp, g_val = make_vjp(gradient)(theta)
    assert relative_error(g_val, gradient(theta)) < 100 * FD_SOLVE_TOL
    assert relative_error(vjp(v), hvp) < 1e-8


def test_jacobian_of_trajectory_vs_fd(record_error):
    """Full Jacobian d ys / d theta (every output time, every state) for Lotka-Volterra."""
    t = onp.array([0.0, 0.5, 1.5])

    def traj(p, tol=TOL):
        return odeint(_lv, onp.array([1.0, 2.0]), t, args=(p,), rtol=tol, atol=tol)

    J = jacobian(traj)(LV_THETA[:4])
    J_fd = central_differences(lambda p: traj(p, tol=FD_SOLVE_TOL), LV_THETA[:4], **FD)
    assert J.shape == (3, 2, 4)
    assert onp.all(J[0] == 0.0)
    err = relative_error(J, J_fd)
    record_error("jacobian vs FD: lotka_volterra trajectory", err)
    assert err < FD_RTOL


# --------------------------------------------------------------------------------------------
# 7. Adjoint modes: contracting stiff linear system; checkpoints; seminorm.
# --------------------------------------------------------------------------------------------

A_STIFF = onp.array([[-50.0, 0.0], [1.0, -1.0]])   # eigenvalues -50 and -1
Y0_STIFF = onp.array([1.0, 1.0])


def _stiff_loss(A, t, **kw):
    return np.sum(odeint(linear, Y0_STIFF, t, args=(A,), rtol=TOL, atol=TOL, **kw)[-1])


@pytest.mark.parametrize("method", METHODS)
def test_backsolve_fails_on_contracting_problem_checkpoints_fix_it(method, record_error):
    """Reconstructing y backwards over [0, 2] amplifies the forward error in the fast mode by
    e^{50·2} ≈ 1e43: Algorithm 1 verbatim (``backsolve``) gives garbage or fails. Restarting the
    reconstruction from stored states every 0.1 (``checkpoints=19``) bounds it by e^5."""
    t = onp.array([0.0, 2.0])
    exact, _, _ = linear_gradients(A_STIFF, Y0_STIFF, t, onp.array([[0.0, 0.0], [1.0, 1.0]]))

    def bad_or_raises(**kw):
        try:
            g = grad(_stiff_loss)(A_STIFF, t, method=method, **kw)
        except ODESolveError:
            return True
        return relative_error(g, exact) > 1.0

    assert bad_or_raises(adjoint="backsolve")
    assert bad_or_raises(adjoint="checkpoint")                  # one interval: no restart point
    if method == "lsoda":
        assert bad_or_raises(adjoint="backsolve", checkpoints=19)   # backsolve ignores checkpoints

    g = grad(_stiff_loss)(A_STIFF, t, method=method, adjoint="checkpoint", checkpoints=19)
    err = relative_error(g, exact)
    record_error(f"stiff linear, checkpoints=19 ({method})", err)
    assert err < GRAD_RTOL
    # The interpolating adjoint reads y from a dense forward solution: no backward y at all.
    g = grad(_stiff_loss)(A_STIFF, t, method=method, adjoint="interpolate")
    err = relative_error(g, exact)
    record_error(f"stiff linear, interpolate ({method})", err)
    assert err < GRAD_RTOL


def test_backward_failure_message_suggests_interpolate():
    with pytest.raises(ODESolveError, match=r"backward \(adjoint\) solve failed.*lsoda failed at t = .*interpolate"):
        grad(_stiff_loss)(A_STIFF, onp.array([0.0, 2.0]), method="lsoda", adjoint="backsolve")


def test_interpolate_is_first_order_only():
    def loss(k):
        return odeint(lambda y, t, k: -k * y, 1.0, [0.0, 1.0], args=(k,), adjoint="interpolate")[-1]

    assert abs(grad(loss)(0.5) + onp.exp(-0.5)) < 1e-6
    with pytest.raises(NotImplementedError, match=r"first derivatives only.*checkpoint"):
        grad(grad(loss))(0.5)


def test_checkpoint_mode_uses_output_times_as_restart_points(record_error):
    """With 11 output times the checkpoint mode alone is right; backsolve is still wrong."""
    t = onp.linspace(0.0, 2.0, 11)
    G = onp.zeros((11, 2))
    G[-1] = 1.0
    exact, _, _ = linear_gradients(A_STIFF, Y0_STIFF, t, G)
    g = grad(_stiff_loss)(A_STIFF, t, adjoint="checkpoint")
    err = relative_error(g, exact)
    record_error("stiff linear, 11 output times checkpoint (lsoda)", err)
    assert err < GRAD_RTOL
    try:
        bad = grad(_stiff_loss)(A_STIFF, t, adjoint="backsolve")
        assert relative_error(bad, exact) > 1.0
    except ODESolveError:
        pass


@pytest.mark.parametrize("checkpoints", [1, 3])
def test_checkpoints_do_not_change_values_or_gradients(checkpoints):
    theta = LV_THETA
    base_val = lv_loss(theta)
    base_g = grad(lv_loss)(theta)
    val = lv_loss(theta, checkpoints=checkpoints)
    g = grad(lv_loss)(theta, checkpoints=checkpoints)
    assert abs(val - base_val) < 1e-8 * abs(base_val)
    assert relative_error(g, base_g) < GRAD_RTOL
    ys = odeint(_lv, theta[4:], T_LV, args=(theta[:4],), checkpoints=checkpoints)
    assert ys.shape == (len(T_LV), 2)


@pytest.mark.parametrize("method", METHODS)
def test_seminorm_gradients_within_tolerance(method, record_error):
    A = onp.array([[-0.5, 1.0, 0.0], [-1.0, -0.3, 0.2], [0.1, 0.0, -0.8]])
    y0 = onp.array([1.0, -0.5, 0.3])
    t = onp.array([0.0, 0.6, 2.0])
    G = onp.array([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [0.5, -0.5, 1.0]])

    def loss(A, y0, t, seminorm):
        return np.sum(odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL, method=method,
                             adjoint="checkpoint", adjoint_seminorm=seminorm) * G)

    with record_stats() as rec_semi:
        got = grad(loss, argnum=(0, 1, 2))(A, y0, t, True)
    with record_stats() as rec_full:
        grad(loss, argnum=(0, 1, 2))(A, y0, t, False)
    for g, e in zip(got, linear_gradients(A, y0, t, G)):
        err = relative_error(g, e)
        record_error(f"seminorm: linear expm ({method})", err)
        assert err < 10 * GRAD_RTOL
    # The point of the seminorm: no more backward work than the full norm (fewer in practice).
    assert rec_semi.backward.nfe <= 1.05 * rec_full.backward.nfe


def test_seminorm_mlp_vs_fd(record_error):
    g = grad(mlp_loss)(MLP_THETA, tol=TOL, adjoint_seminorm=True)
    fd = central_differences(lambda th: mlp_loss(th, tol=FD_SOLVE_TOL), MLP_THETA, **FD)
    err = relative_error(g, fd)
    record_error("seminorm: tanh_mlp vs FD", err)
    assert err < FD_RTOL


@pytest.mark.parametrize("adjoint_method", METHODS)
def test_adjoint_method_and_tolerances_independent_of_forward(adjoint_method, record_error):
    gA = grad(lambda A: np.sum(odeint(linear, onp.array([1.0, 2.0]), [0.0, 1.5],
                                      args=(A,), method="lsoda", rtol=TOL, atol=TOL,
                                      adjoint_method=adjoint_method, adjoint_rtol=1e-11,
                                      adjoint_atol=1e-11)[-1]))
    A = onp.array([[-0.3, 0.8], [-0.8, -0.1]])
    exact, _, _ = linear_gradients(A, onp.array([1.0, 2.0]), onp.array([0.0, 1.5]),
                                  onp.array([[0.0, 0.0], [1.0, 1.0]]))
    err = relative_error(gA(A), exact)
    record_error(f"adjoint_method={adjoint_method}: linear", err)
    assert err < GRAD_RTOL


# --------------------------------------------------------------------------------------------
# Forward mode (make_jvp: forward sensitivities through the same primitive).
# --------------------------------------------------------------------------------------------

def test_jvp_linear_vs_expm_frechet(record_error):
    A = onp.array([[-0.5, 1.0], [-1.0, -0.3]])
    y0 = onp.array([1.0, -0.5])
    t = onp.array([0.0, 0.7, 1.9])
    dA = onp.array([[0.3, -0.2], [0.5, 0.1]])
    dy0 = onp.array([-1.0, 2.0])

    def traj(A, y0):
        return odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL)

    ys, d_ys = make_jvp(traj, argnum=(0, 1))(A, y0)((dA, dy0))
    exact = onp.stack([scipy.linalg.expm_frechet(A * tau, dA * tau, compute_expm=False) @ y0
                       + scipy.linalg.expm(A * tau) @ dy0 for tau in t])
    err = relative_error(d_ys, exact)
    record_error("JVP vs expm_frechet: linear", err)
    assert err < GRAD_RTOL


def test_jvp_wrt_times_vs_closed_form(record_error):
    """Tangent along t for decay: d y(t_i) = -k y(t_i) (dt_i - dt_0)."""
    k, y0 = 0.8, 1.5
    t = onp.array([0.2, 0.9, 2.0])
    dt = onp.array([0.3, -1.0, 0.5])
    _, d_ys = make_jvp(lambda tt: odeint(lambda y, s, k: -k * y, y0, tt, args=(k,), rtol=TOL, atol=TOL)[:, 0])(t)(dt)
    ys = y0 * onp.exp(-k * (t - t[0]))
    err = relative_error(d_ys, -k * ys * (dt - dt[0]))
    record_error("JVP vs closed form: decay times", err)
    assert err < GRAD_RTOL


def test_forward_over_reverse_hvp_matches_reverse_over_reverse():
    loss, theta = PROBLEMS["lotka_volterra"]
    v = onp.random.default_rng(5).normal(size=theta.shape)
    gradient = grad(lambda th: loss(th, tol=TOL))
    _, hvp_fwd = make_jvp(gradient)(theta)(v)
    hvp_rev = grad(lambda th: np.dot(gradient(th), v))(theta)
    assert relative_error(hvp_fwd, hvp_rev) < HESS_RTOL


# --------------------------------------------------------------------------------------------
# 8. Property-based.
# --------------------------------------------------------------------------------------------

@st.composite
def _times(draw, max_len=5):
    """Sorted distinct output times in [0, 2] with spacing >= 1e-3 (at least two)."""
    n = draw(st.integers(2, max_len))
    gaps = draw(st.lists(st.floats(1e-3, 0.8), min_size=n - 1, max_size=n - 1))
    t0 = draw(st.floats(-1.0, 1.0))
    t = t0 + onp.concatenate([[0.0], onp.cumsum(gaps)])
    if draw(st.booleans()):
        t = t[::-1].copy()   # decreasing output times are allowed too
    return t


@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_OK)
@given(n=st.integers(1, 3), t=_times(), seed=st.integers(0, 2**31 - 1),
       mode=st.sampled_from(MODES))
def test_property_linear_gradients_vs_closed_form(n, t, seed, mode, record_error):
    rng = onp.random.default_rng(seed)
    A = rng.uniform(-1.0, 1.0, size=(n, n))
    y0 = rng.normal(size=n)
    G = rng.normal(size=(len(t), n))

    def loss(A, y0, t):
        return np.sum(odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL,
                             adjoint=mode) * G)

    got = grad(loss, argnum=(0, 1, 2))(A, y0, t)
    exact = linear_gradients(A, y0, t, G)
    for name, g, e in zip(("A", "y0", "t"), got, exact):
        # Absolute floor: entries of size 1e-? relative to the largest gradient entry.
        err = relative_error(g, e, floor=1e-3)
        record_error(f"property: linear closed form ({name})", err)
        assert err < 10 * GRAD_RTOL, (name, g, e)


@settings(max_examples=15, deadline=None, suppress_health_check=SLOW_OK)
@given(shape=st.sampled_from([(), (2,), (3,), (2, 2), (1, 2, 2)]), t=_times(max_len=4),
       seed=st.integers(0, 2**31 - 1))
def test_property_tanh_dynamics_vs_fd(shape, t, seed, record_error):
    rng = onp.random.default_rng(seed)
    n = int(onp.prod(shape)) if shape else 1
    W = rng.normal(size=(n, n)) * 0.7
    b = rng.normal(size=n) * 0.3
    y0 = rng.normal(size=shape) if shape else float(rng.normal())
    weights = rng.normal(size=(len(t),) + (shape or (1,)))   # a scalar y0 gives ys of shape (T, 1)

    def f(y, tt, W, b):
        flat = np.reshape(y, (n,))
        return np.reshape(np.tanh(np.dot(W, flat) + b) - 0.5 * flat, shape)

    def loss(theta, tol):
        W_, b_ = np.reshape(theta[: n * n], (n, n)), theta[n * n:]
        ys = odeint(f, y0, t, args=(W_, b_), rtol=tol, atol=tol)
        assert ys.shape == weights.shape
        return np.sum(weights * ys)

    theta = onp.concatenate([W.ravel(), b])
    g = grad(loss)(theta, TOL)
    fd = central_differences(lambda th: loss(th, FD_SOLVE_TOL), theta, **FD)
    err = relative_error(g, fd, floor=1e-3)
    record_error("property: tanh dynamics vs FD", err)
    assert err < FD_RTOL
