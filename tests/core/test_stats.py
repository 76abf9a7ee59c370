"""Solver statistics: full_output SolveInfo, record_stats(), and the number of backward solves."""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad, hessian

from odegrad import SolveInfo, SolveStats, odeint, record_stats
from odegrad.gradcheck.problems import decay as _decay
from odegrad.solvers import METHODS


@pytest.mark.parametrize("method", METHODS)
def test_full_output_forward_nfe_counts_every_call(method):
    calls = []

    def f(y, t, k):
        calls.append(t)
        return -k * y

    ys, infodict = odeint(f, onp.array([1.0, 2.0]), onp.linspace(0, 2, 5), args=(0.5,), method=method,
                          full_output=True)
    info = infodict["odegrad"]
    assert isinstance(info, SolveInfo)
    assert isinstance(info.forward, SolveStats) and info.forward.method == method
    assert info.forward.nfe == len(calls) > 0
    assert info.forward.nst > 0 and info.forward.nsolves == 1
    assert info.backward == SolveStats(method=method)   # nothing backward yet


@pytest.mark.parametrize("mode", ["checkpoint", "backsolve"])
@pytest.mark.parametrize("checkpoints", [0, 2])
def test_backward_filled_after_grad_with_one_solve_per_interval(mode, checkpoints):
    t = onp.linspace(0.0, 2.0, 6)
    infos = []

    def loss(k):
        ys, infodict = odeint(_decay, 1.0, t, args=(k,), full_output=True, adjoint=mode, checkpoints=checkpoints)
        infos.append(infodict["odegrad"])
        return np.sum(ys)

    grad(loss)(0.5)
    (info,) = infos
    assert info.backward.nfe > 0 and info.backward.nst > 0
    assert info.backward.nsolves == (len(t) - 1) * (checkpoints + 1)
    assert info.forward.nsolves == 1
    n_before = info.backward.nsolves
    grad(lambda k: np.sum(odeint(_decay, 1.0, t, args=(k,))))(0.5)   # a different call: unchanged
    assert info.backward.nsolves == n_before


def test_record_stats_collects_forward_and_backward():
    t = onp.linspace(0.0, 1.0, 4)

    def loss(k):
        return np.sum(odeint(_decay, onp.ones(2), t, args=(k,), method="adams", adjoint="checkpoint",
                             adjoint_method="bdf") ** 2)

    with record_stats() as rec:
        grad(loss)(0.7)
        odeint(_decay, 1.0, t, args=(0.1,))
    assert len(rec.calls) == 2
    assert rec.forward.nfe == sum(c.forward.nfe for c in rec.calls) > 0
    assert rec.backward.nfe == rec.calls[0].backward.nfe > 0
    assert rec.calls[0].forward.method == "adams" and rec.calls[0].backward.method == "bdf"
    assert rec.backward.nsolves == len(t) - 1
    assert rec.calls[1].backward.nsolves == 0
    # outside the block nothing more is recorded
    odeint(_decay, 1.0, t, args=(0.1,))
    assert len(rec.calls) == 2


def test_record_stats_nested_recorders():
    with record_stats() as outer:
        odeint(_decay, 1.0, [0.0, 1.0], args=(0.3,))
        with record_stats() as inner:
            odeint(_decay, 1.0, [0.0, 1.0], args=(0.3,))
    assert len(outer.calls) == 2 and len(inner.calls) == 1
    assert inner.calls[0] is outer.calls[1]


def test_empty_recorder():
    with record_stats() as rec:
        pass
    assert rec.forward.nfe == 0 and rec.backward.nfe == 0 and rec.calls == []


@pytest.mark.parametrize("n_times", [2, 3, 7])
def test_backward_nsolves_per_gradient_scales_with_outputs(n_times):
    """The adjoint restarts at every output time; forward sensitivities solve once, in the forward
    pass (with y) for a first derivative, after it where the gradient is differentiated again."""
    t = onp.linspace(0.0, 1.0, n_times)
    for adjoint, per_gradient in (("checkpoint", n_times - 1), ("forward", 0)):
        def loss(y0, adjoint=adjoint):
            return np.sum(odeint(_decay, y0, t, args=(0.5,), adjoint=adjoint))

        with record_stats() as rec:
            for _ in range(3):
                grad(loss)(onp.array([1.0, 2.0]))
        assert len(rec.calls) == 3
        for info in rec.calls:
            assert info.forward.nsolves == 1 and info.backward.nsolves == per_gradient
            assert info.sensitivities_in_forward == (adjoint == "forward")
        assert rec.backward.nsolves == 3 * per_gradient
    with record_stats() as rec:       # a Hessian: the gradient's own solve is differentiated
        hessian(lambda y0: np.sum(odeint(_decay, y0, t, args=(0.5,), adjoint="forward")))(onp.array([1.0, 2.0]))
    assert not rec.calls[0].sensitivities_in_forward and rec.backward.nsolves >= 1


def test_hessian_adds_backward_work():
    t = onp.array([0.0, 0.5, 1.0])
    with record_stats() as rec_g:
        grad(lambda k: np.sum(odeint(_decay, 1.0, t, args=(k,))))(0.5)
    with record_stats() as rec_h:
        hessian(lambda k: np.sum(odeint(_decay, 1.0, t, args=(k,))))(onp.array(0.5))
    assert rec_h.backward.nfe > rec_g.backward.nfe
    assert rec_h.backward.nsolves > rec_g.backward.nsolves


def test_solvestats_add():
    a = SolveStats("lsoda", nfe=3, nst=2, nje=1, nsolves=1, method_switches=1)
    a.add(SolveStats("lsoda", nfe=4, nst=5, nje=0, nsolves=2, method_switches=0))
    assert (a.nfe, a.nst, a.nje, a.nsolves, a.method_switches) == (7, 7, 1, 3, 1)


def test_single_time_has_no_work():
    _, infodict = odeint(_decay, 1.0, [0.0], args=(0.5,), full_output=True)
    assert infodict["odegrad"].forward.nfe == 0 and infodict["odegrad"].forward.nsolves == 0


def test_gradient_methods_say_what_auto_picked():
    t = onp.linspace(0.0, 1.0, 5)
    with record_stats() as rec:
        grad(lambda k: np.sum(odeint(_decay, onp.ones(2), t, args=(k,))))(0.5)
        grad(lambda k: np.sum(odeint(_decay, onp.ones(2), t, args=(k,), adjoint="checkpoint")))(0.5)
    assert rec.gradient_methods == ["forward", "checkpoint"]
    assert rec.calls[0].gradient_methods == ["forward"]
