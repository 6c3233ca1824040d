"""Agent-CLI presets: their command lines per role, and their parsers against real recordings.

Three kinds of test live here:

* argument building: for each preset, the lead's first turn, the lead's resumed turn, the
  verifier's turn (which never resumes and carries the tool's read-only switches), with and
  without a model, and with a `[presets.NAME]` config override;
* parsing: each recorded output under tests/data/recordings/<tool>/ (where each came from is in
  tests/data/recordings/README.md) parsed for text, usage, cost and the tool's session id,
  and malformed output turned into a one-line BrainError;
* the real subprocess path: for each preset a tiny stand-in executable with the tool's name
  (a Python script in a temporary directory put first on the turn's PATH) checks the argv and
  the prompt it was given (on stdin, or in aider's --message-file) and prints a recording
  verbatim. The preset then runs through exec.run_process exactly as it would with the real
  tool: no subprocess mocking, real bytes on real pipes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from crewctl.goal import markers

from crewctl.brains import resolve
from crewctl.brains.base import TurnRequest, Usage
from crewctl.brains.presets import PRESETS, PresetBrain, invocation, preset_brain, preset_settings
from crewctl.config import Config
from crewctl.exceptions import BrainConfigError, BrainError, ConfigError, UsageLimited
from crewctl.sandbox import Sandbox

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"


def recording(path: str) -> bytes:
    return (RECORDINGS / path).read_bytes()


def argv(name: str, role: str, **kw) -> list[str]:
    return invocation(PRESETS[name], role, **kw).argv


def config_with(presets: dict) -> Config:
    return Config(path="/etc/crewctl.toml", presets=presets)


# ---------------------------------------------------------------------------------------------
# argument building


FIRST_TURN = {
    "claude": ["claude", "-p", "--output-format", "json", "--permission-mode", "acceptEdits"],
    "codex": ["codex", "exec", "--json", "--sandbox", "workspace-write", "--skip-git-repo-check", "-"],
    "gemini": ["gemini", "--output-format", "json", "--skip-trust", "--approval-mode", "auto_edit"],
    "opencode": ["opencode", "run", "--format", "json"],
    "llm": ["llm", "prompt", "--json", "--log"],
}


@pytest.mark.parametrize("name", sorted(FIRST_TURN))
def test_lead_first_turn_is_the_documented_non_interactive_command(name):
    assert argv(name, "lead") == FIRST_TURN[name]


def test_aider_first_turn_answers_every_question_by_flag_and_reads_the_prompt_from_a_file():
    line = argv("aider", "lead", prompt_file="/tmp/p.md")
    assert line[0] == "aider"
    for flag in ("--no-pretty", "--yes-always", "--no-auto-commits", "--no-gitignore", "--no-fancy-input"):
        assert flag in line
    assert line[-2:] == ["--message-file", "/tmp/p.md"]
    assert line[line.index("--chat-history-file") + 1] == os.devnull


RESUMED = {
    "claude": ["--resume", "S-1"],
    "gemini": ["--resume", "S-1"],
    "opencode": ["--session", "S-1"],
    "llm": ["--cid", "S-1"],
}


@pytest.mark.parametrize("name", sorted(RESUMED))
def test_lead_resumed_turn_passes_the_previous_session_id(name):
    line = argv(name, "lead", resume_ref="S-1")
    start = line.index(RESUMED[name][0])
    assert line[start : start + 2] == RESUMED[name]


def test_codex_resumed_turn_uses_exec_resume_with_the_thread_id_before_the_stdin_dash():
    line = argv("codex", "lead", resume_ref="T-1")
    assert line[:4] == ["codex", "exec", "resume", "--json"]
    assert line[-2:] == ["T-1", "-"]
    # resume takes no --sandbox flag; the same policy goes in as a config override
    assert 'sandbox_mode="workspace-write"' in line and "--sandbox" not in line


def test_aider_has_no_session_so_a_resumed_turn_is_a_fresh_one():
    assert argv("aider", "lead", resume_ref="S-1") == argv("aider", "lead")
    assert not invocation(PRESETS["aider"], "lead", resume_ref="S-1").resumed


def test_worker_turns_are_built_like_lead_turns():
    for name in PRESETS:
        assert argv(name, "worker", resume_ref="S-1") == argv(name, "lead", resume_ref="S-1")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_verifier_turn_never_resumes_a_session(name):
    call = invocation(PRESETS[name], "verifier", resume_ref="S-SECRET", model="m")
    assert "S-SECRET" not in call.argv
    assert not call.resumed
    assert "resume" not in call.argv and "--resume" not in call.argv


VERIFIER_SWITCHES = {
    "claude": ["--permission-mode", "dontAsk", "--tools", "Read,Grep,Glob", "--disallowedTools",
               "Bash,Edit,Write,NotebookEdit,WebFetch,WebSearch", "--strict-mcp-config", "--no-session-persistence"],
    "codex": ["--sandbox", "read-only", "--ephemeral", 'web_search="disabled"'],
    "gemini": ["--approval-mode", "plan"],
    "aider": ["--chat-mode", "ask", "--dry-run", "--no-suggest-shell-commands", "--no-detect-urls"],
    "llm": ["--no-log"],
    "opencode": [],
}


@pytest.mark.parametrize("name", sorted(VERIFIER_SWITCHES))
def test_verifier_turn_carries_the_tools_read_only_switches(name):
    line = argv(name, "verifier")
    for flag in VERIFIER_SWITCHES[name]:
        assert flag in line, flag
    for writable in ("acceptEdits", "workspace-write", "auto_edit", "--log"):
        assert writable not in line


def test_opencode_verifier_gets_a_permission_table_that_denies_edit_shell_and_network():
    call = invocation(PRESETS["opencode"], "verifier")
    rules = json.loads(call.env["OPENCODE_PERMISSION"])
    for tool in ("edit", "bash", "webfetch", "websearch", "task"):
        assert rules[tool] == "deny"
    assert "OPENCODE_PERMISSION" not in invocation(PRESETS["opencode"], "lead").env


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_turn_asks_for_plain_output(name):
    env = invocation(PRESETS[name], "lead").env
    assert env["NO_COLOR"] == "1"
    # aider prints a "Detected dumb terminal" banner into every reply under TERM=dumb; with
    # --no-pretty and stdout a pipe it prints no escape codes under another TERM.
    assert env["TERM"] == ("xterm" if name == "aider" else "dumb")


def test_aider_console_is_wider_than_any_marker_line():
    assert int(invocation(PRESETS["aider"], "lead").env["COLUMNS"]) > markers.BODY_LIMIT


MODEL_FLAG = {"claude": "--model", "codex": "-m", "gemini": "--model", "opencode": "--model", "aider": "--model", "llm": "--model"}


@pytest.mark.parametrize("name", sorted(MODEL_FLAG))
def test_model_is_passed_with_the_tools_own_flag_when_given(name):
    for role in ("lead", "verifier"):
        line = argv(name, role, model="big-1")
        assert line[line.index(MODEL_FLAG[name]) + 1] == "big-1"


@pytest.mark.parametrize("name", sorted(MODEL_FLAG))
def test_no_model_flag_leaves_the_choice_to_the_tool(name):
    assert MODEL_FLAG[name] not in argv(name, "lead")


def test_config_override_replaces_the_base_command_and_adds_role_args():
    settings = preset_settings(
        "claude",
        config_with({"claude": {
            "command": ["npx", "@anthropic-ai/claude-code", "-p", "--output-format", "json"],
            "model": "sonnet",
            "args": ["--max-turns", "40"],
            "verifier_args": ["--max-turns", "5"],
            "env": {"CLAUDE_X": "1"},
        }}),
    )
    lead = invocation(PRESETS["claude"], "lead", settings=settings)
    assert lead.argv[:5] == ["npx", "@anthropic-ai/claude-code", "-p", "--output-format", "json"]
    assert lead.argv[-2:] == ["--max-turns", "40"]
    assert lead.argv[lead.argv.index("--model") + 1] == "sonnet"
    assert lead.env["CLAUDE_X"] == "1"
    verifier = invocation(PRESETS["claude"], "verifier", settings=settings)
    assert verifier.argv[-2:] == ["--max-turns", "5"]
    assert "--tools" in verifier.argv  # added to, never instead of, the read-only switches
    assert settings.source == "/etc/crewctl.toml"


def test_spec_model_wins_over_the_config_model():
    brain = preset_brain("gemini", "gemini-2.5-pro", config_with({"gemini": {"model": "gemini-2.5-flash"}}))
    assert brain.spec == "gemini:gemini-2.5-pro"
    assert brain.model == "gemini-2.5-pro"
    assert preset_brain("gemini", None, config_with({"gemini": {"model": "gemini-2.5-flash"}})).model == "gemini-2.5-flash"


def test_config_override_as_a_string_is_split_like_a_shell_would():
    settings = preset_settings("llm", config_with({"llm": {"command": "uvx llm prompt"}}))
    assert settings.command == ("uvx", "llm", "prompt")


@pytest.mark.parametrize(
    "table, words",
    [
        ({"comand": ["x"]}, "unknown key 'comand'"),
        ({"command": []}, "command must be a non-empty list"),
        ({"args": [1]}, "args must be a list of strings"),
        ({"env": {"A": 1}}, "env must be a table of strings"),
        ({"model": ""}, "model must be a non-empty string"),
    ],
)
def test_malformed_preset_settings_are_a_one_line_config_error(table, words):
    with pytest.raises(ConfigError) as caught:
        preset_settings("codex", config_with({"codex": table}))
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert "[presets.codex]" in str(caught.value)


def test_resolve_builds_a_preset_brain_from_its_spec():
    brain = resolve("codex:gpt-5")
    assert isinstance(brain, PresetBrain) and brain.spec == "codex:gpt-5"
    assert resolve("aider").spec == "aider"


# ---------------------------------------------------------------------------------------------
# parsing recorded outputs


def parse(name: str, data: bytes, stderr: str = "", resume: str | None = None):
    return PRESETS[name].parse(data, stderr, resume)


def test_claude_result_gives_text_usage_cost_and_session():
    reply = parse("claude", recording("claude/print_json_local_stub.json"))
    assert reply.text.startswith("I read the code and ran nothing.\n\nCREW_READY_BEGIN\n")
    assert reply.usage == Usage(input_tokens=1234, output_tokens=56, cached_tokens=0, cost_usd=0.00757)
    assert reply.resume_ref == "196ac53b-caef-4206-a366-9b4e2a012adc"


def test_claude_usage_counts_cache_reads_and_writes_as_input_and_sums_every_model():
    reply = parse("claude", recording("claude/result_success_stream.json"))
    assert reply.text == "Here are the files in the current directory."
    # modelUsage: 38 fresh + 31159 cache writes + 28775 cache reads; 765 out
    assert reply.usage == Usage(input_tokens=59972, output_tokens=765, cached_tokens=28775, cost_usd=0.24722425)
    assert reply.resume_ref == "40e7b02d-c0f9-4876-9010-f514d4eb0603"


def test_claude_without_model_usage_falls_back_to_its_usage_block():
    reply = parse("claude", recording("claude/print_json_permission_denied.json"))
    assert reply.usage.input_tokens == 8 + 192 + 17004
    assert reply.usage.cached_tokens == 17004 and reply.usage.output_tokens == 32
    assert reply.usage.cost_usd == pytest.approx(0.34641975)
    assert reply.text.startswith("I need permission to edit")


def test_claude_error_result_is_a_brain_error_with_its_message():
    data = json.loads(recording("claude/print_json_local_stub.json"))
    data.update(is_error=True, subtype="error_during_execution", result="Overloaded · try again")
    with pytest.raises(BrainError, match="claude reported an error: Overloaded") as caught:
        parse("claude", json.dumps(data).encode())
    assert not isinstance(caught.value, BrainConfigError)  # transient: worth a retry


@pytest.mark.parametrize("said", ["Invalid API key · Fix external API key", "Not logged in · Please run /login"])
def test_claude_refusing_its_login_is_a_configuration_error_not_a_transient_one(said):
    data = json.loads(recording("claude/print_json_local_stub.json"))
    data.update(is_error=True, result=said)
    with pytest.raises(BrainConfigError, match="claude is not logged in or its key was refused"):
        parse("claude", json.dumps(data).encode())


def test_claude_recorded_not_logged_in_is_a_configuration_error_through_its_failure_path():
    said = PRESETS["claude"].failure(recording("claude/print_json_not_logged_in_2.1.197.json"), "")
    assert isinstance(said, BrainConfigError) and "Not logged in" in str(said)


def test_codex_events_give_the_last_agent_message_usage_and_thread_id():
    reply = parse("codex", recording("codex/exec_json_simple.jsonl"))
    assert reply.text == "4"
    assert reply.usage == Usage(input_tokens=2946, output_tokens=7, cached_tokens=0, cost_usd=None)
    # the thread id, plus the running totals the next (resumed) turn subtracts
    assert reply.resume_ref == "019a2d7a-41c4-78b1-b7cc-a45d62a89cd5#2946:0:7"


def test_codex_resumed_turn_counts_only_its_own_usage_not_the_threads_running_total():
    first = parse("codex", recording("codex/exec_json_local_stub.jsonl"))
    assert first.usage == Usage(input_tokens=1234, output_tokens=56, cached_tokens=1000)
    second = parse("codex", recording("codex/exec_resume_json_local_stub.jsonl"), resume=first.resume_ref)
    # codex printed 2468/2000/112 for the whole thread after one more 1234/1000/56 request
    assert second.usage == Usage(input_tokens=1234, output_tokens=56, cached_tokens=1000)
    assert second.resume_ref == "01a1fd41-069c-7be2-9878-4d4501f126d6#2468:2000:112"
    # only the thread id reaches codex's command line
    line = argv("codex", "lead", resume_ref=second.resume_ref)
    assert line[-2:] == ["01a1fd41-069c-7be2-9878-4d4501f126d6", "-"]


def test_codex_usage_below_the_previous_total_is_taken_as_this_turns_own():
    reply = parse("codex", recording("codex/exec_json_simple.jsonl"), resume="019a2d7a-41c4-78b1-b7cc-a45d62a89cd5#9000:0:900")
    assert reply.usage.input_tokens == 2946 and reply.usage.output_tokens == 7


def test_codex_cached_input_is_part_of_its_input_tokens():
    reply = parse("codex", recording("codex/exec_json_cached_usage.jsonl"))
    assert reply.text == "Done. I updated the docs and added examples."
    assert reply.usage == Usage(input_tokens=24763, output_tokens=122, cached_tokens=24448)


def test_codex_turn_failed_is_a_brain_error_with_codex_reason():
    with pytest.raises(BrainError, match="codex turn failed: model response stream ended unexpectedly"):
        parse("codex", recording("codex/exec_json_turn_failed.jsonl"))


def test_codex_stream_that_never_completes_is_a_brain_error_naming_the_last_error():
    with pytest.raises(BrainError) as caught:
        parse("codex", recording("codex/exec_json_offline_reconnecting.jsonl"))
    assert "no turn.completed" in str(caught.value) and "Reconnecting" in str(caught.value)


def test_gemini_json_gives_response_usage_and_session():
    reply = parse("gemini", recording("gemini/json_output_local_stub.json"))
    assert reply.text.endswith("CREW_READY_END")
    assert reply.usage == Usage(input_tokens=1234, output_tokens=56, cached_tokens=0)
    assert reply.resume_ref == "baabac09-4391-49f8-8c6e-5f2b00a8bae5"


def test_gemini_thoughts_count_as_output_and_an_old_version_without_session_keeps_none():
    reply = parse("gemini", recording("gemini/json_output_issue_0.6.1.json"))
    assert reply.text == "4"
    assert reply.usage == Usage(input_tokens=7173, output_tokens=17, cached_tokens=0)
    assert reply.resume_ref is None


def test_gemini_auth_error_on_stderr_is_a_brain_config_error():
    stderr = recording("gemini/json_error_no_auth_stderr.txt").decode()
    error = PRESETS["gemini"].failure(b"", stderr)
    assert isinstance(error, BrainConfigError)
    assert "Please set an Auth method" in str(error)


def test_opencode_events_give_the_last_messages_text_and_summed_usage_and_cost():
    reply = parse("opencode", recording("opencode/run_json_tool_then_text.jsonl"))
    assert reply.text == "fertig"
    assert reply.usage.input_tokens == 4215 + 4397
    assert reply.usage.output_tokens == 74 + 110 + 6
    assert reply.usage.cost_usd == pytest.approx(0.00074265 + 0.00066315)
    assert reply.resume_ref == "ses_f7a1cca5effeqTi40Z3Us6CDVK"


def test_opencode_single_step_reply_keeps_its_marker_lines_intact():
    reply = parse("opencode", recording("opencode/run_json_local_stub.jsonl"))
    assert "\nCREW_READY_BEGIN\n{\"summary\": \"tests pass\"}\nCREW_READY_END\n" in reply.text
    assert reply.usage == Usage(1234, 56, 0, 0.0)
    assert reply.resume_ref == "ses_e02c5c480ffeh1t21W6e5jKlLX"


def test_claude_at_its_usage_limit_is_usage_limited_until_the_time_it_names():
    said = json.dumps({"type": "result", "subtype": "success", "is_error": True, "result": "Claude AI usage limit reached|1767225600"})
    with pytest.raises(UsageLimited) as err:
        parse("claude", said.encode())
    assert err.value.resets_at == 1767225600.0 and "usage limit reached" in err.value.message


def test_claude_at_a_usage_limit_without_a_time_is_usage_limited_with_no_reset():
    said = json.dumps({"type": "result", "is_error": True, "result": "5-hour usage limit reached; try again later"})
    with pytest.raises(UsageLimited) as err:
        parse("claude", said.encode())
    assert err.value.resets_at is None


def test_opencode_rate_limit_error_event_is_usage_limited():
    with pytest.raises(UsageLimited, match="Rate limit exceeded"):
        parse("opencode", recording("opencode/run_json_error_rate_limit.jsonl"))


def test_aider_stdout_loses_its_banner_and_usage_lines_and_keeps_the_reply():
    reply = parse("aider", recording("aider/message_stdout_local_stub.txt"))
    assert "Aider v0.86.2" not in reply.text and "Tokens:" not in reply.text and "Repo-map" not in reply.text
    assert "I read the code and ran nothing." in reply.text
    assert "\nCREW_READY_BEGIN\n" in reply.text and "\nCREW_READY_END" in reply.text
    # aider shows rounded counts: "1.2k sent" is 1200
    assert reply.usage == Usage(input_tokens=1200, output_tokens=56, cached_tokens=0, cost_usd=0.00022)
    assert reply.resume_ref is None


def test_aider_token_line_with_cache_write_and_k_suffixes_is_read():
    reply = parse("aider", recording("aider/tokens_line_cache_write_issue_2274.txt"))
    assert reply.usage == Usage(input_tokens=216000, output_tokens=1400, cached_tokens=0, cost_usd=0.79)


def test_aider_output_without_a_usage_line_means_the_model_call_failed():
    with pytest.raises(BrainError, match="no 'Tokens:' line.*AuthenticationError"):
        parse("aider", b"Aider v0.86.2\nlitellm.AuthenticationError: bad key\n")


def test_llm_json_gives_response_usage_and_conversation_id():
    reply = parse("llm", recording("llm/prompt_json_echo.json"))
    assert json.loads(reply.text)["prompt"] == "What is 2+2?\n"
    assert reply.usage == Usage(input_tokens=3, output_tokens=14, cached_tokens=0, cost_usd=None)
    assert reply.resume_ref == "01m7ykgjhybd3kvygta242q1yr"


MALFORMED = [b"", b"not json at all", b'{"type": "result", "subtype": "success"', b"[1, 2]", b"\x00\xff\xfe"]


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("data", MALFORMED, ids=["empty", "text", "truncated", "array", "binary"])
def test_malformed_output_is_a_one_line_brain_error_not_a_crash(name, data):
    # (aider prints plain text: for it, "malformed" means no usage line was printed)
    with pytest.raises(BrainError) as caught:
        parse(name, data)
    assert "\n" not in str(caught.value)
    assert name in str(caught.value)


# ---------------------------------------------------------------------------------------------
# the real subprocess path, with stand-ins on PATH

STAND_IN = """\
#!{python}
import json, os, sys
want = json.loads({want!r})
if sys.argv[1:] != want["argv"]:
    sys.stderr.write("stand-in: unexpected argv %r\\n" % (sys.argv[1:],))
    sys.exit(97)
