"""What every ``python -m experiments.<sub>.<name>`` command does before it starts: :func:`run_command`.

An entry module ends with ``if __name__ == "__main__": run_command(__spec__.name, main)``, so this
runs only when the module runs as a program, never when it is imported.  :func:`run_command`

* checks that the packages the command needs (:func:`experiments.imports.needs`, read from the
  import statements of the module and of the first-party modules it reaches) are installed, and
  otherwise exits with the install command (``pip install -e ".[experiments]"``) instead of a
  ``ModuleNotFoundError`` from deep inside an import; for that, an entry module imports none of
  its optional packages at module level (tests/experiments/test_cli.py checks it);
* unless ``--verbose`` is on the command line, quiets TensorFlow: its C++ start-up and warning
  lines (``TF_CPP_MIN_LOG_LEVEL=2``; an explicit setting in the environment wins) and its Python
  loggers ``tensorflow`` (which carries AutoGraph's "could not transform ..." warnings and
  ``tf.function`` retracing notes) and ``absl``, down to errors; for commands that need
  TensorFlow it then imports it with the two start-up notices that no log level hides dropped
  (:func:`import_tensorflow_quietly`: absl's "All log messages before absl::InitializeLog() ..."
  and, on CPUs where TensorFlow turns its oneDNN operations on by default, e.g. those with
  AVX-512 VNNI or AMX, "oneDNN custom operations are on ...").

Calling an entry point's ``main(argv)`` from Python (tests, notebooks, another command) does none
of this.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import TypeVar

from experiments.imports import needs

T = TypeVar("T")

EXTRAS_INSTALL = '`pip install -e ".[experiments]"` in a clone of odegrad (or `pip install "odegrad[experiments]"`)'
"""How to install the optional packages of the experiments (setup.cfg's ``experiments`` extra)."""

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
        What needs them, for the message (e.g. ``python -m experiments.mnist.table1``).
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
            # By name: the commands that need TensorFlow import it themselves (experiments.imports reads that).
            importlib.import_module("tensorflow")
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if failed or not STARTUP_NOTICES.match(line)))
            sys.stderr.flush()


def run_command(module: str, main: Callable[[], T]) -> T:
    """Run ``main()`` as the command ``python -m <module>`` (see the module docstring).

    Parameters
    ----------
    module : str
        The entry module's name (``__spec__.name``), e.g. ``experiments.mnist.table1``.
    main : callable
        Its ``main``; called without arguments, so it reads :data:`sys.argv`.

    Returns
    -------
    object
        What ``main()`` returns.

    Raises
    ------
    SystemExit
        With status 1 and the install command on stderr if a package the command needs is missing.
    """
    verbose = "--verbose" in sys.argv[1:]
    if not verbose:
        quiet_tensorflow()
    needed = needs(module)
    try:
        require(f"python -m {module}", needed)
    except MissingExtrasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if not verbose and "tensorflow" in needed:
        import_tensorflow_quietly()
    return main()


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose`` (TensorFlow's log lines back on; read by :func:`run_command`)."""
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's start-up, warning and AutoGraph log lines (hidden by default)",
    )
