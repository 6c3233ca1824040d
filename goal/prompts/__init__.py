"""Prompts, built from the durable goal and nothing else.

Each lead turn is rebuilt from the stored goal (objective, criteria with status and last
evidence, the last round's failures, undelivered steers, budget left, attempt n of cap, the
rules), never by replaying the conversation, so its size does not grow with the number of
turns. Every marker shown here sits inside a fence, so a model that echoes a prompt emits
nothing live; every text that came from an agent is capped by the marker parser and quoted.
"""

from __future__ import annotations

from ..markers import collapse, quote
from ..protect import describe as describe_findings
from ..model import Criterion, GoalState, Step
from . import lead, verifier, worker

__all__ = [
    "since_prompt",
    "corrective_lead_prompt",
    "corrective_verifier_prompt",
    "lead_prompt",
    "verifier_prompt",
    "worker_prompt",
]

# Caps on what one prompt carries, so a pathological goal cannot blow up a prompt either.
MAX_STEERS_PER_TURN = 10
MAX_REPORTS_PER_TURN = 50
OBJECTIVE_CAP = 4000
REPORT_CAP = 1500
EVIDENCE_CAP = 600
MAX_PROTECTED_PATHS = 50


def lead_prompt(state: GoalState, kind: str, now_epoch: float | None = None) -> str:
    """The whole prompt of a lead turn of the given kind (see lead.INSTRUCTIONS)."""
    parts = [lead.PREAMBLE, _objective(state), _criteria(state, for_lead=True)]
    if state.turn == 0 and state.briefing:
        # The goal's first turn only: memory of earlier goals in this workspace and the
        # skills on this machine, capped where they are made (goal.memory, goal.skills).
        parts.append(state.briefing)
    body = lead.INSTRUCTIONS[kind]
    extra = _turn_context(state, kind)
    parts.append("## This turn\n" + body + (("\n\n" + extra) if extra else ""))
    parts.append(_status(state))
    parts.append(lead.RULES_SCOPING if state.status == "scoping" else lead.RULES)
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def since_prompt(state: GoalState, steers, *, criteria_changed: bool) -> str:
    """What reached the goal after a lead prompt was written (while the goal was paused,
    blocked or backing off), appended to that prompt when its turn runs again: the turn
    the operator resumes is the one that hears what they said in the meantime."""
    parts = ["## Since this turn was first asked", "The operator or the crew added what follows; it overrides the above where they differ."]
    if criteria_changed:
        parts.append("The acceptance criteria changed. They now read:\n" + _criteria(state, for_lead=True))
    if state.reports:
        shown = state.reports[:MAX_REPORTS_PER_TURN]
        parts.append(
            "Reports:\n"
            + "\n".join(f"- {_REPORT_TITLES[r.kind].format(step=r.step)}\n{quote(r.text[:REPORT_CAP])}" for r in shown)
        )
    if steers:
        parts.append(
            "The operator steers (follow this; it overrides your plan):\n" + "\n".join(quote(s.text) for s in steers)
        )
    return "\n\n" + "\n\n".join(parts) + "\n"


def corrective_lead_prompt(state: GoalState, errors: list[tuple[str, int, str]]) -> str:
    listing = "\n".join(f"- {kind.upper()} block at line {line}: {collapse(reason, 200)}" for kind, line, reason in errors)
    parts = [
        lead.PREAMBLE,
        _objective(state),
        _criteria(state, for_lead=True),
        "## This turn\n" + lead.CORRECTIVE + "\n\n" + listing,
        _status(state),
        lead.RULES_SCOPING if state.status == "scoping" else lead.RULES,
    ]
    return "\n\n".join(parts).rstrip() + "\n"


def verifier_prompt(state: GoalState) -> str:
    """Objective, locked criteria and the READY summary as unverified claims. Nothing else."""
    return _verifier_parts(state, [verifier.INSTRUCTIONS])


def corrective_verifier_prompt(state: GoalState, reason: str) -> str:
    """The verifier's second chance stands alone: it runs as a fresh session that never saw
    the reply being corrected, so it gets the whole verify prompt again, told why the
    earlier reply (another session's, not its own) counted for nothing."""
    return _verifier_parts(state, [verifier.CORRECTIVE.format(reason=collapse(reason, 300)), verifier.INSTRUCTIONS])


def _verifier_parts(state: GoalState, tail: list[str]) -> str:
    claims = state.ready_summary or "(no summary)"
    if state.ready_evidence:
        claims += "\n\nEvidence the lead cites:\n" + "\n".join(f"- {e}" for e in state.ready_evidence)
    parts = [
        verifier.PREAMBLE,
        _objective(state),
        _criteria(state, for_lead=False),
        verifier.CLAIMS_HEADER + "\n" + quote(claims),
        *tail,
    ]
    return "\n\n".join(parts).rstrip() + "\n"


def worker_prompt(state: GoalState, step: Step) -> str:
    detail = f"\n\nDetail:\n{quote(step.detail)}" if step.detail else ""
    others = [s for s in state.steps if s.plan == step.plan and s.id != step.id][:20]
    context = ""
    if others:
        context = "\n\nOther steps of the same plan (done by others; do not do them):\n" + "\n".join(
            f"- {s.id}: {s.title}" for s in others
        )
    return (
        worker.PREAMBLE
        + "\n\n"
        + _objective(state)
        + f"\n\n## Your step: {step.id}: {step.title}"
        + detail
        + context
        + "\n\n"
        + worker.RULES
        + "\n"
    )