if want["prompt_via"] == "stdin":
    got = sys.stdin.read()
else:
    if sys.stdin.read() != "":
        sys.stderr.write("stand-in: stdin was not empty\\n"); sys.exit(98)
    got = open(sys.argv[sys.argv.index("--message-file") + 1], encoding="utf-8").read()
if got != want["prompt"]:
    sys.stderr.write("stand-in: prompt was %r\\n" % got); sys.exit(99)
for key, value in want["env"].items():
    if os.environ.get(key) != value:
        sys.stderr.write("stand-in: env %s=%r\\n" % (key, os.environ.get(key))); sys.exit(96)
sys.stdout.buffer.write(open(want["stdout"], "rb").read())
if want.get("stderr"):
    sys.stderr.buffer.write(open(want["stderr"], "rb").read())
sys.exit(want.get("exit", 0))
"""


def install_stand_in(bin_dir: Path, name: str, *, args: list[str], prompt: str, prompt_via: str,
                     stdout: str, env: dict | None = None, stderr: str | None = None, exit: int = 0) -> None:
    want = {
        "argv": args, "prompt": prompt, "prompt_via": prompt_via, "env": env or {},
        "stdout": _beside(bin_dir, stdout), "stderr": _beside(bin_dir, stderr) if stderr else None, "exit": exit,
    }
    path = bin_dir / name
    path.write_text(STAND_IN.format(python=sys.executable, want=json.dumps(want)))
    path.chmod(0o755)


def _beside(bin_dir: Path, recording_path: str) -> str:
    """A copy of the recording next to the stand-in: a sandboxed verifier sees no checkout under HOME."""
    source = RECORDINGS / recording_path
    copy = bin_dir / ("rec-" + str(recording_path).replace("/", "_"))
    copy.write_bytes(source.read_bytes())
    return str(copy)


# The stand-ins run once as before and once inside crewctl's sandbox, as every agent turn
# does under `crewctl run`: each preset's command line must still work there.
_SANDBOX: dict = {}


@pytest.fixture(params=["unsandboxed", "sandboxed"])
def sandboxed(request, tmp_path):
    _SANDBOX.clear()
    if request.param == "sandboxed":
        home = tmp_path / "crewctl-home"
        home.mkdir()
        _SANDBOX["box"] = Sandbox.from_config(Config(), str(home))
    yield request.param
    _SANDBOX.clear()


def request(tmp_path: Path, bin_dir: Path, role: str = "lead", resume_ref: str | None = None) -> TurnRequest:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
    box = _SANDBOX.get("box")
    policy = box.policy(role, str(work), kind=None, own_home=str(tmp_path)) if box is not None else None
    return TurnRequest(
        role=role, goal_id="g1", session_id="s1", turn=3,
        prompt="Make the tests pass.\nCriteria: c1 pytest passes.\n",
        workdir=str(work), env=env, timeout=60, resume_ref=resume_ref, sandbox=policy,
    )


@pytest.fixture
def bin_dir(tmp_path, sandboxed):
    path = tmp_path / "bin"
    path.mkdir()
    return path


def test_claude_stand_in_resumed_lead_turn_runs_through_the_real_subprocess_path(tmp_path, bin_dir):
    install_stand_in(
        bin_dir, "claude",
        args=["-p", "--output-format", "json", "--permission-mode", "acceptEdits", "--model", "sonnet", "--resume", "prev-1"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="claude/print_json_local_stub.json", env={"NO_COLOR": "1", "CREWCTL_ROLE": "lead"},
    )
    reply = preset_brain("claude", "sonnet", None).run(request(tmp_path, bin_dir, resume_ref="prev-1"))
    assert reply.resume_ref == "196ac53b-caef-4206-a366-9b4e2a012adc"
    assert reply.usage.cost_usd == 0.00757 and "CREW_READY_BEGIN" in reply.text


def test_codex_stand_in_verifier_turn_is_read_only_and_not_resumed(tmp_path, bin_dir):
    install_stand_in(
        bin_dir, "codex",
        args=["exec", "--json", "--sandbox", "read-only", "--skip-git-repo-check", "--ephemeral",
              "-c", 'web_search="disabled"', "-"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="codex/exec_json_simple.jsonl", env={"CREWCTL_ROLE": "verifier"},
    )
    reply = preset_brain("codex", None, None).run(request(tmp_path, bin_dir, role="verifier", resume_ref="old-thread"))
    assert reply.text == "4" and reply.usage.input_tokens == 2946


def test_gemini_stand_in_first_lead_turn_reads_the_prompt_from_stdin(tmp_path, bin_dir):
    install_stand_in(
        bin_dir, "gemini",
        args=["--output-format", "json", "--skip-trust", "--approval-mode", "auto_edit"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="gemini/json_output_local_stub.json", env={"CI": "true", "TERM": "dumb"},
    )
    reply = preset_brain("gemini", None, None).run(request(tmp_path, bin_dir))
    assert reply.resume_ref == "baabac09-4391-49f8-8c6e-5f2b00a8bae5"


def test_gemini_stand_in_exit_41_with_json_on_stderr_is_a_brain_config_error(tmp_path, bin_dir):
    install_stand_in(
        bin_dir, "gemini",
        args=["--output-format", "json", "--skip-trust", "--approval-mode", "plan"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="gemini/json_error_no_auth_stderr.txt", exit=41,
    )
    # the recording goes to stdout here; a second stand-in below sends it to stderr as gemini does
    with pytest.raises(BrainConfigError, match="Please set an Auth method"):
        preset_brain("gemini", None, None).run(request(tmp_path, bin_dir, role="verifier"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    install_stand_in(
        bin_dir, "gemini",
        args=["--output-format", "json", "--skip-trust", "--approval-mode", "plan"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout=str(empty), stderr="gemini/json_error_no_auth_stderr.txt", exit=41,
    )
    with pytest.raises(BrainConfigError, match="gemini reported Error: Please set an Auth method"):
        preset_brain("gemini", None, None).run(request(tmp_path, bin_dir, role="verifier"))


def test_opencode_stand_in_verifier_gets_the_deny_permissions_in_its_environment(tmp_path, bin_dir):
    deny = invocation(PRESETS["opencode"], "verifier").env["OPENCODE_PERMISSION"]
    install_stand_in(
        bin_dir, "opencode",
        args=["run", "--format", "json", "--model", "fake/m1"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="opencode/run_json_local_stub.jsonl", env={"OPENCODE_PERMISSION": deny},
    )
    reply = preset_brain("opencode", "fake/m1", None).run(request(tmp_path, bin_dir, role="verifier", resume_ref="ses_old"))
    assert reply.resume_ref == "ses_e02c5c480ffeh1t21W6e5jKlLX"


def test_aider_stand_in_reads_the_prompt_from_a_temp_file_outside_the_workspace(tmp_path, bin_dir):
    req = request(tmp_path, bin_dir)
    expected = argv("aider", "lead", prompt_file="PLACEHOLDER")[1:]
    # the file name is only known at run time: the stand-in checks everything else
    script = STAND_IN.replace(
        'if sys.argv[1:] != want["argv"]:',
        'if sys.argv[1:-1] != want["argv"][:-1] or os.path.dirname(sys.argv[-1]).startswith(os.getcwd()):',
    )
    want = {
        "argv": expected, "prompt": req.prompt, "prompt_via": "file", "env": {},
        "stdout": _beside(bin_dir, "aider/message_stdout_local_stub.txt"), "stderr": None, "exit": 0,
    }
    (bin_dir / "aider").write_text(script.format(python=sys.executable, want=json.dumps(want)))
    (bin_dir / "aider").chmod(0o755)
    reply = preset_brain("aider", None, None).run(req)
    assert reply.usage.cost_usd == 0.00022 and "CREW_READY_END" in reply.text
    assert os.listdir(req.workdir) == []  # nothing of crewctl's was left in the workspace


def test_llm_stand_in_resumed_turn_continues_the_conversation(tmp_path, bin_dir):
    install_stand_in(
        bin_dir, "llm",
        args=["prompt", "--json", "--log", "--model", "echo", "--cid", "01m7ykgjhybd3kvygta242q1yr"],
        prompt=request(tmp_path, bin_dir).prompt, prompt_via="stdin",
        stdout="llm/prompt_json_echo.json",
    )
    reply = preset_brain("llm", "echo", None).run(request(tmp_path, bin_dir, resume_ref="01m7ykgjhybd3kvygta242q1yr"))
    assert reply.resume_ref == "01m7ykgjhybd3kvygta242q1yr" and reply.usage.output_tokens == 14


def test_stand_in_that_rejects_its_argv_surfaces_as_a_failed_turn(tmp_path, bin_dir):
    install_stand_in(bin_dir, "claude", args=["--something-else"], prompt="", prompt_via="stdin",
                     stdout="claude/print_json_local_stub.json")
    with pytest.raises(BrainError, match="claude exited 97: stand-in: unexpected argv"):
        preset_brain("claude", None, None).run(request(tmp_path, bin_dir))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_tool_not_on_path_is_a_brain_config_error_that_says_how_to_fix_it(tmp_path, bin_dir, name):
    req = request(tmp_path, bin_dir)
    req = TurnRequest(**{**req.__dict__, "env": {"PATH": str(bin_dir)}})
    with pytest.raises(BrainConfigError) as caught:
        preset_brain(name, None, None).run(req)
    message = str(caught.value)
    assert message.startswith(f"{PRESETS[name].command[0]} not found on PATH; install ")
    assert f"or override [presets.{name}] command" in message


def test_codex_watch_stops_the_endless_reconnect_loop_in_codexs_own_words():
    from crewctl.brains.presets.codex import _codex_watch

    said = _codex_watch(recording("codex/exec_json_offline_waiting_for_network_0.171.jsonl"))
    assert said is not None and "Reconnecting... waiting for network (Connection failed" in said
    assert _codex_watch(recording("codex/exec_json_local_model_via_responses_shim_0.171.jsonl")) is None


def test_codex_verifier_home_gets_the_provider_entries_of_config_toml_and_nothing_else():
    import tomllib

    from crewctl.brains.presets import codex_provider_config

    text = codex_provider_config(
        'model = "m"\nmodel_provider = "local"\n[model_providers.local]\nbase_url = "http://127.0.0.1:1/v1"\n'
        'wire_api = "responses"\n[history]\npersistence = "save-all"\n[mcp_servers.w]\ncommand = "touch"\n'
    )
    assert tomllib.loads(text) == {"model": "m", "model_provider": "local",
                                   "model_providers": {"local": {"base_url": "http://127.0.0.1:1/v1", "wire_api": "responses"}}}
    assert codex_provider_config('[history]\npersistence = "none"\n') is None


def test_aider_verifier_reply_keeps_a_ready_line_whole():
    reply = parse("aider", recording("aider/message_stdout_verifier_no_git_read_0.86.2.txt"))
    assert '{"summary": "I said hello to the operator and wrote nothing else into the workspace, which is a long line"}' in reply.text
    assert "Added hello.py" not in reply.text and reply.usage.input_tokens == 206 and reply.usage.output_tokens == 53


def test_aider_verifier_is_given_the_snapshot_files_read_only(tmp_path):
    (tmp_path / "b.py").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("y")
    (tmp_path / ".aider.tags.cache.v4").mkdir()
    (tmp_path / ".aider.tags.cache.v4" / "c").write_text("z")
    line = invocation(PRESETS["aider"], "verifier", workdir=str(tmp_path), prompt_file="/tmp/p.md").argv
    assert "--no-git" in line
    reads = [line[i + 1] for i, a in enumerate(line) if a == "--read"]
    assert reads == ["b.py", os.path.join("sub", "a.txt")]
    assert "--read" not in invocation(PRESETS["aider"], "lead", workdir=str(tmp_path)).argv


def test_an_aider_reply_cut_at_the_output_limit_is_a_reply_counted_at_aiders_estimate():
    # Real aider 0.86.2 output (tests/data/recordings/README.md): no Tokens line, the reply,
    # then "has hit a token limit!" with its estimates and advice.
    reply = parse("aider", recording("aider/message_stdout_token_limit_0.86.2.txt"))
    assert reply.text == "I'm ready to help"
    assert reply.usage == Usage(input_tokens=445, output_tokens=5, cached_tokens=0, cost_usd=None)


def test_aiders_token_limit_advice_never_reaches_the_reply():
    stdout = (b"Aider v0.86.2\nCREW_READY_BEGIN\n{\"summary\": \"cut\nModel openai/m has hit a token limit!\n"
              b"Token counts below are approximate.\n\nInput tokens: ~10 of 0 -- possibly exhausted context window!\n"
              b"Output tokens: ~64 of 0 -- possibly exceeded output limit!\nCREW_READY_END\n")
    reply = parse("aider", stdout)
    assert "CREW_READY_END" not in reply.text and "approximate" not in reply.text
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (10, 64)
