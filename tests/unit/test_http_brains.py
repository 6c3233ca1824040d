"""The API brains (openai:, anthropic:) against a real HTTP server on loopback.

No mocking of httpx: every test serves real HTTP from crewctl.testing.http and the brains
open real sockets. Successful replies are recordings of real servers
(tests/data/recordings/*/README.md says where each came from); error replies are recorded
bodies where a real one was found, otherwise the documented shape (said so at the test).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from crewctl.brains import resolve
from crewctl.brains import openai as openai_module
from crewctl.brains._http import iter_sse, retry_after_seconds
from crewctl.brains.anthropic import AnthropicBrain
from crewctl.brains.base import MAX_REPLY_BYTES, Message, TurnRequest, Usage
from crewctl.brains.openai import OpenAIBrain
from crewctl.config import Config
from crewctl.exceptions import BrainConfigError, BrainError, ConfigError, UsageLimited
from crewctl.testing.http import LoopbackServer, Reply, free_port

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"
FAST = {"backoff_base": 0.001, "backoff_cap": 0.005, "max_attempts": 3}

OPENAI_STREAM = "openai/chat_stream_gpt-4o-mini.sse"
OPENAI_TEXT = "The capital of the UK is London."
ANTHROPIC_STREAM = "anthropic/messages_stream_claude-sonnet-4-5.sse"
ANTHROPIC_TEXT = "- Captain\n- Scoop"


# ---------------------------------------------------------------------------------------
# helpers


def recorded(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def recorded_events(name: str) -> list[bytes]:
    """A recorded event stream split into one chunk per event, as a server flushes them."""
    raw = recorded(name)
    return [part + b"\n\n" for part in raw.split(b"\n\n") if part.strip()]


def recorded_stream(name: str, **kw) -> Reply:
    return Reply.stream(recorded_events(name), **kw)


def recorded_json(name: str, status: int = 200, **kw) -> Reply:
    return Reply.text(recorded(name), status=status, content_type="application/json", **kw)


def turn(prompt: str = "Hello", *, history=(), timeout=None, cancel=None) -> TurnRequest:
    return TurnRequest(
        role="lead", goal_id="g1", session_id="s1", turn=1, prompt=prompt, workdir="/tmp",
        timeout=timeout, history=tuple(history), cancel=cancel,
    )


def openai_brain(server: LoopbackServer, **kw) -> OpenAIBrain:
    settings = {"api_key": "sk-test", **FAST, **kw}
    return OpenAIBrain("gpt-4o-mini", server.url + "/v1", **settings)


def anthropic_brain(server: LoopbackServer, **kw) -> AnthropicBrain:
    settings = {"api_key": "sk-ant-test", "base_url": server.url, **FAST, **kw}
    return AnthropicBrain("claude-sonnet-4-5", **settings)


def attempts_of(brain) -> list[str]:
    """Every request the brain's client sends, including ones that never reach a server."""
    sent: list[str] = []
    brain._client.event_hooks["request"].append(lambda request: sent.append(str(request.url)))
    return sent


