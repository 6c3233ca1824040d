"""A Responses API endpoint on loopback, translated onto a real Chat Completions server.

codex 0.171 speaks only the OpenAI Responses API (`POST /v1/responses`, streamed); its config
refuses `wire_api = "chat"` ("no longer supported"). The local model server the tests use
(llama-cpp-python) answers `/v1/chat/completions` and 404s `/v1/responses`. This shim is a
stand-in for that one endpoint, not for codex and not for the model: the real codex binary
sends its real requests here, each is turned into one chat completion on the real server,
and the real model's text and the server's own token counts come back as Responses events.

What it does not translate, honestly: tools (codex offers exec_command, apply_patch, ...; the
tiny model is given none, so it can only answer in text) and reasoning settings. Tool-call
items in the input (none arrive when no tool is offered) are passed on as plain text.

    with ResponsesShim("http://127.0.0.1:8089/v1", max_tokens=48) as shim:
        ...  # codex with model_providers.local.base_url = shim.base_url, wire_api = "responses"
        shim.exchanges[0]["usage"]  # what the real server reported for the first request

`hold()` keeps every request that arrives from then on waiting, unanswered, until `release()`
(or the shim closes): a test can catch a tool mid-turn, with its request in flight, and see
what a cancel or a supervisor stop does to it.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from .http import LoopbackServer, RecordedRequest, Reply

__all__ = ["ResponsesShim", "chat_messages", "streamed_reply"]


class ResponsesShim:
    """Serves `{path}/responses` (and forwards `{path}/models`) in front of `upstream`."""

    def __init__(self, upstream: str, *, model: str | None = None, max_tokens: int | None = None,
                 temperature: float | None = 0.0, instructions: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.path = urlsplit(self.upstream).path.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        # In place of the tool's own system prompt (its instructions and every system or
        # developer message; on chat completions also the tools offered), if given. The local model evaluates some
        # 30-80 prompt tokens a second on 2 cores; codex's built-in instructions are ~4k
        # tokens, one to three minutes a request before the model says a word.
        self.instructions = instructions
        self.exchanges: list[dict[str, Any]] = []  # {"request", "chat", "status", "usage", "text"}
        self.in_flight = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self.held = 0  # requests waiting at a hold right now
        self.server = LoopbackServer()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _wait_if_held(self) -> bool:
        """False if the request was held until the shim closed: it is hung up on, unanswered."""
        if self._open.is_set():
            return not self._closed
        with self._lock:
            self.held += 1
        try:
            self._open.wait(timeout=600)
        finally:
            with self._lock:
                self.held -= 1
        return not self._closed

    def __enter__(self) -> "ResponsesShim":
        self.server.start()
        self.server.route("POST", f"{self.path}/responses", self._responses)
        self.server.route("GET", f"{self.path}/models", self._models)
        # Chat completions pass straight through (aider's way in), recorded the same way.
        self.server.route("POST", f"{self.path}/chat/completions", self._chat)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed = True
        self.release()
        self.server.close()

    @property
    def base_url(self) -> str:
        return self.server.url + self.path

    def idle(self) -> bool:
        with self._lock:
            return self.in_flight == 0

    def _models(self, _request: RecordedRequest) -> Reply:
        upstream = httpx.get(f"{self.upstream}/models", timeout=30)
        return Reply(status=upstream.status_code, headers={"Content-Type": "application/json"}, body=upstream.content)

    def _chat(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
        try:
            if not self._wait_if_held():
                return Reply.closed()
            asked = request.json()
            chat = asked
            if self.instructions is not None:  # and the tools it offers, whose schemas the server puts in the prompt
                chat = {k: v for k, v in asked.items() if k not in ("tools", "tool_choice")}
                chat["messages"] = [{"role": "system", "content": self.instructions}] + [
                    m for m in asked.get("messages") or () if m.get("role") not in ("system", "developer")]
            upstream = httpx.post(f"{self.upstream}/chat/completions", json=chat, timeout=600)
            exchange: dict[str, Any] = {"request": asked, "chat": chat, "status": upstream.status_code,
                                        "usage": None, "text": None}
            if upstream.status_code == 200 and upstream.headers.get("content-type", "").startswith("application/json"):
                data = upstream.json()
                exchange.update(usage=data.get("usage"), text=data["choices"][0]["message"].get("content"))
            elif upstream.status_code == 200 and upstream.headers.get("content-type", "").startswith("text/event-stream"):
                exchange.update(streamed_reply(upstream.content))
            with self._lock:
                self.exchanges.append(exchange)
            return Reply(status=upstream.status_code, headers={"Content-Type": upstream.headers.get("content-type", "application/json")},
                         body=upstream.content)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _responses(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
        try:
            if not self._wait_if_held():
                return Reply.closed()
            return self._translate(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _translate(self, request: RecordedRequest) -> Reply:
        body = request.json()
        messages = chat_messages(body)
        if self.instructions is not None:  # codex 0.171 sends them as developer messages in its input
            messages = [{"role": "system", "content": self.instructions}] + [m for m in messages if m["role"] != "system"]
        chat: dict[str, Any] = {"model": self.model or body.get("model"), "messages": messages, "stream": False}
        if self.max_tokens is not None:
            chat["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            chat["temperature"] = self.temperature
        upstream = httpx.post(f"{self.upstream}/chat/completions", json=chat, timeout=600)
        exchange: dict[str, Any] = {"request": body, "chat": chat, "status": upstream.status_code, "usage": None, "text": None}
        if upstream.status_code != 200:
            with self._lock:
                self.exchanges.append(exchange)
            # The server's own error, with its status: codex reports it in its own words.
            return Reply(status=upstream.status_code, headers={"Content-Type": "application/json"}, body=upstream.content)
        data = upstream.json()
        text = data["choices"][0]["message"].get("content") or ""
        usage = data.get("usage") or {}
        exchange.update(usage=usage, text=text)
        with self._lock:
            self.exchanges.append(exchange)
        return Reply.sse(_events(text, usage), headers={"Cache-Control": "no-cache"})


def streamed_reply(body: bytes) -> dict[str, Any]:
    """The text and usage (None when the server streamed none) of a streamed chat completion."""
    text, usage = [], None
    for line in body.decode("utf-8", "replace").splitlines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            continue
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    return {"text": "".join(text), "usage": usage}


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The Responses request's instructions and input as chat messages, in order."""
    messages: list[dict[str, str]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for item in items or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = {"developer": "system"}.get(item.get("role"), item.get("role") or "user")
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            if content:
                messages.append({"role": role, "content": str(content)})
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            messages.append({"role": "assistant", "content": json.dumps(item)})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "user", "content": str(item.get("output"))})
    return messages


def _events(text: str, usage: dict[str, Any]) -> list[tuple[str, str]]:
    rid = f"resp_{uuid.uuid4().hex}"
    mid = f"msg_{uuid.uuid4().hex}"
    message = {"type": "message", "id": mid, "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    responses_usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    events = [
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": mid, "delta": text},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": {"id": rid, "status": "completed", "output": [message], "usage": responses_usage}},
    ]
    return [(e["type"], json.dumps(e)) for e in events]
