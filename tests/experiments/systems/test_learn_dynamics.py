"""Tests of the learned-dynamics experiment (experiments/systems/learn_dynamics.py)."""

import numpy as np
import pytest
import scipy.linalg
from autograd import value_and_grad

from experiments.systems import learn_dynamics as ld
from experiments.systems.common import Packer
from odegrad import odeint


@pytest.fixture(scope="module")
def systems():
    return {s.name: s for s in ld.make_systems()}


def test_five_systems(systems):
    assert set(systems) == {"linear_spiral", "cubic_spiral", "random_linear", "lotka_volterra",
                            "damped_pendulum"}
    for s in systems.values():
        assert s.rhs(s.y0, 0.0).shape == (2,)
        assert s.rhs(np.ones((3, 2)), 0.0).shape == (3, 2)


def test_linear_spiral_matches_matrix_exponential(systems):
    t, y = ld.simulate(systems["linear_spiral"])
    assert y.shape == (400, 2)
    # y' = y A for a row vector y, so y(t) = y0 expm(A t).
    expected = np.stack([np.array([2.0, 0.0]) @ scipy.linalg.expm(ld.SPIRAL_A * tt) for tt in t[::50]])
    np.testing.assert_allclose(y[::50], expected, atol=1e-7)


def test_random_linear_system_is_stable():
    a = ld.random_stable_matrix(3)
    assert np.max(np.linalg.eigvals(a).real) == pytest.approx(-0.1)


def test_lotka_volterra_conserves_its_invariant(systems):
    _, y = ld.simulate(systems["lotka_volterra"])
    x, p = y[:, 0], y[:, 1]
    invariant = x - 3.0 * np.log(x) + p - 1.5 * np.log(p)
    assert np.ptp(invariant) < 1e-7
    assert np.all(y > 0)


def test_pendulum_energy_decreases(systems):
    _, y = ld.simulate(systems["damped_pendulum"])
    energy = 0.5 * y[:, 1] ** 2 - np.cos(y[:, 0])
    assert np.all(np.diff(energy) <= 1e-9) and energy[-1] < energy[0] - 1


def test_model_shapes_and_one_training_step(systems):
    p0 = ld.init_model(np.random.default_rng(0), hidden=16)
    assert ld.model_rhs(np.zeros((5, 2)), 0.0, p0, 0.0, 1.0, False).shape == (5, 2)
    t, y = ld.simulate(systems["cubic_spiral"])
    packer = Packer(p0)

    def loss(flat):
        pred = odeint(ld.model_rhs, y[[0, 100, 200]], t[:8], args=(packer.unpack(flat), 0.0, 1.0, True),
                      rtol=1e-6, atol=1e-6, method="adams")
        return np.mean((pred - y[np.array([0, 100, 200])[None, :] + np.arange(8)[:, None]]) ** 2)

    flat = packer.pack(p0)
    value, g = value_and_grad(loss)(flat)
    assert np.linalg.norm(g) > 0
    assert loss(flat - 1e-3 * g / np.linalg.norm(g)) < value


def test_fit_system_runs(systems):
    res = ld.fit_system(systems["random_linear"], iters=3, batch_size=4, batch_time=5, hidden=8)
    assert res["y_pred"].shape == res["y_true"].shape == (400, 2)
    assert np.isfinite(res["rmse"]) and len(res["losses"]) == 3
