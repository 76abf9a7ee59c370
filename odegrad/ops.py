"""The array operations a door supplies to the gradient methods (:class:`Ops`).

The gradient methods (:mod:`odegrad.methods`), Algorithm 1 (:func:`odegrad.adjoint.backward`) and the
forward-sensitivity layout (:mod:`odegrad.sensitivity`) touch the door's arrays only through these;
:class:`odegrad.autograd_backend.AutogradOps` and :class:`odegrad.tf.backend.TFOps` implement them.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np


class Ops(Protocol):
    """The array operations Algorithm 1 needs, from the backend's namespace."""

    def concat(self, parts: Sequence[Any]) -> Any: ...

    def stack(self, parts: Sequence[Any]) -> Any: ...

    def zeros(self, n: int, like: Any) -> Any: ...

    def vdot(self, a: Any, b: Any) -> Any: ...

    def value(self, x: Any) -> np.ndarray:
        """``x`` as a plain float64 NumPy array, not differentiated (constants and checks)."""
        ...

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any: ...

    def einsum(self, spec: str, *operands: Any) -> Any: ...

    def constant(self, array: np.ndarray, like: Any) -> Any:
        """The NumPy ``array`` as a backend constant of ``like``'s dtype (not differentiated)."""
        ...
