"""odegrad: ``scipy.integrate.odeint`` with exact adjoint gradients, to any order.

The reference implementation of *Neural Ordinary Differential Equations* (Chen, Rubanova,
Bettencourt, Duvenaud, NeurIPS 2018): the forward pass is a scipy solve (LSODA, or VODE's
implicit Adams or BDF); the vector-Jacobian product is the paper's Algorithm 1 with Appendix C.
TensorFlow dynamics live in :mod:`odegrad.tf`, imported on demand.
"""

from .odeint import odeint
from .solvers import ODESolveError, SolveStats
from .stats import Recorder, SolveInfo, record_stats

__all__ = ["odeint", "ODESolveError", "SolveStats", "SolveInfo", "Recorder", "record_stats"]
__version__ = "0.1.0"
