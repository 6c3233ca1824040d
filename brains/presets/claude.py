"""The claude preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import re
from typing import Sequence

from ...exceptions import BrainConfigError, BrainError, UsageLimited
from ..base import TurnReply, Usage
from ._base import _cost, _count, _json_object, _model_flag, _one_line, Preset

__all__ = ["PRESET"]

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
        status = data.get("api_error_status")
        if _CLAUDE_LOGIN.search(said) or status in (401, 403):
            # A retry cannot log claude in: the goal must stop and say so, not back off.
            return BrainConfigError(f"claude is not logged in or its key was refused: {_one_line(said)}")
        if status == 404:
            # claude 2.1.197 words a 404 from its API as "an issue with the selected model",
            # also when ANTHROPIC_BASE_URL names a server without Anthropic's /v1/messages.
            return BrainConfigError(
                "claude's API answered 404: the model does not exist there, or ANTHROPIC_BASE_URL "
                f"names a server without Anthropic's Messages API (/v1/messages); claude said: {_one_line(said)}"
            )
        return BrainError(f"claude reported an error: {_one_line(said)}")
    return None


# claude 2.1.197 with no login and no ANTHROPIC_API_KEY: "Not logged in · Please run /login";
# with a key the API refuses: "Invalid API key · Please run /login".
_CLAUDE_LOGIN = re.compile(r"not logged in|please run /login|invalid api key", re.IGNORECASE)


def _claude_failure(stdout: bytes, _stderr: str) -> BrainError | None:
    try:
        data = _json_object(stdout, "claude")
    except BrainError:
        return None
    return _claude_error(data)


PRESET = Preset(
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
    credential_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
                    "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"),
    state_dirs=(".claude", ".claude.json", ".config/claude"),
    state_env=("CLAUDE_CONFIG_DIR",),
    # The login only: ~/.claude also holds every session's transcript (projects/), which an
    # anonymous verifier must never read.
    home_files=(".claude/.credentials.json",),
)
