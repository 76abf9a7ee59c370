"""A gradient method registered from outside odegrad serves both doors.

The toy method here, central differences of plain re-solves (``request.resolve``), is written in
this module alone against the public interface (:mod:`odegrad.methods`); registering it makes
``adjoint="<its name>"`` work in ``odegrad.odeint`` (autograd's ``grad`` and ``jacobian``) and in
``odegrad.tf.odeint`` (``tape.gradient`` and ``tape.jacobian``). References: ``y' = A y``, whose
gradients are closed forms (:func:`odegrad.gradcheck.problems.linear_gradients`). The re-solves run at 1e-12
with steps 1e-5 (relative): truncation ~1e-10, noise ~1e-7, so the comparisons use 1e-5.
"""

from __future__ import annotations

from typing import Any, Callable

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad, jacobian

import odegrad
from odegrad.gradcheck.problems import linear, linear_gradients
from odegrad.methods import Gradient, GradientMethod, GradientRequest, register, unregister

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

NAME = "test-central-differences"
FD_TOL = 1e-12
RTOL = 1e-5
A0 = np.array([[-0.4, 1.0], [-1.0, -0.3]])
Y0 = np.array([1.0, -0.5])
T = np.array([0.0, 0.5, 1.5])
W = np.array([[0.5, -1.0], [1.0, 0.2], [-0.3, 0.7]])


class CentralDifferences(GradientMethod):
    """The VJP by central differences of re-solves: first derivatives, one cotangent at a time."""

    name = NAME
    title = "central differences of the forward solve (a test's toy)"
    first_order_only = True

    def vjp(self, request: GradientRequest) -> Callable[[Any], Gradient]:
        ops = request.ops
        y0, t, theta = ops.value(request.y0), ops.value(request.t), ops.value(request.params)

        def vjp(g: Any) -> Gradient:
            weights = ops.value(g)

            def derivative(k: int, x: np.ndarray) -> np.ndarray:
                """``∂(weights · ys)/∂x`` where ``x`` is input ``k`` of ``resolve``."""
                out = np.zeros_like(x)
                for i in range(x.size):
                    h = 1e-5 * max(1.0, abs(x[i]))
                    values = []
                    for step in (h, -h):
                        inputs = [y0, t, theta]
                        inputs[k] = x.copy()
                        inputs[k][i] += step
                        values.append(np.sum(weights * request.resolve(*inputs)))
                    out[i] = (values[0] - values[1]) / (2 * h)
                return out

            wrt = request.wrt
            return Gradient(
                ops.constant(derivative(0, y0), like=request.y0) if wrt.y0 else None,
                ops.constant(derivative(1, t), like=g) if wrt.t else None,
                ops.constant(derivative(2, theta), like=g) if wrt.params else None,
                self.name,
            )

        return vjp


@pytest.fixture(scope="module", autouse=True)
def registered():
    register(CentralDifferences())
    yield
    unregister(NAME)


def test_tape_gradient_uses_the_registered_method():
    A = tf.Variable(A0)
    y0, t = tf.constant(Y0), tf.constant(T)
    with tf.GradientTape() as tape:
        tape.watch([y0, t])
        ys, info = otf.odeint(lambda _, y: tf.linalg.matvec(A, y), y0, t, rtol=FD_TOL, atol=FD_TOL, adjoint=NAME,
                              full_output=True)
        loss = tf.reduce_sum(tf.constant(W) * ys)
    g_y0, g_t, g_a = tape.gradient(loss, [y0, t, A])
    exact_a, exact_y0, exact_t = linear_gradients(A0, Y0, T, W)
    np.testing.assert_allclose(g_y0.numpy(), exact_y0, rtol=RTOL)
    np.testing.assert_allclose(g_t.numpy(), exact_t, rtol=RTOL)
    np.testing.assert_allclose(g_a.numpy(), exact_a, rtol=RTOL)
    assert info.gradient_methods == [NAME]
    np.testing.assert_array_equal(A.numpy(), A0)


def test_tape_jacobian_uses_the_registered_method():
    s = tf.constant(1.0, tf.float64)
    y0 = tf.constant(Y0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y0)
        end = otf.odeint(lambda _, y, s: s * tf.linalg.matvec(tf.constant(A0), y), y0, T, args=(s,), rtol=FD_TOL,
                         atol=FD_TOL, adjoint=NAME)[-1]
    J = tape.jacobian(end, y0, experimental_use_pfor=False).numpy()
    np.testing.assert_allclose(J, scipy.linalg.expm(A0 * (T[-1] - T[0])), rtol=RTOL)


