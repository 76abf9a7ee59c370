"""Compiled derivative evaluations (odegrad.compiled): the same gradients as autograd's, checked.

Both paths are tested: every gradient here is taken with compiled evaluations and again inside
``odegrad.compiled.disabled()`` (autograd's evaluations, as without JAX installed), and against the
truth (closed forms, finite differences, an independent Radau sensitivity solve). Where the two
paths run the same solver steps they agree to rounding; where a stiff solve's Newton Jacobians
differ by rounding, the steps may differ and the gradients agree to the solver tolerance. The tests
that need JAX are skipped cleanly without it; the fallback tests run either way.

Tolerances: see the module docstring of ``tests/tolerances.py``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad, hessian, make_vjp
from autograd.extend import defvjp, primitive

from odegrad import compiled, odeint
from odegrad.compiled import CompiledRhs
from odegrad.gradcheck import central_differences, relative_error
from odegrad.gradcheck.problems import LINEAR, ROBERTSON, linear, linear_gradients, robertson, robertson_sensitivities
from odegrad.gradcheck.problems import lotka_volterra_p as lv
from tests.tolerances import FD, FD_RTOL, FD_SOLVE_TOL, GRAD_RTOL, HESS_RTOL, TOL

needs_jax = pytest.mark.skipif(compiled.unavailable() is not None, reason="JAX is not installed")


@pytest.fixture(autouse=True)
def compile_at_once(monkeypatch):
    """Compile at the first evaluation (by default only after COMPILE_AFTER evaluations)."""
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 0)
ROUNDING = 1e-12

A_LIN, Y0_LIN, T_LIN = LINEAR.p, LINEAR.y0, LINEAR.t
G_LIN = onp.random.default_rng(3).standard_normal((len(T_LIN), 3))
MODES = ["auto", "forward", "checkpoint", "backsolve", "interpolate"]


def _linear_loss(A, y0, t, info=None, **kw):
    ys, solve_info = odeint(linear, y0, t, args=(A,), rtol=TOL, atol=TOL, full_output=True, **kw)
    if info is not None:
        info.append(solve_info["odegrad"])
    return np.sum(G_LIN * ys)


def _compiled_rhs(f, n, n_params, notes=None):
    report = (lambda *note: notes.append(note)) if notes is not None else (lambda *_: None)
    return CompiledRhs(f, lambda theta: (lambda y, t: f(y, t, theta)), n, n_params, report)


def _both_paths(fun, *args):
    """``(value compiled, value with autograd's evaluations)`` of ``fun(*args)``."""
    with_jax = fun(*args)
    with compiled.disabled():
        without = fun(*args)
    return with_jax, without


@needs_jax
@pytest.mark.parametrize("mode", MODES)
def test_linear_gradients_match_autograd_and_closed_form(mode):
    info: list = []
    gradient = grad(_linear_loss, argnum=(0, 1, 2))
    (gA, gy0, gt), (hA, hy0, ht) = _both_paths(lambda: gradient(A_LIN, Y0_LIN, T_LIN, info, adjoint=mode))
    assert info[0].derivatives == "jax" and info[0].derivatives_note is None
    assert info[-1].derivatives == "autograd" and "disabled" in info[-1].derivatives_note
    for a, b in ((gA, hA), (gy0, hy0), (gt, ht)):
        assert relative_error(a, b) < ROUNDING
    eA, ey0, et = linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)
    assert relative_error(gA, eA) < GRAD_RTOL and relative_error(gy0, ey0) < GRAD_RTOL and relative_error(gt, et) < GRAD_RTOL


