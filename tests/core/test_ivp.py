"""Tests of :func:`odegrad.solve_ivp` (odegrad/ivp.py): scipy's results, derivatives against truth.

Truth is closed forms (projectile, exponential decay, harmonic oscillator) or central finite
differences of tight plain-scipy solves (DOP853 at rtol = atol = 1e-13, step 1e-5: noise about
1e-8, truncation about 1e-10). The differentiated solves run at rtol 1e-9 (RK23: 1e-8), whose
gradients carry relative errors of roughly 1e-8..1e-7, so comparisons use ``FD_RTOL`` = 1e-5
(:mod:`tests.tolerances`) against finite differences and 1e-6 against closed forms.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.integrate
from autograd import grad, hessian, jacobian, make_jvp

import odegrad
from odegrad import solvers
from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck import problems as ode
from tests.tolerances import FD_RTOL

METHODS = solvers.IVP_METHODS
TIGHT = {"method": "DOP853", "rtol": 1e-13, "atol": 1e-13}
FD_TIGHT = {"step": 1e-5, "fd_order": 2}   # central differences of TIGHT solves
CLOSED_RTOL = 1e-6


def _tols(method: str) -> dict:
    return {"rtol": 1e-8, "atol": 1e-10} if method == "RK23" else {"rtol": 1e-9, "atol": 1e-11}


def lotka(t, y, a, b):
    return anp.array([a * y[0] - b * y[0] * y[1], -y[1] + b * y[0] * y[1]])


Y0 = np.array([1.0, 0.5])
P = np.array([1.1, 0.7])
T_EVAL = np.array([0.3, 0.9, 1.5])
SPAN = (0.0, 1.6)
WEIGHTS = np.array([[0.3, -1.2, 0.8], [1.0, 0.4, -0.6]])


def _lotka_loss(solve_ivp, y0, p, t_span, t_eval, **kwargs):
    res = solve_ivp(lotka, t_span, y0, t_eval=t_eval, args=(p[0], p[1]), **kwargs)
    return anp.sum(WEIGHTS * res.y)


def _plain_lotka_loss(y0=Y0, p=P, t_span=SPAN, t_eval=T_EVAL):
    return _lotka_loss(scipy.integrate.solve_ivp, y0, p, tuple(t_span), t_eval, **TIGHT)


# --- plain inputs: scipy's result -----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_plain_inputs_give_scipys_result_bit_for_bit(method):
    def event(t, y, a, b):
        return y[0] - 1.2

    kwargs = {"method": method, "args": (1.1, 0.7), "events": event, "dense_output": True}
    ours = odegrad.solve_ivp(lotka, (0.0, 3.0), Y0, **kwargs)
    ref = scipy.integrate.solve_ivp(lotka, (0.0, 3.0), Y0, **kwargs)
    assert type(ours) is type(ref)
    assert set(ours) == set(ref)
    np.testing.assert_array_equal(ours.t, ref.t)
    np.testing.assert_array_equal(ours.y, ref.y)
    for mine, theirs in zip(ours.t_events + ours.y_events, ref.t_events + ref.y_events):
        np.testing.assert_array_equal(mine, theirs)
    assert (ours.nfev, ours.njev, ours.nlu, ours.status, ours.message) == \
        (ref.nfev, ref.njev, ref.nlu, ref.status, ref.message)
    np.testing.assert_array_equal(ours.sol(np.linspace(0, ref.t[-1], 7)), ref.sol(np.linspace(0, ref.t[-1], 7)))


def test_plain_complex_state_runs_as_in_scipy():
    res = odegrad.solve_ivp(lambda t, y: -y, (0.0, 1.0), np.array([0.5 + 1j]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.y[0, -1], (0.5 + 1j) * np.exp(-1.0), rtol=1e-8)


# --- gradients against finite differences, every method -------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_gradients_in_y0_args_and_t_eval_match_finite_differences(method, record_error):
    loss = lambda y0, p, t_eval: _lotka_loss(odegrad.solve_ivp, y0, p, SPAN, t_eval,  # noqa: E731
                                             method=method, **_tols(method))
    g_y0, g_p, g_t = grad(loss, (0, 1, 2))(Y0, P, T_EVAL)
    checks = {
        "y0": (g_y0, central_differences(lambda y0: _plain_lotka_loss(y0=y0), Y0, **FD_TIGHT)),
        "args": (g_p, central_differences(lambda p: _plain_lotka_loss(p=p), P, **FD_TIGHT)),
        "t_eval": (g_t, central_differences(lambda t: _plain_lotka_loss(t_eval=t), T_EVAL, **FD_TIGHT)),
    }
    for name, (ours, fd) in checks.items():
        err = relative_error(ours, fd)
        record_error(f"solve_ivp {name} gradient vs FD", err)
        assert err < FD_RTOL, (name, ours, fd)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_in_t_span_without_t_eval(method):
    """t_eval=None: the result ends at t_span[1], whose derivative is f there; t_span[0] by FD."""
    w = np.array([0.7, -1.3])

    def loss(span):
        res = odegrad.solve_ivp(lotka, (span[0], span[1]), Y0, method=method, args=tuple(P), **_tols(method))
        return anp.sum(w * res.y[:, -1])

    def plain(span):
        return np.sum(w * scipy.integrate.solve_ivp(lotka, tuple(span), Y0, args=tuple(P), **TIGHT).y[:, -1])

    span = np.array([0.2, 1.4])
    assert relative_error(grad(loss)(span), central_differences(plain, span, **FD_TIGHT)) < FD_RTOL


def robertson(t, y, log_k):
    return ode.robertson(y, t, log_k)


LOG_K = ode.ROBERTSON.p


@pytest.fixture(scope="module")
def robertson_fd():
    """Central differences of y_A(100) in the log rate constants, Radau at rtol 1e-12."""
    def plain(log_k):
        return scipy.integrate.solve_ivp(robertson, (0.0, 100.0), [1.0, 0.0, 0.0], method="Radau", args=(log_k,),
                                         rtol=1e-12, atol=1e-14).y[0, -1]

    return central_differences(plain, LOG_K, **FD_TIGHT)


@pytest.mark.parametrize("method", ["BDF", "LSODA", pytest.param("Radau", marks=pytest.mark.slow)])
def test_stiff_robertson_gradient(method, robertson_fd):
    """The stiff methods' derived solves get odegrad's exact Jacobians (Radau ~5 s, marked slow)."""
    g = grad(lambda lk: odegrad.solve_ivp(robertson, (0.0, 100.0), np.array([1.0, 0.0, 0.0]), method=method,
                                          args=(lk,), rtol=1e-8, atol=1e-10).y[0, -1])(LOG_K)
    assert relative_error(g, robertson_fd) < FD_RTOL


def test_step_times_are_constants_and_states_at_them_differentiable():
    """y' = -k y: with t_eval=None the states at scipy's steps t_i are y0 exp(-k (t_i - t0))."""
    def solve(k, y0):
        return odegrad.solve_ivp(lambda t, y, k: -k * y, (0.0, 2.0), y0, args=(k,), rtol=1e-10, atol=1e-12)

    k, y0 = 0.8, np.array([1.5])
    steps = scipy.integrate.solve_ivp(lambda t, y: -k * y, (0.0, 2.0), y0, rtol=1e-10, atol=1e-12).t
    res = solve(k, y0)
    np.testing.assert_array_equal(res.t, steps)
    d_k = jacobian(lambda kk: solve(kk, y0).y[0])(k)
    np.testing.assert_allclose(d_k, -steps * y0[0] * np.exp(-k * steps), rtol=CLOSED_RTOL, atol=1e-12)
    d_y0 = jacobian(lambda y: solve(k, y).y[0])(y0)[:, 0]
    np.testing.assert_allclose(d_y0, np.exp(-k * steps), rtol=CLOSED_RTOL)


def test_t_eval_starting_at_a_traced_t0():
    """y' = -k y with t_eval fixed, t_eval[0] == t0: d y(t_i)/d t0 = k y0 exp(-k (t_i - t0)), i = 0 too;
    the state at t_eval[0] is a first-order step from t0, so its second derivative in t0 is refused."""
    t_eval = np.array([0.0, 0.5, 1.2])

    def states(t0):
        return odegrad.solve_ivp(decay, (t0, 1.5), np.array([2.0]), args=(0.8,), t_eval=t_eval,
                                 rtol=1e-10, atol=1e-12).y[0]

    np.testing.assert_allclose(jacobian(states)(0.0), 0.8 * 2.0 * np.exp(-0.8 * t_eval), rtol=CLOSED_RTOL)
    with pytest.raises(NotImplementedError, match="first order only"):
        hessian(lambda t0: states(t0)[0])(0.0)


# --- events --------------------------------------------------------------------------------


def projectile(t, y, g):
    return ode.projectile(y, t, g)


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Radau", "BDF", "LSODA"])
def test_projectile_hits_the_ground_closed_form(method, record_error):
    """Thrown up at v0 from h0: t* = (v0 + sqrt(v0² + 2 g h0)) / g, impact speed v0 - g t*."""
    def solve(h0, v0, g):
        return odegrad.solve_ivp(projectile, (0.0, 10.0), anp.array([h0, v0]), method=method, args=(g,),
                                 events=ode.projectile_ground, rtol=1e-10, atol=1e-12)

    t_hit = ode.landing_time
    x = (*ode.PROJECTILE.y0, ode.PROJECTILE.p)
    res = solve(*x)
    assert res.status == 1 and res.t[-1] == res.t_events[0][0]
    for argnum in range(3):
        ours = grad(lambda *a: solve(*a).t_events[0][0], argnum)(*x)
        truth = grad(t_hit, argnum)(*x)
        record_error("solve_ivp event time vs closed form", relative_error(ours, truth))
        assert relative_error(ours, truth) < CLOSED_RTOL
        speed = grad(lambda *a: solve(*a).y_events[0][0, 1], argnum)(*x)
        assert relative_error(speed, grad(lambda *a: a[1] - a[2] * t_hit(*a), argnum)(*x)) < CLOSED_RTOL
        end_time = grad(lambda *a: solve(*a).t[-1], argnum)(*x)      # terminal: the solve ends at t*
        assert relative_error(end_time, truth) < CLOSED_RTOL
        end_speed = grad(lambda *a: solve(*a).y[1, -1], argnum)(*x)
        assert relative_error(end_speed, speed) < CLOSED_RTOL


def michaelis_menten(t, y, vmax, km, threshold):
    s = y[0]
    rate = vmax * s / (km + s)
    return anp.array([-rate, rate - 0.3 * y[1]])


def substrate_low(t, y, vmax, km, threshold):
    return y[0] - threshold


substrate_low.terminal = True


@pytest.mark.parametrize("method", ["RK45", "Radau", "BDF", "LSODA"])
def test_kinetics_threshold_crossing_matches_finite_differences(method):
    """The time the substrate falls to a threshold, and the product then, against FD of scipy."""
    def quantities(solve_ivp, y0, p, **kwargs):
        res = solve_ivp(michaelis_menten, (0.0, 50.0), y0, args=(p[0], p[1], p[2]), events=substrate_low, **kwargs)
        return res.t_events[0][0] + 2.0 * res.y[1, -1]

    y0, p = np.array([2.0, 0.0]), np.array([0.9, 0.5, 0.4])
    loss = lambda y0, p: quantities(odegrad.solve_ivp, y0, p, method=method, **_tols(method))  # noqa: E731
    g_y0, g_p = grad(loss, (0, 1))(y0, p)
    fd_y0 = central_differences(lambda v: quantities(scipy.integrate.solve_ivp, v, p, **TIGHT), y0, **FD_TIGHT)
    fd_p = central_differences(lambda v: quantities(scipy.integrate.solve_ivp, y0, v, **TIGHT), p, **FD_TIGHT)
    assert relative_error(g_y0, fd_y0) < FD_RTOL
    assert relative_error(g_p, fd_p) < FD_RTOL


def test_repeated_events_of_an_oscillator_closed_form():
    """y'' = -ω² y, y(0) = 1: zeros at t_k = (k + 1/2) π / ω with y' = -ω (-1)^k there."""
    def osc(t, y, w):
        return anp.array([y[1], -w ** 2 * y[0]])

    def zero(t, y, w):
        return y[0]

    def solve(w):
        return odegrad.solve_ivp(osc, (0.0, 10.0), np.array([1.0, 0.0]), args=(w,), events=zero,
                                 method="DOP853", rtol=1e-11, atol=1e-12)

    w = 1.3
    k = np.arange(len(solve(w).t_events[0]))
    assert len(k) == 4
    t_k = (k + 0.5) * np.pi / w
    np.testing.assert_allclose(jacobian(lambda v: solve(v).t_events[0])(w), -t_k / w, rtol=CLOSED_RTOL)
    np.testing.assert_allclose(jacobian(lambda v: solve(v).y_events[0][:, 1])(w), -(-1.0) ** k, rtol=CLOSED_RTOL)


