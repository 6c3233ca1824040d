"""The environment an agent or a check starts from: an allowlist, never a blocklist.

Whatever the supervisor has in its environment (CREWCTL_HOME, CREWCTL_CONFIG, CREWCTL_DB,
tokens, session ids, secrets) is not there unless it is named here: the base variables a
program needs to run, the credentials the role's brain needs to reach its model (by the
brain's resolved kind, so a config-named brain `[brains.local] spec = "openai:..."` gets
the openai keys), and what the operator adds with `[sandbox] env_allow`. Check commands get
no brain credentials at all: a test suite has no business holding the verifier's API key.

Agent CLIs that log in through a file in HOME get, in the verifier's fresh HOME, a copy of
exactly that credentials file (`seed_home`), never the rest of the real HOME: Claude Code,
for one, keeps every session's transcript under ~/.claude/projects, and a verifier that
could read the lead's transcript would not be anonymous.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["AUTH_FILES", "BASE_ALLOW", "BRAIN_KEYS", "agent_env", "brain_kind", "seed_home"]

BASE_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TERM", "USER", "LOGNAME", "SHELL")

# The credentials each brain kind needs to reach its model, and nothing else.
BRAIN_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"),
    "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI"),
    "opencode": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
    "aider": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_API_BASE", "GEMINI_API_KEY"),
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

_NAMED_DEPTH = 8  # a config brain naming a config brain naming ...: give up, fail closed


def brain_kind(spec: str | None, config: "Config | None" = None) -> str | None:
    """The kind of brain a spec resolves to: `openai`, `claude`, `exec`, ... or None.

    A name from the config's [brains] is followed to its spec, so what a brain is allowed
    depends on what it is, not on what the operator called it.
    """
    for _ in range(_NAMED_DEPTH):
        if not spec:
            return None
        spec = spec.strip()
        kind, sep, _rest = spec.partition(":")
        if not sep and config is not None and spec in config.brains:
            spec = config.brains[spec].get("spec")
            continue
        return kind
    return None


def seed_home(kind: str | None, source_home: str | None, round_home: str) -> list[str]:
    """Copy the brain's credentials files (only those) into the round's own HOME."""
    if not kind or not source_home:
        return []
    copied = []
    for rel in AUTH_FILES.get(kind, ()):
        src = os.path.join(source_home, rel)
        if os.path.isfile(src):
            dst = os.path.join(round_home, rel)
            os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            copied.append(rel)
    if kind == "codex":
        copied += _seed_codex_provider(source_home, round_home)
    return copied


def _seed_codex_provider(source_home: str, round_home: str) -> list[str]:
    """codex chooses its provider in config.toml: only those entries go into the fresh HOME
    (brains.presets.codex_provider_config says which), so the verifier reaches the model the
    operator configured, not codex's default."""
    from ..brains.presets import codex_provider_config

    codex_home = os.environ.get("CODEX_HOME") or os.path.join(source_home, ".codex")
    try:
        with open(os.path.join(codex_home, "config.toml"), encoding="utf-8") as f:
            text = codex_provider_config(f.read())
    except OSError:
        return []
    if text is None:
        return []
    dst = os.path.join(round_home, ".codex", "config.toml")
    os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
    return [".codex/config.toml"]


def agent_env(
    source: Mapping[str, str],
    *,
    kind: str | None,
    home: str,
    tmp: str,
    extra_allow: Iterable[str] = (),
) -> dict[str, str]:
    """The allowlisted environment of one agent or check process (before CREWCTL_* are added).

    `kind` is the brain's resolved kind (None for a check command: no credentials).
    """
    allow = set(BASE_ALLOW) | set(extra_allow)
    if kind:
        allow |= set(BRAIN_KEYS.get(kind, ()))
    allow = {name for name in allow if not name.startswith("CREWCTL_")}  # never the supervisor's own
    env = {k: v for k, v in source.items() if k in allow}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = home
    env["TMPDIR"] = tmp
    return env
