"""Tests of the CNF experiment: models (experiments/systems/cnf_models.py), resumable training
(experiments/systems/cnf_training.py) and the protocol and figures (experiments/systems/cnf.py)."""

import dataclasses
import json

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad, jacobian, make_vjp, value_and_grad

from experiments.systems import cnf
from experiments.systems import cnf_models as cm
from experiments.systems import cnf_training as ct
from odegrad import odeint

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
M = 3


def linear_field(z, t, a):
    return anp.dot(z, a.T), anp.trace(a) * anp.ones(z.shape[0])


@pytest.fixture
def theta():
    return cm.init_cnf(M, np.random.default_rng(0)) * 2


def reference_dynamics(state, t, theta):
    return cm.augmented_dynamics(lambda z, tt, th: cm.cnf_field(z, tt, th, M))(state, t, theta)


# --- Theorem 1 on a flow with a closed form -------------------------------------------------------


def test_log_density_ode_matches_linear_flow_log_determinant():
    a = np.array([[0.3, -1.2], [0.8, -0.5]])
    t_end = 1.7
    z0 = np.random.default_rng(1).normal(size=(6, 2))
    state = np.concatenate([z0, np.zeros((6, 1))], axis=1)
    out = odeint(cm.augmented_dynamics(linear_field), state, [0.0, t_end], args=(a,), **TIGHT)
    expm = scipy.linalg.expm(a * t_end)
    np.testing.assert_allclose(out[-1, :, :2], z0 @ expm.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(out[-1, :, 2], -np.log(abs(np.linalg.det(expm))), rtol=1e-7)


def test_log_density_gradient_of_linear_flow():
    def change(a):
        state = anp.concatenate([np.ones((2, 2)), np.zeros((2, 1))], axis=1)
        return anp.sum(odeint(cm.augmented_dynamics(linear_field), state, [0.0, 2.0], args=(a,), **TIGHT)[-1, :, 2])

    np.testing.assert_allclose(grad(change)(np.array([[0.1, 0.4], [-0.3, 0.2]])), -4.0 * np.eye(2), atol=1e-6)


# --- the hypernetwork CNF -------------------------------------------------------------------------


def test_exact_trace_equals_trace_of_autograd_jacobian(theta):
    z = np.random.default_rng(2).normal(size=(4, 2))
    for t in (0.0, 0.6):
        _, trace = cm.cnf_field(z, t, theta, M)
        for i in range(4):
            jac = jacobian(lambda x, t=t: cm.cnf_field(x[None], t, theta, M)[0][0])(z[i])
            np.testing.assert_allclose(trace[i], np.trace(jac), rtol=1e-12, atol=1e-14)


def test_every_unit_is_generated_from_time(theta):
    w0, b0, u0 = cm.hypernet(0.0, theta, M)
    w1, b1, u1 = cm.hypernet(0.7, theta, M)
    assert w0.shape == u0.shape == (M, 2) and b0.shape == (M,)
    assert np.all(w0 != w1) and np.all(b0 != b1) and np.all(u0 != u1)
    assert cm.cnf_width(theta) == M and theta.size == cm.cnf_size(M)


@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_hand_written_vjp_equals_autograd(theta, argnum):
    rng = np.random.default_rng(3)
    args = [rng.normal(size=(5, 3)), 0.37, theta]
    g = rng.normal(size=(5, 3))

    def pick(fn):
        return lambda x: fn(*[x if i == argnum else a for i, a in enumerate(args)])

    vjp_ref, value_ref = make_vjp(pick(reference_dynamics))(args[argnum])
    vjp_new, value_new = make_vjp(pick(lambda s, t, th: cm.cnf_dynamics(s, t, th, M)))(args[argnum])
    np.testing.assert_allclose(value_new, value_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(vjp_new(g), vjp_ref(g), rtol=1e-12, atol=1e-14)


def test_loss_gradient_against_central_differences(theta):
    """The adjoint gradient of the reverse KL (through the hand-written VJP) against a tight plain solve."""
    z0 = np.random.default_rng(4).normal(size=(5, 2))
    loss = lambda th: cm.reverse_kl_loss("cnf", th, z0, "U1", TIGHT)  # noqa: E731
    g = grad(loss)(theta)
    v = np.random.default_rng(5).normal(size=theta.size)
    h = 1e-5
    fd = (loss(theta + h * v) - loss(theta - h * v)) / (2 * h)
    assert g @ v == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_change_of_variables_against_flow_jacobian(theta):
    """log q(z_T) from the ODE equals log N(z_0) - log|det dz_T/dz_0| (central differences)."""
    z0 = np.random.default_rng(6).normal(size=(3, 2))
    h = 1e-5
    shifts = [np.zeros(2), h * np.eye(2)[0], -h * np.eye(2)[0], h * np.eye(2)[1], -h * np.eye(2)[1]]
    z_t, logq = cm.cnf_sample(np.concatenate([z0 + s for s in shifts]), theta, tol=TIGHT)
    z_t = z_t.reshape(5, 3, 2)
    jac = np.stack([(z_t[1] - z_t[2]) / (2 * h), (z_t[3] - z_t[4]) / (2 * h)], axis=-1)
    np.testing.assert_allclose(logq[:3], cm.log_normal(z0) - np.log(np.abs(np.linalg.det(jac))), atol=1e-6)


def test_density_of_data_integrates_to_one(theta):
    g = np.linspace(-7, 7, 71)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    logp = cm.cnf_log_density(grid, theta * 1.5)
    assert np.sum(np.exp(logp)) * (g[1] - g[0]) ** 2 == pytest.approx(1, abs=5e-3)


def test_sampling_backwards_inverts_likelihood_direction(theta):
    x = np.random.default_rng(7).normal(size=(5, 2))
    zs, _ = cm.cnf_flow(x, np.zeros(5), theta, [0.0, 1.0], TIGHT)
    back, _ = cm.cnf_flow(zs[-1], np.zeros(5), theta, [1.0, 0.0], TIGHT)
    np.testing.assert_allclose(back[-1], x, atol=1e-7)


def test_wrong_parameter_count_names_the_fix():
    with pytest.raises(ValueError, match="init_cnf"):
        cm.unpack_cnf(np.zeros(10), 2)
    with pytest.raises(ValueError, match="init_nf"):
        cm.unpack_nf(np.zeros(7))
    with pytest.raises(ValueError, match="U1, U2"):
        cm.energy("U9", np.zeros((1, 2)))


# --- the planar NF --------------------------------------------------------------------------------


def test_planar_nf_log_determinant_and_inverse():
    theta = cm.init_nf(4, np.random.default_rng(8)) * 20
    z = np.random.default_rng(9).normal(size=(3, 2))
    x, logdet = cm.nf_forward(z, theta)
    for i in range(3):
        jac = jacobian(lambda v: cm.nf_forward(v[None], theta)[0][0])(z[i])
        np.testing.assert_allclose(logdet[i], np.log(abs(np.linalg.det(jac))), atol=1e-10)
    np.testing.assert_allclose(cm.nf_inverse(np.asarray(x), theta), z, atol=1e-9)


@pytest.mark.parametrize("task", ["kl", "nll"])
def test_hand_written_nf_gradient_equals_autograd(task):
    theta = cm.init_nf(6, np.random.default_rng(10)) * 8
    z = np.random.default_rng(11).normal(size=(40, 2))
    if task == "kl":
        ref = value_and_grad(lambda th: cm.reverse_kl_loss("nf", th, z, "U3"))(theta)
        new = cm.nf_kl_and_grad(theta, z, "U3")
    else:
        ref = value_and_grad(lambda th: -anp.mean(cm.nf_log_density(z, th)))(theta)
        new = cm.nf_nll_and_grad(theta, z)
    assert new[0] == pytest.approx(ref[0], rel=1e-13)
    np.testing.assert_allclose(new[1], ref[1], rtol=1e-11, atol=1e-13)


# --- targets and data -----------------------------------------------------------------------------


def test_log_normalizer_of_confined_sinusoid_energy():
    # U2 is a Gaussian ridge of std 0.4 around z2 = w1(z1), confined to |z1| <= 4 by half-Gaussian
    # walls of std 0.1: Z = 0.4 sqrt(2 pi) * (8 + 2 * 0.1 sqrt(pi / 2)).
    length = 2 * cm.BOX + 2 * cm.WALL * np.sqrt(np.pi / 2)
    assert cm.log_normalizer("U2") == pytest.approx(np.log(0.4 * np.sqrt(2 * np.pi) * length), abs=1e-6)
    assert cm.log_normalizer("U3", lim=8.0, n=800) == pytest.approx(cm.log_normalizer("U3"), abs=1e-9)


@pytest.mark.parametrize("name", ["U2", "U3", "U4"])
def test_confined_targets_are_the_papers_inside_the_box(name):
    z = np.random.default_rng(0).uniform(-cm.BOX, cm.BOX, size=(500, 2))
    np.testing.assert_array_equal(cm.energy(name, z), cm._open_energy(name, z))
    outside = np.stack([np.sign(z[:, 0]) * (cm.BOX + 2 + np.abs(z[:, 0])), z[:, 1]], 1)
    assert np.all(np.asarray(cm.energy(name, outside)) > np.asarray(cm._open_energy(name, outside)) + 100)


def test_checkpoint_of_the_unconfined_target_is_refused(tmp_path):
    fit = ct.Fit("dm", "nf", 1, "U2", 0)
    budget = ct.Budget(nf_iters=4, batch=8, eval_samples=50)
    state = ct.run_fit(fit, budget, tmp_path, log=lambda s: None)
    path = ct.checkpoint_path(tmp_path, fit)
    old = {k: v for k, v in state["budget"].items() if k not in ("box", "wall")}
    arrays = {k: np.load(path)[k] for k in np.load(path).files}
    np.savez(path, **{**arrays, "budget": json.dumps(old)})
    with pytest.raises(ValueError, match="box"):
        ct.run_fit(fit, budget, tmp_path)
    assert ct.load_current(tmp_path, ct.Fit("dm", "nf", 1, "U1", 0), budget) is None


def test_entropy_of_two_circles_against_thin_ring_formula():
    # Disjoint rings of radii 1 and 2, weight 1/2 each, Gaussian radial profile of std s:
    # H = log 2 + (log 2 pi + log 4 pi) / 2 + log(2 pi e s^2) / 2, up to O(s^2) curvature terms.
    s = 0.05
    expected = np.log(2) + 0.5 * (np.log(2 * np.pi) + np.log(4 * np.pi)) + 0.5 * np.log(2 * np.pi * np.e * s * s)
    assert cnf.data_entropy("circles", n=20_000, noise=s) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize("name", ["circles", "moons"])
def test_data_generators(name):
    x = cm.DATASETS[name](1000, np.random.default_rng(0))
    assert x.shape == (1000, 2) and np.all(np.isfinite(x))
    if name == "circles":
        r = np.linalg.norm(x, axis=1)
        assert np.all((np.abs(r - 1) < 0.5) | (np.abs(r - 2) < 0.5))
        assert 0.4 < np.mean(r < 1.5) < 0.6


# --- training, checkpoints, protocol --------------------------------------------------------------

TINY = ct.Budget(cnf_iters=6, nf_iters=6, batch=16, eval_samples=200, train_rtol=1e-4, train_atol=1e-4)


@pytest.mark.parametrize("fit", [ct.Fit("dm", "cnf", 1, "U2", 0), ct.Fit("ml", "nf", 2, "moons", 1)])
def test_resume_equals_uninterrupted_run(fit, tmp_path):
    whole = ct.run_fit(fit, TINY, tmp_path / "whole", every=2, log=lambda s: None)
    part = ct.run_fit(fit, TINY, tmp_path / "cut", every=2, stop_at=3, log=lambda s: None)
    assert not part["done"] and part["step"] == 3 and "adam_m" in part
    resumed = ct.run_fit(fit, TINY, tmp_path / "cut", every=2, log=lambda s: None)
    assert whole["done"] and resumed["done"] and "adam_m" not in resumed
    np.testing.assert_array_equal(resumed["theta"], whole["theta"])
    np.testing.assert_array_equal(resumed["losses"], whole["losses"])
    assert resumed["metrics"]["nll" if fit.task == "ml" else "kl"] == whole["metrics"]["nll" if fit.task == "ml" else "kl"]


def test_training_lowers_the_loss_and_a_budget_change_is_refused(tmp_path):
    fit = ct.Fit("dm", "nf", 2, "U1", 0)
    budget = ct.Budget(nf_iters=300, nf_lr=1e-2, batch=64, eval_samples=200)
    state = ct.run_fit(fit, budget, tmp_path, log=lambda s: None)
    assert np.mean(state["losses"][-30:]) < np.mean(state["losses"][:30]) - 0.3
    with pytest.raises(ValueError, match="delete it"):
        ct.run_fit(fit, ct.Budget(nf_iters=301), tmp_path)
    same = ct.run_fit(fit, dataclasses.replace(budget, train_rtol=1e-6, cnf_iters=5), tmp_path)  # CNF-only fields
    np.testing.assert_array_equal(same["theta"], state["theta"])


def test_bad_fit_names_the_choices():
    with pytest.raises(ValueError, match="circles, moons"):
        ct.Fit("ml", "cnf", 2, "spirals", 0)


def test_quick_run_writes_the_tables_and_figures(tmp_path):
    summary = cnf.main(["run", "--quick", "--out", str(tmp_path)])
    table = json.loads((tmp_path / "figure4.json").read_text())
    assert set(table["U1"]) == {"1", "2"} and set(table["U1"]["1"]) == {"nf", "cnf"}
    assert table["per_seed"]["U1"]["2"]["cnf"]["0"] == table["U1"]["2"]["cnf"]
    assert set(summary["figure5"]["entropy"]) == {"circles", "moons"}
    for name in ("figure4.png", "figure5.png", "figure6.png"):
        assert (tmp_path / name).stat().st_size > 10_000
