"""Peak memory and wall time of one training step as the depth of the feature layers grows.

Depth means: residual blocks for the ResNet, and the solver tolerance (``rtol = atol``) for the
RK-Net and the ODE-Net, whose forward NFE grows as the tolerance shrinks.  The RK-Net's
dopri5 keeps every evaluation for backpropagation (memory O(L~) in the forward NFE L~); the
ODE-Net's adjoint gradient should keep the memory flat.

Each configuration runs in a fresh subprocess (``--worker``), which builds the model and runs
training steps *eagerly* (a :class:`tf.GradientTape` keeps exactly the tensors the backward
pass needs, in program order; a ``tf.function`` graph executes independent ops in parallel and
its peak wanders by tens of MB from run to run), measuring two ways:

* ``rss_peak_mb``: growth of the process's resident-set high-water mark ``VmHWM`` over the
  first step, after resetting it by writing ``5`` to ``/proc/self/clear_refs`` (Linux); this
  sees every allocation, NumPy included (e.g. a SciPy solver's history), but also one-off
  costs of a first call and the allocator's caching, so it is the coarser figure;
* ``tf_peak_mb``: peak of TensorFlow's CPU allocator during the second step above what was
  live before it, from :func:`tf.config.experimental.get_memory_info` after
  :func:`tf.config.experimental.reset_memory_stats` (blind to NumPy buffers).  This is the
  figure used in ``table1.md``.

TensorFlow's CPU allocator keeps these statistics only when it is the BFC allocator, which is
its default on some CPUs only (not, e.g., on AVX2-only AMD EPYC, where the calls raise
``ValueError``).  The worker processes therefore start with ``TF_CPU_ALLOCATOR_USE_BFC=true``
(:data:`ALLOCATOR_VAR`) unless the variable is already set: an explicit setting is passed on
unchanged (``TF_CPU_ALLOCATOR_USE_BFC=false`` measures TensorFlow's default allocator, which
still keeps statistics where TensorFlow's oneDNN operations are on: by default on CPUs with
AVX-512 VNNI, BF16 or AMX, off with ``TF_ENABLE_ONEDNN_OPTS=0``).  Where
the statistics are still unavailable, ``tf_peak_mb`` is ``None`` with the reason in
``tf_stats_unavailable``, and :func:`summarize` falls back to ``rss_peak_mb`` for that model
(``memory_source``); ``memory.json`` and ``table1.md`` say so.  Nothing crashes.

``step_seconds`` is the median wall time of a few further steps of the training step actually
used by :mod:`experiments.mnist.training` (compiled except for the ODE-Net).  A least-squares line of
memory and time against depth gives the per-layer slope reported in ``table1.md``.

Usage::

    python -m experiments.mnist.memory --out runs/table1/memory.json
    python -m experiments.mnist.memory --models resnet --depths 1 2 4 8 --batch-size 128
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments.cli import add_verbose_argument, run_command
from odegrad.atomic import write_atomic

DEFAULT_SWEEP: dict[str, tuple[float, ...]] = {
    "resnet": (1, 2, 4, 6, 8),
    "rknet": (1e-1, 1e-2, 1e-3, 1e-4),
    "odenet": (1e-1, 1e-2, 1e-3, 1e-4),
}
"""Depths per model: ResNet blocks, RK-Net (dopri5) and ODE-Net tolerances (``rtol = atol``)."""

SMOKE_SWEEP: dict[str, tuple[float, ...]] = {
    "resnet": (1, 6),
    "rknet": (1e-1, 1e-3),
    "odenet": (1e-1, 1e-3),
}

DEPTH_LABEL = {"resnet": "residual blocks", "rknet": "tolerance", "odenet": "tolerance"}

ALLOCATOR_VAR = "TF_CPU_ALLOCATOR_USE_BFC"
"""Environment variable that makes TensorFlow's CPU allocator the BFC one, which keeps statistics."""

