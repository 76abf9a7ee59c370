"""scipy's own ``odeint`` tests, run against ``odegrad.odeint``.

The test module of the installed scipy (``scipy/integrate/tests/test_integrate.py``) is loaded at
test time, its ``odeint`` is swapped for odegrad's, and every test of it that calls ``odeint`` is
collected from this module under its own name. The one documented difference: odegrad integrates
states of any shape, so scipy's check that a 2-D ``y0`` raises ``ValueError`` is removed from
``test_odeint_bad_shapes`` (all its other checks run), and
:func:`test_two_dimensional_y0_is_odegrads_extension` checks the 2-D solve instead.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import pathlib
import textwrap
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
import scipy.integrate

import odegrad

_PATH = pathlib.Path(scipy.integrate.__file__).parent / "tests" / "test_integrate.py"
if not _PATH.is_file():
    pytest.skip(f"scipy's test module {_PATH} is not installed (scipy was installed without its tests)",
                allow_module_level=True)

KNOWN = {"TestOdeint", "test_odeint_trivial_time", "test_odeint_banded_jacobian", "test_odeint_errors",
         "test_odeint_bad_shapes", "test_repeated_t_values"}
"""scipy 1.17's odeint tests; later scipy versions may add more, which run too."""


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scipy_test_integrate_on_odegrad", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.odeint = odegrad.odeint
    return module


def _calls_odeint(obj: Any) -> bool:
    if inspect.isfunction(obj):
        return "odeint" in obj.__code__.co_names
    return inspect.isclass(obj) and any(_calls_odeint(member) for member in vars(obj).values())


def _without_2d_y0(test: Callable[[], None]) -> Callable[[], None]:
    """``test`` without its statements that use ``bad_y0`` (the 2-D ``y0`` scipy refuses)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(test)))
    body = tree.body[0].body
    kept = [stmt for stmt in body if "bad_y0" not in {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}]
    assert len(body) - len(kept) == 2, "scipy's test_odeint_bad_shapes changed: check which case to skip"
    tree.body[0].body = kept
    namespace: dict[str, Any] = {}
    exec(compile(tree, str(_PATH), "exec"), test.__globals__, namespace)  # noqa: S102
    return namespace[test.__name__]


SCIPY_TESTS = {name: obj for name, obj in vars(_load()).items()
               if name.lower().startswith("test") and _calls_odeint(obj)}
SCIPY_TESTS["test_odeint_bad_shapes"] = _without_2d_y0(SCIPY_TESTS["test_odeint_bad_shapes"])
globals().update(SCIPY_TESTS)


@pytest.fixture
def num_parallel_threads() -> int:
    """scipy's suites take this fixture from their conftest: one thread here."""
    return 1


def test_every_known_scipy_odeint_test_is_collected():
    assert KNOWN <= set(SCIPY_TESTS), sorted(KNOWN - set(SCIPY_TESTS))
    assert all(obj.__globals__["odeint"] is odegrad.odeint for obj in SCIPY_TESTS.values() if inspect.isfunction(obj))


def test_two_dimensional_y0_is_odegrads_extension():
    """The one difference: scipy raises ValueError for a 2-D ``y0``; odegrad solves the flattened
    state and returns ``ys`` of shape (T,) + y0.shape, bit for bit scipy's flat solve."""
    y0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.linspace(0.0, 0.05, 4)
    with pytest.raises(ValueError):
        scipy.integrate.odeint(lambda x, t: -100 * x, y0, t)
    ours = odegrad.odeint(lambda x, t: -100 * x, y0, t)
    flat = scipy.integrate.odeint(lambda x, t: -100 * x, y0.ravel(), t)
    assert ours.shape == (4, 2, 2)
    assert np.array_equal(ours.reshape(4, 4), flat)