def test_terminal_event_with_t_eval_keeps_the_states_before_it():
    def solve(y0):
        return odegrad.solve_ivp(projectile, (0.0, 10.0), y0, args=(9.81,), events=ode.projectile_ground,
                                 t_eval=np.linspace(0.0, 2.0, 9), rtol=1e-10, atol=1e-12)

    y0 = np.array([2.0, 3.0])
    res = solve(y0)
    t_hit = (3.0 + np.sqrt(9.0 + 2 * 9.81 * 2.0)) / 9.81
    np.testing.assert_array_equal(res.t, np.linspace(0.0, 2.0, 9)[np.linspace(0.0, 2.0, 9) <= t_hit])
    d = jacobian(lambda v: solve(v).y[0])(y0)                  # height = h0 + v0 t - g t²/2
    np.testing.assert_allclose(d, np.stack([np.ones_like(res.t), res.t], axis=1), rtol=CLOSED_RTOL, atol=1e-12)


def test_events_that_never_fire_give_empty_arrays_like_scipy():
    def never(t, y, g):
        return y[0] + 100.0

    def height(v0):
        res = odegrad.solve_ivp(projectile, (0.0, 1.0), anp.array([0.0, v0]), args=(9.81,), events=never)
        assert res.t_events[0].shape == (0,) and res.y_events[0].shape == (0,)
        return res.y[0, -1]

    assert relative_error(grad(height)(3.0), 1.0) < CLOSED_RTOL


