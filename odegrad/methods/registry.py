"""The registry of gradient methods: ``adjoint=<name>`` looks its method up here.

The built-in methods (:mod:`odegrad.methods.builtins`) are registered at the first use of the
registry, before any other; a user's method
is registered with :func:`register` (``register(MyMethod())``) and is then available to
``odegrad.odeint``, ``odegrad.solve_ivp`` and ``odegrad.tf.odeint`` by its name.
"""

from __future__ import annotations

from .base import GradientMethod

_METHODS: dict[str, GradientMethod] = {}


def register(method: GradientMethod, *, replace: bool = False) -> GradientMethod:
    """Make ``method`` available as ``adjoint=method.name``.

    Parameters
    ----------
    method : GradientMethod
        An instance of a :class:`GradientMethod` subclass with a ``name``.
    replace : bool
        Replace a method registered under that name (a built-in included).

    Returns
    -------
    GradientMethod
        ``method``.

    Raises
    ------
    ValueError
        If another method has that name already and ``replace`` is false.
    TypeError
        If ``method`` is not a :class:`GradientMethod` instance, or its ``name`` is not a string.
    """
    if not isinstance(method, GradientMethod):
        raise TypeError(f"register takes a GradientMethod instance, got {type(method).__name__}")
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{type(method).__name__} has no name: set the class attribute name = '...' "
                        "(the value of adjoint= that selects it)")
    _load_builtins()
    if name in _METHODS and not replace:
        raise ValueError(f"a gradient method named {name!r} is registered already; "
                         "pass replace=True to replace it, or choose another name")
    _METHODS[name] = method
    return method


def unregister(name: str) -> None:
    """Remove the method registered as ``name`` (a no-op if there is none)."""
    _load_builtins()
    _METHODS.pop(name, None)


_loaded: list[bool] = []


def _load_builtins() -> None:
    """Register the built-in methods (:mod:`odegrad.methods.builtins`), once, before any other."""
    if not _loaded:
        _loaded.append(True)
        from .builtins import BUILTINS

        for cls in BUILTINS:
            _METHODS.setdefault(cls.name, cls())


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
