"""What a goal looks like to people and scripts: the `goal show --json` shape (contract).

At least: id, objective, status, criteria (id, text, verify, status, evidence), attempt,
attempt_cap, round, usage (input_tokens, output_tokens, seconds), budget, reason.
"""

from __future__ import annotations

from typing import Any

from .attention import attention_why, budget_use
from .model import GoalState
from .protect import forbidden_present, pinned_files
from .vocab import Status

__all__ = ["budget_report", "envelope_view", "goal_view", "protect_view", "summary_view"]


def goal_view(s: GoalState, *, started_at: str | None = None, since: str | None = None) -> dict[str, Any]:
    """`started_at` (when the in-flight turn started) and `since` (when the goal entered its
    attention state) come from the timeline; the store's `Store.view` fills them in."""
    open_round = s.open_clarify
    why = attention_why(s)
    return {
        "id": s.id,
        "objective": s.objective,
        "status": s.status,
        "reason": s.reason if s.status in (Status.BLOCKED, Status.FAILED, Status.PAUSED, Status.BUDGET_LIMITED, Status.CANCELLED) else None,
        "resume_to": s.resume_to,
        "workspace": s.workspace,
        "created_at": s.created_at,
        "roster": dict(s.roster),
        "statement": s.statement,
        "criteria": [
            {
                "id": c.id,
                "text": c.text,
                "verify": c.verify if isinstance(c.verify, str) else dict(c.verify),
                "status": c.status,
                "evidence": c.evidence,
            }
            for c in s.criteria
        ],
        "revision": s.revision,
        "round": s.round,
        "attempt": s.attempt,
        "attempt_cap": s.attempt_cap,
        "turn": s.turn,
        "in_flight": None
        if s.in_flight is None
        else {
            "turn": s.in_flight.turn,
            "role": s.in_flight.role,
            "kind": s.in_flight.kind,
            "round": s.in_flight.round,
            "interrupted": s.in_flight.interrupted,
            "started_at": started_at,
        },
        "attention": None if why is None else {"why": why, "since": since, "reason": s.reason},
        "questions": None
        if open_round is None
        else {
            "seq": open_round.seq,
            "intro": open_round.intro,
            "questions": [{"id": q.id, "text": q.text, "options": list(q.options), "multi": q.multi} for q in open_round.questions],
        },
        "plan": s.plan,
        "steps": [
            {
                "id": st.id,
                "plan": st.plan,
                "title": st.title,
                "lane": st.lane,
                "status": st.status,
                "needs_approval": st.needs_approval,
                "approved": st.approved,
                "attempts": st.attempts,
                "holder": st.holder,
            }
            for st in s.steps
        ],
        "pending_steers": len(s.steers),
        "usage": {
            "input_tokens": s.spend.input_tokens,
            "output_tokens": s.spend.output_tokens,
            "cached_tokens": s.spend.cached_tokens,
            "cost_usd": round(s.spend.cost_usd, 6),
            "seconds": round(s.spend.seconds, 3),
            "uncounted_turns": s.spend.uncounted_turns,
        },
        "budget": {"tokens": s.budget.tokens, "seconds": s.budget.seconds, "cost_usd": s.budget.cost_usd},
        "budget_left": budget_report(s),
        "budget_use": budget_use(s),
        "start": dict(s.start) if s.start else None,
        "unsandboxed": s.unsandboxed,
        "retry_at": s.retry_at,
        "resume_at": s.resume_at,
        "last_error": s.last_error,
        # Durable outputs (docs/contracts.md): what the passed gate hands over and what was learned.
        "base_commit": s.base_commit,
        "base_branch": s.base_branch,
        "envelope": envelope_view(s),
        "reflection": None if s.reflection is None else {"status": s.reflection, "tries": s.reflection_tries},
        "protect": protect_view(s),
    }


def protect_view(s: GoalState) -> dict[str, Any]:
    """`goal show --json` .protect (contract: patterns, forbidden, pinned_files, baseline_at)."""
    p = s.protect
    return {
        "enabled": p.enabled,
        "off": p.off if not p.enabled else None,
        "patterns": list(p.patterns),
        "default_patterns": p.defaults,
        "forbidden": list(p.forbidden),
        "pinned_files": pinned_files(s.baseline),
        "forbidden_present": forbidden_present(s.baseline),
        "baseline_at": p.baseline_at,
        "baseline_error": p.error,
        "unmatched": list(p.unmatched),
        "findings": [{"path": f[0], "kind": f[1], "rule": f[2]} for f in p.findings],
    }


def envelope_view(s: GoalState) -> dict[str, Any] | None:
    """The PR envelope as `goal show --json`, `goal pr` and the report name it."""
    e = s.envelope
    if e is None:
        return None
    return {
        "round": e.round,
        "status": e.status,
        "branch": e.branch,
        "commit": e.commit,
        "base": e.base,
        "files": list(e.files),
        "pr": e.pr,
        "patch": e.patch,
        "error": e.error,
    }


def budget_report(s: GoalState) -> dict[str, Any]:
    """Each budget that is set: its limit, what is spent, what is left (never below 0) and
    the percent spent (past 100 when the last turn went over)."""
    out: dict[str, Any] = {}
    for name, limit, used in (
        ("tokens", s.budget.tokens, s.spend.tokens),
        ("seconds", s.budget.seconds, round(s.spend.seconds, 3)),
        ("cost_usd", s.budget.cost_usd, round(s.spend.cost_usd, 6)),
    ):
        if limit:
            left = max(limit - used, 0)
            out[name] = {
                "limit": limit,
                "spent": used,
                "left": round(left, 6) if isinstance(left, float) else left,
                "percent": round(100.0 * used / limit, 1),
            }
    return out


def summary_view(s: GoalState) -> dict[str, Any]:
    return {"id": s.id, "objective": s.objective, "status": s.status, "reason": s.reason, "round": s.round, "attempt": s.attempt}
