"""Tests of the latent ODE experiment (experiments/systems/latent_ode.py, latent_ode_data.py, latent_ode_plots.py)."""

import functools
import json

import numpy as np
import pytest
from autograd import grad, value_and_grad
from scipy.integrate import solve_ivp

from experiments.systems import latent_ode as lo
from experiments.systems import latent_ode_data as ld
from experiments.systems.common import Packer, cosine_lr
from experiments.systems.latent_ode_plots import linear_probe
from odegrad import compiled, odeint
from odegrad.gradcheck import central_differences, relative_error
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, TOL


@pytest.fixture(scope="module")
def data():
    return ld.make_spirals(40, seed=1)


def test_spirals_follow_the_authors_closed_form(data):
    """Counter-clockwise: r = 0.3 theta about (5, 0) at angle theta; clockwise: r = 15 / z about
    (-5, 0) at angle z = 6 pi + 1 - theta; theta on 500 equal steps of [0, 6 pi]."""
    step = 6 * np.pi / 499
    np.testing.assert_allclose(data["t"], step * np.arange(200), atol=1e-12)
    assert np.all((data["start"] >= 100) & (data["start"] < 400))
    idx = data["start"][:, None] + np.arange(200)
    theta = step * idx
    ccw = data["direction"] > 0
    assert 0 < ccw.sum() < len(ccw)
    on = idx <= 499
    for sign, mask, angle, radius in ((1.0, ccw, theta, 0.3 * theta), (-1.0, ~ccw, 6 * np.pi + 1 - theta,
                                                                           0.3 * 50 / (6 * np.pi + 1 - theta))):
        rel = data["truth"][mask][on[mask]] - np.array([sign * 5.0, 0.0])
        np.testing.assert_allclose(np.hypot(rel[..., 0], rel[..., 1]), radius[mask][on[mask]], rtol=1e-12)
        turn = np.angle(np.exp(1j * (np.arctan2(rel[..., 1], rel[..., 0]) - angle[mask][on[mask]])))
        np.testing.assert_allclose(turn, 0.0, atol=1e-9)
    assert np.all(np.isnan(data["truth"][~on]))


def test_windows_cover_the_curve_and_test_extrapolations_stay_on_it():
    """The authors' starts [100, 400): the training windows observe the curve from index 100 to 498,
    so the 100 points after each test window (start <= 300, the only ones with 100 points left)
    lie where some training window has observed the curve: all but the curve's last point (499),
    one step past the last window point (399 + 99), as in the authors' generator."""
    big = ld.make_spirals(1000, seed=0)
    train, test = ld.split(1000, 800, 0, big["extrapolable"])
    np.testing.assert_array_equal(big["extrapolable"], big["start"] <= 300)
    assert big["start"].min() == 100 and big["start"].max() == 399
    assert np.all(big["start"][test] <= 300) and np.all(np.isfinite(big["truth"][test]))
    for sign in (1.0, -1.0):
        rows = train[big["direction"][train] == sign]
        seen = np.unique(big["start"][rows][:, None] + np.arange(100))
        wanted = np.unique(big["start"][test][big["direction"][test] == sign][:, None] + np.arange(100, 200))
        assert seen.max() == 498
        assert np.isin(wanted, np.append(seen, 499)).all()


def test_observations_are_the_window_plus_noise_of_std_0_3(data):
    noise = data["noisy"] - data["truth"][:, :100]
    assert data["noisy"].shape == (40, 100, 2)
    # 8,000 draws: the sample std of N(0, 0.3^2) lies within 0.3 * (1 +- 4 / sqrt(2 * 8000)).
    assert abs(np.std(noise) - 0.3) < 0.3 * 4 / np.sqrt(16000)
    assert abs(np.mean(noise)) < 4 * 0.3 / np.sqrt(8000)


def test_spirals_turn_in_their_direction(data):
    centre = np.stack([5.0 * data["direction"], np.zeros(40)], 1)[:, None]
    rel = data["truth"] - centre
    cross = rel[:, :-1, 0] * rel[:, 1:, 1] - rel[:, :-1, 1] * rel[:, 1:, 0]
    on = np.isfinite(cross)
    assert on.mean() > 0.8
    assert np.all(np.sign(cross)[on] == np.broadcast_to(data["direction"][:, None], cross.shape)[on])


