"""What ``python -m experiments.X`` does before TensorFlow starts, help texts, and atomic writes."""

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

from experiments import atomic, cli
from experiments.atomic import write_atomic

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


@pytest.mark.parametrize(
    "module, missing",
    [("table1", "tensorflow, keras"), ("smoke", "tensorflow, keras, matplotlib"), ("figure3", "tensorflow, keras, matplotlib"),
     ("memory", "tensorflow, keras"), ("models", "tensorflow, keras"), ("training", "tensorflow, keras"),
     ("backward_nfe", "tensorflow, keras"),
     ("cnf", "matplotlib")],
)
def test_missing_extras_give_the_install_command(module: str, missing: str, tmp_path: Path) -> None:
    proc = run_without(tmp_path, "tensorflow,keras,matplotlib", "-m", f"experiments.{module}", "--help")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr
    assert f"error: python -m experiments.{module} needs {missing}" in proc.stderr
    assert 'pip install -e ".[experiments]"' in proc.stderr and 'pip install "odegrad[experiments]"' in proc.stderr


def test_commands_without_extras_still_run(tmp_path: Path) -> None:
    proc = run_without(tmp_path, "tensorflow,keras,matplotlib", "-m", "experiments.mnist", "--help")
    assert proc.returncode == 0 and "--download" in proc.stdout


def test_missing_modules_sees_a_blocked_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)
    assert cli.missing_modules(["keras", "numpy", "no_such_package_here"]) == ["keras", "no_such_package_here"]
    with pytest.raises(cli.MissingExtrasError, match=r'needs keras, which is not installed .*pip install -e "\.\[experiments\]"'):
        cli.require("python -m experiments.table1", ["numpy", "keras"])


def test_running_module_only_for_python_m_experiments() -> None:
    assert cli.running_module(["-m", "--smoke"], ["py", "-X", "dev", "-m", "experiments.table1", "--smoke"]) == "table1"
    assert cli.running_module(["-m"], ["py", "-mexperiments.smoke"]) == "smoke"
    assert cli.running_module(["-m"], ["py", "-m", "benchmarks.peers"]) is None
    assert cli.running_module(["/x/table1.py"], ["py", "-m", "experiments.table1"]) is None
    assert cli.running_module(["-c"], ["py", "-c", "import experiments"]) is None


@pytest.fixture()
def restore_loggers():
    from absl import logging as absl_logging

    tf_level, absl_level = logging.getLogger("tensorflow").level, absl_logging.get_verbosity()
    yield
    logging.getLogger("tensorflow").setLevel(tf_level)
    absl_logging.set_verbosity(absl_level)


def test_prepare_quiets_tensorflow_unless_verbose(monkeypatch: pytest.MonkeyPatch, restore_loggers: None) -> None:
    orig = ["py", "-m", "experiments.table1"]
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    logging.getLogger("tensorflow").setLevel(logging.INFO)
    cli.prepare_command_line(["-m", "--smoke", "--verbose"], orig)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and logging.getLogger("tensorflow").level == logging.INFO
    cli.prepare_command_line(["/not/-m.py"], orig)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    cli.prepare_command_line(["-m", "--smoke"], orig)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == cli.TF_LOG_LEVEL
    assert logging.getLogger("tensorflow").level == logging.ERROR
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cli.prepare_command_line(["-m"], orig)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_tensorflow_start_up_lines_are_hidden() -> None:
    """``table1 --help`` imports TensorFlow; none of its C++ log lines reach the terminal."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "experiments.table1", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0 and "--verbose" in proc.stdout
    assert "absl::InitializeLog" not in proc.stderr
    assert not re.search(r"^[IW]\d{4} ", proc.stderr, re.MULTILINE), proc.stderr


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


ENTRY_POINTS = [
    ("experiments.table1", "main"), ("experiments.smoke", "main"), ("experiments.figure3", "main"),
    ("experiments.memory", "main"), ("experiments.mnist", "main"), ("experiments.models", "main"),
    ("experiments.cnf", "main"), ("experiments.latent_ode", "main"), ("experiments.learn_dynamics", "main"),
    ("experiments.backward_nfe", "main"), ("benchmarks.peers", "run"), ("benchmarks.profile", "main"),
    ("benchmarks.tf_block", "main"), ("benchmarks.odenet_step", "main"), ("benchmarks.quickstart", "main"),
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
