"""Forward sensitivities as the gradient (``adjoint="forward"``) and the automatic choice
(``adjoint="auto"``, the default): closed forms, finite differences, second derivatives, time
derivatives of every output, stiff problems, and which method ``auto`` picks.

Tolerances: see the module docstring of ``tests/tolerances.py``.
"""

from __future__ import annotations

import functools
import math

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad, hessian, jacobian, make_jvp, value_and_grad

from odegrad import ODESolveError, auto, odeint, record_stats
from odegrad.augmented import AugmentedLayout
from odegrad.autograd_backend import AutogradOps
from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck.problems import (
    LINEAR,
    LOTKA_VOLTERRA,
    REVERSIBLE_KINETICS,
    decay,
    linear,
    linear_gradients,
    reversible_kinetics,
)
from odegrad.gradcheck.problems import lotka_volterra_p as lv
from odegrad.methods import ForwardShape, get
from odegrad.sensitivity import SensitivityLayout
from odegrad.solvers import METHODS
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, HESS_RTOL, TOL

A_LIN, Y0_LIN = LINEAR.p, LINEAR.y0
T_LIN = onp.append(LINEAR.t, 2.3)
G_LIN = onp.random.default_rng(7).standard_normal((len(T_LIN), 3))


def _linear_loss(A, y0, t, **kw):
    return np.sum(G_LIN * odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL, **kw))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("adjoint", ["forward", "auto"])
def test_linear_gradients_vs_closed_form(method, adjoint, record_error):
    """∂/∂A (expm_frechet), ∂/∂y0 (expm transposed), ∂/∂t_i = g_i·A y_i and ∂/∂t_0 = -Σ."""
    got = grad(_linear_loss, (0, 1, 2))(A_LIN, Y0_LIN, T_LIN, method=method, adjoint=adjoint)
    for g, exact, what in zip(got, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN), ("A", "y0", "t")):
        err = relative_error(g, exact)
        record_error(f"{adjoint} ({method}): linear d/d{what} vs closed form", err)
        assert err < GRAD_RTOL, what


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (0, 2), (1, 2), (0, 1)])
def test_each_subset_of_inputs(wrt):
    """The sensitivity state holds only the columns asked for; every subset gives the same."""
    full = grad(_linear_loss, (0, 1, 2))(A_LIN, Y0_LIN, T_LIN, adjoint="forward")
    part = grad(_linear_loss, wrt)(A_LIN, Y0_LIN, T_LIN, adjoint="forward")
    for k, g in zip(wrt, part):
        assert relative_error(g, full[k]) < 1e-7


def test_decreasing_times_and_single_time():
    t = T_LIN[::-1] - 2.3
    got = grad(_linear_loss, (0, 1, 2))(A_LIN, Y0_LIN, t, adjoint="forward")
    for g, exact in zip(got, linear_gradients(A_LIN, Y0_LIN, t, G_LIN)):
        assert relative_error(g, exact) < GRAD_RTOL
    g_y0, g_t = grad(lambda y0, t: np.sum(odeint(linear, y0, t, args=(A_LIN,), adjoint="forward") * 2.0),
                     (0, 1))(Y0_LIN, onp.array([0.5]))
    assert onp.allclose(g_y0, 2.0) and onp.allclose(g_t, 0.0)


def test_one_sensitivity_solve_serves_every_row_of_a_jacobian(record_error):
    """jacobian() asks the VJP for one cotangent per output entry: forward sensitivities solve
    once (in the forward pass, with y) and reuse the solution; the adjoint would solve once per
    row and interval."""
    k = onp.array([0.7, 1.3])

    def trajectory(k, adjoint):
        return odeint(lambda y, t, k: -k * y, onp.array([1.0, 2.0]), T_LIN, args=(k,), rtol=TOL,
                      atol=TOL, adjoint=adjoint)

    with record_stats() as rec:
        J = jacobian(trajectory)(k, "forward")
    assert rec.forward.nsolves == 1 and rec.backward.nsolves == 0
    assert [info.sensitivities_in_forward for info in rec.calls] == [True]
    tau = (T_LIN - T_LIN[0])[:, None]
    exact = onp.zeros((len(T_LIN), 2, 2))
    for j in range(2):
        exact[:, j, j] = -tau[:, 0] * (j + 1.0) * onp.exp(-k[j] * tau[:, 0])
    err = relative_error(J, exact)
    record_error("forward: jacobian of a trajectory vs closed form", err)
    assert err < GRAD_RTOL
    with record_stats() as rec:
        jacobian(trajectory)(k, "checkpoint")
    assert rec.backward.nsolves == (len(T_LIN) - 1) * J.size // 2


