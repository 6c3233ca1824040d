"""What can happen to a goal: the inputs of `phases.step`.

Operator events come from the CLI through the control RPC; the rest come from the role
actors, the dispatcher and the supervisor's own timers and recovery. Every event is a plain
frozen value, so a test can drive the phase machine with no threads, sockets or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .model import Criterion

__all__ = [
    "ActorCrashed",
    "Answer",
    "Approve",
    "Cancel",
    "EditCriteria",
    "EnvelopeBuilt",
    "Event",
    "Fail",
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

    `checks` maps criterion id to {"exit": int | None, "output": str, "timed_out": bool};
    it is None for a corrective verifier turn (the round's checks are already known).
    `text` is None when every criterion is a check command and no model ran.
    """

    round: int
    turn: int
    text: str | None
    checks: Mapping[str, Mapping[str, Any]] | None = None
    usage: TurnUsage = TurnUsage()
    host_pid: int | None = None


@dataclass(frozen=True)
class TurnFailed:
    turn: int
    error: str
    kind: str = "error"  # "error" (retry), "config" (never works), "usage_limited", "crashed"


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
    | HookFailed
    | EnvelopeBuilt
    | ReflectionStarted
    | ReflectionFinished
    | ReflectionFailed
)