@pytest.fixture(autouse=True)
def no_provider_environment(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    openai_module._NO_STREAM_USAGE.clear()  # ports are reused between tests
    yield
    openai_module._NO_STREAM_USAGE.clear()


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


# ---------------------------------------------------------------------------------------
# OpenAI: replies


def test_openai_assembles_text_and_usage_from_a_recorded_stream(server):
    server.add(recorded_stream(OPENAI_STREAM))
    reply = openai_brain(server).run(turn("What is the capital of the UK?"))

    assert reply.text == OPENAI_TEXT
    assert reply.usage == Usage(input_tokens=78, output_tokens=9, cached_tokens=0, cost_usd=None)
    sent = server.requests[0]
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.header("authorization") == "Bearer sk-test"
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_openai_sends_the_history_and_then_the_new_prompt(server):
    server.add(recorded_stream(OPENAI_STREAM))
    history = (Message("user", "Plan the work."), Message("assistant", "Step one: read the code."))
    openai_brain(server).run(turn("Go on.", history=history))

    assert server.requests[0].json()["messages"] == [
        {"role": "user", "content": "Plan the work."},
        {"role": "assistant", "content": "Step one: read the code."},
        {"role": "user", "content": "Go on."},
    ]


def test_openai_sends_no_authorization_header_without_a_key(server):
    server.add(recorded_stream(OPENAI_STREAM))
    OpenAIBrain("local-model", server.url + "/v1", **FAST).run(turn())
    assert server.requests[0].header("authorization") is None


def test_a_stream_without_usage_is_asked_again_without_streaming_and_the_server_is_remembered(server):
    # llama-cpp-python ignores stream_options.include_usage (recorded from the local server).
    server.add(
        recorded_stream("openai/llama_cpp_python_stream_without_usage.sse"),
        recorded_json("openai/llama_cpp_python_completion.json"),
        recorded_json("openai/llama_cpp_python_completion.json"),
    )
    brain = openai_brain(server)

    first = brain.run(turn("Name one colour."))
    assert first.text == "The most obvious example of a colour is red, but there"
    assert first.usage == Usage(input_tokens=34, output_tokens=12, cached_tokens=0)
    brain.run(turn("Name one colour."))

    assert [r.json()["stream"] for r in server.requests] == [True, False, False]
    assert "stream_options" not in server.requests[1].json()


def test_with_stream_false_one_plain_request_gives_the_text_and_usage(server):
    server.add(recorded_json("openai/chat_completion_gpt-4o.json"))
    reply = openai_brain(server, stream=False).run(turn("Hello! How are you doing?"))

    assert reply.text.startswith("Hello! I'm just a computer program")
    assert reply.usage == Usage(input_tokens=14, output_tokens=30, cached_tokens=0)
    assert len(server.requests) == 1 and server.requests[0].json()["stream"] is False


def test_cached_prompt_tokens_are_reported_from_prompt_tokens_details(server):
    data = json.loads(recorded("openai/chat_completion_gpt-4o.json"))
    data["usage"]["prompt_tokens"], data["usage"]["prompt_tokens_details"]["cached_tokens"] = 2006, 1920
    server.add(Reply.json(data))
    reply = openai_brain(server, stream=False).run(turn())
    assert (reply.usage.input_tokens, reply.usage.cached_tokens) == (2006, 1920)


def test_cost_is_computed_from_the_configured_prices_per_million_tokens(server):
    server.add(recorded_stream(OPENAI_STREAM))
    config = Config(providers={"openai": {"input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6}})
    brain = OpenAIBrain.from_spec(f"gpt-4o-mini@{server.url}/v1", config)
    reply = brain.run(turn())
    assert reply.usage.cost_usd == pytest.approx((78 * 0.15 + 9 * 0.6) / 1e6)


# ---------------------------------------------------------------------------------------
# OpenAI: failures and retries


def test_a_429_is_retried_after_the_wait_the_server_asks_for_and_then_succeeds(server):
    # A rate-limit body in the shape OpenAI documents (type "requests", code rate_limit_exceeded).
    rate_limited = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                              "param": None, "code": "rate_limit_exceeded"}}
    server.add(Reply.json(rate_limited, status=429, headers={"retry-after-ms": "300"}), recorded_stream(OPENAI_STREAM))

    reply = openai_brain(server).run(turn())

    assert reply.text == OPENAI_TEXT
    first, second = server.requests
    assert second.at - first.at >= 0.3


def test_a_retry_after_longer_than_max_retry_after_is_not_waited_for(server):
    rate_limited = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    server.add(Reply.json(rate_limited, status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(UsageLimited, match="429 rate limited"):
        openai_brain(server, max_retry_after=60).run(turn())
    assert len(server.requests) == 1 and time.monotonic() - started < 5


def test_a_usage_limit_whose_retry_after_is_too_long_to_wait_says_when_it_resets(server):
    rate_limited = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    server.add(Reply.json(rate_limited, status=429, headers={"Retry-After": "3600"}))
    before = time.time()
    with pytest.raises(UsageLimited) as err:
        openai_brain(server, max_retry_after=60).run(turn())
    assert before + 3600 <= err.value.resets_at <= time.time() + 3600


def test_rate_limit_429s_that_outlast_the_retries_are_usage_limited(server):
    server.default = Reply.json({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}, status=429)
    with pytest.raises(UsageLimited, match="rate limited"):
        openai_brain(server).run(turn())
    assert len(server.requests) == FAST["max_attempts"]


def test_insufficient_quota_raises_usage_limited_without_retrying(server):
    server.default = recorded_json("openai/error_429_insufficient_quota.json", status=429)
    with pytest.raises(UsageLimited, match="quota exhausted"):
        openai_brain(server).run(turn())
    assert len(server.requests) == 1


def test_500s_exhaust_the_retries_and_raise_a_brain_error(server):
    server.default = Reply.json({"error": {"message": "The server had an error", "type": "server_error"}}, status=500)
    with pytest.raises(BrainError, match="500 Internal Server Error: The server had an error") as caught:
        openai_brain(server).run(turn())
    assert type(caught.value) is BrainError
    assert len(server.requests) == FAST["max_attempts"]


def test_backoff_and_attempts_can_come_from_the_config_file(server):
    server.default = Reply.json({"error": {"message": "busy"}}, status=503)
    config = Config(providers={"openai": {"max_attempts": 2, "backoff_base": 0.001, "backoff_cap": 0.001}})
    with pytest.raises(BrainError, match="503"):
        OpenAIBrain.from_spec(f"gpt-4o-mini@{server.url}/v1", config).run(turn())
    assert len(server.requests) == 2


def test_401_raises_brain_config_error_naming_the_key_without_retrying(server):
    body = {"error": {"message": "Incorrect API key provided: sk-test.", "type": "invalid_request_error",
                      "code": "invalid_api_key"}}
    server.default = Reply.json(body, status=401)
    with pytest.raises(BrainConfigError) as caught:
        openai_brain(server).run(turn())
    assert str(caught.value) == "openai: 401 Unauthorized — check OPENAI_API_KEY"
    assert len(server.requests) == 1


def test_404_raises_brain_config_error_naming_the_model_and_the_url(server):
    body = {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error",
                      "code": "model_not_found"}}
    server.default = Reply.json(body, status=404)
    with pytest.raises(BrainConfigError) as caught:
        OpenAIBrain("gpt-9", server.url + "/v1", **FAST).run(turn())
    assert "'gpt-9'" in str(caught.value) and server.url + "/v1" in str(caught.value)
    assert len(server.requests) == 1


def test_other_4xx_are_a_one_line_brain_error_without_retrying(server):
    body = {"error": {"message": "This model's maximum context length is 128000 tokens.\nReduce the length.",
                      "type": "invalid_request_error", "code": "context_length_exceeded"}}
    server.default = Reply.json(body, status=400)
    with pytest.raises(BrainError) as caught:
        openai_brain(server).run(turn())
    assert "\n" not in str(caught.value) and "maximum context length" in str(caught.value)
    assert len(server.requests) == 1


def test_a_reply_of_an_undocumented_shape_is_a_brain_error_without_retrying(server):
    server.default = Reply.json({"choices": "none today"})
    with pytest.raises(BrainError, match="openai: the reply"):
        openai_brain(server, stream=False).run(turn())
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_a_brain_error():
    brain = OpenAIBrain("gpt-4o-mini", f"http://127.0.0.1:{free_port()}/v1", **FAST)
    sent = attempts_of(brain)
    with pytest.raises(BrainError, match="cannot connect") as caught:
        brain.run(turn())
    assert type(caught.value) is BrainError
    assert len(sent) == FAST["max_attempts"]


def test_a_connection_dropped_without_a_reply_is_retried(server):
    server.add(Reply.closed(), recorded_stream(OPENAI_STREAM))
    assert openai_brain(server).run(turn()).text == OPENAI_TEXT
    assert len(server.requests) == 2


def test_a_stream_cut_short_is_retried(server):
    server.add(recorded_stream(OPENAI_STREAM, cut_after=4), recorded_stream(OPENAI_STREAM))
    reply = openai_brain(server).run(turn())
    assert reply.text == OPENAI_TEXT  # not the cut stream's text glued to the next one
    assert len(server.requests) == 2


def test_cancel_aborts_a_slow_stream_promptly(server):
    server.add(recorded_stream(OPENAI_STREAM, chunk_delay=30))
    cancel = threading.Event()
    brain = openai_brain(server)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(brain.run, turn(cancel=cancel))
        server.wait_for_requests(1)
        cancelled_at = time.monotonic()
        cancel.set()
        error = running.exception(timeout=10)
    assert isinstance(error, BrainError) and str(error) == "turn cancelled"
    assert time.monotonic() - cancelled_at < 2
    assert len(server.requests) == 1


def test_cancel_aborts_a_turn_still_waiting_for_the_first_byte(server):
    # The server has the whole request and thinks for 30s: the client is blocked reading
    # the status line, with no chunk boundary to notice the cancel at.
    server.add(recorded_json("openai/chat_completion_gpt-4o.json", delay=30))
    cancel = threading.Event()
    brain = openai_brain(server, stream=False, read_timeout=60)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(brain.run, turn(cancel=cancel))
        server.wait_for_requests(1)
        cancelled_at = time.monotonic()
        cancel.set()
        error = running.exception(timeout=10)
    assert isinstance(error, BrainError) and str(error) == "turn cancelled"
    assert time.monotonic() - cancelled_at < 2


def test_the_turn_timeout_bounds_a_slow_stream(server):
    server.add(recorded_stream(OPENAI_STREAM, chunk_delay=30))
    started = time.monotonic()
    with pytest.raises(BrainError, match=r"no reply within 0.5s"):
        openai_brain(server).run(turn(timeout=0.5))
    assert time.monotonic() - started < 3


def test_a_reply_bigger_than_max_reply_bytes_is_a_brain_error(server):
    piece = "x" * (256 * 1024)
    count = MAX_REPLY_BYTES // len(piece) + 1
    events = [json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) for _ in range(count)]
    events += [json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}), "[DONE]"]
    server.add(Reply.sse(events))
    with pytest.raises(BrainError, match="larger than 8 MiB"):
        openai_brain(server).run(turn())
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------
# Anthropic


