"""The opencode preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

from ...exceptions import BrainConfigError, BrainError, UsageLimited
from ..base import TurnReply, Usage
from ._base import _cost, _count, _json_lines, _model_flag, _one_line, Preset, write_home_file

__all__ = ["OPENCODE_CONFIG_KEPT", "OPENCODE_CONFIGS", "PRESET", "opencode_provider_config"]

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


# What of opencode's config chooses the provider and the model; everything else (mcp servers,
# plugins, agents, commands, instructions, its own permission rules) stays with the operator,
# so the verifier starts no server and loads no plugin the operator's own sessions use.
OPENCODE_CONFIG_KEPT = ("$schema", "provider", "model", "small_model", "enabled_providers", "disabled_providers")
OPENCODE_CONFIGS = (".config/opencode/opencode.json", ".config/opencode/opencode.jsonc", ".config/opencode/config.json")
_JSONC_COMMENT = re.compile(r'("(?:\\.|[^"\\])*")|//[^\n]*|/\*.*?\*/', re.S)


def opencode_provider_config(text: str) -> str | None:
    """The provider and model entries of an opencode config (JSON or JSONC), as JSON."""
    try:
        config = json.loads(_JSONC_COMMENT.sub(lambda m: m.group(1) or "", text))
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    kept: dict[str, Any] = {k: config[k] for k in OPENCODE_CONFIG_KEPT if k in config}
    return json.dumps(kept, indent=2) if kept else None


def _opencode_seed(source_home: str, fresh_home: str) -> list[str]:
    written: list[str] = []
    for relative in OPENCODE_CONFIGS:
        try:
            with open(os.path.join(source_home, relative), encoding="utf-8") as f:
                text = opencode_provider_config(f.read())
        except OSError:
            continue
        if text is not None:  # written as .json: what is kept has no comments left
            written += write_home_file(fresh_home, relative.replace(".jsonc", ".json"), text)
    return written


def _opencode_failure(stdout: bytes, _stderr: str) -> BrainError | None:
    try:
        events = _json_lines(stdout, "opencode")
    except BrainError:
        return None
    for event in events:
        if event.get("type") == "error":
            return _opencode_error(event)
    return None


PRESET = Preset(
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
    credential_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
    state_dirs=(".local/share/opencode", ".local/state/opencode", ".config/opencode", ".cache/opencode"),
    # Its login, and of its config only what names providers and the model (_opencode_seed);
    # never its sessions and messages (~/.local/share/opencode/storage) or project state.
    home_files=(".local/share/opencode/auth.json",),
    seed=_opencode_seed,
)
