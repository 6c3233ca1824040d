"""Shared pytest configuration. Reusable helpers live in crewctl.testing, not here."""

from __future__ import annotations

import os

import pytest

from crewctl.testing.llm import ReplyCap, llm_url, wait_for_llm
from crewctl.testing.postgres import PostgresUnavailable, TempPostgres


def pytest_collection_modifyitems(config, items):
    # Model tests last: in CI the model server is still being built while the rest runs.
    items.sort(key=lambda item: item.get_closest_marker("llm") is not None)


@pytest.fixture(scope="session")
def llm_model():
    """(base URL, model id) of the real OpenAI-compatible server, waiting for it in CI.

    The URL is a ReplyCap in front of the server: no test's tool can hold the one server
    with an uncapped reply and starve the model tests after it."""
    url = llm_url()
    if url is None:
        pytest.skip("set CREWCTL_TEST_OPENAI_URL (e.g. from `shared/tools/local-llm start`) to run model tests")
    model = wait_for_llm(url)
    if model is None:
        pytest.skip(f"the model server at {url} did not answer within its time budget")
    with ReplyCap(url) as cap:
        yield cap.base_url, model


@pytest.fixture(scope="session")
def postgres_server():
    try:
        with TempPostgres() as pg:
            yield pg
    except PostgresUnavailable as exc:
        if os.environ.get("CREWCTL_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (CREWCTL_REQUIRE_POSTGRES) but: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh, empty database of each kind; None means the default SQLite in the home."""
    if request.param == "sqlite":
        return None
    pg = request.getfixturevalue("postgres_server")
    return pg.url(f"crew_{abs(hash(request.node.nodeid)) % 10**8}")
