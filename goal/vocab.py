"""The goal's words: statuses and record types as `StrEnum`s, and the named sets of statuses.

Every member equals its wire text (`Status.RUNNING == "running"`), so stored rows, msgpack,
JSON and SQL see exactly the strings they always have (contract); code names the word
instead of spelling it, so a typo is an AttributeError rather than a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE",
    "ATTENTION",
    "CriterionStatus",
    "EnvelopeStatus",
    "HOLDS",
    "OPERATOR_HOLDS",
    "RecordType",
    "ReflectionStatus",
    "Status",
    "StepStatus",
    "TERMINAL",
    "TurnStatus",
    "status_after_hold",
]


class Status(StrEnum):
    SCOPING = "scoping"
    RUNNING = "running"
    VERIFYING = "verifying"
    AWAITING_SIGNOFF = "awaiting_signoff"
    DONE = "done"
    AWAITING_INPUT = "awaiting_input"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    BLOCKED = "blocked"
    BUDGET_LIMITED = "budget_limited"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL = frozenset({Status.DONE, Status.CANCELLED, Status.FAILED})
# Hold states remember where to resume (GoalState.resume_to).
HOLDS = frozenset(
    {Status.AWAITING_INPUT, Status.AWAITING_APPROVAL, Status.PAUSED, Status.BLOCKED, Status.BUDGET_LIMITED}
)
# The holds only the operator (resume, or a raised budget) lifts: no answer or approval ends them.
OPERATOR_HOLDS = frozenset({Status.PAUSED, Status.BLOCKED, Status.BUDGET_LIMITED})
# Statuses in which the crew works without waiting for the operator.
ACTIVE = frozenset({Status.SCOPING, Status.RUNNING, Status.VERIFYING, Status.AWAITING_APPROVAL})
# Statuses in which nothing moves until the operator acts (docs/contracts.md, `goal wait`,
# `goal list --attention`, the on_attention hook).
ATTENTION = frozenset(
    {
        Status.AWAITING_INPUT,
        Status.AWAITING_APPROVAL,
        Status.AWAITING_SIGNOFF,
        Status.BLOCKED,
        Status.BUDGET_LIMITED,
        Status.FAILED,
    }
)


def status_after_hold(resume_to: str | None) -> Status:
    """Where a goal goes when its hold lifts: where it was, or running if nothing was kept."""
    return Status(resume_to) if resume_to else Status.RUNNING


class CriterionStatus(StrEnum):
    PENDING = "pending"
    PASS = "pass"
    FAIL = "fail"


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class TurnStatus(StrEnum):
    """A turn row (`goal logs`): started and not yet over, replied, or failed."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class EnvelopeStatus(StrEnum):
    """The PR envelope of a passed gate: being built, built, could not be built, or no longer standing."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class ReflectionStatus(StrEnum):
    """The reflection after sign-off: to run (or running), recorded, or failed after its retry."""

    DUE = "due"
    OK = "ok"
    FAILED = "failed"


class RecordType(StrEnum):
    """Every record type the core and the actors write to a goal's event log (contract: event names)."""

    ACTOR_RESTARTED = "actor_restarted"
    ANSWER = "answer"
    APPROVAL_NEEDED = "approval_needed"
    APPROVED = "approved"
    BLOCKED = "blocked"
    BUDGET_LIMITED = "budget_limited"
    BUDGET_RAISED = "budget_raised"
    CANCELLED = "cancelled"
    CLARIFY = "clarify"
    CLARIFY_CLOSED = "clarify_closed"
    CRITERIA_UPDATED = "criteria_updated"
    DONE = "done"
    ENVELOPE = "envelope"
    ENVELOPE_SUPERSEDED = "envelope_superseded"
    FAILED = "failed"
    GATE_HELD = "gate_held"
    GATE_PASSED = "gate_passed"
    GOAL_CREATED = "goal_created"
    HOOK_FAILED = "hook_failed"
    LOCK = "lock"
    MARKER_IGNORED = "marker_ignored"
    MARKER_INVALID = "marker_invalid"
    MARKERS_CAPPED = "markers_capped"
    PAUSED = "paused"
    PLAN = "plan"
    PROTECT_BASELINE = "protect_baseline"
    PROTECT_OFF = "protect_off"
    PROTECT_UPDATED = "protect_updated"
    PROTECTED_CHANGED = "protected_changed"
    READY = "ready"
    REFLECTION = "reflection"
    REJECTED = "rejected"
    RESUMED = "resumed"
    ROUND_STARTED = "round_started"
    SEND_BACK = "send_back"
    SIGNOFF = "signoff"
    SNAPSHOT = "snapshot"
    SNAPSHOT_REFUSED = "snapshot_refused"
    STEER = "steer"
    STEER_DELIVERED = "steer_delivered"
    STEP_FAILED = "step_failed"
    STEP_FINISHED = "step_finished"
    STEP_QUEUED = "step_queued"
    STEP_RETRY = "step_retry"
    STEP_STARTED = "step_started"
    TASK_LATE = "task_late"
    TURN_FAILED = "turn_failed"
    TURN_FINISHED = "turn_finished"
    TURN_STARTED = "turn_started"
    UNSANDBOXED = "unsandboxed"
    VERDICT_DROPPED = "verdict_dropped"
    VERIFY = "verify"
    WIND_DOWN = "wind_down"
