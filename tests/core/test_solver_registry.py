"""The solver registry (odegrad.solver_registry): every record agrees with what scipy's method does,
and a solver registered from here alone runs through the doors, forwards and for the gradient.

Tolerances: see the module docstring of ``tests/tolerances.py``; the fixed-step RK4 below has global
error ~(k h)^4 = 6e-10 at k h = 5e-3, its gradient (a solve of the same scheme) likewise.
"""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import pytest
import scipy.integrate
import scipy.linalg
from autograd import grad

import odegrad
from odegrad import ODESolveError, solvers
from odegrad.gradcheck import relative_error
from odegrad.gradcheck.problems import K_ROBERTSON, robertson_rates
from odegrad.solver_registry import (
    DIRECTIONS,
    SOLVERS,
    SolverSpec,
    methods,
    register_solver,
    solver,
    unregister_solver,
)
from tests.tolerances import GRAD_RTOL, TOL

SCIPY_METHODS = ("lsoda", "adams", "bdf", "RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


@pytest.fixture
def register():
    """Register records for one test; unregister them afterwards, whatever happens."""
    names: list[str] = []

    def add(spec: SolverSpec) -> SolverSpec:
        register_solver(spec)
        names.append(spec.name)
        return spec

    yield add
    for name in names:
        unregister_solver(name)


# --------------------------------------------------------------------------------------------
# scipy's records against scipy.
# --------------------------------------------------------------------------------------------

def test_scipy_methods_registered_and_compat_tuples_derived():
    assert tuple(SOLVERS)[:len(SCIPY_METHODS)] == SCIPY_METHODS
    assert solvers.METHODS == ("lsoda", "adams", "bdf") == methods("odeint")
    assert solvers.IVP_METHODS == ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA") == methods("solve_ivp")
    assert set(solvers.STIFF_METHODS) == {"bdf", "Radau", "BDF"}
    assert set(solvers.JACOBIAN_METHODS) == {"lsoda", "bdf", "Radau", "BDF", "LSODA"}
    for name in solvers.IVP_METHODS:
        spec = solver(name)
        assert spec.family == "ivp" and spec.ivp_solver is getattr(scipy.integrate, name)
        assert issubclass(spec.ivp_solver, scipy.integrate.OdeSolver)
    assert [name for name in SCIPY_METHODS if not solver(name).reentrant] == ["lsoda", "adams", "bdf", "LSODA"]


@pytest.mark.parametrize("name", SCIPY_METHODS)
def test_record_solves_decay_in_its_directions(name):
    spec = solver(name)
    opts = solvers.SolverOptions(method=name, rtol=TOL, atol=TOL)
    y0 = onp.array([1.0, 2.0])
    for direction, t in (("forward", onp.array([0.0, 0.5, 1.0])), ("backward", onp.array([1.0, 0.5, 0.0]))):
        assert direction in spec.directions
        ys, stats = solvers.solve(lambda y, tt: -y, y0, t, opts)
        assert relative_error(ys, onp.exp(-(t - t[0]))[:, None] * y0) < 100 * TOL
        assert stats.method == name and stats.nfe > 0


@pytest.mark.parametrize("name", SCIPY_METHODS)
def test_record_dense_output(name):
    spec = solver(name)
    assert spec.dense_output
    opts = solvers.SolverOptions(method=name, rtol=TOL, atol=TOL)
    for start, end in ((0.0, 1.0), (1.0, 0.0)):
        y_of_t, stats = solvers.dense_solve(lambda y, tt: -y, onp.array([1.0]), start, end, opts)
        for tt in (0.13, 0.5, 0.87):
            assert abs(y_of_t(tt)[0] - onp.exp(-(tt - start))) < 1e-7   # interpolants: ~100x TOL and more
        assert stats.nfe > 0


A_STIFF = onp.array([[-1.0, 0.0], [99.0, -100.0]])   # eigenvalues -1 and -100, not symmetric


@pytest.mark.parametrize("name", SCIPY_METHODS)
def test_record_reads_a_given_jacobian_exactly_when_it_has_a_layout(name):
    """A stiff linear system: the methods that read a given Jacobian (a layout) call it (LSODA after
    switching to BDF; VODE's Adams iterates with Newton once given one, though it does not want one
    by default), the others never; the answer is the matrix exponential's either way. (VODE's Adams
    needs ~9000 steps to t = 5, over its default mxstep.)"""
    calls = []

    def jac(y, t):
        calls.append(t)
        return A_STIFF

    t = onp.array([0.0, 2.5, 5.0])
    y0 = onp.array([1.0, 0.0])
    opts = solvers.SolverOptions(method=name, rtol=1e-8, atol=1e-10, mxstep=20000)
    ys, _ = solvers.solve(lambda y, tt: A_STIFF @ y, y0, t, opts, jac)
    exact = onp.stack([scipy.linalg.expm(A_STIFF * tt) @ y0 for tt in t])
    assert onp.max(onp.abs(ys - exact)) < 1e-6
    spec = solver(name)
    assert bool(calls) == (spec.jacobian_layout is not None)
    assert spec.jacobian_layout is not None or not spec.takes_jacobian


@pytest.fixture(scope="module")
def robertson_at_40():
    solution = scipy.integrate.solve_ivp(lambda t, y: robertson_rates(y, t, K_ROBERTSON), (0.0, 40.0),
                                         [1.0, 0.0, 0.0], method="Radau", rtol=1e-12, atol=1e-16)
    return solution.y[:, -1]


@pytest.mark.parametrize("name", [name for name in SCIPY_METHODS if solver(name).stiff])
def test_stiff_records_solve_robertson_at_default_tolerances(name, robertson_at_40):
    ys, stats = solvers.solve(lambda y, t: robertson_rates(y, t, K_ROBERTSON), onp.array([1.0, 0.0, 0.0]),
                              onp.array([0.0, 40.0]), solvers.SolverOptions(method=name))
    assert relative_error(ys[-1], robertson_at_40) < 1e-6
    assert stats.nst < 1000


def test_a_non_stiff_record_does_not_solve_robertson():
    """The flag matters: VODE's Adams (stiff=False) runs out of steps where the stiff records took < 1000."""
    assert not solver("adams").stiff
    with pytest.raises(ODESolveError, match="excess work"):
        solvers.solve(lambda y, t: robertson_rates(y, t, K_ROBERTSON), onp.array([1.0, 0.0, 0.0]),
                      onp.array([0.0, 40.0]), solvers.SolverOptions(method="adams"))


# --------------------------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------------------------

def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"method must be one of \('lsoda', 'adams', 'bdf', 'RK45'.*got 'euler'"):
        solver("euler")
    with pytest.raises(ValueError, match=r"method must be one of \('lsoda', 'adams', 'bdf'\), got 'RK45'"):
        odegrad.odeint(lambda y, t: -y, 1.0, [0.0, 1.0], method="RK45")
    with pytest.raises(ValueError, match=r"adjoint_method must be one of \('lsoda', .*'LSODA'.*\), got 'euler'"):
        odegrad.odeint(lambda y, t: -y, 1.0, [0.0, 1.0], adjoint_method="euler")
    with pytest.raises(ValueError, match=r"method must be one of \('RK45', .*'LSODA'\) or one of their scipy classes"):
        grad(lambda y0: odegrad.solve_ivp(lambda t, y: -y, (0.0, 1.0), y0, method="lsoda").y[0, -1])(np.array([1.0]))


