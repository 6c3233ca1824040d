"""Shared HTTP plumbing for the API brains (`openai:` and `anthropic:`).

Its length (about 730 lines) is the one HTTP stack both API brains share (retries,
Retry-After, SSE, caps, typed failures); split, the two brains would import it piecemeal.

Why httpx, and only httpx: two endpoints (Chat Completions and Messages) do not justify two
heavy vendor SDKs with their own retry loops, timeouts and exception trees that would have
to be unwrapped into crewctl's. httpx is already a dependency and gives exactly what a turn
needs: one small synchronous client, separate connect/read timeouts, and a streaming body
read chunk by chunk, so the retry, cancel and size rules below are crewctl's own and the
same for both providers.

What every API turn gets from here:

* Time. `request.timeout` (or the brain's default) bounds the whole turn, retries and
  back-off included. Connect and read timeouts bound each attempt; the read timeout is the
  longest silence accepted between two bytes of a reply.
* Cancel. A watchdog thread shuts the turn's socket down the moment `request.cancel` is set
  (or the turn's deadline passes), so a read blocked on a slow stream returns at once instead
  of at the next chunk. Keep-alive is off so that the socket is always the one this turn
  opened (a turn is one long request; one handshake per turn costs nothing next to it).
* Retries with exponential back-off and full jitter on 429, 408/409, 5xx, connection errors,
  timeouts and streams cut short; a server's Retry-After (seconds, HTTP date, or the
  `retry-after-ms` that OpenAI-style servers send) is honoured, unless it asks for longer than
  `max_retry_after`, in which case waiting here is pointless and the error goes up at once.
* Errors that retrying cannot fix are not retried: 401/403 and 404 are BrainConfigError;
  an exhausted quota or spend cap is UsageLimited; other 4xx are a BrainError with the
  server's one-line reason. A 429 or overload that outlasts the retries is UsageLimited too,
  so the supervisor backs off longer.
* Size. A reply whose text is larger than MAX_REPLY_BYTES is a failed turn.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, TypeVar

import httpx

from ..exceptions import BrainError, ConfigError, UsageLimited
from .base import MAX_REPLY_BYTES, Message, TurnRequest, Usage

__all__ = [
    "Attempt",
    "Failure",
    "HttpSettings",
    "Provider",
    "LazyClient",
    "Prices",
    "SSEEvent",
    "TextBuffer",
    "config_flag",
    "config_number",
    "config_text",
    "error_reason",
    "iter_sse",
    "messages_of",
    "new_client",
    "post",
    "retry_after_seconds",
]

T = TypeVar("T")

DEFAULT_TURN_TIMEOUT = 3600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# Non-streamed replies arrive only when the whole generation is done, so this must cover a
# long generation, not just network latency.
DEFAULT_READ_TIMEOUT = 600.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 30.0
DEFAULT_MAX_RETRY_AFTER = 120.0

# An error body is read for its reason only; a raw buffered JSON reply may carry escapes
# (up to six bytes per character) around text that is itself limited to MAX_REPLY_BYTES.
_ERROR_BODY_KEEP = 64 * 1024
RAW_BODY_LIMIT = 6 * MAX_REPLY_BYTES
_WATCHDOG_POLL = 0.02


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts and retry policy of one brain. Every value can come from the config file."""

    timeout: float = DEFAULT_TURN_TIMEOUT  # the whole turn, when the request names none
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    # Config keys (in the provider's table) and their types: also the constructor keywords.
    KEYS = {
        "timeout": float,
        "connect_timeout": float,
        "read_timeout": float,
        "max_attempts": int,
        "backoff_base": float,
        "backoff_cap": float,
        "max_retry_after": float,
    }

    @classmethod
    def build(cls, provider: str, table: Mapping[str, Any], overrides: Mapping[str, Any]) -> "HttpSettings":
        """Config values, then constructor overrides (None means "not given")."""
        values: dict[str, Any] = {}
        for key, kind in cls.KEYS.items():
            for source, where in ((table, f"[{provider}] {key}"), (overrides, key)):
                value = source.get(key)
                if value is not None:
                    values[key] = _number(value, kind, where, provider)
        if values.get("max_attempts", 1) < 1:
            raise ConfigError(f"{provider}: max_attempts must be at least 1")
        return cls(**values)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2**attempt)))


