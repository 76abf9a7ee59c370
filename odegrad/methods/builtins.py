"""The built-in gradient methods, in the order :func:`odegrad.methods.registry.names` lists them:
the three adjoints, forward sensitivities, and ``auto`` (the default). The registry registers them
at its first use; adding a built-in is one module and one entry here."""

from __future__ import annotations

from .adjoint_methods import BacksolveAdjoint, CheckpointAdjoint, InterpolatingAdjoint
from .auto import Auto
from .forward import ForwardSensitivities

BUILTINS = (CheckpointAdjoint, BacksolveAdjoint, InterpolatingAdjoint, ForwardSensitivities, Auto)
"""The classes of the built-in methods."""
