"""Gradient methods as objects: what ``adjoint=`` names.

Each method (:class:`GradientMethod`) validates its own options (:meth:`GradientMethod.check`)
and returns the VJP of one solve from a :class:`GradientRequest` (:meth:`GradientMethod.vjp`);
the doors look it up by name (:func:`get`). Built in (:mod:`odegrad.methods.builtins`):
``"checkpoint"``, ``"backsolve"``, ``"interpolate"`` (:mod:`odegrad.methods.adjoint_methods`),
``"forward"`` (:mod:`odegrad.methods.forward`) and ``"auto"`` (:mod:`odegrad.methods.auto`).
A new method is one subclass and one :func:`register` call.
"""

from .base import DOORS, ForwardShape, Gradient, GradientMethod, GradientRequest, Wrt
from .registry import get, names, register, unregister

__all__ = ["DOORS", "ForwardShape", "Gradient", "GradientMethod", "GradientRequest", "Wrt", "get", "names",
           "register", "unregister"]
