"""Presets: agent CLIs people already use, driven through exec's `run_process`.

    claude[:MODEL]    Claude Code       claude -p --output-format json     prompt on stdin
    codex[:MODEL]     OpenAI Codex CLI  codex exec --json ... -            prompt on stdin
    gemini[:MODEL]    Gemini CLI        gemini --output-format json        prompt on stdin
    opencode[:MODEL]  opencode          opencode run --format json         prompt on stdin
    aider[:MODEL]     aider             aider ... --message-file FILE      prompt in a temp file
    llm[:MODEL]       Simon Willison's llm   llm prompt --json             prompt on stdin

Every preset runs its tool non-interactively with the tool's documented flags, as an argument
list (no shell), with stdin a pipe (never a TTY). `crewctl brains show NAME` prints the exact
command line for each role and where it came from.

Roles
-----
lead and worker turns may edit the workspace and resume the tool's own session: the
`resume_ref` of one turn's reply (claude's session_id, codex's thread_id, gemini's session_id,
opencode's sessionID, llm's conversation_id) comes back as `request.resume_ref` on the next.
A verifier turn NEVER resumes (its `resume_ref` is ignored) and is started with whatever
read-only switch the tool has; each preset's `verifier_isolation` says exactly what that is,
and where a tool has no such switch. Those switches are a second line of defence: the
verifier's isolation is by construction (a snapshot as its working directory, a scrubbed
environment), not by these flags.

Inside crewctl's sandbox
------------------------
Every turn of every preset runs inside crewctl's sandbox (crewctl.sandbox): the lead's and
workers' tools keep their own state and login under HOME writable (sandbox.CLI_STATE), the
verifier's get a fresh HOME with only their credentials file. The tools' own sandboxes:
- codex keeps its own (`--sandbox read-only` / `workspace-write`): on Linux it is Landlock
  plus seccomp, which need no new namespaces and so stack inside bubblewrap's;
- gemini's `--sandbox` runs the tool in docker or podman, which a sandboxed turn cannot
  reach: it stays off (crewctl's sandbox is the OS boundary; `--approval-mode plan` the
  verifier's read-only switch);
- claude, opencode, aider and llm have no OS sandbox of their own to nest or switch off;
  their permission flags below still apply.

Usage
-----
`Usage.input_tokens` counts every prompt token the model processed, cached ones included;
`cached_tokens` is the part of it read from a cache; `output_tokens` includes reasoning or
"thought" tokens where the tool reports them apart. `cost_usd` is only set where the tool
reports a cost (claude, opencode, aider); crewctl never guesses prices.

Config
------
    [presets.claude]
    command = ["npx", "@anthropic-ai/claude-code", "-p", "--output-format", "json"]
                                  # argv prefix replacing the built-in base command (the part
                                  # `brains show` labels "base"); a string is split like a shell
    model = "sonnet"              # default model when the spec names none (claude:MODEL wins)
    args = ["--max-turns", "40"]  # extra arguments for lead and worker turns
    verifier_args = []            # extra arguments for verifier turns (added after, never
                                  # instead of, the read-only switches)
    env = { CLAUDE_CODE_MAX_OUTPUT_TOKENS = "32000" }   # extra environment for every turn

Flags were checked against the tools' own `--help` (claude 2.1.197, codex-cli 0.169.0,
gemini 0.61.0, opencode 1.18.33, aider 0.86.2, llm 0.36) and their docs; see
tests/data/recordings/README.md for where each recorded output came from. Proven by real runs
against the local model (tests/e2e/test_real_aider_codex.py): aider 0.86.2 as lead and
verifier; codex-cli 0.171.0 as lead (resumed) and verifier, through a Responses shim.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..exceptions import BrainConfigError, BrainError, ConfigError, UsageLimited
from ..goal import markers
from .base import TurnReply, TurnRequest, Usage
from .exec import ProcessResult, check_exit, run_process

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "PRESETS",
    "Invocation",
    "Preset",
    "PresetBrain",
    "PresetSettings",
    "invocation",
    "preset_brain",
    "preset_settings",
]

ROLES = ("lead", "worker", "verifier", "reflector")
# The reflector (one turn after sign-off, docs/contracts.md, "Durable outputs") runs as the verifier
# does: read-only where the tool allows, never resumed.
_AS_VERIFIER = frozenset({"verifier", "reflector"})
# Placeholders `brains show` prints where a real turn has a value.
SESSION_PLACEHOLDER = "<session>"
PROMPT_FILE_PLACEHOLDER = "<prompt-file>"

# For every preset: no colours, no pager, no terminal tricks. Tools that ignore these lose nothing.
_QUIET_ENV = {"NO_COLOR": "1", "TERM": "dumb"}
_SETTING_KEYS = ("command", "model", "args", "verifier_args", "env")


@dataclass(frozen=True)
class Invocation:
    """One turn's command line: what `run_process` gets, and what `brains show` prints."""

    argv: list[str]
    env: dict[str, str]  # added to the role's environment
    prompt_via: str  # "stdin" or "file" (the prompt file's path is in argv)
    resumed: bool  # whether this turn continues the tool's own session


@dataclass(frozen=True)
class PresetSettings:
    """`[presets.NAME]` from the config, validated."""

    command: tuple[str, ...] | None = None
    model: str | None = None
    args: tuple[str, ...] = ()
    verifier_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None  # the config file that set `command`, if any