# --- dense output, adjoint modes, forward mode, higher orders --------------------------------


def decay(t, y, k):
    return -k * y


def test_dense_output_is_differentiable_in_y0_args_and_t():
    def at(y0, k, t):
        res = odegrad.solve_ivp(decay, (0.0, 2.0), y0, args=(k,), dense_output=True, rtol=1e-10, atol=1e-12)
        return res.sol(t)[0]

    y0, k, t = np.array([1.5]), 0.8, 0.7
    truth = 1.5 * np.exp(-k * t)
    assert relative_error(at(y0, k, t), truth) < CLOSED_RTOL
    assert relative_error(grad(at, 0)(y0, k, t), [np.exp(-k * t)]) < CLOSED_RTOL
    assert relative_error(grad(at, 1)(y0, k, t), -t * truth) < CLOSED_RTOL
    assert relative_error(grad(at, 2)(y0, k, t), -k * truth) < CLOSED_RTOL
    many = jacobian(lambda kk: odegrad.solve_ivp(decay, (0.0, 2.0), y0, args=(kk,), dense_output=True,
                                                 rtol=1e-10, atol=1e-12).sol(np.array([0.5, 1.0]))[0])(k)
    np.testing.assert_allclose(many, -np.array([0.5, 1.0]) * 1.5 * np.exp(-k * np.array([0.5, 1.0])), rtol=CLOSED_RTOL)