def test_generator_and_subsampling_reject_impossible_sizes():
    with pytest.raises(ValueError, match="n_total"):
        ld.make_spirals(4, n_total=250, n_window=100)
    with pytest.raises(ValueError, match="n_obs"):
        ld.subsample(3, 100, 101)
    with pytest.raises(ValueError, match="n_train"):
        ld.split(10, 10, 0)


def test_subsample_draws_without_replacement():
    idx = ld.subsample(10, 100, 30, seed=0)
    assert idx.shape == (10, 30)
    assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0 and idx.max() < 100
    assert not np.array_equal(idx[0], idx[1])
    np.testing.assert_array_equal(ld.subsample(3, 100, 100), np.tile(np.arange(100), (3, 1)))


def test_split_is_a_partition():
    train, test = ld.split(50, 40, 3)
    assert len(train) == 40 and len(test) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(50))


def test_split_draws_test_rows_from_the_testable_ones_only():
    testable = np.arange(50) % 3 == 0
    train, test = ld.split(50, 40, 3, testable)
    assert len(train) == 40 and len(test) == 10 and testable[test].all()
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(50))
    with pytest.raises(ValueError, match="only 17 of 50 spirals can be test spirals"):
        ld.split(50, 30, 3, testable)


def test_event_generator():
    events, phases = ld.make_events(n_seq=3, t_end=10.0, seed=0)
    assert len(events) == len(phases) == 3
    for ev, ph in zip(events, phases):
        assert np.all(np.diff(ev) > 0) and ev.min() >= 0 and ev.max() <= 10
        grid = np.linspace(0, 10, 2001)
        expected = np.trapezoid(ld.true_intensity(grid, ph), grid)
        assert abs(len(ev) - expected) < 5 * np.sqrt(expected)


def test_latent_ode_shapes(data):
    p = lo.init_latent_ode(np.random.default_rng(0))
    idx = ld.subsample(40, 100, 7)
    x, t = ld.batch_data(data, idx, np.arange(5))
    assert x.shape == (5, 7, 2) and t.shape == (5, 7)
    mean, logvar = lo.encode(x, t, p)
    assert mean.shape == logvar.shape == (5, lo.LATENT)
    x_hat, z = lo.latent_ode_predict(p, x, t, data["t"])
    assert x_hat.shape == (5, 200, 2) and z.shape == (5, 200, lo.LATENT)
    loss = lo.latent_ode_loss(p, x, t, np.zeros((5, lo.LATENT)))
    assert np.ndim(loss) == 0 and np.isfinite(loss)


def test_latent_ode_loss_gathers_each_trajectory_at_its_own_times(data):
    """The batched solve on the union of times equals per-trajectory evaluation."""
    p = lo.init_latent_ode(np.random.default_rng(0))
    idx = ld.subsample(40, 100, 5)
    x, t = ld.batch_data(data, idx, np.arange(3))
    eps = np.random.default_rng(1).normal(size=(3, lo.LATENT))
    batched = lo.latent_ode_loss(p, x, t, eps) * x.size
    single = sum(lo.latent_ode_loss(p, x[i:i + 1], t[i:i + 1], eps[i:i + 1]) * x[i].size for i in range(3))
    # Solver tolerance rtol=1e-4 on each path: the sums agree to about that.
    assert batched == pytest.approx(single, rel=1e-3)


def _step_lowers(loss_fn, p0):
    packer = Packer(p0)
    flat = packer.pack(p0)
    f = lambda v: loss_fn(packer.unpack(v))  # noqa: E731
    value, g = value_and_grad(f)(flat)
    assert np.all(np.isfinite(g)) and np.linalg.norm(g) > 0
    assert f(flat - 1e-3 * g / np.linalg.norm(g)) < value


def test_one_latent_ode_training_step(data):
    x, t = ld.batch_data(data, ld.subsample(40, 100, 6), np.arange(6))
    eps = np.random.default_rng(2).normal(size=(6, lo.LATENT))
    _step_lowers(lambda p: lo.latent_ode_loss(p, x, t, eps), lo.init_latent_ode(np.random.default_rng(3)))


