"""The verifier's environment: an allowlist, not a blocklist.

A verifier process and crewctl's check commands start from nothing but these variables, so
whatever the daemon or the lead had in its environment (tokens, session ids, secrets) is not
there. HOME is the round's own empty directory unless the operator opts out (some agent
CLIs keep their login in HOME; `[verifier] home = "inherit"` in the config), TMPDIR is the
round's own, and a brain kind gets only the keys it needs to reach its model.
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["BASE_ALLOW", "BRAIN_KEYS", "scrubbed_env"]

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
