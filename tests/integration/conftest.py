"""Fixtures the store's integration tests share: a home, and a store on each database."""

from __future__ import annotations

import pytest

from crewctl.store import open_store


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "home")


@pytest.fixture
def store(db_url, home):
    s = open_store(db_url, home=home)
    yield s
    s.close()