@pytest.mark.parametrize("adjoint", ["forward", "auto"])
def test_second_derivatives_closed_form(adjoint, record_error):
    """y0 exp(-k (t - t0)): d²/dk², d²/dy0 dk, and the mixed time/parameter derivatives."""
    t = onp.array([0.3, 1.1, 2.0])
    y0, k = 1.5, 0.6

    def L(y0, t, k):
        return np.sum(odeint(decay, y0, t, args=(k,), rtol=TOL, atol=TOL, adjoint=adjoint)[1:])

    tau = t[1:] - t[0]
    e = onp.exp(-k * tau)
    checks = [
        (grad(grad(L, 2), 2)(y0, t, k), onp.sum(tau ** 2 * y0 * e)),
        (grad(grad(L, 2), 0)(y0, t, k), onp.sum(-tau * e)),
        (jacobian(grad(L, 1), 2)(y0, t, k),
         onp.concatenate([[-onp.sum(y0 * e * (k * tau - 1))], y0 * e * (k * tau - 1)])),
    ]
    err = max(relative_error(got, exact) for got, exact in checks)
    record_error(f"{adjoint}: second derivatives of decay vs closed form", err)
    assert err < 10 * GRAD_RTOL


def _lv_loss(p, tol, adjoint):
    ys = odeint(lv, onp.array([1.0, 2.0]), onp.array([0.0, 0.8, 1.5, 2.2]), args=(p,), rtol=tol,
                atol=tol, adjoint=adjoint)
    return np.sum(ys[1:] ** 2)


@pytest.mark.parametrize("adjoint", ["forward", "auto", "checkpoint"])
def test_hessian_vs_fd_of_gradient(adjoint, record_error):
    theta = LOTKA_VOLTERRA.p
    H = hessian(lambda p: _lv_loss(p, TOL, adjoint))(theta)
    H_fd = central_differences(grad(lambda p: _lv_loss(p, FD_SOLVE_TOL, "forward")), theta, **FD)
    err = relative_error(H, H_fd)
    record_error(f"{adjoint}: Hessian vs FD of grad, lotka_volterra", err)
    assert err < HESS_RTOL
    assert relative_error(H, H.T) < HESS_RTOL


def test_forward_over_reverse_and_gradient_vs_fd(record_error):
    theta = LOTKA_VOLTERRA.p
    g = grad(lambda p: _lv_loss(p, TOL, "forward"))(theta)
    fd = central_differences(lambda p: _lv_loss(p, FD_SOLVE_TOL, "forward"), theta, **FD)
    assert relative_error(g, fd) < FD_RTOL
    v = onp.array([0.3, -1.0, 0.5, 2.0])
    hvp = make_jvp(grad(lambda p: _lv_loss(p, TOL, "forward")))(theta)(v)[1]
    H = hessian(lambda p: _lv_loss(p, TOL, "checkpoint"))(theta)
    err = relative_error(hvp, H @ v)
    record_error("forward: forward-over-reverse HVP vs checkpoint Hessian", err)
    assert err < HESS_RTOL


def test_seminorm_is_refused_by_forward_sensitivities():
    """Every entry of S enters the gradient: no seminorm for forward sensitivities."""
    with pytest.raises(ValueError, match="adjoint_seminorm=True does not apply to adjoint='forward'"):
        odeint(lv, onp.array([1.0, 2.0]), onp.array([0.0, 1.0]), args=(onp.ones(4),), adjoint="forward",
               adjoint_seminorm=True)


def test_only_what_is_differentiated_is_traced():
    """func may turn t (or the parameters) into a Python float when they are not differentiated:
    the adjoint's state then holds no a_t (no a_theta), and f is never traced in them."""
    def f_t_float(y, t, k):
        return -k * y * (1.0 + 0.1 * math.cos(float(t)))

    def f_k_float(y, t, k):
        return -float(k) * y

    t = onp.array([0.0, 0.5, 1.5])

    def reference(y, s, k):
        return -k * y * (1.0 + 0.1 * np.cos(s))

    for adjoint in ("checkpoint", "interpolate", "forward", "auto"):
        def final(f, y0, k, adjoint=adjoint):
            return odeint(f, y0, t, args=(k,), adjoint=adjoint)[-1]

        g_k = grad(final, 2)(f_t_float, 1.0, 0.7)
        g_k_ref = grad(final, 2)(reference, 1.0, 0.7)
        assert abs(g_k - g_k_ref) < 1e-7 * abs(g_k_ref), adjoint
        g_y0 = grad(final, 1)(f_k_float, 1.0, 0.7)
        assert abs(g_y0 - onp.exp(-0.7 * 1.5)) < 1e-6, adjoint
    layout = AugmentedLayout(3, 5, with_time=False, with_params=False)
    assert layout.size == 6 and layout.split(onp.arange(6.0))[2:] == (None, None)


