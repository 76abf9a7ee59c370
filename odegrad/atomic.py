"""Atomic file writes: the experiments' and benchmarks' results, and the compiled programs of
:mod:`odegrad.compile_cache`.

A file written in place and cut short (the process killed, the disk full) leaves a truncated
file behind that crashes whoever reads it next, e.g. ``table1.md`` generation reading another
model's ``results.json``.  :func:`write_atomic` writes a hidden temporary file in the same
directory, flushes it to disk and renames it over the target with :func:`os.replace`, which
POSIX and Windows perform atomically: readers see the old file or the new one, never a part.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Replace ``path`` by ``data`` atomically (temporary file + :func:`os.replace`).

    Parameters
    ----------
    path : str or path-like
        The file to write; its directory is created if needed.
    data : str or bytes
        The whole content (``str`` is encoded as UTF-8).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The temporary file ``.<name>.<pid>.<thread>.tmp`` sits beside the target (a rename across file
    systems would not be atomic) and is removed if anything fails before the rename, which
    leaves the previous content of ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