PEAK_KEYS = {"tf": "tf_peak_mb", "rss": "rss_peak_mb"}
"""Row field of each memory figure, in order of preference."""

SOURCE_LABEL = {
    "tf": "peak of TensorFlow's CPU allocator",
    "rss": "growth of the process's RSS high-water mark (VmHWM) over the first training step",
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def measure_step(model_name: str, depth: float, batch_size: int = 128, timed_steps: int = 3, seed: int = 0) -> dict:
    """Measure one training step in *this* process (call it in a fresh one; see :func:`measure`).

    Parameters
    ----------
    model_name : {"resnet", "rknet", "odenet", "mlp"}
    depth : float
        Residual blocks, or the solver tolerance of the RK-Net's dopri5 or the ODE-Net (ignored
        for the MLP).
    batch_size : int
    timed_steps : int
        Steps timed after the measured one.
    seed : int

    Returns
    -------
    dict
        ``model``, ``depth``, ``tf_peak_mb`` (``None`` where TensorFlow keeps no allocator
        statistics, the reason in ``tf_stats_unavailable``), ``rss_peak_mb`` (``None`` where
        the kernel does not allow resetting the high-water mark), ``allocator`` (the value of
        ``TF_CPU_ALLOCATOR_USE_BFC`` in this process, ``None`` if unset), ``step_seconds``,
        ``nfe_forward``, ``nfe_backward``, ``batch_size``.
    """
    import keras
    import tensorflow as tf

    from experiments.mnist.models import build_model
    from experiments.mnist.training import default_jit, make_step

    config: dict[str, Any] = {}
    if model_name == "resnet":
        config["resnet_blocks"] = int(depth)
    elif model_name == "rknet":
        config.update(rk_method="dopri5", tol=float(depth))
    elif model_name == "odenet":
        config["tol"] = float(depth)
    keras.utils.set_random_seed(seed)
    model = build_model(model_name, seed=seed, **config)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(seed)
    x = tf.convert_to_tensor(rng.random((batch_size, 28, 28, 1), dtype=np.float32))
    y = tf.convert_to_tensor(rng.integers(0, 10, batch_size).astype(np.int32))
    eager_step = make_step(model, optimizer, jit=False)
    gc.collect()
    can_reset = _reset_hwm()
    rss_before = _status_kb("VmRSS")
    float(eager_step(x, y)[0])
    rss_peak = (_status_kb("VmHWM") - rss_before) / 1024 if can_reset else None
    gc.collect()
    allocator = os.environ.get(ALLOCATOR_VAR)
    tf_peak, unavailable = None, None
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        tf_before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError as exc:
        tf_before = None
        unavailable = (
            f"TensorFlow keeps no CPU allocator statistics in this process ({ALLOCATOR_VAR}="
            f"{allocator if allocator is not None else 'unset'}; they need {ALLOCATOR_VAR}=true before "
            f"TensorFlow starts): {exc}"
        )
    loss, _, nfe_f, nfe_b = eager_step(x, y)
    float(loss)
    if tf_before is not None:
        tf_peak = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - tf_before) / 2**20
    step = make_step(model, optimizer, default_jit(model_name))
    float(step(x, y)[0])
    times = []
    for _ in range(timed_steps):
        tic = time.perf_counter()
        float(step(x, y)[0])
        times.append(time.perf_counter() - tic)
    return {
        "model": model_name,
        "depth": depth,
        "batch_size": batch_size,
        "tf_peak_mb": tf_peak,
        "tf_stats_unavailable": unavailable,
        "allocator": allocator,
        "rss_peak_mb": rss_peak,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_seconds": float(np.median(times)),
        "nfe_forward": int(nfe_f),
        "nfe_backward": int(nfe_b),
    }


