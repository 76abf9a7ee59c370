"""What every ``python -m experiments.<name>`` command does before TensorFlow starts.

``python -m experiments.table1`` imports the package ``experiments`` before it runs the module,
and ``experiments/__init__.py`` calls :func:`prepare_command_line` then.  Only in that case (the
package being imported to run one of its modules with ``-m``) it

* checks that the optional packages the command needs are installed, and otherwise exits with
  the install command (``pip install -e ".[experiments]"``) instead of a ``ModuleNotFoundError``
  from deep inside an import;
* unless ``--verbose`` is on the command line, quiets TensorFlow: its C++ start-up and warning
  lines (``TF_CPP_MIN_LOG_LEVEL=2``; an explicit setting in the environment wins) and its Python
  loggers ``tensorflow`` (which carries AutoGraph's "could not transform ..." warnings and
  ``tf.function`` retracing notes) and ``absl``, down to errors; for commands that need
  TensorFlow it then imports it with the two start-up notices that no log level hides dropped
  (:func:`import_tensorflow_quietly`: absl's "All log messages before absl::InitializeLog() ..."
  and, on CPUs where TensorFlow turns its oneDNN operations on by default, e.g. those with
  AVX-512 VNNI or AMX, "oneDNN custom operations are on ...").

Importing ``experiments`` in any other way (tests, notebooks, ``from experiments import ...``)
changes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence

EXTRAS_INSTALL = '`pip install -e ".[experiments]"` in a clone of odegrad (or `pip install "odegrad[experiments]"`)'
"""How to install the optional packages of the experiments (setup.cfg's ``experiments`` extra)."""

TENSORFLOW = ("tensorflow", "keras")
NEEDS: dict[str, tuple[str, ...]] = {
    "table1": TENSORFLOW,
    "training": TENSORFLOW,
    "models": TENSORFLOW,
    "memory": TENSORFLOW,
    "backward_nfe": TENSORFLOW,
    "figure3": (*TENSORFLOW, "matplotlib"),
    "smoke": (*TENSORFLOW, "matplotlib"),
    "cnf": ("matplotlib",),
    "latent_ode": ("matplotlib",),
    "learn_dynamics": ("matplotlib",),
}
"""Optional top-level packages each entry point imports (``mnist`` needs none)."""

TF_LOG_LEVEL = "2"
"""``TF_CPP_MIN_LOG_LEVEL`` set by default: TensorFlow's C++ info and warning lines hidden, errors shown."""


STARTUP_NOTICES = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\."
)
"""Lines ``import tensorflow`` writes to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says."""


class MissingExtrasError(ImportError):
    """An optional package an experiment needs is not installed."""


def missing_modules(names: Sequence[str]) -> list[str]:
    """The top-level packages among ``names`` that cannot be found (nothing is imported).

    Parameters
    ----------
    names : sequence of str

    Returns
    -------
    list of str
    """
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require(command: str, names: Sequence[str]) -> None:
    """Raise :class:`MissingExtrasError` naming the install command if a package is missing.

    Parameters
    ----------
    command : str
        What needs them, for the message (e.g. ``python -m experiments.table1``).
    names : sequence of str
        Top-level package names.

    Raises
    ------
    MissingExtrasError
        If any of ``names`` is not installed.
    """
    missing = missing_modules(names)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtrasError(
            f"{command} needs {', '.join(missing)}, which {verb} not installed for {sys.executable}; "
            f"install the experiment extras with {EXTRAS_INSTALL}"
        )


def quiet_tensorflow() -> None:
    """Hide TensorFlow's info and warning output (C++ and Python); call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up notices (:data:`STARTUP_NOTICES`) dropped from stderr.

    TensorFlow writes them from C++ before its logging is set up, so neither
    ``TF_CPP_MIN_LOG_LEVEL`` nor Python's ``logging`` reaches them: file descriptor 2 goes to a
    temporary file during the import, and every other line written there, or everything if the
    import fails, is copied back to stderr afterwards.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            import tensorflow  # noqa: F401
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if failed or not STARTUP_NOTICES.match(line)))
            sys.stderr.flush()


def running_module(argv: Sequence[str] | None = None, orig_argv: Sequence[str] | None = None) -> str | None:
    """The ``X`` of ``python -m experiments.X`` while the package is imported to run it, else ``None``.

    Parameters
    ----------
    argv : sequence of str, optional
        Default :data:`sys.argv`; its first entry is ``"-m"`` exactly while ``-m`` locates a module.
    orig_argv : sequence of str, optional
        Default :data:`sys.orig_argv`, the interpreter's own command line.

    Returns
    -------
    str or None
    """
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", ()) if orig_argv is None else orig_argv
    if list(argv[:1]) != ["-m"]:
        return None
    for i, arg in enumerate(orig_argv):
        if arg == "-m" and i + 1 < len(orig_argv):
            module = orig_argv[i + 1]
        elif arg.startswith("-m") and len(arg) > 2:
            module = arg[2:]
        else:
            continue
        package, _, name = module.partition(".")
        return name if package == "experiments" and name else None
    return None


def prepare_command_line(argv: Sequence[str] | None = None, orig_argv: Sequence[str] | None = None) -> None:
    """Check the extras and quiet TensorFlow for ``python -m experiments.X`` (see the module docstring).

    Parameters
    ----------
    argv, orig_argv : sequence of str, optional
        As for :func:`running_module` (defaults: the interpreter's).

    Raises
    ------
    SystemExit
        With status 1 and the install command on stderr if a package the command needs is missing.
    """
    argv = sys.argv if argv is None else argv
    name = running_module(argv, orig_argv)
    if name is None:
        return
    verbose = "--verbose" in argv[1:]
    if not verbose:
        quiet_tensorflow()
    needs = NEEDS.get(name, ())
    try:
        require(f"python -m experiments.{name}", needs)
    except MissingExtrasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if not verbose and "tensorflow" in needs:
        import_tensorflow_quietly()


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose`` (TensorFlow's log lines back on; read by :func:`prepare_command_line`)."""
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's start-up, warning and AutoGraph log lines (hidden by default)",
    )
