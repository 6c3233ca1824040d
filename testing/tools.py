"""The real agent CLIs the tests run (.ci/run installs them under ~/.cache/crewctl-tools).

A test that needs one is marked `@needs_tool(path, name)`: on a contributor's machine
without the tool it skips, with the reason; where `.ci/run` installed the tools
(CREWCTL_REQUIRE_TOOLS is set) a missing one fails instead, so a broken install can never
pass as a green run of skips. The same rule as CREWCTL_REQUIRE_POSTGRES.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import pytest

__all__ = ["TOOLS_CACHE", "missing_tool", "needs_tool"]

TOOLS_CACHE = os.environ.get("CREWCTL_TOOLS_CACHE") or os.path.expanduser("~/.cache/crewctl-tools")


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
