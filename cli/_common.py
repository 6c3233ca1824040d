"""Shared CLI plumbing: the home, the store for read-only commands, JSON and text output."""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime, timezone
from typing import Any

import click

from ..goal.vocab import RecordType as R
from ..store import Store, default_home, open_store

__all__ = [
    "db_option",
    "duration",
    "echo_json",
    "format_event",
    "home_option",
    "json_line",
    "human_time",
    "json_option",
    "no_color",
    "read_store",
    "resolve_home",
]


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): set and not empty means no colour anywhere."""
    return bool(os.environ.get("NO_COLOR"))


def human_time(at: Any, now: datetime | None = None) -> str:
    """A stored time (ISO 8601, UTC) as a person reads it: local time, with the date unless
    it is today, so a line read tomorrow still says when it happened."""
    if not at:
        return "-"
    try:
        when = datetime.fromisoformat(str(at))
    except ValueError:
        return str(at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone()
    today = (now or datetime.now(timezone.utc)).astimezone().date()
    return local.strftime("%H:%M:%S") if local.date() == today else local.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """4m12s, 1h03m, 12.5s: short, for a column or a status line."""
    if seconds is None:
        return "-"
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def since_seconds(at: Any, now: datetime | None = None) -> float | None:
    """Seconds from a stored ISO time until now (None if there is no time)."""
    if not at:
        return None
    try:
        when = datetime.fromisoformat(str(at))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - when).total_seconds()


def resolve_home(ctx: click.Context | None = None) -> str:
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    home = (root.obj or {}).get("home") if isinstance(root.obj, dict) else None
    return os.path.abspath(home or default_home())


def read_store(db: str | None) -> Store:
    """The store for read-only commands: never created by reading it."""
    return open_store(db or os.environ.get("CREWCTL_DB") or None, resolve_home(), create=False)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (nothing else).")(f)


def db_option(f):
    return click.option(
        "--db",
        metavar="URL",
        envvar="CREWCTL_DB",
        default=None,
        help="Database URL (default: SQLite in $CREWCTL_HOME; env CREWCTL_DB).",
    )(f)


home_option = click.option(
    "--home",
    metavar="DIR",
    envvar="CREWCTL_HOME",
    default=None,
    help="Where state lives (env CREWCTL_HOME; default: the XDG data dir).",
)


def echo_json(data: Any) -> None:
    """JSON on stdout, always valid: non-finite numbers are refused where they enter, and
    any that a store written by an older crewctl still holds print as null."""
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, default=str, allow_nan=False)
    click.echo(text)


def json_line(data: Any) -> str:
    """One compact JSON line (`events --follow --json`), valid like echo_json's."""
    try:
        return json.dumps(data, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _short(text: Any, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_event(e: dict[str, Any]) -> str:
    """One line per timeline event, for people."""
    p = e.get("payload") or {}
    t = e["type"]
    at = human_time(e.get("at"))
    detail = _DETAIL.get(t, lambda p: "")(p)
    return f"{e['seq']:>4} {at}  {t:<16} {detail}".rstrip()


def _turn(p: dict) -> str:
    bits = f"{p.get('role')} turn {p.get('turn')}"
    if p.get("kind"):
        bits += f" ({p['kind']})"
    if p.get("round"):
        bits += f" round {p['round']}"
    if p.get("rerun"):
        bits += " RERUN"
    return bits


def _usage(p: dict) -> str:
    u = p.get("usage") or {}
    return f"{_turn(p)}: {u.get('input_tokens', 0)} in / {u.get('output_tokens', 0)} out tokens, {u.get('seconds', 0):.1f}s"


_DETAIL = {
    R.GOAL_CREATED: lambda p: _short(p.get("objective", "")),
    R.LOCK: lambda p: f"{len(p.get('criteria', []))} criteria locked by {p.get('by')}",
    R.CLARIFY: lambda p: f"round {p.get('seq')}: " + "; ".join(f"{q['id']}: {_short(q['text'], 60)}" for q in p.get("questions", [])),
    R.ANSWER: lambda p: f"round {p.get('seq')}: " + ", ".join(f"{k}={_short(v, 30)}" for k, v in (p.get("answers") or {}).items()),
    R.PLAN: lambda p: f"plan {p.get('plan')}: " + "; ".join(f"{s['id']} {_short(s['title'], 40)}" for s in p.get("steps", [])),
    R.TURN_STARTED: _turn,
    R.TURN_FINISHED: _usage,
    R.TURN_FAILED: lambda p: f"{p.get('role')} turn {p.get('turn')}: {_short(p.get('error', ''), 80)}" + (f" (retry at {human_time(p['retry_at'])})" if p.get("retry_at") else ""),
    R.MARKER_IGNORED: lambda p: f"{str(p.get('kind', '')).upper()} from {p.get('role')}: {p.get('reason')}",
    R.MARKER_INVALID: lambda p: f"{str(p.get('kind', '')).upper()} from {p.get('role')} line {p.get('line')}: {p.get('reason')}",
    R.READY: lambda p: f"round {p.get('round')}: {_short(p.get('summary', ''), 80)}",
    R.ROUND_STARTED: lambda p: f"round {p.get('round')} (revision {p.get('revision')})",
    R.VERIFY: lambda p: f"round {p.get('round')}: "
    + ", ".join(f"{r['id']} {r['verdict']}" for r in p.get("results", []))
    + (" (STALE)" if p.get("stale") else ""),
    R.GATE_HELD: lambda p: f"round {p.get('round')}: failed {', '.join(p.get('failed', [])) or '-'}" + (f" ({p['reason']})" if p.get("reason") else ""),
    R.GATE_PASSED: lambda p: f"round {p.get('round')}: every criterion passed; waiting for sign-off",
    R.STEER: lambda p: f"#{p.get('steer')}: {_short(p.get('text', ''), 80)}",
    R.STEER_DELIVERED: lambda p: f"#{p.get('steer')} in turn {p.get('turn')}",
    R.CRITERIA_UPDATED: lambda p: f"revision {p.get('revision')}: {len(p.get('criteria', []))} criteria",
    R.PAUSED: lambda p: f"was {p.get('resume_to')}",
    R.RESUMED: lambda p: f"{p.get('was')} -> {p.get('status')}" + (" (by itself: the usage limit reset)" if p.get("automatic") else ""),
    R.CANCELLED: lambda p: f"was {p.get('was')}",
    R.BLOCKED: lambda p: f"{p.get('reason')}: {_short(p.get('detail') or p.get('error') or '', 90)}"
    + (f" (resumes by itself at {p['resume_at']})" if p.get("resume_at") else ""),
    R.CLARIFY_CLOSED: lambda p: f"round {p.get('seq')}: {p.get('reason')}",
    R.MARKERS_CAPPED: lambda p: f"{p.get('role')}: {p.get('recorded')} marker records kept; "
    f"{p.get('ignored', 0)} more ignored and {p.get('invalid', 0)} more invalid only counted",
    R.BUDGET_LIMITED: lambda p: f"{p.get('budget')} budget spent",
    R.BUDGET_RAISED: lambda p: ", ".join(f"{k}={v}" for k, v in (p.get("budget") or {}).items() if v is not None),
    R.WIND_DOWN: lambda p: _short(p.get("report", ""), 100),
    R.SEND_BACK: lambda p: _short(p.get("notes", ""), 100),
    R.FAILED: lambda p: _short(p.get("reason", ""), 100),
    R.ACTOR_RESTARTED: lambda p: f"{p.get('actor')} ({p.get('restarts')} recent): {_short(p.get('error', ''), 70)}",
    R.STEP_QUEUED: lambda p: f"{p.get('step')} as {p.get('task')}" + (f" lane {p['lane']}" if p.get("lane") else ""),
    R.STEP_STARTED: lambda p: f"{p.get('step')} on {p.get('host')}",
    R.STEP_FINISHED: lambda p: f"{p.get('step')} on {p.get('host')}" + (f"; changed {', '.join(p['changed_files'][:5])}" if p.get("changed_files") else ""),
    R.STEP_RETRY: lambda p: f"{p.get('step')} attempt {p.get('attempt')}: {_short(p.get('error', ''), 70)}",
    R.STEP_FAILED: lambda p: f"{p.get('step')} after {p.get('attempts')} attempts: {_short(p.get('error', ''), 70)}",
    R.TASK_LATE: lambda p: f"{p.get('step')} result from {p.get('host')} for {p.get('task')} ignored",
    R.APPROVAL_NEEDED: lambda p: f"{p.get('step')}: {_short(p.get('title', ''), 60)} (crewctl goal approve ID {p.get('step')})",
    R.APPROVED: lambda p: str(p.get("step")),
    R.REJECTED: lambda p: str(p.get("step")),
    R.DONE: lambda p: "signed off",
    R.PROTECT_OFF: lambda p: f"protected paths off ({p.get('reason')})",
    R.PROTECT_BASELINE: lambda p: (
        f"NOT recorded ({p.get('reason')}): {_short(p.get('error', ''), 80)}" if p.get("error") else
        f"{p.get('pinned')} pinned file(s) ({p.get('reason')}, {p.get('mode')})"
        + (f"; WARNING: {', '.join(p['unmatched'])} matched no file" if p.get("unmatched") else "")
    ),
    R.PROTECT_UPDATED: lambda p: ", ".join(
        [f"+{g}" for g in p.get("added", [])] + [f"-{g}" for g in p.get("removed", [])] + (["rebaseline"] if p.get("rebaseline") else [])
    ),
    R.PROTECTED_CHANGED: lambda p: f"round {p.get('round')}: " + _short(", ".join(f"{f[0]} ({f[1]})" for f in p.get("findings", [])), 90),
    R.SNAPSHOT: lambda p: f"round {p.get('round')}: {p.get('files')} files, {p.get('bytes')} bytes"
    + (f"; left out {', '.join(p['skipped'][:5])}" if p.get("skipped") else ""),
    R.SNAPSHOT_REFUSED: lambda p: f"round {p.get('round')}: {_short(p.get('reason', ''), 90)}",
    R.HOOK_FAILED: lambda p: f"{p.get('hook')} ({p.get('status')}): {_short(p.get('error', ''), 90)}",
    R.REFLECTION: lambda p: (
        f"{len(p.get('memory') or [])} memory entr{'y' if len(p.get('memory') or []) == 1 else 'ies'}"
        + (f", skill {p['skill']['name']}" if p.get("skill") else "")
        + f": {_short(p.get('summary', ''), 70)}"
        if p.get("ok")
        else f"FAILED after {p.get('tries')} tr{'y' if p.get('tries') == 1 else 'ies'}: {_short(p.get('error', ''), 80)}"
    ),
    R.ENVELOPE: lambda p: (
        f"round {p.get('round')}: branch {p.get('branch')} at {str(p.get('commit'))[:12]}, {p.get('files')} file(s) changed"
        if p.get("ok")
        else f"round {p.get('round')}: not made: {_short(p.get('error', ''), 80)}"
    ),
    R.ENVELOPE_SUPERSEDED: lambda p: f"round {p.get('round')}'s envelope" + (f" (branch {p['branch']})" if p.get("branch") else ""),
}


def fail(message: str, code: int = 1) -> None:
    click.echo(f"crewctl: {message}", err=True)
    sys.exit(code)
