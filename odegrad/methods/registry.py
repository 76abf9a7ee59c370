"""The registry of gradient methods: ``adjoint=<name>`` looks its method up here.

The built-in methods register themselves when :mod:`odegrad.methods` is imported; a user's method
is registered with :func:`register` (``register(MyMethod())``) and is then available to
``odegrad.odeint``, ``odegrad.solve_ivp`` and ``odegrad.tf.odeint`` by its name.
"""

from __future__ import annotations

from .base import GradientMethod

_METHODS: dict[str, GradientMethod] = {}


def register(method: GradientMethod, *, replace: bool = False) -> GradientMethod:
    """Make ``method`` available as ``adjoint=method.name``.

    Raises
    ------
    ValueError
        If another method has that name already and ``replace`` is false.
    TypeError
        If ``method`` is not a :class:`GradientMethod` instance.
    """
    if not isinstance(method, GradientMethod):
        raise TypeError(f"register takes a GradientMethod instance, got {type(method).__name__}")
    if method.name in _METHODS and not replace:
        raise ValueError(f"a gradient method named {method.name!r} is registered already; "
                         "pass replace=True to replace it, or choose another name")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove the method registered as ``name`` (a no-op if there is none)."""
    _METHODS.pop(name, None)


def _load_builtins() -> None:
    from . import builtins  # noqa: F401  (registers the built-in methods)


def names() -> tuple[str, ...]:
    """The registered method names, built-ins first."""
    _load_builtins()
    return tuple(_METHODS)


def get(name: str) -> GradientMethod:
    """The method registered as ``name``.

    Raises
    ------
    ValueError
        Naming the registered methods, if none is registered as ``name``.
    """
    _load_builtins()
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"adjoint must be one of {tuple(_METHODS)} (or a method registered with "
                         f"odegrad.methods.register), got {name!r}") from None
