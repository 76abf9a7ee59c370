"""The problem collection (odegrad.gradcheck.problems) against the truth: its closed forms and
hand-written derivatives against plain-scipy solves, central differences and autograd."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.integrate
from autograd import grad, jacobian

from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck import problems as ode


def _plain_solve(problem: ode.ODEProblem, **kw) -> np.ndarray:
    """``y(t_i)`` by ``scipy.integrate.odeint`` at the problem's tolerance hints."""
    args = (ode.neural_net_params(problem.p),) if problem is ode.NEURAL_NET else (problem.p,)
    kw = {"rtol": problem.rtol, "atol": problem.atol, "mxstep": 100000, **kw}
    return scipy.integrate.odeint(problem.f, problem.y0, problem.t, args=args, **kw)


@pytest.mark.parametrize("name", sorted(ode.ALL))
def test_every_problem_has_a_consistent_state_and_solves(name):
    problem = ode.ALL[name]
    args = (ode.neural_net_params(problem.p),) if problem is ode.NEURAL_NET else (problem.p,)
    assert np.shape(problem.f(problem.y0, problem.t[0], *args)) == np.shape(problem.y0)
    assert np.all(np.diff(problem.t) > 0)
    if problem.name not in ("cubic-spiral", "wide-mlp"):  # 1,000 outputs / 33,088 parameters: not here
        assert np.all(np.isfinite(_plain_solve(problem)))


@pytest.mark.parametrize("problem", [ode.DECAY, ode.LINEAR], ids=lambda p: p.name)
def test_closed_forms_solve_their_problems(problem):
    exact = problem.solution(problem.y0, problem.t, problem.p)
    assert relative_error(_plain_solve(problem).reshape(exact.shape), exact) < 1e-8


def test_linear_gradients_match_central_differences_of_the_closed_form():
    A, y0, t = ode.LINEAR.p, ode.LINEAR.y0, ode.LINEAR.t
    G = np.random.default_rng(0).standard_normal((len(t), 3))

    def loss(A_, y0_, t_):
        return float(np.sum(G * ode.linear_solution(y0_, t_, A_)))

    exact = ode.linear_gradients(A, y0, t, G)
    fds = (central_differences(lambda a: loss(a, y0, t), A, step=1e-4),
           central_differences(lambda y: loss(A, y, t), y0, step=1e-4),
           central_differences(lambda s: loss(A, y0, s), t, step=1e-4))
    for e, fd in zip(exact, fds):
        assert relative_error(e, fd) < 1e-9


@pytest.mark.parametrize("problem", [ode.LOTKA_VOLTERRA, ode.ROBERTSON], ids=lambda p: p.name)
def test_hand_written_jacobians_match_autograd(problem):
    for y in (problem.y0 + 0.1, problem.y0 * 0.5 + np.array([0.0, 2e-5, 0.3])[: problem.y0.size]):
        auto = jacobian(lambda z: problem.f(z, 0.0, problem.p))(y)
        assert relative_error(problem.jac(y, 0.0, problem.p), auto) < 1e-14


def test_robertson_dlogk_matches_autograd():
    y = np.array([0.9, 3e-5, 0.1])
    auto = jacobian(lambda lk: ode.robertson(y, 0.0, lk))(ode.ROBERTSON.p)
    assert relative_error(ode.robertson_dlogk(y, ode.K_ROBERTSON), auto) < 1e-14


def test_robertson_sensitivities_match_central_differences_of_plain_solves():
    t, w, atol = np.array([0.0, 1e-2, 0.4]), np.array([1.0, 1e4, 1.0]), np.array([1e-12, 1e-16, 1e-12])

    def plain(log_k):
        return scipy.integrate.odeint(ode.robertson, ode.ROBERTSON.y0, t, args=(log_k,), rtol=1e-12,
                                      atol=atol * 1e-2, mxstep=100000)

    def loss(log_k):
        return float(np.sum(w * plain(log_k)))

    ys, g = ode.robertson_sensitivities(t, ode.ROBERTSON.p, w, atol)
    assert relative_error(ys[:, 1], plain(ode.ROBERTSON.p)[:, 1]) < 1e-8
    assert relative_error(g, central_differences(loss, ode.ROBERTSON.p, step=1e-4, fd_order=2)) < 1e-5


@pytest.mark.parametrize("f, p", [(ode.robertson, ode.ROBERTSON.p), (ode.robertson_rates, ode.K_ROBERTSON),
                                  (ode.chain_kinetics, ode.CHAIN_KINETICS.p),
                                  (ode.cubic_spiral, ode.CUBIC_SPIRAL.p), (ode.spiral_mlp, ode.SPIRAL_MLP.p)],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_namespace_generic_dynamics_agree_across_namespaces(f, p):
    y = np.array([0.9, 3e-2, 0.1])[: 2 if f in (ode.cubic_spiral, ode.spiral_mlp) else 3]
    assert np.array_equal(f(y, 0.3, p, xp=np), f(y, 0.3, p, xp=anp))


def test_landing_time_gradient_matches_central_differences_of_the_event_time():
    problem = ode.PROJECTILE

    def landing(v):
        res = scipy.integrate.solve_ivp(lambda s, y, g: problem.f(y, s, g), (problem.t[0], problem.t[-1]), v[:2],
                                        args=(v[2],), events=ode.projectile_ground, rtol=1e-12, atol=1e-12)
        return res.t_events[0][0]

    x = np.concatenate([problem.y0, [problem.p]])
    assert abs(ode.landing_time(*x) - landing(x)) < 1e-10
    fd = central_differences(landing, x, step=1e-4, fd_order=2)
    assert relative_error(ode.landing_time_gradient(*x), fd) < 1e-6
    assert relative_error(ode.landing_time_gradient(*x), grad(lambda v: ode.landing_time(*v))(x)) < 1e-15
