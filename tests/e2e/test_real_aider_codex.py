"""aider and codex, the real CLIs, against the real local model (issue 13).

The tools are the ones `.ci/run` installs (aider-chat in its own venv, @openai/codex under an
npm prefix, both under ~/.cache/crewctl-tools); CREWCTL_TEST_AIDER / CREWCTL_TEST_CODEX name
other binaries. Each turn goes through crewctl's own preset (PresetBrain.run, the code a
`crewctl run` turn calls), in the role's working directory, against
`shared/tools/local-llm` through crewctl.testing.responses.ResponsesShim, which records what
the server reported.

codex 0.171 speaks only the Responses API (`wire_api = "chat"` is "no longer supported") and
the local server (llama-cpp-python) has no `/v1/responses` (it answers 404). The shim is a
stand-in for that endpoint only: the codex binary, its argv, its JSONL, its sessions and the
model are all real; the shim turns each Responses request into one chat completion and offers
the model no tools.

The same tools in whole goals, through a real `crewctl run`, and the process checks after
`goal cancel` and a supervisor stop: tests/e2e/test_real_tools_goal.py. Here process groups
are checked after each turn.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from crewctl.brains.base import TurnRequest
from crewctl.brains.presets import PRESETS, PresetBrain, PresetSettings
from crewctl.exceptions import BrainError
from crewctl.sandbox._env import seed_home
from crewctl.testing.llm import MODEL_TEST_DEADLINE
from crewctl.testing.responses import ResponsesShim
from crewctl.testing.tools import needs_tool, tool_path

pytestmark = pytest.mark.llm

AIDER = tool_path("aider")
CODEX = tool_path("codex")


@pytest.fixture(scope="module")
def model(llm_model):
    return llm_model


@pytest.fixture
def shim(model):
    # In place of codex's ~4k-token system prompt, which the local CPU model takes minutes to read.
    with ResponsesShim(model[0], max_tokens=48, instructions="You are a coding agent. Answer briefly.") as s:
        yield s


def request(role: str, workdir, home, prompt: str, *, resume_ref=None, timeout=float(MODEL_TEST_DEADLINE), extra_env=None) -> TurnRequest:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "OPENAI_API_KEY": "sk-local"}
    env.update(extra_env or {})
    return TurnRequest(role=role, goal_id="g1", session_id=str(uuid.uuid4()), turn=1, prompt=prompt,
                       workdir=str(workdir), env=env, timeout=timeout, resume_ref=resume_ref)


def tool_brain(name: str, model: str | None = None) -> PresetBrain:
    """The preset as crewctl builds it, with only the binary's path set (`[presets.X] command`)."""
    command = (AIDER,) if name == "aider" else (CODEX, "exec")
    return PresetBrain(PRESETS[name], model, PresetSettings(command=command))


def no_process_left(tool: str) -> None:
    out = subprocess.run(["pgrep", "-f", tool], capture_output=True, text=True).stdout.split()
    assert [p for p in out if int(p) != os.getpid()] == [], f"{tool} left processes behind: {out}"


def tree(path) -> set[str]:
    return {os.path.relpath(os.path.join(r, n), path) for r, ds, fs in os.walk(path) for n in ds + fs}


# -- aider -------------------------------------------------------------------------------------

needs_aider = needs_tool(AIDER, "aider")


@needs_aider
def test_aider_verifier_sees_the_snapshot_files_without_git_init_cache_or_banner(tmp_path, shim, model):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "hello.py").write_text("print('the marker word is PELICAN')\n")
    home = tmp_path / "home"
    home.mkdir()
    before = tree(snapshot)
    brain = tool_brain("aider", f"openai/{model[1]}")
    reply = brain.run(request("verifier", snapshot, home, "What word does hello.py print?",
                              extra_env={"OPENAI_API_BASE": shim.base_url}))
    # The snapshot's file reached the model (read-only, since --no-git shows aider nothing else).
    assert shim.exchanges, "aider sent nothing to the model"
    sent = str(shim.exchanges[-1]["chat"]["messages"])
    assert "PELICAN" in sent
    # Nothing written: no git init, no tags cache, no history files.
    assert tree(snapshot) == before
    assert "Detected dumb terminal" not in reply.text and "\x1b" not in reply.text
    # The reply is the model's text, unwrapped; usage is what the server reported (exact below 1k).
    said = shim.exchanges[-1]["text"].strip()
    assert " ".join(said.split()) in " ".join(reply.text.split())
    assert reply.usage.input_tokens == shim.exchanges[-1]["usage"]["prompt_tokens"]
    assert reply.usage.output_tokens == shim.exchanges[-1]["usage"]["completion_tokens"]
    assert reply.resume_ref is None  # aider has no session: each turn is a fresh chat
    no_process_left(AIDER)


