"""Fixtures and marks that scipy's own test suites expect (run by ``test_scipy_ivp_suite``)."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "thread_unsafe: scipy's mark for tests that must not run in threads")
    config.addinivalue_line("markers", "fail_slow: scipy's mark for its time limit on a test (not enforced here)")


@pytest.fixture
def num_parallel_threads():
    """scipy's conftest fixture: the number of threads a test runs in (one, here)."""
    return 1
