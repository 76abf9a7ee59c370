"""Property-based search for silent wrong gradients (hypothesis).

Random linear problems with contracting, oscillating or stiff spectra and random nonlinear
(tanh) problems, under every gradient method, with and without the seminorm, at loss scales from
1 to 1e-10: every gradient must lie within a tolerance-derived bound of its reference, or odegrad
must raise a clear error (``ODESolveError``, its ``DriftError``, or the ``ValueError`` that refuses
the seminorm for forward sensitivities and the interpolating adjoint). References: ``expm`` and its Fréchet derivative for the
linear problems; central differences of tight plain-scipy solves for the nonlinear ones.

Bound: the solves run at ``rtol = atol = TOL = 1e-8``; the global error of the forward and
backward solves is a modest multiple of that over these spans (10-1000 for the stiff spectra),
so gradients must be within ``BOUND = 1e4 · TOL`` relative to the largest entry of the reference,
or to ``scale`` where that is smaller (a stiff problem's gradient can be e^-1000 of the loss scale:
then the solver's absolute tolerance, relative to the cotangent, is the bound).
The default run draws ``EXAMPLES`` cases; ``-m slow`` runs ``SLOW_EXAMPLES``.
"""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import pytest
import scipy.integrate
from autograd import grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odegrad import ODESolveError, odeint
from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck.problems import linear, linear_gradients

TOL = 1e-8
BOUND = 1e4 * TOL
EXAMPLES, SLOW_EXAMPLES = 25, 300
MODES = ("checkpoint", "backsolve", "interpolate", "forward", "auto")
SCALES = (1.0, 1e-3, 1e-6, 1e-8, 1e-10)
SPECTRA = ("contracting", "oscillating", "stiff")
QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def _matrix(rng: onp.random.Generator, n: int, spectrum: str) -> onp.ndarray:
    """A real n×n matrix with eigenvalues of the given kind and a well-conditioned basis."""
    blocks = onp.zeros((n, n))
    i = 0
    while i < n:
        if spectrum == "oscillating" and i + 1 < n:
            re, im = -rng.uniform(0.0, 0.3), rng.uniform(1.0, 6.0)
            blocks[i:i + 2, i:i + 2] = [[re, -im], [im, re]]
            i += 2
            continue
        blocks[i, i] = -10 ** rng.uniform(0, 4) if spectrum == "stiff" else -rng.uniform(0.1, 10.0)
        i += 1
    basis, _ = onp.linalg.qr(rng.normal(size=(n, n)))
    basis = basis @ onp.diag(rng.uniform(0.5, 2.0, size=n))
    return basis @ blocks @ onp.linalg.inv(basis)


def _gradient_or_clear_error(fun, *args, mode: str, seminorm: bool):
    try:
        return fun(*args)
    except ODESolveError:
        return None
    except ValueError as exc:
        assert mode in ("forward", "interpolate") and seminorm and f"does not apply to adjoint={mode!r}" in str(exc)
        return None


def _check_linear(n, spectrum, n_times, span, seed, mode, seminorm, scale):
    rng = onp.random.default_rng(seed)
    A = _matrix(rng, n, spectrum)
    y0 = rng.normal(size=n)
    t = onp.concatenate([[0.0], onp.sort(rng.uniform(0.05, 1.0, size=n_times - 1)) * span])
    t = onp.unique(t)
    G = scale * rng.normal(size=(len(t), n))

    def loss(A, y0, t):
        return np.sum(odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL, adjoint=mode,
                             adjoint_seminorm=seminorm) * G)

    got = _gradient_or_clear_error(grad(loss, (0, 1, 2)), A, y0, t, mode=mode, seminorm=seminorm)
    if got is None:
        return
    for name, g, e in zip(("A", "y0", "t"), got, linear_gradients(A, y0, t, G)):
        err = relative_error(g, e, floor=scale)
        assert err < BOUND, (name, mode, seminorm, spectrum, scale, err)


def _check_tanh(n, n_times, seed, mode, seminorm, scale):
    rng = onp.random.default_rng(seed)
    W = rng.normal(size=(n, n)) * 1.5
    decay = rng.uniform(0.1, 3.0, size=n)
    y0 = rng.normal(size=n)
    t = onp.concatenate([[0.0], onp.sort(rng.uniform(0.1, 3.0, size=n_times - 1))])
    t = onp.unique(t)
    G = scale * rng.normal(size=(len(t), n))

    def loss(k, y0):
        f = lambda y, s, k: k * np.tanh(np.dot(W, y)) - decay * y  # noqa: E731
        return np.sum(odeint(f, y0, t, args=(k,), rtol=TOL, atol=TOL, adjoint=mode,
                             adjoint_seminorm=seminorm) * G)

    def plain(k, y0):
        ys = scipy.integrate.odeint(lambda y, s: k * onp.tanh(W @ y) - decay * y, y0, t, rtol=1e-12, atol=1e-12)
        return onp.sum(ys * G)

    got = _gradient_or_clear_error(grad(loss, (0, 1)), 0.8, y0, mode=mode, seminorm=seminorm)
    if got is None:
        return
    reference = central_differences(lambda x: plain(x[0], x[1:]), onp.concatenate([[0.8], y0]), step=1e-5, fd_order=2)
    err = relative_error(onp.concatenate([[got[0]], got[1]]), reference, floor=scale)
    # Central differences of 1e-12 solves carry ~1e-7 relative noise at h = 1e-5.
    assert err < BOUND + 1e-6, (mode, seminorm, scale, err)


_linear_cases = dict(n=st.integers(1, 5), spectrum=st.sampled_from(SPECTRA), n_times=st.integers(2, 4),
                     span=st.floats(0.2, 3.0), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(MODES),
                     seminorm=st.booleans(), scale=st.sampled_from(SCALES))
_tanh_cases = dict(n=st.integers(1, 4), n_times=st.integers(2, 4), seed=st.integers(0, 2**31 - 1),
                   mode=st.sampled_from(MODES), seminorm=st.booleans(), scale=st.sampled_from(SCALES))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=QUIET)
@given(**_linear_cases)
def test_linear_gradients_are_right_or_refused(n, spectrum, n_times, span, seed, mode, seminorm, scale):
    _check_linear(n, spectrum, n_times, span, seed, mode, seminorm, scale)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=QUIET)
@given(**_tanh_cases)
def test_tanh_gradients_are_right_or_refused(n, n_times, seed, mode, seminorm, scale):
    _check_tanh(n, n_times, seed, mode, seminorm, scale)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=QUIET)
@given(**_linear_cases)
def test_linear_gradients_are_right_or_refused_long(n, spectrum, n_times, span, seed, mode, seminorm, scale):
    _check_linear(n, spectrum, n_times, span, seed, mode, seminorm, scale)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=QUIET)
@given(**_tanh_cases)
def test_tanh_gradients_are_right_or_refused_long(n, n_times, seed, mode, seminorm, scale):
    _check_tanh(n, n_times, seed, mode, seminorm, scale)