def test_elu_is_exact_on_both_sides_of_zero():
    a = np.array([-30.0, -1.5, -1e-12, 0.0, 1e-300, 1e-12, 0.7, 40.0])
    np.testing.assert_array_equal(lo._elu(a), np.where(a > 0, a, np.expm1(a)))
    assert grad(lambda s: lo._elu(s))(0.0) == 1.0 and grad(lambda s: lo._elu(s))(-2.0) == np.exp(-2.0)


@pytest.mark.skipif(compiled.unavailable() is not None, reason="JAX is not installed")
def test_latent_dynamics_gradients_are_compiled_and_match_autograd(monkeypatch):
    """The adjoint's derivative evaluations of the latent dynamics run compiled (no value-dependent
    operation in the trace) and give autograd's gradient to rounding."""
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 0)
    rng = np.random.default_rng(5)
    p = lo.init_latent_ode(rng)
    q = {k: p[k] for k in ("f1", "fb1", "f2", "fb2")}
    z0, g = rng.normal(size=(6, lo.LATENT)), rng.normal(size=(4, 6, lo.LATENT))
    times = np.array([0.0, 0.3, 1.1, 2.0])
    info = []

    def loss(z, q):
        zs, out = odeint(lo.latent_dynamics, z, times, args=(q,), full_output=True, **lo.TRAIN_TOL)
        info.append(out["odegrad"])
        return np.sum(zs * g)

    gz, gq = grad(loss, argnum=(0, 1))(z0, q)
    with compiled.disabled():
        hz, hq = grad(loss, argnum=(0, 1))(z0, q)
    assert info[0].derivatives == "jax" and info[-1].derivatives == "autograd"
    np.testing.assert_allclose(gz, hz, rtol=1e-10, atol=1e-12)
    for k in q:
        np.testing.assert_allclose(gq[k], hq[k], rtol=1e-10, atol=1e-12)


@functools.lru_cache(maxsize=1)
def _latent_case():
    """Latent dynamics, a batch of 3 states, a cotangent, and the finite differences (with respect to
    ``z0``, ``f2`` and ``fb2``) of ``sum(z(t) * g)`` from a plain SciPy solve (DOP853 at
    FD_SOLVE_TOL; no odegrad)."""
    rng = np.random.default_rng(6)
    p = lo.init_latent_ode(rng)
    q = {k: p[k] for k in ("f1", "fb1", "f2", "fb2")}
    z0, g = rng.normal(size=(3, lo.LATENT)), rng.normal(size=(4, 3, lo.LATENT))
    times = np.array([0.0, 0.3, 1.1, 2.0])

    def plain(z, f2, fb2):
        qq = {**q, "f2": f2.reshape(q["f2"].shape), "fb2": fb2}
        sol = solve_ivp(lambda t, y: np.asarray(lo.latent_dynamics(y.reshape(z0.shape), t, qq)).ravel(),
                        (times[0], times[-1]), z.ravel(), method="DOP853", t_eval=times,
                        rtol=FD_SOLVE_TOL, atol=FD_SOLVE_TOL)
        return float(np.sum(sol.y.T.reshape(g.shape) * g))

    ref = (central_differences(lambda z: plain(z, q["f2"], q["fb2"]), z0.ravel(), **FD),
           central_differences(lambda f2: plain(z0, f2, q["fb2"]), q["f2"].ravel(), **FD),
           central_differences(lambda fb2: plain(z0, q["f2"], fb2), q["fb2"], **FD))
    return q, z0, g, times, ref


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("adjoint, seminorm", [("checkpoint", True), ("backsolve", True), ("interpolate", False),
                                               ("checkpoint", False), ("forward", False), ("auto", True)])
def test_latent_dynamics_gradient_matches_finite_differences_of_a_plain_scipy_solve(adjoint, seminorm, scale,
                                                                                    monkeypatch):
    """The ELU dynamics' gradient (compiled where JAX is installed) against the truth, at loss scales
    far from 1 and with the training's seminorm adjoint as well as the other gradient methods."""
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 0)
    q, z0, g, times, ref = _latent_case()

    def loss(z, f2, fb2):
        zs = odeint(lo.latent_dynamics, z, times, args=({**q, "f2": f2, "fb2": fb2},), rtol=TOL, atol=TOL,
                    method="adams", adjoint=adjoint, adjoint_seminorm=seminorm)
        return scale * np.sum(zs * g)

    found = grad(loss, argnum=(0, 1, 2))(z0, q["f2"], q["fb2"])
    for got, want in zip(found, ref):
        assert relative_error(np.ravel(got) / scale, want) < FD_RTOL


