"""odeint: drop-in behaviour, closed-form solutions and derivatives, input validation."""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import pytest
import scipy.integrate
import scipy.linalg
from autograd import elementwise_grad, grad, hessian, jacobian

from odegrad import ODESolveError, odeint
from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck.problems import decay, linear_gradients, linear_solution
from odegrad.gradcheck.problems import linear as _lin
from odegrad.gradcheck.problems import lotka_volterra as _lotka
from odegrad.gradcheck.problems import lotka_volterra_jac as _lotka_jac
from odegrad.solvers import METHODS
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, TOL

MODES = ("checkpoint", "backsolve", "interpolate")


# --------------------------------------------------------------------------------------------
# 1. Drop-in replacement for scipy.integrate.odeint (LSODA, plain numpy inputs): bit-for-bit.
# --------------------------------------------------------------------------------------------

LV_ARGS = (1.5, 1.0, 1.0, 3.0)
T_GRID = onp.linspace(0.0, 5.0, 11)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"rtol": 1e-9, "atol": 1e-11},
        {"hmax": 0.05},
        {"h0": 1e-3, "hmin": 1e-12},
        {"mxstep": 2000},
        {"mxordn": 5, "mxords": 3},
        {"tcrit": onp.array([5.0])},
        {"rtol": onp.array([1e-8, 1e-9]), "atol": onp.array([1e-10, 1e-12])},
    ],
    ids=lambda kw: ",".join(kw) or "defaults",
)
def test_dropin_bitwise_equal_scipy(kwargs):
    y0 = onp.array([10.0, 5.0])
    ours = odeint(_lotka, y0, T_GRID, args=LV_ARGS, **kwargs)
    ref = scipy.integrate.odeint(_lotka, y0, T_GRID, args=LV_ARGS, **kwargs)
    assert isinstance(ours, onp.ndarray)
    assert ours.shape == ref.shape
    assert onp.array_equal(ours, ref)


def test_dropin_dfun_and_col_deriv():
    y0 = onp.array([10.0, 5.0])
    ref = scipy.integrate.odeint(_lotka, y0, T_GRID, args=LV_ARGS, Dfun=_lotka_jac)
    assert onp.array_equal(odeint(_lotka, y0, T_GRID, args=LV_ARGS, Dfun=_lotka_jac), ref)

    def jac_cols(y, t, *a):
        return _lotka_jac(y, t, *a).T

    ref_c = scipy.integrate.odeint(_lotka, y0, T_GRID, args=LV_ARGS, Dfun=jac_cols, col_deriv=1)
    ours_c = odeint(_lotka, y0, T_GRID, args=LV_ARGS, Dfun=jac_cols, col_deriv=1)
    assert onp.array_equal(ours_c, ref_c)


def test_dropin_tfirst():
    def f_tfirst(t, y, a, b, c, d):
        return _lotka(y, t, a, b, c, d)

    def jac_tfirst(t, y, *a):
        return _lotka_jac(y, t, *a)

    y0 = onp.array([10.0, 5.0])
    ref = scipy.integrate.odeint(f_tfirst, y0, T_GRID, args=LV_ARGS, tfirst=True, Dfun=jac_tfirst)
    ours = odeint(f_tfirst, y0, T_GRID, args=LV_ARGS, tfirst=True, Dfun=jac_tfirst)
    assert onp.array_equal(ours, ref)


def test_dropin_non_tuple_args_and_decreasing_t():
    def f(y, t, k):
        return -k * y + np.sin(t)

    t = onp.linspace(3.0, 0.0, 7)
    ref = scipy.integrate.odeint(f, [1.0, 2.0], t, args=(0.3,))
    assert onp.array_equal(odeint(f, [1.0, 2.0], t, args=0.3), ref)


