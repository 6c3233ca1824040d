"""crewctl.testing.llm.ReplyCap: the proxy every model test reaches the one model server through."""

from __future__ import annotations

import httpx

from crewctl.testing.http import LoopbackServer, Reply
from crewctl.testing.llm import ReplyCap


def upstream_answering_ok():
    server = LoopbackServer(default=Reply.json({"ok": True}))
    server.route("GET", "/v1/models", Reply.json({"data": [{"id": "m"}]}))
    return server


def test_a_request_without_a_reply_limit_reaches_the_server_with_the_cap():
    with upstream_answering_ok() as upstream, ReplyCap(upstream.url + "/v1", cap=32) as cap:
        reply = httpx.post(f"{cap.base_url}/chat/completions", json={"model": "m", "messages": []}, timeout=10)
        assert reply.json() == {"ok": True}
        [sent] = upstream.requests
        assert sent.path == "/v1/chat/completions"
        assert sent.json() == {"model": "m", "messages": [], "max_tokens": 32}
        assert cap.capped == 1


def test_a_larger_limit_is_lowered_and_a_smaller_one_is_kept():
    with upstream_answering_ok() as upstream, ReplyCap(upstream.url + "/v1", cap=32) as cap:
        httpx.post(f"{cap.base_url}/chat/completions", json={"max_completion_tokens": 4096}, timeout=10)
        httpx.post(f"{cap.base_url}/completions", json={"max_tokens": 8}, timeout=10)
        assert [r.json() for r in upstream.requests] == [{"max_tokens": 32}, {"max_tokens": 8}]
        assert cap.capped == 1


def test_the_model_list_and_error_statuses_pass_through_unchanged():
    with LoopbackServer() as upstream, ReplyCap(upstream.url + "/v1") as cap:
        upstream.route("GET", "/v1/models", Reply.json({"data": [{"id": "m"}]}))
        upstream.add(Reply.json({"error": {"message": "busy"}}, status=503))
        assert httpx.get(f"{cap.base_url}/models", timeout=10).json() == {"data": [{"id": "m"}]}
        failed = httpx.post(f"{cap.base_url}/chat/completions", content=b"not json", timeout=10)
        assert failed.status_code == 503 and failed.json()["error"]["message"] == "busy"
        assert upstream.requests[-1].body == b"not json"