# -- pieces -------------------------------------------------------------------------------


def _objective(state: GoalState) -> str:
    text = "## Objective\n" + quote(state.objective[:OBJECTIVE_CAP])
    if state.statement:
        text += "\n\nScope statement: " + collapse(state.statement, 2000)
    return text


def _criteria(state: GoalState, *, for_lead: bool) -> str:
    if not state.criteria:
        return "## Acceptance criteria\nNot locked yet."
    lines = ["## Acceptance criteria (locked)"]
    for c in state.criteria:
        lines.append(_criterion_line(c, for_lead))
    return "\n".join(lines)


def _criterion_line(c: Criterion, for_lead: bool) -> str:
    if c.check is not None:
        how = f"check command, run by crewctl itself (its exit code decides): {quote_inline(c.check)}"
    else:
        how = "verify: " + collapse(str(c.verify), 2000)
    line = f"- {c.id}: {collapse(c.text, 1000)}\n  {how}"
    if for_lead:
        line += f"\n  status: {c.status}"
        if c.evidence:
            line += f"; last evidence: {collapse(c.evidence, EVIDENCE_CAP)}"
    return line


def quote_inline(text: str) -> str:
    """Inline code span around a single-line text, longer than any backtick run in it."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _turn_context(state: GoalState, kind: str) -> str:
    parts = []
    if kind == "held" and state.last_failures:
        parts.append(
            f"The gate held at round {state.round}. Failed: "
            + ", ".join(cid for cid, _ in state.last_failures[:20])
            + " (the evidence the verifier or crewctl's checks gave is under each criterion above)."
        )
    if kind == "held" and state.protect.findings:
        parts.append(_protected_paths(state))
    if state.notes and kind == "rework":
        parts.append("The operator's notes:\n" + quote(state.notes))
    answered = [r for r in state.clarify if r.answers is not None]
    if kind == "answer" and answered:
        r = answered[-1]
        qa = []
        for q in r.questions:
            qa.append(f"- {q.id}: {collapse(q.text, 500)}\n  answer: {collapse((r.answers or {}).get(q.id, '(no answer)'), 1000)}")
        parts.append(f"The operator answered your questions (round {r.seq}):\n" + "\n".join(qa))
    if state.reports:
        shown = state.reports[:MAX_REPORTS_PER_TURN]
        parts.append(
            "Reports since your last turn:\n"
            + "\n".join(f"- {_REPORT_TITLES[r.kind].format(step=r.step)}\n{quote(r.text[:REPORT_CAP])}" for r in shown)
        )
    if state.steers:
        steers = state.steers[:MAX_STEERS_PER_TURN]
        parts.append(
            "The operator steers (follow this; it overrides your plan):\n"
            + "\n".join(quote(s.text) for s in steers)
        )
    return "\n\n".join(parts)


def _protected_paths(state: GoalState) -> str:
    listing = describe_findings(state.protect.findings, limit=MAX_PROTECTED_PATHS)
    return (
        "No check ran this round: protected paths changed since the criteria were locked. "
        f"Restore these paths exactly as they were (e.g. `git checkout -- PATH`, `git add PATH`, "
        f"or delete what you added): {listing}. Adding new test files is fine; changing, deleting "
        "or untracking a pinned file, or adding conftest.py, pytest.ini, sitecustomize.py, a .pth "
        "file and the like, is not. If a change is really needed, say so with BLOCKED: only the "
        "operator can accept it."
    )


_REPORT_TITLES = {
    "step_completed": "step {step} completed; the worker reports",
    "step_failed": "step {step} FAILED after its retries; replan or work around it",
    "step_rejected": "step {step} was rejected by the operator",
    "criteria_updated": "the operator changed the acceptance criteria",
    "stale_round": "the criteria changed while the verifier worked, so that round's verdict was discarded",
    "clarify_closed": "your questions (round {step}) are closed unanswered: the operator set the acceptance criteria above instead; work to them",
}


def _status(state: GoalState) -> str:
    lines = ["## Status"]
    if state.criteria:
        lines.append(f"Gate attempt {state.attempt + 1} of {state.attempt_cap + 1}; gate rounds so far: {state.round}.")
    lines.append(_budget_line(state))
    if state.steps:
        current = [s for s in state.steps if s.plan == state.plan]
        lines.append(
            f"Plan {state.plan}: "
            + ", ".join(f"{s.id} {s.status}" for s in current[:50])
        )
    return "\n".join(lines)


def _budget_line(state: GoalState) -> str:
    b, s = state.budget, state.spend
    parts = []
    if b.tokens:
        parts.append(f"tokens {max(b.tokens - s.tokens, 0)} left of {b.tokens}")
    if b.seconds:
        parts.append(f"time {max(int(b.seconds - s.seconds), 0)}s left of {int(b.seconds)}s")
    if b.cost_usd:
        parts.append(f"cost ${max(b.cost_usd - s.cost_usd, 0):.2f} left of ${b.cost_usd:.2f}")
    return "Budget: " + ("; ".join(parts) if parts else "no limit set") + "."
