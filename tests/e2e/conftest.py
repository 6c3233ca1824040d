"""Fixtures for end-to-end tests: a real `crewctl run` on a temporary home and a workspace."""

from __future__ import annotations

import pytest

from crewctl.testing import Supervisor


@pytest.fixture
def sup(tmp_path):
    with Supervisor(tmp_path) as s:
        yield s


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    return str(path)
