"""`crewctl watch [ID]`: the live dashboard. The app itself is cli/tui.py (Textual is
imported only when this command runs, so the other commands start as fast as before)."""

from __future__ import annotations

import os
import threading

import click

from ._common import db_option, read_store, resolve_home
from ..store import open_store
from ._feed import ChangeFeed

__all__ = ["watch_command"]


@click.command("watch")
@click.argument("goal_id", metavar="[ID]", required=False)
@db_option
def watch_command(goal_id, db):
    """A live dashboard of every goal; with ID, open on that goal.

    \b
    The list shows what needs you first, then what works (the turn in flight and how
    long it has run), with spend bars against each goal's budget.
      Enter      open a goal: criteria with evidence, plan steps, the timeline live
      t          the active agent's thread: its recent replies (l, v, w: lead, verifier, workers)
      s p r o b  steer, pause, resume, sign off, send back (each asks to confirm)
      a          only the goals that need you
      Escape     back;  q  quit
    Reads the store (no supervisor needed to look; actions need one). Honors NO_COLOR;
    fits 80x24.
    """
    store = read_store(db)
    if goal_id:
        goal_id = store.resolve_id(goal_id)  # a bad id is one line on stderr, before the screen opens
    # Read the goals while Textual loads: the first frame then has them without waiting.
    feed = ChangeFeed(store)
    first: list = []
    reader = threading.Thread(target=lambda: first.append(store.list_goals()), daemon=True)
    reader.start()
    from .tui import WatchApp

    reader.join()
    home, url = resolve_home(), db or os.environ.get("CREWCTL_DB") or None  # here: the app's threads have no click context
    WatchApp(store, home, goal_id, goals=first[0] if first else None, feed=feed, reopen=lambda: open_store(url, home, create=False)).run()