def test_sensitivity_layout_and_block_jacobian():
    layout = SensitivityLayout(2, 3, with_y0=True, with_t0=True, with_params=True)
    assert layout.columns == 6 and layout.size == 14
    J = onp.array([[1.0, 2.0], [3.0, 4.0]])
    block = layout.jacobian(J)
    S = onp.random.default_rng(0).standard_normal((2, 6))
    # d vec(J S)/d vec(S) (S stored row by row) is J ⊗ I_q.
    assert onp.allclose(block[2:, 2:] @ S.ravel(), (J @ S).ravel())
    assert onp.allclose(block[:2, :2], J) and not block[2:, :2].any() and not block[:2, 2:].any()


@pytest.mark.parametrize("with_y0,with_t0,with_params", [(True, True, True), (False, True, False), (True, False, True)])
def test_sensitivity_state_and_cotangents_through_ops(with_y0, with_t0, with_params):
    """The initial state ``[y0, I | -f0 | 0]`` and the cotangents ``Σ_i S(t_i)ᵀ g_i``, written with a
    backend's ops, against the same formulas in plain NumPy."""
    n, p, T = 2, 3, 4
    layout = SensitivityLayout(n, p, with_y0=with_y0, with_t0=with_t0, with_params=with_params)
    rng = onp.random.default_rng(5)
    y0, f0 = rng.standard_normal(n), rng.standard_normal(n)
    blocks = ([onp.eye(n)] if with_y0 else []) + ([-f0[:, None]] if with_t0 else []) + \
        ([onp.zeros((n, p))] if with_params else [])
    z0 = layout.initial_state(y0, f0, AutogradOps)
    assert onp.array_equal(z0, onp.concatenate([y0, onp.concatenate(blocks, axis=1).ravel()]))
    zs = rng.standard_normal((T, layout.size))
    g, rates = rng.standard_normal((T, n)), rng.standard_normal((T - 1, n))
    S = zs[1:, n:].reshape(T - 1, n, layout.columns)
    sums = sum(S[i].T @ g[i + 1] for i in range(T - 1))
    g_y0, g_t, g_theta = layout.cotangents(g, zs, rates, AutogradOps)
    assert (g_y0 is None) != with_y0 and (g_t is None) != with_t0 and (g_theta is None) != with_params
    if with_y0:
        assert onp.allclose(g_y0, g[0] + sums[:n])
    if with_t0:
        assert onp.allclose(g_t, onp.concatenate([[sums[n * with_y0]], (g[1:] * rates).sum(axis=1)]))
    if with_params:
        assert onp.allclose(g_theta, sums[-p:])


LOG_K_STIFF, T_STIFF = REVERSIBLE_KINETICS.p, REVERSIBLE_KINETICS.t
W_STIFF = onp.random.default_rng(4).standard_normal((4, 3))


def _stiff_loss(lk, tol=1e-8, **kw):
    return np.sum(W_STIFF * odeint(reversible_kinetics, onp.array([1.0, 0.0, 0.0]), T_STIFF, args=(lk,),
                                   rtol=tol, atol=1e-10, **kw))


def test_stiff_gradient_with_default_options(record_error):
    """A stiff fast equilibrium (LSODA switches to BDF): the checkpoint adjoint fails here, the
    default (forward sensitivities with their Jacobian) is right."""
    _, info = odeint(reversible_kinetics, onp.array([1.0, 0.0, 0.0]), T_STIFF, args=(LOG_K_STIFF,),
                     rtol=1e-8, atol=1e-10, full_output=True)
    assert info["odegrad"].forward.method_switches > 0 and 2 in info["mused"]
    with pytest.raises(ODESolveError, match=r"backward \(adjoint\) solve failed.*adjoint='auto'"):
        grad(_stiff_loss)(LOG_K_STIFF, adjoint="checkpoint")
    with record_stats() as rec:
        g = grad(_stiff_loss)(LOG_K_STIFF)
    assert rec.calls[0].sensitivities_in_forward and rec.calls[0].gradient_methods == ["forward"]
    assert rec.forward.nsolves == 1 and rec.backward.nsolves == 0
    fd = central_differences(lambda lk: _stiff_loss(lk, tol=FD_SOLVE_TOL), LOG_K_STIFF, **FD)
    err = relative_error(g, fd)
    record_error("auto: stiff reversible kinetics gradient vs FD", err)
    assert err < FD_RTOL
    g_full_jacobian = grad(_stiff_loss)(LOG_K_STIFF, adjoint="forward", adjoint_jacobian=True)
    assert relative_error(g_full_jacobian, fd) < FD_RTOL


