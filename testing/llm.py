"""The real local model server for tests (CREWCTL_TEST_OPENAI_URL).

`.ci/run` starts `shared/tools/local-llm` in the background (its first build takes minutes)
and sets CREWCTL_TEST_OPENAI_URL with CREWCTL_TEST_OPENAI_DEADLINE (epoch seconds): the
model tests run last and wait for the server until that deadline, instead of the whole run
waiting for the build up front.
"""

from __future__ import annotations

import os
import time

import httpx

__all__ = ["llm_url", "wait_for_llm"]


def llm_url() -> str | None:
    return (os.environ.get("CREWCTL_TEST_OPENAI_URL") or "").rstrip("/") or None


def wait_for_llm(url: str) -> str | None:
    """The first model id once the server answers; None if the deadline passes first."""
    deadline = float(os.environ.get("CREWCTL_TEST_OPENAI_DEADLINE") or 0) or time.time() + 30
    while True:
        try:
            response = httpx.get(f"{url}/models", timeout=5)
            if response.status_code == 200:
                return response.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        if time.time() >= deadline:
            return None
        time.sleep(2)  # poll: the server is being built by another process
