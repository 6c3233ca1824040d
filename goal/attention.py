"""When a goal needs its operator, and how much of each budget it has spent.

Pure: `goal show`, `goal list --attention`, `goal wait`, `crewctl watch` and the hooks all
ask these functions, so "needs you" means one thing everywhere.
"""

from __future__ import annotations

from typing import Any

from .model import GoalState
from .vocab import ATTENTION, RecordType as R, Status

__all__ = [
    "ATTENTION",
    "ENTRY_EVENTS",
    "FINISHED",
    "attention_why",
    "budget_use",
    "hook_due",
]

# What `goal wait --for done` waits for.
FINISHED = frozenset({Status.DONE, Status.CANCELLED})
# The timeline event that puts a goal into each attention state: its `at` is the "since".
ENTRY_EVENTS: dict[str, tuple[str, ...]] = {
    Status.AWAITING_INPUT: (R.CLARIFY,),
    Status.AWAITING_APPROVAL: (R.APPROVAL_NEEDED,),
    Status.AWAITING_SIGNOFF: (R.GATE_PASSED,),
    Status.BLOCKED: (R.BLOCKED,),
    Status.BUDGET_LIMITED: (R.BUDGET_LIMITED,),
    Status.FAILED: (R.FAILED,),
}


def attention_why(s: GoalState) -> str | None:
    """The attention state a goal is in, or None while it needs nobody.

    A goal still scoping whose lead asked questions waits for answers just as a running
    one does, so it counts as awaiting_input although its status says scoping.
    """
    if s.status in ATTENTION:
        return s.status
    if s.status == Status.SCOPING and s.open_clarify is not None:
        return Status.AWAITING_INPUT
    return None


def hook_due(old: GoalState | None, new: GoalState) -> str | None:
    """Which hook a transition from `old` to `new` fires: "on_attention" on each entry into
    an attention state (a move from one attention state to another is a new entry),
    "on_done" when the goal becomes done; None otherwise."""
    if new.status == Status.DONE:
        return "on_done" if old is None or old.status != Status.DONE else None
    why = attention_why(new)
    if why is None:
        return None
    before = attention_why(old) if old is not None else None
    return "on_attention" if before != why else None


def budget_use(s: GoalState) -> list[dict[str, Any]]:
    """Spend against each budget that is set: [{budget, used, limit, percent}]."""
    out = []
    for name, used, limit in (
        ("tokens", s.spend.tokens, s.budget.tokens),
        ("seconds", round(s.spend.seconds, 3), s.budget.seconds),
        ("cost_usd", round(s.spend.cost_usd, 6), s.budget.cost_usd),
    ):
        if limit:
            out.append({"budget": name, "used": used, "limit": limit, "percent": round(100.0 * used / limit, 1)})
    return out