@dataclass(frozen=True)
class Prices:
    """Optional USD prices per million tokens; no input/output price means no cost figure."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None  # defaults to the input price

    KEYS = ("input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok")

    @classmethod
    def build(cls, provider: str, table: Mapping[str, Any], overrides: Mapping[str, Any]) -> "Prices":
        got: list[float | None] = []
        for key in cls.KEYS:
            value = overrides.get(key)
            if value is None:
                value = table.get(key)
            got.append(None if value is None else _number(value, float, f"[{provider}] {key}", provider))
        return cls(*got)

    def usage(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> Usage:
        cost = None
        if self.input is not None and self.output is not None:
            cached_price = self.input if self.cached_input is None else self.cached_input
            uncached = max(0, input_tokens - cached_tokens)
            cost = (uncached * self.input + cached_tokens * cached_price + output_tokens * self.output) / 1e6
        return Usage(input_tokens, output_tokens, cached_tokens, cost)


def _number(value: Any, kind: type, where: str, provider: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{provider}: {where} must be a {'whole ' if kind is int else ''}number, not {value!r}")
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"{provider}: {where} must be a non-negative number, not {value!r}")
    return kind(value)


@dataclass(frozen=True)
class Provider:
    """Where and how an HTTP brain reaches its provider: arguments win over the environment,
    the environment over the config file's [openai]/[anthropic] table, that over defaults."""

    table: Mapping[str, Any]
    base_url: str
    api_key: str | None
    settings: "HttpSettings"
    prices: "Prices"

    @classmethod
    def resolve(
        cls,
        provider: str,
        config: Any,
        *,
        base_url: str | None,
        api_key: str | None,
        base_env: str,
        key_env: str,
        default_base: str,
        http: Mapping[str, Any],
    ) -> "Provider":
        table: Mapping[str, Any] = config.provider(provider) if config is not None else {}
        unknown = set(http) - set(HttpSettings.KEYS) - set(Prices.KEYS)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        url = (base_url or os.environ.get(base_env) or config_text(provider, table, "base_url") or default_base).rstrip("/")
        if not re.match(r"^https?://", url):
            raise ConfigError(f"{provider}: base URL {url!r} must start with http:// or https://")
        return cls(
            table=table,
            base_url=url,
            api_key=api_key or os.environ.get(key_env) or config_text(provider, table, "api_key") or None,
            settings=HttpSettings.build(provider, table, http),
            prices=Prices.build(provider, table, http),
        )


def bind_provider(brain: Any, provider: str, model: str | None, example: str, config: Any, *, base_url: str | None,
                  api_key: str | None, base_env: str, key_env: str, default_base: str,
                  http: Mapping[str, Any]) -> Mapping[str, Any]:
    """Set an HTTP brain's model, base URL, key, HTTP settings and prices (one way for both
    APIs); returns the config table for the brain's own settings. A missing model is a
    ConfigError that shows a spec that would work (`example`)."""
    model = (model or "").strip()
    if not model:
        raise ConfigError(f"{provider}: needs a model, e.g. {example}")
    p = Provider.resolve(provider, config, base_url=base_url, api_key=api_key, base_env=base_env, key_env=key_env,
                         default_base=default_base, http=http)
    brain.base_url, brain.api_key, brain.settings, brain.prices = p.base_url, p.api_key, p.settings, p.prices
    brain.model = model
    return p.table


# The conversation sent with each turn is a bounded window, so a request does not grow with
# the number of turns: every crewctl prompt restates the durable goal (criteria, evidence,
# steers, budget), which makes older prompts redundant. The last exchange is kept whole;
# older prompts become a one-line stub; only the last few replies are kept, each capped.
HISTORY_EXCHANGES = 3
HISTORY_REPLY_CAP = 4000
EARLIER_PROMPT = "(an earlier prompt from crewctl, omitted: the latest prompt restates everything that still holds)"


