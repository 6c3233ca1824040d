"""What `goal show`, `goal list` and `crewctl watch` say about a goal, in one place.

Each function takes the JSON shapes the store gives (`Store.view`, `Store.list_goals`),
so the text a person reads and the JSON a script reads cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

from ..goal.vocab import Status
from ._common import duration, human_time, since_seconds

__all__ = ["activity", "bar", "filter_goals", "list_table", "now_lines", "spend_lines", "spend_summary", "uncounted_lines", "waits_for"]

_WAITS = {
    Status.AWAITING_INPUT: "your answers",
    Status.AWAITING_APPROVAL: "your approval of a step",
    Status.AWAITING_SIGNOFF: "your sign-off",
    Status.BLOCKED: "you: blocked",
    Status.BUDGET_LIMITED: "a bigger budget",
    Status.FAILED: "you: failed",
    Status.PAUSED: "resume",
}


def activity(g: dict[str, Any], now: datetime | None = None, *, compact: bool = False) -> str:
    """What runs now: "lead turn 7 (work), 4m12s" ("4m12s lead#7 work" compact); "" when nothing does."""
    f = g.get("in_flight")
    if not f or f.get("interrupted"):
        return ""
    elapsed = since_seconds(f.get("started_at"), now)
    if compact:
        # A table column: the clock first, so a narrow column still shows it, and in whole
        # minutes past the first one (a row that changes every second costs a redraw).
        clock = duration(elapsed) if elapsed is None or elapsed < 60 else duration(elapsed // 60 * 60).replace("m00s", "m")
        return (f"{clock} " if elapsed is not None else "") + f"{f['role']}#{f['turn']} {f['kind']}"
    what = f"{f['role']} turn {f['turn']} ({f['kind']})"
    if f.get("round"):
        what += f" round {f['round']}"
    return f"{what}, {duration(elapsed)}" if elapsed is not None else what


def waits_for(g: dict[str, Any]) -> str:
    """What the goal waits for, in a few words ("" while the crew works)."""
    a = g.get("attention")
    if a:
        text = _WAITS.get(a["why"], a["why"])
        if a["why"] in (Status.BLOCKED, Status.FAILED, Status.BUDGET_LIMITED) and a.get("reason"):
            text += f" ({a['reason']})"
        return text
    return _WAITS.get(g["status"], "")


def bar(fraction: float | None, width: int = 10) -> str:
    """A spend bar: ▓ used, ░ left; "·" repeated when there is no budget to measure against."""
    if fraction is None:
        return "·" * width
    filled = max(0, min(width, round(fraction * width)))
    return "▓" * filled + "░" * (width - filled)


def spend_fraction(g: dict[str, Any]) -> float | None:
    """The largest share of any budget spent (None when no budget is set)."""
    u, b = g.get("usage") or {}, g.get("budget") or {}
    shares = []
    if b.get("tokens"):
        shares.append((u.get("input_tokens", 0) + u.get("output_tokens", 0)) / b["tokens"])
    if b.get("seconds"):
        shares.append((u.get("seconds") or 0) / b["seconds"])
    if b.get("cost_usd"):
        shares.append((u.get("cost_usd") or 0) / b["cost_usd"])
    return max(shares) if shares else None


def spend_summary(g: dict[str, Any]) -> str:
    u = g.get("usage") or {}
    tokens = u.get("input_tokens", 0) + u.get("output_tokens", 0)
    text = f"{count_text(tokens)} tok"
    if u.get("cost_usd"):
        text += f" ${u['cost_usd']:.2f}"
    return text


def count_text(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(int(n))


def now_lines(g: dict[str, Any]) -> list[str]:
    lines = []
    if (doing := activity(g)):
        lines.append(f"  now:       {doing}")
    a = g.get("attention")
    if a:
        lines.append(f"  needs you: {waits_for(g)} since {human_time(a.get('since'))}")
    return lines


def spend_lines(g: dict[str, Any]) -> list[str]:
    u = g["usage"]
    spend = f"{u['input_tokens']} in / {u['output_tokens']} out tokens, {duration(u['seconds'])} of agent time"
    if u.get("cost_usd"):
        spend += f", ${u['cost_usd']:.4f}"
    lines = [f"  spend:     {spend}", *uncounted_lines(g)]
    names = {"tokens": "tokens", "seconds": "time", "cost_usd": "cost"}
    for use in g.get("budget_use") or ():
        used, limit = use["used"], use["limit"]
        if use["budget"] == "seconds":
            shown = f"{duration(used)} of {duration(limit)}"
        elif use["budget"] == "cost_usd":
            shown = f"${used:.2f} of ${limit:g}"
        else:
            shown = f"{used} of {limit}"
        lines.append(f"  budget:    {names[use['budget']]:<7} {bar(use['percent'] / 100)} {use['percent']:5.1f}%  {shown}")
    return lines


def uncounted_lines(g: dict[str, Any]) -> list[str]:
    """Said wherever the spend is: turns whose brain reported no tokens, which a token budget
    cannot count (an agent CLI that prints no usage, a server that streams none)."""
    n = (g.get("usage") or {}).get("uncounted_turns") or 0
    if not n:
        return []
    line = f"  uncounted: {n} turn{'s' * (n != 1)} reported no token usage"
    if (g.get("budget") or {}).get("tokens"):
        line += ": the token budget cannot count them (a --time-budget can)"
    return [line]


def filter_goals(goals: list[dict[str, Any]], statuses: Iterable[str], attention: bool) -> list[dict[str, Any]]:
    wanted = set(statuses)
    return [g for g in goals if (not wanted or g["status"] in wanted) and (not attention or g.get("attention"))]


def list_table(goals: list[dict[str, Any]], now: datetime | None = None) -> list[str]:
    """`goal list` for people: a header row, then one line a goal, newest last."""
    now = now or datetime.now(timezone.utc)
    rows = [("ID", "STATUS", "AGE", "SPEND", "WAITS FOR / DOING", "OBJECTIVE")]
    for g in goals:
        doing = waits_for(g) if g.get("attention") or g["status"] == "paused" else activity(g, now)
        rows.append(
            (
                g["id"],
                g["status"],
                duration(since_seconds(g.get("created_at"), now)),
                spend_summary(g),
                _clip(doing, 44),
                _clip(" ".join(g["objective"].split()), 60),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
