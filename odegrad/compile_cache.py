"""Compiled programs kept on disk, so that a rerun of a script skips XLA and the autograd warm-up.

:mod:`odegrad.compiled` compiles one XLA program per structure of a trace of ``func`` and kind of
derived evaluation. In a fresh process each costs 0.1-0.3 s of tracing and compiling, and a
structure is compiled only after :data:`odegrad.compiled.COMPILE_AFTER` autograd evaluations; a
scientist rerunning a fitting script pays both at every run. Here the compiled executables are
written to a directory and read back by later processes; a structure found there is compiled (read)
at its first evaluation instead of after the warm-up.

An XLA CPU executable is machine code for the instruction set of the host that compiled it, and is
built by this version of odegrad's program builder (:mod:`odegrad.compiled`) with this version of
JAX: the directory's entries live under a digest of all of that (:func:`environment`), the CPU's
model and feature flags included, so a cache in a home directory shared by machines of different
CPUs (or an upgrade of JAX, or an edit of odegrad's source) never hands a program to a process it
was not built for. Entries are read only from a directory owned by the user and writable by nobody
else (an executable is loaded with pickle).

Where: ``$ODEGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/odegrad``, else ``~/.cache/odegrad``.
``ODEGRAD_CACHE_DIR=0`` (or empty) turns it off; it is off where the CPU cannot be identified
(:func:`cpu_identity`: Linux's ``/proc/cpuinfo``). A program read back is the same executable, so
its results are bitwise those of the process that compiled it; a rerun that compiles at once
instead of after the warm-up differs from the first run where autograd's evaluations differed from
the compiled ones, in the last bits of ``f`` (results then agree to the solver's tolerance).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.metadata
import os
import platform
import stat
from pathlib import Path
from typing import Any, Callable

from .atomic import write_atomic

FORMAT = 1
"""Version of this module's layout of the directory; part of :func:`environment`."""

MAX_ENTRIES = 2048
"""Programs kept per environment; beyond it the oldest quarter (by modification time) is removed."""

STATS: collections.Counter = collections.Counter()
"""``hits``, ``compiles``, ``writes`` and ``errors`` (unreadable or unwritable entries) of this process."""

_OFF = {"", "0", "off", "false", "no"}


@functools.lru_cache(maxsize=1)
def cpu_identity() -> str | None:
    """The host CPU's model and instruction-set flags (Linux ``/proc/cpuinfo``), or ``None``.

    Every distinct ``model name``, ``flags``, ``Features``, ``CPU implementer``, ``CPU part`` and
    ``CPU variant`` line, sorted: what decides which instructions XLA emits for this host.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    keys = {"model name", "flags", "features", "cpu implementer", "cpu part", "cpu variant"}
    lines = {line.strip() for line in text.splitlines()
             if line.partition(":")[0].strip().lower() in keys}
    return "\n".join(sorted(lines)) or None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _variables() -> tuple[str, str]:
    """The environment variables that change what XLA compiles: ``XLA_FLAGS``, ``JAX_PLATFORMS``."""
    return os.environ.get("XLA_FLAGS", ""), os.environ.get("JAX_PLATFORMS", "")


@functools.lru_cache(maxsize=None)
def environment(sources: tuple[str, ...], variables: tuple[str, str] = ("", "")) -> str | None:
    """Digest of what a compiled program depends on besides its own key, or ``None`` (no CPU identity).

    The CPU (:func:`cpu_identity`), the machine and Python, JAX's and jaxlib's versions,
    ``variables`` (:func:`_variables`), this module's :data:`FORMAT`, and the bytes of ``sources``
    (the files that build the programs: any edit of them is a new environment).
    """
    cpu = cpu_identity()
    if cpu is None:
        return None
    digest = hashlib.sha256()
    for part in (str(FORMAT), cpu, platform.machine(), platform.python_version(), _version("jax"),
                 _version("jaxlib"), *variables):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(Path(source).read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def directory() -> Path | None:
    """The cache's root directory, or ``None`` where it is turned off (``ODEGRAD_CACHE_DIR=0``)."""
    given = os.environ.get("ODEGRAD_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in _OFF else Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "odegrad"


def _private(path: Path) -> bool:
    """Create ``path`` (mode 0o700) where missing; whether it is a directory of this user that no
    one else may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return False
    return True


class Store:
    """The entries of one environment: ``<root>/xla-<environment>/<structure>/<kind>.xla``."""

    def __init__(self, root: Path):
        self.root = root
        self._known: dict[str, bool] = {}

    def known(self, structure: str) -> bool:
        """Whether some program of ``structure`` was stored (by this or an earlier process)."""
        found = self._known.get(structure)
        if found is None:
            if len(self._known) > 4 * MAX_ENTRIES:
                self._known.clear()
            found = self._known[structure] = (self.root / structure).is_dir()
        return found

    def load(self, structure: str, kind: str, deserialize: Callable[[bytes], Any]) -> Any | None:
        """The stored program, or ``None`` (absent; unreadable ones are counted in :data:`STATS`)."""
        path = self.root / structure / f"{kind}.xla"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            STATS["errors"] += 1
            return None
        try:
            program = deserialize(blob)
        except Exception:            # a truncated or foreign entry: compile instead, and overwrite it
            STATS["errors"] += 1
            return None
        STATS["hits"] += 1
        return program

    def save(self, structure: str, kind: str, blob: bytes) -> None:
        """Write one entry atomically (:func:`odegrad.atomic.write_atomic`: a reader sees the whole
        file or none); failures are counted."""
        try:
            write_atomic(self.root / structure / f"{kind}.xla", blob)
        except OSError:
            STATS["errors"] += 1
            return
        STATS["writes"] += 1
        self._known[structure] = True
        self._prune()

    def _prune(self) -> None:
        """Remove the oldest quarter of the entries when there are more than :data:`MAX_ENTRIES`."""
        try:
            entries = [(e.stat().st_mtime, Path(e.path)) for folder in os.scandir(self.root) if folder.is_dir()
                       for e in os.scandir(folder.path) if e.name.endswith(".xla")]
        except OSError:
            return
        if len(entries) <= MAX_ENTRIES:
            return
        for _, path in sorted(entries)[: len(entries) // 4]:
            try:
                path.unlink()
                path.parent.rmdir()          # only where it was the structure's last entry
            except OSError:
                pass
        self._known.clear()


_STORES: dict[tuple, Store | None] = {}


def store(sources: tuple[str, ...]) -> Store | None:
    """The :class:`Store` of this environment, or ``None`` where the cache is off, the CPU unknown or
    the directory not private to this user."""
    root, variables = directory(), _variables()
    key = (root, sources, variables)
    if key not in _STORES:
        env = environment(sources, variables) if root is not None else None
        path = None if env is None else root / f"xla-{env}"
        _STORES[key] = Store(path) if path is not None and _private(root) and _private(path) else None
    return _STORES[key]


def digest(key: Any) -> str | None:
    """A digest of ``key`` (tuples of strings, numbers, bytes, ``None``), or ``None`` where its
    ``repr`` names an object by address (not the same in another process)."""
    text = repr(key)
    if " at 0x" in text:
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]