def test_inconsistent_records_and_duplicate_names_are_refused():
    good = dict(name="x", family="own", stiff=False, takes_jacobian=False, jacobian_layout=None,
                directions=DIRECTIONS, options=frozenset(), doors=frozenset({"odeint"}), reentrant=True,
                run=lambda *a: None)
    for change, message in (({"takes_jacobian": True}, "jacobian_layout"), ({"directions": frozenset({"up"})}, "directions"),
                            ({"options": frozenset({"nsteps"})}, "nsteps"), ({"doors": frozenset({"solve_ivp"})}, "ivp_solver"),
                            ({"name": ""}, "name")):
        with pytest.raises(ValueError, match=message):
            SolverSpec(**{**good, **change})
    with pytest.raises(ValueError, match="'lsoda' is registered already"):
        register_solver(SolverSpec(**{**good, "name": "lsoda"}))
    with pytest.raises(ValueError, match="method must be one of"):
        unregister_solver("x")


# --------------------------------------------------------------------------------------------
# A solver of one's own: fixed-step RK4, registered from this module.
# --------------------------------------------------------------------------------------------

def _rk4(fun, y0, t, opts, jac):
    """Classical RK4 with steps of at most ``opts.hmax`` (0: 0.01) in each output interval."""
    h_max = opts.hmax or 0.01
    ys = onp.empty((len(t), y0.size))
    ys[0] = y = y0
    steps = 0
    for i in range(1, len(t)):
        n = max(1, int(onp.ceil(abs(t[i] - t[i - 1]) / h_max)))
        h = (t[i] - t[i - 1]) / n
        for j in range(n):
            s = t[i - 1] + j * h
            k1 = fun(y, s)
            k2 = fun(y + h / 2 * k1, s + h / 2)
            k3 = fun(y + h / 2 * k2, s + h / 2)
            k4 = fun(y + h * k3, s + h)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        steps += n
        ys[i] = y
    return ys, odegrad.SolveStats(method=opts.method, nfe=fun.nfe, nst=steps, nsolves=1)


def _rk4_spec(name: str, directions: frozenset = DIRECTIONS) -> SolverSpec:
    return SolverSpec(name=name, family="fixed-step", stiff=False, takes_jacobian=False, jacobian_layout=None,
                      directions=directions, options=frozenset({"hmax"}), doors=frozenset({"odeint"}),
                      reentrant=True, run=_rk4)


