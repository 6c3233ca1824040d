"""aider, codex and opencode in whole goals: a real `crewctl run`, the real CLIs, the real
local model.

tests/e2e/test_real_aider_codex.py proves each preset one turn at a time; here the same tools
run where a user would meet them: named on `crewctl goal new`, started by the supervisor, in
the sandbox, with the operator's HOME choosing the provider (codex's ~/.codex/config.toml,
aider's ~/.aider.conf.yml, opencode's ~/.config/opencode/opencode.json) and nothing else
configured. Every request reaches the real server (shared/tools/local-llm) through
crewctl.testing.responses.ResponsesShim, which keeps what the server reported: codex 0.171
speaks only the Responses API, which llama-cpp-python lacks; aider's and opencode's chat
completions pass through it. Proven here: aider 0.86.2, codex 0.171.0, opencode 1.18.33.

A process of the tool must never outlive its turn: not after the turn, not after
`goal cancel`, not after the supervisor stops. Those tests hold the model's reply (the shim's
`hold`), so the tool is caught mid-request, then cancel or stop, and wait for every process
started from the tool's install to be gone.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

import pytest

from crewctl.brains.presets import PRESETS
from crewctl.goal import markers
from crewctl.goal.prompts import verifier as verifier_templates
from crewctl.testing import Supervisor, wait_until, write_agent
from crewctl.testing.llm import MODEL_TEST_DEADLINE
from crewctl.testing.responses import ResponsesShim
from crewctl.testing.tools import install_root, live_processes, missing_tool, tool_path

pytestmark = pytest.mark.llm

TOOLS = ("aider", "codex", "opencode", "llm")
# llm is a test dependency of crewctl itself (pip install -e '.[test]'), beside this python.
LLM = os.path.join(os.path.dirname(sys.executable), "llm")
PATHS = {name: tool_path(name) for name in TOOLS if name != "llm"} | {"llm": LLM if os.path.exists(LLM) else None}
GONE_WITHIN = 60  # seconds for a tool's processes to be gone after a cancel or a stop


def tool_processes(name: str) -> list[str]:
    # llm's own script: its venv is crewctl's, where this test runs too.
    return live_processes(LLM if name == "llm" else install_root(PATHS[name]))


def none_left(name: str, after: str) -> None:
    wait_until(lambda: not tool_processes(name), timeout=GONE_WITHIN, interval=0.2,
               message=f"every {name} process to be gone after {after}: {tool_processes(name)}")


@pytest.fixture(params=TOOLS)
def tool(request):
    name = request.param
    if PATHS[name] is None:
        missing_tool(name)  # skips, or fails under CREWCTL_REQUIRE_TOOLS
    assert not tool_processes(name), f"{name} processes from before this test: {tool_processes(name)}"
    return name


# codex's and opencode's own system prompts (4k and 2k tokens, opencode's with its tools'
# schemas) take the local CPU model minutes to read; the shim gives the model this line in
# their place (each request is recorded as the tool sent it).
SHORT_INSTRUCTIONS = "You are a coding agent. Answer briefly."


@pytest.fixture
def shim(llm_model, tool):
    with ResponsesShim(llm_model[0], max_tokens=48, instructions=SHORT_INSTRUCTIONS if tool in ("codex", "opencode") else None) as s:
        yield s


def operator_home(tmp_path, name: str, base_url: str, canary: str, model: str = ""):
    """The operator's HOME as they would have set up the tool for the local server, plus
    what a verifier must never be given: codex's history and an MCP server that would touch
    `canary` if the tool ever started it."""
    home = tmp_path / "operator-home"
    home.mkdir()
    if name == "codex":
        (home / ".codex").mkdir()
        (home / ".codex" / "config.toml").write_text(
            'model = "smollm2"\nmodel_provider = "local"\n\n'
            f'[model_providers.local]\nname = "local llama"\nbase_url = "{base_url}"\nwire_api = "responses"\n\n'
            '[history]\npersistence = "save-all"\n\n'
            f'[mcp_servers.canary]\ncommand = "touch"\nargs = [{json.dumps(canary)}]\n')
    elif name == "opencode":
        (home / ".config" / "opencode").mkdir(parents=True)
        (home / ".config" / "opencode" / "opencode.json").write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"local": {"npm": "@ai-sdk/openai-compatible", "name": "local llama",
                                   "options": {"baseURL": base_url, "apiKey": "sk-local"}, "models": {"smol": {"name": "smol"}}}},
            "mcp": {"canary": {"type": "local", "command": ["touch", canary]}},
        }))
    elif name == "llm":
        state = home / ".config" / "io.datasette.llm"
        state.mkdir(parents=True)
        (state / "extra-openai-models.yaml").write_text(
            f"- model_id: local\n  model_name: {json.dumps(model)}\n  api_base: {json.dumps(base_url)}\n")
        (state / "keys.json").write_text('{"openai": "sk-local"}\n')
    else:
        (home / ".aider.conf.yml").write_text(f"openai-api-base: {base_url}\nopenai-api-key: sk-local\n")
    return home


def spec(name: str, model: str) -> str:
    return {"aider": f"aider:openai/{model}", "codex": "codex", "opencode": "opencode:local/smol", "llm": "llm:local"}[name]


def supervisor(tmp_path, name: str, home) -> Supervisor:
    command = [PATHS[name], *PRESETS[name].command[1:]]
    return Supervisor(tmp_path, env={"HOME": str(home), "OPENAI_API_KEY": "sk-local"},
                      config=f"[presets.{name}]\ncommand = {json.dumps(command)}\n")


def ready_lead(tmp_path):
    return write_agent(tmp_path, "lead", """
        say("I wrote hello.txt.")
        marker("READY", {"summary": "hello.txt says hello", "evidence": ["cat hello.txt"]})
    """)


def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hello\n")
    return ws


def tree(path) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(r, n), path): open(os.path.join(r, n), "rb").read()
            for r, _ds, fs in os.walk(path) for n in fs}


def turns(events: list[dict], role: str) -> list[dict]:
    return [e for e in events if e["type"] in ("turn_finished", "turn_failed") and e["payload"].get("role") == role]


def story(events: list[dict]) -> str:
    return json.dumps(events, indent=1)[-4000:]


def test_the_tool_as_lead_of_a_real_goal_counts_what_the_server_reported_and_resumes(tmp_path, tool, shim, llm_model):
    home = operator_home(tmp_path, tool, shim.base_url, str(tmp_path / "canary"), llm_model[1])
    ws = tmp_path / "ws"
    ws.mkdir()
    with supervisor(tmp_path, tool, home) as sup:
        # `--check false`: whatever the model says, the lead works a second turn (a READY
        # holds the gate; no marker is a continuation), within one auto turn.
        goal = sup.new_goal("say hello", "--criterion", "it said hello", "--check", "false",
                            "--max-auto-turns", "1", "--token-budget", "500000",
                            lead=spec(tool, llm_model[1]), workspace=str(ws))

        def two_lead_turns():
            events = sup.events(goal)
            if len(turns(events, "lead")) >= 2 or [e for e in events if e["type"] == "turn_failed"]:
                return events
            view = sup.show(goal)
            if view["status"] == "blocked" and view["in_flight"] is None:
                sup.cli("goal", "resume", goal)  # the turn cap: go on to the second turn
            return None

        events = wait_until(two_lead_turns, timeout=MODEL_TEST_DEADLINE, interval=0.5, message=f"two {tool} lead turns")
    # A third turn may have started meanwhile (a READY the check holds): only after the stop
    # is no turn in flight. (Cut short mid-request: test_no_process_of_the_tool_outlives...)
    none_left(tool, "its turns and the supervisor's stop")
    finished = turns(events, "lead")[:2]
    assert [e["type"] for e in finished] == ["turn_finished", "turn_finished"], story(events)
    assert "unsandboxed" not in [e["type"] for e in events]
    assert shim.exchanges, "no request of the tool reached the model"
    reported = [x["usage"] for x in shim.exchanges if x["usage"]]
    counted_in = sum(e["payload"]["usage"]["input_tokens"] for e in finished)
    counted_out = sum(e["payload"]["usage"]["output_tokens"] for e in finished)
    # The two turns' requests are the first ones the server answered (turns run one at a
    # time); a third turn's may follow. So the two turns count what the server reported for
    # its first k requests, for some k.
    firsts = [(sum(u["prompt_tokens"] for u in reported[:k]), sum(u["completion_tokens"] for u in reported[:k]))
              for k in range(len(reported) + 1)]
    view = sup.show(goal)
    if tool != "aider":  # codex's JSONL, llm's --json and opencode's events carry the server's counts
        assert (counted_in, counted_out) in firsts, (counted_in, counted_out, firsts, story(events))
    if tool == "opencode":
        # opencode streams, and llama-cpp-python streams no usage (include_usage or not): the
        # server reported nothing, opencode says 0, and the goal says its budget cannot count.
        assert reported == [] and (counted_in, counted_out) == (0, 0)
        assert view["usage"]["uncounted_turns"] >= 2
        assert "the token budget cannot count them" in sup.cli("goal", "show", goal).stdout
    elif tool == "aider":
        # aider never prints the server's figures: a rounded display ("2.3k sent", at most 50
        # off per request) or, for a reply cut at the output limit, its own estimate (445 for
        # the server's 705, tests/data/recordings/README.md). Counted, not exact.
        assert any(server_in / 2 <= counted_in <= server_in + 50 * k and 0 < counted_out <= 2 * server_out + 50 * k
                   for k, (server_in, server_out) in enumerate(firsts)), (counted_in, counted_out, firsts)
    # The reply the goal recorded is the model's text (aider's transcript around it aside).
    logs = sup.cli("goal", "logs", goal, "--role", "lead", "--json").json()
    first_reply = " ".join((logs[0]["reply"] or "").split())
    said = [" ".join(x["text"].split()) for x in shim.exchanges if x["text"] and x["text"].strip()]
    assert first_reply and any(t in first_reply for t in said), (first_reply, said)
    if tool in ("codex", "opencode", "llm"):
        # The second turn resumed the tool's own session: its request carried the first reply.
        carried = " ".join(" ".join(content_text(m).split()) for m in shim.exchanges[-1]["chat"]["messages"])
        first_said = next(t for t in said if t in first_reply)
        assert first_said in carried, f"{tool}'s second turn did not carry the first turn's reply"
    else:
        assert not [p for p in tree(ws) if p.startswith(".aider")]  # no cache or history in the workspace


def content_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):  # parts, as the AI SDK sends them
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return str(content or "")


def test_the_tool_as_verifier_judges_a_snapshot_it_leaves_unchanged_with_only_the_configured_provider(
        tmp_path, tool, shim, llm_model):
    canary = tmp_path / f"canary-{uuid.uuid4().hex}"
    home = operator_home(tmp_path, tool, shim.base_url, str(canary), llm_model[1])
    ws = workspace(tmp_path)
    before = tree(ws)
    with supervisor(tmp_path, tool, home) as sup:
        goal = sup.new_goal("write hello.txt", "--criterion", "hello.txt says hello", "--attempt-cap", "1",
                            lead=ready_lead(tmp_path), verifier=spec(tool, llm_model[1]), workspace=str(ws))
        events = wait_until(lambda: turns(sup.events(goal), "verifier") and sup.events(goal),
                            timeout=MODEL_TEST_DEADLINE, interval=0.5, message=f"the {tool} verifier's turn")
        none_left(tool, "its turn")
        [first, *_] = turns(events, "verifier")
        assert first["type"] == "turn_finished", story(events)
        assert first["payload"]["usage"]["input_tokens"] > 0 or tool == "opencode"  # see the lead test
    judged = [x for x in shim.exchanges if verifier_templates.PREAMBLE in str(x["chat"]["messages"])]
    assert judged, "the verifier's request never reached the configured provider"
    if tool == "codex":
        assert first["payload"]["usage"]["input_tokens"] == judged[0]["usage"]["prompt_tokens"]
    # It saw the snapshot (aider gets its files read-only; codex is told the path) and wrote nothing.
    if tool == "aider":
        assert "hello.txt" in str(judged[0]["chat"]["messages"])
    assert tree(ws) == before
    assert not canary.exists(), "the verifier started an MCP server from the operator's config"
    assert "unsandboxed" not in [e["type"] for e in events]
    # What it said went through the marker parser like any verifier's reply: a VERIFY it
    # did not write (the tiny model rarely writes one) moved nothing.
    if not any(markers.extract(x["text"] or "").markers for x in judged):
        assert "gate_passed" not in [e["type"] for e in events], story(events)


@pytest.mark.parametrize("stop", ["goal cancel", "supervisor stop"])
@pytest.mark.parametrize("role", ["lead", "verifier"])
def test_no_process_of_the_tool_outlives_a_turn_cut_short(tmp_path, tool, shim, llm_model, role, stop):
    home = operator_home(tmp_path, tool, shim.base_url, str(tmp_path / "canary"), llm_model[1])
    ws = workspace(tmp_path)
    brain = spec(tool, llm_model[1])
    shim.hold()  # the tool's first request waits: the turn is caught mid-flight
    with supervisor(tmp_path, tool, home) as sup:
        if role == "lead":
            lead, verifier, check = brain, None, ("--check", "grep -q hello hello.txt")
        else:
            lead, verifier, check = ready_lead(tmp_path), brain, ()
        goal = sup.new_goal("write hello.txt", "--criterion", "hello.txt says hello", *check,
                            lead=lead, verifier=verifier, workspace=str(ws))
        wait_until(lambda: shim.held, timeout=MODEL_TEST_DEADLINE, interval=0.2,
                   message=f"the {tool} {role}'s request to reach the model")
        assert tool_processes(tool), f"no {tool} process while its request is held"
        if stop == "goal cancel":
            sup.cli("goal", "cancel", goal)
        else:
            sup.stop()
        none_left(tool, stop)
        if stop == "goal cancel":
            assert sup.show(goal)["status"] == "cancelled"
    shim.release()