@needs_aider
def test_aider_lead_in_a_git_workspace_stages_nothing_and_leaves_no_cache(tmp_path, shim, model):
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / "a.txt").write_text("one\n")
    home = tmp_path / "home"
    home.mkdir()
    brain = tool_brain("aider", f"openai/{model[1]}")
    reply = brain.run(request("lead", ws, home, "Say hello in one line.", extra_env={"OPENAI_API_BASE": shim.base_url}))
    assert reply.text.strip()
    assert not any(p.startswith(".aider") for p in tree(ws))
    staged = subprocess.run(["git", "-C", str(ws), "diff", "--cached", "--name-only"], capture_output=True, text=True).stdout
    assert staged == ""
    assert subprocess.run(["git", "-C", str(ws), "rev-list", "--all"], capture_output=True, text=True).stdout == ""
    no_process_left(AIDER)


# -- codex -------------------------------------------------------------------------------------

needs_codex = needs_tool(CODEX, "codex")


def codex_home(home, base_url: str) -> None:
    """The operator's ~/.codex/config.toml choosing a local provider, plus what a verifier
    must never see (history, MCP servers)."""
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "smollm2"\nmodel_provider = "local"\n\n'
        f'[model_providers.local]\nname = "local llama"\nbase_url = "{base_url}"\nwire_api = "responses"\n\n'
        '[history]\npersistence = "save-all"\n\n[mcp_servers.writer]\ncommand = "touch"\nargs = ["/tmp/pwned"]\n'
    )


@needs_codex
def test_codex_lead_replies_counts_what_the_server_reported_and_resumes_its_thread(tmp_path, shim):
    home = tmp_path / "home"
    codex_home(home, shim.base_url)
    ws = tmp_path / "ws"
    ws.mkdir()
    brain = tool_brain("codex")
    first = brain.run(request("lead", ws, home, "Say hello in one short line."))
    assert len(shim.exchanges) == 1
    assert first.text == shim.exchanges[0]["text"]
    assert first.usage.input_tokens == shim.exchanges[0]["usage"]["prompt_tokens"]
    assert first.usage.output_tokens == shim.exchanges[0]["usage"]["completion_tokens"]
    thread = first.resume_ref.split("#")[0]
    second = brain.run(request("lead", ws, home, "Say it again.", resume_ref=first.resume_ref))
    assert second.resume_ref.split("#")[0] == thread
    # The resumed turn sent the earlier exchange again, and counts only its own request.
    assert "Say hello in one short line." in str(shim.exchanges[-1]["chat"]["messages"])
    assert second.usage.input_tokens == shim.exchanges[-1]["usage"]["prompt_tokens"]
    assert second.usage.output_tokens == shim.exchanges[-1]["usage"]["completion_tokens"]
    no_process_left(CODEX)


@needs_codex
def test_codex_verifier_fresh_home_reaches_the_configured_provider_and_nothing_else(tmp_path, shim):
    operator = tmp_path / "operator"
    codex_home(operator, shim.base_url)
    fresh = tmp_path / "round-home"
    fresh.mkdir()
    seeded = seed_home("codex", str(operator), str(fresh))
    assert ".codex/config.toml" in seeded
    carried = (fresh / ".codex" / "config.toml").read_text()
    assert "base_url" in carried and "mcp_servers" not in carried and "history" not in carried
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "f.txt").write_text("x\n")
    before = tree(snapshot)
    brain = tool_brain("codex")
    reply = brain.run(request("verifier", snapshot, fresh, "Say hello in one short line."))
    assert reply.text == shim.exchanges[-1]["text"]
    assert tree(snapshot) == before
    no_process_left(CODEX)


@needs_codex
def test_codex_with_an_unreachable_provider_fails_at_once_in_its_own_words(tmp_path):
    home = tmp_path / "home"
    codex_home(home, "http://127.0.0.1:9/v1")  # the discard port: nothing listens
    ws = tmp_path / "ws"
    ws.mkdir()
    brain = tool_brain("codex")
    started = time.monotonic()
    with pytest.raises(BrainError, match="waiting for network") as caught:
        brain.run(request("verifier", ws, home, "hi", timeout=300))
    assert time.monotonic() - started < 120, "the reconnect loop was not caught before the turn's timeout"
    assert "timed out" not in str(caught.value)
    no_process_left(CODEX)