@needs_jax
def test_robertson_stiff_gradient_matches_reference():
    """Forward sensitivities with compiled Newton Jacobians (auto on a stiff problem)."""
    t = onp.array([0.0, 1.0, 10.0, 40.0])
    weights, atol = onp.array([1.0, 1e4, 1.0]), onp.array([1e-10, 1e-14, 1e-10])
    info: list = []

    def loss(logk):
        ys, solve_info = odeint(robertson, onp.array([1.0, 0.0, 0.0]), t, args=(logk,), rtol=1e-8, atol=atol,
                                full_output=True)
        info.append(solve_info["odegrad"])
        return np.sum(ys * weights)

    logk = ROBERTSON.p
    g, g_autograd = _both_paths(grad(loss), logk)
    assert info[0].derivatives == "jax" and info[0].gradient_methods == ["forward"]
    assert info[0].backward.nje > 0
    _, g_ref = robertson_sensitivities(t, logk, weights, atol)
    assert onp.max(onp.abs(g - g_ref) / onp.abs(g_ref)) < 1e-4
    assert onp.max(onp.abs(g - g_autograd) / onp.abs(g_autograd)) < 1e-6


@needs_jax
def test_augmented_jacobian_is_the_exact_one():
    """The compiled Jacobian of ``(x, a) -> [f, a·∂f/∂x]`` (the checkpoint adjoint's Newton matrix)."""
    def f(y, t, p):
        return np.array([p[0] * y[1] * np.sin(t), -y[0] ** 3 + p[1] * np.tanh(y[1])])

    y, theta, t, a = onp.array([0.3, -1.2]), onp.array([1.5, 0.7]), 0.4, onp.array([0.6, -2.0])
    K = _compiled_rhs(f, 2, 2).vjp_jacobian(y, t, theta, a)

    def joint(z):                       # z = [y, θ, t, a] -> [f, a·∂f/∂[y, θ, t]]
        vjp, value = make_vjp(lambda x: f(x[:2], x[4], x[2:4]))(z[:5])
        return np.concatenate([value, vjp(z[5:])])

    z = onp.concatenate([y, theta, [t], a])
    expected = onp.stack([make_vjp(joint)(z)[0](e) for e in onp.eye(7)])
    assert relative_error(K, expected) < ROUNDING


@needs_jax
@pytest.mark.parametrize("mode", ["checkpoint", "backsolve"])
def test_stiff_adjoint_with_compiled_newton_jacobian(mode):
    """The backward solve's exact Jacobian (adjoint_jacobian=True) from the compiled augmented Jacobian."""
    p0 = onp.array([1.2, 0.4, 1.1, 0.3])
    t = onp.array([0.0, 0.5, 1.0])

    def loss(p):
        ys = odeint(lv, onp.array([1.0, 0.5]), t, args=(p,), rtol=TOL, atol=TOL, method="bdf", adjoint=mode,
                    adjoint_jacobian=True)
        return np.sum(ys ** 2)

    g, g_autograd = _both_paths(grad(loss), p0)
    assert relative_error(g, g_autograd) < GRAD_RTOL
    fd = central_differences(lambda q: float(np.sum(odeint(lv, onp.array([1.0, 0.5]), t, args=(q,), rtol=FD_SOLVE_TOL,
                                                  atol=FD_SOLVE_TOL) ** 2)), p0, **FD)
    assert relative_error(g, fd) < FD_RTOL


def _branching(y, t, p):
    """Piecewise dynamics: an extra term below y0 = 0.5 (crossed during the solve), smooth across it."""
    decay = -p[0] * y[0] if y[0] > 0.5 else -p[0] * y[0] - p[1] * (0.5 - y[0]) ** 2
    return np.array([decay, p[0] * y[0] - p[1] * y[1]])


@pytest.mark.parametrize("mode", ["forward", "checkpoint"])
def test_branch_on_values_falls_back_with_reason(mode):
    p0 = onp.array([0.8, 0.3])
    t = onp.array([0.0, 0.5, 1.5])
    info: list = []

    def loss(p):
        ys, solve_info = odeint(_branching, onp.array([1.0, 0.0]), t, args=(p,), rtol=TOL, atol=TOL,
                                adjoint=mode, full_output=True)
        info.append(solve_info["odegrad"])
        return np.sum(ys[-1] ** 2)

    g, g_autograd = _both_paths(grad(loss), p0)
    assert info[0].derivatives == "autograd"
    if compiled.unavailable() is None:
        assert "greater" in info[0].derivatives_note
    assert relative_error(g, g_autograd) < ROUNDING
    fd = central_differences(lambda q: float(np.sum(odeint(_branching, onp.array([1.0, 0.0]), t, args=(q,),
                                                  rtol=FD_SOLVE_TOL, atol=FD_SOLVE_TOL)[-1] ** 2)), p0, **FD)
    assert relative_error(g, fd) < FD_RTOL


