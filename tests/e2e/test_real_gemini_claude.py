"""gemini and claude, the real CLIs, where no model can be reached here (issue 13).

Neither has a model on this machine (no network, no account), so what is proven is what can
be: every flag a preset passes exists in the installed tool's own `--help`, and the real
failures a user meets first (not logged in, an API that is not Anthropic's) are classified as
configuration errors in the tool's own words, through crewctl's preset code (PresetBrain.run)
and the real binaries. The tools are the ones `.ci/run` installs under
~/.cache/crewctl-tools (CREWCTL_TEST_GEMINI / CREWCTL_TEST_CLAUDE name others).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import uuid

import pytest

from crewctl.brains.base import TurnRequest
from crewctl.brains.presets import PRESETS, PresetBrain, PresetSettings, invocation
from crewctl.exceptions import BrainConfigError
from crewctl.testing import Supervisor, wait_until, write_agent
from crewctl.testing.http import LoopbackServer, Reply
from crewctl.testing.tools import install_root, live_processes, missing_tool, needs_tool, tool_path

TOOLS = {name: tool_path(name) for name in ("gemini", "claude")}


def installed(name: str):
    return needs_tool(TOOLS[name], name)


def brain(name: str) -> PresetBrain:
    preset = PRESETS[name]
    return PresetBrain(preset, None, PresetSettings(command=(TOOLS[name], *preset.command[1:])))


def request(role: str, tmp_path, **env: str) -> TurnRequest:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    return TurnRequest(role=role, goal_id="g1", session_id=str(uuid.uuid4()), turn=1, prompt="Say hi.",
                       workdir=str(work), env={"PATH": os.environ["PATH"], "HOME": str(home), **env}, timeout=120.0)


def help_text(name: str) -> str:
    done = subprocess.run([TOOLS[name], "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    return done.stdout + done.stderr


@pytest.mark.parametrize("name", ["gemini", "claude"])
@pytest.mark.parametrize("role", ["lead", "worker", "verifier"])
def test_every_flag_the_preset_passes_is_in_the_installed_tools_help(name, role):
    if TOOLS[name] is None:
        missing_tool(name)
    text = help_text(name)
    call = invocation(PRESETS[name], role, model="some-model", resume_ref="a-session-id" if role != "verifier" else None)
    flags = [a for a in call.argv[1:] if a.startswith("-")]
    assert flags, call.argv
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert missing == [], f"{name} --help does not know {missing} (argv: {call.argv})"
    # The values of the mode switches are ones the tool lists.
    for flag in ("--approval-mode", "--permission-mode"):
        if flag in call.argv:
            assert call.argv[call.argv.index(flag) + 1] in text


@installed("claude")
@pytest.mark.parametrize("role", ["lead", "verifier"])
def test_claude_not_logged_in_is_a_configuration_error_in_its_own_words(tmp_path, role):
    with pytest.raises(BrainConfigError) as caught:
        brain("claude").run(request(role, tmp_path))
    assert "Not logged in" in str(caught.value)


@installed("gemini")
@pytest.mark.parametrize("role", ["lead", "verifier"])
def test_gemini_without_an_auth_method_is_a_configuration_error_in_its_own_words(tmp_path, role):
    with pytest.raises(BrainConfigError) as caught:
        brain("gemini").run(request(role, tmp_path))
    assert "Auth method" in str(caught.value) and "GEMINI_API_KEY" in str(caught.value)


class _NoMessagesApi(http.server.BaseHTTPRequestHandler):
    """A real HTTP server that is not Anthropic's: every path is 404, as on an
    OpenAI-compatible server a user might point ANTHROPIC_BASE_URL at by mistake."""

    def _missing(self) -> None:
        body = b'{"error": {"message": "Not Found", "type": "not_found"}}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _missing

    def log_message(self, *_args) -> None:
        pass


@installed("claude")
def test_claude_pointed_at_a_server_without_the_messages_api_says_so(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoMessagesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(BrainConfigError) as caught:
            brain("claude").run(request("lead", tmp_path, ANTHROPIC_API_KEY="sk-test", ANTHROPIC_BASE_URL=url))
    finally:
        server.shutdown()
        server.server_close()
    message = str(caught.value)
    assert "404" in message and "/v1/messages" in message
    assert "issue with the selected model" in message  # and claude's own words, kept


# -- no process outlives a turn cut short ------------------------------------------------------

# Each tool pointed at a loopback server (its own base-URL setting, which the preset passes
# on) that reads every request and answers none: the tool is caught mid-request, as with a
# slow model, and then its goal is cancelled or its supervisor stopped.
HELD_API = {
    "claude": {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": "{url}"},
}


@pytest.mark.parametrize("stop", ["goal cancel", "supervisor stop"])
@pytest.mark.parametrize("role", ["lead", "verifier"])
@pytest.mark.parametrize("name", ["claude"])  # gemini 0.61 with only GEMINI_API_KEY: "Invalid auth method selected" before any request
def test_no_process_of_the_tool_outlives_a_turn_cut_short(tmp_path, name, role, stop):
    if TOOLS[name] is None:
        missing_tool(name)
    root = install_root(TOOLS[name])
    assert not live_processes(root), f"{name} processes from before this test: {live_processes(root)}"
    with LoopbackServer(default=Reply.json({"error": "never answered"}, delay=600)) as api:
        env = {k: v.format(url=api.url) for k, v in HELD_API[name].items()}
        home = tmp_path / "operator-home"
        home.mkdir()
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "hello.txt").write_text("hello\n")
        command = [TOOLS[name], *PRESETS[name].command[1:]]
        with Supervisor(tmp_path, env={"HOME": str(home), **env},
                        config=f"[presets.{name}]\ncommand = {json.dumps(command)}\n") as sup:
            if role == "lead":
                lead, verifier, check = name, None, ("--check", "true")
            else:
                lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "hello.txt says hello"})')
                verifier, check = name, ()
            goal = sup.new_goal("write hello.txt", "--criterion", "hello.txt says hello", *check,
                                lead=lead, verifier=verifier, workspace=str(ws))
            wait_until(lambda: api.requests, timeout=120, interval=0.2, message=f"{name}'s first request")
            assert live_processes(root), f"no {name} process while its request is held"
            if stop == "goal cancel":
                sup.cli("goal", "cancel", goal)
            else:
                sup.stop()
            wait_until(lambda: not live_processes(root), timeout=60, interval=0.2,
                       message=f"every {name} process to be gone after {stop}: {live_processes(root)}")
