"""odegrad: ``scipy.integrate.odeint`` with exact adjoint gradients, to any order.

The reference implementation of *Neural Ordinary Differential Equations* (Chen, Rubanova,
Bettencourt, Duvenaud, NeurIPS 2018): the forward pass is a scipy solve (LSODA, or VODE's
implicit Adams or BDF); the vector-Jacobian product is the paper's Algorithm 1 with Appendix C.
Forward sensitivities are the other gradient method, and ``adjoint="auto"`` (the default)
picks between them per solve. TensorFlow dynamics live in :mod:`odegrad.tf`, imported on demand.

Modules: :mod:`odegrad.integrate` (the front door, ``odeint``), :mod:`odegrad.ivp` (the second door,
``solve_ivp``), :mod:`odegrad.options` (how the gradient is computed), :mod:`odegrad.methods` (the
gradient methods ``adjoint=`` names, one registered object each: :mod:`~odegrad.methods.base` the
interface, :mod:`~odegrad.methods.registry`, :mod:`~odegrad.methods.adjoint_methods`,
:mod:`~odegrad.methods.forward`, :mod:`~odegrad.methods.auto`; a new method is one subclass of
:class:`odegrad.methods.GradientMethod` and one :func:`odegrad.methods.register`),
:mod:`odegrad.adjoint` (Algorithm 1, written once), :mod:`odegrad.augmented` (the backward state's
layout), :mod:`odegrad.sensitivity` (the forward-sensitivity state), :mod:`odegrad.auto` (the cost
model behind ``adjoint="auto"``), :mod:`odegrad.reverse` (one trace, many VJPs),
:mod:`odegrad.autograd_backend` (the autograd primitive and its derivative rules),
:mod:`odegrad.problem` (one solve as the autograd door sees it), :mod:`odegrad.derived` (the derived
dynamics the methods solve),
:mod:`odegrad.solvers` (every scipy call behind one signature: ``solve``, ``dense_solve`` and scipy's
registered methods; the runners :mod:`odegrad.solver_lsoda`, :mod:`odegrad.solver_vode` and
:mod:`odegrad.solver_ivp`, with :mod:`odegrad.solver_types`, :mod:`odegrad.solver_guard` (callback
guards, the nesting lock), :mod:`odegrad.solver_status` (LSODA's and VODE's failures, odeint's
``infodict``) and :mod:`odegrad.blas` (one BLAS thread while a solve steps)),
:mod:`odegrad.solver_registry` (one record per method), :mod:`odegrad.stats`,
:mod:`odegrad.pytree`, :mod:`odegrad.validation`, :mod:`odegrad.gradcheck`.
"""

from .integrate import odeint
from .ivp import solve_ivp
from .options import AdjointOptions
from .solvers import ODESolveError, SolveStats
from .stats import Recorder, SolveInfo, record_stats

__all__ = ["odeint", "solve_ivp", "AdjointOptions", "ODESolveError", "SolveStats", "SolveInfo", "Recorder",
           "record_stats"]
__version__ = "0.1.0"