def test_dense_output_refuses_extrapolation_and_keeps_scipys_solution():
    def check(k):
        res = odegrad.solve_ivp(decay, (0.0, 2.0), np.array([1.0]), args=(k,), dense_output=True)
        assert isinstance(res.sol.plain, scipy.integrate.OdeSolution)
        with pytest.raises(ValueError, match="solved interval"):
            res.sol(2.5)
        return res.y[0, -1]

    grad(check)(0.5)


@pytest.mark.parametrize("method", ["RK45", "Radau"])
@pytest.mark.parametrize("mode", ["checkpoint", "backsolve", "interpolate", "forward"])
def test_every_gradient_method_agrees(method, mode):
    loss = lambda p, adjoint: _lotka_loss(odegrad.solve_ivp, Y0, p, SPAN, T_EVAL,  # noqa: E731
                                          method=method, adjoint=adjoint, **_tols(method))
    assert relative_error(grad(loss)(P, mode), central_differences(lambda p: _plain_lotka_loss(p=p), P, **FD_TIGHT)) < FD_RTOL


def test_forward_mode_matches_reverse_mode():
    loss = lambda p: _lotka_loss(odegrad.solve_ivp, Y0, p, SPAN, T_EVAL, rtol=1e-9, atol=1e-11)  # noqa: E731
    direction = np.array([0.3, -0.8])
    tangent = make_jvp(loss)(P)(direction)[1]
    assert relative_error(tangent, np.dot(grad(loss)(P), direction)) < 1e-7