@needs_jax
def test_truth_value_branch_is_refused_with_reason():
    """``if y[0]:`` branches on a traced value without any operation autograd records: the
    recording notes the truth value and ``func`` keeps autograd's evaluations, which follow the
    branch taken at each point."""
    def f(y, t, p):
        return -p * y if y[0] else p * y ** 2

    notes: list = []
    c = _compiled_rhs(f, 2, 1, notes)
    theta, a = onp.array([1.5]), onp.array([1.0, -2.0])
    assert c.evaluate(("adjoint", True, True, True), onp.array([1.0, 2.0]), 0.0, theta, a) is None
    assert notes[-1][0] == "autograd" and "bool" in notes[-1][1] and c.reason == notes[-1][1]


def _scaled_decay(state):
    return lambda y, t, p: -p * y * state["scale"]


def _evaluations_in_one_solve(c, points, change_at, state, theta, a):
    """What a solve would do: compiled evaluations at ``points``, ``func`` changed at ``change_at``."""
    state["scale"] = 1.0
    outs = []
    for i, y in enumerate(points):
        if i == change_at:
            state["scale"] = 2.0
        outs.append(c.evaluate(("adjoint", True, True, True), y, 0.0, theta, a))
    return outs


@needs_jax
@pytest.mark.parametrize("change_at", [5, 19])
def test_stale_trace_between_checks_repeats_the_solve_checked(change_at, monkeypatch):
    """``func`` reads state that changes in the middle of a solve (after evaluation 5, or at the
    last of 20): the evaluations made with the stale trace before the next check (or before the
    solve returns) are discarded, the solve is repeated with every evaluation checked, and every
    result it returns is the derivative of ``func`` as it was where it was evaluated."""
    monkeypatch.setattr(compiled, "GUARD_EVERY", 8)
    state = {"scale": 1.0}
    f = _scaled_decay(state)
    notes: list = []
    c = _compiled_rhs(f, 2, 1, notes)
    theta, a = onp.array([1.5]), onp.array([1.0, -2.0])
    points = [onp.array([1.0 + 0.1 * i, 2.0 - 0.05 * i]) for i in range(20)]
    outs = compiled.checked_solve(lambda: _evaluations_in_one_solve(c, points, change_at, state, theta, a))
    for i, (y, out) in enumerate(zip(points, outs)):
        g = _scaled_decay({"scale": 1.0 if i < change_at else 2.0})
        vjp, value = make_vjp(lambda x, g=g: g(x[:2], x[3], x[2:3]))(onp.concatenate([y, theta, [0.0]]))
        v = vjp(a)
        assert relative_error(out, onp.concatenate([value, -v[:2], -v[3:], -v[2:3]])) < ROUNDING
    assert c.guard_every == 1 and c.retraces == 1 and c.reason is None
    assert any(note and "repeated with every evaluation checked" in note for _, note in notes)


@needs_jax
def test_evaluations_outside_a_solve_are_all_checked(monkeypatch):
    monkeypatch.setattr(compiled, "GUARD_EVERY", 8)
    state = {"scale": 1.0}
    c = _compiled_rhs(_scaled_decay(state), 2, 1)
    theta, a, y = onp.array([1.5]), onp.array([1.0, -2.0]), onp.array([1.0, 2.0])
    first = c.evaluate(("adjoint", True, True, True), y, 0.0, theta, a)
    state["scale"] = 2.0
    second = c.evaluate(("adjoint", True, True, True), y, 0.0, theta, a)
    onp.testing.assert_allclose(second, 2 * first, rtol=ROUNDING)
    assert c.retraces == 1 and c.guard_every == 8


