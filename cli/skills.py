"""`crewctl skills list|show NAME|export NAME DIR`: skills that reflections wrote."""

from __future__ import annotations

import click

from ..outputs import skills
from ._common import echo_json, json_option, resolve_home

__all__ = ["skills_group"]


@click.group("skills")
def skills_group() -> None:
    """Skills that reflections wrote, as Agent Skills (SKILL.md with YAML front matter).

    \b
    A reflection may turn a successful run into a reusable procedure, kept in
    $CREWCTL_HOME/skills/NAME/SKILL.md. Later leads see the names and descriptions (never
    the bodies). Claude Code and Codex load the same files; export one where they look:
      crewctl skills export fix-date-parsing ~/.claude/skills
    """


@skills_group.command("list")
@json_option
def skills_list(as_json):
    """List the skills, newest first."""
    listed = skills.listing(resolve_home())
    if as_json:
        echo_json([{"name": s.name, "description": s.description, "path": s.path, "error": s.error} for s in listed])
        return
    if not listed:
        click.echo("no skills yet (a reflection writes one when a run is worth repeating)")
        return
    width = max(len(s.name) for s in listed)
    for s in listed:
        click.echo(f"{s.name:<{width}}  {s.description if s.error is None else '(unreadable: ' + s.error + ')'}")


@skills_group.command("show")
@click.argument("name")
@json_option
def skills_show(name, as_json):
    """Print a skill's SKILL.md."""
    skill, text, path = skills.load(resolve_home(), name)
    if as_json:
        echo_json({"name": skill.name, "description": skill.description, "body": skill.body, "path": path})
        return
    click.echo(text.rstrip("\n"))


@skills_group.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace DIR/NAME/SKILL.md if it exists and differs.")
def skills_export(name, directory, force):
    """Write the skill to DIRECTORY/NAME/SKILL.md (e.g. ~/.claude/skills or .codex/skills)."""
    click.echo(skills.export(resolve_home(), name, directory, force=force))