def test_dropin_full_output_is_scipys_infodict():
    """``(ys, infodict)`` as scipy returns them, every key bit for bit, plus odegrad's SolveInfo."""
    y0 = onp.array([10.0, 5.0])
    ys, info = odeint(_lotka, y0, T_GRID, args=LV_ARGS, full_output=True)
    ref, ref_info = scipy.integrate.odeint(_lotka, y0, T_GRID, args=LV_ARGS, full_output=True)
    assert onp.array_equal(ys, ref)
    assert list(info) == list(ref_info) + ["odegrad"]
    for key, value in ref_info.items():
        assert onp.array_equal(info[key], value) and onp.asarray(info[key]).dtype == onp.asarray(value).dtype, key
    assert info["odegrad"].forward.nfe > 0


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 3)])
@pytest.mark.parametrize("method", METHODS)
def test_output_shape_any_state_shape(shape, method):
    rng = onp.random.default_rng(0)
    y0 = rng.normal(size=shape) if shape else 0.7
    t = onp.linspace(0.0, 1.0, 4)

    def f(y, t, k):
        return -k * y

    ys = odeint(f, y0, t, args=(0.5,), method=method, rtol=TOL, atol=TOL)
    state = tuple(shape) or (1,)   # a scalar y0 is a state of one entry, as in scipy
    assert ys.shape == (len(t),) + state
    exact = onp.exp(-0.5 * t).reshape((-1,) + (1,) * len(state)) * onp.asarray(y0)
    assert relative_error(ys, exact) < 1e-8
    assert onp.array_equal(ys[0], onp.reshape(onp.asarray(y0, dtype=float), state))


@pytest.mark.parametrize("method", METHODS)
def test_single_time_returns_y0(method):
    ys = odeint(lambda y, t: -y, onp.array([1.0, 2.0]), [0.5], method=method)
    assert ys.shape == (1, 2)
    assert onp.array_equal(ys, [[1.0, 2.0]])
    g = grad(lambda y0: np.sum(odeint(lambda y, t: -y, y0, [0.5], method=method) ** 2))(onp.array([1.0, 2.0]))
    assert onp.allclose(g, [2.0, 4.0])


@pytest.mark.parametrize("method", METHODS)
def test_decreasing_time_closed_form(method):
    t = onp.array([2.0, 1.5, 0.0])
    ys = odeint(lambda y, t, k: -k * y, 1.3, t, args=(0.8,), method=method, rtol=TOL, atol=TOL)
    assert relative_error(ys[:, 0], 1.3 * onp.exp(-0.8 * (t - 2.0))) < 1e-8


# --------------------------------------------------------------------------------------------
# 1b. scipy's edges: scalar y0, repeated and empty t, scipy's infodict, banded Jacobians.
# --------------------------------------------------------------------------------------------

T_EDGE = onp.linspace(0.0, 2.0, 5)


def _lv2(y, t, a, b):
    return [a * y[0] - y[0] * y[1], -b * y[1] + y[0] * y[1]]


@pytest.mark.parametrize("f, y0, t, kwargs", [
    (decay, 1, [0, 1, 2], {"args": (0.5,)}),
    (decay, [1, 2], (0, 1, 2), {"args": (0.5,)}),
    (lambda y, t: -y[0], [3.0], [0, 0.5], {}),
    (_lv2, [1.0, 0.5], [0, 0, 1, 1, 2, 2], {"args": (1.0, 0.7)}),
    (_lv2, [1.0, 0.5], [2, 2, 1, 1, 0], {"args": (1.0, 0.7), "hmax": 0.1}),
    (decay, [1.0, 2.0], onp.linspace(0, 1, 3).astype(onp.float32), {"args": (0.5,)}),
    (lambda y, t: -1e3 * y, 1.0, [0, 1], {"Dfun": lambda y, t: -1e3}),
    (lambda y, t: -1e3 * y, [1.0, 2.0], [0, 1], {"Dfun": lambda y, t: onp.full((1, 2), -1e3), "ml": 0, "mu": 0}),
], ids=["int-y0", "tuple-t", "scalar-func", "repeats", "decreasing-repeats", "float32-t", "scalar-dfun", "diagonal-band"])
def test_dropin_inputs_bitwise_with_infodict(f, y0, t, kwargs):
    """ys and every infodict entry as scipy's, bit for bit (rows of times equal to t[0], which
    scipy leaves unset, excepted)."""
    ys, info = odeint(f, y0, t, full_output=True, **kwargs)
    ref, ref_info = scipy.integrate.odeint(f, y0, t, full_output=True, **kwargs)
    assert ys.dtype == ref.dtype and ys.shape == ref.shape and onp.array_equal(ys, ref)
    lead = int(onp.sum(onp.asarray(t) == t[0])) - 1
    assert list(info) == list(ref_info) + ["odegrad"]
    for key, value in ref_info.items():
        ours, theirs = onp.asarray(info[key]), onp.asarray(value)
        if ours.ndim:
            ours, theirs = ours[lead:], theirs[lead:]
        assert ours.dtype == theirs.dtype and onp.array_equal(ours, theirs), key


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("y0", [2.0, onp.array(2.0)], ids=["float", "0-d"])
def test_scalar_y0_is_a_one_entry_state(method, y0):
    """As in scipy: ys has shape (T, 1) and func sees arrays of shape (1,) (and may return a 0-d value)."""
    seen = set()

    def f(y, t, k):
        seen.add(onp.shape(y))
        return -k * y

    ys = odeint(f, y0, T_EDGE, args=(0.5,), method=method, rtol=TOL, atol=TOL)
    assert ys.shape == (len(T_EDGE), 1) and seen == {(1,)}
    assert relative_error(ys[:, 0], 2.0 * onp.exp(-0.5 * T_EDGE)) < 1e-8
    scalar_out = odeint(lambda y, t, k: -k * y[0], y0, T_EDGE, args=(0.5,), method=method, rtol=TOL, atol=TOL)
    assert onp.array_equal(scalar_out, ys)
    if method == "lsoda":
        assert onp.array_equal(odeint(f, y0, T_EDGE, args=(0.5,)), scipy.integrate.odeint(f, y0, T_EDGE, args=(0.5,)))


