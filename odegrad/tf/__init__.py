"""TensorFlow dynamics: ``odeint`` for TF tensors and the Keras :class:`ODEBlock`.

As in the paper's experiments, a host-side scipy solver does the stepping while the dynamics and
their vector-Jacobian products run in TensorFlow (on the GPU when one is visible). The gradient
methods are the autograd front door's (:mod:`odegrad.methods`: the adjoint of Algorithm 1 in its
modes, forward sensitivities, ``auto`` and any registered method) run with TensorFlow operations,
so nested ``tf.GradientTape``\\ s give higher derivatives in eager mode.

Modules: :mod:`odegrad.tf.integrate` (``odeint``), :mod:`odegrad.tf.layers` (``ODEBlock``),
:mod:`odegrad.tf.backend` (the differentiable solve and its gradient request),
:mod:`odegrad.tf.dynamics` (``TFDynamics``: the forward dynamics and those derived from it),
:mod:`odegrad.tf.derivatives` (the VJPs and Jacobians inside the derived dynamics),
:mod:`odegrad.tf.compile` (the compiled computations, their placement and cache),
:mod:`odegrad.tf.tracing` (what ``f`` reads and what of it is differentiated, decided once),
:mod:`odegrad.tf.ops` (the array operations gradient methods use).

Install: ``pip install -e ".[tf]"`` (CPU TensorFlow), or ``".[tf-gpu]"`` for NVIDIA GPUs on Linux
(``tensorflow[and-cuda]``); the compiled dynamics then run on the first GPU unless ``device=`` or
the state's own device says otherwise.

Importing this package imports TensorFlow; ``import odegrad`` alone does not.
"""

try:
    import tensorflow  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError(
        "odegrad.tf needs TensorFlow. From a clone of odegrad: `pip install -e \".[tf]\"`; "
        "from PyPI: `pip install \"odegrad[tf]\"` (or `pip install tensorflow`). "
        "For NVIDIA GPUs on Linux use the extra `tf-gpu` instead of `tf`."
    ) from exc

from .compile import compile_dynamics, default_device
from .integrate import odeint
from .layers import ODEBlock

__all__ = ["odeint", "ODEBlock", "compile_dynamics", "default_device"]