def test_rnn_baseline_step_and_shapes(data):
    x, t = ld.batch_data(data, ld.subsample(40, 100, 6), np.arange(6))
    p0 = lo.init_rnn(np.random.default_rng(4))
    _step_lowers(lambda p: lo.rnn_loss(p, x, t), p0)
    recon, preds = lo.rnn_predict(p0, x, t, data["t"][100:])
    assert recon.shape == (6, 5, 2) and preds.shape == (6, 100, 2)


def test_rnn_extrapolation_of_a_perfect_predictor_is_exact():
    """With zero output weights and a zero bias the RNN predicts 'no change': its extrapolation
    repeats the last observation exactly."""
    p = {k: np.zeros_like(v) for k, v in lo.init_rnn(np.random.default_rng(0)).items()}
    x = np.random.default_rng(1).normal(size=(3, 4, 2))
    _, preds = lo.rnn_predict(p, x, np.tile(np.arange(4.0), (3, 1)), np.arange(4.0, 9.0))
    np.testing.assert_array_equal(preds, np.repeat(x[:, -1:], 5, axis=1))


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


def test_linear_probe_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    w_true = np.array([0.5, -1.0, 0.0, 2.0])
    z = rng.normal(size=(300, 4))
    w, corr = linear_probe(z[:200], z[:200] @ w_true + 0.3, z[200:], z[200:] @ w_true + 0.3)
    np.testing.assert_allclose(w, w_true, atol=1e-12)
    assert corr == pytest.approx(1.0, abs=1e-12)


def _noisy_quadratic(x, rng):
    target = np.arange(len(x), dtype=float)
    noise = rng.normal(size=len(x))
    return float(np.sum((x - target) ** 2)), 2 * (x - target) + noise


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    meta = {"seed": 4, "model": "toy"}
    full = ld.train_resumable(_noisy_quadratic, np.zeros(3), 9, 0.1, tmp_path / "a.npz", meta, every=2)
    calls = []

    def dies_at_step_6(x, rng):
        if len(calls) == 6:
            raise KeyboardInterrupt
        calls.append(1)
        return _noisy_quadratic(x, rng)

    with pytest.raises(KeyboardInterrupt):
        ld.train_resumable(dies_at_step_6, np.zeros(3), 9, 0.1, tmp_path / "b.npz", meta, every=2)
    assert ld.load_checkpoint(tmp_path / "b.npz")["step"] == 6
    resumed = ld.train_resumable(_noisy_quadratic, np.ones(3), 9, 0.1, tmp_path / "b.npz", meta, every=2)
    np.testing.assert_array_equal(resumed["x"], full["x"])
    assert resumed["losses"] == full["losses"] and resumed["step"] == 9
    with pytest.raises(ld.RunCheckpointError, match="another run"):
        ld.train_resumable(_noisy_quadratic, np.zeros(3), 9, 0.1, tmp_path / "b.npz", {**meta, "seed": 5})
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ld.RunCheckpointError, match="cannot be read"):
        ld.load_checkpoint(tmp_path / "c.npz")


def test_a_scheduled_run_interrupted_anywhere_resumes_to_the_uninterrupted_result(tmp_path):
    assert [cosine_lr(0.1, k, 4) for k in (0, 2, 4)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-17)
    schedule = functools.partial(cosine_lr, 0.1, steps=9)
    steps = []
    full = ld.train_resumable(_noisy_quadratic, np.zeros(3), 9, 0.1, tmp_path / "a.npz", {"seed": 1}, every=2,
                              schedule=lambda k: steps.append(k) or schedule(k))
    assert steps == list(range(9))
    ld.train_resumable(_noisy_quadratic, np.zeros(3), 9, 0.1, tmp_path / "b.npz", {"seed": 1}, every=2,
                       schedule=schedule, stop_at=5)
    assert ld.load_checkpoint(tmp_path / "b.npz")["step"] == 5
    resumed = ld.train_resumable(_noisy_quadratic, np.ones(3), 9, 0.1, tmp_path / "b.npz", {"seed": 1}, every=2,
                                 schedule=schedule)
    np.testing.assert_array_equal(resumed["x"], full["x"])
    constant = ld.train_resumable(_noisy_quadratic, np.zeros(3), 9, 0.1, tmp_path / "c.npz", {"seed": 1}, every=2)
    assert not np.array_equal(constant["x"], full["x"])