@pytest.mark.parametrize("method", METHODS)
def test_grad_of_a_scalar_problem(method):
    """d/dy0 and d/dk of sum_i y(t_i) for y' = -k y with a scalar y0 (traced as a 0-d value)."""
    def loss(y0, k):
        return np.sum(odeint(decay, y0, T_EDGE, args=(k,), method=method, rtol=TOL, atol=TOL)[:, 0])

    g_y0, g_k = grad(loss, (0, 1))(2.0, 0.5)
    assert onp.ndim(g_y0) == 0
    assert relative_error(g_y0, onp.sum(onp.exp(-0.5 * T_EDGE))) < GRAD_RTOL
    assert relative_error(g_k, onp.sum(-2.0 * T_EDGE * onp.exp(-0.5 * T_EDGE))) < GRAD_RTOL


T_REPEATED = onp.array([0.0, 0.0, 0.4, 0.4, 0.4, 1.0, 1.5, 1.5])
W_REPEATED = onp.random.default_rng(1).normal(size=(len(T_REPEATED), 2))


def _coupled(y, t, k):
    return np.array([-k[0] * y[0] + y[1], -k[1] * y[1] * y[0] + np.sin(t)])


def _loss_by_separate_solves(y0, k, t):
    """sum_j W_j · y(t_j), each y(t_j) a separate tight two-point scipy solve from t[0]: no repeated
    times anywhere, so every entry of t can be differenced on its own (the truth for ∂L/∂t_j)."""
    ys = [scipy.integrate.odeint(_coupled, y0, [t[0], tj], args=(k,), rtol=FD_SOLVE_TOL, atol=FD_SOLVE_TOL)[-1]
          for tj in t]
    return onp.sum(W_REPEATED * onp.array(ys))


@pytest.mark.parametrize("method", METHODS)
def test_repeated_times_as_scipy(method):
    """scipy gh-8217: repeated output times, leading, inside and trailing, and all times equal."""
    y0 = onp.array([1.0, 2.0])
    ys = odeint(lambda y, t: -0.25 * y, y0, T_REPEATED, method=method, rtol=TOL, atol=TOL)
    assert relative_error(ys, onp.exp(-0.25 * T_REPEATED)[:, None] * y0) < 1e-8
    assert onp.array_equal(odeint(lambda y, t: -0.25 * y, y0, [0.7] * 4, method=method), onp.tile(y0, (4, 1)))
    if method == "lsoda":
        ref = scipy.integrate.odeint(_coupled, y0, T_REPEATED, args=(onp.array([0.7, 0.3]),))
        assert onp.array_equal(odeint(_coupled, y0, T_REPEATED, args=(onp.array([0.7, 0.3]),)), ref)


@pytest.mark.parametrize("mode, checkpoints", [("checkpoint", 0), ("checkpoint", 2), ("backsolve", 0),
                                               ("interpolate", 0), ("forward", 0), ("auto", 0)])
