"""The three gradient checks (central differences, Taylor remainders, Hessian-vector products) and
the two measurements they are built from, public for tests that compare against other references:
:func:`central_differences` (a finite-difference derivative of any array-valued function) and
:func:`relative_error`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import autograd.numpy as anp
import numpy as np
from autograd import grad as ag_grad

_EPS = float(np.finfo(float).eps)

#: Central difference stencils: order -> (offsets, weights); derivative is
#: ``sum(w * f(x + k h v)) / h``.
_STENCILS: dict[int, tuple[tuple[int, ...], tuple[float, ...]]] = {
    2: ((-1, 1), (-0.5, 0.5)),
    4: ((-2, -1, 1, 2), (1.0 / 12.0, -8.0 / 12.0, 8.0 / 12.0, -1.0 / 12.0)),
}


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaylorResult:
    """Outcome of a Taylor remainder test.

    Attributes
    ----------
    passed : bool
        Whether the observed order is at least ``expected_order - order_tol``
        (or the remainder is at the noise level for every step, which means the
        expansion is exact).
    order : float
        Slope of a least-squares fit of ``log(remainder)`` against ``log(h)``
        over the steps whose remainder is above the noise level; ``inf`` if
        no remainder is above it, ``nan`` if only one or two are or some
        remainder is not finite.
    expected_order : int
        2 for a first-order expansion (gradient), 3 for a second-order one
        (Hessian).
    order_tol : float
        Allowed shortfall of ``order`` below ``expected_order``.
    steps : numpy.ndarray
        The step sizes ``h``, decreasing.
    remainders : numpy.ndarray
        The remainders, one per step.
    noise : float
        Remainders at or below this level are excluded from the fit.
    """

    passed: bool
    order: float
    expected_order: int
    order_tol: float
    steps: np.ndarray
    remainders: np.ndarray
    noise: float

    def __str__(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        if math.isinf(self.order):
            observed = "remainder at the noise level for every step (exact expansion)"
        elif math.isnan(self.order):
            observed = "non-finite remainders or fewer than 3 above the noise level: no order fitted"
        else:
            observed = f"observed order {self.order:.2f}"
        lines = [
            f"Taylor test (expansion of order {self.expected_order - 1}) {status}: {observed}, "
            f"expected {self.expected_order} (need >= {self.expected_order - self.order_tol:.2f})",
            f"  {'h':>10}  {'remainder':>10}  {'local order':>11}",
        ]
        for i, (h, r) in enumerate(zip(self.steps, self.remainders)):
            local = ""
            if i > 0 and r > self.noise and self.remainders[i - 1] > self.noise:
                slope = math.log(self.remainders[i - 1] / r) / math.log(self.steps[i - 1] / h)
                local = f"{slope:.2f}"
            flag = "" if r > self.noise else "  (noise level, not fitted)"
            lines.append(f"  {h:10.3e}  {r:10.3e}  {local:>11}{flag}")
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check_grad` or :func:`check_hessian`.

    Attributes
    ----------
    kind : str
        ``"gradient"`` or ``"hessian"``.
    passed : bool
        ``max_rel_error <= tol`` and, if present, ``taylor.passed``.
    max_rel_error : float
        Largest relative error over all checked directions.
    tol : float
        Tolerance on the relative error.
    directions : tuple of str
        Labels of the checked directions: ``"e3"`` for the fourth coordinate
        of the flattened ``x``, ``"r0"`` for the first random unit direction.
    autodiff : numpy.ndarray
        Derivatives from autograd along each direction: scalars (directional
        derivatives) for ``"gradient"``, flattened Hessian-vector products
        (one row per direction) for ``"hessian"``.
    finite_diff : numpy.ndarray
        The same quantities from central finite differences (the reference).
    rel_errors : numpy.ndarray
        Relative error per direction.
    step : float
        Finite-difference step along each unit direction.
    fd_order : int
        Order of accuracy of the central-difference stencil (2 or 4); 0 when
        the reference values are exact (closed forms), not finite differences.
    taylor : TaylorResult or None
        The second-order Taylor test run by :func:`check_hessian`.
    """

    kind: str
    passed: bool
    max_rel_error: float
    tol: float
    directions: tuple[str, ...]
    autodiff: np.ndarray
    finite_diff: np.ndarray
    rel_errors: np.ndarray
    step: float
    fd_order: int
    taylor: TaylorResult | None = None

    def __str__(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        what = "directional derivative" if self.kind == "gradient" else "|Hessian-vector product|"
        method = (
            f"order-{self.fd_order} central differences, h = {self.step:.3e}"
            if self.fd_order
            else "reference values"
        )
        lines = [
            f"{self.kind} check {status}: max relative error {self.max_rel_error:.3e} "
            f"(tol {self.tol:.1e}) over {len(self.directions)} directions; {method}",
            f"  {'direction':>9}  {'autodiff ' + what:>36}  {'reference':>18}  {'rel. error':>10}",
        ]
        for i, label in enumerate(self.directions):
            ad, fd = self.autodiff[i], self.finite_diff[i]
            if self.kind == "hessian":
                ad, fd = float(np.linalg.norm(ad)), float(np.linalg.norm(fd))
            bad = "  <-- exceeds tol" if self.rel_errors[i] > self.tol else ""
            lines.append(
                f"  {label:>9}  {float(ad):36.12e}  {float(fd):18.10e}  "
                f"{self.rel_errors[i]:10.3e}{bad}"
            )
        if self.taylor is not None:
            lines.append(str(self.taylor))
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _flatten(x: Any) -> tuple[np.ndarray, Callable[[Any], Any]]:
    """Return ``x`` as a flat float array and a function undoing the flattening."""
    arr = np.asarray(x, dtype=float)
    if arr.size == 0:
        raise ValueError("x must have at least one element")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x must be finite")
    if arr.ndim == 0:
        return arr.reshape(1), lambda z: z[0]
    shape = arr.shape
    return arr.ravel(), lambda z: anp.reshape(z, shape)


def _as_scalar(value: Any, name: str = "fun") -> float:
    """Convert the output of a scalar function to ``float`` with a clear error."""
    arr = np.asarray(value)
    if arr.size != 1 or not np.isrealobj(arr):
        raise ValueError(f"{name} must return a real scalar; got an array of shape {arr.shape}")
    return float(arr.reshape(()))


def _scalar_fun(fun: Callable[[Any], Any], unflatten: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap ``fun`` so that it takes a flat array and returns a 0-d value."""

    def flat_fun(z: Any) -> Any:
        out = fun(unflatten(z))
        return anp.reshape(out, ()) if anp.size(out) == 1 else out

    return flat_fun


def _flat_grad(
    fun: Callable[[Any], Any],
    grad: Callable[[Any], Any] | None,
    unflatten: Callable[[Any], Any],
    n: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """Gradient of the flattened function, from ``grad`` or from autograd."""
    if grad is None:
        g = ag_grad(_scalar_fun(fun, unflatten))
        return lambda z: np.asarray(g(z), dtype=float)

    def flat_grad(z: np.ndarray) -> np.ndarray:
        out = np.asarray(grad(unflatten(z)), dtype=float).ravel()
        if out.size != n:
            raise ValueError(f"grad returned {out.size} values for an x with {n} elements")
        return out

    return flat_grad


def _directions(
    n: int, max_coordinates: int, n_random: int, seed: int | None
) -> tuple[list[str], np.ndarray]:
    """Unit coordinate directions (if ``n <= max_coordinates``) and random unit directions."""
    labels: list[str] = []
    rows: list[np.ndarray] = []
    if n <= max_coordinates:
        eye = np.eye(n)
        labels += [f"e{i}" for i in range(n)]
        rows += list(eye)
    if n == 1 and rows:
        n_random = 0  # a random unit direction in 1-D is just +-e0
    rng = np.random.default_rng(seed)
    for k in range(n_random):
        v = rng.standard_normal(n)
        labels.append(f"r{k}")
        rows.append(v / np.linalg.norm(v))
    if not rows:
        raise ValueError("no directions to check: raise max_coordinates or n_random")
    return labels, np.array(rows)


def _default_step(x: np.ndarray, fd_order: int) -> float:
    """Step balancing truncation and rounding error for a smooth function."""
    return _EPS ** (1.0 / (fd_order + 1)) * max(1.0, float(np.max(np.abs(x))))


def _stencil(fd_order: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    try:
        return _STENCILS[fd_order]
    except KeyError:
        raise ValueError(f"fd_order must be one of {sorted(_STENCILS)}, got {fd_order!r}") from None


def _difference(f: Callable[[np.ndarray], Any], x: np.ndarray, v: np.ndarray, h: float, fd_order: int) -> Any:
    """Central-difference derivative of ``f`` at ``x`` along ``v`` with step ``h`` (stencil of ``fd_order``)."""
    offsets, weights = _stencil(fd_order)
    return sum(w * f(x + k * h * v) for k, w in zip(offsets, weights)) / h


def _rel_error(ad: np.ndarray, fd: np.ndarray, floor: float) -> float:
    """``|ad - fd| / max(|ad|, |fd|, floor)`` with vector norms."""
    diff = float(np.linalg.norm(np.atleast_1d(ad - fd)))
    scale = max(float(np.linalg.norm(np.atleast_1d(ad))), float(np.linalg.norm(np.atleast_1d(fd))), floor)
    if scale == 0.0:
        return 0.0
    return diff / scale if math.isfinite(diff) else math.inf


def make_result(kind: str, ad: np.ndarray, reference: np.ndarray, floor: float, tol: float,
                labels: Sequence[str], step: float, fd_order: int,
                taylor: TaylorResult | None = None) -> CheckResult:
    """A :class:`CheckResult` comparing derivatives ``ad`` with ``reference`` direction by direction
    (also used by the suite for closed-form references: ``step = 0``, ``fd_order = 0``)."""
    errs = np.array([_rel_error(a, b, floor) for a, b in zip(ad, reference)])
    max_err = float(np.max(errs))
    return CheckResult(
        kind=kind, passed=bool(max_err <= tol and (taylor is None or taylor.passed)),
        max_rel_error=max_err, tol=tol, directions=tuple(labels), autodiff=ad,
        finite_diff=reference, rel_errors=errs, step=step, fd_order=fd_order, taylor=taylor,
    )


def _fit_order(
    steps: np.ndarray, remainders: np.ndarray, noise: float, expected_order: int, order_tol: float
) -> TaylorResult:
    """Fit the order of the remainder and decide whether the test passes."""
    if not np.all(np.isfinite(remainders)):
        return TaylorResult(False, math.nan, expected_order, order_tol, steps, remainders, noise)
    above = remainders > noise
    if not np.any(above):
        # The expansion is exact to rounding: nothing left to fit.
        return TaylorResult(True, math.inf, expected_order, order_tol, steps, remainders, noise)
    if np.count_nonzero(above) < 3:
        return TaylorResult(False, math.nan, expected_order, order_tol, steps, remainders, noise)
    order = float(np.polyfit(np.log(steps[above]), np.log(remainders[above]), 1)[0])
    passed = order >= expected_order - order_tol
    return TaylorResult(passed, order, expected_order, order_tol, steps, remainders, noise)


def _taylor_setup(
    x: Any, v: Any, seed: int | None
) -> tuple[np.ndarray, Callable[[Any], Any], np.ndarray]:
    x_flat, unflatten = _flatten(x)
    if v is None:
        v_flat = np.random.default_rng(seed).standard_normal(x_flat.size)
        v_flat /= np.linalg.norm(v_flat)
    else:
        v_flat = np.asarray(v, dtype=float).ravel()
        if v_flat.size != x_flat.size:
            raise ValueError(f"v has {v_flat.size} elements but x has {x_flat.size}")
        if not np.any(v_flat):
            raise ValueError("v must be nonzero")
    return x_flat, unflatten, v_flat


# ---------------------------------------------------------------------------
# Public checks
# ---------------------------------------------------------------------------


def check_grad(
    fun: Callable[[Any], Any],
    x: Any,
    *,
    grad: Callable[[Any], Any] | None = None,
    tol: float = 1e-6,
    step: float | None = None,
    fd_order: int = 4,
    max_coordinates: int = 16,
    n_random: int = 3,
    rel_floor: float = 1e-3,
    seed: int | None = 0,
) -> CheckResult:
    """Compare the gradient of a scalar function with central finite differences.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> scalar``, differentiable by autograd (unless ``grad`` is
        given).
    x : array_like or float
        Point at which to check; any shape (flattened internally).
    grad : callable, optional
        Gradient to check, ``grad(x)`` with the shape of ``x``. Default:
        ``autograd.grad(fun)``.
    tol : float, optional
        Largest accepted relative error.
    step : float, optional
        Finite-difference step along each unit direction. Default
        ``eps**(1 / (fd_order + 1)) * max(1, max|x|)``. For a function
        evaluated with a relative error ``delta`` (e.g. an ODE solve with
        ``rtol = delta``) a step near ``delta**(1 / (fd_order + 1))`` is best.
    fd_order : {4, 2}, optional
        Order of accuracy of the central-difference stencil.
    max_coordinates : int, optional
        Check every coordinate direction if ``x`` has at most this many
        elements.
    n_random : int, optional
        Number of random unit directions to check (none for scalar ``x``).
    rel_floor : float, optional
        The relative error along ``v`` is
        ``|ad - fd| / max(|ad|, |fd|, rel_floor * |grad|)``: a directional
        derivative far smaller than the gradient norm is compared on the
        scale of the gradient norm instead of its own.
    seed : int or None, optional
        Seed for the random directions.

    Returns
    -------
    CheckResult
        ``kind == "gradient"``; ``passed`` if every relative error is at most
        ``tol``.

    Raises
    ------
    ValueError
        If ``fun`` does not return a real scalar, ``x`` is empty or not finite,
        or ``fd_order`` is not 2 or 4.

    Examples
    --------
    >>> import autograd.numpy as anp
    >>> check_grad(lambda x: anp.sum(anp.sin(x) ** 2), [0.3, 1.2]).passed
    True
    """
    x_flat, unflatten = _flatten(x)
    _stencil(fd_order)  # a bad fd_order fails before any evaluation
    f = _scalar_fun(fun, unflatten)
    _as_scalar(f(x_flat))
    g = _flat_grad(fun, grad, unflatten, x_flat.size)(x_flat)
    h = _default_step(x_flat, fd_order) if step is None else float(step)
    labels, dirs = _directions(x_flat.size, max_coordinates, n_random, seed)
    floor = rel_floor * float(np.linalg.norm(g))

    ad = dirs @ g
    fd = np.array([_difference(lambda z: _as_scalar(f(z)), x_flat, v, h, fd_order) for v in dirs])
    return make_result("gradient", ad, fd, floor, tol, labels, h, fd_order)


def taylor_test(
    fun: Callable[[Any], Any],
    x: Any,
    v: Any | None = None,
    *,
    grad: Callable[[Any], Any] | None = None,
    h0: float = 0.1,
    n_steps: int = 8,
    factor: float = 0.5,
    noise: float | None = None,
    order_tol: float = 0.25,
    seed: int | None = 0,
) -> TaylorResult:
    """Check that the first-order Taylor remainder falls as ``h**2``.

    The remainder ``r(h) = |L(x + h v) - L(x) - h grad L(x) . v|`` is
    ``O(h**2)`` if the gradient is right and ``~ h |error . v|`` if it is
    wrong. The observed order is the slope of ``log r`` against ``log h``.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> scalar``, differentiable by autograd (unless ``grad`` is
        given).
    x : array_like or float
        Expansion point; any shape.
    v : array_like, optional
        Direction with the shape (or size) of ``x``; default a random unit
        vector.
    grad : callable, optional
        Gradient to test, ``grad(x)`` with the shape of ``x``. Default
        ``autograd.grad(fun)``.
    h0 : float, optional
        Largest step.
    n_steps : int, optional
        Number of steps ``h0 * factor**k``, ``k = 0, ..., n_steps - 1``.
    factor : float, optional
        Ratio of consecutive steps, in (0, 1).
    noise : float, optional
        Absolute accuracy of ``fun``; remainders at or below ``10 * noise``
        are left out of the fit. Default ``100 * eps * max(1, |L(x)|)``. Set it
        to the solver tolerance for functions computed by ODE solves.
    order_tol : float, optional
        The test passes if the observed order is at least ``2 - order_tol``.
    seed : int or None, optional
        Seed for the random direction.

    Returns
    -------
    TaylorResult
        With the steps, remainders and the fitted order.

    Examples
    --------
    >>> import autograd.numpy as anp
    >>> result = taylor_test(lambda x: anp.sum(anp.exp(x)), [0.1, -0.4])
    >>> result.passed, round(result.order)
    (True, 2)
    """
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must lie in (0, 1), got {factor}")
    if n_steps < 3:
        raise ValueError(f"n_steps must be at least 3, got {n_steps}")
    x_flat, unflatten, v_flat = _taylor_setup(x, v, seed)
    f = _scalar_fun(fun, unflatten)
    f0 = _as_scalar(f(x_flat))
    slope = float(_flat_grad(fun, grad, unflatten, x_flat.size)(x_flat) @ v_flat)
    steps = h0 * factor ** np.arange(n_steps)
    rem = np.array([abs(_as_scalar(f(x_flat + h * v_flat)) - f0 - h * slope) for h in steps])
    level = 10.0 * (100.0 * _EPS * max(1.0, abs(f0)) if noise is None else noise)
    return _fit_order(steps, rem, level, 2, order_tol)


def check_hessian(
    fun: Callable[[Any], Any],
    x: Any,
    *,
    tol: float = 1e-5,
    step: float | None = None,
    fd_order: int = 4,
    max_coordinates: int = 8,
    n_random: int = 2,
    rel_floor: float = 1e-3,
    h0: float = 0.2,
    n_steps: int = 6,
    factor: float = 0.5,
    noise: float | None = None,
    order_tol: float = 0.3,
    seed: int | None = 0,
) -> CheckResult:
    """Check Hessian-vector products and the second-order Taylor expansion.

    Hessian-vector products ``H v = grad(grad(fun)(x) . v)`` from autograd
    are compared with central differences of ``grad(fun)`` along ``v``, and
    the remainder ``|L(x + h v) - L(x) - h g . v - h**2 / 2 v . H v|`` must
    fall as ``h**3`` (see :func:`taylor_test`).

    Parameters
    ----------
    fun : callable
        ``fun(x) -> scalar``, twice differentiable by autograd.
    x : array_like or float
        Point at which to check; any shape (flattened internally).
    tol : float, optional
        Largest accepted relative error of a Hessian-vector product (vector
        norms).
    step : float, optional
        Finite-difference step for differencing the gradient; default as in
        :func:`check_grad`.
    fd_order : {4, 2}, optional
        Order of the central-difference stencil.
    max_coordinates : int, optional
        Check ``H e_i`` (the columns of the Hessian) if ``x`` has at most this
        many elements.
    n_random : int, optional
        Number of random unit directions.
    rel_floor : float, optional
        Relative errors are measured against at least ``rel_floor`` times the
        largest ``|H v|`` over the checked directions.
    h0, n_steps, factor, noise, order_tol : optional
        Parameters of the second-order Taylor test, run along the last random
        direction (``e0`` if there is none); see :func:`taylor_test`. The test
        passes if the observed order is at least ``3 - order_tol``.
    seed : int or None, optional
        Seed for the random directions.

    Returns
    -------
    CheckResult
        ``kind == "hessian"``; ``passed`` if every relative error is at most
        ``tol`` and the Taylor test passed (``result.taylor``).

    Examples
    --------
    >>> import autograd.numpy as anp
    >>> check_hessian(lambda x: anp.sum(anp.cos(x) * x ** 3), [0.5, 2.0]).passed
    True
    """
    x_flat, unflatten = _flatten(x)
    _stencil(fd_order)  # a bad fd_order fails before any evaluation
    f = _scalar_fun(fun, unflatten)
    f0 = _as_scalar(f(x_flat))
    grad_f = ag_grad(f)

    def hvp(z: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(ag_grad(lambda w: anp.dot(grad_f(w), v))(z), dtype=float)

    g0 = np.asarray(grad_f(x_flat), dtype=float)
    h = _default_step(x_flat, fd_order) if step is None else float(step)
    labels, dirs = _directions(x_flat.size, max_coordinates, n_random, seed)
    ad = np.array([hvp(x_flat, v) for v in dirs])
    fd = np.array([_difference(lambda z: np.asarray(grad_f(z), dtype=float), x_flat, v, h, fd_order) for v in dirs])
    floor = rel_floor * float(np.max(np.linalg.norm(ad, axis=1)))
    i_taylor = len(dirs) - 1 if labels[-1].startswith("r") else 0
    v_t, hv_t = dirs[i_taylor], ad[i_taylor]
    steps = h0 * factor ** np.arange(n_steps)
    slope, curvature = float(g0 @ v_t), float(v_t @ hv_t)
    rem = np.array(
        [abs(_as_scalar(f(x_flat + s * v_t)) - f0 - s * slope - 0.5 * s * s * curvature) for s in steps]
    )
    level = 10.0 * (100.0 * _EPS * max(1.0, abs(f0)) if noise is None else noise)
    taylor = _fit_order(steps, rem, level, 3, order_tol)
    return make_result("hessian", ad, fd, floor, tol, labels, h, fd_order, taylor)


def central_differences(
    fun: Callable[[Any], Any], x: Any, *, step: float | None = None, fd_order: int = 4
) -> np.ndarray:
    """Derivative of ``fun`` at ``x`` by central differences along every coordinate of ``x``.

    The reference that :func:`check_grad` compares with, for every coordinate at once and for
    array-valued ``fun`` too: a test that compares a gradient or Jacobian with it entry by entry
    (for instance with :func:`relative_error`) checks the same thing as :func:`check_grad`.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> array_like`` of any shape; plain NumPy is enough (no autograd needed).
    x : array_like or float
        Point of differentiation, any shape.
    step : float, optional
        Step along each coordinate; default as in :func:`check_grad`. For a function computed by
        an ODE solve with relative error ``delta`` a step near ``delta**(1 / (fd_order + 1))`` is
        best.
    fd_order : {4, 2}, optional
        Order of accuracy of the stencil (``2``: ``(f(x + h e) - f(x - h e)) / 2h``).

    Returns
    -------
    numpy.ndarray
        Shape ``shape(fun(x)) + shape(x)``: the gradient (shape of ``x``) for a scalar ``fun``,
        the Jacobian ``d fun_i / d x_j`` otherwise.

    Raises
    ------
    ValueError
        If ``x`` is empty or not finite, or ``fd_order`` is not 2 or 4.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(central_differences(lambda x: x ** 2, np.array([1.0, 3.0])), 6)
    array([[2., 0.],
           [0., 6.]])
    """
    x_arr = np.asarray(x, dtype=float)
    x_flat, _ = _flatten(x_arr)
    _stencil(fd_order)  # a bad fd_order fails before any evaluation
    h = _default_step(x_flat, fd_order) if step is None else float(step)

    def flat_fun(z: np.ndarray) -> np.ndarray:
        return np.asarray(fun(z.reshape(x_arr.shape)), dtype=float)

    columns = [_difference(flat_fun, x_flat, e, h, fd_order) for e in np.eye(x_flat.size)]
    return np.stack(columns, axis=-1).reshape(np.shape(columns[0]) + x_arr.shape)


def relative_error(actual: Any, reference: Any, *, floor: float = 1e-300) -> float:
    """Largest deviation from ``reference`` relative to its largest entry.

    ``max|actual - reference| / max(max|reference|, floor)``: one number for a whole gradient,
    Jacobian or trajectory, so that a small entry of a large reference is not over-weighted
    (unlike an entry-by-entry ratio). The checks above measure each direction with vector norms
    instead (:attr:`CheckResult.rel_errors`).

    Parameters
    ----------
    actual, reference : array_like
        Values of the same shape (broadcastable), e.g. an autograd gradient and
        :func:`central_differences` or a closed form.
    floor : float, optional
        Smallest scale, so that an all-zero reference gives the absolute error over ``floor``.

    Returns
    -------
    float
        The relative error (``inf`` or ``nan`` if ``actual`` is not finite).

    Examples
    --------
    >>> relative_error([1.0, 2.001], [1.0, 2.0])
    0.0004999999999999449
    """
    a = np.asarray(actual, dtype=float)
    b = np.asarray(reference, dtype=float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), floor))