def messages_of(request: TurnRequest) -> list[dict[str, str]]:
    """The conversation as both APIs take it: a bounded window of the session, then the prompt."""
    history: list[Message] = list(request.history)[-2 * HISTORY_EXCHANGES :]
    while history and history[0].role != "user":
        history.pop(0)  # a window starts with a prompt, as the APIs expect
    last_prompt = max((i for i, m in enumerate(history) if m.role == "user"), default=-1)
    messages = []
    for i, m in enumerate(history):
        if m.role == "user":
            content = m.content if i == last_prompt else EARLIER_PROMPT
        else:
            content = m.content if len(m.content) <= HISTORY_REPLY_CAP else m.content[:HISTORY_REPLY_CAP] + "\n[... cut]"
        messages.append({"role": m.role, "content": content})
    return messages + [{"role": "user", "content": request.prompt}]


# ---------------------------------------------------------------------------------------
# Errors


class Failure(Exception):
    """What an attempt's failure means: the error to raise, and whether to try again."""

    def __init__(self, error: BrainError, retry: bool = False, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry = retry
        self.retry_after = retry_after


def json_object(provider: str, text: str) -> dict:
    """A response body that must be a JSON object; anything else is a retryable failure."""
    try:
        data = json.loads(text)
    except ValueError:
        raise Failure(BrainError(f"{provider}: the server sent something that is not JSON: {text[:80]!r}"), retry=True) from None
    if not isinstance(data, dict):
        raise Failure(BrainError(f"{provider}: the server sent JSON that is not an object"), retry=True)
    return data


def token_count(value: Any) -> int:
    """A token count as the APIs report it: a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _note_reset(failure: Failure) -> None:
    """A usage limit whose response said how long to wait: the error carries when it resets,
    so the goal can wait that long and go on by itself."""
    error = failure.error
    if isinstance(error, UsageLimited) and error.resets_at is None and failure.retry_after is not None:
        error.resets_at = time.time() + failure.retry_after


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: `retry-after-ms`, or Retry-After in seconds or as a date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_reason(body: bytes) -> tuple[str, dict]:
    """A one-line reason from an error body, and its `error` object when it is JSON.

    Understands OpenAI's {"error": {"message", "type", "code"}}, Anthropic's
    {"type": "error", "error": {"type", "message"}}, FastAPI's {"detail": ...} and plain text.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    err: dict = {}
    reason = ""
    if isinstance(data, dict):
        raw_err = data.get("error")
        if isinstance(raw_err, dict):
            err = raw_err
            reason = str(raw_err.get("message") or raw_err.get("type") or raw_err.get("code") or "")
        elif isinstance(raw_err, str):
            reason = raw_err
        elif "detail" in data:
            reason = data["detail"] if isinstance(data["detail"], str) else json.dumps(data["detail"])
        elif isinstance(data.get("message"), str):
            reason = data["message"]
    else:
        reason = text
    return _one_line(reason), err


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------
# Server-sent events


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" unless the server named it
    data: str


def iter_sse(chunks: Iterator[bytes], max_line: int = RAW_BODY_LIMIT) -> Iterator[SSEEvent]:
    """Parse a text/event-stream body (WHATWG rules: data lines joined by newlines, comments
    and unknown fields ignored, CR/LF/CRLF line ends). An event not closed by a blank line when
    the body ends is still dispatched: a truncated stream is judged by its missing terminator,
    not here."""
    buffer = b""
    event = ""
    data: list[str] = []

    def lines() -> Iterator[bytes]:
        nonlocal buffer
        for chunk in chunks:
            buffer += chunk
            while True:
                cut = _line_end(buffer)
                if cut is None:
                    break
                end, after = cut
                yield buffer[:end]
                buffer = buffer[after:]
            if len(buffer) > max_line:
                raise Failure(BrainError(f"the server sent an event line larger than {max_line // (1024 * 1024)} MiB"))
        if buffer:
            yield buffer
            buffer = b""

    for raw in lines():
        if not raw:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data))


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """(end of line, start of the next) for the first CR, LF or CRLF, if the buffer has one."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 < len(buffer):
        return cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
    return None  # a CR at the very end may be the first half of a CRLF: wait for more


class TextBuffer:
    """Collects reply text, failing the turn as soon as it passes MAX_REPLY_BYTES."""

    def __init__(self, provider: str, limit: int = MAX_REPLY_BYTES) -> None:
        self.provider = provider
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        if not text:
            return
        self.size += len(text.encode("utf-8"))
        if self.size > self.limit:
            raise Failure(BrainError(oversize_message(self.provider, self.limit)))
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def oversize_message(provider: str, limit: int = MAX_REPLY_BYTES) -> str:
    return f"{provider}: the reply is larger than {limit // (1024 * 1024)} MiB; it was discarded"


# ---------------------------------------------------------------------------------------
# One request, with retries


class Attempt:
    """One HTTP attempt's body reader: raw chunks, bounded in size, checked for cancel."""

    def __init__(self, provider: str, response: httpx.Response, watchdog: "_Watchdog", limit: int) -> None:
        self.provider = provider
        self.response = response
        self._watchdog = watchdog
        self._limit = limit

    def chunks(self) -> Iterator[bytes]:
        for chunk in self.response.iter_bytes():
            self._watchdog.check()
            yield chunk

    def body(self) -> bytes:
        """The whole body, for non-streamed replies; larger than the raw limit fails the turn."""
        parts, size = [], 0
        for chunk in self.chunks():
            size += len(chunk)
            if size > self._limit:
                raise Failure(BrainError(
                    f"{self.provider}: the reply body is larger than {self._limit // (1024 * 1024)} MiB; it was discarded"
                ))
            parts.append(chunk)
        return b"".join(parts)


