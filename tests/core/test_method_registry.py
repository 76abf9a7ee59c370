"""The registry of gradient methods (odegrad.methods): a method defined here, in the test module
alone, is what ``adjoint=`` selects, and its flags drive the validation of the options."""

import types
from typing import ClassVar

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad, jacobian

from odegrad import AdjointOptions, odeint, record_stats
from odegrad.methods import Gradient, GradientMethod, GradientRequest, get, names, register, unregister
from odegrad.methods.forward import ForwardSensitivities

TOL = 1e-12          # the forward solves of the toy method
STEP = 1e-4          # central differences: truncation ~ STEP², rounding ~ TOL / STEP
FD_RTOL = 1e-6


class CentralDifferences(GradientMethod):
    """A toy gradient method: the VJP from central differences of plain forward solves, entry by
    entry for y0, t and the parameters (first derivatives; not differentiated again)."""

    name: ClassVar[str] = "central-differences"
    title: ClassVar[str] = "central differences of the forward solve"
    first_order_only: ClassVar[bool] = True

    def vjp(self, request: GradientRequest):
        ops, wrt = request.ops, request.wrt
        y0, t = ops.value(request.y0), ops.value(request.t)
        theta = ops.value(request.params)

        def columns(x, solve):
            """``d ys / d x_j`` for each entry ``j`` of ``x``, by central differences."""
            out = []
            for j in range(x.size):
                h = STEP * max(1.0, abs(x[j]))
                e = onp.zeros_like(x)
                e[j] = h
                out.append((solve(x + e) - solve(x - e)) / (2 * h))
            return out

        def vjp(g):
            G = ops.value(g)

            def contract(x, solve):
                return ops.constant(onp.array([onp.sum(G * column) for column in columns(x, solve)]), like=g)

            return Gradient(
                contract(y0, lambda v: request.resolve(v, t, theta)) if wrt.y0 else None,
                contract(t, lambda v: request.resolve(y0, v, theta)) if wrt.t else None,
                contract(theta, lambda v: request.resolve(y0, t, v)) if wrt.params else None,
                self.name,
            )

        return vjp


@pytest.fixture
def toy():
    method = register(CentralDifferences())
    yield method
    unregister(method.name)


def decay(y, t, k):
    return -k * y


Y0 = onp.array([1.0, 2.0])
T = onp.array([0.0, 0.5, 1.2])
W = onp.array([[0.3, -0.5], [1.0, 0.7], [-0.4, 2.0]])
K = 0.8


def _loss(y0, t, k, adjoint):
    return np.sum(W * odeint(decay, y0, t, args=(k,), rtol=TOL, atol=TOL, adjoint=adjoint))


def _exact_gradients(y0, t, k):
    """``dL/dy0``, ``dL/dt``, ``dL/dk`` of ``L = Σ W * ys`` for ``ys_i = y0 exp(-k (t_i - t_0))``."""
    decays = onp.exp(-k * (t - t[0]))
    ys = decays[:, None] * y0
    d_y0 = (W * decays[:, None]).sum(axis=0)
    d_t = -k * (W * ys).sum(axis=1)
    d_t[0] = -d_t[1:].sum()
    d_k = onp.sum(W * ys * -(t - t[0])[:, None])
    return d_y0, d_t, d_k


def test_a_method_registered_from_a_test_module_computes_grad(toy):
    assert "central-differences" in names() and get("central-differences") is toy
    exact = _exact_gradients(Y0, T, K)
    with record_stats() as rec:
        found = grad(_loss, (0, 1, 2))(Y0, T, K, "central-differences")
    for got, want in zip(found, exact):
        assert onp.allclose(got, want, rtol=FD_RTOL, atol=FD_RTOL)
    assert rec.gradient_methods == ["central-differences"]
    assert rec.backward.nsolves == 2 * (Y0.size + T.size + 1)   # two resolves per entry
    with pytest.raises(NotImplementedError, match=r"adjoint='central-differences' gives first derivatives only; "
                                                  r"use adjoint='checkpoint', 'backsolve', 'forward' or 'auto'"):
        grad(grad(_loss, 2), 2)(Y0, T, K, "central-differences")


def test_a_registered_method_serves_jacobian(toy):
    def states(y0, k):
        return odeint(decay, y0, T, args=(k,), rtol=TOL, atol=TOL, adjoint="central-differences")

    decays = onp.exp(-K * (T - T[0]))
    J_y0 = jacobian(states, 0)(Y0, K)
    assert J_y0.shape == (T.size, Y0.size, Y0.size)
    assert onp.allclose(J_y0, decays[:, None, None] * onp.eye(Y0.size), rtol=FD_RTOL, atol=FD_RTOL)
    J_k = jacobian(states, 1)(Y0, K)
    assert onp.allclose(J_k, -(T - T[0])[:, None] * decays[:, None] * Y0, rtol=FD_RTOL, atol=FD_RTOL)