def test_gradients_through_repeated_times(mode, checkpoints, record_error):
    """∂L/∂y0, ∂L/∂k and ∂L/∂t_j for every entry of a t with repeats, against central differences of
    separate tight solves."""
    y0, k = onp.array([1.0, 0.5]), onp.array([0.7, 0.3])

    def loss(y0, k, t):
        ys = odeint(_coupled, y0, t, args=(k,), adjoint=mode, checkpoints=checkpoints, rtol=TOL, atol=TOL)
        return np.sum(W_REPEATED * ys)

    assert abs(loss(y0, k, T_REPEATED) - _loss_by_separate_solves(y0, k, T_REPEATED)) < 1e-8
    ours = grad(loss, (0, 1, 2))(y0, k, T_REPEATED)
    refs = (central_differences(lambda v: _loss_by_separate_solves(v, k, T_REPEATED), y0, **FD),
            central_differences(lambda v: _loss_by_separate_solves(y0, v, T_REPEATED), k, **FD),
            central_differences(lambda v: _loss_by_separate_solves(y0, k, v), T_REPEATED, **FD))
    for name, g, ref in zip(("y0", "k", "t"), ours, refs):
        err = relative_error(g, ref)
        record_error(f"repeated times: grad {name} ({mode})", err)
        assert err < FD_RTOL, name


@pytest.mark.parametrize("mode", ["checkpoint", "backsolve", "interpolate", "forward", "auto"])
def test_gradients_when_all_times_are_equal(mode):
    """Nothing is integrated: ys[j] = y0, ∂L/∂y0 = Σ g_j, ∂L/∂t_j = g_j·f(y0) and ∂L/∂t_0 = -Σ_{j>0} g_j·f(y0)."""
    y0, k, t = onp.array([1.0, 0.5]), onp.array([0.7, 0.3]), onp.full(3, 0.2)
    w = W_REPEATED[:3]
    g_y0, g_t = grad(lambda y0, t: np.sum(w * odeint(_coupled, y0, t, args=(k,), adjoint=mode)), (0, 1))(y0, t)
    rates = w @ onp.asarray(_coupled(y0, 0.2, k))
    assert relative_error(g_y0, w.sum(axis=0)) < 1e-14
    assert relative_error(g_t, [-rates[1:].sum(), rates[1], rates[2]]) < 1e-14


@pytest.mark.parametrize("mode", ["checkpoint", "backsolve", "forward", "auto"])
def test_second_derivative_through_repeated_times(mode):
    """d²/dk² of sum_i y(t_i) for y' = -k y, a scalar y0 and repeated times: sum_i y0 t_i² e^{-k t_i}."""
    t = onp.array([0.0, 0.5, 0.5, 1.0, 1.0])
    h = hessian(lambda k: np.sum(odeint(decay, 2.0, t, args=(k,), adjoint=mode, rtol=TOL, atol=TOL)))(onp.array(0.5))
    assert relative_error(h, onp.sum(2.0 * t ** 2 * onp.exp(-0.5 * t))) < GRAD_RTOL


def test_empty_times_give_no_rows():
    """scipy returns shape (0, n) for an empty t (and (0, 1) for a scalar y0); so does odegrad, with
    an empty infodict (where scipy fails) and a zero gradient."""
    assert odeint(decay, [1.0, 2.0], [], args=(0.5,)).shape == (0, 2)
    assert onp.array_equal(odeint(decay, 1.0, [], args=(0.5,)), scipy.integrate.odeint(decay, 1.0, [], args=(0.5,)))
    ys, info = odeint(decay, [1.0, 2.0], [], args=(0.5,), full_output=True)
    assert ys.shape == (0, 2) and info["nst"].shape == (0,) and info["odegrad"].forward.nsolves == 0
    assert onp.array_equal(grad(lambda y0: np.sum(odeint(decay, y0, [], args=(0.5,))))(onp.ones(2)), onp.zeros(2))


@pytest.mark.parametrize("method", ["adams", "bdf"])
def test_vode_infodict_is_what_vode_reports(method):
    t = onp.array([0.0, 0.0, 1.0, 2.0, 2.0, 5.0])
    ys, info = odeint(_lotka, [10.0, 5.0], t, args=LV_ARGS, method=method, full_output=True)
    ref_keys = list(scipy.integrate.odeint(_lotka, [10.0, 5.0], T_GRID, args=LV_ARGS, full_output=True)[1])
    assert list(info) == ref_keys + ["odegrad"]
    assert all(info[key].shape == (len(t) - 1,) for key in ("hu", "tcur", "tolsf", "tsw", "nst", "nfe", "nje", "nqu", "mused"))
    forward = info["odegrad"].forward
    assert (info["nst"][-1], info["nfe"][-1], info["nje"][-1]) == (forward.nst, forward.nfe, forward.nje)
    assert info["nst"][0] == info["nfe"][0] == 0 and info["tcur"][0] == 0.0       # t[1] == t[0]: no step
    assert onp.all(onp.diff(info["nst"]) >= 0) and onp.all(info["tcur"][1:] >= t[2:])
    assert onp.array_equal(info["nst"][2], info["nst"][3])                         # t[3] == t[2]
    assert onp.all(info["mused"][1:] == (1 if method == "adams" else 2)) and onp.all(info["tsw"] == 0.0)
    assert info["message"] == "Integration successful." and info["lenrw"] > 0 and info["leniw"] > 0


