"""What can happen to a goal: the inputs of `phases.step`.

Operator events come from the CLI through the control RPC; the rest come from the role
actors, the dispatcher and the supervisor's own timers and recovery. Every event is a plain
frozen value, so a test can drive the phase machine with no threads, sockets or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .model import CheckRun, Criterion

__all__ = [
    "ActorCrashed",
    "Answer",
    "Approve",
    "BaselineTaken",
    "Cancel",
    "EditCriteria",
    "EditProtect",
    "EnvelopeBuilt",
    "Event",
    "Fail",
    "Fault",
    "HookFailed",
    "Pause",
    "RaiseBudget",
    "Recover",
    "ReflectionFailed",
    "ReflectionFinished",
    "ReflectionStarted",
    "Unsandboxed",
    "Resume",
    "RoundFinished",
    "SendBack",
    "Signoff",
    "Steer",
    "StepAssigned",
    "StepFailed",
    "StepFinished",
    "TurnFailed",
    "TurnFinished",
    "TurnUsage",
    "Wake",
]


@dataclass(frozen=True)
class TurnUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0


# -- operator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    answers: Mapping[str, str]
    seq: int | None = None  # the clarify round the answers bind to; None means the open one


@dataclass(frozen=True)
class EditCriteria:
    criteria: tuple[Criterion, ...]  # whole-list replacement, already validated


@dataclass(frozen=True)
class Steer:
    text: str


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class RaiseBudget:
    tokens: int | None = None
    seconds: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Approve:
    step: str
    reject: bool = False


@dataclass(frozen=True)
class Signoff:
    pass


@dataclass(frozen=True)
class SendBack:
    notes: str


@dataclass(frozen=True)
class EditProtect:
    """`crewctl goal protect`: patterns already validated; applies from the next round."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    rebaseline: bool = False


# -- actors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnFinished:
    """A lead turn's reply."""

    turn: int
    text: str
    usage: TurnUsage = TurnUsage()


@dataclass(frozen=True)
class RoundFinished:
    """A verifier turn of a gate round: crewctl's own check results plus the model's reply.

    `checks` maps criterion id to its CheckRun; it is None for a corrective verifier turn (the round's checks are already known).
    `text` is None when every criterion is a check command and no model ran.
    `protected` holds the protected-path findings as (path, kind, rule); None means the
    check did not run (protection off, or a corrective turn). `refused` says why the round
    was held before any check ran for another reason (a snapshot over its quota, no
    baseline). `snapshot` is a small summary of the round's snapshot for the timeline.
    """

    round: int
    turn: int
    text: str | None
    checks: Mapping[str, CheckRun] | None = None
    usage: TurnUsage = TurnUsage()
    host_pid: int | None = None
    protected: tuple[tuple[str, str, str], ...] | None = None
    refused: str | None = None
    snapshot: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TurnFailed:
    turn: int
    error: str
    # "error" (retry), "config" (never works), "usage_limited", "crashed", or "time_budget"
    # (the turn was stopped because the goal's time budget ran out while it ran)
    kind: str = "error"
    resume_at: str | None = None  # usage_limited: when the provider says the limit resets (ISO)
    seconds: float = 0.0  # time_budget: how long the stopped turn ran


@dataclass(frozen=True)
class ActorCrashed:
    role: str
    error: str
    turn: int | None = None


@dataclass(frozen=True)
class StepAssigned:
    step: str
    task: str
    host: str


@dataclass(frozen=True)
class StepFinished:
    step: str
    task: str
    host: str
    text: str
    usage: TurnUsage = TurnUsage()
    changed_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepFailed:
    step: str
    task: str
    host: str | None
    error: str
    lost: bool = False  # the host died or vanished with the task


# -- the supervisor itself ----------------------------------------------------------------


@dataclass(frozen=True)
class Wake:
    """A timer the goal asked for is due (a retry after backoff)."""


@dataclass(frozen=True)
class Unsandboxed:
    """The supervisor runs this goal's agents without a sandbox (`crewctl run --sandbox off`)."""

    why: str


@dataclass(frozen=True)
class Recover:
    """The supervisor (re)started with this goal loaded from the store."""


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class BaselineTaken:
    """The supervisor hashed the protected files a TakeBaseline asked for.

    `observed` maps each candidate path (goal.protect.candidates) to its content hash;
    `error` says why nothing could be hashed.
    """

    mode: str
    reason: str
    observed: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Fault:
    """The supervisor could not handle this goal: a bug met one of its events
    (`internal_error`), or its supervisor kept crashing (`crash_loop`). The goal blocks
    with the error, so the operator sees why and nothing else is touched."""

    reason: str  # "internal_error" or "crash_loop"
    error: str


@dataclass(frozen=True)
class HookFailed:
    """An operator's hook (on_attention, on_done) exited non-zero or timed out."""

    hook: str
    status: str
    error: str


# -- durable outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeBuilt:
    """The PR envelope of a passed round was made (or could not be: `error`)."""

    round: int
    branch: str | None = None
    commit: str | None = None
    base: str | None = None
    files: tuple[str, ...] = ()
    pr: str | None = None
    patch: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ReflectionStarted:
    """The shell built the reflection digest from the timeline: this is its prompt."""

    prompt: str


@dataclass(frozen=True)
class ReflectionFinished:
    turn: int
    text: str
    usage: TurnUsage = TurnUsage()


@dataclass(frozen=True)
class ReflectionFailed:
    turn: int
    error: str


Event = (
    Answer
    | EditCriteria
    | Steer
    | Pause
    | Resume
    | Cancel
    | RaiseBudget
    | Approve
    | Signoff
    | SendBack
    | EditProtect
    | TurnFinished
    | RoundFinished
    | TurnFailed
    | ActorCrashed
    | StepAssigned
    | StepFinished
    | StepFailed
    | Wake
    | Recover
    | Unsandboxed
    | Fail
    | BaselineTaken
    | Fault
    | HookFailed
    | EnvelopeBuilt
    | ReflectionStarted
    | ReflectionFinished
    | ReflectionFailed
)