def test_anthropic_assembles_text_and_usage_from_a_recorded_stream(server):
    server.add(recorded_stream(ANTHROPIC_STREAM))
    reply = anthropic_brain(server).run(turn("Two names for a pet pelican, be brief"))

    assert reply.text == ANTHROPIC_TEXT
    assert reply.usage == Usage(input_tokens=17, output_tokens=10, cached_tokens=0)
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == "sk-ant-test"
    assert sent.header("anthropic-version") == "2023-06-01"
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 8192 and body["stream"] is True


def test_anthropic_without_streaming_reads_text_and_cache_reads_from_a_recorded_message(server):
    server.add(recorded_json("anthropic/message_cache_read_claude-sonnet-4-5.json"))
    reply = anthropic_brain(server, stream=False).run(turn("Can you summarize that in one sentence?"))

    assert reply.text.startswith("Python is a beginner-friendly, versatile programming language")
    # Every prompt token read: 3 uncached + 403 written to the cache + 1111 read from it.
    assert reply.usage == Usage(input_tokens=1517, output_tokens=33, cached_tokens=1111)
    assert "stream" not in server.requests[0].json()


def test_anthropic_sends_the_history_and_then_the_new_prompt(server):
    server.add(recorded_stream(ANTHROPIC_STREAM))
    history = (Message("user", "Two names for a pet pelican, be brief"), Message("assistant", ANTHROPIC_TEXT))
    anthropic_brain(server).run(turn("in french", history=history))
    assert server.requests[0].json()["messages"] == [
        {"role": "user", "content": "Two names for a pet pelican, be brief"},
        {"role": "assistant", "content": ANTHROPIC_TEXT},
        {"role": "user", "content": "in french"},
    ]


