"""Tests of odegrad.gradcheck: the generic checks on plain functions, and its ODE suite."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.extend import defvjp, primitive

from odegrad import gradcheck
from odegrad.gradcheck import CheckResult, TaylorResult, check_grad, check_hessian, taylor_test


def smooth(x):
    return anp.sum(anp.sin(x) ** 2) + anp.prod(x) + anp.sum(anp.exp(0.3 * x))


X = np.array([[0.3, 1.2], [0.7, -0.5]])


# A sine whose gradient is scaled by 1 + bias: wrong unless bias == 0.
def _biased_sin(bias):
    @primitive
    def f(x):
        return np.sin(x)

    defvjp(f, lambda ans, x: lambda g: g * anp.cos(x) * (1.0 + bias))
    return f


wrong_sin = _biased_sin(1.0)  # gradient twice the true one
slightly_wrong_sin = _biased_sin(1e-4)


# A sine with the right gradient whose second derivative is wrong (+sin instead of -sin).
@primitive
def bad_cos(x):
    return np.cos(x)


defvjp(bad_cos, lambda ans, x: lambda g: g * anp.sin(x))


@primitive
def sin_bad_hessian(x):
    return np.sin(x)


defvjp(sin_bad_hessian, lambda ans, x: lambda g: g * bad_cos(x))


# --- check_grad -----------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [X, X[0], 0.7, np.float64(-1.3), np.array(2.0)])
def test_check_grad_passes_on_correct_gradient(x):
    result = check_grad(smooth, x)
    assert isinstance(result, CheckResult)
    assert result.passed, str(result)
    assert result.max_rel_error < 1e-9


def test_check_grad_checks_coordinates_and_random_directions():
    result = check_grad(smooth, X, n_random=3)
    assert result.directions == ("e0", "e1", "e2", "e3", "r0", "r1", "r2")
    large = check_grad(lambda x: anp.sum(x**3), np.linspace(-1, 1, 40), n_random=4)
    assert large.directions == ("r0", "r1", "r2", "r3") and large.passed


@pytest.mark.parametrize("fun", [lambda x: anp.sum(wrong_sin(x)), lambda x: anp.sum(slightly_wrong_sin(x))])
def test_check_grad_detects_wrong_gradient(fun):
    result = check_grad(fun, X)
    assert not result.passed
    assert result.max_rel_error > 5e-5
    assert "FAILED" in str(result) and "exceeds tol" in str(result)


def test_check_grad_with_explicit_gradient():
    fun = lambda x: anp.sum(x**3)  # noqa: E731
    assert check_grad(fun, X, grad=lambda x: 3 * x**2).passed
    assert not check_grad(fun, X, grad=lambda x: 3 * x**2 + 1e-3).passed


def test_check_grad_second_order_stencil_and_step():
    result = check_grad(smooth, X, fd_order=2, step=1e-5)
    assert result.passed and result.fd_order == 2 and result.step == 1e-5
    with pytest.raises(ValueError, match="fd_order"):
        check_grad(smooth, X, fd_order=3)


@pytest.mark.parametrize(
    "fun, x, match",
    [
        (lambda x: x * 2.0, X, "real scalar"),
        (smooth, np.zeros(0), "at least one element"),
        (smooth, np.array([1.0, np.nan]), "finite"),
    ],
)
def test_check_grad_rejects_bad_input(fun, x, match):
    with pytest.raises(ValueError, match=match):
        check_grad(fun, x)


# --- taylor_test ----------------------------------------------------------------------------------


def test_taylor_order_two_for_correct_gradient():
    result = taylor_test(smooth, X)
    assert isinstance(result, TaylorResult)
    assert result.passed, str(result)
    assert abs(result.order - 2.0) < 0.1
    assert np.all(np.diff(result.remainders) < 0)


def test_taylor_order_one_for_wrong_gradient():
    result = taylor_test(lambda x: anp.sum(wrong_sin(x)), X)
    assert not result.passed
    assert abs(result.order - 1.0) < 0.15, str(result)
    assert "FAILED" in str(result)


def test_taylor_explicit_direction_and_scalar_x():
    v = np.ones_like(X)
    assert taylor_test(smooth, X, v).passed
    scalar = taylor_test(lambda x: anp.exp(x) * anp.sin(x), 0.4)
    assert scalar.passed and abs(scalar.order - 2.0) < 0.1
    with pytest.raises(ValueError, match="elements"):
        taylor_test(smooth, X, v=np.ones(3))
    with pytest.raises(ValueError, match="nonzero"):
        taylor_test(smooth, X, v=np.zeros_like(X))


def test_taylor_exact_linear_function_passes_at_noise_level():
    result = taylor_test(lambda x: anp.sum(3.0 * x), X)
    assert result.passed and result.order == np.inf
    wrong = taylor_test(lambda x: anp.sum(3.0 * x), X, grad=lambda x: 3.1 * np.ones_like(x))
    assert not wrong.passed and abs(wrong.order - 1.0) < 1e-6


# --- check_hessian --------------------------------------------------------------------------------


def test_check_hessian_passes_with_third_order_taylor_remainder():
    result = check_hessian(lambda x: anp.sum(anp.cos(x) * x**3), X)
    assert result.passed, str(result)
    assert result.kind == "hessian" and result.max_rel_error < 1e-8
    assert abs(result.taylor.order - 3.0) < 0.15
    assert result.autodiff.shape == (len(result.directions), X.size)


def test_check_hessian_scalar_x():
    result = check_hessian(lambda x: x**4 + anp.sin(x), 2.0)
    assert result.passed, str(result)
    assert result.directions == ("e0",)
    np.testing.assert_allclose(result.autodiff[0, 0], 12 * 2.0**2 - np.sin(2.0), rtol=1e-12)


def test_check_hessian_detects_wrong_second_derivative():
    fun = lambda x: anp.sum(sin_bad_hessian(x))  # noqa: E731
    assert check_grad(fun, X).passed  # the gradient itself is right
    result = check_hessian(fun, X)
    assert not result.passed
    assert result.max_rel_error > 0.1
    assert not result.taylor.passed and result.taylor.order < 2.3, str(result)


# --- central_differences and relative_error -------------------------------------------------------


@pytest.mark.parametrize("fd_order, power, leading_error", [(2, 3, lambda h: h ** 2), (4, 5, lambda h: -4 * h ** 4)])
def test_central_differences_leave_the_stencils_truncation_error(fd_order, power, leading_error):
    """On x**(q + 1) a stencil of order q is off by exactly its leading error term: h^2 for
    (f(x + h) - f(x - h)) / 2h on x^3, -4 h^4 for the five-point stencil on x^5."""
    x, h = np.array([[0.3, -1.2], [0.7, 2.0]]), 1e-2
    g = gradcheck.central_differences(lambda z: np.sum(z ** power), x, step=h, fd_order=fd_order)
    assert g.shape == x.shape
    np.testing.assert_allclose(g - power * x ** (power - 1), leading_error(h), rtol=1e-3)


def test_central_differences_jacobian_shape_and_values():
    A = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]])
    J = gradcheck.central_differences(lambda z: A @ np.sin(z), np.array([0.1, 0.4, -0.3]), step=1e-4, fd_order=2)
    assert J.shape == (2, 3)
    assert gradcheck.relative_error(J, A * np.cos([0.1, 0.4, -0.3])) < 1e-8
    assert gradcheck.central_differences(lambda z: z ** 2, 1.5).shape == ()
    with pytest.raises(ValueError, match="fd_order"):
        gradcheck.central_differences(np.sin, 1.0, fd_order=3)


def test_relative_error_is_scaled_by_the_largest_reference_entry():
    assert gradcheck.relative_error([1.0, 2.0 + 4e-6], [1.0, 2.0]) == pytest.approx(2e-6)
    assert gradcheck.relative_error([1e-9, 2.0], [0.0, 2.0]) == pytest.approx(5e-10)  # not infinite
    assert gradcheck.relative_error(np.zeros(2), np.zeros(2)) == 0.0
    assert gradcheck.relative_error([np.nan], [1.0]) != gradcheck.relative_error([np.nan], [1.0])


# --- the ODE suite --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "linear",
        "decay",
        "lotka-volterra",
        "neural-net",
        "output-times",
        # ~10 s; test_appendix_d.py::test_stiff_kinetics checks the same problem by default.
        pytest.param("stiff-kinetics", marks=pytest.mark.slow),
        "robertson",
        "adjoint-modes",
        "solve-ivp",
    ],
)
def test_suite_problem_passes(name):
    rows = gradcheck.run_suite([name], quick=True)
    assert rows
    failed = [f"{r.derivative}: {r.detail}" for r in rows if not r.passed]
    assert not failed, "\n".join(failed)


def test_suite_hessian_row():
    rows = gradcheck.run_suite(["decay"])
    hvp = [r for r in rows if r.derivative.startswith("HVP")]
    assert len(hvp) == 1 and hvp[0].passed, hvp[0].detail


def test_suite_covers_every_gradient_method():
    rows = gradcheck.run_suite(["adjoint-modes"], quick=True)
    assert {r.problem for r in rows} == {"adjoint=checkpoint", "adjoint=forward", "adjoint=auto",
                                         "robertson (default options)"}


def test_main_exit_codes(capsys):
    assert gradcheck.main(["--problems", "decay", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "decay" in out and "d/dy0" in out and "checks passed" in out
    assert gradcheck.main(["--problems", "decay", "--quick", "--tol", "1e-16"]) == 1
    assert "FAIL" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gradcheck.main(["--problems", "no-such-problem"])


def test_run_suite_rejects_unknown_problem():
    with pytest.raises(ValueError, match="unknown problem"):
        gradcheck.run_suite(["nope"])
