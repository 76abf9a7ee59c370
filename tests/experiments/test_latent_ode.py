"""Tests of the latent ODE experiment (experiments/latent_ode.py)."""

import numpy as np
import pytest
from autograd import grad, value_and_grad

from experiments import latent_ode as lo
from experiments.paper_utils import Packer


@pytest.fixture(scope="module")
def data():
    return lo.make_spirals(40, n_window=20, noise=0.1, seed=1)


def test_spiral_generator(data):
    t, truth, noisy, direction = data["t"], data["truth"], data["noisy"], data["direction"]
    assert t.shape == (40,) and truth.shape == noisy.shape == (40, 40, 2)
    np.testing.assert_allclose(np.diff(t), t[1] - t[0])
    assert np.sum(direction < 0) == np.sum(direction > 0) == 20
    # Rotation sense: sign of the cross product of consecutive points follows the direction.
    cross = truth[:, :-1, 0] * truth[:, 1:, 1] - truth[:, :-1, 1] * truth[:, 1:, 0]
    assert np.all(np.sign(cross) == direction[:, None])
    radius = np.linalg.norm(truth, axis=-1)
    np.testing.assert_allclose(radius[:, -1] / radius[:, 0], np.exp(-0.1 * t[-1]))
    assert 0.08 < np.std(noisy - truth) < 0.12
    starts = truth[:, 0]
    assert np.std(np.arctan2(starts[:, 1], starts[:, 0])) > 1.0


def test_subsample_without_replacement():
    idx = lo.subsample(10, 100, 30, seed=0)
    assert idx.shape == (10, 30)
    assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0 and idx.max() < 100
    assert not np.array_equal(idx[0], idx[1])


def test_event_generator():
    events, phases = lo.make_events(n_seq=3, t_end=10.0, seed=0)
    assert len(events) == len(phases) == 3
    for ev, ph in zip(events, phases):
        assert np.all(np.diff(ev) > 0) and ev.min() >= 0 and ev.max() <= 10
        grid = np.linspace(0, 10, 2001)
        expected = np.trapezoid(lo.true_intensity(grid, ph), grid)
        assert abs(len(ev) - expected) < 5 * np.sqrt(expected)


def test_latent_ode_shapes(data):
    p = lo.init_latent_ode(np.random.default_rng(0))
    idx = lo.subsample(40, 20, 7)
    x, t = lo.batch_data(data, idx, np.arange(5))
    assert x.shape == (5, 7, 2) and t.shape == (5, 7)
    mean, logvar = lo.encode(x, t, p)
    assert mean.shape == logvar.shape == (5, lo.LATENT)
    x_hat, z = lo.latent_ode_predict(p, x, t, data["t"])
    assert x_hat.shape == (5, 40, 2) and z.shape == (5, 40, lo.LATENT)
    loss = lo.latent_ode_loss(p, x, t, np.zeros((5, lo.LATENT)))
    assert np.ndim(loss) == 0 and np.isfinite(loss)


def test_latent_ode_loss_gathers_each_trajectory_at_its_own_times(data):
    """The batched solve on the union of times equals per-trajectory evaluation."""
    p = lo.init_latent_ode(np.random.default_rng(0))
    idx = lo.subsample(40, 20, 5)
    x, t = lo.batch_data(data, idx, np.arange(3))
    eps = np.random.default_rng(1).normal(size=(3, lo.LATENT))
    batched = lo.latent_ode_loss(p, x, t, eps) * x.size
    single = sum(lo.latent_ode_loss(p, x[i:i + 1], t[i:i + 1], eps[i:i + 1]) * x[i].size
                 for i in range(3))
    # The encoder is per-trajectory too, so the batch loss is the sum of the single losses.
    assert batched == pytest.approx(single, rel=1e-3)


def _step_lowers(loss_fn, p0):
    packer = Packer(p0)
    flat = packer.pack(p0)
    f = lambda v: loss_fn(packer.unpack(v))  # noqa: E731
    value, g = value_and_grad(f)(flat)
    assert np.all(np.isfinite(g)) and np.linalg.norm(g) > 0
    assert f(flat - 1e-3 * g / np.linalg.norm(g)) < value


def test_one_latent_ode_training_step(data):
    idx = lo.subsample(40, 20, 6)
    x, t = lo.batch_data(data, idx, np.arange(6))
    eps = np.random.default_rng(2).normal(size=(6, lo.LATENT))
    _step_lowers(lambda p: lo.latent_ode_loss(p, x, t, eps), lo.init_latent_ode(np.random.default_rng(3)))


@pytest.mark.parametrize("time_gap", [False, True])
def test_rnn_baseline_step_and_shapes(data, time_gap):
    idx = lo.subsample(40, 20, 6)
    x, t = lo.batch_data(data, idx, np.arange(6))
    p0 = lo.init_rnn(np.random.default_rng(4), time_gap)
    _step_lowers(lambda p: lo.rnn_loss(p, x, t, time_gap), p0)
    recon, preds = lo.rnn_predict(p0, x, t, data["t"][20:], time_gap)
    assert recon.shape == (6, 5, 2) and preds.shape == (6, 20, 2)


def test_poisson_loglik_with_constant_rate_is_exact():
    """Zero dynamics and lambda = exp(c): log p = n c - exp(c) T, and d/dc = n - exp(c) T."""
    p = lo.init_poisson(np.random.default_rng(0), 2)
    for k in ("f2", "fb2", "v"):
        p[k] = np.zeros_like(p[k])
    p["c"] = np.array([0.4])
    events = [np.array([0.5, 1.5, 4.0]), np.array([2.0, 3.0])]
    value = lo.poisson_loglik(p, events, 5.0)
    assert value == pytest.approx(5 * 0.4 - 2 * np.exp(0.4) * 5.0, rel=1e-6)
    dc = grad(lambda c: lo.poisson_loglik({**p, "c": c}, events, 5.0))(p["c"])
    assert dc[0] == pytest.approx(5 - 2 * np.exp(0.4) * 5.0, rel=1e-5)


def test_poisson_integral_in_same_solve():
    """The cumulative intensity component equals the quadrature of lambda(z(t))."""
    p = lo.init_poisson(np.random.default_rng(5), 3)
    grid = np.linspace(0, 4, 401)
    path = np.asarray(lo.poisson_path(p, grid, rtol=1e-9, atol=1e-9))
    lam = np.asarray(lo.intensity(path[:, :, :-1], p))
    np.testing.assert_allclose(path[-1, :, -1], np.trapezoid(lam, grid, axis=0), rtol=1e-4)


def test_one_poisson_training_step():
    events, _ = lo.make_events(n_seq=2, t_end=3.0, seed=1)
    _step_lowers(lambda p: -lo.poisson_loglik(p, events, 3.0),
                 lo.init_poisson(np.random.default_rng(6), 2))
