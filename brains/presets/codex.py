"""The codex preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import os
import json
from typing import Any, Sequence

from ...exceptions import BrainError
from ..base import TurnReply, Usage
from ._base import _count, _decode, _json_lines, _limited_or_error, _model_flag, _one_line, Preset, write_home_file

__all__ = ["PRESET", "codex_provider_config"]

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



def _codex_seed(source_home: str, fresh_home: str) -> list[str]:
    """codex chooses its provider in config.toml: only those entries go into the fresh HOME,
    so the verifier reaches the model the operator configured, not codex's default."""
    codex_home = os.environ.get("CODEX_HOME") or os.path.join(source_home, ".codex")
    try:
        with open(os.path.join(codex_home, "config.toml"), encoding="utf-8") as f:
            text = codex_provider_config(f.read())
    except OSError:
        return []
    return write_home_file(fresh_home, ".codex/config.toml", text) if text is not None else []

PRESET = Preset(
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
    credential_env=("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    state_dirs=(".codex",),
    state_env=("CODEX_HOME",),
    home_files=(".codex/auth.json",),
    seed=_codex_seed,
)
