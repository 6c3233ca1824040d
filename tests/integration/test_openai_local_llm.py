"""The openai: brain against a real OpenAI-compatible model server.

Runs only when CREWCTL_TEST_OPENAI_URL names the server's base URL, for example the one
`shared/tools/local-llm start` prints (llama-cpp-python serving SmolLM2-135M):

    CREWCTL_TEST_OPENAI_URL=http://127.0.0.1:8089/v1 pytest -m llm tests/integration

What proves the usage right: the brain talks to the server through a recording proxy on
loopback (crewctl.testing.http forwarding every request), so the test sees every response the
server sent for the turn, and the usage the server itself reported in them (in a streamed
usage chunk or a plain reply's "usage"). The brain's token totals must equal the sum of those
reports, and its text must be the text of the response that reported them. An independent
raw non-streamed request with the same messages at temperature 0 must count the same prompt
tokens (and, whenever it generates the same text, the same completion tokens).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from crewctl.brains import openai as openai_module
from crewctl.brains.base import Message, TurnReply, TurnRequest
from crewctl.brains.openai import OpenAIBrain
from crewctl.config import Config
from crewctl.testing.http import LoopbackServer, RecordedRequest, Reply

URL = (os.environ.get("CREWCTL_TEST_OPENAI_URL") or "").rstrip("/")

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not URL, reason="set CREWCTL_TEST_OPENAI_URL to an OpenAI-compatible base URL "
                                       "(e.g. the one `shared/tools/local-llm start` prints) to run"),
]

SETTINGS = {"temperature": 0, "max_tokens": 48, "timeout": 300}


@dataclass
class Exchange:
    request: dict
    status: int
    content_type: str
    body: bytes

    def reported_usage(self) -> dict | None:
        """The usage the server reported in this response, if it reported any."""
        if self.content_type.startswith("text/event-stream"):
            usage = None
            for data in _sse_data(self.body):
                if isinstance(data.get("usage"), dict):
                    usage = data["usage"]
            return usage
        data = json.loads(self.body)
        return data.get("usage") if isinstance(data.get("usage"), dict) else None

    def text(self) -> str:
        if self.content_type.startswith("text/event-stream"):
            return "".join(
                choice.get("delta", {}).get("content") or ""
                for data in _sse_data(self.body) for choice in data.get("choices") or ()
            )
        return json.loads(self.body)["choices"][0]["message"]["content"] or ""


def _sse_data(body: bytes):
    for line in body.decode("utf-8").splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            yield json.loads(line[5:])


@pytest.fixture(scope="module")
def model(llm_model) -> str:
    return llm_model[1]


@pytest.fixture
def proxy():
    """A loopback proxy in front of the real server that keeps every exchange."""
    upstream_path = urlsplit(URL).path.rstrip("/")
    exchanges: list[Exchange] = []

    def forward(request: RecordedRequest) -> Reply:
        upstream = httpx.post(f"{URL}/chat/completions", content=request.body,
                              headers={"content-type": "application/json"}, timeout=300)
        content_type = upstream.headers.get("content-type", "application/json")
        exchanges.append(Exchange(request.json(), upstream.status_code, content_type, upstream.content))
        return Reply(status=upstream.status_code, headers={"Content-Type": content_type}, body=upstream.content)

    with LoopbackServer() as server:
        server.route("POST", f"{upstream_path}/chat/completions", forward)
        server.exchanges = exchanges
        server.base_url = server.url + upstream_path
        openai_module._NO_STREAM_USAGE.discard(server.base_url)
        yield server
        openai_module._NO_STREAM_USAGE.discard(server.base_url)


def turn(prompt: str, history: tuple[Message, ...] = ()) -> TurnRequest:
    return TurnRequest(role="lead", goal_id="g-llm", session_id="s-llm", turn=1 + len(history) // 2,
                       prompt=prompt, workdir="/tmp", history=history)


def assert_usage_is_what_the_server_reported(reply: TurnReply, exchanges: list[Exchange]) -> None:
    assert exchanges and all(e.status == 200 for e in exchanges)
    reports = [e.reported_usage() for e in exchanges]
    assert any(reports), "the server reported no usage for this turn at all"
    assert reply.usage.input_tokens == sum(r["prompt_tokens"] for r in reports if r)
    assert reply.usage.output_tokens == sum(r["completion_tokens"] for r in reports if r)
    cached = sum((r.get("prompt_tokens_details") or {}).get("cached_tokens") or 0 for r in reports if r)
    assert reply.usage.cached_tokens == cached
    # The text is the text of the response whose usage was counted, not of another one.
    counted = [e for e, r in zip(exchanges, reports) if r]
    assert reply.text == counted[-1].text()


def test_a_local_model_replies_with_text_and_the_usage_the_server_reported(model, proxy):
    brain = OpenAIBrain.from_spec(f"{model}@{proxy.base_url}", Config(providers={"openai": SETTINGS}))
    prompt = "Name three colours."

    reply = brain.run(turn(prompt))

    assert reply.text.strip()
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= SETTINGS["max_tokens"]
    assert_usage_is_what_the_server_reported(reply, proxy.exchanges)

    # Independently: the same messages, non-streamed, straight to the server.
    raw = httpx.post(f"{URL}/chat/completions", timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": prompt}],
        "temperature": 0, "max_tokens": SETTINGS["max_tokens"],
    }).raise_for_status().json()
    assert reply.usage.input_tokens == raw["usage"]["prompt_tokens"]
    if raw["choices"][0]["message"]["content"] == reply.text:
        assert reply.usage.output_tokens == raw["usage"]["completion_tokens"]


def test_a_two_turn_conversation_sends_the_history(model, proxy):
    brain = OpenAIBrain.from_spec(f"{model}@{proxy.base_url}", Config(providers={"openai": SETTINGS}))

    first = brain.run(turn("My name is Ada. Say hello to me."))
    assert first.text.strip()
    turns_before = len(proxy.exchanges)
    history = (Message("user", "My name is Ada. Say hello to me."), Message("assistant", first.text))
    second = brain.run(turn("What is my name?", history))

    assert second.text.strip()
    assert proxy.exchanges[-1].request["messages"] == [
        {"role": "user", "content": "My name is Ada. Say hello to me."},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "What is my name?"},
    ]
    assert_usage_is_what_the_server_reported(second, proxy.exchanges[turns_before:])
    assert second.usage.input_tokens > first.usage.input_tokens  # the history was read
