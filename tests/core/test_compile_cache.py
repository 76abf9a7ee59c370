"""Compiled programs kept on disk (:mod:`odegrad.compile_cache`): a rerun reads them, and reads only
what was built for it (this CPU, this JAX, this odegrad source), never a broken entry.

Gradients are compared with the closed form of ``y' = -a y`` (``y = y0 exp(-a t)``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad

from odegrad import compile_cache, compiled, odeint
from odegrad.gradcheck import relative_error
from tests.tolerances import GRAD_RTOL, TOL

needs_jax = pytest.mark.skipif(compiled.unavailable() is not None, reason="JAX is not installed")
needs_cpu_identity = pytest.mark.skipif(compile_cache.cpu_identity() is None,
                                        reason="the disk cache is off where the CPU cannot be identified")

T = onp.linspace(0.0, 2.0, 5)


def decay(y, t, a):
    return -a * y


def loss(a, info=None):
    ys, out = odeint(decay, np.array([1.0, 2.0]), T, args=(a,), rtol=TOL, atol=TOL, full_output=True)
    if info is not None:
        info.append(out["odegrad"])
    return np.sum(ys ** 2)


def exact_gradient(a: float) -> float:
    """d/da of sum_t |y0|^2 exp(-2 a t)."""
    return float(onp.sum(5.0 * -2.0 * T * onp.exp(-2.0 * a * T)))


_RUN = """
import json
from autograd import grad
from odegrad import compile_cache
from tests.core.test_compile_cache import loss
info = []
g = grad(loss)(0.7, info)
print(json.dumps({"gradient": float(g).hex(), "stats": dict(compile_cache.STATS),
                  "derivatives": info[0].derivatives}))
"""


def _run(cache: str, **env: str) -> dict:
    environment = {**os.environ, "ODEGRAD_CACHE_DIR": cache, **env}
    done = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, env=environment,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_jax
@needs_cpu_identity
def test_a_rerun_reads_the_compiled_programs_and_compiles_nothing(tmp_path):
    first = _run(str(tmp_path), ODEGRAD_COMPILE_AFTER="0")
    assert first["derivatives"] == "jax" and first["stats"]["compiles"] >= 1
    assert first["stats"]["writes"] == first["stats"]["compiles"] and "hits" not in first["stats"]
    # The rerun keeps the default warm-up (1000 evaluations, far more than this gradient makes):
    # the stored structure is compiled (read) at its first evaluation, nothing is compiled.
    rerun = _run(str(tmp_path))
    assert rerun["derivatives"] == "jax" and rerun["stats"] == {"hits": first["stats"]["compiles"]}
    assert rerun["gradient"] == first["gradient"]          # the same executable: bitwise
    assert relative_error(float.fromhex(rerun["gradient"]), exact_gradient(0.7)) < GRAD_RTOL
    # Without the cache the same gradient warms up on autograd, as before.
    off = _run("0")
    assert off["derivatives"] == "autograd" and off["stats"] == {}


@needs_jax
@needs_cpu_identity
def test_a_broken_entry_is_compiled_again_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("ODEGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "COMPILE_AFTER", 0)
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    monkeypatch.setattr(compile_cache, "STATS", compile_cache.STATS.__class__())
    grad(loss)(0.7)
    entries = sorted(tmp_path.rglob("*.xla"))
    assert entries and compile_cache.STATS["writes"] == len(entries)
    for entry in entries:
        entry.write_bytes(b"not an executable")
    monkeypatch.setattr(compiled, "_PROGRAMS", {})
    g = grad(loss)(0.7)
    assert compile_cache.STATS["errors"] == len(entries) and compile_cache.STATS["writes"] == 2 * len(entries)
    assert all(entry.read_bytes() != b"not an executable" for entry in entries)
    assert relative_error(g, exact_gradient(0.7)) < GRAD_RTOL


def test_the_environment_names_cpu_jax_variables_and_source(tmp_path, monkeypatch):
    source = tmp_path / "builder.py"
    source.write_text("one")
    compile_cache.environment.cache_clear()
    monkeypatch.setattr(compile_cache, "cpu_identity", lambda: "model name: A\nflags: avx2")
    base = compile_cache.environment((str(source),))
    assert base is not None and base == compile_cache.environment((str(source),))
    assert compile_cache.environment((str(source),), ("--xla_cpu_use_thunk_runtime=false", "")) != base
    source.write_text("two")                               # an edit of the program builder
    compile_cache.environment.cache_clear()
    assert compile_cache.environment((str(source),)) != base
    source.write_text("one")
    monkeypatch.setattr(compile_cache, "cpu_identity", lambda: "model name: A\nflags: avx2 avx512f")
    compile_cache.environment.cache_clear()
    assert compile_cache.environment((str(source),)) != base
    monkeypatch.setattr(compile_cache, "cpu_identity", lambda: None)
    compile_cache.environment.cache_clear()
    assert compile_cache.environment((str(source),)) is None
    compile_cache.environment.cache_clear()


@needs_cpu_identity
def test_only_a_private_directory_is_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)                                    # writable by others: an entry could be planted
    monkeypatch.setenv("ODEGRAD_CACHE_DIR", str(shared))
    assert compile_cache.store(compiled._SOURCES) is None
    private = tmp_path / "private"
    monkeypatch.setenv("ODEGRAD_CACHE_DIR", str(private))
    made = compile_cache.store(compiled._SOURCES)
    assert made is not None and oct(private.stat().st_mode & 0o777) == oct(0o700)
    for off in ("0", "", "off"):
        monkeypatch.setenv("ODEGRAD_CACHE_DIR", off)
        assert compile_cache.directory() is None and compile_cache.store(compiled._SOURCES) is None


def test_keys_naming_objects_by_address_are_not_stored():
    assert compile_cache.digest(("add", 3, b"\x00")) == compile_cache.digest(("add", 3, b"\x00"))
    assert compile_cache.digest((object(),)) is None


@needs_jax
def test_the_portable_key_tells_structures_apart():
    """Two traces that compile to different programs never share a disk entry; equal ones do."""
    x = onp.arange(1.0, 4.0)
    keys = {}
    for name, fun in {"sin": lambda v: np.sin(v), "cos": lambda v: np.cos(v), "sin again": lambda v: np.sin(v),
                      "slice 0:2": lambda v: v[0:2] * 2.0, "slice 1:3": lambda v: v[1:3] * 2.0}.items():
        keys[name] = compiled.record(fun, x)[0].digest
    assert None not in keys.values() and keys["sin"] == keys["sin again"]
    assert len({keys[k] for k in ("sin", "cos", "slice 0:2", "slice 1:3")}) == 4


def test_the_oldest_quarter_goes_when_the_store_is_full(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "MAX_ENTRIES", 8)
    disk = compile_cache.Store(tmp_path)
    for i in range(8):
        disk.save(f"s{i}", "k", b"x")
        os.utime(tmp_path / f"s{i}" / "k.xla", (1000 + i, 1000 + i))     # s0 oldest
    assert disk.known("s0") and len(list(tmp_path.rglob("*.xla"))) == 8
    disk.save("s8", "k", b"x")                                            # nine: the oldest two go
    left = sorted(p.parent.name for p in tmp_path.rglob("*.xla"))
    assert left == [f"s{i}" for i in range(2, 9)]
    assert not disk.known("s0") and not (tmp_path / "s0").exists() and disk.known("s8")
    assert not list(tmp_path.rglob("*.tmp"))                              # no temporary file left
