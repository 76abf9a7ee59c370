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
  :func:`tf.config.experimental.reset_memory_stats` (works on CPU once TensorFlow has
  allocated; blind to NumPy buffers).  This is the figure used in ``table1.md``.

``step_seconds`` is the median wall time of a few further steps of the training step actually
used by :mod:`experiments.training` (compiled except for the ODE-Net).  A least-squares line of
memory and time against depth gives the per-layer slope reported in ``table1.md``.

Usage::

    python -m experiments.memory --out runs/table1/memory.json
    python -m experiments.memory --models resnet --depths 1 2 4 8 --batch-size 128
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
        ``model``, ``depth``, ``tf_peak_mb``, ``rss_peak_mb`` (``None`` where the kernel does
        not allow resetting the high-water mark), ``step_seconds``, ``nfe_forward``,
        ``nfe_backward``, ``batch_size``.
    """
    import keras
    import tensorflow as tf

    from experiments.models import build_model
    from experiments.training import _make_step, default_jit

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
    eager_step = _make_step(model, optimizer, jit=False)
    gc.collect()
    can_reset = _reset_hwm()
    rss_before = _status_kb("VmRSS")
    float(eager_step(x, y)[0])
    rss_peak = (_status_kb("VmHWM") - rss_before) / 1024 if can_reset else None
    gc.collect()
    tf.config.experimental.reset_memory_stats("CPU:0")
    tf_before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    loss, _, nfe_f, nfe_b = eager_step(x, y)
    float(loss)
    tf_peak = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - tf_before) / 2**20
    step = _make_step(model, optimizer, default_jit(model_name))
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
        "rss_peak_mb": rss_peak,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_seconds": float(np.median(times)),
        "nfe_forward": int(nfe_f),
        "nfe_backward": int(nfe_b),
    }


def measure(model_name: str, depth: float, batch_size: int = 128, timed_steps: int = 3, timeout: float = 600) -> dict:
    """Run :func:`measure_step` in a fresh Python subprocess and return its result.

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
        sys.executable, "-m", "experiments.memory", "--worker", "--models", model_name,
        "--depths", repr(depth), "--batch-size", str(batch_size), "--timed-steps", str(timed_steps),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = Path(__file__).resolve().parent.parent
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
    """
    out: dict[str, dict] = {}
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        by_nfe = name in ("rknet", "odenet")
        xs = [r["nfe_forward"] if by_nfe else r["depth"] for r in mine]
        unit = "forward NFE" if by_nfe else {"resnet": "block"}.get(name, "layer")
        tf_slope, tf_icpt = fit_slope(xs, [r["tf_peak_mb"] for r in mine])
        rss = [r["rss_peak_mb"] for r in mine]
        rss_slope = fit_slope(xs, rss)[0] if all(v is not None for v in rss) else None
        t_slope, t_icpt = fit_slope(xs, [r["step_seconds"] for r in mine])
        out[name] = {
            "unit": unit,
            "x": xs,
            "rows": mine,
            "tf_peak_mb_per_unit": tf_slope,
            "tf_peak_mb_intercept": tf_icpt,
            "rss_peak_mb_per_unit": rss_slope,
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
        ``{"batch_size", "method", "models": summarize(rows)}``.
    """
    rows = []
    for name, depths in sweep_spec.items():
        for depth in depths:
            row = measure(name, depth, batch_size, timed_steps)
            rows.append(row)
            if verbose:
                rss = "n/a" if row["rss_peak_mb"] is None else f"{row['rss_peak_mb']:.1f}"
                print(
                    f"[memory] {name:7s} {DEPTH_LABEL.get(name, 'depth')} {depth:<8g} TF peak {row['tf_peak_mb']:8.1f} MB"
                    f"  RSS peak {rss:>7s} MB  {row['step_seconds']:.3f} s/step  NFE {row['nfe_forward']}/"
                    f"{row['nfe_backward']}",
                    flush=True,
                )
    result = {
        "batch_size": batch_size,
        "method": "fresh subprocess per configuration; TF CPU allocator peak and VmHWM growth over one training step",
        "models": summarize(rows),
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a sweep (default) or one ``--worker`` measurement printed as JSON."""
    parser = argparse.ArgumentParser(description="Peak memory and time of one training step vs depth")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_SWEEP), choices=["mlp", *DEFAULT_SWEEP])
    parser.add_argument("--depths", nargs="+", type=float, default=None, help="override the depths of every model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--timed-steps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="two depths per model, batch 32")
    parser.add_argument("--out", default="runs/table1/memory.json")
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
    main()
