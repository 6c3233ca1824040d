"""What the phase machine asks the world to do, and what it records.

`phases.step` returns a `Transition`: the new state, the timeline records to persist with it
in one transaction, and the effects to perform only after that transaction commits. Keeping
records apart from effects makes "persist, then act" impossible to get out of order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from .model import GoalState

__all__ = [
    "BuildEnvelope",
    "CancelWork",
    "DispatchStep",
    "Effect",
    "EndRound",
    "Record",
    "PrepareReflection",
    "Release",
    "RunLeadTurn",
    "RunReflection",
    "RunVerifierTurn",
    "SaveReflection",
    "StartRound",
    "TakeBaseline",
    "SupersedeEnvelope",
    "Transition",
    "WakeAt",
]


@dataclass(frozen=True)
class Record:
    """One entry of the goal's append-only timeline (an `event` row: seq, type, at, payload)."""

    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunLeadTurn:
    turn: int
    kind: str
    prompt: str
    new_session: bool = False
    rerun: bool = False  # same turn number and prompt as an earlier, unrecorded run
    time_left: float | None = None  # seconds left of the time budget: the turn may run no longer


@dataclass(frozen=True)
class StartRound:
    """Snapshot the workspace, run the check commands, start a fresh verifier if needed."""

    round: int
    turn: int
    prompt: str
    checks: tuple[tuple[str, str], ...]  # (criterion id, command)
    model_needed: bool
    timeout: float
    rerun: bool = False
    protect: Any = None  # a goal.protect.RoundPlan, or None when protection is off


@dataclass(frozen=True)
class TakeBaseline:
    """Hash the workspace's protected files now, outside any sandbox, and apply the result
    (a BaselineTaken event) before performing any effect that follows this one: the lead and
    workers a LOCK starts come after it, so they never run against a goal without a baseline.
    """

    mode: str  # "full" replaces the baseline; "add" pins newly covered files only
    reason: str  # "lock", "criteria", "protect", "recover"
    scope: Any  # a goal.protect.Scope: what to hash


@dataclass(frozen=True)
class RunVerifierTurn:
    """A corrective turn in the current round's verifier session."""

    round: int
    turn: int
    prompt: str


@dataclass(frozen=True)
class EndRound:
    round: int
    keep_snapshot: bool


@dataclass(frozen=True)
class DispatchStep:
    step: str
    task: str
    prompt: str
    lane: str | None
    not_before: str | None = None  # ISO time; a retry waits out its backoff


@dataclass(frozen=True)
class CancelWork:
    """Stop whatever runs for this goal: the lead's turn, the verifier, queued tasks."""

    reason: str


@dataclass(frozen=True)
class WakeAt:
    at: str  # ISO time


@dataclass(frozen=True)
class Release:
    """The goal reached a terminal status: stop its actors."""


# -- durable outputs (docs/contracts.md, "Durable outputs") --------------------------------


@dataclass(frozen=True)
class BuildEnvelope:
    """Make the PR envelope from this passed round's snapshot, before the snapshot goes."""

    round: int


@dataclass(frozen=True)
class SupersedeEnvelope:
    """The passed gate no longer stands: take down the envelope's branch and files."""

    round: int
    branch: str | None
    commit: str | None


@dataclass(frozen=True)
class PrepareReflection:
    """Build the reflection digest from the goal's timeline (the shell reads it), then
    report it back as a ReflectionStarted event, which fixes the turn and its prompt."""


@dataclass(frozen=True)
class RunReflection:
    """One reflection turn in a fresh session: role `reflector`, the workspace read-only."""

    turn: int
    prompt: str
    rerun: bool = False


@dataclass(frozen=True)
class SaveReflection:
    """Append the reflection's memory to the workspace's MEMORY.md and write its skill."""

    workspace: str
    goal_id: str
    at: str  # ISO time of the reflection, for the memory entries' provenance
    memory: tuple[tuple[str, str], ...]  # (kind, text)
    skill: Mapping[str, str] | None  # {"name", "description", "body"}


Effect = (
    RunLeadTurn
    | StartRound
    | RunVerifierTurn
    | EndRound
    | DispatchStep
    | CancelWork
    | WakeAt
    | Release
    | BuildEnvelope
    | SupersedeEnvelope
    | PrepareReflection
    | RunReflection
    | SaveReflection
    | TakeBaseline
)


class Transition(NamedTuple):
    state: GoalState
    records: tuple[Record, ...]
    effects: tuple[Effect, ...]