@needs_jax
def test_impure_func_falls_back_with_reason():
    counter = itertools.count()

    def f(y, t, p):                       # alternates between calls: no recorded trace can hold
        return -p * y * (1.0 + 1e-6 * (next(counter) % 2))

    info: list = []

    def loss(p):
        ys, solve_info = odeint(f, onp.array([1.0]), onp.array([0.0, 0.1]), args=(p,), full_output=True,
                                adjoint="checkpoint", rtol=1e-4, atol=1e-4)
        info.append(solve_info["odegrad"])
        return np.sum(ys)

    grad(loss)(onp.array([0.2]))
    assert info[0].derivatives == "autograd" and "disagreed" in info[0].derivatives_note


def test_wide_inputs_stay_on_autograd_with_reason(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_INPUTS", 8)      # linear: 3 states, 9 parameters, t
    info: list = []
    g = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    assert info[0].derivatives == "autograd"
    if compiled.unavailable() is None:
        assert "MAX_INPUTS" in info[0].derivatives_note
    assert relative_error(g, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]) < GRAD_RTOL


@primitive
def _cube(x):
    return x ** 3


defvjp(_cube, lambda ans, x: lambda g: 3 * g * x ** 2)


def _cubic(y, t, p):
    return -p * _cube(y)


def test_primitive_without_jax_counterpart_falls_back_with_reason():
    p0 = onp.array([0.7])
    y0 = onp.array([1.0, 0.5])
    t = onp.array([0.0, 1.0, 2.0])
    info: list = []

    def loss(p):
        ys, solve_info = odeint(_cubic, y0, t, args=(p,), rtol=TOL, atol=TOL, full_output=True)
        info.append(solve_info["odegrad"])
        return np.sum(ys[-1])

    g = grad(loss)(p0)
    assert info[0].derivatives == "autograd"
    if compiled.unavailable() is None:
        assert "_cube" in info[0].derivatives_note and "no JAX counterpart" in info[0].derivatives_note
    T = t[-1]                           # y(T) = y0 / sqrt(1 + 2 p T y0²)
    exact = onp.sum(-T * y0 ** 3 * (1 + 2 * p0 * T * y0 ** 2) ** -1.5)
    assert relative_error(g, [exact]) < GRAD_RTOL


def test_without_jax_everything_runs_on_autograd(monkeypatch):
    monkeypatch.setattr(compiled, "_installed", lambda: "JAX is not installed (test)")
    info: list = []
    g = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    assert info[0].derivatives == "autograd" and "not installed" in info[0].derivatives_note
    assert relative_error(g, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]) < GRAD_RTOL


@needs_jax
@pytest.mark.parametrize("mode", ["auto", "checkpoint"])
def test_hessian_with_compiled_derivatives_of_the_gradient_solves(mode, monkeypatch):
    """Second derivatives trace through the derived solves: those solves' own derivative
    evaluations compile too (their dynamics traced through autograd's derivative of ``f``,
    ``put_slice``, ``untake`` and autograd's vector-space primitives included), and the Hessian
    is the one autograd's evaluations give."""
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    p0 = onp.array([1.2, 0.4, 1.1, 0.3])
    t = onp.array([0.0, 0.4, 0.9])
    info: list = []

    def loss(p):
        ys, solve_info = odeint(lv, onp.array([1.0, 0.5]), t, args=(p,), rtol=TOL, atol=TOL, adjoint=mode,
                                full_output=True)
        info.append(solve_info["odegrad"])
        return np.sum(ys ** 2)

    grad(loss)(p0)
    first_order = len(compiled._PROGRAMS)
    H, H_autograd = _both_paths(hessian(loss), p0)
    assert len(compiled._PROGRAMS) > first_order          # the gradient's own solves compiled
    assert info[1].derivatives == "jax" and info[1].derivatives_note is None
    assert relative_error(H, H_autograd) < GRAD_RTOL
    fd = central_differences(grad(loss), p0, **FD)
    assert relative_error(H, fd) < HESS_RTOL


