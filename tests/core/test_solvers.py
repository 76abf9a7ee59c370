"""The scipy back-ends (odegrad.solvers) and stiff problems: Robertson's chemical kinetics with
gradients checked against an independent forward-sensitivity reference.

Tolerances: see the module docstring of ``tests/tolerances.py``.
"""

from __future__ import annotations

import warnings

import autograd.numpy as np
import numpy as onp
import pytest
import scipy.integrate
from autograd import grad

from odegrad import ODESolveError, SolveStats, odeint, record_stats, solvers
from odegrad.gradcheck import relative_error
from odegrad.gradcheck.problems import (
    K_ROBERTSON,
    ROBERTSON,
    linear,
    linear_gradients,
    linear_solution,
    robertson,
    robertson_jac,
    robertson_rates,
    robertson_sensitivities,
)
from odegrad.solvers import METHODS
from tests.tolerances import GRAD_RTOL, TOL

# --------------------------------------------------------------------------------------------
# solvers.solve directly.
# --------------------------------------------------------------------------------------------

def _osc(y, t):
    return onp.array([y[1], -y[0]])


@pytest.mark.parametrize("method", METHODS)
def test_solve_harmonic_oscillator(method):
    t = onp.linspace(0.0, 6.0, 13)
    opts = solvers.SolverOptions(method=method, rtol=TOL, atol=TOL)
    ys, stats = solvers.solve(_osc, onp.array([1.0, 0.0]), t, opts)
    assert ys.shape == (13, 2)
    assert relative_error(ys, onp.stack([onp.cos(t), -onp.sin(t)], axis=1)) < 1e-7  # global ≈ 100 x local
    assert isinstance(stats, SolveStats)
    assert stats.method == method and stats.nsolves == 1
    assert stats.nfe > 0 and stats.nst > 0
    assert stats.nfe >= stats.nst


@pytest.mark.parametrize("method", METHODS)
def test_solve_decreasing_times_and_vector_tolerances(method):
    t = onp.array([3.0, 2.0, 0.5])
    opts = solvers.SolverOptions(method=method, rtol=1e-10, atol=onp.array([1e-12, 1e-10]))
    ys, _ = solvers.solve(_osc, onp.array([onp.cos(3.0), -onp.sin(3.0)]), t, opts)
    assert relative_error(ys, onp.stack([onp.cos(t), -onp.sin(t)], axis=1)) < 1e-8


@pytest.mark.parametrize("method", METHODS)
def test_solve_single_time_no_calls(method):
    calls = []
    ys, stats = solvers.solve(lambda y, t: calls.append(t) or -y, onp.array([1.0, 2.0]), onp.array([0.3]),
                              solvers.SolverOptions(method=method))
    assert onp.array_equal(ys, [[1.0, 2.0]]) and calls == [] and stats.nfe == 0


@pytest.mark.parametrize("method", METHODS)
def test_hmax_is_respected(method):
    opts = solvers.SolverOptions(method=method, hmax=0.01)
    _, stats = solvers.solve(lambda y, t: -y, onp.array([1.0]), onp.array([0.0, 1.0]), opts)
    assert stats.nst >= 100  # at least T / hmax steps


@pytest.mark.parametrize("method", METHODS)
def test_solve_errors(method):
    with pytest.raises(ODESolveError, match=rf"{method} failed"):
        solvers.solve(lambda y, t: y ** 2, onp.array([1.0]), onp.array([0.0, 2.0]),
                      solvers.SolverOptions(method=method))
    with pytest.raises(ValueError, match=r"func returned an array with 3 entries"):
        solvers.solve(lambda y, t: onp.ones(3), onp.array([1.0, 1.0]), onp.array([0.0, 1.0]),
                      solvers.SolverOptions(method=method))

    class Boom(Exception):
        pass

    def raising(y, t):
        raise Boom("from func")

    with pytest.raises(Boom, match="from func"):  # the user's exception propagates unchanged
        solvers.solve(raising, onp.array([1.0]), onp.array([0.0, 1.0]), solvers.SolverOptions(method=method))