def test_lsoda_infodict_with_leading_repeats_and_checkpoints():
    """scipy leaves the rows of times equal to t[0] unset; odegrad says no step there and keeps
    LSODA's rows elsewhere. With checkpoints the rows are those of the output times."""
    t = onp.array([0.0, 0.0, 1.0, 2.0, 5.0])
    _, info = odeint(_lotka, [10.0, 5.0], t, args=LV_ARGS, full_output=True)
    _, ref = scipy.integrate.odeint(_lotka, [10.0, 5.0], t, args=LV_ARGS, full_output=True)
    for key in ("hu", "tcur", "tolsf", "tsw", "nst", "nfe", "nje", "nqu", "mused"):
        assert info[key][0] == (0.0 if key != "tcur" and key != "tsw" else t[0]), key
        assert onp.array_equal(info[key][1:], ref[key][1:]), key
    assert info["odegrad"].forward.method_switches == 0
    _, coarse = odeint(_lotka, [10.0, 5.0], t, args=LV_ARGS, full_output=True, checkpoints=3)
    assert coarse["nst"].shape == (len(t) - 1,) and coarse["nst"][-1] == coarse["odegrad"].forward.nst
    assert onp.all(coarse["tcur"][1:] >= t[2:])


def _banded_problem(n=6, ml=1, mu=2):
    A = onp.diag(-onp.array([1.0, 3, 10, 30, 100, 300])) + onp.diag(onp.full(n - 1, 0.3), 1) \
        + onp.diag(onp.full(n - 2, 0.1), 2) + onp.diag(onp.full(n - 1, 0.2), -1)
    band = onp.zeros((ml + mu + 1, n))
    for i in range(n):
        for j in range(max(0, i - ml), min(n, i + mu + 1)):
            band[mu + i - j, j] = A[i, j]
    return A, band


def test_banded_dfun_of_any_band_as_scipy():
    """A band of ml + mu + 1 = 4 rows for 6 states (scipy's layout), rows or columns: bit for bit."""
    A, band = _banded_problem()
    f = lambda y, t, A: A @ y  # noqa: E731
    t, y0 = [0.0, 1.0, 2.0], onp.ones(6)
    for dfun, col in ((lambda y, t, A: band, False), (lambda y, t, A: band.T.copy(), True)):
        ref = scipy.integrate.odeint(f, y0, t, args=(A,), Dfun=dfun, col_deriv=col, ml=1, mu=2, full_output=True)
        ours = odeint(f, y0, t, args=(A,), Dfun=dfun, col_deriv=col, ml=1, mu=2, full_output=True)
        assert onp.array_equal(ours[0], ref[0]) and onp.array_equal(ours[1]["nje"], ref[1]["nje"]) and ref[1]["nje"][-1] > 0
    # The interpolating adjoint's dense forward solves read the banded Dfun as a full Jacobian. At
    # rtol = atol = 1e-8 its gradient carries ~1e-7 relative error (measured 2e-7): compared at 1e-5.
    g = grad(lambda A: np.sum(odeint(f, y0, t, args=(A,), Dfun=lambda y, t, A: band, ml=1, mu=2,
                                     adjoint="interpolate", rtol=1e-8, atol=1e-8)))(A)
    g_ref = grad(lambda A: np.sum(odeint(f, y0, t, args=(A,), adjoint="forward", rtol=TOL, atol=TOL)))(A)
    assert relative_error(g, g_ref) < 1e-5


def test_shape_errors_are_also_scipys_runtime_error():
    for error in (ValueError, RuntimeError):
        with pytest.raises(error, match=r"func returned shape \(2,\) but y0 has shape \(1,\)"):
            odeint(lambda y, t: [1.0, -1.0], 10.0, [0.0, 1.0])
        with pytest.raises(error, match=r"Dfun returned shape \(1, 3\); expected \(2, 2\)"):
            odeint(lambda y, t: -100 * y, [10.0, 10.0], [0.0, 1.0], Dfun=lambda y, t: [[0.0, 0.0, 0.0]])


# --------------------------------------------------------------------------------------------
# 2. Closed forms: linear systems (expm), decay, logistic; derivatives w.r.t. y0, A, k, t.
# --------------------------------------------------------------------------------------------

