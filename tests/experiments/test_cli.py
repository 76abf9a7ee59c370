"""What ``python -m experiments.<sub>.<name>`` does before it starts, its derived needs, help texts, atomic writes."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments import cli
from experiments.imports import entry_points, module_imports, needs
from odegrad import atomic
from odegrad.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent(
    """
    import os, sys

    BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def run_without(tmp_path: Path, blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in the repository as if the packages in ``blocked`` were not installed."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "BLOCKED_MODULES": blocked,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120, check=False)


ENTRY_MODULES = entry_points()
OPTIONAL = "tensorflow,keras,matplotlib"


def test_the_entry_points_are_found() -> None:
    assert {"experiments.mnist.table1", "experiments.mnist.data", "experiments.systems.cnf"} <= set(ENTRY_MODULES)
    assert "experiments.mnist.training" not in ENTRY_MODULES and "experiments.cli" not in ENTRY_MODULES


@pytest.mark.parametrize(
    "module, missing",
    [("mnist.table1", "keras, tensorflow"), ("mnist.smoke", "keras, matplotlib, tensorflow"),
     ("mnist.figure3", "keras, matplotlib, tensorflow"), ("mnist.backward_nfe", "keras, tensorflow"),
     ("systems.cnf", "matplotlib")],
)
def test_missing_extras_give_the_install_command(module: str, missing: str, tmp_path: Path) -> None:
    proc = run_without(tmp_path, OPTIONAL, "-m", f"experiments.{module}", "--help")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr
    assert f"error: python -m experiments.{module} needs {missing}, which " in proc.stderr
    assert 'pip install -e ".[experiments]"' in proc.stderr and 'pip install "odegrad[experiments]"' in proc.stderr


def test_commands_without_extras_still_run(tmp_path: Path) -> None:
    proc = run_without(tmp_path, OPTIONAL, "-m", "experiments.mnist.data", "--help")
    assert proc.returncode == 0 and "--download" in proc.stdout


def test_entry_points_import_without_their_extras(tmp_path: Path) -> None:
    """The extras check runs after the entry module's own imports, so those must not need the extras."""
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    proc = run_without(tmp_path, OPTIONAL, "-c", script, *ENTRY_MODULES)
    assert proc.returncode == 0, proc.stderr


IMPORT_EVERYTHING = textwrap.dedent(
    """
    import builtins, importlib, json, logging, os, pkgutil, sys
    import matplotlib, tensorflow  # their own import-time settings are not ours
    import experiments
    from experiments.imports import is_first_party

    executed = {}
    real_import = builtins.__import__

    def recording(name, globals=None, locals=None, fromlist=(), level=0):
        importer, top = (globals or {}).get("__name__", ""), name.partition(".")[0]
        if level == 0 and importer.startswith("experiments") and top not in sys.stdlib_module_names and not is_first_party(top):
            executed.setdefault(importer, set()).add(top)
        return real_import(name, globals, locals, fromlist, level)

    def state():
        return dict(os.environ), {n: logging.getLogger(n).level for n in ("tensorflow", "absl", "matplotlib")}

    before = state()
    builtins.__import__ = recording
    names = [m.name for m in pkgutil.walk_packages(experiments.__path__, "experiments.")]
    for name in names:
        importlib.import_module(name)
    builtins.__import__ = real_import
    print(json.dumps({"names": names, "same": before == state(), "files": os.listdir("."),
                      "executed": {k: sorted(v) for k, v in executed.items()}}))
    """
)


@pytest.fixture(scope="module")
def import_everything(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Import every module of ``experiments`` in a fresh process, in an empty directory; report what happened."""
    cwd = tmp_path_factory.mktemp("import-everything")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_changes_nothing(import_everything: dict) -> None:
    """Importing every experiments module sets no environment variable or logger level and writes no file."""
    assert set(ENTRY_MODULES) <= set(import_everything["names"])
    assert "experiments.mnist.training" in import_everything["names"]
    assert import_everything["same"] and import_everything["files"] == []


def test_derived_needs_hold_the_imports_that_run(import_everything: dict) -> None:
    """Every third-party import statement a module executes on import is among its derived needs."""
    executed = import_everything["executed"]
    assert {"keras", "tensorflow"} <= set(executed["experiments.mnist.models"])
    assert "numpy" in executed["experiments.systems.cnf_models"]
    for module, packages in executed.items():
        assert set(packages) <= set(needs(module)), module


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_needs_follow_first_party_imports_and_skip_optional_ones(tmp_path: Path) -> None:
    _write(tmp_path, {
        "app/__init__.py": "import json\n",
        "app/entry.py": """
            import numpy as np
            from . import helper
            from app.sub import deep, CONSTANT
            from lib import thing

            def plot():
                import matplotlib.pyplot as plt
                try:
                    import torch
                except ImportError:
                    torch = None

            if __name__ == "__main__":
                plot()
            """,
        "app/helper.py": "from typing import Any\nimport yaml\n",
        "app/sub/__init__.py": "import requests\nCONSTANT = 1\n",
        "app/sub/deep.py": """
            from ..helper import Any
            try:
                import jax
            except (ModuleNotFoundError, AttributeError):
                pass
            """,
        "app/unused.py": "import pandas\n",
        "lib/__init__.py": "import scipy.linalg\nthing = 1\n",
    })
    assert needs("app.entry", tmp_path) == ("matplotlib", "numpy", "requests", "scipy", "yaml")
    assert needs("app.helper", tmp_path) == ("yaml",)
    assert entry_points("app", tmp_path) == ["app.entry"]
    assert "app.sub.deep" in module_imports("app.entry", tmp_path)


def test_run_command_checks_the_needs_before_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(sys, "argv", ["cnf.py", "--help"])
    with pytest.raises(SystemExit) as info:
        cli.run_command("experiments.systems.cnf", lambda: pytest.fail("main ran without matplotlib"))
    assert info.value.code == 1
    assert "error: python -m experiments.systems.cnf needs matplotlib, which is not installed" in capsys.readouterr().err


def test_missing_modules_sees_a_blocked_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)
    assert cli.missing_modules(["keras", "numpy", "no_such_package_here"]) == ["keras", "no_such_package_here"]
    with pytest.raises(cli.MissingExtrasError, match=r'needs keras, which is not installed .*pip install -e "\.\[experiments\]"'):
        cli.require("python -m experiments.mnist.table1", ["numpy", "keras"])


@pytest.fixture()
def restore_loggers():
    from absl import logging as absl_logging

    tf_level, absl_level = logging.getLogger("tensorflow").level, absl_logging.get_verbosity()
    yield
    logging.getLogger("tensorflow").setLevel(tf_level)
    absl_logging.set_verbosity(absl_level)


def test_run_command_quiets_tensorflow_unless_verbose(monkeypatch: pytest.MonkeyPatch, restore_loggers: None) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    logging.getLogger("tensorflow").setLevel(logging.INFO)
    monkeypatch.setattr(sys, "argv", ["data.py", "--verbose"])
    assert cli.run_command("experiments.mnist.data", lambda: "ran") == "ran"
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and logging.getLogger("tensorflow").level == logging.INFO
    monkeypatch.setattr(sys, "argv", ["data.py"])
    cli.run_command("experiments.mnist.data", lambda: None)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == cli.TF_LOG_LEVEL
    assert logging.getLogger("tensorflow").level == logging.ERROR
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cli.run_command("experiments.mnist.data", lambda: None)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_tensorflow_start_up_lines_are_hidden() -> None:
    """``table1 --help`` imports TensorFlow; none of its C++ log lines reach the terminal."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "experiments.mnist.table1", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0 and "--verbose" in proc.stdout
    assert "absl::InitializeLog" not in proc.stderr
    assert not re.search(r"^[IW]\d{4} ", proc.stderr, re.MULTILINE), proc.stderr


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


ENTRY_POINTS = [(module, "main") for module in ENTRY_MODULES] + [
    ("benchmarks.peers", "run"), ("benchmarks.profile", "main"), ("benchmarks.tf_block", "main"),
    ("benchmarks.odenet_step", "main"), ("benchmarks.quickstart", "main"), ("benchmarks.latent_step", "main"),
]


@pytest.mark.parametrize("module, function", ENTRY_POINTS)
def test_every_flag_has_help(module: str, function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed) as info:
        getattr(importlib.import_module(module), function)([])
    parser = info.value.parser
    assert parser.prog == f"python -m {module}"
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{module}: {action.option_strings} has no help text"


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "sub" / "results.json", json.dumps({"v": 1}))
    assert path == tmp_path / "sub" / "results.json" and json.loads(path.read_text()) == {"v": 1}
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


@pytest.mark.parametrize("where", ["write", "rename"])
def test_interrupted_write_keeps_the_old_file(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash (disk full while writing, Ctrl-C before the rename) leaves the old content, no debris."""
    path = write_atomic(tmp_path / "memory.json", json.dumps({"v": 1}))

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device") if where == "write" else KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync" if where == "write" else "replace", fail)
    with pytest.raises(OSError if where == "write" else KeyboardInterrupt):
        write_atomic(path, json.dumps({"v": 2, "pad": "x" * 100_000}))
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["memory.json"]


def test_start_up_notices_are_recognised_and_nothing_else() -> None:
    """The two notices ``import tensorflow`` prints whatever the log level (seen on an Intel Xeon
    with AMX; AVX2-only CPUs print only the first) are dropped; errors and other lines are not."""
    notices = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796257583.116677    2190 port.cc:153] oneDNN custom operations are on. You may see "
        "slightly different numerical results due to floating-point round-off errors from different "
        "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    ]
    kept = [
        "E0000 00:00:1796257583.116677    2190 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
        "I0000 00:00:1796257583.270137    1748 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
        "Traceback (most recent call last):\n",
    ]
    assert all(cli.STARTUP_NOTICES.match(line) for line in notices)
    assert not any(cli.STARTUP_NOTICES.match(line) for line in kept)


def _requirement_names(lines: str) -> set[str]:
    """Import names of setup.cfg requirement lines (``tensorflow-cpu>=2.16; ...`` -> ``tensorflow``)."""
    names = {re.split(r"[\s<>=;\[!~]", line.strip(), maxsplit=1)[0] for line in lines.splitlines() if line.strip()}
    return {name.removesuffix("-cpu").replace("-", "_") for name in names}


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_every_command_needs_only_what_the_experiments_extra_installs(module: str) -> None:
    """The README's main job installs ``.[experiments]`` only: no command may need more (a need
    outside an ``except ImportError`` block anywhere in odegrad, e.g. of JAX, stops it at the
    extras check). Keras comes with TensorFlow."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    installed = (_requirement_names(config["options"]["install_requires"])
                 | _requirement_names(config["options.extras_require"]["experiments"]) | {"keras"})
    assert set(needs(module)) <= installed, sorted(set(needs(module)) - installed)