Classifier = Callable[[int, str, bytes, Mapping[str, str]], Failure]


def post(
    client: httpx.Client,
    *,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: dict,
    request: TurnRequest,
    settings: HttpSettings,
    classify: Classifier,
    consume: Callable[[Attempt], T],
) -> T:
    """POST `body` as JSON and hand the successful response to `consume`, retrying as the
    module docstring says. `classify(status, reason_phrase, body, headers)` turns an error
    response into a Failure; `consume` may raise Failure too (a stream cut short, an error
    event in the stream). Raises BrainError (or a subclass) in the end."""
    timeout = request.timeout or settings.timeout
    deadline = time.monotonic() + timeout
    last: Failure | None = None
    for attempt in range(settings.max_attempts):
        if request.cancel is not None and request.cancel.is_set():
            raise BrainError("turn cancelled")
        if time.monotonic() >= deadline:
            break
        try:
            return _attempt(client, provider, url, headers, body, request, settings, deadline, timeout, classify, consume)
        except Failure as failure:
            last = failure
            _note_reset(failure)
            if not failure.retry or attempt + 1 >= settings.max_attempts:
                raise failure.error from None
            wait = settings.backoff(attempt)
            if failure.retry_after is not None:
                if failure.retry_after > settings.max_retry_after:
                    raise failure.error from None
                wait = max(wait, failure.retry_after)
            if time.monotonic() + wait >= deadline:
                raise failure.error from None
            if request.cancel is not None:
                if request.cancel.wait(wait):
                    raise BrainError("turn cancelled") from None
            else:
                time.sleep(wait)
    if last is not None:
        raise last.error
    raise BrainError(f"{provider}: no reply within {timeout:g}s")


def _attempt(client, provider, url, headers, body, request, settings, deadline, timeout, classify, consume):
    remaining = max(0.001, deadline - time.monotonic())
    per_attempt = httpx.Timeout(
        connect=min(settings.connect_timeout, remaining),
        read=min(settings.read_timeout, remaining),
        write=min(settings.read_timeout, remaining),
        pool=min(settings.connect_timeout, remaining),
    )
    watchdog = _Watchdog(request.cancel, deadline)
    watchdog.start()
    try:
        try:
            with client.stream(
                "POST", url, headers=dict(headers), json=body, timeout=per_attempt,
                extensions={"trace": watchdog.trace},
            ) as response:
                watchdog.check()
                if response.status_code >= 400:
                    raw = _read_some(response, _ERROR_BODY_KEEP)
                    raise classify(response.status_code, response.reason_phrase, raw, response.headers)
                return consume(Attempt(provider, response, watchdog, RAW_BODY_LIMIT))
        except (httpx.TransportError, httpx.StreamError, OSError) as exc:
            watchdog.check()
            raise Failure(BrainError(f"{provider}: {_transport_reason(exc)} ({url})"), retry=True) from None
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # A reply of a shape nothing documents: retrying would get the same.
            watchdog.check()
            raise Failure(BrainError(f"{provider}: the reply could not be read: {_one_line(str(exc), 120)}")) from None
        except Failure:
            watchdog.check()  # a cancel or timeout that cut the stream short is that, not a retry
            raise
    except _Stopped as stop:
        if stop.why == "cancelled":
            raise BrainError("turn cancelled") from None
        raise BrainError(f"{provider}: no reply within {timeout:g}s") from None
    finally:
        watchdog.stop()


