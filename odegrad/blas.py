"""One BLAS thread while the scipy solvers step: their vector operations are too small to share.

VODE and LSODA do their own per-step work (the Nordsieck history's prediction and correction,
error norms, copies) as level-1 BLAS calls over the whole state. SciPy's bundled OpenBLAS splits
each call across all its threads; for the wide states of neural ODEs (the Table 1 block's 294,912
entries, mlp-64's 33,217-entry adjoint state) the hand-offs cost more than the arithmetic, and
the helper threads spin on the cores the evaluations between the steps need (and wait for cores
that other processes hold). :func:`odegrad.solvers.solve` and :func:`odegrad.solvers.dense_solve`
run every solve, on either door, inside :func:`one_blas_thread` (``python -m benchmarks.tf_block``
measures the solver's overhead per evaluation). Level-1 operations are elementwise, so the
solution does not change; a reduction may round differently, far below any solver tolerance.

The thread count is process-wide: the first solve to start saves it and the last one to finish
restores it, whatever the threads, so concurrent and nested solves leave it as they found it.
Where scipy does not bundle OpenBLAS (or it cannot be found) nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
from typing import Callable, Iterator, NamedTuple


class _Threads(NamedTuple):
    """Get and set the thread count of one OpenBLAS library."""

    get: Callable[[], int]
    set: Callable[[int], None]


_NAMES = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("openblas_get_num_threads", "openblas_set_num_threads"))
"""The getter and setter as scipy's OpenBLAS builds (scipy-openblas32/64) and plain OpenBLAS name them."""


@functools.lru_cache(maxsize=None)
def scipy_openblas() -> _Threads | None:
    """The thread control of the OpenBLAS bundled with scipy (its wheels' ``scipy.libs``,
    ``scipy/.dylibs``), or ``None`` where there is none."""
    import scipy

    root = os.path.dirname(scipy.__file__)
    paths = [p for folder in (root + ".libs", os.path.join(root, ".dylibs"))
             for p in sorted(glob.glob(os.path.join(folder, "*openblas*")))]
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _NAMES:
            if hasattr(library, get_name) and hasattr(library, set_name):
                getter, setter = getattr(library, get_name), getattr(library, set_name)
                getter.restype, getter.argtypes = ctypes.c_int, []
                setter.restype, setter.argtypes = None, [ctypes.c_int]
                return _Threads(getter, setter)
    return None


_lock = threading.Lock()
_running = 0
"""Solves inside :func:`one_blas_thread` now, in every thread."""
_saved: int | None = None
"""The thread count the first of them found."""


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the body with scipy's OpenBLAS on one thread; restore its count when the last such body ends."""
    global _running, _saved
    threads = scipy_openblas()
    if threads is None:
        yield
        return
    with _lock:
        if _running == 0:
            _saved = threads.get()
            if _saved != 1:
                threads.set(1)
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _saved is not None and _saved != 1:
                threads.set(_saved)
