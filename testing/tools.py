"""The real agent CLIs the tests run (.ci/run installs them under ~/.cache/crewctl-tools).

A test that needs one is marked `@needs_tool(path, name)`: on a contributor's machine
without the tool it skips, with the reason; where `.ci/run` installed the tools
(CREWCTL_REQUIRE_TOOLS is set) a missing one fails instead, so a broken install can never
pass as a green run of skips. The same rule as CREWCTL_REQUIRE_POSTGRES.
"""

from __future__ import annotations

import functools
import os
import subprocess
from typing import Any, Callable

import pytest

__all__ = ["INSTALLS", "TOOLS_CACHE", "install_root", "live_processes", "missing_tool", "needs_tool", "tool_path"]

TOOLS_CACHE = os.environ.get("CREWCTL_TOOLS_CACHE") or os.path.expanduser("~/.cache/crewctl-tools")

# Where .ci/run puts each tool under TOOLS_CACHE: aider in its own venv (it pins many
# packages), the npm tools each under their own prefix.
INSTALLS = {
    "aider": "aider-venv/bin/aider",
    "codex": "codex/node_modules/.bin/codex",
    "gemini": "gemini/node_modules/.bin/gemini",
    "claude": "claude/node_modules/.bin/claude",
    "opencode": "opencode/node_modules/.bin/opencode",
}


def tool_path(name: str) -> str | None:
    """The real `name` binary: $CREWCTL_TEST_<NAME> if set, else the one .ci/run installed."""
    for candidate in (os.environ.get(f"CREWCTL_TEST_{name.upper()}"), os.path.join(TOOLS_CACHE, INSTALLS[name])):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _why(name: str) -> str:
    return f"{name} is not installed (.ci/run installs it under {TOOLS_CACHE})"


def missing_tool(name: str) -> None:
    """Inside a test: skip (or, under CREWCTL_REQUIRE_TOOLS, fail) because `name` is missing."""
    if os.environ.get("CREWCTL_REQUIRE_TOOLS"):
        pytest.fail(f"{_why(name)}, but CREWCTL_REQUIRE_TOOLS is set: the install in .ci/run failed")
    pytest.skip(_why(name))


def needs_tool(path: str | None, name: str) -> Callable[[Any], Any]:
    if path is not None:
        return lambda test: test
    why = _why(name)
    if not os.environ.get("CREWCTL_REQUIRE_TOOLS"):
        return pytest.mark.skip(reason=why)

    def failing(test: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> None:
            missing_tool(name)

        return run

    return failing


def install_root(path: str) -> str:
    """What every process of the tool at `path` has in its command line: an npm tool's
    node_modules (its node wrapper and its native binary both run from there), else the
    binary's folder (a venv's bin: its python runs the script from there)."""
    real = os.path.realpath(path)
    if "/node_modules/" in real:
        return real.split("/node_modules/")[0] + "/node_modules/"
    return os.path.dirname(real) + "/"


def live_processes(pattern: str) -> list[str]:
    """`pid command` of each live process whose command line holds `pattern` (zombies,
    which are only waiting for their parent to read their exit, are not counted)."""
    found = subprocess.run(["pgrep", "-a", "-f", pattern], capture_output=True, text=True).stdout
    alive = []
    for line in found.splitlines():
        pid = line.split(" ", 1)[0]
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue  # gone meanwhile
        alive.append(line)
    return alive