A_LIN = onp.array([[-0.5, 1.0, 0.0], [-1.0, -0.3, 0.2], [0.1, 0.0, -0.8]])
Y0_LIN = onp.array([1.0, -0.5, 0.3])
T_LIN = onp.array([0.0, 0.4, 1.1, 2.0])
G_LIN = onp.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.3, 0.7, -1.0], [-0.4, 1.0, 2.0]])


def _lin_loss(A, y0, t, **kw):
    return np.sum(odeint(_lin, y0, t, args=(A,), rtol=TOL, atol=TOL, **kw) * G_LIN)


@pytest.mark.parametrize("method", METHODS)
def test_linear_solution_matches_expm(method):
    ys = odeint(_lin, Y0_LIN, T_LIN, args=(A_LIN,), method=method, rtol=TOL, atol=TOL)
    exact = linear_solution(Y0_LIN, T_LIN, A_LIN)
    assert relative_error(ys, exact) < 1e-8


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_linear_gradients_vs_expm_frechet(method, mode, record_error):
    gA, gy0, gt = grad(_lin_loss, argnum=(0, 1, 2))(A_LIN, Y0_LIN, T_LIN, method=method, adjoint=mode)
    eA, ey0, et = linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)
    errs = {"A": relative_error(gA, eA), "y0": relative_error(gy0, ey0), "t": relative_error(gt, et)}
    for key, err in errs.items():
        record_error(f"linear expm: grad {key} ({method})", err)
        assert err < GRAD_RTOL, (key, err)


@pytest.mark.parametrize("checkpoints", [1, 3])
def test_linear_gradients_with_checkpoints(checkpoints, record_error):
    """Checkpoint times are interpolated from t, differentiably: ∂/∂t stays exact."""
    got = grad(_lin_loss, argnum=(0, 1, 2))(A_LIN, Y0_LIN, T_LIN, checkpoints=checkpoints)
    for name, g, e in zip("A y0 t".split(), got, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)):
        err = relative_error(g, e)
        record_error(f"linear expm: grad {name} (checkpoints={checkpoints})", err)
        assert err < GRAD_RTOL


def test_decreasing_times_gradients_vs_expm(record_error):
    t = T_LIN[::-1].copy()
    got = grad(_lin_loss, argnum=(0, 1, 2))(A_LIN, Y0_LIN, t)
    for name, g, e in zip("A y0 t".split(), got, linear_gradients(A_LIN, Y0_LIN, t, G_LIN)):
        err = relative_error(g, e)
        record_error(f"linear expm, decreasing t: grad {name}", err)
        assert err < GRAD_RTOL


@pytest.mark.parametrize("method", METHODS)
def test_tfirst_gradients(method):
    def loss(k, y0):
        return odeint(lambda t, y, k: -k * y, y0, [0.0, 1.5], args=(k,), tfirst=True, method=method,
                      rtol=TOL, atol=TOL)[-1]

    gk, gy0 = grad(loss, argnum=(0, 1))(0.4, 2.0)
    assert relative_error(gk, -1.5 * 2.0 * onp.exp(-0.6)) < GRAD_RTOL
    assert relative_error(gy0, onp.exp(-0.6)) < GRAD_RTOL


