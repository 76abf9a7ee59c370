"""Checks of the inputs shared by the autograd and TensorFlow front doors."""

from __future__ import annotations

from typing import Any

import numpy as np
from autograd.tracer import getval

from .solver_registry import methods
from .solvers import DEFAULT_TOL


def as_real_array(name: str, value: Any) -> np.ndarray:
    """Return ``value`` as a finite real float array, or raise ``ValueError`` naming ``name``."""
    raw = getval(value)
    try:
        arr = np.asarray(raw, dtype=float) if not np.iscomplexobj(raw) else None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or array of real numbers, got {raw!r}") from exc
    if arr is None:
        raise ValueError(f"{name} is complex; odegrad integrates real states (split it into real and imaginary parts)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; every entry of {name} must be finite")
    return arr


def check_traced_output(name: str, out: Any) -> Any:
    """``out`` of the user's dynamics ``name`` on traced values; ``TypeError`` where it is an array of
    objects (NumPy, not ``autograd.numpy``, applied to autograd's boxes), which has no derivatives."""
    if getattr(getattr(out, "dtype", None), "kind", "") == "O":
        raise TypeError(
            f"{name} returned an array of objects: on traced values it must be written with autograd.numpy "
            "(anp.array, anp.stack, anp.exp, ...), not numpy, to be differentiated"
        )
    return out


class ShapeError(ValueError, RuntimeError):
    """``func`` or ``Dfun`` returned an array of the wrong shape.

    Both a ``ValueError`` (odegrad's error for bad input) and a ``RuntimeError`` (what
    ``scipy.integrate.odeint`` raises for the same mistake), so code written for either catches it.
    """


def check_times(t: np.ndarray, *, strict: bool = True) -> None:
    """Raise ``ValueError`` unless ``t`` is a monotonic 1-D array of output times.

    ``strict=True``: non-empty and strictly monotonic. ``strict=False`` (the rules of
    ``scipy.integrate.odeint``): repeated times and an empty ``t`` are allowed.
    """
    if t.ndim != 1 or (strict and t.size == 0):
        raise ValueError(f"t must be a 1-D sequence of output times, got shape {t.shape}")
    steps = np.diff(t)
    if strict and np.any(steps == 0):
        k = int(np.nonzero(steps == 0)[0][0])
        raise ValueError(f"t must be strictly monotonic, but t[{k}] == t[{k + 1}] == {t[k]!r}; remove repeated times")
    if np.any(steps > 0) and np.any(steps < 0):
        which = "strictly monotonic" if strict else "monotonic"
        raise ValueError(f"t must be {which} (all increasing or all decreasing); sort the output times")


def tolerance(name: str, value: Any, shape: tuple[int, ...]) -> float | np.ndarray:
    """A tolerance as a float, or as a flat array broadcast to a state of ``shape``."""
    if value is None:
        return DEFAULT_TOL
    arr = np.asarray(value, dtype=float)
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
    if arr.ndim == 0:
        return float(arr)
    try:
        return np.broadcast_to(arr, shape).ravel()
    except ValueError:
        raise ValueError(f"{name} of shape {arr.shape} does not broadcast to y0's shape {shape}") from None


def check_method(name: str, method: str, door: str = "odeint") -> None:
    """Raise ``ValueError`` unless ``method`` names a registered method that the front door ``door`` accepts."""
    accepted = methods(door)
    if method not in accepted:
        raise ValueError(f"{name} must be one of {accepted}, got {method!r}")
