"""The real local model server for tests (CREWCTL_TEST_OPENAI_URL).

`.ci/run` starts `shared/tools/local-llm` in the background (its first build takes minutes)
and sets CREWCTL_TEST_OPENAI_URL with CREWCTL_TEST_OPENAI_DEADLINE (epoch seconds): the
model tests run last and wait for the server until that deadline, instead of the whole run
waiting for the build up front.

Every model test reaches the server through `ReplyCap`, a proxy that caps the length of each
reply. The server generates one reply at a time and keeps generating after its client hangs
up, so a single uncapped request (a tool's default, a turn killed by a test's teardown) could
hold it for minutes, up to its whole context, and time out every model test after it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from crewctl.testing.http import LoopbackServer, RecordedRequest, Reply

__all__ = ["MODEL_TEST_DEADLINE", "REPLY_TOKEN_CAP", "ReplyCap", "llm_url", "wait_for_llm"]

# Seconds a model test waits for what it waits for: under pytest-timeout's 300 (pyproject), so
# that a slow or stuck model fails the test with its own message and the goal's events, not
# with a timeout's stack dump.
MODEL_TEST_DEADLINE = 240
REPLY_TOKEN_CAP = 64  # a few seconds of generation on 2 slow cores; enough for any marker a test needs


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


class ReplyCap:
    """A loopback proxy in front of `upstream` that lowers every request's `max_tokens` (and
    `max_completion_tokens`) to `cap`, and otherwise forwards requests and replies unchanged."""

    def __init__(self, upstream: str, cap: int = REPLY_TOKEN_CAP) -> None:
        self.upstream = upstream.rstrip("/")
        self.path = urlsplit(self.upstream).path.rstrip("/")
        self.cap = cap
        self.capped = 0  # requests whose limit was lowered or added
        self._lock = threading.Lock()
        self.server = LoopbackServer()

    def __enter__(self) -> "ReplyCap":
        self.server.start()
        self.server.route("GET", f"{self.path}/models", self._forward)
        for endpoint in ("chat/completions", "completions"):
            self.server.route("POST", f"{self.path}/{endpoint}", self._forward)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.close()

    @property
    def base_url(self) -> str:
        return self.server.url + self.path

    def limited(self, body: bytes) -> bytes:
        """The request body with its reply limit at most `cap` (unchanged if it is no JSON object)."""
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        asked = [v for v in (data.get("max_tokens"), data.get("max_completion_tokens")) if isinstance(v, int)]
        data.pop("max_completion_tokens", None)
        data["max_tokens"] = min([self.cap, *asked])
        if not asked or min(asked) > self.cap:
            with self._lock:
                self.capped += 1
        return json.dumps(data).encode()

    def _forward(self, request: RecordedRequest) -> Reply:
        url = self.upstream + request.path[len(self.path):]
        headers = {"content-type": request.header("content-type") or "application/json"}
        if request.method == "GET":
            upstream = httpx.get(url, headers=headers, timeout=60)
        else:
            upstream = httpx.post(url, content=self.limited(request.body), headers=headers, timeout=600)
        return Reply(status=upstream.status_code, body=upstream.content,
                     headers={"Content-Type": upstream.headers.get("content-type", "application/json")})
