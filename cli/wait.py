"""`crewctl goal wait`: block until a goal needs the operator, or is finished.

For scripts: `crewctl goal wait ID && notify-send "goal ID needs you"`. Reads the store and
learns of changes from its files (cli._feed), so a thousand waiting scripts cost the
supervisor nothing.
"""

from __future__ import annotations

import time

import click

from ..exceptions import WaitTimeout
from ..goal.attention import ATTENTION, FINISHED
from ..goal.model import TERMINAL
from ._common import db_option, json_option, read_store
from ._feed import ChangeFeed
from .goal import _print_goal, goal_group

__all__ = ["goal_wait"]


def reached(view: dict, wait_for: str) -> bool:
    if wait_for == "done":
        # Done or cancelled; a failed goal can become neither, so it ends the wait too.
        return view["status"] in FINISHED or view["status"] in TERMINAL
    # Attention: the goal needs you, or can no longer need you (done, cancelled): either
    # way a script waiting for it must not hang forever.
    return view.get("attention") is not None or view["status"] in ATTENTION or view["status"] in TERMINAL


@goal_group.command("wait")
@click.argument("goal_id", metavar="ID")
@click.option("--for", "wait_for", type=click.Choice(["attention", "done"]), default="attention", show_default=True,
              help="attention: until the goal needs you (awaiting_input, awaiting_approval, awaiting_signoff, blocked, "
                   "budget_limited, failed); done: until it is done or cancelled.")
@click.option("--timeout", type=click.FloatRange(min=0, max=10**7), metavar="SECONDS", help="Give up after this long: exit 5.")
@db_option
@json_option
def goal_wait(goal_id, wait_for, timeout, db, as_json):
    """Wait until a goal needs you (or, with --for done, is finished), then print it.

    \b
    Exit 0 when it happened, 5 when --timeout passed first:
      crewctl goal wait ID --timeout 3600 && crewctl goal show ID
    With --for attention it also returns when the goal is done or cancelled (it can no
    longer need you); --for done also returns for a failed goal (it can never be done).
    """
    store = read_store(db)
    gid = store.resolve_id(goal_id)
    feed = ChangeFeed(store)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = store.view(gid)
        if reached(view, wait_for):
            _print_goal(view, as_json)
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimeout(f"goal {gid} is still {view['status']} after {timeout:g}s")
        feed.wait(3600 if left is None else left)
