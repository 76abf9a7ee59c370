"""Tests of the continuous normalizing flow experiment (experiments/cnf.py)."""

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad, jacobian, value_and_grad

from experiments import cnf
from experiments.paper_utils import Packer
from odegrad import odeint

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def linear_field(z, t, a):
    return anp.dot(z, a.T), anp.trace(a) * anp.ones(z.shape[0])


@pytest.fixture
def params():
    return cnf.init_cnf(5, np.random.default_rng(0))


def test_log_density_ode_matches_linear_flow_log_determinant():
    a = np.array([[0.3, -1.2], [0.8, -0.5]])
    t_end = 1.7
    z0 = np.random.default_rng(1).normal(size=(6, 2))
    state = np.concatenate([z0, np.zeros((6, 1))], axis=1)
    out = odeint(cnf.augmented_dynamics(linear_field), state, [0.0, t_end], args=(a,), **TIGHT)
    np.testing.assert_allclose(out[-1, :, 2], -np.trace(a) * t_end, rtol=1e-8)
    expm = scipy.linalg.expm(a * t_end)
    np.testing.assert_allclose(out[-1, :, :2], z0 @ expm.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(out[-1, 0, 2], -np.log(abs(np.linalg.det(expm))), rtol=1e-7)


def test_log_density_gradient_of_linear_flow():
    def change(a):
        state = anp.concatenate([np.ones((2, 2)), np.zeros((2, 1))], axis=1)
        return anp.sum(odeint(cnf.augmented_dynamics(linear_field), state, [0.0, 2.0],
                              args=(a,), **TIGHT)[-1, :, 2])

    g = grad(change)(np.array([[0.1, 0.4], [-0.3, 0.2]]))
    np.testing.assert_allclose(g, -2 * 2.0 * np.eye(2), atol=1e-6)


def test_planar_cnf_trace_is_exact(params):
    z = np.random.default_rng(2).normal(size=(4, 2))
    for t in (0.0, 0.6):
        _, trace = cnf.cnf_field(z, t, params)
        for i in range(4):
            jac = jacobian(lambda x, t=t: cnf.cnf_field(x[None], t, params)[0][0])(z[i])
            np.testing.assert_allclose(trace[i], np.trace(jac), rtol=1e-10, atol=1e-12)


def test_change_of_variables_against_flow_jacobian(params):
    """log q(z_T) from the ODE equals log N(z_0) - log|det dz_T/dz_0| (finite differences)."""
    z0 = np.random.default_rng(3).normal(size=(3, 2))
    h = 1e-5
    shifts = [np.zeros(2), h * np.eye(2)[0], -h * np.eye(2)[0], h * np.eye(2)[1], -h * np.eye(2)[1]]
    batch = np.concatenate([z0 + s for s in shifts])
    z_t, logq = cnf.cnf_sample_forward(batch, params, **TIGHT)
    z_t = z_t.reshape(5, 3, 2)
    jac = np.stack([(z_t[1] - z_t[2]) / (2 * h), (z_t[3] - z_t[4]) / (2 * h)], axis=-1)
    expected = cnf.log_normal(z0) - np.log(np.abs(np.linalg.det(jac)))
    np.testing.assert_allclose(logq[:3], expected, atol=1e-6)


def test_change_of_variables_monte_carlo(params):
    """E_q[phi(x) / q(x)] = 1 for a density phi, with q the ODE-tracked density of samples."""
    z0 = np.random.default_rng(4).normal(size=(20000, 2))
    x, logq = cnf.cnf_sample_forward(z0, params)
    log_phi = -0.5 * np.sum((x / 0.8) ** 2, axis=1) - np.log(2 * np.pi * 0.64)
    w = np.exp(log_phi - logq)
    assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(len(w)) + 1e-3


def test_density_of_data_integrates_to_one(params):
    g = np.linspace(-7, 7, 71)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    logp = cnf.cnf_log_density(grid, params)
    assert abs(np.sum(np.exp(logp)) * (g[1] - g[0]) ** 2 - 1) < 0.01


def test_sampling_backwards_inverts_likelihood_direction(params):
    x = np.random.default_rng(5).normal(size=(5, 2))
    zs, deltas = cnf.cnf_flow(x, np.zeros(5), params, np.array([0.0, 1.0]), **TIGHT)
    back, _ = cnf.cnf_flow(zs[-1], np.zeros(5), params, np.array([1.0, 0.0]), **TIGHT)
    np.testing.assert_allclose(back[-1], x, atol=1e-7)


def test_model_shapes(params):
    z = np.zeros((7, 2))
    f, trace = cnf.cnf_field(z, 0.3, params)
    assert f.shape == (7, 2) and trace.shape == (7,)
    assert cnf.cnf_gate(0.3, params).shape == (5,)
    zs, logps = cnf.cnf_flow(z, np.zeros(7), params, np.linspace(0, 1, 4))
    assert zs.shape == (4, 7, 2) and logps.shape == (4, 7)
    p_nf = cnf.init_nf(3, np.random.default_rng(0))
    zk, logdet = cnf.nf_forward(z, p_nf)
    assert zk.shape == (7, 2) and logdet.shape == (7,)
    for name in ("U1", "U2", "U3", "U4"):
        assert cnf.energy(name, np.zeros((3, 4, 2))).shape == (3, 4)


def test_planar_nf_log_determinant():
    p = cnf.init_nf(4, np.random.default_rng(6))
    p["u"] = p["u"] * 20
    z = np.random.default_rng(7).normal(size=(3, 2))
    _, logdet = cnf.nf_forward(z, p)
    for i in range(3):
        jac = jacobian(lambda x: cnf.nf_forward(x[None], p)[0][0])(z[i])
        np.testing.assert_allclose(logdet[i], np.log(abs(np.linalg.det(jac))), atol=1e-10)


def test_log_normalizer_of_sinusoid_energy():
    # U2 is a Gaussian ridge of std 0.4 around z2 = w1(z1): Z = 0.4 sqrt(2 pi) * 12 on [-6, 6]^2.
    assert cnf.log_normalizer("U2") == pytest.approx(np.log(0.4 * np.sqrt(2 * np.pi) * 12), abs=1e-6)


@pytest.mark.parametrize("name", ["circles", "moons"])
def test_data_generators(name):
    x = cnf.DATASETS[name](1000, np.random.default_rng(0))
    assert x.shape == (1000, 2) and np.all(np.isfinite(x))
    if name == "circles":
        r = np.linalg.norm(x, axis=1)
        assert np.all((np.abs(r - 1) < 0.5) | (np.abs(r - 2) < 0.5))
        assert 0.4 < np.mean(r < 1.5) < 0.6
    else:
        assert np.all(np.abs(x.mean(0)) < 0.2)


@pytest.mark.parametrize("model", ["cnf", "nf"])
def test_one_density_matching_step_lowers_loss(model):
    rng = np.random.default_rng(8)
    p0 = cnf.init_cnf(4, rng) if model == "cnf" else cnf.init_nf(4, rng)
    packer = Packer(p0)
    z0 = rng.normal(size=(64, 2))
    f = lambda flat: cnf.reverse_kl_loss(model, packer.unpack(flat), z0, "U2")  # noqa: E731
    flat = packer.pack(p0)
    loss, g = value_and_grad(f)(flat)
    assert np.all(np.isfinite(g)) and np.linalg.norm(g) > 0
    assert f(flat - 1e-3 * g / np.linalg.norm(g)) < loss


def test_one_maximum_likelihood_step_lowers_loss():
    rng = np.random.default_rng(9)
    p0 = cnf.init_cnf(4, rng)
    packer = Packer(p0)
    x = cnf.sample_moons(64, rng)
    f = lambda flat: -anp.mean(cnf.cnf_log_density(x, packer.unpack(flat)))  # noqa: E731
    flat = packer.pack(p0)
    loss, g = value_and_grad(f)(flat)
    assert f(flat - 1e-3 * g / np.linalg.norm(g)) < loss
    p, losses = cnf.fit_likelihood(cnf.sample_moons, 4, 2, 32, 1e-2)
    assert len(losses) == 2 and set(p) == set(p0)
