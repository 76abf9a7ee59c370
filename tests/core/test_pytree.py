"""args as pytrees: nested tuples/lists/dicts of arrays, static (non-float) leaves, and
gradients through them checked against finite differences and closed forms.

Tolerances: see the module docstring of ``tests/tolerances.py``.
"""

from __future__ import annotations

import collections

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad

from odegrad import odeint, record_stats
from odegrad.gradcheck import central_differences, relative_error
from odegrad.pytree import flatten_args
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, TOL

Params = collections.namedtuple("Params", ["rate", "power"])


def test_flatten_roundtrip_preserves_structure_and_static_leaves():
    fn = onp.sin
    args = (
        1.5,
        [onp.array([1.0, 2.0]), {"a": onp.ones((2, 2)), "n": 3, "name": "x"}],
        (None, True, onp.array([1, 2, 3])),
        Params(rate=onp.array(0.25), power=2),
        fn,
    )
    theta, unflatten = flatten_args(args)
    assert theta.shape == (1 + 2 + 4 + 1,)
    assert onp.array_equal(theta, [1.5, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.25])
    rebuilt = unflatten(theta * 2.0)
    assert isinstance(rebuilt, tuple) and isinstance(rebuilt[1], list) and isinstance(rebuilt[1][1], dict)
    assert isinstance(rebuilt[3], Params)
    assert float(rebuilt[0]) == 3.0
    assert onp.array_equal(rebuilt[1][0], [2.0, 4.0])
    assert rebuilt[1][1]["a"].shape == (2, 2) and onp.all(rebuilt[1][1]["a"] == 2.0)
    # static leaves pass through unchanged, by identity
    assert rebuilt[1][1]["n"] == 3 and rebuilt[1][1]["name"] == "x"
    assert rebuilt[2][0] is None and rebuilt[2][1] is True
    assert rebuilt[2][2] is args[2][2]           # integer array: static
    assert rebuilt[3].power == 2 and float(rebuilt[3].rate) == 0.5
    assert rebuilt[4] is fn
    assert list(rebuilt[1][1]) == ["a", "n", "name"]  # dict order preserved


def test_flatten_no_params():
    theta, unflatten = flatten_args((3, "s", None))
    assert theta.shape == (0,)
    assert unflatten(theta) == (3, "s", None)


def test_complex_leaf_rejected():
    with pytest.raises(ValueError, match="complex"):
        flatten_args((onp.array([1j]),))
    with pytest.raises(ValueError, match="complex"):
        flatten_args(({"c": 1 + 2j},))


def _dyn(y, t, p):
    """Dynamics reading a nested pytree: p = (dict(A=..., n=int), [b, (c, 'mode')])."""
    cfg, rest = p
    A, n = cfg["A"], cfg["n"]
    b, (c, mode) = rest
    assert isinstance(n, int) and mode == "tanh"   # static leaves arrive untouched
    return np.dot(A, np.tanh(y)) ** 1 - c * y ** n + b * np.sin(t)


def _make_args(theta):
    A = np.reshape(theta[:4], (2, 2))
    b = theta[4:6]
    c = theta[6]
    return ({"A": A, "n": 3}, [b, (c, "tanh")])


THETA = onp.array([-0.5, 1.0, -1.0, -0.3, 0.2, -0.1, 0.4])
T = onp.array([0.0, 0.5, 1.5, 2.0])


def _loss_from_theta(theta, tol=TOL, **kw):
    ys = odeint(_dyn, onp.array([1.0, -0.5]), T, args=(_make_args(theta),), rtol=tol, atol=tol, **kw)
    return np.sum(ys[1:] ** 2) + np.sum(ys[-1])


@pytest.mark.parametrize("method", ["lsoda", "adams", "bdf"])
def test_nested_args_gradient_vs_fd(method, record_error):
    g = grad(_loss_from_theta)(THETA, method=method)
    fd = central_differences(lambda th: _loss_from_theta(th, tol=FD_SOLVE_TOL, method=method), THETA, **FD)
    err = relative_error(g, fd)
    record_error(f"pytree args: nested grad vs FD ({method})", err)
    assert err < FD_RTOL


@pytest.mark.parametrize("container", [list, tuple, dict])
def test_grad_wrt_container_argument(container):
    """autograd's idiom: grad w.r.t. a list/tuple/dict of parameters (y' = -k y + b)."""
    def loss(p):
        return odeint(lambda y, t, p: -p[0] * y + p[1], 1.0, [0.0, 1.0], args=(p,), rtol=TOL, atol=TOL)[-1]

    k, b = 0.7, 0.1
    p = {0: k, 1: b} if container is dict else container([k, b])
    g = grad(loss)(p)
    e = onp.exp(-k)
    assert relative_error(g[0], -e + b * (e / k - (1 - e) / k ** 2)) < GRAD_RTOL
    assert relative_error(g[1], (1 - e) / k) < GRAD_RTOL


