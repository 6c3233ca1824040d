"""`anthropic:MODEL`: the Anthropic Messages API.

POST {base}/v1/messages with x-api-key and anthropic-version: 2023-06-01, the session's
messages (`request.history`, then the new prompt as a user message) and max_tokens. The
HTTP side (httpx, and why), retries, cancel and limits live in brains/_http.py.

Settings, environment first, then the config file's [anthropic] table:

    key        ANTHROPIC_API_KEY,  [anthropic] api_key
    base URL   ANTHROPIC_BASE_URL, [anthropic] base_url, else https://api.anthropic.com
    [anthropic] max_tokens (default 8192), stream = true|false, temperature,
               timeout, connect_timeout, read_timeout, max_attempts, backoff_base,
               backoff_cap, max_retry_after,
               input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok

Streaming by default. Unlike some OpenAI-compatible servers, the Messages API always
reports usage in a stream (message_start carries the input side, message_delta the
cumulative output), so streaming costs nothing in accounting. It buys the things a long
agent turn needs: bytes keep flowing during a long generation (Anthropic's own SDKs refuse
non-streamed requests that may run past ten minutes, because idle connections get dropped
on the way), a cancel lands mid-generation, and an overload reported mid-stream (an `error`
event) is retried like a 529. `stream = false` sends plain requests (the reply is the same
Message object, read in one piece).

Usage. Anthropic's `input_tokens` counts only the uncached tail of the prompt: a 1,500-token
prompt served from cache reports input_tokens: 3. crewctl's input_tokens means every prompt
token the model read (as OpenAI's prompt_tokens does), so it is input_tokens +
cache_creation_input_tokens + cache_read_input_tokens, and cached_tokens is
cache_read_input_tokens, a part of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..exceptions import BrainConfigError, BrainError, ConfigError, UsageLimited
from . import _http
from ._http import Attempt, Failure, TextBuffer
from .base import TurnReply, TurnRequest, Usage

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["AnthropicBrain", "DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
# Every current Claude model allows at least this many output tokens; older ones that allow
# fewer answer 400 with the limit in the message, and [anthropic] max_tokens fixes it.
DEFAULT_MAX_TOKENS = 8192
API_VERSION = "2023-06-01"
PROVIDER = "anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"

# https://docs.anthropic.com/en/api/errors: 429 rate_limit_error is retried (with its
# retry-after), except when error.details.error_code says the monthly spend cap is reached:
# that lasts until the next month, so no retry. 529 overloaded_error is retried and, if it
# outlasts the retries, reported as UsageLimited (back off longer). 402 billing_error is a
# usage limit that no retry fixes.
SPEND_CAP_CODES = frozenset({"enforced_spend_limit_reached"})
OVERLOADED = "overloaded_error"
RATE_LIMITED = "rate_limit_error"


class AnthropicBrain(_http.HttpBrain):
    wants_history = True  # crewctl stores the session's messages and passes them back

    def __init__(
        self,
        model: str,
        *,
        config: "Config | None" = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int | None = None,
        stream: bool | None = None,
        temperature: float | None = None,
        **http: Any,
    ) -> None:
        """`http` takes HttpSettings keys (timeout, max_attempts, backoff_base, ...) and price
        keys (input_usd_per_mtok, ...); each overrides the config file's [anthropic] value."""
        table = _http.bind_provider(
            self, PROVIDER, model, "anthropic:claude-sonnet-4-5", config, base_url=base_url, api_key=api_key,
            base_env=BASE_URL_ENV, key_env=KEY_ENV, default_base=DEFAULT_BASE_URL, http=http,
        )
        tokens = _http.config_number(PROVIDER, table, "max_tokens", max_tokens, int)
        self.max_tokens = DEFAULT_MAX_TOKENS if tokens is None else tokens
        if self.max_tokens < 1:
            raise ConfigError("anthropic: [anthropic] max_tokens must be at least 1")
        self.stream = _http.config_flag(PROVIDER, table, "stream", stream, default=True)
        self.temperature = _http.config_number(PROVIDER, table, "temperature", temperature, float)
        self.spec = f"anthropic:{model}"
        self._http = _http.LazyClient()

    @classmethod
    def from_spec(cls, rest: str, config: "Config | None" = None) -> "AnthropicBrain":
        """`MODEL` (the part after "anthropic:")."""
        return cls((rest or "").strip(), config=config)

    # -----------------------------------------------------------------------------------

    def run(self, request: TurnRequest) -> TurnReply:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": _http.messages_of(request),
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.stream:
            body["stream"] = True
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if self.stream else "application/json",
            "anthropic-version": API_VERSION,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return _http.post(
            self._client,
            provider=PROVIDER,
            url=f"{self.base_url}/v1/messages",
            headers=headers,
            body=body,
            request=request,
            settings=self.settings,
            classify=self._classify,
            consume=self._consume_stream if self.stream else self._consume_plain,
        )

    def _consume_stream(self, attempt: Attempt) -> TurnReply:
        content_type = attempt.response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "text/event-stream":
            return self._consume_plain(attempt)
        text = TextBuffer(PROVIDER)
        usage: dict[str, Any] = {}
        stopped = False
        for event in _http.iter_sse(attempt.chunks()):
            data = _json(event.data)
            kind = data.get("type") or event.event
            if kind == "message_start":
                message = data.get("message")
                if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                    usage.update(message["usage"])
            elif kind == "content_block_delta":
                delta = data.get("delta")
                if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    text.add(delta["text"])
            elif kind == "message_delta":
                # Counts here are cumulative for the whole message, so they replace.
                if isinstance(data.get("usage"), dict):
                    usage.update({k: v for k, v in data["usage"].items() if v is not None})
            elif kind == "message_stop":
                stopped = True
                break
            elif kind == "error":
                raise self._failure_from_error(data.get("error"), status=None, retry_after=None)
        if not stopped:
            raise Failure(BrainError("anthropic: the stream ended before message_stop"), retry=True)
        return TurnReply(text=text.text(), usage=self._usage(usage))

    def _consume_plain(self, attempt: Attempt) -> TurnReply:
        data = _json(attempt.body().decode("utf-8", errors="replace"))
        if data.get("type") == "error":
            raise self._failure_from_error(data.get("error"), status=None, retry_after=None)
        text = TextBuffer(PROVIDER)
        for block in data.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                text.add(block["text"])
        usage = data.get("usage")
        return TurnReply(text=text.text(), usage=self._usage(usage if isinstance(usage, dict) else {}))

    def _usage(self, usage: Mapping[str, Any]) -> Usage:
        uncached = _count(usage.get("input_tokens"))
        written = _count(usage.get("cache_creation_input_tokens"))
        read = _count(usage.get("cache_read_input_tokens"))
        return self.prices.usage(uncached + written + read, _count(usage.get("output_tokens")), read)

    def _failure_from_error(self, error: Any, *, status: int | None, retry_after: float | None) -> Failure:
        err = error if isinstance(error, dict) else {}
        kind = str(err.get("type") or "")
        message = " ".join(str(err.get("message") or kind or "error").split())[:300]
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        where = f"{status} " if status else ""
        if kind == RATE_LIMITED and str(details.get("error_code") or "") in SPEND_CAP_CODES:
            return Failure(UsageLimited(f"anthropic: {where}spend limit reached: {message}"))
        if kind == "billing_error" or status == 402:
            return Failure(UsageLimited(f"anthropic: {where}billing: {message}"))
        if kind in (RATE_LIMITED, OVERLOADED) or status in (429, 529):
            label = "overloaded" if kind == OVERLOADED or status == 529 else "rate limited"
            return Failure(UsageLimited(f"anthropic: {where}{label}: {message}"), retry=True, retry_after=retry_after)
        if kind == "api_error" or (status is not None and (status in (408, 409) or status >= 500)):
            return Failure(BrainError(f"anthropic: {where}{kind or 'server error'}: {message}"), retry=True, retry_after=retry_after)
        if status is None:
            # An error event inside a 200 stream that is none of the above: the server's
            # trouble mid-generation, worth another attempt.
            return Failure(BrainError(f"anthropic: the stream failed: {kind or 'error'}: {message}"), retry=True)
        return Failure(BrainError(f"anthropic: {where}{kind or 'error'}: {message}"))

    def _classify(self, status: int, phrase: str, body: bytes, headers: Mapping[str, str]) -> Failure:
        reason, err = _http.error_reason(body)
        if status in (401, 403):
            return Failure(BrainConfigError(f"anthropic: {status} {phrase or 'Unauthorized'} — check {KEY_ENV}"))
        if status == 404:
            said = f": {reason}" if reason else ""
            return Failure(BrainConfigError(
                f"anthropic: 404 Not Found for model {self.model!r} at {self.base_url}/v1/messages — "
                f"check the model name and ANTHROPIC_BASE_URL{said}"
            ))
        if not err:
            err = {"type": "", "message": reason or phrase}
        return self._failure_from_error(err, status=status, retry_after=_http.retry_after_seconds(headers))


def _json(text: str) -> dict:
    return _http.json_object(PROVIDER, text)


_count = _http.token_count