def _decay(y, t, k):
    return -k * y


T = onp.array([0.0, 0.5, 2.0])
K = 0.7


def _loss(k, method, **kw):
    return np.sum(odegrad.odeint(_decay, 1.5, T, args=(k,), method=method, hmax=5e-3, **kw)[-1])


@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve", "forward", "auto"])
def test_registered_solver_runs_odeint_and_its_gradient(register, adjoint):
    register(_rk4_spec("rk4-test"))
    ys = odegrad.odeint(_decay, 1.5, T, args=(K,), method="rk4-test", hmax=5e-3)
    assert relative_error(ys[:, 0], 1.5 * onp.exp(-K * T)) < 1e-8
    gradient = grad(_loss)(K, "rk4-test", adjoint=adjoint)
    assert relative_error(gradient, -T[-1] * 1.5 * onp.exp(-K * T[-1])) < GRAD_RTOL
    with odegrad.record_stats() as stats:
        grad(_loss)(K, "lsoda", adjoint="checkpoint", adjoint_method="rk4-test", rtol=TOL, atol=TOL)
    assert stats.calls[0].backward.method == "rk4-test" and stats.backward.nfe > 0


def test_registered_solver_options_and_dense_output_are_read_from_its_record(register):
    register(_rk4_spec("rk4-test"))
    with pytest.raises(ValueError, match=r"mxstep only apply to method='lsoda', 'adams' or 'bdf', not 'rk4-test'"):
        odegrad.odeint(_decay, 1.0, T, args=(K,), method="rk4-test", mxstep=10)
    with pytest.raises(ValueError, match=r"full_output only apply to .*not 'rk4-test'"):
        odegrad.odeint(_decay, 1.0, T, args=(K,), method="rk4-test", full_output=True)
    with pytest.raises(ValueError, match=r"'rk4-test' has no dense output.*adjoint='checkpoint'"):
        grad(_loss)(K, "rk4-test", adjoint="interpolate")
    assert "rk4-test" not in solvers.METHODS   # the compat tuples are scipy's methods, fixed at import


def test_forward_only_solver_refuses_the_backward_solves(register):
    register(_rk4_spec("rk4-forward", directions=frozenset({"forward"})))
    assert relative_error(grad(_loss)(K, "rk4-forward", adjoint="forward"), -T[-1] * 1.5 * onp.exp(-K * T[-1])) < GRAD_RTOL
    refusal = r"'rk4-forward' only solves forward in time.*runs backward.*adjoint_method that solves backward"
    with pytest.raises(ValueError, match=refusal):
        grad(_loss)(K, "rk4-forward", adjoint="checkpoint")


# --------------------------------------------------------------------------------------------
# An OdeSolver class of one's own through the solve_ivp door (and the odeint door).
# --------------------------------------------------------------------------------------------

class MyRK45(scipy.integrate.RK45):
    """scipy's RK45 under another class: odegrad knows nothing of it until it is registered."""


def _ivp_loss(k, method):
    solution = odegrad.solve_ivp(lambda t, y, kk: -kk * y, (0.0, 2.0), np.array([1.5]), method=method, args=(k,),
                                 t_eval=T, rtol=TOL, atol=TOL)
    return solution.y[0, -1]


def test_registered_ode_solver_class_is_differentiated(register):
    with pytest.raises(ValueError, match="unless registered"):
        grad(_ivp_loss)(K, MyRK45)
    register(solvers.ivp_record("my-rk45", MyRK45))
    expected = -T[-1] * 1.5 * onp.exp(-K * T[-1])
    for method in ("my-rk45", MyRK45):
        assert relative_error(grad(_ivp_loss)(K, method), expected) < GRAD_RTOL
    plain = odegrad.solve_ivp(lambda t, y: -K * y, (0.0, 2.0), [1.5], method="my-rk45", t_eval=T)
    scipy_own = scipy.integrate.solve_ivp(lambda t, y: -K * y, (0.0, 2.0), [1.5], method="RK45", t_eval=T)
    assert onp.array_equal(plain.y, scipy_own.y)
    with pytest.raises(ValueError, match=r"method must be one of \('lsoda', 'adams', 'bdf'\), got 'my-rk45'"):
        odegrad.odeint(_decay, 1.0, T, args=(K,), method="my-rk45")


def test_solve_ivp_record_may_open_the_odeint_door(register):
    register(solvers.ivp_record("rk45-both", MyRK45, doors=frozenset({"odeint", "solve_ivp"})))
    loss = lambda k: odegrad.odeint(_decay, 1.5, T, args=(k,), method="rk45-both", rtol=TOL, atol=TOL)[-1, 0]  # noqa: E731
    assert relative_error(grad(loss)(K), -T[-1] * 1.5 * onp.exp(-K * T[-1])) < GRAD_RTOL