def test_linear_grad_y0_is_expm_transpose_g():
    """∂/∂y0 of g·y(t) = expm(A t)^T g, for several single-output losses (jacobian form)."""
    t = onp.array([0.0, 1.7])
    J = jacobian(lambda y0: odeint(_lin, y0, t, args=(A_LIN,), rtol=TOL, atol=TOL)[-1])(Y0_LIN)
    assert relative_error(J, scipy.linalg.expm(A_LIN * 1.7)) < GRAD_RTOL


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_time_gradients_general_rule(method, mode, record_error):
    """∂L/∂t_i = g_i·f(y(t_i), t_i) for i > 0, and ∂L/∂t_0 = -a(t_0)·f(y0, t_0)."""
    t = onp.array([0.2, 0.9, 1.5, 2.6])
    G = G_LIN
    gt, gy0 = grad(lambda tt, y0: np.sum(odeint(_lin, y0, tt, args=(A_LIN,), rtol=TOL, atol=TOL,
                                                method=method, adjoint=mode) * G), argnum=(0, 1))(t, Y0_LIN)
    ys = onp.stack([scipy.linalg.expm(A_LIN * (tt - t[0])) @ Y0_LIN for tt in t])
    expected = onp.array([G[i] @ (A_LIN @ ys[i]) for i in range(len(t))])
    a0 = sum(scipy.linalg.expm(A_LIN * (t[i] - t[0])).T @ G[i] for i in range(len(t)))
    expected[0] = -a0 @ (A_LIN @ Y0_LIN)
    err = relative_error(gt, expected)
    record_error(f"time gradient rule ({method})", err)
    assert err < GRAD_RTOL
    assert relative_error(gy0, a0) < GRAD_RTOL  # a(t0) is also ∂L/∂y0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_exponential_decay(method, mode, record_error):
    t = onp.array([0.0, 0.5, 1.0, 3.0])
    y0, k = 2.0, 0.7

    def loss(y0, k, t):
        return np.sum(odeint(lambda y, tt, k: -k * y, y0, t, args=(k,), method=method, adjoint=mode,
                             rtol=TOL, atol=TOL) ** 2)

    g_y0, g_k, g_t = grad(loss, argnum=(0, 1, 2))(y0, k, t)
    e = onp.exp(-k * t)
    ex_y0 = onp.sum(2 * y0 * e ** 2)
    ex_k = onp.sum(2 * (y0 * e) * (-t * y0 * e))
    ex_t = 2 * (y0 * e) * (-k * y0 * e)
    ex_t[0] = -onp.sum(ex_t[1:])   # autonomous: Σ_i ∂L/∂t_i = 0 (time-shift invariance)
    err = max(relative_error(g_y0, ex_y0), relative_error(g_k, ex_k), relative_error(g_t, ex_t))
    record_error(f"decay: grad ({method})", err)
    assert err < GRAD_RTOL


