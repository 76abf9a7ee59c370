"""The house: what the wheel installs, one version, TensorFlow optional, lint clean."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools

import odegrad

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_only_odegrad():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    include = config["options.packages.find"]["include"].split()
    packages = setuptools.find_packages(str(ROOT), include=include)
    assert packages and all(p == "odegrad" or p.startswith("odegrad.") for p in packages)
    assert {"odegrad", "odegrad.tf", "odegrad.gradcheck"} <= set(packages)


def test_version_has_one_source():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["version"] == "attr: odegrad.__version__"
    assert odegrad.__version__.count(".") == 2


def test_core_imports_without_tensorflow():
    code = ("import sys; sys.modules['tensorflow'] = None; import odegrad; "
            "assert 'odegrad.tf' not in sys.modules\n"
            "try:\n    import odegrad.tf\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install -e ".[tf]"' in out.stdout and 'pip install "odegrad[tf]"' in out.stdout


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip('ruff is not installed (it comes with pip install -e ".[test]")')
    out = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_gpu_extra_brings_gpu_tensorflow():
    """``.[tf]`` installs CPU TensorFlow on x86-64; ``.[tf-gpu]`` the CUDA build (issue 11.5)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    assert "tensorflow[and-cuda]" in extras["tf-gpu"]
    assert "tensorflow-cpu" in extras["tf"] and "and-cuda" not in extras["tf"]
