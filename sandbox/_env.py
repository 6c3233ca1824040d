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

from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["BASE_ALLOW", "BRAIN_KEYS", "agent_env", "brain_kind", "credential_env", "seed_home", "state_dirs"]

BASE_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TERM", "USER", "LOGNAME", "SHELL")

# The credentials of the brains that are not agent CLIs (crewctl's own HTTP clients). An
# agent CLI's preset names its own (`Preset.credential_env`, crewctl.brains.presets).
BRAIN_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
}


def _preset(kind: str | None):
    """The agent CLI preset of this kind, if it is one: each tool's knowledge lives there."""
    if not kind:
        return None
    from ..brains.presets import PRESETS

    return PRESETS.get(kind)


def credential_env(kind: str | None) -> tuple[str, ...]:
    preset = _preset(kind)
    return preset.credential_env if preset is not None else BRAIN_KEYS.get(kind or "", ())


def state_dirs(kind: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where the tool keeps its state under HOME, and the variables that move it."""
    preset = _preset(kind)
    return (preset.state_dirs, preset.state_env) if preset is not None else ((), ())


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
    """Give a fresh HOME what the brain's tool needs to log in and reach the operator's
    provider and model (its preset says which files), and nothing else."""
    preset = _preset(kind)
    if preset is None or not source_home:
        return []
    from ..brains.presets import copy_home_files

    copied = copy_home_files(source_home, round_home, preset.home_files)
    if preset.seed is not None:
        copied += preset.seed(source_home, round_home)
    return copied


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
        allow |= set(credential_env(kind))
    allow = {name for name in allow if not name.startswith("CREWCTL_")}  # never the supervisor's own
    env = {k: v for k, v in source.items() if k in allow}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = home
    env["TMPDIR"] = tmp
    return env
