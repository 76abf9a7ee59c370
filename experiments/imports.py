"""What an experiment imports, read from the import statements of its source (nothing is imported).

:func:`needs` starts at an entry module (``experiments.mnist.table1``) and follows every import of
a first-party module -- one of a package that sits in the repository root (``experiments``,
``odegrad``, ...) -- at module level and inside functions alike, since a command runs both, and
every package above an imported module (importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py``).  Every other import that is not of the standard library is a need; its
top-level name (``matplotlib`` for ``import matplotlib.pyplot``) is what :func:`needs` returns.

An import inside ``try: ... except ImportError`` (or ``ModuleNotFoundError``, ``Exception``, a
bare ``except``) is optional: the code that holds it runs on without the package, so it is not a
need (e.g. the torchdiffeq comparison of :mod:`experiments.mnist.backward_nfe`).  Imports made by
name at run time (``importlib.import_module("x")``) are not seen.

:func:`entry_points` lists the modules of a package that run as commands (those with an
``if __name__ == "__main__":`` block).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the directory that holds ``experiments/``."""

CATCHES_IMPORT_ERROR = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
"""Exception names whose handler makes the imports of a ``try`` body optional."""


def source_path(module: str, root: Path = ROOT) -> Path | None:
    """The source file of the first-party module ``module`` under ``root``, or ``None``.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``experiments.mnist.table1``.
    root : pathlib.Path
        The repository root.

    Returns
    -------
    pathlib.Path or None
        ``root/a/b/c.py`` or ``root/a/b/c/__init__.py``; ``None`` if ``module`` is not a module
        there (e.g. ``experiments.mnist.table1.main``, a function).
    """
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_first_party(name: str, root: Path = ROOT) -> bool:
    """Whether the top-level package ``name`` is one of the repository's own (``root/name/__init__.py``)."""
    return (root / name.partition(".")[0] / "__init__.py").is_file()


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in CATCHES_IMPORT_ERROR for t in types)


class _Imports(ast.NodeVisitor):
    """Collect the absolute names a module imports outside ``try``/``except ImportError`` blocks."""

    def __init__(self, package: str):
        self.package = package
        self.names: set[str] = set()
        self._optional = 0

    def visit_Try(self, node: ast.Try) -> None:
        optional = any(_catches_import_error(h) for h in node.handlers)
        self._optional += optional
        for statement in node.body:
            self.visit(statement)
        self._optional -= optional
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        if not self._optional:
            self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self._optional:
            return
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        self.names.add(base)
        # ``from a import b`` imports the module ``a.b`` when there is one; otherwise ``b`` is an attribute.
        self.names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def module_imports(module: str, root: Path = ROOT) -> set[str]:
    """The absolute names the first-party ``module`` imports (relative imports resolved).

    ``from a import b`` gives both ``a`` and ``a.b`` (``b`` may be a module or an attribute).

    Parameters
    ----------
    module : str
        Dotted name of a module with a source file under ``root``.
    root : pathlib.Path
        The repository root.

    Returns
    -------
    set of str

    Raises
    ------
    ModuleNotFoundError
        If ``module`` has no source file under ``root``.
    """
    path = source_path(module, root)
    if path is None:
        raise ModuleNotFoundError(f"no source file for {module!r} under {root}", name=module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    collector = _Imports(package)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.names


def needs(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """The third-party top-level packages ``module`` and the first-party modules it reaches import.

    Parameters
    ----------
    module : str
        Dotted name of the entry module, e.g. ``experiments.mnist.table1``.
    root : pathlib.Path
        The repository root.

    Returns
    -------
    tuple of str
        Sorted top-level package names, e.g. ``("autograd", "keras", "numpy", "scipy", "tensorflow")``.
    """
    packages: set[str] = set()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        if source_path(name, root) is None:
            continue
        for imported in module_imports(name, root):
            top = imported.partition(".")[0]
            if is_first_party(top, root):
                todo.append(imported)
            elif top and top not in sys.stdlib_module_names:
                packages.add(top)
    return tuple(sorted(packages))


def _runs_as_main(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                   for c in test.comparators))


def entry_points(package: str = "experiments", root: Path = ROOT) -> list[str]:
    """The modules of ``package`` (and its subpackages) with an ``if __name__ == "__main__":`` block.

    Parameters
    ----------
    package : str
        A first-party package.
    root : pathlib.Path
        The repository root.

    Returns
    -------
    list of str
        Sorted dotted module names, e.g. ``["experiments.mnist.backward_nfe", ...]``.
    """
    base = root.joinpath(*package.split("."))
    found = []
    for path in sorted(base.rglob("*.py")):
        if any(_runs_as_main(node) for node in ast.parse(path.read_text(encoding="utf-8")).body):
            found.append(".".join(path.relative_to(root).with_suffix("").parts))
    return found