# A role-args builder gets (role, model, resume_ref or None, extra args, prompt file or None)
# and returns the arguments that follow the base command.
ArgsBuilder = Callable[[str, "str | None", "str | None", Sequence[str], "str | None"], list[str]]
# A parser gets (stdout bytes, stderr tail, the resume_ref passed in) and returns the reply.
Parser = Callable[[bytes, str, "str | None"], TurnReply]
# A failure reader gets stdout and the stderr tail of a non-zero exit and returns the tool's own
# error, if it said one.
FailureReader = Callable[[bytes, str], "BrainError | None"]


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    command: tuple[str, ...]  # the built-in base command (argv prefix)
    install: str  # how to get it, for "not found on PATH"
    docs: str  # where its non-interactive mode is documented
    prompt_via: str  # "stdin" or "file"
    resumes: bool
    parses: str  # what is read from where, one line, for `brains show`
    verifier_isolation: str  # what keeps a verifier turn read-only, honestly
    build_args: ArgsBuilder = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    parse: Parser = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    failure: FailureReader = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    # Reads stdout while the tool runs; a message means it will never finish: stop it now.
    watch: Callable[[bytes], "str | None"] | None = field(repr=False, compare=False, default=None)
    env: Mapping[str, str] = field(default_factory=dict)
    verifier_env: Mapping[str, str] = field(default_factory=dict)
    # (role, the turn's working directory or None for `brains show`) -> arguments that depend on
    # what is in that directory, put before the prompt arguments.
    context_args: Callable[[str, "str | None"], list[str]] | None = field(repr=False, compare=False, default=None)


