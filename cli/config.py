"""`crewctl config path|show`: which config file is read, and what it resolves to."""

from __future__ import annotations

from typing import Any

import click

from ..exceptions import CrewError, NoSupervisor
from ._common import echo_json, json_option, resolve_home

__all__ = ["config_group"]


@click.group("config")
def config_group() -> None:
    """The config file: where it is, and what crewctl makes of it.

    \b
    Every command and the supervisor find it the same way: $CREWCTL_CONFIG if set (then
    the file must exist), else $XDG_CONFIG_HOME/crewctl/config.toml (~/.config/...).
    The supervisor logs the path it loaded and reads the file again when it changes, so
    `goal new` uses the roster `config show` prints.

    \b
    Examples:
      crewctl config path
      crewctl config show
      crewctl config show --json | jq .roster
    """


def _supervisor_config() -> str | None | bool:
    """The config path of the running supervisor; False when none answers."""
    from ..transport import control

    try:
        status = control.call(resolve_home(), "status", {}, timeout=5)
    except NoSupervisor:
        return False
    except CrewError:
        return False
    daemon = status.get("daemon") if isinstance(status, dict) else None
    return daemon.get("config") if isinstance(daemon, dict) else None


@config_group.command("path")
@json_option
def path_command(as_json: bool) -> None:
    """Print the path of the config file this crewctl reads.

    \b
    With --json: {"path", "exists", "source" ("CREWCTL_CONFIG" or "default"),
    "supervisor" (the path the running supervisor reads, or null)}. When a running
    supervisor reads another file, a line on stderr says so: `goal new` refuses then.
    """
    import os

    from ..config import config_source

    path, named = config_source()
    theirs = _supervisor_config()
    data = {
        "path": path,
        "exists": os.path.isfile(path),
        "source": "CREWCTL_CONFIG" if named else "default",
        "supervisor": theirs if isinstance(theirs, str) else None,
    }
    if as_json:
        echo_json(data)
    else:
        click.echo(path)
    if isinstance(theirs, str) and os.path.abspath(theirs) != os.path.abspath(path):
        click.echo(f"crewctl: the running supervisor reads {theirs}, not this file; run both with the same CREWCTL_CONFIG", err=True)


@config_group.command("show")
@json_option
def show_command(as_json: bool) -> None:
    """Show what the config resolves to: roster, defaults, brains, presets, providers.

    \b
    Defaults include crewctl's own where the file sets none; API keys and other secrets
    are shown as ***. A config that does not parse is an error naming the file and line.
    """
    from ..config import config_source, load_config, redacted

    path, named = config_source()
    config = load_config()
    data = redacted(config)
    data["path"] = path
    data["exists"] = config.path is not None
    data["source"] = "CREWCTL_CONFIG" if named else "default"
    if as_json:
        echo_json(data)
        return
    for line in _render(data):
        click.echo(line)


def _render(data: dict[str, Any]) -> list[str]:
    out = [f"config: {data['path']}" + ("" if data["exists"] else "  (no such file: crewctl's defaults apply)")]
    out.append("roster:")
    roster = data["roster"]
    if roster:
        out += [f"  {role:<9} {spec}" for role, spec in roster.items()]
    else:
        out.append("  (empty: goal new needs --lead, and --verifier unless every criterion has a --check)")
    out.append("defaults (for every new goal):")
    for key, value in data["defaults"].items():
        out.append(f"  {key:<15} {'no limit' if value is None else value}")
    out.append("brains:")
    if data["brains"]:
        out += [f"  {name:<12} {entry.get('spec')}" for name, entry in sorted(data["brains"].items())]
    else:
        out.append("  (none)")
    for title, key in (("presets overridden", "presets"), ("providers", "providers"), ("verifier", "verifier"), ("sandbox", "sandbox")):
        table = {k: v for k, v in data[key].items() if v}
        if table:
            out.append(f"{title}:")
            out += [f"  {name:<12} {value}" for name, value in table.items()]
    return out
