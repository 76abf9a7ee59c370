"""Fixtures of the odegrad test suite: the largest error seen per category, printed at the end.

Tolerances live in :mod:`tests.tolerances`; the checks (central differences, relative errors,
Taylor tests) are :mod:`odegrad.gradcheck`'s and the test problems :mod:`odegrad.gradcheck.problems`.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Compiled programs go to a directory of this run (odegrad.compile_cache), never the user's cache;
# subprocesses started by tests inherit it.
_CACHE = tempfile.mkdtemp(prefix="odegrad-test-cache-")
os.environ["ODEGRAD_CACHE_DIR"] = _CACHE

# Largest error seen per category, printed at the end of the run (for the closing note).
_MAX_ERRORS: dict[str, float] = {}


def _record(category: str, value: float) -> None:
    value = float(value)
    if category not in _MAX_ERRORS or value > _MAX_ERRORS[category]:
        _MAX_ERRORS[category] = value


@pytest.fixture
def record_error():
    """``record_error(category, err)`` keeps the maximum error observed per category."""
    return _record


def pytest_terminal_summary(terminalreporter):
    if _MAX_ERRORS:
        terminalreporter.write_sep("-", "odegrad: maximum observed errors per category")
        for key in sorted(_MAX_ERRORS):
            terminalreporter.write_line(f"{key:60s} {_MAX_ERRORS[key]:.3e}")


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)
