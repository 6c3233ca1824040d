"""`crewctl goal logs`: what every agent was asked and what it said (the thread router).

The lead's and the verifier's turns come from the `turn` table, which stores every prompt
and every reply whole. A worker's turn is a plan step's dispatch: its reply is the step's
result, which the store caps at prompts.REPORT_CAP characters (the output says so where it
cut one), and its prompt is not stored.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..goal.model import TERMINAL
from ..goal.prompts import REPORT_CAP
from ..goal.reflect import outputs_settled
from ..goal.vocab import RecordType as R, TurnStatus
from ..store import Store
from ._common import db_option, duration, echo_json, human_time, json_option, read_store
from ._feed import ChangeFeed
from .goal import goal_group

__all__ = ["goal_logs", "log_entries", "render_entry"]

ROLES = ("lead", "worker", "verifier", "reflector")
_STEP_EVENTS = ("step_started", "step_finished", "step_retry", "step_failed")


def _task_number(task: str | None) -> int:
    """A task id is GOAL/STEP/N; N is the dispatch, the worker's CREWCTL_TURN."""
    tail = str(task or "").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def _turn_entry(t: dict[str, Any], prompts: bool) -> dict[str, Any]:
    entry = {
        "role": t["role"],
        "turn": t["turn"],
        "kind": t["kind"],
        "round": t["round"],
        "status": t["status"],
        "runs": t["runs"],
        "started_at": t["started_at"],
        "finished_at": t["finished_at"],
        "usage": t["usage"],
        "reply": t["reply"],
        "reply_cut": False,  # lead and verifier replies are stored whole
        "error": t["error"],
    }
    if prompts:
        entry["prompt"] = t["prompt"]
    return entry


class _Workers:
    """Worker turns, built from the step events (incrementally, for --follow)."""

    def __init__(self) -> None:
        self.after = 0
        self.entries: dict[str, dict[str, Any]] = {}  # task -> entry

    def update(self, store: Store, gid: str, prompts: bool) -> list[str]:
        """Read new step events; return the tasks whose entry changed."""
        changed: list[str] = []
        events = store.events(gid, after=self.after, types=_STEP_EVENTS)
        if not events:
            return changed
        self.after = events[-1]["seq"]
        results = None
        for e in events:
            p = e["payload"]
            task = p.get("task")
            if not task:
                continue
            entry = self.entries.get(task)
            if entry is None:
                entry = {
                    "role": "worker",
                    "turn": _task_number(task),
                    "kind": "step",
                    "step": p.get("step"),
                    "task": task,
                    "host": p.get("host"),
                    "round": None,
                    "status": "running",
                    "runs": 1,
                    "started_at": e["at"],
                    "finished_at": None,
                    "usage": None,
                    "reply": None,
                    "reply_cut": False,
                    "error": None,
                }
                if prompts:
                    entry["prompt"] = None  # a worker's prompt is not stored
                self.entries[task] = entry
            if e["type"] == R.STEP_STARTED:
                entry["started_at"], entry["host"] = e["at"], p.get("host")
            elif e["type"] == R.STEP_FINISHED:
                if results is None:
                    results = _step_results(store, gid)
                result = results.get((p.get("step"), task))
                entry.update(status=TurnStatus.FINISHED, finished_at=e["at"], usage=p.get("usage"), reply=result)
                entry["reply_cut"] = result is not None and len(result) >= REPORT_CAP
            else:  # a failed dispatch (retried or final)
                entry.update(status="failed", finished_at=e["at"], error=p.get("error"))
            changed.append(task)
        return changed


def _step_results(store: Store, gid: str) -> dict[tuple[str, str], str | None]:
    state, _ = store.load_goal(gid)
    return {(st.id, st.task): st.result for st in state.steps if st.task}


def _matches(entry: dict[str, Any], role: str | None, turn: int | None) -> bool:
    return (role is None or entry["role"] == role) and (turn is None or entry["turn"] == turn)


def _order(entry: dict[str, Any]) -> tuple:
    return (entry.get("started_at") or entry.get("finished_at") or "", entry["role"] == "worker", entry["turn"])


def log_entries(store: Store, gid: str, *, role: str | None = None, turn: int | None = None, prompts: bool = False) -> list[dict[str, Any]]:
    """Every turn of the goal in the order they started (filtered by role and turn number)."""
    out = []
    if role in (None, "lead", "verifier", "reflector"):
        out += [_turn_entry(t, prompts) for t in store.turns(gid, prompts=prompts)]
    if role in (None, "worker"):
        workers = _Workers()
        workers.update(store, gid, prompts)
        out += list(workers.entries.values())
    out = [e for e in out if _matches(e, role, turn)]
    out.sort(key=_order)
    return out


def _title(e: dict[str, Any]) -> str:
    what = f"{e['role']} turn {e['turn']}"
    if e.get("step"):
        what = f"worker {e['step']} turn {e['turn']}"
    bits = [what, e["kind"] if not e.get("step") else "step"]
    if e.get("round"):
        bits.append(f"round {e['round']}")
    if e.get("runs", 1) > 1:
        bits.append(f"run {e['runs']}")
    return " · ".join(bits)