@pytest.mark.parametrize("method", METHODS)
def test_exception_in_jacobian_propagates_unchanged(method):
    """A Dfun that raises surfaces as the user's own exception, not as a chain of SystemErrors
    out of VODE's Fortran callback."""
    class Boom(Exception):
        pass

    def jac(y, t):
        raise Boom("from Dfun")

    stiff = solvers.SolverOptions(method=method)
    with pytest.raises(Boom, match="from Dfun") as info:
        solvers.solve(lambda y, t: -1e4 * y, onp.array([1.0]), onp.array([0.0, 1.0]), stiff, jac)
    chain, exc = 0, info.value
    while exc is not None:
        chain, exc = chain + 1, exc.__cause__ or exc.__context__
    assert chain == 1, f"the Dfun exception was chained {chain} deep"
    with pytest.raises(ValueError, match=r"Dfun must return an \(1, 1\) array"):
        solvers.solve(lambda y, t: -1e4 * y, onp.array([1.0]), onp.array([0.0, 1.0]), stiff,
                      lambda y, t: onp.ones((2, 2)))


@pytest.mark.parametrize("method", METHODS)
def test_zero_error_weight_and_empty_state_are_named(method):
    with pytest.raises(ValueError, match=r"rtol\*\|y0\| \+ atol is 0 for state component\(s\) \[0, 1\]"):
        solvers.solve(lambda y, t: -y, onp.ones(2), onp.array([0.0, 1.0]),
                      solvers.SolverOptions(method=method, rtol=0.0, atol=0.0))
    # atol = 0 is fine where y0 is not 0, and named where it is.
    with pytest.raises(ValueError, match=r"component\(s\) \[1\].*atol > 0"):
        solvers.solve(lambda y, t: -y, onp.array([1.0, 0.0]), onp.array([0.0, 1.0]),
                      solvers.SolverOptions(method=method, rtol=1e-6, atol=0.0))
    with pytest.raises(ValueError, match=r"the state is empty"):
        solvers.solve(lambda y, t: -y, onp.zeros(0), onp.array([0.0, 1.0]), solvers.SolverOptions(method=method))


def test_scipy_solver_inside_func_is_named():
    """scipy's LSODA and VODE are not re-entrant; nesting them used to end in "illegal input"."""
    def calls_odeint(y, t):
        scipy.integrate.odeint(lambda z, s: -z, [1.0], [0.0, 1.0])
        return -y

    with pytest.raises(ODESolveError, match=r"lsoda reported illegal input.*after 1 evaluations of func.*"
                                            r"scipy solver called inside func.*not re-entrant"):
        solvers.solve(calls_odeint, onp.array([1.0]), onp.array([0.0, 1.0]), solvers.SolverOptions())

    def calls_vode(y, t):
        inner = scipy.integrate.ode(lambda s, z: -z).set_integrator("vode")
        inner.set_initial_value([1.0], 0.0).integrate(1.0)
        return -y

    with pytest.raises(ODESolveError, match=r"adams lost its callback.*VODE solve .* ran inside func.*not re-entrant"):
        solvers.solve(calls_vode, onp.array([1.0]), onp.array([0.0, 1.0]), solvers.SolverOptions(method="adams"))
    assert abs(odeint(lambda y, t: -y, 1.0, [0.0, 1.0])[-1] - onp.exp(-1)) < 1e-6  # nothing left broken


def test_unknown_method_in_solver_options():
    with pytest.raises(ValueError, match=r"method must be one of"):
        solvers.solve(lambda y, t: -y, onp.array([1.0]), onp.array([0.0, 1.0]),
                      solvers.SolverOptions(method="euler"))