@pytest.mark.slow
def test_stiff_hessian_with_default_options(record_error):
    """Hessians of a stiff problem (~90 s): forward sensitivities of forward sensitivities."""
    H = hessian(_stiff_loss)(LOG_K_STIFF)
    H_fd = central_differences(grad(lambda lk: _stiff_loss(lk, tol=1e-11)), LOG_K_STIFF, **FD)
    err = relative_error(H, H_fd)
    record_error("auto: stiff reversible kinetics Hessian vs FD of grad", err)
    assert err < HESS_RTOL


def test_auto_switches_to_sensitivities_at_the_second_cotangent(record_error):
    """Where auto starts with the adjoint (a wide state, one interval), a Jacobian's second row
    solves the sensitivities once for all the remaining rows."""
    rng = onp.random.default_rng(5)
    n = 40
    W = rng.standard_normal((n, n)) / n

    def f(y, t, b):
        return np.tanh(np.dot(W, y) + b) - 0.5 * y

    y0, b0 = onp.linspace(-1.0, 1.0, n), 0.1 * rng.standard_normal(n)
    with record_stats() as rec:
        odeint(f, y0, [0.0, 1.0], args=(b0,), rtol=TOL, atol=TOL)
    assert auto.choose(n=n, columns=n, n_intervals=1, nfe=rec.forward.nfe, rtol=TOL, stiff=False,
                       higher_order=False) == "checkpoint"
    final = lambda b: odeint(f, y0, [0.0, 1.0], args=(b,), rtol=TOL, atol=TOL)[-1]  # noqa: E731
    with record_stats() as rec:
        J = jacobian(final)(b0)
    assert rec.backward.nsolves == 2  # one adjoint interval, then one sensitivity solve
    J_fd = central_differences(lambda b: odeint(f, y0, [0.0, 1.0], args=(b,), rtol=FD_SOLVE_TOL,
                                           atol=FD_SOLVE_TOL)[-1], b0, **FD)
    err = relative_error(J, J_fd)
    record_error("auto: jacobian after switching to sensitivities vs FD", err)
    assert err < FD_RTOL


def _wide_mlp_loss(p, **kwargs):
    """A 4-state tanh MLP with 4,612 parameters: auto's checkpoint adjoint, 4,621 backward entries."""
    n, h = 4, 512

    def f(y, t, p):
        W1, b1, W2 = np.reshape(p[:h * n], (h, n)), p[h * n:h * n + h], np.reshape(p[h * n + h:2 * h * n + h], (n, h))
        return np.dot(W2, np.tanh(np.dot(W1, y) + b1)) / h - 0.5 * y + p[-n:]

    ys = odeint(f, onp.ones(n), onp.linspace(0.0, 1.0, 3), args=(p,), rtol=1e-8, atol=1e-8, **kwargs)
    return np.sum(ys ** 2)


def test_auto_solves_a_wide_checkpoint_adjoint_backwards_with_adams(record_error):
    """After a non-stiff LSODA forward solve of a wide problem, auto's checkpoint adjoint runs
    backwards with VODE's Adams (as adjoint_method='adams' would); an adjoint_method of the user's
    is kept."""
    p = 0.5 * onp.random.default_rng(11).standard_normal(2 * 4 * 512 + 512 + 4)
    assert auto.backward_method("lsoda", False, None, 2 * 4 + 1 + p.size) == "adams"
    assert auto.backward_method("lsoda", True, None, 2 * 4 + 1 + p.size) is None          # stiff
    assert auto.backward_method("lsoda", False, "lsoda", 2 * 4 + 1 + p.size) is None      # given
    assert auto.backward_method("lsoda", False, None, 100) is None                          # narrow
    with record_stats() as rec:
        g = grad(_wide_mlp_loss)(p)
    info = rec.calls[0]
    assert info.gradient_methods == ["checkpoint"] and info.backward.method == "adams"
    explicit = grad(_wide_mlp_loss)(p, adjoint="checkpoint", adjoint_method="adams")
    assert relative_error(g, explicit) < 1e-12
    with record_stats() as rec:
        g_lsoda = grad(_wide_mlp_loss)(p, adjoint_method="lsoda")
    assert rec.calls[0].backward.method == "lsoda"
    reference = grad(_wide_mlp_loss)(p, adjoint="checkpoint", adjoint_rtol=1e-11, adjoint_atol=1e-11)
    for what, got in (("adams", g), ("lsoda", g_lsoda)):
        err = relative_error(got, reference)
        record_error(f"auto: wide checkpoint adjoint backwards by {what} vs tight adjoint", err)
        assert err < 100 * 1e-8