def test_autograd_grad_and_jacobian_use_the_registered_method():
    def loss(y0, t, A):
        return anp.sum(W * odegrad.odeint(linear, y0, t, args=(A,), rtol=FD_TOL, atol=FD_TOL, adjoint=NAME))

    exact_a, exact_y0, exact_t = linear_gradients(A0, Y0, T, W)
    for k, exact in enumerate([exact_y0, exact_t, exact_a]):
        np.testing.assert_allclose(grad(loss, k)(Y0, T, A0), exact, rtol=RTOL)
    J = jacobian(lambda y0: odegrad.odeint(linear, y0, T, args=(A0,), rtol=FD_TOL, atol=FD_TOL, adjoint=NAME)[-1])(Y0)
    np.testing.assert_allclose(J, scipy.linalg.expm(A0 * (T[-1] - T[0])), rtol=RTOL)


def test_an_unregistered_name_is_refused_with_the_registered_ones():
    with pytest.raises(ValueError, match=r"adjoint must be one of .*'checkpoint'"):
        otf.odeint(lambda _, y: -y, tf.constant(Y0), T, adjoint="no-such-method")


class Spy(GradientMethod):
    """The checkpoint adjoint, keeping every request it gets (what the door tells a method)."""

    name = "test-spy"
    title = "the checkpoint adjoint, watched (a test's toy)"
    requests: list[GradientRequest] = []

    def vjp(self, request: GradientRequest) -> Callable[[Any], Gradient]:
        self.requests.append(request)
        return odegrad.methods.get("checkpoint").vjp(request)


@pytest.fixture
def spy():
    method = register(Spy())
    yield method
    unregister(method.name)
    Spy.requests.clear()


def _decay(k):
    return lambda _, y: -k * y


def test_the_request_carries_the_forward_solves_statistics_eagerly_and_in_a_graph(spy):
    k = tf.Variable(0.7, dtype=tf.float64)
    y0 = tf.constant([1.0, 2.0], tf.float64)

    infos = []

    def gradient():
        with tf.GradientTape() as tape:
            ys, info = otf.odeint(_decay(k), y0, [0.0, 0.5, 1.0], adjoint=spy.name, full_output=True)
            loss = tf.reduce_sum(ys)
        infos.append(info)
        return tape.gradient(loss, k)

    for run in (gradient, tf.function(gradient)):
        g, info = run(), infos[-1]
        assert float(g) == pytest.approx(-0.5 * np.exp(-0.35) * 3 - np.exp(-0.7) * 3, rel=1e-6)
        request = spy.requests[-1]
        assert request.stats is not None and request.stats.nfe == info.forward.nfe > 0
        assert (request.door, request.higher_order, request.derived) == ("tensorflow", False, False)
        np.testing.assert_array_equal(request.ops.value(request.params), [0.7])
        assert info.gradient_methods == ["checkpoint"]


def test_the_request_says_when_the_gradient_is_differentiated_again(spy):
    k = tf.Variable(0.7, dtype=tf.float64)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            end = otf.odeint(_decay(k), tf.constant([1.0], tf.float64), [0.0, 1.0], adjoint=spy.name)[-1, 0]
        g = inner.gradient(end, k)
    h = outer.gradient(g, k)
    assert float(h) == pytest.approx(np.exp(-0.7), rel=1e-6)
    assert spy.requests[0].higher_order and not spy.requests[0].derived
    assert any(request.derived for request in spy.requests[1:])


def test_a_first_order_method_refuses_when_its_gradient_is_differentiated():
    """TensorFlow only tells that an outer tape may record: the inner gradient is given, and the
    refusal comes when the outer tape differentiates it (the toy's gradients are constants, which
    would otherwise give a silent None)."""
    k = tf.Variable(0.7, dtype=tf.float64)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            end = otf.odeint(_decay(k), tf.constant([1.0], tf.float64), [0.0, 1.0], rtol=FD_TOL, atol=FD_TOL,
                             adjoint=NAME)[-1, 0]
        g = inner.gradient(end, k)
    assert float(g) == pytest.approx(-np.exp(-0.7), rel=RTOL)
    with pytest.raises(NotImplementedError, match=f"adjoint='{NAME}' gives first derivatives only; use .*'checkpoint'"):
        outer.gradient(g, k)