def test_anthropic_max_tokens_comes_from_the_config_file(server):
    server.add(recorded_stream(ANTHROPIC_STREAM))
    config = Config(providers={"anthropic": {"max_tokens": 1024, "base_url": server.url, "api_key": "sk-ant-config"}})
    AnthropicBrain.from_spec("claude-haiku-4-5", config).run(turn())
    assert server.requests[0].json()["max_tokens"] == 1024
    assert server.requests[0].header("x-api-key") == "sk-ant-config"


def test_anthropic_529_is_retried_after_retry_after_and_then_succeeds(server):
    server.add(recorded_json("anthropic/error_529_overloaded.json", status=529, headers={"Retry-After": "1"}),
               recorded_stream(ANTHROPIC_STREAM))
    assert anthropic_brain(server).run(turn()).text == ANTHROPIC_TEXT
    first, second = server.requests
    assert second.at - first.at >= 1.0


def test_anthropic_overload_that_outlasts_the_retries_is_usage_limited(server):
    server.default = recorded_json("anthropic/error_529_overloaded.json", status=529)
    with pytest.raises(UsageLimited, match="overloaded"):
        anthropic_brain(server).run(turn())
    assert len(server.requests) == FAST["max_attempts"]


def test_anthropic_spend_limit_raises_usage_limited_without_retrying(server):
    # The shape Anthropic documents for a reached monthly spend cap.
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your spend limit.",
                                       "details": {"error_code": "enforced_spend_limit_reached"}}}
    server.default = Reply.json(body, status=429)
    with pytest.raises(UsageLimited, match="spend limit"):
        anthropic_brain(server).run(turn())
    assert len(server.requests) == 1


