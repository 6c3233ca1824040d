"""A whole goal on a real, tiny, unreliable model: crewctl stays correct and bounded.

Lead and verifier are both `openai:MODEL@PROXY`, where PROXY is a recording proxy on
loopback (crewctl.testing.http) in front of the real local server (`shared/tools/local-llm
start`: llama-cpp-python serving SmolLM2-135M). The model often ignores instructions; the
point is not that it does the work but that, whatever it says, the goal ends within its caps
in a bounded and explained state, its token totals are exactly what the server reported, and
the gate never opens without a valid VERIFY from the verifier.

    CREWCTL_TEST_OPENAI_URL=http://127.0.0.1:8089/v1 pytest tests/e2e/test_local_model_goal.py

Runtime is bounded by small caps and a 48-token reply limit (`[openai] max_tokens` in a
temporary config file, CREWCTL_CONFIG, which both the supervisor and the CLI read; the
verifier process gets the same provider settings from the supervisor).
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from crewctl.goal import markers
from crewctl.goal.prompts import verifier as verifier_templates
from crewctl.testing import Supervisor, wait_until, write_agent
from crewctl.testing.http import LoopbackServer, RecordedRequest, Reply
from crewctl.testing.llm import MODEL_TEST_DEADLINE

pytestmark = pytest.mark.llm

MAX_AUTO_TURNS = 3
ATTEMPT_CAP = 1
TOKEN_BUDGET = 2500
DEADLINE = MODEL_TEST_DEADLINE  # for the whole goal; a turn takes 1-10 s on 2 cores
BOUNDED = ("blocked", "budget_limited", "awaiting_signoff")

OBJECTIVE = (
    "Say hello to the operator. When you have said hello, declare that you are ready by replying "
    "with exactly these three lines and nothing else:\n"
    "CREW_READY_BEGIN\n"
    '{"summary": "I said hello to the operator"}\n'
    "CREW_READY_END"
)
JUDGED = "the lead said hello to the operator"


class RecordingProxy:
    """Forwards every chat completion to the real server and keeps each exchange."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.path = urlsplit(self.upstream).path.rstrip("/")
        self.exchanges: list[dict] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self.server = LoopbackServer()

    def __enter__(self) -> "RecordingProxy":
        self.server.start()
        self.server.route("POST", f"{self.path}/chat/completions", self._forward)
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()

    @property
    def base_url(self) -> str:
        return self.server.url + self.path

    def _forward(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
        try:
            upstream = httpx.post(f"{self.upstream}/chat/completions", content=request.body,
                                  headers={"content-type": "application/json"}, timeout=600)
            content_type = upstream.headers.get("content-type", "application/json")
            with self._lock:
                self.exchanges.append({
                    "request": request.json(),
                    "status": upstream.status_code,
                    "content_type": content_type,
                    "body": upstream.content,
                })
            return Reply(status=upstream.status_code, headers={"Content-Type": content_type}, body=upstream.content)
        finally:
            with self._lock:
                self.in_flight -= 1

    def idle(self) -> bool:
        with self._lock:
            return self.in_flight == 0


def reported_usage(exchange: dict) -> dict | None:
    """The usage the server itself reported in one response (plain JSON or an event stream)."""
    if exchange["status"] != 200:
        return None
    if exchange["content_type"].startswith("text/event-stream"):
        usage = None
        for line in exchange["body"].decode().splitlines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                data = json.loads(line[5:])
                if isinstance(data.get("usage"), dict):
                    usage = data["usage"]
        return usage
    data = json.loads(exchange["body"])
    return data["usage"] if isinstance(data.get("usage"), dict) else None


def reply_text(exchange: dict) -> str:
    if exchange["content_type"].startswith("text/event-stream"):
        return "".join(
            (choice.get("delta") or {}).get("content") or ""
            for line in exchange["body"].decode().splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"
            for choice in json.loads(line[5:]).get("choices") or ()
        )
    return json.loads(exchange["body"])["choices"][0]["message"]["content"] or ""


def is_verifier(exchange: dict) -> bool:
    return any(verifier_templates.PREAMBLE in str(m.get("content")) for m in exchange["request"]["messages"])


@pytest.fixture
def proxy(llm_model):
    with RecordingProxy(llm_model[0]) as p:
        yield p


def run_goal(tmp_path, proxy, *, lead: str, verifier: str) -> tuple[dict, list[dict], str]:
    """Run one goal to a settled, bounded state through a real `crewctl run`."""
    config = tmp_path / "config.toml"
    # stream = false: llama-cpp-python reports no usage in streams (see brains/openai.py), so
    # a streamed turn would be generated twice; temperature 0 keeps the replies short-ish.
    config.write_text("[openai]\nmax_tokens = 48\nstream = false\ntemperature = 0\ntimeout = 300\nmax_attempts = 2\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with Supervisor(tmp_path, env={"CREWCTL_CONFIG": str(config)}) as sup:
        goal = sup.new_goal(
            OBJECTIVE,
            "--criterion", "the workspace exists", "--check", "test -d .",
            "--criterion", JUDGED,
            "--max-auto-turns", str(MAX_AUTO_TURNS),
            "--attempt-cap", str(ATTEMPT_CAP),
            "--token-budget", str(TOKEN_BUDGET),
            lead=lead, verifier=verifier, workspace=str(workspace),
        )

        def settled():
            view = sup.show(goal)
            if view["status"] in ("done", "cancelled", "failed"):
                return view  # not expected; the assertions say why
            if view["status"] in BOUNDED and view["in_flight"] is None and proxy.idle():
                return view
            return None

        try:
            view = wait_until(settled, timeout=DEADLINE, interval=0.5, message=f"goal {goal} to settle in {BOUNDED}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- events\n{json.dumps(sup.events(goal), indent=1)[-6000:]}") from None
        return view, sup.events(goal), sup.log()


def assert_bounded_exact_and_honest(view: dict, events: list[dict], exchanges: list[dict], log: str) -> str:
    story = "\n".join(f"{e['seq']:>3} {e['type']:<16} {json.dumps(e['payload'])[:160]}" for e in events)

    # -- bounded and explained --------------------------------------------------------------
    assert view["status"] in BOUNDED, story
    if view["status"] != "awaiting_signoff":
        assert view["reason"], story
    if view["status"] == "blocked":
        blocked = [e for e in events if e["type"] == "blocked"][-1]["payload"]
        assert blocked["reason"] in ("turn_cap", "attempt_cap", "no_progress", "max_turns", "lead", "malformed_marker",
                                     "brain_error"), story
    if view["status"] == "budget_limited":
        assert view["reason"] == "tokens budget spent", story
        assert any(e["type"] == "wind_down" for e in events), story

    # -- within its caps ----------------------------------------------------------------------
    lead_turns = [e for e in events if e["type"] == "turn_started" and e["payload"]["role"] == "lead"
                  and not e["payload"].get("rerun")]
    assert len([e for e in events if e["type"] == "round_started"]) <= ATTEMPT_CAP + 1, story
    # At most max_auto_turns continuations in a row per gate attempt, one corrective turn
    # each, the first turn, and the one wind-down.
    assert len(lead_turns) <= (ATTEMPT_CAP + 1) * (MAX_AUTO_TURNS + 2) + 1, story
    limited = [e["seq"] for e in events if e["type"] == "budget_limited"]
    if limited:
        after = [e for e in events if e["seq"] > limited[0] and e["type"] == "turn_started"]
        assert [e["payload"]["kind"] for e in after] == ["wind_down"], story

    # -- token totals are exactly what the server reported -------------------------------------
    assert exchanges, "no request reached the model"
    reports = [reported_usage(x) for x in exchanges]
    assert any(reports), "the server reported no usage at all"
    assert view["usage"]["input_tokens"] == sum(r["prompt_tokens"] for r in reports if r), story
    assert view["usage"]["output_tokens"] == sum(r["completion_tokens"] for r in reports if r), story
    finished = [e["payload"]["usage"] for e in events if e["type"] == "turn_finished"]
    assert sum(u["input_tokens"] for u in finished) == view["usage"]["input_tokens"], story
    assert all(r["completion_tokens"] <= 48 for r in reports if r)

    # -- the gate never opened without a valid VERIFY from the verifier -----------------------
    verifier_passes = set()  # (id, evidence) of every pass in a valid, single VERIFY the verifier sent
    for x in exchanges:
        if x["status"] == 200 and is_verifier(x):
            found = markers.extract(reply_text(x))
            verifies = [m for m in found.markers if m.kind == "verify"]
            if len(verifies) == 1 and not [err for err in found.errors if err.kind == "verify"]:
                verifier_passes |= {(r["id"], r["evidence"]) for r in verifies[0].payload["results"] if r["verdict"] == "pass"}
    for passed in (e for e in events if e["type"] == "gate_passed"):
        round_no = passed["payload"]["round"]
        verdicts = [e for e in events if e["type"] == "verify" and e["seq"] < passed["seq"]
                    and e["payload"]["round"] == round_no]
        assert verdicts, f"gate_passed in round {round_no} without a verify event\n{story}"
        assert not verdicts[-1]["payload"]["stale"]
        results = {r["id"]: r for r in verdicts[-1]["payload"]["results"]}
        assert all(r["verdict"] == "pass" for r in results.values()), story
        assert results["c1"]["source"] == "check"
        assert results["c2"]["source"] == "verifier", story
        assert ("c2", results["c2"]["evidence"]) in verifier_passes, f"c2 passed without the verifier's VERIFY\n{story}"
    for verdict in (e for e in events if e["type"] == "verify"):
        for r in verdict["payload"]["results"]:
            if r["source"] == "verifier" and r["verdict"] == "pass":
                assert (r["id"], r["evidence"]) in verifier_passes, story
    for e in events:  # a VERIFY from anyone but the verifier moves nothing
        if e["type"] == "marker_ignored" and e["payload"]["kind"] == "verify":
            assert e["payload"]["role"] == "lead"

    # -- and the supervisor never crashed -------------------------------------------------------
    assert "Traceback" not in log, log[-4000:]
    return story


def test_a_goal_with_lead_and_verifier_on_a_real_local_model_ends_bounded_with_exact_usage(llm_model, proxy, tmp_path):
    spec = f"openai:{llm_model[1]}@{proxy.base_url}"
    view, events, log = run_goal(tmp_path, proxy, lead=spec, verifier=spec)
    story = assert_bounded_exact_and_honest(view, events, list(proxy.exchanges), log)
    print(f"\n{view['status']} ({view['reason']}); usage {view['usage']}; {len(proxy.exchanges)} requests\n{story}")


def test_a_real_local_model_as_verifier_never_lets_the_gate_open_without_a_valid_verify(llm_model, proxy, tmp_path):
    # SmolLM2-135M practically never writes a live READY as the lead, so the gate would go
    # untested above; here a scripted lead declares READY every turn and the real model judges.
    lead = write_agent(tmp_path, "lead", """
        say("Hello, operator!")
        marker("READY", {"summary": "I said hello to the operator", "evidence": ["my reply starts with Hello"]})
    """)
    view, events, log = run_goal(tmp_path, proxy, lead=lead, verifier=f"openai:{llm_model[1]}@{proxy.base_url}")
    story = assert_bounded_exact_and_honest(view, events, list(proxy.exchanges), log)
    assert [e for e in events if e["type"] == "round_started"], story
    assert all(is_verifier(x) for x in proxy.exchanges)
    print(f"\n{view['status']} ({view['reason']}); usage {view['usage']}; {len(proxy.exchanges)} requests\n{story}")
