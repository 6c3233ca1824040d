"""`crewctl memory show|path|edit [--workspace DIR]`: what goals learned about a workspace."""

from __future__ import annotations

import os
import shlex
import subprocess

import click

from ..exceptions import CrewError, UsageError
from ..goal import memory as rules
from ..outputs import memory
from ._common import echo_json, json_option, resolve_home

__all__ = ["memory_group"]


def _workspace_option(f):
    return click.option(
        "--workspace", type=click.Path(file_okay=False), default=".", show_default=True,
        help="The workspace whose memory this is (as given to `goal new --workspace`).",
    )(f)


def _workspace(path: str) -> str:
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise UsageError(f"workspace {path} is not a directory")
    return path


@click.group("memory")
def memory_group() -> None:
    """A workspace's memory: what reflections learned from its signed-off goals.

    \b
    After each sign-off, crewctl's reflection may add stable facts, your preferences and
    strategy hints to the workspace's MEMORY.md (plain Markdown: edit it as you like).
    The lead of the next goal there sees the newest entries first (at most 2 KiB); a
    verifier never sees memory.
      crewctl memory show --workspace ~/src/app
      crewctl memory edit                     # in $VISUAL or $EDITOR
    """


@memory_group.command("show")
@_workspace_option
@json_option
def memory_show(workspace, as_json):
    """Print the workspace's memory file (with --json: its entries)."""
    home, workspace = resolve_home(), _workspace(workspace)
    text = memory.read(home, workspace)
    path = memory.memory_path(home, workspace)
    if as_json:
        entries = rules.entries(text or "")
        echo_json({"workspace": workspace, "path": path, "exists": text is not None,
                   "entries": [{"kind": e.kind, "text": e.text} for e in entries]})
        return
    if text is None:
        click.echo(f"no memory yet for {workspace} (it is written after a goal there is signed off)")
        return
    click.echo(text.rstrip("\n"))


@memory_group.command("path")
@_workspace_option
def memory_path(workspace):
    """Print where the workspace's memory file is (whether or not it exists yet)."""
    click.echo(memory.memory_path(resolve_home(), _workspace(workspace)))


@memory_group.command("edit")
@_workspace_option
def memory_edit(workspace):
    """Open the workspace's memory file in $VISUAL or $EDITOR (vi), creating it if needed."""
    home, workspace = resolve_home(), _workspace(workspace)
    path = memory.memory_path(home, workspace)
    if memory.read(home, workspace) is None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(rules.new_file(os.path.realpath(workspace)))
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        done = subprocess.run([*shlex.split(editor), path])
    except (OSError, ValueError) as exc:
        raise CrewError(f"cannot run the editor {editor!r}: {exc}") from None
    if done.returncode != 0:
        raise CrewError(f"the editor {editor!r} exited {done.returncode}")