def test_anthropic_error_event_inside_a_stream_is_retried(server):
    events = recorded_events(ANTHROPIC_STREAM)[:2]
    events.append(b"event: error\ndata: " + recorded("anthropic/stream_error_event_overloaded.json").strip() + b"\n\n")
    server.add(Reply.stream(events), recorded_stream(ANTHROPIC_STREAM))
    assert anthropic_brain(server).run(turn()).text == ANTHROPIC_TEXT
    assert len(server.requests) == 2


def test_anthropic_401_raises_brain_config_error_naming_the_key(server):
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    server.default = Reply.json(body, status=401)
    with pytest.raises(BrainConfigError) as caught:
        anthropic_brain(server).run(turn())
    assert str(caught.value) == "anthropic: 401 Unauthorized — check ANTHROPIC_API_KEY"
    assert len(server.requests) == 1


def test_anthropic_plain_reply_bigger_than_max_reply_bytes_is_a_brain_error(server):
    message = json.loads(recorded("anthropic/message_cache_read_claude-sonnet-4-5.json"))
    message["content"] = [{"type": "text", "text": "y" * (MAX_REPLY_BYTES + 1)}]
    server.add(Reply.json(message))
    with pytest.raises(BrainError, match="larger than 8 MiB"):
        anthropic_brain(server, stream=False).run(turn())


# ---------------------------------------------------------------------------------------
# Specs and settings


def test_specs_name_the_model_and_optionally_the_base_url():
    brain = resolve("openai:gpt-4o-mini")
    assert isinstance(brain, OpenAIBrain) and brain.wants_history
    assert (brain.model, brain.base_url) == ("gpt-4o-mini", "https://api.openai.com/v1")

    local = resolve("openai:qwen2.5-coder:7b@http://127.0.0.1:11434/v1")
    assert (local.model, local.base_url) == ("qwen2.5-coder:7b", "http://127.0.0.1:11434/v1")
    assert local.spec == "openai:qwen2.5-coder:7b@http://127.0.0.1:11434/v1"

    assert resolve("openai:claude-3@20240229").model == "claude-3@20240229"  # an @ without a URL

    claude = resolve("anthropic:claude-sonnet-4-5")
    assert isinstance(claude, AnthropicBrain) and claude.wants_history and claude.spec == "anthropic:claude-sonnet-4-5"
    assert claude.base_url == "https://api.anthropic.com"