@pytest.mark.parametrize("kwargs, expected", [
    # the benchmark problems (sizes, forward NFE and tolerances as measured)
    ({"n": 3, "columns": 2, "n_intervals": 4, "nfe": 221, "rtol": 1.49012e-8, "stiff": False}, "forward"),
    ({"n": 2, "columns": 252, "n_intervals": 99, "nfe": 53, "rtol": 1e-6, "stiff": False}, "forward"),
    ({"n": 64, "columns": 33088, "n_intervals": 4, "nfe": 39, "rtol": 1e-6, "stiff": False}, "checkpoint"),
    ({"n": 3, "columns": 3, "n_intervals": 11, "nfe": 987, "rtol": 1e-6, "stiff": True}, "forward"),
    ({"n": 2, "columns": 4, "n_intervals": 30, "nfe": 465, "rtol": 1e-8, "stiff": False}, "forward"),
    # a wide state over one interval; a wide stiff one, first and higher order
    ({"n": 16, "columns": 40, "n_intervals": 1, "nfe": 100, "rtol": 1e-6, "stiff": False}, "checkpoint"),
    # n = 60 with 200 outputs: forward sensitivities 9x cheaper (0.20 s against 1.79 s), their state
    # of 3,720 entries was over the old fixed cap of 2,000
    ({"n": 60, "columns": 61, "n_intervals": 199, "nfe": 107, "rtol": 1e-6, "stiff": False}, "forward"),
    ({"n": 60, "columns": 10, "n_intervals": 5, "nfe": 500, "rtol": 1e-6, "stiff": True}, "interpolate"),
])
def test_auto_rule(kwargs, expected):
    assert auto.choose(higher_order=False, **kwargs) == expected
    if expected == "interpolate":
        assert auto.choose(higher_order=True, **kwargs) == "checkpoint"
    # An adjoint or sensitivity solve being differentiated takes sensitivities where they fit.
    fits = auto.forward_fits(kwargs["n"], kwargs["columns"], kwargs["stiff"])
    assert (auto.choose(higher_order=True, derived=True, **kwargs) == "forward") == fits


def test_auto_rule_costs():
    assert auto.restart_evaluations(1e-4) < auto.restart_evaluations(1e-8) < auto.restart_evaluations(1e-10)
    assert auto.restart_evaluations(1.0) == 5.0
    # Many output intervals make the adjoint dearer, a wider state the sensitivities.
    assert auto.adjoint_cost(100, 50, 1e-6) > auto.adjoint_cost(100, 5, 1e-6)
    assert auto.forward_cost(20, 100) > auto.forward_cost(2, 100)
    assert not auto.forward_fits(100, 100, stiff=False) and auto.forward_fits(50, 100, stiff=False)
    assert auto.forward_fits(3, 3, stiff=True) and not auto.forward_fits(50, 100, stiff=True)


def test_first_derivative_solves_sensitivities_in_the_forward_pass(record_error):
    """Under one level of tracing, forward sensitivities (explicit, or auto's expected pick) are
    solved with y in the forward pass: the value is that solve's y, within the tolerance of a plain
    solve, the gradient is exact, and nothing runs backwards."""
    for adjoint in ("forward", "auto"):
        with record_stats() as rec:
            value, got = value_and_grad(_linear_loss, (0, 1, 2))(A_LIN, Y0_LIN, T_LIN, adjoint=adjoint)
        info = rec.calls[0]
        assert info.sensitivities_in_forward and info.gradient_methods == ["forward"]
        assert rec.forward.nsolves == 1 and rec.backward.nsolves == 0
        assert abs(value - _linear_loss(A_LIN, Y0_LIN, T_LIN)) < 100 * TOL * onp.sum(onp.abs(G_LIN))
        for g, exact, what in zip(got, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN), ("A", "y0", "t")):
            err = relative_error(g, exact)
            record_error(f"{adjoint}, in the forward pass: linear d/d{what} vs closed form", err)
            assert err < GRAD_RTOL, what