def test_a_run_refuses_an_unknown_schedule_and_a_checkpoint_of_another_schedule(tmp_path):
    small = ld.make_spirals(12, seed=2)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lo.Run("rnn", small, 5, 0, 8, 0.01, tmp_path, schedule="step")
    lo.Run("rnn", small, 5, 0, 8, 0.01, tmp_path, iters=2, schedule="constant").train(every=1)
    with pytest.raises(ld.RunCheckpointError, match="another run"):
        lo.Run("rnn", small, 5, 0, 8, 0.01, tmp_path, iters=2).train(every=1)


def test_latent_ode_run_resumed_equals_uninterrupted(tmp_path):
    small = ld.make_spirals(12, seed=2)
    runs = [lo.Run("latent_ode", small, 5, 0, 8, 0.01, tmp_path / name, iters=3) for name in ("a", "b", "b")]
    full = runs[0].train(every=1)
    runs[1].train(every=1, stop_at=2)
    resumed = runs[2].train(every=1)
    np.testing.assert_array_equal(resumed["x"], full["x"])
    assert resumed["losses"] == full["losses"]


def test_quick_command_writes_table2_protocol_and_figures(tmp_path):
    protocol = lo.main(["--quick", "--out", str(tmp_path)])
    table = json.loads((tmp_path / "table2.json").read_text())
    assert set(table) == {"latent_ode", "rnn"} and all(len(table[m]["30"]) == 1 for m in table)
    assert all(r["status"] == "finished" for r in protocol["runs"])
    assert protocol["command"].startswith("python -m experiments.systems.latent_ode --seeds 0 --n-obs 30 --iters 4")
    saved = json.loads((tmp_path / "table2_protocol.json").read_text())
    assert saved["poisson_fig7"]["steps"] == 4 and "probe_test_corr_with_direction" in saved["figures_8_9"]
    for name in ("fig7_poisson.png", "fig8_spirals.png", "fig9_latent_direction.png"):
        assert (tmp_path / name).stat().st_size > 0
    again = lo.main(["--quick", "--report-only", "--out", str(tmp_path)])
    assert again["mean_rmse"] == protocol["mean_rmse"]


def test_rmse_is_measured_against_the_noise_free_extrapolation(tmp_path, monkeypatch):
    """A prediction off by 0.5 in x on the clockwise test spirals only, exact elsewhere."""
    run = lo.Run("rnn", ld.make_spirals(30, seed=3), 10, 0, 20, 0.01, tmp_path)
    truth = run.data["truth"][run.test_rows, 100:]
    cw = run.data["direction"][run.test_rows] < 0
    monkeypatch.setattr(run, "predict", lambda flat: {"extrapolation": truth + 0.5 * np.array([1.0, 0.0]) * cw[:, None, None]})
    errors = run.rmse(None)
    assert errors["clockwise"] == pytest.approx(0.5 / np.sqrt(2)) and errors["counter_clockwise"] == 0.0
    assert errors["all"] == pytest.approx(0.5 / np.sqrt(2) * np.sqrt(cw.mean()))
    assert set(errors["by_horizon"]) == {"1", "10", "25", "50", "100"} and "reconstruction" not in errors
    assert errors["by_horizon"]["50"] == pytest.approx(errors["all"])


def test_latent_ode_reconstruction_and_horizon_errors(tmp_path, monkeypatch):
    """The latent ODE's reconstruction RMSE is over the observed window, each horizon's over its point."""
    run = lo.Run("latent_ode", ld.make_spirals(30, seed=3), 10, 0, 20, 0.01, tmp_path)
    truth = run.data["truth"][run.test_rows]
    ramp = np.linspace(0.01, 1.0, 100)[None, :, None] * np.ones((1, 1, 2))
    monkeypatch.setattr(run, "predict", lambda flat: {"extrapolation": truth[:, 100:] + ramp,
                                                      "reconstruction": truth[:, :100] + 0.25})
    errors = run.rmse(None)
    assert errors["reconstruction"] == pytest.approx(0.25)
    assert errors["by_horizon"] == pytest.approx({"1": 0.01, "10": 0.1, "25": 0.25, "50": 0.5, "100": 1.0})