@pytest.mark.parametrize("spec", ["openai:", "openai:   ", "openai:@http://127.0.0.1:1/v1", "anthropic:"])
def test_a_spec_without_a_model_is_a_one_line_config_error(spec):
    with pytest.raises(ConfigError) as caught:
        resolve(spec)
    assert "\n" not in str(caught.value) and "model" in str(caught.value)


def test_the_environment_wins_over_the_config_file_and_the_spec_wins_over_both(monkeypatch):
    config = Config(providers={"openai": {"api_key": "from-config", "base_url": "http://config.invalid/v1"}})
    assert (OpenAIBrain.from_spec("m", config).api_key, OpenAIBrain.from_spec("m", config).base_url) == (
        "from-config", "http://config.invalid/v1")

    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.invalid/v1")
    brain = OpenAIBrain.from_spec("m", config)
    assert (brain.api_key, brain.base_url) == ("from-env", "http://env.invalid/v1")
    assert OpenAIBrain.from_spec("m@http://spec.invalid/v1", config).base_url == "http://spec.invalid/v1"

    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant-env")
    anthropic_config = Config(providers={"anthropic": {"api_key": "ant-config"}})
    assert AnthropicBrain.from_spec("claude", anthropic_config).api_key == "ant-env"


@pytest.mark.parametrize("table", [{"max_attempts": "three"}, {"max_attempts": 0}, {"backoff_base": -1},
                                   {"stream": "yes"}, {"input_usd_per_mtok": "cheap"}, {"api_key": 42}])
def test_a_bad_provider_setting_is_a_one_line_config_error(table):
    with pytest.raises(ConfigError) as caught:
        OpenAIBrain.from_spec("gpt-4o-mini", Config(providers={"openai": table}))
    assert "\n" not in str(caught.value) and "openai" in str(caught.value)


def test_retry_after_is_read_as_milliseconds_seconds_or_a_date():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
                               now=1445412480.0 - 30) == pytest.approx(30.0)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_event_streams_are_parsed_across_chunk_boundaries_and_line_endings():
    raw = b": comment\r\nevent: a\r\ndata: one\r\ndata: two\r\n\r\ndata: {\"x\":\n\ndata: \xc3\xa9\r\r"
    chunks = [raw[i:i + 3] for i in range(0, len(raw), 3)]  # splits CRLFs and the UTF-8 pair
    events = [(e.event, e.data) for e in iter_sse(iter(chunks))]
    assert events == [("a", "one\ntwo"), ("message", '{"x":'), ("message", "é")]


def test_the_conversation_sent_does_not_grow_with_the_number_of_turns(server):
    """crewctl prompts restate the goal, so the window of history sent is bounded."""
    brain = openai_brain(server, stream=False)

    def history(turns: int) -> tuple[Message, ...]:
        out = []
        for n in range(turns):
            out += [Message("user", f"prompt {n:03d} " + "p" * 3000), Message("assistant", f"reply {n:03d} " + "r" * 9000)]
        return tuple(out)

    sizes = []
    for turns in (4, 50):
        server.add(recorded_json("openai/chat_completion_gpt-4o.json"))
        brain.run(turn("the current prompt", history=history(turns)))
        sizes.append(len(server.requests[-1].body))
    assert sizes[1] <= sizes[0]
    sent = server.requests[-1].json()["messages"]
    assert sent[-1]["content"] == "the current prompt"
    assert sent[-2]["content"].startswith("reply 049") and len(sent[-2]["content"]) < 4100
    assert sent[-3]["content"].startswith("prompt 049")  # the last exchange stays whole
    assert all("p" * 100 not in m["content"] for m in sent[:-3] if m["role"] == "user")