def test_unknown_mode_names_the_registered_methods(toy):
    with pytest.raises(ValueError, match=r"adjoint must be one of .*'auto'.*'central-differences'.*got 'reverse'"):
        AdjointOptions(mode="reverse")


def test_the_flags_of_a_method_drive_its_checks(toy):
    with pytest.raises(ValueError, match=r"adjoint_seminorm=True does not apply to adjoint='central-differences'.*"
                                         r"adjoint='checkpoint' or 'backsolve'"):
        odeint(decay, Y0, T, args=(K,), adjoint="central-differences", adjoint_seminorm=True)
    with pytest.raises(ValueError, match=r"checkpoints only apply to adjoint='checkpoint', 'backsolve' or 'auto'; "
                                         r"adjoint='central-differences'"):
        AdjointOptions(mode="central-differences", checkpoints=2)
    with pytest.raises(ValueError, match=r"adjoint='forward' \(forward sensitivities\) is not available on the "
                                         r"tensorflow door; use adjoint=.*'central-differences'"):
        ForwardOnAutogradOnly().check(AdjointOptions(mode="forward"), "tensorflow")


class ForwardOnAutogradOnly(GradientMethod):
    """A method only the autograd door runs (its VJP is never asked for)."""

    name: ClassVar[str] = "forward"
    title: ClassVar[str] = "forward sensitivities"
    doors: ClassVar[frozenset[str]] = frozenset({"autograd"})

    def vjp(self, request: GradientRequest):
        raise AssertionError("not called")


class TensorFlowOnly(CentralDifferences):
    name: ClassVar[str] = "tf-only"
    doors: ClassVar[frozenset[str]] = frozenset({"tensorflow"})


def test_a_method_of_another_door_is_refused_by_the_autograd_door():
    register(TensorFlowOnly())
    try:
        assert odeint(decay, Y0, T, args=(K,), adjoint="tf-only").shape == (T.size, Y0.size)
        with pytest.raises(ValueError, match=r"adjoint='tf-only' .* is not available on the autograd door"):
            grad(_loss, 2)(Y0, T, K, "tf-only")
    finally:
        unregister("tf-only")


def test_register_twice_raises_and_replace_replaces(toy):
    with pytest.raises(ValueError, match="named 'central-differences' is registered already.*replace=True"):
        register(CentralDifferences())
    other = CentralDifferences()
    assert register(other, replace=True) is other and get("central-differences") is other
    with pytest.raises(TypeError, match="GradientMethod instance"):
        register(CentralDifferences)
    assert names()[:5] == ("checkpoint", "backsolve", "interpolate", "forward", "auto")


def test_unregistered_method_is_no_longer_a_mode():
    register(CentralDifferences())
    unregister("central-differences")
    assert "central-differences" not in names()
    with pytest.raises(ValueError, match="adjoint must be one of"):
        AdjointOptions(mode="central-differences")


class AutogradOnlyForward(ForwardSensitivities):
    doors: ClassVar[frozenset[str]] = frozenset({"autograd"})


def test_auto_takes_the_registered_forward_method_and_its_doors():
    """auto looks its methods up by name: a replaced ``forward`` that one door cannot run makes
    auto's choice there the checkpoint adjoint (and the forward method is refused there)."""
    request = types.SimpleNamespace(n=2, n_times=50, stats=None, backward_opts=types.SimpleNamespace(rtol=1e-8),
                                    higher_order=False, derived=False)
    auto = get("auto")
    assert auto.pick(types.SimpleNamespace(door="autograd", **vars(request)), stiff=False, columns=3) == "forward"
    register(AutogradOnlyForward(), replace=True)
    try:
        assert auto.pick(types.SimpleNamespace(door="autograd", **vars(request)), stiff=False, columns=3) == "forward"
        assert auto.pick(types.SimpleNamespace(door="tensorflow", **vars(request)), stiff=False, columns=3) == "checkpoint"
        with pytest.raises(ValueError, match=r"adjoint='forward' \(forward sensitivities\) is not available on the "
                                             r"tensorflow door"):
            get("forward").check(AdjointOptions(mode="forward"), "tensorflow")
    finally:
        register(ForwardSensitivities(), replace=True)