def test_solver_reusable_after_failure():
    """A failed solve (exception out of the dynamics) leaves no stale re-entrancy guard."""
    with pytest.raises(ODESolveError):
        odeint(lambda y, t: y * onp.nan, 1.0, [0.0, 1.0])
    for method in METHODS:
        assert abs(odeint(lambda y, t: -y, 1.0, [0.0, 1.0], method=method)[-1] - onp.exp(-1)) < 1e-6


@pytest.mark.parametrize("method", ["adams", "bdf"])
def test_vode_options_mxstep_and_h0(method):
    with pytest.raises(ODESolveError, match="excess work"):
        odeint(lambda y, t: -y, 1.0, [0.0, 1.0], method=method, hmax=1e-3, mxstep=50)
    ys = odeint(lambda y, t: -y, 1.0, [0.0, 1.0], method=method, hmax=1e-3, mxstep=5000, h0=1e-4,
                rtol=TOL, atol=TOL)
    assert abs(ys[-1] - onp.exp(-1.0)) < 1e-8


# scipy 1.17.x (gh-24933) hands VODE the transpose of a user-supplied Jacobian; odegrad detects
# this and transposes. Our own detector (step counts on Robertson) must agree with odegrad's.

def _vode_transposes_user_jacobian() -> bool:
    """scipy 1.17.x (gh-24933) hands VODE the transpose of a user-supplied Jacobian."""
    log_k = ROBERTSON.p

    def steps(jac_fun):
        s = scipy.integrate.ode(lambda t, y: robertson_rates(y, t, K_ROBERTSON), jac_fun)
        s.set_integrator("vode", method="bdf", with_jacobian=True, nsteps=3000, rtol=1e-8, atol=1e-12)
        s.set_initial_value([1.0, 0.0, 0.0], 0.0)
        s.integrate(10.0)
        return int(s._integrator.iwork[10]) if s.successful() else 10**9

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return steps(lambda t, y: robertson_jac(y, t, log_k)) > 3 * steps(lambda t, y: robertson_jac(y, t, log_k).T)


def test_vode_jacobian_orientation_probe_agrees():
    assert solvers.vode_reads_jacobian_transposed() == _vode_transposes_user_jacobian()


# --------------------------------------------------------------------------------------------
# Stiff: Robertson. Reference = forward sensitivity equations S' = J S + ∂f/∂logk, integrated by
# scipy's Radau at rtol 1e-12 (an implicit method independent of LSODA/VODE and of the adjoint).
# --------------------------------------------------------------------------------------------

W_ROB = onp.array([1.0, 1e4, 1.0])    # y2 is O(1e-5): weight it so it matters in the loss
ATOL_ROB = onp.array([1e-12, 1e-16, 1e-12])


def _sensitivity_reference(t, logk):
    return robertson_sensitivities(t, logk, W_ROB, ATOL_ROB)


T_ROB_FAST = onp.concatenate([[0.0], onp.logspace(-5, -2, 6)])


@pytest.fixture(scope="module")
def robertson_reference():
    return _sensitivity_reference(T_ROB_FAST, ROBERTSON.p)


def _robertson_loss(logk, t, **kw):
    ys = odeint(robertson, onp.array([1.0, 0.0, 0.0]), t, args=(logk,), rtol=1e-10, atol=ATOL_ROB, **kw)
    return np.sum(ys * W_ROB)


@pytest.mark.parametrize("kw", [{"method": "lsoda"},
                                {"method": "lsoda", "Dfun": robertson_jac},
                                {"method": "bdf", "adjoint_jacobian": False, "mxstep": 5000},
                                {"method": "bdf", "adjoint_method": "lsoda"}],
                         ids=["lsoda", "lsoda-Dfun", "bdf-nojac", "bdf-lsoda-adjoint"])
