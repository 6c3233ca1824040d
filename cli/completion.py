"""`crewctl completion bash|zsh|fish`: the shell completion script, goal ids included.

The scripts are click's own (they call `crewctl` back with _CREWCTL_COMPLETE set); every
command argument named ID completes from the goals in the store, newest first, with the
status and objective as the description where the shell shows one.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

__all__ = ["GoalId", "attach_goal_ids", "completion_command"]

COMPLETE_VAR = "_CREWCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


class GoalId(click.ParamType):
    """A goal id (or a unique prefix of one): what `goal show ID` takes."""

    name = "goal_id"

    def convert(self, value, param, ctx):
        return value

    def shell_complete(self, ctx, param, incomplete):
        try:
            import os

            from ..store import default_home, open_store

            goals = open_store(os.environ.get("CREWCTL_DB") or None, default_home(), create=False).list_goals()
        except Exception:  # completion must never print a traceback into a shell prompt
            return []
        items = []
        for g in reversed(goals):
            if g["id"].startswith(incomplete):
                objective = " ".join(g["objective"].split())[:50]
                items.append(CompletionItem(g["id"], help=f"{g['status']}: {objective}"))
        return items


def attach_goal_ids(group: click.Group) -> None:
    """Every argument named goal_id, in every command below `group`, completes goal ids."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            attach_goal_ids(command)
        for param in command.params:
            if param.name == "goal_id" and isinstance(param, click.Argument):
                param.type = GoalId()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell):
    """Print the shell completion script for SHELL (commands, options and goal ids).

    \b
      bash:  crewctl completion bash > ~/.local/share/bash-completion/completions/crewctl
      zsh:   crewctl completion zsh > "${fpath[1]}/_crewctl"
      fish:  crewctl completion fish > ~/.config/fish/completions/crewctl.fish
    or, for the current shell only: eval "$(crewctl completion bash)"
    """
    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    click.echo(cls(root, {}, "crewctl", COMPLETE_VAR).source())