def measure(model_name: str, depth: float, batch_size: int = 128, timed_steps: int = 3, timeout: float = 600) -> dict:
    """Run :func:`measure_step` in a fresh Python subprocess and return its result.

    The subprocess gets ``TF_CPU_ALLOCATOR_USE_BFC=true`` unless the variable is set in this
    process's environment, in which case its value is passed on.

    Parameters
    ----------
    model_name : str
    depth : float
    batch_size : int
    timed_steps : int
    timeout : float
        Seconds before the subprocess is abandoned.

    Returns
    -------
    dict

    Raises
    ------
    RuntimeError
        If the subprocess fails; its stderr tail is included.
    """
    cmd = [
        sys.executable, "-m", "experiments.mnist.memory", "--worker", "--models", model_name,
        "--depths", repr(depth), "--batch-size", str(batch_size), "--timed-steps", str(timed_steps),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.setdefault(ALLOCATOR_VAR, "true")
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {model_name} depth {depth} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_slope(depths: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``value = intercept + slope * depth``.

    Parameters
    ----------
    depths, values : sequence of float

    Returns
    -------
    slope, intercept : float
    """
    if len(depths) < 2:
        return 0.0, float(values[0]) if values else 0.0
    slope, intercept = np.polyfit(np.asarray(depths, float), np.asarray(values, float), 1)
    return float(slope), float(intercept)


def memory_source(rows: Sequence[dict]) -> str | None:
    """Which memory figure the rows of one model are compared by: ``"tf"``, ``"rss"`` or ``None``.

    TensorFlow's allocator peak when every row has it, else the RSS figure when every row has
    that, else ``None`` (nothing comparable was measured).

    Parameters
    ----------
    rows : sequence of dict
        Outputs of :func:`measure` for one model.

    Returns
    -------
    str or None
    """
    for source, key in PEAK_KEYS.items():
        if rows and all(r.get(key) is not None for r in rows):
            return source
    return None


def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """Per model: the rows, and slopes of memory and time per unit of depth.

    For the ResNet the unit is a residual block; for the RK-Net and the ODE-Net one forward
    dynamics evaluation (the x-axis is the measured forward NFE of the tolerance sweep).

    Parameters
    ----------
    rows : sequence of dict
        Outputs of :func:`measure`.

    Returns
    -------
    dict
        Per model: ``unit``, ``x``, ``rows``; ``memory_source`` (see :func:`memory_source`),
        ``peak_mb`` (that figure per row), ``peak_mb_per_unit`` and ``peak_mb_intercept``;
        ``memory_note`` (why TensorFlow's figure is not used, else ``None``); the slopes of each
        figure, ``tf_peak_mb_per_unit``, ``tf_peak_mb_intercept`` and ``rss_peak_mb_per_unit``
        (``None`` where a row lacks it); ``step_seconds_per_unit`` and ``step_seconds_intercept``.
    """
    out: dict[str, dict] = {}
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        by_nfe = name in ("rknet", "odenet")
        xs = [r["nfe_forward"] if by_nfe else r["depth"] for r in mine]
        unit = "forward NFE" if by_nfe else {"resnet": "block"}.get(name, "layer")
        slopes = {}
        for source, key in PEAK_KEYS.items():
            values = [r.get(key) for r in mine]
            slopes[source] = fit_slope(xs, values) if all(v is not None for v in values) else (None, None)
        source = memory_source(mine)
        note = None
        if source != "tf":
            reasons = sorted({r.get("tf_stats_unavailable") or "no TensorFlow allocator peak" for r in mine})
            note = "; ".join(reasons) + (
                f"; memory is the {SOURCE_LABEL['rss']} instead (coarser: it includes NumPy buffers and "
                "one-off costs of a first call)" if source == "rss" else "; no RSS high-water mark either"
            )
        t_slope, t_icpt = fit_slope(xs, [r["step_seconds"] for r in mine])
        out[name] = {
            "unit": unit,
            "x": xs,
            "rows": mine,
            "memory_source": source,
            "memory_note": note,
            "peak_mb": [r[PEAK_KEYS[source]] for r in mine] if source else None,
            "peak_mb_per_unit": slopes[source][0] if source else None,
            "peak_mb_intercept": slopes[source][1] if source else None,
            "tf_peak_mb_per_unit": slopes["tf"][0],
            "tf_peak_mb_intercept": slopes["tf"][1],
            "rss_peak_mb_per_unit": slopes["rss"][0],
            "step_seconds_per_unit": t_slope,
            "step_seconds_intercept": t_icpt,
        }
    return out


def sweep(
    sweep_spec: dict[str, Sequence[float]] = DEFAULT_SWEEP,
    batch_size: int = 128,
    timed_steps: int = 3,
    out: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> dict:
    """Measure every configuration of ``sweep_spec`` (one subprocess each) and summarise.

    Parameters
    ----------
    sweep_spec : dict
        Model name -> depths.
    batch_size, timed_steps : int
    out : str or path-like, optional
        JSON file to write.
    verbose : bool

    Returns
    -------
    dict
        ``{"batch_size", "method", "allocator", "notes", "models": summarize(rows)}``:
        ``allocator`` is the ``TF_CPU_ALLOCATOR_USE_BFC`` the workers saw, ``notes`` one line
        per model whose memory is not TensorFlow's allocator peak.
    """
    rows = []
    for name, depths in sweep_spec.items():
        for depth in depths:
            row = measure(name, depth, batch_size, timed_steps)
            rows.append(row)
            if verbose:
                tf_mb, rss = (("n/a" if v is None else f"{v:.1f}") for v in (row["tf_peak_mb"], row["rss_peak_mb"]))
                print(
                    f"[memory] {name:7s} {DEPTH_LABEL.get(name, 'depth')} {depth:<8g} TF peak {tf_mb:>8s} MB"
                    f"  RSS peak {rss:>7s} MB  {row['step_seconds']:.3f} s/step  NFE {row['nfe_forward']}/"
                    f"{row['nfe_backward']}",
                    flush=True,
                )
    models = summarize(rows)
    allocators = sorted({str(r.get("allocator")) for r in rows})
    result = {
        "batch_size": batch_size,
        "method": "fresh subprocess per configuration; TF CPU allocator peak and VmHWM growth over one training step",
        "allocator": f"{ALLOCATOR_VAR}={'/'.join(allocators)} in the worker processes",
        "notes": [f"{name}: {info['memory_note']}" for name, info in models.items() if info["memory_note"]],
        "models": models,
    }
    if verbose:
        for note in result["notes"]:
            print(f"[memory] note: {note}", flush=True)
    if out is not None:
        write_atomic(out, json.dumps(result, indent=2))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a sweep (default) or one ``--worker`` measurement printed as JSON."""
    parser = argparse.ArgumentParser(prog="python -m experiments.mnist.memory",
                                     description="Peak memory and time of one training step vs depth")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_SWEEP), choices=["mlp", *DEFAULT_SWEEP],
                        help="models to measure (default: %(default)s)")
    parser.add_argument("--depths", nargs="+", type=float, default=None,
                        help="override the depths of every model: residual blocks, RK4 steps or ODE tolerances")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: %(default)s)")
    parser.add_argument("--timed-steps", type=int, default=3,
                        help="steps timed after the measured one; the median is reported (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="two depths per model, batch 32")
    parser.add_argument("--out", default="runs/table1/memory.json", help="JSON file to write (default: %(default)s)")
    add_verbose_argument(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_step(args.models[0], args.depths[0], args.batch_size, args.timed_steps)))
        return
    base = SMOKE_SWEEP if args.smoke else DEFAULT_SWEEP
    spec = {m: tuple(args.depths) if args.depths else base.get(m, (1,)) for m in args.models}
    batch = 32 if args.smoke and args.batch_size == 128 else args.batch_size
    sweep(spec, batch, args.timed_steps, args.out)


if __name__ == "__main__":
    run_command(__spec__.name, main)
