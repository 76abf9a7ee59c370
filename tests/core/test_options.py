"""AdjointOptions: one immutable object for both front doors, the flat keywords as a shim."""

from __future__ import annotations

import dataclasses

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad

from odegrad import AdjointOptions, odeint
from odegrad.gradcheck.problems import decay
from odegrad.options import adjoint_options
from odegrad.solvers import SolverOptions


def test_flat_keywords_and_object_give_the_same_gradient():
    def loss(k, **kw):
        return np.sum(odeint(decay, onp.array([1.0, 2.0]), [0.0, 0.5, 1.0], args=(k,), rtol=1e-10, atol=1e-10,
                             **kw))

    flat = grad(loss)(0.7, adjoint="backsolve", adjoint_seminorm=True, adjoint_method="adams")
    as_object = grad(loss)(0.7, adjoint=AdjointOptions(mode="backsolve", seminorm=True, method="adams"))
    assert flat == as_object
    exact = -onp.sum(onp.array([0.5, 1.0])[:, None] * onp.exp(-0.7 * onp.array([0.5, 1.0]))[:, None] * [1.0, 2.0])
    assert flat == pytest.approx(exact, rel=1e-7)


def test_options_are_immutable_and_validated():
    options = AdjointOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mode = "backsolve"
    with pytest.raises(ValueError, match="adjoint must be one of"):
        AdjointOptions(mode="reverse")
    with pytest.raises(ValueError, match="adjoint_method must be one of"):
        AdjointOptions(method="rk45")
    with pytest.raises(ValueError, match="checkpoints must be a non-negative integer"):
        AdjointOptions(checkpoints=-1)
    with pytest.raises(ValueError, match="checkpoints must be a non-negative integer"):
        AdjointOptions(checkpoints=1.5)
    with pytest.raises(ValueError, match="adjoint_atol must be finite and non-negative"):
        AdjointOptions(atol=-1.0)


def test_default_is_auto_and_forward_takes_no_checkpoints():
    assert AdjointOptions().mode == "auto" and adjoint_options().mode == "auto"
    with pytest.raises(ValueError, match=r"adjoint='forward' solves y with its sensitivities forwards"):
        AdjointOptions(mode="forward", checkpoints=2)
    assert AdjointOptions(mode="auto", checkpoints=2).checkpoints == 2


def test_unsupported_combination_is_named():
    with pytest.raises(ValueError, match="checkpoints only apply to adjoint='checkpoint', 'backsolve' or 'auto'"):
        odeint(decay, 1.0, [0.0, 1.0], args=(0.5,), adjoint="interpolate", checkpoints=3)
    with pytest.raises(ValueError, match="also passing checkpoints, seminorm as keywords is ambiguous"):
        adjoint_options(AdjointOptions(), checkpoints=2, adjoint_seminorm=True)


def test_backward_solver_defaults_to_the_forward_options():
    forward = SolverOptions(method="adams", rtol=onp.array([1e-6, 1e-8]), atol=1e-9, hmax=0.1, mxstep=77,
                            lsoda_kwargs={})
    backward = AdjointOptions().backward_solver(forward, (2,))
    assert (backward.method, backward.rtol, backward.atol, backward.hmax, backward.mxstep) == \
        ("adams", 1e-8, 1e-9, 0.1, 77)
    backward = AdjointOptions(method="bdf", rtol=1e-4, atol=[1e-5, 1e-6]).backward_solver(forward, (2,))
    assert backward.method == "bdf" and backward.rtol == 1e-4
    onp.testing.assert_array_equal(backward.atol, [1e-5, 1e-6])
