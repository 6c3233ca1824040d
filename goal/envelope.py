"""The PR envelope: what a passed gate hands over for review, and when it stops standing.

When the gate passes, the phase machine records `Envelope(round, "pending")` and asks for
`BuildEnvelope`; the shell makes, from that round's snapshot and without touching the
user's branch, index or working tree, a branch `crewctl/<goal id>` with one commit of the
changes since the goal's starting commit, and `pr.md` (this module's `pr_body`) and
`pr.patch` in the goal's directory; `EnvelopeBuilt` records it. The envelope stands while
the passed gate does: a send-back, a criteria edit that re-opens the gate or a new READY
supersedes it (`settle`), and its branch and files are taken down.

Pure: no I/O; the texts are built from the goal and its timeline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping

from . import events as ev
from .effects import Record, Release, SupersedeEnvelope, Transition
from .markers import collapse
from .model import HOLDS, TERMINAL, GoalState
from .vocab import CriterionStatus, EnvelopeStatus, RecordType as R, Status

__all__ = [
    "BRANCH_PREFIX",
    "MAX_FILES",
    "branch_name",
    "commit_message",
    "gate_stands",
    "on_built",
    "pr_body",
    "pr_title",
    "settle",
]

BRANCH_PREFIX = "crewctl/"
MAX_FILES = 200  # changed paths kept in the goal and listed in pr.md
_LIVE = ("pending", "ready")


def branch_name(goal_id: str) -> str:
    return BRANCH_PREFIX + goal_id


def gate_stands(s: GoalState) -> bool:
    """The passed gate still holds: waiting for sign-off (or held there), or signed off."""
    if s.status in (Status.AWAITING_SIGNOFF, Status.DONE):
        return True
    return s.status in HOLDS and s.resume_to == Status.AWAITING_SIGNOFF


def settle(before: GoalState, transition: Transition) -> Transition:
    """If this transition made the passed gate fall, the envelope no longer stands."""
    after = transition.state
    env = after.envelope
    if env is None or env.status not in _LIVE or after.status in TERMINAL:
        return transition
    if not gate_stands(before) or gate_stands(after):
        return transition
    superseded = replace(env, status=EnvelopeStatus.SUPERSEDED)
    return Transition(
        replace(after, envelope=superseded),
        transition.records + (Record(R.ENVELOPE_SUPERSEDED, {"round": env.round, "branch": env.branch, "commit": env.commit}),),
        transition.effects + (SupersedeEnvelope(round=env.round, branch=env.branch, commit=env.commit),),
    )


def on_built(state: GoalState, e: ev.EnvelopeBuilt) -> Transition:
    env = state.envelope
    if env is None or env.round != e.round or env.status != EnvelopeStatus.PENDING:
        # Built for a round whose envelope no longer stands (sent back while it was being
        # made, or a later round passed): take down what was just made.
        if e.error is None and (env is None or env.round != e.round or env.status == EnvelopeStatus.SUPERSEDED):
            return Transition(state, (), (SupersedeEnvelope(round=e.round, branch=e.branch, commit=e.commit),))
        return Transition(state, (), ())
    if e.error is not None:
        error = collapse(e.error, 1000)
        new = replace(env, status=EnvelopeStatus.FAILED, error=error, pr=e.pr)
        record = Record(R.ENVELOPE, {"round": e.round, "ok": False, "error": error, "pr": e.pr})
    else:
        files = tuple(e.files[:MAX_FILES])
        new = replace(env, status=EnvelopeStatus.READY, branch=e.branch, commit=e.commit, base=e.base, files=files, pr=e.pr, patch=e.patch)
        record = Record(
            R.ENVELOPE,
            {"round": e.round, "ok": True, "branch": e.branch, "commit": e.commit, "base": e.base,
             "files": len(e.files), "pr": e.pr, "patch": e.patch},
        )
    after = replace(state, envelope=new)
    effects: tuple = ()
    if state.status == Status.DONE:
        from .reflect import outputs_settled

        if outputs_settled(after):
            effects = (Release(),)
    return Transition(after, (record,), effects)


# -- texts ---------------------------------------------------------------------------------


def pr_title(state: GoalState) -> str:
    first = next((line for line in state.objective.splitlines() if line.strip()), state.objective)
    return collapse(first, 72) or f"crewctl goal {state.id}"


def commit_message(state: GoalState, round_no: int) -> str:
    lines = [pr_title(state), "", f"crewctl goal {state.id}: every acceptance criterion passed gate round {round_no}.", ""]
    for c in state.criteria:
        lines.append(f"- {c.id}: {collapse(c.text, 200)}")
    return "\n".join(lines).rstrip() + "\n"


def pr_body(state: GoalState, events: Iterable[Mapping[str, Any]], *, round_no: int, branch: str | None,
            commit: str | None, base: str | None, files: Iterable[str] | None) -> str:
    """pr.md: objective, criteria with their evidence, the gate rounds, the changes, spend.
    `files` None: the changes are unknown (the workspace had no git history to compare with)."""
    timeline = list(events)
    files = None if files is None else list(files)
    out = [f"# {pr_title(state)}", ""]
    out += ["> " + line if line.strip() else ">" for line in state.objective[:4000].splitlines()] or ["> " + state.objective]
    out += [
        "",
        f"Prepared by crewctl for goal `{state.id}`: every acceptance criterion below passed gate "
        f"round {round_no}, judged by crewctl's own check commands or by an anonymous verifier "
        "that had only the criteria and a snapshot of the work.",
        "",
        "## Acceptance criteria",
        "",
    ]
    for c in state.criteria:
        how = f"check `{collapse(c.check, 300)}`" if c.check is not None else "judged by the verifier"
        mark = "x" if c.status == CriterionStatus.PASS else " "
        out.append(f"- [{mark}] **{c.id}** {collapse(c.text, 1000)} ({how})")
        if c.evidence:
            out.append(f"  > {collapse(c.evidence, 1500)}")
    out += ["", "## Gate rounds", ""]
    out += _rounds(timeline) or [f"- round {round_no}: passed"]
    out += ["", "## Changes", ""]
    if branch and commit:
        out.append(f"Branch `{branch}`, commit `{commit[:12]}` on `{(base or '')[:12]}` (the goal's starting commit).")
        out.append("")
    if files is None:
        out.append("Unknown: the workspace had no git commit when the goal started, so there is no branch or patch.")
    elif files:
        out.append(f"{len(files)} file(s) changed:")
        out += [f"- `{f}`" for f in files[:MAX_FILES]]
        if len(files) > MAX_FILES:
            out.append(f"- … and {len(files) - MAX_FILES} more (see pr.patch)")
    else:
        out.append("No file changed.")
    sp = state.spend
    cost = f", ${sp.cost_usd:.4f}" if sp.cost_usd else ""
    out += [
        "",
        "## Spend",
        "",
        f"{sp.input_tokens} input / {sp.output_tokens} output tokens, {sp.seconds:.0f}s of agent time{cost}; "
        f"{state.turn} turns.",
    ]
    return "\n".join(out).rstrip() + "\n"


def _rounds(timeline: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for e in timeline:
        p = e.get("payload") or {}
        if e.get("type") == "gate_held":
            why = f" ({collapse(str(p['reason']), 200)})" if p.get("reason") else ""
            lines.append(f"- round {p.get('round')}: held; failed {', '.join(p.get('failed') or []) or '-'}{why}")
        elif e.get("type") == "gate_passed":
            lines.append(f"- round {p.get('round')}: passed")
        elif e.get("type") == "send_back":
            lines.append(f"- sent back by the operator: {collapse(str(p.get('notes', '')), 300)}")
    return lines[-50:]