# ---------------------------------------------------------------------------------------------
# shared parsing helpers


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _cost(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _decode(stdout: bytes) -> str:
    return stdout.decode("utf-8", errors="replace")


def _json_object(stdout: bytes, tool: str) -> dict:
    """The tool's single JSON object. A stray line before it (a warning some tools print to
    stdout) is tolerated by falling back to the last line that is a JSON object."""
    text = _decode(stdout).strip()
    if not text:
        raise BrainError(f"{tool} printed nothing on stdout (expected its JSON result)")
    try:
        data = json.loads(text)
    except ValueError:
        data = _embedded_json(text)
        if data is None:
            raise BrainError(f"{tool} output is not JSON: {_one_line(text, 120)}") from None
    if not isinstance(data, dict):
        raise BrainError(f"{tool} output is JSON but not an object")
    return data


def _embedded_json(text: str) -> Any:
    """A JSON object that starts at the beginning of a line and runs to the end of the text
    (gemini prints warnings, then its pretty-printed error object, on stderr)."""
    decoder = json.JSONDecoder()
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                value, end = decoder.raw_decode(text, offset)
            except ValueError:
                value, end = None, offset
            if value is not None and not text[end:].strip():
                return value
        offset += len(line)
    return None


def _json_lines(stdout: bytes, tool: str) -> list[dict]:
    """JSONL events; lines that are not JSON objects are skipped (progress noise)."""
    events = []
    for line in _decode(stdout).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    if not events:
        text = _decode(stdout).strip()
        why = f": {_one_line(text, 120)}" if text else " (stdout was empty)"
        raise BrainError(f"{tool} printed no JSON events{why}")
    return events


def _model_flag(flag: str, model: str | None) -> list[str]:
    return [flag, model] if model else []


# ---------------------------------------------------------------------------------------------
# claude: Claude Code
#
# `claude -p --output-format json` reads the prompt from stdin when none is given as an argument
# and prints ONE result object when the run ends: {"type": "result", "subtype": "success",
# "is_error": false, "result": TEXT, "session_id": UUID, "total_cost_usd": X, "usage": {...},
# "modelUsage": {MODEL: {...}}, ...}. `--resume ID` continues that session.

_CLAUDE_VERIFIER_TOOLS = "Read,Grep,Glob"
_CLAUDE_DENIED = "Bash,Edit,Write,NotebookEdit,WebFetch,WebSearch"


def _claude_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    if role == "verifier":
        args = [
            # dontAsk: anything not pre-approved is denied without asking (no TTY to ask on).
            "--permission-mode", "dontAsk",
            # --tools limits the built-in tool set itself; --disallowedTools is belt and braces
            # for the write, shell and network tools; --strict-mcp-config with no --mcp-config
            # loads no MCP servers (the user's servers may write or reach the network).
            "--tools", _CLAUDE_VERIFIER_TOOLS,
            "--disallowedTools", _CLAUDE_DENIED,
            "--strict-mcp-config",
            # It is never resumed, so nothing is kept.
            "--no-session-persistence",
        ]
    else:
        # acceptEdits: file edits go through without a prompt; shell commands that are not
        # read-only are denied in print mode unless the operator allows them
        # (args = ["--allowedTools", "Bash(pytest *)"], or "--dangerously-skip-permissions").
        args = ["--permission-mode", "acceptEdits"]
    args += _model_flag("--model", model)
    if resume:
        args += ["--resume", resume]
    return args + list(extra)


def _claude_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    data = _json_object(stdout, "claude")
    error = _claude_error(data)
    if error:
        raise error
    if data.get("type") != "result":
        raise BrainError(f"claude output is not a result object (type={data.get('type')!r})")
    text = data.get("result")
    if not isinstance(text, str):
        raise BrainError("claude result object has no text in 'result'")
    usage = _claude_usage(data)
    session = data.get("session_id")
    return TurnReply(text=text, usage=usage, resume_ref=session if isinstance(session, str) and session else resume)


def _claude_usage(data: dict) -> Usage:
    # modelUsage (per model, camelCase) covers every model the run used (side calls included);
    # `usage` (snake_case) is what older versions print. Prefer the former when present.
    per_model = data.get("modelUsage")
    if isinstance(per_model, dict) and per_model and all(isinstance(v, dict) for v in per_model.values()):
        fresh = sum(_count(m.get("inputTokens")) for m in per_model.values())
        created = sum(_count(m.get("cacheCreationInputTokens")) for m in per_model.values())
        read = sum(_count(m.get("cacheReadInputTokens")) for m in per_model.values())
        out = sum(_count(m.get("outputTokens")) for m in per_model.values())
    else:
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        fresh = _count(usage.get("input_tokens"))
        created = _count(usage.get("cache_creation_input_tokens"))
        read = _count(usage.get("cache_read_input_tokens"))
        out = _count(usage.get("output_tokens"))
    # Anthropic counts cache reads and writes apart from input_tokens; crewctl's input_tokens is
    # everything the model read.
    cost = _cost(data.get("total_cost_usd"))
    if cost is None:
        cost = _cost(data.get("cost_usd"))  # the name older versions used
    return Usage(input_tokens=fresh + created + read, output_tokens=out, cached_tokens=read, cost_usd=cost)


# Claude Code's answer when the account's usage limit is reached: "Claude AI usage limit
# reached|1767225600" (the epoch second it resets), in `result` with is_error true.
_CLAUDE_LIMIT = re.compile(r"usage limit reached\|(\d{9,11})\b", re.IGNORECASE)


def _claude_error(data: dict) -> BrainError | None:
    if data.get("is_error") is True or (data.get("type") == "result" and data.get("subtype") not in (None, "success")):
        said = str(data.get("result") or data.get("subtype") or "an error")
        limit = _CLAUDE_LIMIT.search(said)
        if limit:
            return UsageLimited(f"claude: usage limit reached (resets at epoch {limit.group(1)})", resets_at=float(limit.group(1)))
        if "usage limit" in said.lower() or "rate limit" in said.lower():
            return UsageLimited(f"claude reported: {_one_line(said)}")
        return BrainError(f"claude reported an error: {_one_line(said)}")
    return None


def _claude_failure(stdout: bytes, _stderr: str) -> BrainError | None:
    try:
        data = _json_object(stdout, "claude")
    except BrainError:
        return None
    return _claude_error(data)


# ---------------------------------------------------------------------------------------------
# codex: OpenAI Codex CLI
#
# `codex exec --json -` reads the prompt from stdin ("-") and prints JSONL events:
# {"type":"thread.started","thread_id":ID}, {"type":"turn.started"},
# {"type":"item.completed","item":{"type":"agent_message","text":...}},
# {"type":"turn.completed","usage":{"input_tokens":n,"cached_input_tokens":n,"output_tokens":n}}
# or {"type":"turn.failed","error":{"message":...}}. Top-level {"type":"error"} lines can be
# transient ("Reconnecting... 1/5"), so only a missing turn.completed makes them fatal.
# `codex exec resume ID -` continues a thread; resume takes no --sandbox flag, so the policy is
# given as the config override `-c sandbox_mode=...`, which both subcommands accept.
# Codex reports no cost.


def _codex_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    common = ["--skip-git-repo-check"]  # a verifier snapshot may be a plain copy, not a repo
    if role == "verifier":
        # read-only sandbox: commands may read, not write; the network is off in codex's
        # sandboxes. web_search="disabled" takes away the web_search tool codex 0.169 otherwise
        # offers even in read-only mode (both observed against a local stub server).
        # --ephemeral: the session is never resumed, so it is not written to disk.
        args = ["--json", "--sandbox", "read-only", *common, "--ephemeral", "-c", 'web_search="disabled"']
        return args + _model_flag("-m", model) + list(extra) + ["-"]
    if resume:
        args = ["resume", "--json", "-c", 'sandbox_mode="workspace-write"', *common]
        return args + _model_flag("-m", model) + list(extra) + [_codex_thread(resume), "-"]
    args = ["--json", "--sandbox", "workspace-write", *common]
    return args + _model_flag("-m", model) + list(extra) + ["-"]


# codex-cli 0.169's `exec resume` reports the thread's running total in turn.completed, not the
# turn's own usage (observed against a local stub: the first turn 1234/56, the resumed turn
# 2468/112 for one more request of 1234/56). So the resume_ref codex gets back is
# "THREAD_ID#input:cached:output", the totals so far, and the next turn subtracts them. Only the
# thread id reaches codex's argv. If a version reports per-turn usage instead (a count below
# the previous total), the counts are taken as they are.


def _codex_thread(resume_ref: str) -> str:
    return resume_ref.split("#", 1)[0]


def _codex_totals(resume_ref: str | None) -> tuple[int, int, int] | None:
    if not resume_ref or "#" not in resume_ref:
        return None
    try:
        fresh, cached, out = (int(n) for n in resume_ref.split("#", 1)[1].split(":"))
    except ValueError:
        return None
    return fresh, cached, out


def _codex_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    reply = _codex_parse_thread(stdout, resume)
    reported = reply.usage
    totals = (reported.input_tokens, reported.cached_tokens, reported.output_tokens)
    before = _codex_totals(resume)
    usage = reported
    if before and all(now >= then for now, then in zip(totals, before)):
        usage = Usage(totals[0] - before[0], totals[2] - before[2], totals[1] - before[1])
    thread = reply.resume_ref
    return TurnReply(text=reply.text, usage=usage, resume_ref=f"{thread}#{totals[0]}:{totals[1]}:{totals[2]}" if thread else None)


def _codex_parse_thread(stdout: bytes, resume: str | None) -> TurnReply:
    events = _json_lines(stdout, "codex")
    thread = None
    text = None
    usage = Usage()
    completed = False
    errors: list[str] = []
    for event in events:
        kind = event.get("type")
        if kind in ("thread.started", "thread.resumed") and isinstance(event.get("thread_id"), str):
            thread = event["thread_id"]
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            item = event["item"]
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                text = item["text"]  # the last agent message is the turn's answer
        elif kind == "turn.completed":
            completed = True
            u = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            # OpenAI semantics: input_tokens already includes cached_input_tokens.
            usage = usage + Usage(
                input_tokens=_count(u.get("input_tokens")),
                output_tokens=_count(u.get("output_tokens")),
                cached_tokens=_count(u.get("cached_input_tokens")),
            )
        elif kind == "turn.failed":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            raise _limited_or_error(f"codex turn failed: {_one_line(error.get('message') or 'no reason given')}")
        elif kind == "error":
            errors.append(str(event.get("message") or ""))
    if not completed:
        why = f"; last error: {_one_line(errors[-1])}" if errors else ""
        raise BrainError(f"codex output has no turn.completed event{why}")
    if text is None:
        raise BrainError("codex completed the turn without an agent_message")
    return TurnReply(text=text, usage=usage, resume_ref=thread or (_codex_thread(resume) if resume else None))


def _codex_failure(stdout: bytes, _stderr: str) -> BrainError | None:
    try:
        events = _json_lines(stdout, "codex")
    except BrainError:
        return None
    for event in events:
        if event.get("type") == "turn.failed" and isinstance(event.get("error"), dict):
            return _limited_or_error(f"codex turn failed: {_one_line(event['error'].get('message') or 'no reason given')}")
    for event in reversed(events):
        if event.get("type") == "error" and event.get("message"):
            return _limited_or_error(f"codex: {_one_line(event['message'])}")
    return None


# What a verifier's fresh HOME gets of the operator's $CODEX_HOME/config.toml: the entries that
# choose the provider and the model, never sessions, history, MCP servers, projects' trust or
# anything else. Without them codex 0.171 goes to its default OpenAI provider (it ignores
# OPENAI_BASE_URL) and, offline, loops "Reconnecting... waiting for network" forever.
CODEX_PROVIDER_KEYS = ("model", "model_provider", "model_providers", "model_reasoning_effort", "model_context_window")


def codex_provider_config(text: str) -> str | None:
    """The provider entries of a codex config.toml as TOML text; None if it names none."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return None
    kept = {k: data[k] for k in CODEX_PROVIDER_KEYS if k in data}
    if not kept:
        return None
    return _toml(kept)


def _toml(table: dict, prefix: str = "") -> str:
    plain = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
    nested = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in plain]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, sub in nested:
        name = f"{prefix}.{json.dumps(key)}" if prefix else json.dumps(key)
        if any(not isinstance(v, dict) for v in sub.values()) or not sub:
            out += f"\n[{name}]\n"
        out += _toml(sub, name)
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


# codex 0.171, when its provider cannot be reached at all (no route, connection refused, a
# default provider offline), prints {"type":"error","message":"Reconnecting... waiting for
# network (Connection failed: ...)"} every ~20 s and never exits (observed for 2 minutes).
_CODEX_NO_NETWORK = "Reconnecting... waiting for network"


def _codex_watch(stdout: bytes) -> str | None:
    for line in reversed(_decode(stdout).splitlines()):
        if _CODEX_NO_NETWORK in line:
            try:
                said = json.loads(line).get("message") or line
            except (ValueError, AttributeError):
                said = line
            return f"codex cannot reach its model provider and would wait forever: {_one_line(said)}"
    return None


def _limited_or_error(message: str) -> BrainError:
    lowered = message.lower()
    if "rate limit" in lowered or "usage limit" in lowered or " 429" in lowered:
        return UsageLimited(message)
    return BrainError(message)


# ---------------------------------------------------------------------------------------------
# gemini: Gemini CLI
#
# With stdin not a TTY, gemini runs headless and reads the prompt from stdin (documented in its
# headless guide: `echo "Summarize this" | gemini`). `--output-format json` prints ONE object:
# {"session_id": ID, "response": TEXT, "stats": {"models": {MODEL: {"tokens": {"prompt",
# "candidates", "cached", "thoughts", "tool", ...}}}, ...}, "error"?: {"type","message","code"}}.
# session_id is printed by recent versions (0.6.x printed none: then every turn starts fresh).
# `--resume ID` takes the session UUID. Gemini reports no cost.


def _gemini_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    # --skip-trust: gemini 0.61 refuses to run headless in a folder it does not trust (exit 55)
    # and overrides any approval mode to "default" there. Trusting the folder also loads its
    # .gemini/ project settings; for a verifier that folder is the snapshot of the lead's work.
    if role == "verifier":
        # plan: gemini's documented read-only approval mode. Honestly: the model is still offered
        # write_file/replace (gemini's policy confines them to its own plans directory) and
        # google_web_search; no shell tool and no web_fetch (observed against a local stub
        # server). It is not an OS sandbox: `--sandbox` needs docker/podman, so it is left to
        # the operator (verifier_args = ["--sandbox"]).
        args = ["--skip-trust", "--approval-mode", "plan"]
    else:
        # auto_edit: edits are approved; shell commands are not offered headless (no one to
        # ask), unless the operator adds args = ["--approval-mode", "yolo"] or a policy file.
        args = ["--skip-trust", "--approval-mode", "auto_edit"]
    args += _model_flag("--model", model)
    if resume:
        args += ["--resume", resume]
    return args + list(extra)


def _gemini_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    data = _json_object(stdout, "gemini")
    error = _gemini_error(data)
    if error:
        raise error
    text = data.get("response")
    if not isinstance(text, str):
        raise BrainError("gemini JSON has no 'response' text")
    fresh = cached = out = 0
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
    for entry in models.values():
        tokens = entry.get("tokens") if isinstance(entry, dict) and isinstance(entry.get("tokens"), dict) else {}
        # prompt includes cached; tool-use prompt tokens are counted apart; thoughts are output.
        fresh += _count(tokens.get("prompt")) + _count(tokens.get("tool"))
        cached += _count(tokens.get("cached"))
        out += _count(tokens.get("candidates")) + _count(tokens.get("thoughts"))
    session = data.get("session_id")
    return TurnReply(
        text=text,
        usage=Usage(input_tokens=fresh, output_tokens=out, cached_tokens=cached),
        resume_ref=session if isinstance(session, str) and session else resume,
    )


def _gemini_error(data: dict) -> BrainError | None:
    error = data.get("error")
    if not isinstance(error, dict):
        return None
    message = f"gemini reported {error.get('type') or 'an error'}: {_one_line(error.get('message') or '')}"
    code = error.get("code")
    if code == 429 or str(code) == "429":
        return UsageLimited(message)
    if error.get("type") in ("FatalAuthenticationError", "AuthError") or code == 41:
        return BrainConfigError(message)
    return BrainError(message)


def _gemini_failure(stdout: bytes, stderr: str) -> BrainError | None:
    # gemini 0.61 prints its JSON error object on stderr (after any warnings), not stdout.
    for stream in (stdout, stderr.encode("utf-8")):
        try:
            data = _json_object(stream, "gemini")
        except BrainError:
            continue
        error = _gemini_error(data)
        if error is not None:
            return error
    return None


# ---------------------------------------------------------------------------------------------
# opencode
#
# `opencode run --format json` reads the message from stdin when none is given as arguments and
# prints JSONL events, each with "sessionID": step_start, text (part.text), tool_use,
# step_finish (part.tokens {input, output, reasoning, cache {read, write}}, part.cost), error
# (error.name, error.data.message). `--session ID` continues a session.


# opencode reads this environment variable as JSON and merges it into its `permission` config
# after every config file (checked in the 1.18.33 binary's config loader; with it, the model is
# offered no bash, edit, write, webfetch or task tool — observed against a local stub server).
_OPENCODE_VERIFIER_PERMISSION = json.dumps(
    {
        "edit": "deny",
        "bash": "deny",
        "webfetch": "deny",
        "websearch": "deny",
        "codesearch": "deny",
        "task": "deny",
        "external_directory": "deny",
    },
    separators=(",", ":"),
)


def _opencode_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    args = _model_flag("--model", model)
    if resume and role != "verifier":
        args += ["--session", resume]
    return args + list(extra)


def _opencode_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    events = _json_lines(stdout, "opencode")
    session = None
    texts: dict[str, list[str]] = {}
    order: list[str] = []
    usage = Usage()
    costs: list[float] = []
    for event in events:
        if isinstance(event.get("sessionID"), str) and session is None:
            session = event["sessionID"]
        kind = event.get("type")
        part = event.get("part") if isinstance(event.get("part"), dict) else {}
        if kind == "error":
            raise _opencode_error(event)
        if kind == "text" and isinstance(part.get("text"), str):
            message = str(part.get("messageID") or "")
            if message not in texts:
                texts[message] = []
                order.append(message)
            texts[message].append(part["text"])
        elif kind == "step_finish":
            tokens = part.get("tokens") if isinstance(part.get("tokens"), dict) else {}
            cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
            read = _count(cache.get("read"))
            usage = usage + Usage(
                input_tokens=_count(tokens.get("input")) + read + _count(cache.get("write")),
                output_tokens=_count(tokens.get("output")) + _count(tokens.get("reasoning")),
                cached_tokens=read,
            )
            cost = _cost(part.get("cost"))
            if cost is not None:
                costs.append(cost)
    if not order:
        raise BrainError("opencode printed no text event")
    # The answer is the text of the last assistant message; earlier steps' text is narration
    # around tool calls.
    text = "".join(texts[order[-1]])
    if costs:
        usage = Usage(usage.input_tokens, usage.output_tokens, usage.cached_tokens, sum(costs))
    return TurnReply(text=text, usage=usage, resume_ref=session or resume)


def _opencode_error(event: dict) -> BrainError:
    error = event.get("error") if isinstance(event.get("error"), dict) else {}
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    message = f"opencode reported {error.get('name') or 'an error'}: {_one_line(data.get('message') or '')}"
    if data.get("statusCode") == 429:
        return UsageLimited(message)
    if data.get("statusCode") in (401, 403):
        return BrainConfigError(message)
    return BrainError(message)


def _opencode_failure(stdout: bytes, _stderr: str) -> BrainError | None:
    try:
        events = _json_lines(stdout, "opencode")
    except BrainError:
        return None
    for event in events:
        if event.get("type") == "error":
            return _opencode_error(event)
    return None


# ---------------------------------------------------------------------------------------------
# aider
#
# aider has no JSON output and no session id. `--message-file FILE` runs one message and exits;
# stdout is its transcript: a start-up banner ("Aider v…", "Model: …", "Git repo: …",
# "Repo-map: …"), the model's reply, then after each model call a line
# "Tokens: 1.2k sent[, N cache write][, N cache hit], 56 received." followed (same line or next)
# by "Cost: $0.00022 message, $0.00022 session." when aider knows the model's prices.
# What is parsed, honestly: the reply is stdout with those known banner and usage lines taken
# out (a heuristic; aider's own confirmations and edit notices stay in); token counts are
# aider's rounded display ("1.2k" = 1200), summed over every Tokens line; the cost is the last
# "session" figure (this process's total). Each turn starts a fresh chat: the chat and input
# history files go to the null device so nothing is written into the workspace for them.


def _aider_args(role: str, model: str | None, _resume: str | None, extra: Sequence[str], prompt_file: str | None) -> list[str]:
    args = [
        "--no-pretty", "--no-stream", "--no-fancy-input",
        "--yes-always",  # stdin is empty: every confirmation must be answered by a flag
        "--no-check-update", "--no-show-release-notes", "--no-analytics", "--no-show-model-warnings",
        "--no-gitignore",  # do not add .aider* to the workspace's .gitignore
        # The operator's branch is not crewctl's to commit to: neither aider's edits nor the
        # "dirty" files it would commit before editing them (aider 0.86.2 does that even
        # with --no-auto-commits unless told --no-dirty-commits).
        "--no-auto-commits", "--no-dirty-commits",
        # The repo map writes its tags cache (.aider.tags.cache.v4/) into the workspace root,
        # with no flag to move it; that directory then travels into every snapshot. 0 turns
        # the map (and the cache) off.
        "--map-tokens", "0",
        "--input-history-file", os.devnull, "--chat-history-file", os.devnull,
    ]
    if role == "verifier":
        # ask mode answers questions without editing; --dry-run refuses to write files even if
        # asked; no lint/test runs, no shell-command suggestions, no URL fetching. --no-git: in
        # a snapshot (a plain copy) aider 0.86.2 would `git init` it and then see 0 files; the
        # snapshot's files are given to it read-only instead (`_aider_context`). aider itself
        # has no network switch beyond --no-detect-urls.
        args += ["--chat-mode", "ask", "--dry-run", "--no-git", "--no-auto-lint", "--no-auto-test",
                 "--no-suggest-shell-commands", "--no-detect-urls"]
    args += _model_flag("--model", model)
    args += list(extra)
    return args + ["--message-file", prompt_file or PROMPT_FILE_PLACEHOLDER]


# The verifier's snapshot, shown to aider as read-only chat files (--read), since with --no-git
# it sees no file it is not given. Bounded: a snapshot past these caps is shown in part, in
# sorted order, and the rest is named in none of aider's arguments (aider's own limit is the
# model's context window, which a whole repository would overflow anyway).
AIDER_READ_FILES = 200
AIDER_READ_BYTES = 512 * 1024
SNAPSHOT_FILES_PLACEHOLDER = "<snapshot files>"


def _aider_context(role: str, workdir: str | None) -> list[str]:
    if role != "verifier":
        return []
    if workdir is None:
        return ["--read", SNAPSHOT_FILES_PLACEHOLDER]
    args: list[str] = []
    total = 0
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if d != ".git" and not d.startswith(".aider"))
        for name in sorted(files):
            if name.startswith(".aider"):
                continue
            path = os.path.join(root, name)
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            if len(args) // 2 >= AIDER_READ_FILES or total + size > AIDER_READ_BYTES:
                return args
            total += size
            args += ["--read", os.path.relpath(path, workdir)]
    return args


_AIDER_TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.]+[kM]?) sent"
    r"(?:, (?P<write>[\d.]+[kM]?) cache write)?"
    r"(?:, (?P<hit>[\d.]+[kM]?) cache hit)?"
    r", (?P<received>[\d.]+[kM]?) received\."
)
_AIDER_COST = re.compile(r"Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.")
_AIDER_CHROME = re.compile(
    r"^(Aider v\d"
    r"|(Main |Weak |Editor )?[Mm]odel: "
    r"|Git repo: |Repo-map: |Tokens: |Cost: \$"
    r"|Update git (name|email) with: "
    r"|Added .+ to the chat( \(read-only\))?\.?$"  # the verifier's --read files say read-only
    r"|HTTPSConnectionPool\(host='raw\.githubusercontent\.com'"  # litellm's price-list fetch, offline
    r")"
)


def _aider_number(text: str | None) -> int:
    if not text:
        return 0
    scale = 1000 if text.endswith("k") else 1_000_000 if text.endswith("M") else 1
    try:
        return int(round(float(text.rstrip("kM")) * scale))
    except ValueError:
        return 0


def _aider_parse(stdout: bytes, _stderr: str, _resume: str | None) -> TurnReply:
    text = _decode(stdout)
    sent = received = hit = 0
    seen_tokens = False
    cost = None
    kept: list[str] = []
    for line in text.splitlines():
        tokens = _AIDER_TOKENS.match(line.strip())
        if tokens:
            seen_tokens = True
            sent += _aider_number(tokens["sent"])
            hit += _aider_number(tokens["hit"])
            received += _aider_number(tokens["received"])
        priced = _AIDER_COST.search(line)
        if priced:
            cost = _cost(float(priced["session"]))
        if _AIDER_CHROME.match(line.strip()):
            continue
        kept.append(line)
    reply = "\n".join(kept).strip("\n")
    if not seen_tokens:
        # aider prints model errors (auth, unknown model) to stdout and may still exit 0; a run
        # without a usage line made no successful model call.
        last = next((line for line in reversed(kept) if line.strip()), "no output")
        raise BrainError(f"aider printed no 'Tokens:' line, so no model call succeeded: {_one_line(last, 200)}")
    return TurnReply(text=reply, usage=Usage(input_tokens=sent, output_tokens=received, cached_tokens=hit, cost_usd=cost))


# ---------------------------------------------------------------------------------------------
# llm: Simon Willison's llm
#
# `llm prompt --json` (llm 0.36) reads the prompt from stdin when no argument is given and
# prints the logged response rows as a JSON array, the same shape as `llm logs --json`:
# [{"response": TEXT, "conversation_id": ID, "input_tokens": n, "output_tokens": n,
#   "token_details": {...} | null, ...}]. `--cid ID` continues a conversation; `--log` makes sure
# it is logged (a user may have run `llm logs off`), or the next turn could not continue it.
# Older llm without --json fails with its own "No such option" message. llm reports no cost.
# (`--usage` would print "Token usage: 3 input, 14 output" on stderr instead; --json carries the
# same counts, so it is not used.)


def _llm_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    if role == "verifier":
        # llm offers the model no tools unless -T/--functions name some, so a verifier turn has
        # no write or network tools by construction; --no-log: it is never continued.
        args = ["--json", "--no-log"]
    else:
        args = ["--json", "--log"]
    args += _model_flag("--model", model)
    if resume and role != "verifier":
        args += ["--cid", resume]
    return args + list(extra)


def _llm_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    text = _decode(stdout).strip()
    try:
        rows = json.loads(text)
    except ValueError:
        raise BrainError(f"llm output is not JSON: {_one_line(text or '(empty)', 120)}") from None
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise BrainError("llm JSON is not a list of response rows")
    last = rows[-1]
    if not isinstance(last.get("response"), str):
        raise BrainError("llm JSON row has no 'response' text")
    usage = Usage()
    for row in rows:
        details = row.get("token_details") if isinstance(row.get("token_details"), dict) else {}
        prompt_details = details.get("prompt_tokens_details") if isinstance(details.get("prompt_tokens_details"), dict) else {}
        # Plugins put cache counts in token_details in their provider's words.
        cached = _count(prompt_details.get("cached_tokens")) + _count(details.get("cache_read_input_tokens"))
        usage = usage + Usage(_count(row.get("input_tokens")), _count(row.get("output_tokens")), cached)
    conversation = last.get("conversation_id")
    return TurnReply(
        text=last["response"],
        usage=usage,
        resume_ref=conversation if isinstance(conversation, str) and conversation else resume,
    )


def _no_failure(_stdout: bytes, _stderr: str) -> BrainError | None:
    return None


# ---------------------------------------------------------------------------------------------

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="claude",
            title="Claude Code",
            command=("claude", "-p", "--output-format", "json"),
            install="Claude Code (npm install -g @anthropic-ai/claude-code)",
            docs="https://docs.claude.com/en/docs/claude-code/headless",
            prompt_via="stdin",
            resumes=True,
            parses="one JSON result: text from result, usage from modelUsage (else usage), cost from "
            "total_cost_usd, session from session_id",
            verifier_isolation="--permission-mode dontAsk, only the Read/Grep/Glob tools, Bash/Edit/Write/"
            "NotebookEdit/WebFetch/WebSearch disallowed, no MCP servers, no session kept",
            build_args=_claude_args,
            parse=_claude_parse,
            failure=_claude_failure,
        ),
        Preset(
            name="codex",
            title="OpenAI Codex CLI",
            command=("codex", "exec"),
            install="the Codex CLI (npm install -g @openai/codex)",
            docs="https://developers.openai.com/codex/noninteractive/",
            prompt_via="stdin",
            resumes=True,
            parses="JSONL events: text from the last agent_message item, usage from turn.completed (a resumed "
            "turn's running total minus the earlier one), session from thread.started's thread_id; no cost",
            verifier_isolation="--sandbox read-only (commands may read; no writes, no network), web_search "
            "disabled, --ephemeral",
            build_args=_codex_args,
            parse=_codex_parse,
            failure=_codex_failure,
            watch=_codex_watch,
        ),
        Preset(
            name="gemini",
            title="Gemini CLI",
            command=("gemini", "--output-format", "json"),
            install="the Gemini CLI (npm install -g @google/gemini-cli)",
            docs="https://geminicli.com/docs/cli/headless/",
            prompt_via="stdin",
            resumes=True,
            parses="one JSON object: text from response, usage summed over stats.models.*.tokens, "
            "session from session_id (recent versions); no cost",
            verifier_isolation="--approval-mode plan (gemini's read-only mode: no shell, no web_fetch; "
            "writes confined to its plans directory); no OS sandbox unless verifier_args adds --sandbox",
            build_args=_gemini_args,
            parse=_gemini_parse,
            failure=_gemini_failure,
            env={"CI": "true"},  # gemini's documented headless trigger, besides a non-TTY stdin
        ),
        Preset(
            name="opencode",
            title="opencode",
            command=("opencode", "run", "--format", "json"),
            install="opencode (npm install -g opencode-ai)",
            docs="https://opencode.ai/docs/cli/",
            prompt_via="stdin",
            resumes=True,
            parses="JSONL events: text of the last message's text parts, usage and cost summed over "
            "step_finish, session from sessionID",
            verifier_isolation="OPENCODE_PERMISSION denies edit, bash, webfetch, websearch, codesearch, "
            "task and external directories",
            build_args=_opencode_args,
            parse=_opencode_parse,
            failure=_opencode_failure,
            verifier_env={"OPENCODE_PERMISSION": _OPENCODE_VERIFIER_PERMISSION},
        ),
        Preset(
            name="aider",
            title="aider",
            command=("aider",),
            install="aider (python -m pip install aider-install && aider-install)",
            docs="https://aider.chat/docs/scripting.html",
            prompt_via="file",
            resumes=False,
            parses="plain stdout (no JSON): reply is stdout minus banner and usage lines; tokens from "
            "'Tokens: … sent, … received.' (rounded), cost from 'Cost: … session.'; no session id",
            verifier_isolation="--chat-mode ask --dry-run --no-git (the snapshot's files given as --read), "
            "no repo map or its cache, no lint/test/shell suggestions/URL fetching; aider has no network switch",
            build_args=_aider_args,
            parse=_aider_parse,
            failure=_no_failure,
            # TERM=dumb (every preset's default) makes aider 0.86.2 print "Detected dumb
            # terminal, disabling fancy input and pretty output." into every reply; with stdout
            # a pipe and --no-pretty it prints no escape codes under any other TERM. Its rich
            # console wraps at COLUMNS (80 when unset), which split a READY/VERIFY JSON line:
            # wider than the longest marker body, no line a marker can hold is wrapped.
            env={"TERM": "xterm", "COLUMNS": str(markers.BODY_LIMIT + 1024)},
            context_args=_aider_context,
        ),
        Preset(
            name="llm",
            title="llm (Simon Willison)",
            command=("llm", "prompt"),
            install="llm (python -m pip install llm)",
            docs="https://llm.datasette.io/en/stable/usage.html",
            prompt_via="stdin",
            resumes=True,
            parses="--json rows: text from the last row's response, usage from input_tokens/output_tokens, "
            "session from conversation_id; no cost",
            verifier_isolation="no tools at all (llm gives the model none unless -T names them), --no-log",
            build_args=_llm_args,
            parse=_llm_parse,
            failure=_no_failure,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# settings and command lines


def preset_settings(name: str, config: "Config | None") -> PresetSettings:
    """`[presets.NAME]` validated; ConfigError with one line if it is malformed."""
    table = (config.presets.get(name) if config is not None else None) or {}
    where = f"config {config.path}: [presets.{name}]" if config is not None and config.path else f"[presets.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_SETTING_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_SETTING_KEYS)})")

    command = table.get("command")
    if command is not None:
        if isinstance(command, str):
            command = shlex.split(command)
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            raise ConfigError(f"{where}: command must be a non-empty list of strings, e.g. [\"{name}\"]")
    model = table.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"{where}: model must be a non-empty string")
    lists = {}
    for key in ("args", "verifier_args"):
        value = table.get(key, [])
        if isinstance(value, str):
            value = shlex.split(value)
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        lists[key] = tuple(value)
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"{where}: env must be a table of strings, e.g. env = {{ KEY = \"value\" }}")
    return PresetSettings(
        command=tuple(command) if command else None,
        model=model.strip() if isinstance(model, str) else None,
        args=lists["args"],
        verifier_args=lists["verifier_args"],
        env=dict(env),
        source=(config.path if config is not None else None) if command else None,
    )


def invocation(
    preset: Preset,
    role: str,
    *,
    model: str | None = None,
    resume_ref: str | None = None,
    settings: PresetSettings | None = None,
    prompt_file: str | None = None,
    workdir: str | None = None,
) -> Invocation:
    """The command line of one turn. A verifier (or reflector) turn never resumes, whatever `resume_ref` is."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    settings = settings or PresetSettings()
    if role in _AS_VERIFIER:
        role = "verifier"
    resume = None if role == "verifier" or not preset.resumes else (resume_ref or None)
    extra = settings.verifier_args if role == "verifier" else settings.args
    base = list(settings.command or preset.command)
    if preset.context_args is not None:
        extra = [*preset.context_args(role, workdir), *extra]
    argv = base + preset.build_args(role, model or settings.model, resume, extra, prompt_file)
    env = dict(_QUIET_ENV)
    env.update(preset.env)
    if role == "verifier":
        env.update(preset.verifier_env)
    env.update(settings.env)
    return Invocation(argv=argv, env=env, prompt_via=preset.prompt_via, resumed=resume is not None)


def find_executable(argv0: str, env: Mapping[str, str] | None = None) -> str | None:
    """Where argv[0] would be found (with the PATH of the environment the turn will get)."""
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    if os.sep in argv0:
        return argv0 if os.path.isfile(argv0) and os.access(argv0, os.X_OK) else None
    return shutil.which(argv0, path=path)


class PresetBrain:
    """An agent CLI as a brain. Stateless: the tool's session id travels in the request."""

    def __init__(self, preset: Preset, model: str | None = None, settings: PresetSettings | None = None) -> None:
        self.preset = preset
        self.settings = settings or PresetSettings()
        self.model = model or self.settings.model
        self.spec = preset.name + (f":{model}" if model else "")

    def invocation(self, request: TurnRequest, prompt_file: str | None = None) -> Invocation:
        return invocation(
            self.preset,
            request.role,
            model=self.model,
            resume_ref=request.resume_ref,
            settings=self.settings,
            prompt_file=prompt_file,
            workdir=request.workdir,
        )

    def run(self, request: TurnRequest) -> TurnReply:
        name = self.preset.name
        probe = self.invocation(request, prompt_file=PROMPT_FILE_PLACEHOLDER)
        if find_executable(probe.argv[0], request.env) is None:
            raise BrainConfigError(
                f"{probe.argv[0]} not found on PATH; install {self.preset.install} "
                f"or override [presets.{name}] command"
            )
        if self.preset.prompt_via == "file":
            # The prompt goes in a private temp file, never into the workspace.
            with tempfile.TemporaryDirectory(prefix=f"crewctl-{name}-") as scratch:
                path = os.path.join(scratch, "prompt.md")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(request.prompt)
                call = self.invocation(request, prompt_file=path)
                result = run_process(call.argv, request, stdin=b"", extra_env=call.env, watch=self.preset.watch)
        else:
            call = probe
            result = run_process(call.argv, request, stdin=request.prompt.encode("utf-8"), extra_env=call.env,
                                 watch=self.preset.watch)
        return self.reply(result, call, request)

    def reply(self, result: ProcessResult, call: Invocation, request: TurnRequest) -> TurnReply:
        if result.returncode != 0:
            said = self.preset.failure(result.stdout, result.stderr_tail)
            if said is not None:
                raise said
            check_exit(result, call.argv)
        passed_in = request.resume_ref if call.resumed else None
        return self.preset.parse(result.stdout, result.stderr_tail, passed_in)


def preset_brain(name: str, model: str | None, config: "Config | None") -> PresetBrain:
    """`claude` or `claude:MODEL` (and so on for every preset) as a brain."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    model = (model or "").strip() or None
    return PresetBrain(preset, model, preset_settings(name, config))