def test_grad_wrt_dict_argument_returns_dict():
    """grad of a loss of a dict of parameters: autograd returns a dict of gradients."""
    def loss(params):
        # autograd cannot take grad w.r.t. a dict holding an int: the static exponent rides in
        # a separate dict leaf of args.
        ys = odeint(lambda y, t, p, s: -p["k"] * y ** s["n"] + p["b"], onp.array([1.0, 2.0]), [0.0, 1.0],
                    args=(params, {"n": 1}), rtol=TOL, atol=TOL)
        return np.sum(ys[-1])

    params = {"k": 0.7, "b": onp.array([0.1, -0.2])}
    g = grad(loss)(params)
    assert set(g) == {"k", "b"}
    # n = 1: y' = -k y + b, y(1) = y0 e^{-k} + b (1 - e^{-k}) / k
    k, b, y0 = 0.7, onp.array([0.1, -0.2]), onp.array([1.0, 2.0])
    e = onp.exp(-k)
    dk = onp.sum(-y0 * e + b * (e / k - (1 - e) / k ** 2))
    db = onp.full(2, (1 - e) / k)
    assert relative_error(g["k"], dk) < GRAD_RTOL
    assert relative_error(g["b"], db) < GRAD_RTOL


def test_dict_args_built_from_traced_leaves():
    """The working form of the same: the dict is built inside the loss from traced leaves."""
    def loss(k, b):
        ys = odeint(lambda y, t, p, n: -p["k"] * y ** n + p["b"], onp.array([1.0, 2.0]), [0.0, 1.0],
                    args=({"k": k, "b": b}, 1), rtol=TOL, atol=TOL)
        return np.sum(ys[-1])

    k, b = 0.7, onp.array([0.1, -0.2])
    gk, gb = grad(loss, argnum=(0, 1))(k, b)
    e = onp.exp(-k)
    y0 = onp.array([1.0, 2.0])
    assert relative_error(gk, onp.sum(-y0 * e + b * (e / k - (1 - e) / k ** 2))) < GRAD_RTOL
    assert relative_error(gb, onp.full(2, (1 - e) / k)) < GRAD_RTOL


def test_namedtuple_and_list_args_closed_form():
    def final(rate, power_is_static=2):
        p = Params(rate=rate, power=power_is_static)
        return odeint(lambda y, t, p, extra: -p.rate * y + 0.0 * extra[0][0], 1.0, [0.0, 2.0],
                      args=(p, [onp.array([5.0])]), rtol=TOL, atol=TOL)[-1]

    assert relative_error(grad(final)(0.3), -2.0 * onp.exp(-0.6)) < GRAD_RTOL


def test_int_exponent_leaf_and_only_float_leaves_differentiated():
    """args=(p, 3): the integer is static; d/dp of y(T) for y' = -p y^3, y(0)=1:
    y(T) = (1 + 2 p T)^{-1/2}  =>  dy/dp = -T (1 + 2 p T)^{-3/2}."""
    T_end = 1.5

    def final(p):
        return odeint(lambda y, t, p, n: -p * y ** n, 1.0, [0.0, T_end], args=(p, 3), rtol=TOL, atol=TOL)[-1]

    p = 0.8
    assert abs(final(p) - (1 + 2 * p * T_end) ** -0.5) < 1e-8
    assert relative_error(grad(final)(p), -T_end * (1 + 2 * p * T_end) ** -1.5) < GRAD_RTOL


def test_args_non_tuple_single_array():
    def final(k):
        return np.sum(odeint(lambda y, t, k: -k * y, onp.ones(2), [0.0, 1.0], args=k, rtol=TOL, atol=TOL)[-1])

    k = onp.array([0.5, 2.0])
    assert relative_error(grad(final)(k), -onp.exp(-k)) < GRAD_RTOL


def test_float_and_int_array_leaves_mixed():
    """An integer index array selects components; only the float leaf gets a gradient."""
    idx = onp.array([1, 0])

    def final(w):
        return np.sum(odeint(lambda y, t, w, idx: -w * y[idx], onp.array([1.0, 2.0]), [0.0, 1.0],
                             args=(w, idx), rtol=TOL, atol=TOL)[-1])

    w = onp.array([0.3, 0.6])
    fd = central_differences(lambda w_: final(w_), w, step=1e-5, fd_order=2)
    assert relative_error(grad(final)(w), fd) < FD_RTOL


def test_float32_args_are_solved_in_float64():
    """float32 parameters used to round every evaluation to single precision: the backward
    solve needed up to ~5x the evaluations and tight tolerances failed. Now the flat parameter
    vector is float64, and the gradient comes back in the argument's own dtype."""
    theta, unflatten = flatten_args((onp.float32(0.5), onp.array([1.0, 2.0], dtype=onp.float32)))
    assert theta.dtype == onp.float64
    assert unflatten(theta)[1].dtype == onp.float64

    def loss(k, W):
        ys = odeint(lambda y, t, k, W: -k * np.tanh(np.dot(W, y)), onp.array([1.0, -0.5]),
                    onp.linspace(0.0, 2.0, 5), args=(k, W), rtol=TOL, atol=TOL)
        return np.sum(ys ** 2)

    W = onp.array([[1.0, 0.25], [-0.125, 0.75]])  # exactly representable in float32
    results = {}
    for dtype in (onp.float32, onp.float64):
        with record_stats() as rec:
            g = grad(loss, 1)(dtype(0.75), W.astype(dtype))
        results[dtype] = (g, rec.backward.nfe)
    g32, nfe32 = results[onp.float32]
    g64, nfe64 = results[onp.float64]
    assert g32.dtype == onp.float32
    assert relative_error(g32, g64) < 1e-6  # float32 rounding of the result only
    assert nfe32 == nfe64             # the same solves, in float64