@pytest.mark.parametrize("kwargs", [{"adjoint": "checkpoint"}, {"adjoint_rtol": 1e-9},
                                    {"adjoint_method": "bdf"}, {"checkpoints": 2}, {"full_output": True}])
def test_forward_pass_solves_y_alone_otherwise(kwargs):
    """Not for the adjoint, not where the derived solves control y differently from the forward
    solve (their y could not stand for it), not with checkpoints or scipy's infodict (which
    describe the forward solve); the gradient is then what the method computes after it."""
    full_output = kwargs.get("full_output", False)

    def loss(A):
        out = odeint(linear, Y0_LIN, T_LIN, args=(A,), rtol=TOL, atol=TOL, **kwargs)
        return np.sum(G_LIN * (out[0] if full_output else out))

    with record_stats() as rec:
        g = grad(loss)(A_LIN)
    assert not rec.calls[0].sensitivities_in_forward and rec.backward.nsolves >= 1
    assert relative_error(g, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]) < GRAD_RTOL


def test_forward_mode_solves_y_alone():
    """make_jvp solves its own tangent system: its forward pass solves no sensitivities."""
    with record_stats() as rec:
        _, tangent = make_jvp(lambda A: _linear_loss(A, Y0_LIN, T_LIN, adjoint="forward"))(A_LIN)(onp.ones_like(A_LIN))
    assert not rec.calls[0].sensitivities_in_forward
    assert abs(tangent - onp.sum(linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0])) < GRAD_RTOL * abs(tangent)


def test_failed_forward_pass_sensitivity_solve_falls_back(monkeypatch):
    """Where the solve of y with its sensitivities fails, y is solved alone and the gradient method
    runs as it would have (its own sensitivity solve then reports the failure, if any)."""
    import odegrad.autograd_backend as backend

    def failing(*args, **kwargs):
        raise ODESolveError("lsoda failed: excess work done")

    monkeypatch.setattr(backend, "_solve_with_sensitivities", failing)
    with record_stats() as rec:
        g = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, adjoint="forward")
    assert not rec.calls[0].sensitivities_in_forward
    assert rec.forward.nsolves == 1 and rec.backward.nsolves == 1
    assert relative_error(g, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]) < GRAD_RTOL


def test_auto_expects_forward_sensitivities_where_they_fit_and_cost_less():
    """auto's choice before the forward solve: small states with few columns (the Quickstart's
    Lotka-Volterra, kinetics) yes, whether or not the solve turns stiff; a sensitivity system too
    large for the exact Jacobian a stiff solve would need (spiral-mlp's 506 entries) yes, but only
    while it stays non-stiff; a wide one, or one where the adjoint costs less, no."""
    shape = lambda n, q: ForwardShape(n=n, columns=q, n_intervals=99, rtol=1e-6, door="autograd")  # noqa: E731
    method = get("auto")
    assert auto.forward_in_forward_pass(2, 4, 30, 1e-8)
    assert auto.forward_in_forward_pass(3, 3, 11, 1e-6)
    assert method.sensitivities_in_forward_if_stiff(shape(3, 3))
    assert auto.forward_in_forward_pass(2, 252, 99, 1e-6)             # 506 entries
    assert not method.sensitivities_in_forward_if_stiff(shape(2, 252))
    assert get("forward").sensitivities_in_forward_if_stiff(shape(2, 252))
    assert not auto.forward_in_forward_pass(64, 33088, 4, 1e-6)
    assert not auto.forward_in_forward_pass(20, 1, 1, 1e-3)           # the adjoint is cheaper


def test_numpy_func_under_reverse_mode_solves_forwards_then_refuses_the_gradient():
    """A func written with plain NumPy has no derivatives: the forward pass's sensitivity solve
    fails, y is solved alone (the value is scipy's), and the gradient raises what it always did."""
    def f(y, t, A):
        return onp.dot(A, y)

    seen = {}

    def loss(A):
        seen["ys"] = odeint(f, Y0_LIN, T_LIN, args=(A,))
        return np.sum(seen["ys"])

    with pytest.raises(TypeError, match="autograd.numpy"):
        grad(loss)(A_LIN)
    plain = odeint(f, Y0_LIN, T_LIN, args=(A_LIN,))
    assert onp.array_equal(seen["ys"]._value, plain)