def test_robertson_gradient_vs_forward_sensitivities(kw, robertson_reference, record_error):
    ys_ref, g_ref = robertson_reference
    logk = ROBERTSON.p
    ys = odeint(robertson, onp.array([1.0, 0.0, 0.0]), T_ROB_FAST, args=(logk,), rtol=1e-10, atol=ATOL_ROB,
                **{k: v for k, v in kw.items() if k in ("method", "Dfun", "mxstep")})
    assert relative_error(ys[:, 1], ys_ref[:, 1]) < 1e-6
    g = grad(_robertson_loss)(logk, T_ROB_FAST, **kw)
    err = onp.max(onp.abs(g - g_ref) / onp.abs(g_ref))   # componentwise relative
    label = ",".join([kw["method"]] + [k if k == "Dfun" else f"{k}={v}" for k, v in kw.items() if k != "method"])
    record_error(f"Robertson d/dlogk vs forward sensitivities ({label})", err)
    assert err < 1e-4, (g, g_ref)


@pytest.mark.parametrize("adjoint_jacobian", [
    False, pytest.param(None, id="auto-jacobian")])
def test_robertson_bdf_backward_jacobian(adjoint_jacobian, record_error):
    """method='bdf' over [0, 1e-4]: 68 backward steps suffice without a user Jacobian; with the
    default (auto, exact) backward Jacobian VODE failed before odegrad worked around gh-24933.

    Former failure (scipy 1.17.x)::

        grad(lambda k: np.sum(W * odeint(rob, [1., 0, 0], [0, 1e-4], args=(k,), method="bdf",
                                         rtol=1e-10, atol=[1e-12, 1e-16, 1e-12])))(log k)
        # ODESolveError: bdf failed at t = 9.99999e-05 on its way to t = 0: excess work done
        # ... succeeds (and is right) with adjoint_jacobian=False.
    """
    t = onp.array([0.0, 1e-4])
    _, g_ref = _sensitivity_reference(t, ROBERTSON.p)
    g = grad(_robertson_loss)(ROBERTSON.p, t, method="bdf", mxstep=150,
                              adjoint_jacobian=adjoint_jacobian)
    err = onp.max(onp.abs(g - g_ref) / onp.abs(g_ref))
    record_error(f"Robertson [0,1e-4] bdf (adjoint_jacobian={adjoint_jacobian})", err)
    assert err < 1e-4


def test_bdf_forward_with_dfun_is_efficient():
    """A correct Jacobian must not make VODE-BDF slower than its internal FD Jacobian."""
    t = onp.array([0.0, 1.0, 100.0])
    logk = ROBERTSON.p
    with_jac, info_j = odeint(robertson, [1.0, 0.0, 0.0], t, args=(logk,), method="bdf",
                              Dfun=robertson_jac, rtol=1e-8, atol=ATOL_ROB, mxstep=2000, full_output=True)
    plain, info_p = odeint(robertson, [1.0, 0.0, 0.0], t, args=(logk,), method="bdf",
                           rtol=1e-8, atol=ATOL_ROB, mxstep=2000, full_output=True)
    assert relative_error(with_jac, plain) < 1e-5
    assert info_j["nst"][-1] <= 2 * info_p["nst"][-1]


def test_robertson_interpolate_short_span(record_error):
    """Outputs log-spaced 1e-5 .. 1e-1 with the interpolating adjoint (no backward y at all).
    The default mxstep (500 per interval) is not enough backwards here; see the report."""
    t = onp.concatenate([[0.0], onp.logspace(-5, -1, 5)])
    _, g_ref = _sensitivity_reference(t, ROBERTSON.p)
    g = grad(_robertson_loss)(ROBERTSON.p, t, method="lsoda", adjoint="interpolate", mxstep=20000)
    err = onp.max(onp.abs(g - g_ref) / onp.abs(g_ref))
    record_error("Robertson 1e-5..1e-1 (lsoda, interpolate)", err)
    assert err < 1e-4


