"""Time odegrad against its peers and print a Markdown table.

    python -m benchmarks.peers [--problems kinetics spiral-mlp robertson mlp-64] [--repeats N]
                               [--quick] [--timeout S] [--inline] [--out FILE]

Implementations (rows), all at the problem's tolerances:

* ``odegrad:<variant>`` -- ``odegrad.odeint`` (``lsoda``, ``adams``, ``bdf``; ``+checkpoint``,
  ``+forward``, ``+interpolate`` name the ``adjoint=`` option, without one it is the default
  ``"auto"``, and the note says which method it ran; ``+seminorm`` is ``adjoint_seminorm=True``;
  ``+mxstep`` is ``mxstep=100000``), gradient by ``autograd.grad``;
* ``autograd`` -- autograd's built-in ``autograd.scipy.integrate.odeint`` (Appendix D of the paper);
* ``fd`` -- ``scipy.integrate.odeint`` with central finite differences (2P forward solves);
* ``torchdiffeq-adjoint[+seminorm]`` / ``torchdiffeq`` -- ``odeint_adjoint`` / backprop through
  ``odeint`` (dopri5, float64);
* ``jax`` -- ``jax.experimental.ode.odeint`` (dopri5 with its adjoint, float64, ``jax.jit``).

Each (problem, implementation) cell runs in its own subprocess under a wall-clock cap
(``--timeout``, default 60 s): one warm-up call (JIT compilation for JAX), then up to ``--repeats``
timed calls of the forward loss and of value-and-gradient; medians are reported. odegrad compiles
the derivative evaluations of ``f`` (``odegrad.compiled``, where JAX is installed) in its warm-up
call too (``COMPILE_AFTER = 0``; by default a process compiles a structure of ``f`` after 1,000
evaluations), and its note says which backend evaluated them. A cell that
does not finish in time is reported as "did not finish". Peers that are not installed are skipped
with a note. ``--inline`` runs every cell in this process instead (no cap; used by the tests).

Columns: forward and gradient (value + gradient) medians in seconds; grad/fwd; forward and
backward NFE (backward: evaluations made while computing the gradient beyond the forward pass;
where odegrad's forward pass solved ``y`` with its sensitivities instead of a plain forward solve,
noted "in the forward pass", all evaluations of that gradient call;
FD: all 2P solves; backprop: 0, it replays the recorded graph); the gradient's relative error
``max|g - g_ref| / max|g_ref|`` against the reference named under the table; and the ratios
odegrad / this row, with odegrad = the first odegrad variant that succeeded (below 1: odegrad
faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from odegrad.atomic import write_atomic

from . import cases

COLUMNS = ["implementation", "forward s", "gradient s", "grad/fwd", "fwd NFE", "bwd NFE",
           "grad rel. error", "fwd odegrad/this", "grad odegrad/this", "note"]

_REQUIRES = {"torchdiffeq-adjoint": ("torch", "torchdiffeq"),
             "torchdiffeq-adjoint+seminorm": ("torch", "torchdiffeq"),
             "torchdiffeq": ("torch", "torchdiffeq"), "jax": ("jax",)}


def implementations(problem: cases.Case) -> list[str]:
    return [f"odegrad:{v}" for v in problem.odegrad_variants] + list(problem.peers)


def missing_modules(impl: str) -> list[str]:
    return [m for m in _REQUIRES.get(impl, ()) if importlib.util.find_spec(m) is None]


# ------------------------------------------------------------------------------------- runners
# A runner has forward() -> (loss, fwd_nfe) and gradient() -> (loss, grad, fwd_nfe, bwd_nfe).


class _Counter:
    def __init__(self, fun: Callable):
        self.fun, self.n = fun, 0

    def __call__(self, *args):
        self.n += 1
        return self.fun(*args)


def _odegrad_runner(problem: cases.Case, variant: str):
    import autograd
    import autograd.numpy as anp

    import odegrad
    import odegrad.compiled

    kwargs = cases.variant_kwargs(variant)
    rhs = problem.rhs

    def f(y, t, p):
        return rhs(y, t, p, anp)

    def loss(p):
        if "ivp_method" in kwargs:
            t = problem.t
            ys = odegrad.solve_ivp(lambda tt, y, q: f(y, tt, q), (t[0], t[-1]), problem.y0, method=kwargs["ivp_method"],
                                   t_eval=t, args=(p,), rtol=problem.rtol, atol=problem.atol).y.T
        else:
            ys = odegrad.odeint(f, problem.y0, problem.t, args=(p,), rtol=problem.rtol,
                                atol=problem.atol, **kwargs)
        return problem.loss(ys, problem.data, anp)

    value_and_grad = autograd.value_and_grad(loss)

    class Runner:
        def forward(self):
            with odegrad.record_stats() as rec:
                value = loss(problem.p0)
            self.plain_nfe = rec.forward.nfe
            return float(value), rec.forward.nfe

        def gradient(self):
            # Derivative evaluations compiled in the warm-up call, as JAX's jit is.
            saved, odegrad.compiled.COMPILE_AFTER = odegrad.compiled.COMPILE_AFTER, 0
            try:
                with odegrad.record_stats() as rec:
                    value, g = value_and_grad(problem.p0)
            finally:
                odegrad.compiled.COMPILE_AFTER = saved
            backends = sorted({info.derivatives for info in rec.calls if info.derivatives})
            fused = any(info.sensitivities_in_forward for info in rec.calls)
            self.picked = ", ".join(sorted(set(rec.gradient_methods))) + (f" ({', '.join(backends)})" if backends else "") \
                + (", in the forward pass" if fused else "")
            if not fused:
                return float(value), np.asarray(g), rec.forward.nfe, rec.backward.nfe
            # The forward pass solved y with its sensitivities, in place of a plain forward solve:
            # all of the gradient call's evaluations count as its gradient work (forward() runs
            # before gradient() in every cell and gives the forward count).
            return float(value), np.asarray(g), self.plain_nfe, rec.forward.nfe + rec.backward.nfe

    return Runner()


def _autograd_runner(problem: cases.Case):
    import autograd
    import autograd.numpy as anp
    from autograd.builtins import tuple as ag_tuple
    from autograd.scipy.integrate import odeint as ag_odeint

    f = _Counter(lambda y, t, p: problem.rhs(y, t, p, anp))

    def loss(p):
        ys = ag_odeint(f, problem.y0, problem.t, ag_tuple((p,)), rtol=problem.rtol,
                       atol=problem.atol)
        return problem.loss(ys, problem.data, anp)


    class Runner:
        def forward(self):
            f.n = 0
            value = loss(problem.p0)
            return float(value), f.n

        def gradient(self):
            f.n = 0
            vjp_fn, value = autograd.make_vjp(loss)(problem.p0)
            fwd = f.n
            g = vjp_fn(1.0)
            return float(value), np.asarray(g), fwd, f.n - fwd

    return Runner()


def _fd_runner(problem: cases.Case, ivp_method: str | None = None):
    """Central differences of scipy's ``odeint`` (or of ``solve_ivp`` with ``ivp_method``)."""
    import scipy.integrate

    f = _Counter(lambda y, t, p: problem.rhs(y, t, p, np))

    def loss(p):
        if ivp_method:
            t = problem.t
            ys = scipy.integrate.solve_ivp(lambda tt, y, q: f(y, tt, q), (t[0], t[-1]), problem.y0, method=ivp_method,
                                           t_eval=t, args=(p,), rtol=problem.rtol, atol=problem.atol).y.T
        else:
            ys = scipy.integrate.odeint(f, problem.y0, problem.t, args=(p,), rtol=problem.rtol,
                                        atol=problem.atol)
        return problem.loss(ys, problem.data, np)

    class Runner:
        def forward(self):
            f.n = 0
            value = loss(problem.p0)
            return float(value), f.n

        def gradient(self):
            f.n = 0
            value = loss(problem.p0)
            fwd = f.n
            p0 = problem.p0
            g = np.empty_like(p0)
            steps = np.cbrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(p0))
            for k in range(p0.size):
                e = np.zeros_like(p0)
                e[k] = steps[k]
                g[k] = (loss(p0 + e) - loss(p0 - e)) / (2 * steps[k])
            return float(value), g, fwd, f.n - fwd

    return Runner()


def _torch_runner(problem: cases.Case, adjoint: bool, seminorm: bool = False):
    import torch
    import torchdiffeq

    torch.set_num_threads(os.cpu_count() or 1)
    dtype = torch.float64

    class Func(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor(problem.p0, dtype=dtype))
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return problem.rhs(y, t, self.p, torch)

    func = Func()
    y0 = torch.tensor(problem.y0, dtype=dtype)
    t = torch.tensor(problem.t, dtype=dtype)
    data = {k: torch.tensor(v, dtype=dtype) for k, v in problem.data.items()}
    opts = dict(rtol=problem.rtol, atol=problem.atol, method="dopri5")
    grad_opts = dict(opts, adjoint_options=dict(norm="seminorm")) if seminorm else opts

    class Runner:
        def forward(self):
            func.nfe = 0
            with torch.no_grad():
                value = problem.loss(torchdiffeq.odeint(func, y0, t, **opts), data, torch)
            return float(value), func.nfe

        def gradient(self):
            func.nfe = 0
            func.p.grad = None
            solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
            value = problem.loss(solve(func, y0, t, **grad_opts), data, torch)
            fwd = func.nfe
            value.backward()
            return float(value), func.p.grad.numpy().copy(), fwd, func.nfe - fwd

    return Runner()


def _jax_runner(problem: cases.Case):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.experimental.ode import odeint as jodeint

    y0, t, p0 = jnp.asarray(problem.y0), jnp.asarray(problem.t), jnp.asarray(problem.p0)
    data = {k: jnp.asarray(v) for k, v in problem.data.items()}

    def loss(p):
        ys = jodeint(lambda y, tt, q: problem.rhs(y, tt, q, jnp), y0, t, p, rtol=problem.rtol,
                     atol=problem.atol)
        return problem.loss(ys, data, jnp)

    fwd = jax.jit(loss)
    vg = jax.jit(jax.value_and_grad(loss))

    class Runner:
        def forward(self):
            return float(fwd(p0).block_until_ready()), None

        def gradient(self):
            value, g = vg(p0)
            g = np.asarray(g.block_until_ready())
            return float(value), g, None, None

    return Runner()


def make_runner(problem: cases.Case, impl: str):
    if impl.startswith("odegrad:"):
        return _odegrad_runner(problem, impl.split(":", 1)[1])
    if impl == "autograd":
        return _autograd_runner(problem)
    if impl == "fd":
        return _fd_runner(problem)
    if impl.startswith("fd:ivp-"):
        return _fd_runner(problem, impl.split("ivp-", 1)[1])
    if impl == "torchdiffeq-adjoint":
        return _torch_runner(problem, adjoint=True)
    if impl == "torchdiffeq-adjoint+seminorm":
        return _torch_runner(problem, adjoint=True, seminorm=True)
    if impl == "torchdiffeq":
        return _torch_runner(problem, adjoint=False)
    if impl == "jax":
        return _jax_runner(problem)
    raise ValueError(f"unknown implementation {impl!r}")


# ----------------------------------------------------------------------------------------- cells

def run_cell(problem_name: str, impl: str, repeats: int, budget: float | None) -> dict:
    """Time one implementation on one problem; ``budget`` (s) bounds the timed repeats."""
    start = time.perf_counter()
    problem = cases.get(problem_name)
    result: dict[str, Any] = {"problem": problem_name, "impl": impl, "status": "ok", "note": ""}
    missing = missing_modules(impl)
    if missing:
        result.update(status="skipped", note=f"skipped: {', '.join(missing)} not installed")
        return result
    if impl == "fd" and problem.n_params > problem.fd_max_params:
        runner = make_runner(problem, impl)
        t0 = time.perf_counter()
        runner.forward()
        t_fwd = time.perf_counter() - t0
        result.update(status="estimated", forward=[t_fwd], gradient=[(2 * problem.n_params + 1) * t_fwd],
                      note=f"not run: {2 * problem.n_params} solves, estimated from the forward time")
        return result
    runner = make_runner(problem, impl)
    t0 = time.perf_counter()
    runner.forward()
    t1 = time.perf_counter()
    value, g, fwd_nfe, bwd_nfe = runner.gradient()
    t2 = time.perf_counter()
    warm = {"forward": t1 - t0, "gradient": t2 - t1}
    if t2 - t0 < 0.5 or impl == "jax":  # a second, untimed call: the first includes JIT compilation and caches
        t0 = time.perf_counter()
        runner.forward()
        t1 = time.perf_counter()
        runner.gradient()
        t2 = time.perf_counter()
        compile_s = warm["forward"] + warm["gradient"]
        warm = {"forward": t1 - t0, "gradient": t2 - t1, "first": compile_s}
    per_round = max(t2 - t0, 0.2)
    n = repeats
    if budget is not None:
        remaining = budget - (time.perf_counter() - start)
        n = max(0, min(repeats, int(0.8 * remaining / per_round)))
    fwd_times, grad_times = [], []
    f_nfe = None
    # calls shorter than ~0.1 s are repeated within each timed repeat and averaged
    inner_f = max(1, min(100, int(0.1 / max(warm["forward"], 1e-6))))
    inner_g = max(1, min(100, int(0.1 / max(warm["gradient"], 1e-6))))
    for _ in range(n):
        t0 = time.perf_counter()
        for _ in range(inner_f):
            _, f_nfe = runner.forward()
        t1 = time.perf_counter()
        for _ in range(inner_g):
            value, g, fwd_nfe, bwd_nfe = runner.gradient()
        t2 = time.perf_counter()
        fwd_times.append((t1 - t0) / inner_f)
        grad_times.append((t2 - t1) / inner_g)
    if not fwd_times:
        fwd_times, grad_times = [warm["forward"]], [warm["gradient"]]
        result["note"] = "1 run (the warm-up) within the time cap"
    if getattr(runner, "picked", None):
        result["note"] = (result["note"] + "; " if result["note"] else "") + f"gradient by {runner.picked}"
    if impl == "jax":
        result["note"] = (result["note"] + "; " if result["note"] else "") + \
            f"jit compile+first run {warm.get('first', warm['forward'] + warm['gradient']):.2f} s; NFE not exposed"
    result.update(forward=fwd_times, gradient=grad_times, fwd_nfe=fwd_nfe if f_nfe is None else f_nfe,
                  bwd_nfe=bwd_nfe, loss=value, grad=np.asarray(g, dtype=float).tolist(),
                  repeats=len(fwd_times))
    return result


def _run_cell_guarded(problem_name: str, impl: str, repeats: int, budget: float | None) -> dict:
    try:
        return run_cell(problem_name, impl, repeats, budget)
    except Exception as exc:  # a failing peer is a result, not a crash of the benchmark
        return {"problem": problem_name, "impl": impl, "status": "failed",
                "note": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"}


def run_cell_subprocess(problem_name: str, impl: str, repeats: int, timeout: float) -> dict:
    missing = missing_modules(impl)
    if missing:
        return {"problem": problem_name, "impl": impl, "status": "skipped",
                "note": f"skipped: {', '.join(missing)} not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cell.json")
        cmd = [sys.executable, "-m", "benchmarks.peers", "--cell", problem_name, impl,
               "--repeats", str(repeats), "--timeout", str(timeout), "--cell-out", out]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            proc = subprocess.run(cmd, cwd=root, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"problem": problem_name, "impl": impl, "status": "dnf",
                    "note": f"did not finish in {timeout:g} s"}
        if os.path.exists(out):
            with open(out) as fh:
                return json.load(fh)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"problem": problem_name, "impl": impl, "status": "failed",
                "note": f"failed (exit {proc.returncode}): {tail[0][:120]}"}


# ----------------------------------------------------------------------------------------- table

def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 1e-3:
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def summarize(results: list[dict], g_ref: np.ndarray | None) -> list[dict]:
    """Medians, grad/fwd, errors and ratios against the first odegrad row."""
    rows = []
    base = next((r for r in results if r["impl"].startswith("odegrad:") and r["status"] == "ok"), None)
    base_fwd = statistics.median(base["forward"]) if base else None
    base_grad = statistics.median(base["gradient"]) if base else None
    for r in results:
        row = {"implementation": r["impl"], "status": r["status"], "note": r.get("note", "")}
        if r["status"] in ("ok", "estimated"):
            fwd = statistics.median(r["forward"])
            grad = statistics.median(r["gradient"])
            err = None
            if g_ref is not None and r.get("grad") is not None:
                g = np.asarray(r["grad"])
                err = float(np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)))
                if not math.isfinite(err):
                    err = float("inf")
            row.update({"forward s": fwd, "gradient s": grad, "grad/fwd": grad / fwd,
                        "fwd NFE": r.get("fwd_nfe"), "bwd NFE": r.get("bwd_nfe"),
                        "grad rel. error": err,
                        "fwd odegrad/this": base_fwd / fwd if base_fwd else None,
                        "grad odegrad/this": base_grad / grad if base_grad else None,
                        "repeats": r.get("repeats", 0)})
        rows.append(row)
    return rows


def markdown_rows(rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        cells = []
        for col in COLUMNS:
            if col == "implementation":
                cells.append(row["implementation"])
            elif col == "note":
                cells.append(row.get("note", ""))
            elif row["status"] not in ("ok", "estimated"):
                cells.append("-")
            elif col == "grad rel. error":
                err = row.get(col)
                cells.append("n/a" if err is None else f"{err:.1e}")
            elif col in ("fwd NFE", "bwd NFE"):
                v = row.get(col)
                cells.append("n/a" if v is None else str(int(v)))
            else:
                cells.append(_fmt(row.get(col)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _find(rows, impl):
    return next((r for r in rows if r["implementation"] == impl), None)


def targets(problem: cases.Case, rows: list[dict]) -> list[str]:
    """The targets of the compiled-evaluation issue, checked on this run's medians (default variant
    and best variant)."""
    og = [r for r in rows if r["implementation"].startswith("odegrad:") and r["status"] == "ok"]
    if not og:
        return ["- no odegrad result"]
    default = og[0]
    best = min(og, key=lambda r: r["gradient s"])
    out = []

    def speedup(peer_name, label, threshold=None, kind=">="):
        peer = _find(rows, peer_name)
        for who in ([default] if best is default else [default, best]):
            name = who["implementation"]
            if peer is None or peer["status"] == "skipped":
                out.append(f"- {label}: {peer_name} not run")
                return
            if peer["status"] in ("dnf",):
                out.append(f"- {label} ({name}): {peer_name} did not finish; odegrad {who['gradient s']:.3g} s")
                continue
            if peer["status"] not in ("ok", "estimated"):
                out.append(f"- {label}: {peer_name} {peer['status']}")
                return
            ratio = peer["gradient s"] / who["gradient s"]
            verdict = ""
            if threshold is not None:
                ok = ratio >= threshold if kind == ">=" else ratio > threshold
                verdict = " -> " + ("MET" if ok else "NOT MET")
            out.append(f"- {label} ({name}): {peer_name} / odegrad gradient time = {ratio:.3g}{verdict}")

    if problem.name == "kinetics":
        speedup("autograd", ">= 10x faster than autograd built-in", 10)
        speedup("fd", "within 2x of scipy + finite differences (fd / odegrad >= 0.5)", 0.5)
        speedup("jax", "ratio to JAX (reported)")
    elif problem.name == "spiral-mlp":
        speedup("autograd", ">= 50x faster than autograd built-in", 50)
        speedup("fd", "faster than FD", 1, ">")
        speedup("torchdiffeq-adjoint", "faster than torchdiffeq adjoint", 1, ">")
        speedup("jax", "within 2x of JAX (jax / odegrad >= 0.5)", 0.5)
    elif problem.name == "robertson":
        for who in rows:
            if who["implementation"].startswith("odegrad:") and who["status"] != "ok":
                out.append(f"- {who['implementation']}: {who['status']} ({who['note'][:60]})")
        err = default.get("grad rel. error")
        ok = err is not None and err <= 1e-5
        out.append(f"- right to 1e-5 with no adjoint option ({default['implementation']}): error "
                   f"{_fmt(err)} in {default['gradient s']:.3g} s -> {'MET' if ok else 'NOT MET'}")
        speedup("fd", "faster than scipy + finite differences", 1, ">")
        speedup("jax", "ratio to JAX (reported)")
    elif problem.name == "mlp-64":
        speedup("torchdiffeq-adjoint", "faster than torchdiffeq adjoint", 1, ">")
        speedup("jax", "ratio to JAX (reported)")
    fwd, bwd = default.get("fwd NFE"), default.get("bwd NFE")
    if fwd and bwd is not None:
        ok = bwd <= 2 * fwd
        out.append(f"- backward NFE <= 2x forward NFE for the default ({default['implementation']}, "
                   f"{default.get('note') or 'auto'}): {bwd} / {fwd} = {bwd / fwd:.2f} -> {'MET' if ok else 'NOT MET'}")
    return out


def _versions() -> str:
    out = []
    for mod in ("numpy", "scipy", "autograd", "torch", "torchdiffeq", "jax"):
        if importlib.util.find_spec(mod) is None:
            out.append(f"{mod} absent")
            continue
        try:
            from importlib.metadata import version
            out.append(f"{mod} {version(mod)}")
        except Exception:
            out.append(f"{mod} ?")
    return ", ".join(out)


def header(argv: list[str]) -> list[str]:
    cmd = "python -m benchmarks.peers" + ("" if not argv else " " + shlex.join(argv))
    return [
        "# odegrad benchmarks",
        "",
        f"- command: `{cmd}`",
        f"- machine: `{platform.platform()}`, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share the CPUs)",
        f"- versions: {_versions()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "- times are medians in seconds; gradient = value and gradient of the loss; ratios are "
        "odegrad (the first odegrad row that succeeded) / this row, so below 1 means odegrad is faster; torchdiffeq "
        "and JAX use dopri5 in float64",
    ]


def run(argv: list[str] | None = None, stream=None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    stream = sys.stdout if stream is None else stream
    if args.cell:
        problem_name, impl = args.cell
        result = _run_cell_guarded(problem_name, impl, args.repeats, args.timeout)
        write_atomic(args.cell_out, json.dumps(result))
        return ""
    repeats = 1 if args.quick and args.repeats is None else (args.repeats or 5)
    timeout = args.timeout if args.timeout is not None else (20.0 if args.quick else 60.0)
    lines = header(argv)
    print("\n".join(lines), file=stream, flush=True)
    for name in args.problems:
        problem = cases.get(name)
        impls = implementations(problem)
        if args.impls:
            impls = [i for i in impls if i in args.impls or i.split(":")[0] in args.impls]
        t0 = time.perf_counter()
        g_ref, how = cases.reference_gradient(problem)
        ref_time = time.perf_counter() - t0
        results = []
        for impl in impls:
            if args.inline:
                results.append(_run_cell_guarded(name, impl, repeats, None))
            else:
                results.append(run_cell_subprocess(name, impl, repeats, timeout))
        rows = summarize(results, g_ref)
        section = ["", f"## {name}", "", problem.description + f"; {problem.n_params} parameters.", ""]
        section += markdown_rows(rows)
        section += ["", f"Reference gradient: {how} ({ref_time:.2f} s). Repeats: {repeats}, "
                    f"time cap per cell: {'none (inline)' if args.inline else f'{timeout:g} s'}.",
                    "", "Targets:"] + targets(problem, rows)
        print("\n".join(section), file=stream, flush=True)
        lines += section
    text = "\n".join(lines) + "\n"
    if args.out:
        write_atomic(args.out, text)
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(cases.CASES), choices=list(cases.CASES),
                        help="problems to time (default: all)")
    parser.add_argument("--impls", nargs="+", default=None,
                        help="only these implementations (e.g. odegrad autograd fd jax, or odegrad:adams)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per cell (default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 repeat and a 20 s cap per cell")
    parser.add_argument("--timeout", type=float, default=None, help="wall-clock cap per cell in seconds (default 60)")
    parser.add_argument("--inline", action="store_true", help="run the cells in this process, without a cap")
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    parser.add_argument("--cell", nargs=2, metavar=("PROBLEM", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--cell-out", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    run()


if __name__ == "__main__":
    main()