def test_wide_adams_backward_gradient_against_plain_scipy_directional_differences(record_error):
    """The independent reference for auto's Adams backward solve: central differences of the loss
    along random directions, each side a plain scipy.integrate.odeint solve at rtol = atol = 1e-12,
    at loss scales 1e-6, 1 and 1e6 (the normalised cotangent keeps the relative error fixed)."""
    import scipy.integrate

    n, h = 4, 512
    p = 0.5 * onp.random.default_rng(11).standard_normal(2 * n * h + h + n)

    def f_plain(y, t, p):
        W1, b1 = p[:h * n].reshape(h, n), p[h * n:h * n + h]
        W2 = p[h * n + h:2 * h * n + h].reshape(n, h)
        return W2 @ onp.tanh(W1 @ y + b1) / h - 0.5 * y + p[-n:]

    def plain_loss(q):
        ys = scipy.integrate.odeint(f_plain, onp.ones(n), onp.linspace(0.0, 1.0, 3), args=(q,),
                                    rtol=1e-12, atol=1e-12)
        return onp.sum(ys ** 2)

    directions = onp.random.default_rng(12).standard_normal((2, p.size))
    step = 1e-4
    reference = [(plain_loss(p + step * v) - plain_loss(p - step * v)) / (2 * step) for v in directions]
    for scale in (1e-6, 1.0, 1e6):
        with record_stats() as rec:
            g = grad(lambda q, scale=scale: scale * _wide_mlp_loss(q))(p)
        assert rec.calls[0].backward.method == "adams"
        got = directions @ g / scale
        err = relative_error(got, onp.array(reference))
        record_error("auto: wide Adams backward vs directional FD of plain scipy", err)
        assert err < 100 * 1e-8                  # the loss's rtol


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
@pytest.mark.parametrize("adjoint", ["forward", "auto"])
def test_forward_pass_sensitivities_at_every_loss_scale(scale, adjoint, record_error):
    """The gradient from the forward pass's sensitivity solve does not depend on the loss's scale:
    closed forms (expm_frechet, expm, A y) at loss scales 1e-8 to 1e8."""
    with record_stats() as rec:
        got = grad(lambda A, y0, t: scale * _linear_loss(A, y0, t, adjoint=adjoint), (0, 1, 2))(A_LIN, Y0_LIN, T_LIN)
    assert rec.calls[0].sensitivities_in_forward
    for g, exact, what in zip(got, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN), ("A", "y0", "t")):
        err = relative_error(g / scale, exact)
        record_error(f"{adjoint}, in the forward pass, loss scale {scale:g}: linear d/d{what} vs closed form", err)
        assert err < GRAD_RTOL, what


WIDE_T = onp.linspace(0.0, 6.0, 13)
WIDE_C = onp.random.default_rng(21).standard_normal(100)
WIDE_G = onp.random.default_rng(22).standard_normal((len(WIDE_T), 2))


def _forcing(t):
    k = np.arange(WIDE_C.size)
    return np.cos(k * t / 30.0) / (1.0 + k)


def _wide_oscillator(y, t, c):
    """A damped oscillator forced by ``c · φ(t)``: 2 states, 100 parameters (202 sensitivity
    entries, above the exact-Jacobian size), never stiff."""
    return np.array([y[1], -y[0] - 0.1 * y[1] + np.dot(c, _forcing(t))])


def _wide_stiff(y, t, c):
    """A fast state relaxing onto ``c · φ(t)`` at rate 1000 and a slow one following it: stiff
    (LSODA switches to BDF), 2 states, 100 parameters."""
    return np.array([-1000.0 * (y[0] - np.dot(c, _forcing(t))), y[0] - y[1]])


def _wide_loss(f, c, tol=1e-8, **kw):
    return np.sum(WIDE_G * odeint(f, onp.zeros(2), WIDE_T, args=(c,), rtol=tol, atol=tol, **kw))


WIDE_DIRECTIONS = onp.random.default_rng(23).standard_normal((3, WIDE_C.size))


