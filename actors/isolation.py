"""The verifier's environment: an allowlist, not a blocklist.

A verifier process and crewctl's check commands start from nothing but these variables, so
whatever the daemon or the lead had in its environment (tokens, session ids, secrets) is not
there. HOME is the round's own empty directory unless the operator opts out (some agent
CLIs keep their login in HOME; `[verifier] home = "inherit"` in the config), TMPDIR is the
round's own, and a brain kind gets only the keys it needs to reach its model.

Agent CLIs that log in through a file in HOME get a copy of exactly that credentials file
in the round's HOME (`seed_home`), never the rest of the real HOME: Claude Code, for one,
keeps every session's transcript under ~/.claude/projects, and a verifier that could read
the lead's transcript would not be anonymous.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import os
import shutil

__all__ = ["AUTH_FILES", "BASE_ALLOW", "BRAIN_KEYS", "scrubbed_env", "seed_home"]

BASE_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TERM", "USER", "LOGNAME", "SHELL")

# The credentials each brain kind needs to reach its model, and nothing else.
BRAIN_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"),
    "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI"),
    "opencode": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
    "aider": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
    "llm": ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_USER_PATH"),
}


# Credentials files (relative to HOME) an agent CLI needs to reach its model when it is
# logged in rather than given an API key. Only these are copied into the verifier's HOME.
AUTH_FILES: dict[str, tuple[str, ...]] = {
    "claude": (".claude/.credentials.json",),
    "codex": (".codex/auth.json",),
    "gemini": (".gemini/oauth_creds.json", ".gemini/google_accounts.json"),
    "opencode": (".local/share/opencode/auth.json",),
    "llm": (".config/io.datasette.llm/keys.json",),
}


def seed_home(brain_spec: str | None, source_home: str | None, round_home: str) -> list[str]:
    """Copy the brain's credentials files (only those) into the round's own HOME."""
    if not brain_spec or not source_home:
        return []
    copied = []
    for rel in AUTH_FILES.get(brain_spec.split(":", 1)[0], ()):
        src = os.path.join(source_home, rel)
        if os.path.isfile(src):
            dst = os.path.join(round_home, rel)
            os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            copied.append(rel)
    return copied


def scrubbed_env(
    source: Mapping[str, str],
    *,
    brain_spec: str | None,
    home: str,
    tmp: str,
    extra_allow: Iterable[str] = (),
    inherit_home: bool = False,
) -> dict[str, str]:
    allow = set(BASE_ALLOW) | set(extra_allow)
    if brain_spec:
        allow |= set(BRAIN_KEYS.get(brain_spec.split(":", 1)[0], ()))
    env = {k: v for k, v in source.items() if k in allow}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = source.get("HOME", home) if inherit_home else home
    env["TMPDIR"] = tmp
    return env
