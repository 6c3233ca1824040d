"""The gemini preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from ...exceptions import BrainConfigError, BrainError, UsageLimited
from ..base import TurnReply, Usage
from ._base import _count, _json_object, _model_flag, _one_line, Preset, write_home_file

__all__ = ["PRESET"]

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



# Of ~/.gemini/settings.json, what chooses how gemini logs in and which model it asks; not
# its MCP servers, tools, hooks or extensions (a verifier's gemini must not start the
# operator's MCP servers, which may write or reach the network).
GEMINI_SETTINGS_KEPT = {"security": ("auth",), "model": None, "selectedAuthType": None}


def _gemini_seed(source_home: str, fresh_home: str) -> list[str]:
    try:
        with open(os.path.join(source_home, ".gemini", "settings.json"), encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(settings, dict):
        return []
    kept: dict[str, Any] = {}
    for key, parts in GEMINI_SETTINGS_KEPT.items():
        if key not in settings:
            continue
        value = settings[key]
        if parts is not None:
            value = {p: value[p] for p in parts if isinstance(value, dict) and p in value}
            if not value:
                continue
        kept[key] = value
    return write_home_file(fresh_home, ".gemini/settings.json", json.dumps(kept, indent=2)) if kept else []

PRESET = Preset(
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
    credential_env=("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI",
                    "GOOGLE_GEMINI_BASE_URL"),
    state_dirs=(".gemini",),
    home_files=(".gemini/oauth_creds.json", ".gemini/google_accounts.json"),
    seed=_gemini_seed,
)