@pytest.mark.slow
def test_robertson_interpolate_full_span(record_error):
    """Outputs log-spaced 1e-5 .. 1e2 with the interpolating adjoint. ~10-20 s. The backward solve
    takes about 3,000 steps over the 8 intervals (3,002 with autograd's derivative evaluations, 3,065
    with JAX-compiled ones, the same gradient), and [10, 100] sits at the default mxstep of 500:
    compiled, it failed there (excess work at t = 10.47), so the default passed or failed with how
    many evaluations of Robertson earlier tests had made (odegrad.compiled.COMPILE_AFTER). Hence
    mxstep here."""
    t = onp.concatenate([[0.0], onp.logspace(-5, 2, 8)])
    _, g_ref = _sensitivity_reference(t, ROBERTSON.p)
    g = grad(_robertson_loss)(ROBERTSON.p, t, method="lsoda", adjoint="interpolate", mxstep=20000)
    err = onp.max(onp.abs(g - g_ref) / onp.abs(g_ref))
    record_error("Robertson 1e-5..1e2 (lsoda, interpolate)", err)
    assert err < 1e-4


@pytest.mark.slow
def test_robertson_longer_span_with_checkpoints(record_error):
    """Outputs up to t = 0.1; the backward reconstruction of y needs checkpoints (fast modes
    grow backwards). ~10-40 s."""
    t = onp.concatenate([[0.0], onp.logspace(-5, -1, 9)])
    _, g_ref = _sensitivity_reference(t, ROBERTSON.p)
    g = grad(_robertson_loss)(ROBERTSON.p, t, method="lsoda", checkpoints=10)
    err = onp.max(onp.abs(g - g_ref) / onp.abs(g_ref))
    record_error("Robertson to 0.1 (lsoda, checkpoints=10)", err)
    assert err < 1e-4


def test_stiff_linear_small_bdf_vs_expm(record_error):
    """A faster stiff check: y' = A y, eigenvalues -200 and -1, over 6 outputs in [0, 0.5];
    checkpoints=4 keeps the backward growth of the fast mode per segment at e^{200·0.02} = e^4."""
    A = onp.array([[-200.0, 0.0], [199.0, -1.0]])
    y0 = onp.array([1.0, 0.0])
    t = onp.linspace(0.0, 0.5, 6)
    G = onp.zeros((6, 2))
    G[1:] = [1.0, 1.0]

    for method in ("lsoda", "bdf"):
        def loss(A, method=method):
            return np.sum(odeint(linear, y0, t, args=(A,), method=method,
                                 rtol=TOL, atol=TOL, checkpoints=4, mxstep=20000,
                                 adjoint_jacobian=False if method == "bdf" else None) * G)

        ys = odeint(linear, y0, t, args=(A,), method=method, rtol=TOL, atol=TOL,
                    mxstep=20000)
        exact_ys = linear_solution(y0, t, A)
        assert relative_error(ys, exact_ys) < 1e-7
        exact, _, _ = linear_gradients(A, y0, t, G)
        err = relative_error(grad(loss)(A), exact)
        record_error(f"stiff linear -200/-1 ({method})", err)
        assert err < 10 * GRAD_RTOL


def test_lsoda_method_switch_statistics():
    """LSODA starts non-stiff (Adams) and switches to BDF on Robertson: stats record it."""
    t = onp.concatenate([[0.0], onp.logspace(-5, 2, 20)])
    with record_stats() as rec:
        odeint(robertson, [1.0, 0.0, 0.0], t, args=(ROBERTSON.p,))
    assert rec.forward.method_switches >= 1
    assert rec.forward.nje >= 1


def test_lsoda_method_switch_before_first_output_is_counted():
    with record_stats() as rec:
        odeint(robertson, [1.0, 0.0, 0.0], [0.0, 1.0, 100.0], args=(ROBERTSON.p,))
    assert rec.forward.nje >= 1              # Jacobians are only formed in the BDF phase
    assert rec.forward.method_switches >= 1  # ... so at least one Adams -> BDF switch happened
