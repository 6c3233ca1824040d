"""`openai:MODEL[@BASE_URL]`: any OpenAI-compatible Chat Completions server.

OpenAI itself, Ollama, vLLM, llama.cpp, llama-cpp-python: POST {base}/chat/completions with
the session's messages (`request.history`, then the new prompt as a user message). The HTTP
side (httpx, and why), retries, cancel and limits live in brains/_http.py.

Settings, environment first, then the config file's [openai] table:

    key        OPENAI_API_KEY,  [openai] api_key     none is fine for local servers: then no
                                                     Authorization header is sent at all
    base URL   the spec's @URL, then OPENAI_BASE_URL, then [openai] base_url,
               then https://api.openai.com/v1
    [openai]   stream = true|false, max_tokens, temperature,
               timeout, connect_timeout, read_timeout, max_attempts, backoff_base,
               backoff_cap, max_retry_after,
               input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok

Streaming and its fallback. Turns stream (SSE) with `stream_options: {"include_usage":
true}`: the text arrives as it is made, a long generation never sits silent on the socket,
and the usage comes in one last chunk (prompt_tokens, completion_tokens,
prompt_tokens_details.cached_tokens). Not every server honours that option. Evidence,
from llama-cpp-python 0.3.36 serving SmolLM2-135M (shared/tools/local-llm), probed with
curl: the streamed chunks carry no "usage" key at all and no usage chunk comes before
`data: [DONE]`, while the same request non-streamed answers with
`"usage": {"prompt_tokens": 32, "completion_tokens": 20, "total_tokens": 52}` (no
prompt_tokens_details; both kept in tests/data/recordings/openai/llama_cpp_python_*). And
the same messages at temperature 0 did not always produce the same text twice (the first
request after start differed), so the usage of one response cannot be paired with the text
of another. Hence: when a stream ends without usage, its
text is dropped and the turn is asked again without streaming, and that one response gives
both the text and the usage. The server is remembered (per base URL, for this process), so
later turns go straight to a plain request: the price is one extra generation per process
per such server. `stream = false` in [openai] skips streaming from the start (no waste);
`stream = true` is the default. A server that reports no usage even then gives zero counts:
there is nothing else to count with.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any, Mapping

from ..exceptions import BrainConfigError, BrainError, ConfigError, UsageLimited
from . import _http
from ._http import Attempt, Failure, TextBuffer
from .base import TurnReply, TurnRequest

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["OpenAIBrain", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "openai"
KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"

# OpenAI's 429s that mean "nothing left to spend", not "too fast": retrying cannot help
# (https://platform.openai.com/docs/guides/error-codes; error.type stays insufficient_quota
# while error.code names the cause).
QUOTA_CODES = frozenset({
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
})

_SPEC = re.compile(r"^(?P<model>.*?)@(?P<url>https?://\S+)$")
# After an @, what can only be an attempt at a server address (a model version is a word).
_MEANT_AS_SERVER = re.compile(r"\s|/|:|^(https?|www\.|localhost)|\.[a-z]{2,}|^\d+\.\d+\.", re.IGNORECASE)

# Base URLs whose streams have been seen to end without usage (see the module docstring).
_NO_STREAM_USAGE: set[str] = set()
_NO_STREAM_USAGE_LOCK = threading.Lock()


class OpenAIBrain(_http.HttpBrain):
    wants_history = True  # crewctl stores the session's messages and passes them back

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        config: "Config | None" = None,
        api_key: str | None = None,
        stream: bool | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **http: Any,
    ) -> None:
        """`http` takes HttpSettings keys (timeout, max_attempts, backoff_base, ...) and price
        keys (input_usd_per_mtok, ...); each overrides the config file's [openai] value."""
        table = _http.bind_provider(
            self, PROVIDER, model, "openai:gpt-4o-mini or openai:llama3@http://127.0.0.1:11434/v1", config,
            base_url=base_url, api_key=api_key, base_env=BASE_URL_ENV, key_env=KEY_ENV,
            default_base=DEFAULT_BASE_URL, http=http,
        )
        self.stream = _http.config_flag(PROVIDER, table, "stream", stream, default=True)
        self.max_tokens = _http.config_number(PROVIDER, table, "max_tokens", max_tokens, int)
        self.temperature = _http.config_number(PROVIDER, table, "temperature", temperature, float)
        self.spec = f"openai:{model}" + (f"@{base_url}" if base_url else "")
        self._http = _http.LazyClient()

    @classmethod
    def from_spec(cls, rest: str, config: "Config | None" = None) -> "OpenAIBrain":
        """`MODEL` or `MODEL@BASE_URL` (the part after "openai:")."""
        rest = (rest or "").strip()
        match = _SPEC.match(rest)
        if match is None and "@" in rest and _MEANT_AS_SERVER.search(rest.rpartition("@")[2]):
            # What follows @ was meant as the server but is no URL: quietly calling the
            # public API with "MODEL@garbage" as the model would send the prompt elsewhere
            # than intended. (A model id may hold an @, e.g. claude-3@20240229.)
            raise ConfigError(
                f"openai:{rest}: {rest.rpartition('@')[2]!r} after @ is not a base URL; use "
                "openai:MODEL@http://HOST:PORT/v1 (or https://...)"
            )
        model, url = (match["model"], match["url"]) if match else (rest, None)
        if any(ch.isspace() for ch in model):
            raise ConfigError(f"openai:{rest}: a model name has no spaces")
        return cls(model, url, config=config)

    # -----------------------------------------------------------------------------------

    def run(self, request: TurnRequest) -> TurnReply:
        if self.stream and self.base_url not in _NO_STREAM_USAGE:
            reply = self._turn(request, stream=True)
            if reply is not None:
                return reply
            # The stream ended without usage: see the module docstring.
            with _NO_STREAM_USAGE_LOCK:
                _NO_STREAM_USAGE.add(self.base_url)
        reply = self._turn(request, stream=False)
        assert reply is not None
        return reply

    def _turn(self, request: TurnRequest, *, stream: bool) -> TurnReply | None:
        body: dict[str, Any] = {"model": self.model, "messages": _http.messages_of(request)}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        else:
            body["stream"] = False
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        return _http.post(
            self._client,
            provider=PROVIDER,
            url=url,
            headers=headers,
            body=body,
            request=request,
            settings=self.settings,
            classify=self._classify,
            consume=self._consume_stream if stream else self._consume_plain,
        )

    def _consume_stream(self, attempt: Attempt) -> TurnReply | None:
        if not _is_event_stream(attempt.response):
            # A server that ignores "stream": a plain completion is still a good answer.
            return self._consume_plain(attempt)
        text = TextBuffer(PROVIDER)
        usage: dict | None = None
        done = False
        for event in _http.iter_sse(attempt.chunks()):
            if event.data.strip() == "[DONE]":
                done = True
                break
            chunk = _json(event.data)
            if "error" in chunk and not chunk.get("choices"):
                raise self._stream_error(chunk["error"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str) and choice.get("index", 0) == 0:
                    text.add(delta["content"])
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
        if not done:
            raise Failure(BrainError("openai: the stream ended before [DONE]"), retry=True)
        if usage is None:
            return None
        return TurnReply(text=text.text(), usage=self._usage(usage))

    def _consume_plain(self, attempt: Attempt) -> TurnReply:
        data = _json(attempt.body().decode("utf-8", errors="replace"))
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise Failure(BrainError("openai: the reply has no choices"))
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        text = TextBuffer(PROVIDER)
        text.add(content if isinstance(content, str) else "")
        usage = data.get("usage")
        return TurnReply(text=text.text(), usage=self._usage(usage if isinstance(usage, dict) else {}))

    def _usage(self, usage: Mapping[str, Any]) -> Any:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return self.prices.usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), _count(cached))

    def _stream_error(self, error: Any) -> Failure:
        body = json.dumps({"error": error}).encode()
        reason, err = _http.error_reason(body)
        if _is_quota(err):
            return Failure(UsageLimited(f"openai: quota exhausted: {reason}"))
        # Errors inside a 200 stream are the server's trouble mid-generation (overload,
        # a worker dying): worth another attempt.
        return Failure(BrainError(f"openai: the stream failed: {reason}"), retry=True)

    def _classify(self, status: int, phrase: str, body: bytes, headers: Mapping[str, str]) -> Failure:
        reason, err = _http.error_reason(body)
        said = f": {reason}" if reason else ""
        if status in (401, 403):
            return Failure(BrainConfigError(f"openai: {status} {phrase or 'Unauthorized'} — check {KEY_ENV}"))
        if status == 404:
            return Failure(BrainConfigError(
                f"openai: 404 Not Found for model {self.model!r} at {self.base_url} — "
                f"check the model name and the base URL{said}"
            ))
        retry_after = _http.retry_after_seconds(headers)
        if status == 429:
            if _is_quota(err):
                return Failure(UsageLimited(f"openai: 429 quota exhausted{said}"))
            return Failure(UsageLimited(f"openai: 429 rate limited{said}"), retry=True, retry_after=retry_after)
        if status in (408, 409) or status >= 500:
            return Failure(BrainError(f"openai: {status} {phrase}{said}".rstrip()), retry=True, retry_after=retry_after)
        return Failure(BrainError(f"openai: {status} {phrase}{said}".rstrip()))


def _is_quota(err: Mapping[str, Any]) -> bool:
    return any(str(err.get(k) or "") in QUOTA_CODES for k in ("code", "type"))


def _is_event_stream(response: Any) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def _json(text: str) -> dict:
    return _http.json_object(PROVIDER, text)


_count = _http.token_count