def render_entry(e: dict[str, Any], *, prompts: bool) -> str:
    """A turn for people: a header line, then the prompt (with --prompts) and the reply."""
    u = e.get("usage") or {}
    head = f"=== {_title(e)} · {human_time(e['started_at'])}"
    if e["status"] == TurnStatus.RUNNING:
        head += " · running"
    else:
        if u.get("seconds") is not None and e["status"] == TurnStatus.FINISHED:
            head += f" · {duration(u.get('seconds'))}"
        if u.get("input_tokens") or u.get("output_tokens"):
            head += f" · {u.get('input_tokens', 0)} in / {u.get('output_tokens', 0)} out tokens"
        if u.get("cost_usd"):
            head += f" · ${u['cost_usd']:.4f}"
        if e["status"] == "failed":
            head += " · FAILED"
    lines = [head]
    if prompts:
        prompt = e.get("prompt")
        if prompt:
            lines += [f"--- prompt ({len(prompt.encode())} bytes)", prompt.rstrip("\n")]
        elif e["role"] == "worker":
            lines.append("--- prompt: not stored for worker steps")
        elif e["role"] == "verifier":
            lines.append("--- prompt: none (every criterion is a check command; no verifier model ran)")
        else:
            lines.append("--- prompt: not stored")
    if e["status"] == TurnStatus.RUNNING:
        return "\n".join(lines)
    if e["status"] == "failed":
        lines.append(f"--- failed: {e.get('error') or 'no error recorded'}")
        return "\n".join(lines)
    reply = e.get("reply")
    if reply is None:
        if e["role"] == "verifier":
            lines.append("--- reply: none (only check commands ran; see `crewctl goal events`)")
        else:
            lines.append("--- reply: none stored")
    else:
        lines += ["--- reply", reply.rstrip("\n")]
        if e.get("reply_cut"):
            lines.append(f"[... cut here: the store keeps the first {REPORT_CAP} characters of a worker's reply]")
    return "\n".join(lines)


@goal_group.command("logs")
@click.argument("goal_id", metavar="ID")
@click.option("--role", type=click.Choice(ROLES), help="Only this role's turns.")
@click.option("--turn", type=click.IntRange(min=1), help="Only turn N (the goal's turn number, as the agent saw it in CREWCTL_TURN).")
@click.option("--prompts", is_flag=True, help="Print each turn's prompt too.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing turns as they start and finish, until the goal is done (and reflected on), cancelled or failed.")
@db_option
@json_option
def goal_logs(goal_id, role, turn, prompts, follow, db, as_json):
    """What the agents were asked and what they said, turn by turn.

    \b
    Every turn in order: role, turn number, kind, when it started, how long it took, the
    tokens it used, and its reply; --prompts adds what the agent was given. Reads the
    store; no supervisor needed.
      crewctl goal logs ID --role lead --prompts
      crewctl goal logs ID --follow              # the agents' replies as they come
    --json prints a JSON array of {role, turn, kind, started_at, finished_at, usage,
    reply, ...} (with --prompts: prompt too); --follow --json prints one object per line,
    each time a turn starts or finishes.
    """
    store = read_store(db)
    gid = store.resolve_id(goal_id)
    if not follow:
        entries = log_entries(store, gid, role=role, turn=turn, prompts=prompts)
        if as_json:
            echo_json(entries)
            return
        if not entries:
            click.echo("no turns yet" + (" for that filter" if role or turn else ""))
        for i, e in enumerate(entries):
            click.echo(("\n" if i else "") + render_entry(e, prompts=prompts))
        return
    _follow(store, gid, role=role, turn=turn, prompts=prompts, as_json=as_json)


def _follow(store: Store, gid: str, *, role: str | None, turn: int | None, prompts: bool, as_json: bool) -> None:
    feed = ChangeFeed(store)
    shown: dict[Any, tuple] = {}  # what was printed of each turn: (status, runs)
    workers = _Workers()
    first = True

    def emit(entry: dict[str, Any]) -> None:
        nonlocal first
        if as_json:
            click.echo(json.dumps(entry, default=str))
        else:
            click.echo(("" if first else "\n") + render_entry(entry, prompts=prompts))
        first = False

    while True:
        # Read first: once the goal is finished and its outputs are made (the reflection turn
        # runs after sign-off), every turn read below is final.
        state, _ = store.load_goal(gid)
        settled = state.status in TERMINAL and outputs_settled(state)
        out: list[dict[str, Any]] = []
        if role in (None, "lead", "verifier", "reflector"):
            heads = store.turn_heads(gid)
            fresh = [n for n, st, runs, _ in heads if shown.get(("turn", n)) != (st, runs)]
            if fresh:
                for t in store.turns(gid, fresh, prompts=prompts):
                    shown[("turn", t["turn"])] = (t["status"], t["runs"])
                    out.append(_turn_entry(t, prompts))
        if role in (None, "worker"):
            for task in workers.update(store, gid, prompts):
                entry = workers.entries[task]
                key = ("task", task)
                if shown.get(key) != (entry["status"], 1):
                    shown[key] = (entry["status"], 1)
                    out.append(dict(entry))
        out.sort(key=_order)
        for entry in out:
            if _matches(entry, role, turn):
                emit(entry)
        sys.stdout.flush()  # a pipe reader sees each turn now, not when a buffer fills
        if settled:
            return
        feed.wait(3600)