def _logistic_exact(y0, r, K, t):
    e = np.exp(r * t)
    return K * y0 * e / (K + y0 * (e - 1.0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_logistic_closed_form(method, mode, record_error):
    t = onp.linspace(0.0, 4.0, 6)
    w = onp.linspace(1.0, 2.0, 6)

    def loss(p):
        ys = odeint(lambda y, tt, r, K: r * y * (1.0 - y / K), p[0], t, args=(p[1], p[2]),
                    method=method, adjoint=mode, rtol=TOL, atol=TOL)
        return np.sum(w * ys[:, 0])

    def exact(p):  # the analytic solution, differentiated by autograd: ground truth
        return np.sum(w * _logistic_exact(p[0], p[1], p[2], t))

    p = onp.array([0.1, 1.3, 2.5])
    assert abs(loss(p) - exact(p)) < 1e-8 * abs(exact(p))
    err = relative_error(grad(loss)(p), grad(exact)(p))
    record_error(f"logistic: grad ({method})", err)
    assert err < GRAD_RTOL


def test_elementwise_grad_of_decay_over_k_grid():
    ks = onp.array([0.2, 0.5, 1.0])

    def final(k):
        return odeint(lambda y, t, k: -k * y, onp.ones(3), [0.0, 2.0], args=(k,), rtol=TOL, atol=TOL)[-1]

    assert relative_error(elementwise_grad(final)(ks), -2.0 * onp.exp(-2.0 * ks)) < GRAD_RTOL


# --------------------------------------------------------------------------------------------
# 5. Errors.
# --------------------------------------------------------------------------------------------

def _decay(y, t):
    return -y


@pytest.mark.parametrize(
    "t, match",
    [
        ([0.0, 1.0, 0.5], r"t must be monotonic"),
        ([0.0, onp.nan, 2.0], r"t contains NaN"),
        ([0.0, onp.inf], r"t contains NaN or inf"),
        ([[0.0, 1.0]], r"t must be a 1-D"),
    ],
)
def test_bad_times_raise_value_error(t, match):
    with pytest.raises(ValueError, match=match):
        odeint(_decay, 1.0, t)


@pytest.mark.parametrize("method", METHODS)
def test_bad_y0(method):
    with pytest.raises(ValueError, match=r"y0 contains NaN"):
        odeint(_decay, [1.0, onp.nan], [0.0, 1.0], method=method)
    with pytest.raises(ValueError, match=r"y0 is complex"):
        odeint(_decay, onp.array([1.0 + 1.0j]), [0.0, 1.0], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_empty_y0_and_zero_tolerances_are_named(method):
    with pytest.raises(ValueError, match=r"y0 is empty \(shape \(0,\)\)"):
        odeint(_decay, [], [0.0, 1.0], method=method)
    with pytest.raises(ValueError, match=r"rtol\*\|y0\| \+ atol is 0.*do not set rtol and atol both to 0"):
        odeint(_decay, 1.0, [0.0, 1.0], rtol=0.0, atol=0.0, method=method)


def test_dfun_exception_under_bdf_is_the_users_own():
    def jac(y, t):
        raise KeyError("Dfun broke")

    with pytest.raises(KeyError, match="Dfun broke") as info:
        odeint(lambda y, t: -1e3 * y, [1.0, 2.0], [0.0, 1.0], Dfun=jac, method="bdf")
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_traced_entries_in_lists_of_times_and_states():
    """t=[0.0, T] and y0=[a, 1.0] with T, a traced: d y(T)/dT = f(y(T)), d y(T)/da = e^{-kT}."""
    k = 0.8
    dT = grad(lambda T: odeint(decay, 2.0, [0.0, T], args=(k,), rtol=TOL, atol=TOL)[-1])(1.5)
    assert abs(dT - (-k * 2.0 * onp.exp(-k * 1.5))) < 1e-7
    da = grad(lambda a: odeint(decay, [a, 1.0], (0.0, 1.5), args=(k,), rtol=TOL, atol=TOL)[-1, 0])(2.0)
    assert abs(da - onp.exp(-k * 1.5)) < 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_func_wrong_shape(method):
    with pytest.raises(ValueError, match=r"func returned shape \(3,\) but y0 has shape \(2,\)"):
        odeint(lambda y, t: np.ones(3), onp.ones(2), [0.0, 1.0], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_finite_time_blowup_raises_with_method_and_time(method):
    # y' = y², y(0) = 1: y = 1/(1 - t) blows up at t = 1 < 2.
    with pytest.raises(ODESolveError, match=rf"{method} failed at t = (0\.99|1\b).* on its way to t = 2"):
        odeint(lambda y, t: y ** 2, 1.0, [0.0, 2.0], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_func_returning_nan_raises(method):
    def f(y, t):
        return y * np.nan if t > 0.5 else -y

    with pytest.raises(ODESolveError, match=r"non-finite values \(NaN or inf\) at t = 0\.[5-9]"):
        odeint(f, 1.0, [0.0, 1.0], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_excess_work_raises(method):
    with pytest.raises(ODESolveError, match=rf"{method} failed at t = .*excess work done.*mxstep"):
        odeint(lambda y, t: np.cos(100.0 * t) * y, 1.0, [0.0, 10.0], mxstep=5, method=method)


def test_closure_over_traced_value_raises_type_error():
    def loss(p):
        return odeint(lambda y, t: -p * y, 1.0, [0.0, 1.0])[-1]

    with pytest.raises(TypeError, match=r"args=\(p,\)"):
        grad(loss)(1.0)


@pytest.mark.parametrize("method", METHODS)
def test_nested_odeint_raises_runtime_error(method):
    def outer(y, t):
        return -odeint(_decay, 1.0, [0.0, 1.0], method=method)[-1] * y

    with pytest.raises(RuntimeError, match=r"not re-entrant"):
        odeint(outer, 1.0, [0.0, 1.0], method=method)
    # The guard is released afterwards: a normal solve still works.
    assert onp.isclose(odeint(_decay, 1.0, [0.0, 1.0], method=method)[-1], onp.exp(-1.0), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "rk45"}, r"method must be one of"),
        ({"adjoint_method": "dopri5"}, r"adjoint_method must be one of"),
        ({"adjoint": "bogus"}, r"adjoint must be one of"),
        ({"checkpoints": -1}, r"checkpoints must be a non-negative integer"),
        ({"checkpoints": 1.5}, r"checkpoints must be a non-negative integer"),
        ({"rtol": -1e-6}, r"rtol must be finite and non-negative"),
        ({"atol": onp.ones(3)}, r"atol of shape \(3,\) does not broadcast"),
        ({"method": "adams", "ml": 1}, r"ml only apply to method='lsoda'"),
        ({"method": "adams", "tcrit": [2.0]}, r"tcrit only apply to method='lsoda'"),
        ({"method": "bdf", "mxordn": 4}, r"mxordn only apply to method='lsoda', not 'bdf'"),
    ],
)
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        odeint(_decay, onp.ones(2), [0.0, 1.0], **kwargs)


def test_complex_args_rejected():
    with pytest.raises(ValueError, match=r"complex-valued args"):
        odeint(lambda y, t, c: -y, 1.0, [0.0, 1.0], args=(onp.array([1.0 + 2.0j]),))
