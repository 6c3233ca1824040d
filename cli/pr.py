"""`crewctl goal pr ID [--push REMOTE] [--open]`: hand over a passed goal's PR envelope."""

from __future__ import annotations

import click

from ..exceptions import Refused
from ..goal.envelope import pr_title
from ..goal.views import envelope_view
from ..goal.vocab import Status
from ..outputs import envelope as envelope_io
from ._common import db_option, echo_json, json_option, read_store

__all__ = ["pr_command"]


@click.command("pr")
@click.argument("goal_id", metavar="ID")
@click.option("--push", "remote", metavar="REMOTE", help="Push the branch to this remote (a name or a URL).")
@click.option("--open", "open_pr", is_flag=True, help="Open a pull request with `gh pr create`, the body from pr.md.")
@db_option
@json_option
def pr_command(goal_id, remote, open_pr, db, as_json):
    """The PR envelope of a passed goal: its branch, commit, body and patch.

    \b
    When the gate passes, crewctl commits the verified snapshot on a branch crewctl/ID
    (your branch, index and working tree are left alone) and writes pr.md and pr.patch.
    Works while the goal awaits sign-off and after it is done:
      crewctl goal pr ID                      # where everything is
      crewctl goal pr ID --push origin        # push crewctl/ID (forced: it is crewctl's)
      crewctl goal pr ID --push origin --open # and open a pull request with gh
    The push uses your git configuration (credentials) with hooks turned off.
    """
    store = read_store(db)
    state, _ = store.load_goal(store.resolve_id(goal_id))
    if state.status not in (Status.AWAITING_SIGNOFF, Status.DONE):
        raise Refused(f"goal {state.id} is {state.status}; its PR envelope exists once the gate passed (awaiting_signoff or done)")
    env = envelope_view(state)
    if env is None:
        raise Refused(f"goal {state.id} has no PR envelope (its gate passed before crewctl made envelopes)")
    if env["status"] == "pending":
        raise Refused(f"goal {state.id}'s PR envelope is still being made; try again in a moment")
    if env["status"] == "superseded":
        raise Refused(f"goal {state.id}'s PR envelope was superseded (sent back); a new one comes when the gate passes again")
    if env["status"] == "failed":
        raise envelope_io.EnvelopeError(f"goal {state.id}'s PR envelope could not be made: {env['error']}")
    result = {"id": state.id, **env, "pushed": None, "opened": None}
    if remote:
        said = envelope_io.push(state.workspace, env["branch"], remote)
        result["pushed"] = {"remote": remote, "output": said}
    if open_pr:
        result["opened"] = envelope_io.open_pr(
            state.workspace, branch=env["branch"], base_branch=state.base_branch, title=pr_title(state), body_file=env["pr"]
        )
    if as_json:
        echo_json(result)
        return
    click.echo(f"branch {env['branch']}  commit {env['commit'][:12]}  on {env['base'][:12]}  ({len(env['files'])} file(s) changed)")
    click.echo(f"body   {env['pr']}")
    click.echo(f"patch  {env['patch']}")
    if remote:
        click.echo(f"pushed {env['branch']} to {remote}")
    if result["opened"]:
        click.echo(f"pull request: {result['opened']}")
    if not remote and not open_pr:
        click.echo(f"push it: crewctl goal pr {state.id} --push REMOTE [--open]")