@needs_jax
def test_second_derivatives_fall_back_with_a_note_where_only_they_cannot_compile():
    """``np.max`` compiles, but autograd's derivative of it compares values (``x == max``): the
    gradient's own solves then keep autograd's evaluations, said beside the first derivatives'
    backend, and the Hessian is still right."""
    p0 = onp.array([0.8, 0.5])
    t = onp.array([0.0, 0.5, 1.0])
    info: list = []

    def f(y, t, p):
        return -p * y + 0.1 * np.max(y)

    def loss(p):
        ys, solve_info = odeint(f, onp.array([1.0, 0.3]), t, args=(p,), rtol=TOL, atol=TOL, full_output=True)
        info.append(solve_info["odegrad"])
        return np.sum(ys[-1] ** 2)

    H = hessian(loss)(p0)
    assert info[0].derivatives == "jax" and "second derivatives" in info[0].derivatives_note
    assert "equal" in info[0].derivatives_note
    fd = central_differences(grad(loss), p0, **FD)
    assert relative_error(H, fd) < HESS_RTOL


def test_without_jax_installed_the_core_imports_and_differentiates():
    """A fresh interpreter where ``import jax`` fails: odegrad imports (without importing JAX) and
    its gradients come from autograd, with the reason in SolveInfo."""
    code = (
        "import sys\n"
        "import odegrad\n"
        "assert 'jax' not in sys.modules, 'odegrad imported jax'\n"
        "sys.modules['jax'] = None\n"
        "import autograd, autograd.numpy as anp, numpy as np\n"
        "out = []\n"
        "def loss(k):\n"
        "    ys, info = odegrad.odeint(lambda y, t, k: -k * y, np.array([1.0]), np.array([0.0, 1.0]),\n"
        "                              args=(k,), full_output=True, rtol=1e-10, atol=1e-10)\n"
        "    out.append(info['odegrad'])\n"
        "    return ys[-1, 0]\n"
        "g = autograd.grad(loss)(0.5)\n"
        "assert abs(g + np.exp(-0.5)) < 1e-7, g\n"
        "print(out[0].derivatives, '|', out[0].derivatives_note)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("autograd |") and "not installed" in result.stdout


@needs_jax
def test_a_one_off_gradient_stays_on_autograd_until_the_trace_is_warm(monkeypatch):
    monkeypatch.setenv("ODEGRAD_CACHE_DIR", "0")      # no program stored by an earlier test
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    monkeypatch.setattr(compiled, "_EVALUATIONS", {})
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 10 ** 9)
    info: list = []
    exact = linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]
    g = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    assert info[0].derivatives == "autograd" and "warming up" in info[0].derivatives_note
    assert not compiled._PROGRAMS and relative_error(g, exact) < GRAD_RTOL
    monkeypatch.setattr(compiled, "COMPILE_AFTER", max(compiled._EVALUATIONS.values()) + 20)
    g = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")   # compiles part-way
    assert info[1].derivatives == "jax" and len(compiled._PROGRAMS) == 1 and relative_error(g, exact) < GRAD_RTOL


@needs_jax
def test_at_once_compiles_at_the_first_evaluation_and_repeats_itself_bit_for_bit(monkeypatch):
    """Inside ``at_once`` a cold structure is compiled at once (a resumable fit's steps are all
    compiled, whatever ran before), and the gradient is the same bits the next time."""
    monkeypatch.setenv("ODEGRAD_CACHE_DIR", "0")
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    monkeypatch.setattr(compiled, "_EVALUATIONS", {})
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 10 ** 9)
    info: list = []
    with compiled.at_once():
        first = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
        again = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    after = grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    assert [i.derivatives for i in info] == ["jax", "jax", "jax"] and len(compiled._PROGRAMS) == 1
    onp.testing.assert_array_equal(first, again)
    onp.testing.assert_array_equal(first, after)
    assert relative_error(first, linear_gradients(A_LIN, Y0_LIN, T_LIN, G_LIN)[0]) < GRAD_RTOL
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    grad(_linear_loss)(A_LIN, Y0_LIN, T_LIN, info, adjoint="checkpoint")
    assert info[-1].derivatives == "autograd" and "warming up" in info[-1].derivatives_note