def test_forward_mode_through_an_event_time():
    def t_hit(v0):
        return odegrad.solve_ivp(projectile, (0.0, 10.0), anp.array([2.0, v0]), args=(9.81,), events=ode.projectile_ground,
                                 rtol=1e-10, atol=1e-12).t_events[0][0]

    root = np.sqrt(3.0 ** 2 + 2 * 9.81 * 2.0)
    assert relative_error(make_jvp(t_hit)(3.0)(1.0)[1], (1 + 3.0 / root) / 9.81) < CLOSED_RTOL


def test_hessian_without_events_closed_form():
    """d²/dk² of y0 exp(-k T) is T² y0 exp(-k T)."""
    def final(k):
        return odegrad.solve_ivp(decay, (0.0, 1.2), np.array([2.0]), args=(k,), method="RK45",
                                 rtol=1e-10, atol=1e-12).y[0, -1]

    assert relative_error(hessian(final)(0.5), 1.2 ** 2 * 2.0 * np.exp(-0.6)) < 1e-6


def test_hessian_through_an_event_time_is_refused():
    with pytest.raises(NotImplementedError, match="first order only"):
        hessian(lambda v0: odegrad.solve_ivp(projectile, (0.0, 10.0), anp.array([1.0, v0]), args=(9.81,),
                                             events=ode.projectile_ground).t_events[0][0])(3.0)


# --- options carried into the differentiable solve --------------------------------------------


def _radau_jac(t, y, a, b):
    return np.array([[a - b * y[1], -b * y[0]], [b * y[1], -1.0 + b * y[0]]])


@pytest.mark.parametrize("options", [
    {"method": "Radau", "jac": _radau_jac},
    {"method": "BDF", "jac_sparsity": np.ones((2, 2))},
    {"method": "LSODA", "lband": 1, "uband": 1, "min_step": 1e-12},
    {"method": "RK45", "max_step": 0.05, "first_step": 1e-3},
    {"method": "DOP853", "rtol": [1e-9, 1e-10], "atol": [1e-11, 1e-12]},
], ids=["jac", "jac_sparsity", "lband-uband-min_step", "max_step-first_step", "array-tolerances"])
def test_solver_options_carry_into_the_differentiable_solve(options):
    opts = {"rtol": 1e-9, "atol": 1e-11, **options}
    g = grad(lambda p: _lotka_loss(odegrad.solve_ivp, Y0, p, SPAN, T_EVAL, **opts))(P)
    assert relative_error(g, central_differences(lambda p: _plain_lotka_loss(p=p), P, **FD_TIGHT)) < FD_RTOL


def test_max_step_limits_the_steps_of_a_traced_solve():
    def last(y0):
        res = odegrad.solve_ivp(decay, (0.0, 2.0), y0, args=(0.5,), max_step=0.1)
        assert np.all(np.diff(res.t) <= 0.1 + 1e-15)
        return res.y[0, -1]

    assert relative_error(grad(last)(np.array([1.0])), [np.exp(-1.0)]) < 1e-3


def test_vectorized_fun():
    def fun(t, y, k):
        return -k * y                                       # y has shape (n, k) when vectorized

    def last(k):
        return odegrad.solve_ivp(fun, (0.0, 1.0), np.array([1.0, 2.0]), args=(k,), vectorized=True,
                                 method="BDF", rtol=1e-10, atol=1e-12).y[1, -1]

    assert relative_error(grad(last)(0.3), -2.0 * np.exp(-0.3)) < 1e-6


def test_statistics_are_recorded():
    with odegrad.record_stats() as rec:
        grad(lambda p: _lotka_loss(odegrad.solve_ivp, Y0, p, SPAN, T_EVAL, method="RK45"))(P)
    assert rec.forward.method == "RK45" and rec.forward.nfe > 0 and rec.forward.nst > 0
    assert rec.backward.nfe > 0 and rec.gradient_methods


# --- bad input --------------------------------------------------------------------------------


def test_complex_y0_is_refused_when_differentiated():
    with pytest.raises(ValueError, match="complex"):
        grad(lambda s: anp.real(odegrad.solve_ivp(decay, (0.0, 1.0), anp.array([s + 1j]), args=(1.0,)).y[0, -1]))(1.0)


def test_closure_over_a_traced_value_is_refused():
    def loss(k):
        return odegrad.solve_ivp(lambda t, y: -k * y, (0.0, 1.0), np.array([1.0])).y[0, -1]

    with pytest.raises(TypeError, match="closes over"):
        grad(loss)(0.5)

    def traced(k):
        return odegrad.solve_ivp(lambda t, y, c: -k * y * c, (0.0, 1.0), np.array([1.0]), args=(k,)).y[0, -1]

    with pytest.raises(TypeError, match="closes over"):
        grad(traced)(0.5)


def test_numpy_fun_gets_a_clear_error_when_differentiated():
    def fun(t, y, k):
        return np.array([-k * y[0]])                       # np.array of traced values: an object array

    with pytest.raises(TypeError, match="autograd.numpy"):
        grad(lambda k: odegrad.solve_ivp(fun, (0.0, 1.0), np.array([1.0]), args=(k,)).y[0, -1])(0.5)


def test_wrong_shape_from_fun_is_refused():
    with pytest.raises(ValueError, match="shape"):
        grad(lambda k: odegrad.solve_ivp(lambda t, y, k: anp.array([-k, 0.0, 1.0]), (0.0, 1.0), np.array([1.0, 2.0]),
                                         args=(k,)).y[0, -1])(0.5)


def test_t_eval_outside_t_span_is_scipys_error():
    with pytest.raises(ValueError, match="not within `t_span`"):
        grad(lambda k: odegrad.solve_ivp(decay, (0.0, 1.0), np.array([1.0]), args=(k,), t_eval=[0.5, 2.0]).y[0, -1])(0.5)


def test_failed_solve_raises_instead_of_returning_a_gradient():
    def blow_up(t, y, c):
        return c * y ** 2

    with pytest.raises(odegrad.ODESolveError, match="no gradient"):
        grad(lambda c: odegrad.solve_ivp(blow_up, (0.0, 2.0), np.array([1.0]), args=(c,)).y[0, -1])(1.0)


def test_custom_solver_class_is_refused_when_differentiated():
    class MySolver(scipy.integrate.RK45):
        pass

    with pytest.raises(ValueError, match="custom OdeSolver"):
        grad(lambda k: odegrad.solve_ivp(decay, (0.0, 1.0), np.array([1.0]), args=(k,), method=MySolver).y[0, -1])(0.5)
    g = grad(lambda k: odegrad.solve_ivp(decay, (0.0, 1.0), np.array([1.0]), args=(k,), method=scipy.integrate.RK45,
                                         rtol=1e-10, atol=1e-12).y[0, -1])(0.5)
    assert relative_error(g, -np.exp(-0.5)) < CLOSED_RTOL


def test_args_that_cannot_be_unpacked_are_scipys_error():
    with pytest.raises(TypeError, match="cannot be unpacked"):
        grad(lambda k: odegrad.solve_ivp(decay, (0.0, 1.0), np.array([1.0]), args=k).y[0, -1])(0.5)


def test_empty_state_is_refused_when_differentiated():
    with pytest.raises(ValueError, match="empty"):
        grad(lambda tf: anp.sum(odegrad.solve_ivp(lambda t, y: -y, (0.0, tf), np.zeros(0)).t))(1.0)
