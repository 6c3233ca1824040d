"""ruff and mypy, run as part of the one test command, so CI and a contributor see the same.

The rule sets and their reasons are in pyproject.toml ([tool.ruff.lint], [tool.mypy]).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
MYPY_PACKAGES = ("crewctl.goal", "crewctl.store")


def run(*argv: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1"})


def test_ruff_finds_nothing():
    done = run("ruff", "check", "--no-cache", str(ROOT), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_the_core_and_the_store(tmp_path):
    # The checkout is the package `crewctl` (package-dir "crewctl" = "."), but a clone's folder
    # may have any name: mypy gets the package through a link with the right one.
    (tmp_path / "crewctl").symlink_to(ROOT, target_is_directory=True)
    packages = [arg for name in MYPY_PACKAGES for arg in ("-p", name)]
    done = run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
               *packages, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