@functools.lru_cache(maxsize=None)
def _wide_directional_fd(f):
    """Central differences of the loss along :data:`WIDE_DIRECTIONS`, each side a plain
    ``scipy.integrate.odeint`` solve at rtol = atol = 1e-12 (the losses are linear in c, so the
    differences are exact up to the solves' error)."""
    import scipy.integrate

    def plain_loss(c):
        ys = scipy.integrate.odeint(f, onp.zeros(2), WIDE_T, args=(c,), rtol=FD_SOLVE_TOL, atol=FD_SOLVE_TOL)
        return onp.sum(WIDE_G * ys)

    step = 1e-3
    return onp.array([(plain_loss(WIDE_C + step * v) - plain_loss(WIDE_C - step * v)) / (2 * step)
                      for v in WIDE_DIRECTIONS])


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("f, stiff", [(_wide_oscillator, False), (_wide_stiff, True)])
def test_auto_solves_wide_sensitivities_in_the_forward_pass_while_non_stiff(f, stiff, scale, monkeypatch,
                                                                           record_error):
    """Above the exact-Jacobian size (202 entries), auto solves y with its sensitivities in the
    forward pass while the solve stays non-stiff; a solve that turns stiff is abandoned at the
    solver's first request for a Jacobian and auto chooses with the stiffness known. Both
    gradients, at loss scales 1e-6 to 1e6, against directional central differences of plain scipy
    solves."""
    import odegrad.autograd_backend as backend

    attempts = []
    original = backend._solve_with_sensitivities
    monkeypatch.setattr(backend, "_solve_with_sensitivities", lambda *args: attempts.append(args[-1]) or original(*args))
    with record_stats() as rec:
        g = grad(lambda c: scale * _wide_loss(f, c))(WIDE_C) / scale
    info = rec.calls[0]
    assert attempts == [False]                     # tried, not to go on through a stiff phase
    assert info.sensitivities_in_forward is not stiff
    assert info.gradient_methods == (["interpolate"] if stiff else ["forward"])
    assert (info.forward.method_switches > 0) is stiff
    err = relative_error(WIDE_DIRECTIONS @ g, _wide_directional_fd(f))
    record_error(f"auto, {'stiff' if stiff else 'non-stiff'} 2 x 100 forcing: gradient vs directional FD", err)
    assert err < 1e-5                    # rtol 1e-8, 100x for the global error, 10x margin


def test_explicit_forward_sensitivities_go_on_where_the_forward_pass_turns_stiff(record_error):
    """adjoint="forward" solves the wide sensitivities whatever the stiffness: the forward pass's
    solve is its solve and goes on through the stiff phase (finite-difference Jacobians)."""
    with record_stats() as rec:
        g = grad(lambda c: _wide_loss(_wide_stiff, c, adjoint="forward"))(WIDE_C)
    assert rec.calls[0].sensitivities_in_forward and rec.backward.nsolves == 0
    err = relative_error(WIDE_DIRECTIONS @ g, _wide_directional_fd(_wide_stiff))
    record_error("forward, stiff 2 x 100 forcing, through the stiff phase: gradient vs directional FD", err)
    assert err < 1e-5


@pytest.mark.parametrize("method", ["adams", "bdf"])
def test_wide_forward_pass_sensitivities_by_the_vode_methods(method, record_error):
    """VODE's Adams reads no Jacobian, so the wide forward pass gets none to refuse with (VODE would
    run Adams with Newton iterations on one): its sensitivities are solved in the forward pass.
    BDF asks for a Jacobian at once: the forward pass abandons the wide solve at its first step."""
    with record_stats() as rec:
        g = grad(lambda c: _wide_loss(_wide_oscillator, c, method=method))(WIDE_C)
    assert rec.calls[0].sensitivities_in_forward is (method == "adams")
    err = relative_error(WIDE_DIRECTIONS @ g, _wide_directional_fd(_wide_oscillator))
    record_error(f"auto ({method}), 2 x 100 forcing: gradient vs directional FD", err)
    assert err < 1e-5


def test_solve_ivp_lsoda_reports_its_stiff_phase_to_auto(record_error):
    """scipy's solve_ivp does not expose LSODA's method indicator; a solve that evaluated Jacobians
    was in its BDF phase, so its statistics count a switch and auto chooses as for a stiff solve
    (here the interpolating adjoint, not forward sensitivities with finite-difference Jacobians)."""
    import odegrad

    def loss(c, f=_wide_stiff):
        sol = odegrad.solve_ivp(lambda t, y, c: f(y, t, c), (WIDE_T[0], WIDE_T[-1]), onp.zeros(2),
                                t_eval=WIDE_T, args=(c,), method="LSODA", rtol=1e-8, atol=1e-8)
        return np.sum(WIDE_G * sol.y.T)

    with record_stats() as rec:
        grad(loss)(WIDE_C, _wide_oscillator)
    assert rec.calls[0].forward.method_switches == 0 and rec.calls[0].sensitivities_in_forward
    with record_stats() as rec:
        g = grad(loss)(WIDE_C)
    info = rec.calls[0]
    assert info.forward.method_switches >= 1 and info.forward.nje > 0
    assert not info.sensitivities_in_forward and info.gradient_methods == ["interpolate"]
    err = relative_error(WIDE_DIRECTIONS @ g, _wide_directional_fd(_wide_stiff))
    record_error("auto (solve_ivp LSODA), stiff 2 x 100 forcing: gradient vs directional FD", err)
    assert err < 1e-5