def _read_some(response: httpx.Response, limit: int) -> bytes:
    parts, size = [], 0
    try:
        for chunk in response.iter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except (httpx.TransportError, httpx.StreamError):
        pass  # the status already says what went wrong; the reason is a bonus
    return b"".join(parts)[:limit]


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the reply"
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__cause__ or exc.__context__
        detail = getattr(cause, "strerror", None) or str(exc) or type(exc).__name__
        return f"cannot connect: {_one_line(detail, 120)}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the connection broke: {_one_line(str(exc) or 'protocol error', 120)}"
    return f"the connection failed: {_one_line(str(exc) or type(exc).__name__, 120)}"


class _Stopped(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Watchdog:
    """Shuts the attempt's socket down on cancel or at the turn's deadline.

    httpcore reports each new connection's network stream through the request's "trace"
    extension; shutting that socket down wakes a read blocked on it at once. (Closing it
    would not: on Linux close() does not interrupt a recv() in another thread.)
    """

    def __init__(self, cancel: threading.Event | None, deadline: float) -> None:
        self.cancel = cancel
        self.deadline = deadline
        self.fired: str | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="crewctl-http-watchdog", daemon=True)

    def trace(self, event: str, info: dict) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                with self._lock:
                    self._streams.append(stream)
                    fired = self.fired
                if fired:
                    self._shut()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=1)

    def check(self) -> None:
        if self.fired is None:
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancelled"
            elif time.monotonic() >= self.deadline:
                self.fired = "timeout"
        if self.fired:
            raise _Stopped(self.fired)

    def _run(self) -> None:
        while not self._done.wait(_WATCHDOG_POLL):
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancelled"
            elif time.monotonic() >= self.deadline:
                self.fired = "timeout"
            if self.fired:
                self._shut()
                return

    def _shut(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            try:
                sock = stream.get_extra_info("socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError, ValueError):
                pass


def new_client() -> httpx.Client:
    """The one small sync client a brain keeps. No keep-alive: see the module docstring."""
    return httpx.Client(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        follow_redirects=False,
        trust_env=True,
    )


class HttpBrain:
    """What the HTTP brains share: one lazily opened client per brain."""

    _http: "LazyClient"

    @property
    def _client(self) -> Any:
        return self._http.get()

    def close(self) -> None:
        """Close the HTTP client (a later turn opens a new one)."""
        self._http.close()


class LazyClient:
    """A brain's client, made on its first turn: building a brain to validate a spec opens
    nothing."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = new_client()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


# ---------------------------------------------------------------------------------------
# Provider config values ([openai] / [anthropic] tables), checked with one-line errors


def config_text(provider: str, table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{provider}: [{provider}] {key} must be a string")
    return value.strip() or None


def config_flag(provider: str, table: Mapping[str, Any], key: str, given: bool | None, *, default: bool) -> bool:
    if given is not None:
        return bool(given)
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{provider}: [{provider}] {key} must be true or false")
    return value


def config_number(provider: str, table: Mapping[str, Any], key: str, given: Any, kind: type) -> Any:
    """An optional non-negative number: the constructor's value, else the table's, else None."""
    value = given if given is not None else table.get(key)
    if value is None:
        return None
    return _number(value, kind, f"[{provider}] {key}" if given is None else key, provider)
