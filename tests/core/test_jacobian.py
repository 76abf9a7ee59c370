"""The vectorised reverse pass of odegrad.jacobian against autograd's own, one row at a time.

Every batched rule is exercised, with broadcasting, and the per-row fallback for primitives
without a rule (containers, masks, nested derivatives). Agreement is to rounding: both compute
the same products in a different order.
"""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.builtins import tuple as atuple

from odegrad.jacobian import trace_jacobian, trace_vjps
from odegrad.pytree import take_slice

RNG = np.random.default_rng(3)
W = RNG.standard_normal((4, 6))
V = RNG.standard_normal((6, 3))
B = RNG.standard_normal((6, 1))


def _stack_scalars(x):
    a, b = x[0], x[1]
    return anp.stack([-x[2] * a, x[2] * a - x[3] * b, x[3] * b / (1.0 + x[4] ** 2)])


FUNCTIONS = {
    "kinetics-like scalars and stack": _stack_scalars,
    "arithmetic with broadcasting": lambda x: (anp.reshape(x, (2, 3)) * B[:2] + x[:3] - 2.0 / (x[3:] + 3.0)).ravel(),
    "power both ways": lambda x: anp.concatenate([anp.abs(x[:3]) ** 1.5, 1.3 ** x[3:], x[:3] ** 2]),
    "elementwise functions": lambda x: anp.exp(x) + anp.log(x ** 2 + 1) * anp.sin(x) - anp.cos(x) + anp.tanh(x)
    + anp.sqrt(x ** 2 + 1.0) + anp.square(x),
    "matrix-vector products": lambda x: anp.tanh(W @ x) @ W + anp.dot(x, x) * x,
    "matrix-matrix products": lambda x: (anp.reshape(x, (6, 1)) @ anp.reshape(x[:3], (1, 3)) @ V.T).ravel()
    + anp.dot(V.T, anp.reshape(x, (6, 1))).sum(),
    "vector-matrix product": lambda x: anp.concatenate([x @ V, anp.dot(x[:4], W)]),
    "2-D by 1-D both traced": lambda x: anp.reshape(x, (2, 3)) @ x[:3],
    "sums, transposes, expand_dims": lambda x: anp.concatenate([
        anp.sum(anp.reshape(x, (2, 3)), axis=0), anp.sum(anp.reshape(x, (2, 3)), 1, keepdims=True).ravel(),
        anp.reshape(anp.transpose(anp.reshape(x, (2, 3))), (6,)), anp.expand_dims(x, 0)[0] * anp.sum(x)]),
    "fancy indexing with repeats": lambda x: x[[0, 0, 2, 5]] * x[np.array([1, 1, 1, 3])] + x[1:4][::-1].sum(),
    "2-D indexing": lambda x: anp.reshape(x, (2, 3))[:, [0, 2, 2]].ravel() + anp.reshape(x, (2, 3))[1, 1:].sum()
    + anp.reshape(x, (2, 3))[None, 0, ...].sum(),
    "take_slice": lambda x: take_slice(x, 1, 5, (2, 2)).ravel() * take_slice(x, 0, 4),
    "fallbacks: mask, where, maximum, mean": lambda x: anp.concatenate([
        x[x > 0.3] * 0.0 + anp.sum(x[np.array([True, False, True, False, True, False])]),
        anp.where(x > 0.5, x ** 2, -x), anp.maximum(x, 0.4) + anp.mean(x * x)]),
    "fallback: tuple containers": lambda x: (lambda tup: tup[0] * tup[1][1:4].sum())(atuple((x, anp.sinh(x)))),
    "nested gradient inside": lambda x: autograd.grad(lambda z: anp.sum(anp.sin(z) * z ** 3) * x[0])(x),
    "nested gradient through indexing and slices (sparse cotangents)": lambda x: autograd.grad(
        lambda z: z[0] * z[2] ** 2 + anp.sum(take_slice(z, 1, 4) ** 3) + z[[1, 1, 5]].sum() * x[3])(x),
    "output independent of part of the input": lambda x: anp.concatenate([x[:2] * 3.0, anp.ones(2)]),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_jacobian_matches_autograd(name):
    fun = FUNCTIONS[name]
    x = np.array([0.7, -0.4, 1.3, 0.2, 0.9, -1.1])
    J, value = trace_jacobian(fun, x)
    reference = autograd.jacobian(fun)(x)
    np.testing.assert_allclose(value, fun(x), rtol=1e-15, atol=0)
    assert J.shape == (np.size(value), x.size)
    np.testing.assert_allclose(J, reference.reshape(J.shape), rtol=1e-12, atol=1e-13)


def test_batched_vjps_equal_single_vjps():
    fun = FUNCTIONS["matrix-vector products"]
    x = np.linspace(-1.0, 1.0, 6)
    G = RNG.standard_normal((5, 6))
    vjps, _ = trace_vjps(fun, x)
    vjp, _ = autograd.make_vjp(fun)(x)
    np.testing.assert_allclose(vjps(G), np.stack([vjp(g) for g in G]), rtol=1e-12, atol=1e-13)
    # The same trace serves any number of batches.
    np.testing.assert_allclose(vjps(G[:2]), vjps(G)[:2], rtol=0, atol=0)


def test_constant_function_has_zero_jacobian():
    """A zero derivative is the right answer for dynamics that ignore what is traced: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J, value = trace_jacobian(lambda x: np.ones(3), np.zeros(4))
    assert J.shape == (3, 4) and not J.any()


def test_unknown_primitive_raises_like_autograd():
    @autograd.extend.primitive
    def opaque(x):
        return 2 * x

    with pytest.raises(NotImplementedError, match="VJP of opaque"):
        trace_jacobian(lambda x: opaque(x), np.ones(2))


def test_closing_over_an_outer_trace_is_an_error_not_a_lost_derivative():
    def outer(c):
        J, _ = trace_jacobian(lambda x: x * c, np.ones(2))
        return anp.sum(J)

    with pytest.raises(TypeError, match="outer derivative"):
        autograd.grad(outer)(2.0)