_W = onp.random.default_rng(5).standard_normal((3, 4))
_MASK = onp.array([True, False, True, True])


def _many_primitives(y, t, p):
    """Dynamics through most of the primitive table: each must replay as autograd evaluates it."""
    h = np.tanh(np.dot(_W, y) + p[:3])                             # matmul, tanh, slicing
    z = np.concatenate([h, np.exp(-t) * y[[0, 2]]])                # concatenate, integer-array index
    m = np.reshape(np.outer(z, p[1:3]), (10, 1))                   # outer, reshape
    s = np.sum(m, axis=1) + np.mean(m) - np.max(m) * 0.1           # reductions
    u = np.where(_MASK, y, 0.5 * y) ** 2 / (1.0 + y ** 2)          # where (constant mask), power, divide
    v = np.einsum("ij,j->i", _W.T, s[:3]) + np.log1p(np.abs(y)) + np.sqrt(1.0 + np.square(y))
    return u + np.maximum(v, -1.0) + np.transpose(np.atleast_2d(y))[:, 0] * np.sin(p[3]) + np.stack([y[1], y[0], y[3], y[2]])


@needs_jax
def test_replayed_primitives_match_autograd():
    from autograd import jacobian as ag_jacobian

    c = _compiled_rhs(_many_primitives, 4, 4)
    rng = onp.random.default_rng(9)
    for _ in range(3):
        y, theta, t = rng.standard_normal(4), rng.standard_normal(4), float(rng.uniform(0, 2))
        dy, J = c.jacobian(y, t, theta)
        x = onp.concatenate([y, theta, [t]])
        expected = ag_jacobian(lambda xx: _many_primitives(xx[:4], xx[8], xx[4:8]))(x)
        assert relative_error(dy, _many_primitives(y, t, theta)) < ROUNDING and relative_error(J, expected) < ROUNDING
    assert c.reason is None and c.retraces == 0


_DISPATCH_PROBE = (
    "import os, sys\n"
    "import autograd, autograd.numpy as anp, numpy as np\n"
    "import odegrad, odegrad.compiled\n"
    "odegrad.compiled.COMPILE_AFTER = 0\n"
    "if sys.argv[1] == 'jax-first':\n"
    "    import jax; jax.devices()\n"
    "if sys.argv[1] == 'off':\n"
    "    odegrad.compiled.SYNCHRONOUS_CPU_DISPATCH = False\n"
    "def loss(k):\n"
    "    return odegrad.odeint(lambda y, t, k: -k * y ** 2, np.array([1.0]), np.array([0.0, 1.0]),\n"
    "                          args=(k,), rtol=1e-10, atol=1e-10)[-1, 0]\n"
    "g = autograd.grad(loss)(0.5)\n"
    "assert abs(g + 1.0 / 1.5 ** 2) < 1e-7, g\n"
    "import jax\n"
    "print(jax.config.values['jax_cpu_enable_async_dispatch'])\n"
)


@needs_jax
@pytest.mark.parametrize("case, env, expected", [
    ("first", {}, "False"),                                   # odegrad starts JAX: synchronous
    ("jax-first", {}, "True"),                                # JAX started by the user: left alone
    ("off", {}, "True"),                                      # SYNCHRONOUS_CPU_DISPATCH = False
    ("first", {"JAX_CPU_ENABLE_ASYNC_DISPATCH": "1"}, "True"),  # the user's environment wins
])
def test_cpu_dispatch_is_synchronous_only_where_odegrad_starts_jax(case, env, expected):
    """odegrad's tiny programs run on the calling thread where odegrad is first to start JAX's CPU
    backend; never where the user started JAX first, turned it off or set JAX's variable. The
    gradient (d/dk of y(1) for y' = -k y², y(1) = 1/(1 + k)) is exact in every case."""
    import os

    result = subprocess.run([sys.executable, "-c", _DISPATCH_PROBE, case], capture_output=True, text=True,
                            env={**os.environ, "ODEGRAD_COMPILED": "1", **env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected
