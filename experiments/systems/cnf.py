"""Continuous normalizing flows (Chen et al. 2018, section 4): Figures 4, 5 and 6.

The CNF is the paper's (a hypernetwork generates the ``M`` hidden units' ``W``, ``b``, ``U`` and
gate from ``t``; exact trace of the Jacobian in the instantaneous change of variables), the
baseline the planar normalizing flow of depth ``K``; models in :mod:`experiments.systems.cnf_models`,
resumable training in :mod:`experiments.systems.cnf_training`.

Protocol (``python -m experiments.systems.cnf run``)
----------------------------------------------------
density matching (Figure 4)
    Minimise ``KL(q || p)`` to Rezende & Mohamed's ``U1, U2, U3`` for ``K = M`` in 1 2 8 32 64 and
    3 seeds: CNF 10,000 Adam steps (step size 1e-2, cosine decay), planar NF 20,000 Adam steps
    (1e-2, cosine decay; the best of 3e-4 ... 1e-2 for K = 64 in ``nf_lr.json``), batches of 256.
    The CNF trains at rtol = atol = 1e-4 because at 1e-3 the adjoint gradient of a trained small
    CNF is measurably less accurate and U1 at M = 1 trains worse (``gradient-error`` and
    ``tolerance`` below; their results in ``experiments/results/cnf/README.md``). The KL (nats;
    ``log Z`` on a grid) is estimated on 10,000 fresh samples, the CNF integrated at rtol = atol = 1e-7.
maximum likelihood (Figure 5)
    CNF (M = 64) and planar NF (K = 64) fitted to two circles and two moons (data at ``t = 0``,
    noise at ``t = 1``); test NLL on 10,000 fresh points against the data's entropy.
Figure 6
    The density-matching CNFs (M = 64, seed 0) carrying noise to each target over time.

Every fit checkpoints to ``--out`` (default ``experiments/results/cnf``) every 200 steps; rerunning
the same command resumes. ``python -m experiments.systems.cnf summarize`` writes ``figure4.json``,
``figure5.json`` and the figures from the fits finished so far; ``python -m experiments.systems.cnf
tolerance`` measures what the training tolerance does to cost and KL, ``python -m experiments.systems.cnf
nf-lr`` what the step size does to the deepest planar NF.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from autograd import value_and_grad

from experiments.cli import run_command

from . import cnf_models as cm
from .cnf_figures import plot_figure4, plot_figure5, plot_figure6
from .cnf_training import Budget, Fit, load_current, run_fit
from .common import save_json

OUT = Path(__file__).resolve().parents[1] / "results" / "cnf"
SIZES = (1, 2, 8, 32, 64)
TARGETS = ("U1", "U2", "U3")
SEEDS = (0, 1, 2)
BUDGET_HELP = {
    "cnf_iters": "Adam steps per CNF fit", "nf_iters": "Adam steps per planar-NF fit",
    "cnf_lr": "initial CNF step size (cosine decay to 0)", "nf_lr": "initial NF step size (cosine decay to 0)",
    "batch": "samples per step", "train_rtol": "CNF solver rtol in training",
    "train_atol": "CNF solver atol in training", "t_end": "length of the CNF's time interval",
    "eval_samples": "fresh samples per reported KL / NLL",
}


def protocol(sizes=SIZES, targets=TARGETS, seeds=SEEDS, datasets=tuple(cm.DATASETS),
             ml_size: int = 64) -> list[Fit]:
    """All fits in the order they are run: seed by seed, density matching (small K = M first, where the
    NF is strongest, every target at one size before the next size) then likelihood."""
    fits = []
    for seed in seeds:
        fits += [Fit("dm", model, size, target, seed)
                 for size in sizes for target in targets for model in ("nf", "cnf")]
        fits += [Fit("ml", model, ml_size, name, seed) for name in datasets for model in ("nf", "cnf")]
    return fits


def data_entropy(name: str, n: int = 20_000, noise: float = 0.08) -> float:
    """Differential entropy (nats) of a data set, ``-E log p(x)`` with ``p`` by quadrature.

    The data are curves (circles, half circles) convolved with ``N(0, noise^2 I)``; ``p(x)`` is
    the mean of that Gaussian over 2,000 equally spaced points along each curve (midpoint rule).
    """
    x = cm.DATASETS[name](n, np.random.default_rng(2024), noise)
    s = (np.arange(2000) + 0.5) / 2000
    if name == "circles":
        a = 2 * np.pi * s
        curve = np.concatenate([r * np.stack([np.cos(a), np.sin(a)], 1) for r in (1.0, 2.0)])
    else:
        a = np.pi * s
        upper, lower = np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1)
        curve = (np.concatenate([upper, lower]) - np.array([0.5, 0.25])) * 1.5
    logp = np.empty(n)
    for i in range(0, n, 1000):
        d2 = np.sum((x[i:i + 1000, None, :] - curve[None]) ** 2, axis=-1)
        logp[i:i + 1000] = np.log(np.mean(np.exp(-0.5 * d2 / noise ** 2), axis=1)) - np.log(2 * np.pi * noise ** 2)
    return float(-np.mean(logp))


def summarize(out: Path, budget: Budget, fits: list[Fit]) -> dict[str, Any]:
    """Write ``figure4.json``, ``figure5.json`` and the figures from the finished fits."""
    done = {}
    for f in fits:
        try:
            state = load_current(out, f, budget)
        except ValueError as err:
            print(f"left out of the summary: {err}", flush=True)
            continue
        if state is not None and state["done"]:
            done[f] = state
    n, res = min(20_000, 2 * budget.eval_samples), (150 if budget.eval_samples >= 5000 else 40)
    fig4: dict[str, Any] = {"per_seed": {}, "protocol": dataclasses.asdict(budget),
                            "command": "python -m experiments.systems.cnf run"}
    for f, s in done.items():
        if f.task == "dm":
            fig4["per_seed"].setdefault(f.data, {}).setdefault(str(f.size), {}).setdefault(
                f.model, {})[str(f.seed)] = s["metrics"]["kl"]
    for target, by_size in fig4["per_seed"].items():
        for size, by_model in by_size.items():
            fig4.setdefault(target, {})[size] = {m: float(np.mean(list(v.values()))) for m, v in by_model.items()}
    fig4["n_seeds"] = {t: {k: {m: len(v) for m, v in bm.items()} for k, bm in bs.items()}
                       for t, bs in fig4["per_seed"].items()}
    save_json(fig4, out, "figure4.json")
    fig5: dict[str, Any] = {"per_seed": {}, "entropy": {}, "command": "python -m experiments.systems.cnf run"}
    for f, s in done.items():
        if f.task == "ml":
            fig5["per_seed"].setdefault(f.data, {}).setdefault(f"{f.model}{f.size}", {})[str(f.seed)] = \
                s["metrics"]["nll"]
    for name, by_model in fig5["per_seed"].items():
        fig5["entropy"][name] = data_entropy(name, n)
        fig5[name] = {m: float(np.mean(list(v.values()))) for m, v in by_model.items()}
    save_json(fig5, out, "figure5.json")
    first = min((f.seed for f in done), default=0)
    seed0 = {(f.task, f.model, f.size, f.data): s["theta"] for f, s in done.items() if f.seed == first}
    plot_figure4(fig4, seed0, budget, out / "figure4.png", n, res)
    plot_figure5(fig5, seed0, budget, out / "figure5.png", n, res)
    plot_figure6(seed0, budget, out / "figure6.png", n, res)
    return {"figure4": fig4, "figure5": fig5}


def measure_tolerance(out: Path, tols: list[float], steps: int, size: int, target: str,
                      budget: Budget) -> dict[str, Any]:
    """Train one CNF cell for ``steps`` at each training tolerance: seconds per step and KL (at 1e-7).

    Also the error of the training objective and of its gradient (one batch, against rtol = atol =
    1e-9) at the trained parameters.
    """
    rows = {}
    z0 = np.random.default_rng(7).normal(size=(budget.batch, 2))
    objective = value_and_grad(lambda th, t: cm.reverse_kl_loss("cnf", th, z0, target, t))
    for tol in tols:
        b = dataclasses.replace(budget, train_rtol=tol, train_atol=tol, cnf_iters=steps)
        fit = Fit("dm", "cnf", size, target, 0)
        directory = out / "tolerance" / f"tol{tol:g}"
        state = run_fit(fit, b, directory, every=min(200, steps))
        loss, g = objective(state["theta"], b.train_tol)
        ref, g_ref = objective(state["theta"], {"rtol": 1e-9, "atol": 1e-9})
        rows[f"{tol:g}"] = {"kl": state["metrics"]["kl"], "kl_se": state["metrics"]["kl_se"],
                            "seconds_per_step": state["metrics"]["seconds_per_step"],
                            "objective_error_at_train_tol": float(loss - ref),
                            "gradient_relative_error_at_train_tol": float(np.linalg.norm(g - g_ref) /
                                                                          np.linalg.norm(g_ref))}
        print(f"train tol {tol:g}: {rows[f'{tol:g}']}", flush=True)
    result = {"cell": f"{target} M={size}", "steps": steps, "rows": rows,
              "command": f"python -m experiments.systems.cnf tolerance --tols {' '.join(map(str, tols))} "
                         f"--steps {steps} --size {size} --target {target}"}
    save_json(result, out, "tolerance.json")
    return result


def gradient_error(out: Path, tols: list[float], fits: list[Fit], budget: Budget) -> dict[str, Any]:
    """Relative error of one batch's adjoint gradient at each of ``tols`` (against rtol = atol = 1e-9)
    and of its objective, at the parameters of every finished density-matching CNF fit in ``out``."""
    z0 = np.random.default_rng(7).normal(size=(budget.batch, 2))
    rows: dict[str, Any] = {}
    for fit in fits:
        state = load_current(out, fit, budget)
        if fit.model != "cnf" or fit.task != "dm" or state is None or not state["done"]:
            continue
        objective = value_and_grad(lambda th, t, fit=fit: cm.reverse_kl_loss("cnf", th, z0, fit.data, t))
        ref, g_ref = objective(state["theta"], {"rtol": 1e-9, "atol": 1e-9})
        for tol in tols:
            loss, g = objective(state["theta"], {"rtol": tol, "atol": tol})
            rows.setdefault(fit.name, {})[f"{tol:g}"] = {
                "gradient": float(np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref)), "objective": float(loss - ref)}
        print(fit.name, rows[fit.name], flush=True)
    result = {"relative_gradient_error_and_objective_error": rows,
              "command": f"python -m experiments.systems.cnf gradient-error --out {out} --tols {' '.join(map(str, tols))}"}
    save_json(result, out, "gradient_error.json")
    return result


def sweep_nf_lr(out: Path, lrs: list[float], steps: int, size: int, targets: list[str],
                budget: Budget) -> dict[str, Any]:
    """KL of the planar NF of depth ``size`` after ``steps`` cosine-decayed Adam steps, per step size."""
    rows: dict[str, Any] = {}
    for lr in lrs:
        b = dataclasses.replace(budget, nf_lr=lr, nf_iters=steps)
        for target in targets:
            state = run_fit(Fit("dm", "nf", size, target, 0), b, out / "nf_lr" / f"lr{lr:g}", every=steps)
            rows.setdefault(f"{lr:g}", {})[target] = state["metrics"]["kl"]
        print(f"nf lr {lr:g}: {rows[f'{lr:g}']}", flush=True)
    result = {"K": size, "steps": steps, "kl": rows,
              "command": f"python -m experiments.systems.cnf nf-lr --lrs {' '.join(map(str, lrs))} --steps {steps} "
                         f"--size {size} --targets {' '.join(targets)}"}
    save_json(result, out, "nf_lr.json")
    return result


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.systems.cnf", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["run", "summarize", "tolerance", "nf-lr", "gradient-error"], nargs="?", default="run",
                    help="run (train or resume every fit, then summarize), summarize (JSON and figures from the "
                         "finished fits), tolerance, gradient-error or nf-lr (the measurements behind the defaults)")
    ap.add_argument("--out", type=Path, default=OUT, help="checkpoints, JSON and figures (default: %(default)s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="K = M of the density matching")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), help="density-matching targets")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds of every fit")
    ap.add_argument("--datasets", nargs="*", default=list(cm.DATASETS), help="maximum-likelihood data (none: skip)")
    ap.add_argument("--ml-size", type=int, default=64, help="M = K of the maximum-likelihood fits")
    for field in dataclasses.fields(Budget):
        ap.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=field.default,
                        help=f"{BUDGET_HELP[field.name]} (default: %(default)s)")
    ap.add_argument("--every", type=int, default=200, help="steps between checkpoints")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 1 2, U1, one seed, 20 steps")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5], help="(tolerance, gradient-error) tolerances")
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2], help="(nf-lr) step sizes")
    ap.add_argument("--steps", type=int, default=600, help="(tolerance, nf-lr) steps per setting")
    ap.add_argument("--size", type=int, default=16, help="(tolerance, nf-lr) width M or depth K")
    ap.add_argument("--target", default="U3", help="(tolerance) target")
    return ap


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the JSON summary."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.sizes, args.targets, args.seeds, args.ml_size = [1, 2], ["U1"], [0], 2
        args.cnf_iters = args.nf_iters = 20
        args.eval_samples, args.every = 500, 10
    budget = Budget(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Budget)})
    if args.command == "tolerance":
        return measure_tolerance(args.out, args.tols, args.steps, args.size, args.target, budget)
    if args.command == "nf-lr":
        return sweep_nf_lr(args.out, args.lrs, args.steps, args.size, args.targets, budget)
    fits = protocol(args.sizes, args.targets, args.seeds, args.datasets, args.ml_size)
    if args.command == "gradient-error":
        return gradient_error(args.out, args.tols, fits, budget)
    if args.command == "run":
        start = time.time()
        for i, fit in enumerate(fits):
            print(f"[{i + 1}/{len(fits)}] {fit.name} ({time.time() - start:.0f}s)", flush=True)
            run_fit(fit, budget, args.out, every=args.every)
    summary = summarize(args.out, budget, fits)
    print(json.dumps({k: {t: v for t, v in d.items() if t not in ("per_seed", "protocol")}
                      for k, d in summary.items()}, indent=1, default=float))
    return summary


if __name__ == "__main__":
    run_command(__spec__.name, main)
