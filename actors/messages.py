"""Messages between the actors of one daemon (in-process, never on the wire)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..brains import Message
from ..goal.effects import Effect
from ..goal.events import Event
from ..store import SessionWrite, TurnWrite

__all__ = [
    "Abort",
    "Busy",
    "ControlRequest",
    "Deliver",
    "Perform",
    "Reply",
    "RoleCrashed",
    "RunTurn",
    "Shutdown",
    "SupervisorStopped",
]

# reply(ok, payload): payload is the result, or (code, message) when not ok.
Reply = Callable[[bool, Any], None]


@dataclass(frozen=True)
class Deliver:
    """Apply one goal event in the goal's supervisor."""

    event: Event
    reply: Reply | None = None
    turn_writes: tuple[TurnWrite, ...] = ()
    session_writes: tuple[SessionWrite, ...] = ()
    before_record: bool = False  # a turn's reply: the after_reply_before_record crash point


@dataclass(frozen=True)
class RunTurn:
    turn: int
    kind: str
    prompt: str
    session_id: str
    history: tuple[Message, ...] = ()
    resume_ref: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    time_left: float | None = None  # of the goal's time budget: the turn is stopped past it


@dataclass(frozen=True)
class RoleCrashed:
    role: str
    error: str
    turn: int | None = None


@dataclass(frozen=True)
class ControlRequest:
    identity: bytes
    message: dict


@dataclass(frozen=True)
class Shutdown:
    grace: float = 10.0


@dataclass(frozen=True)
class SupervisorStopped:
    goal_id: str
    crashed: str | None = None  # why, if it died of an exception


@dataclass(frozen=True)
class Perform:
    """Effects handed to a newly started supervisor (a goal just created)."""

    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class Busy:
    """Asked of a supervisor while the daemon drains: is a turn of its goal still running?"""


@dataclass(frozen=True)
class Abort:
    """Past the drain's grace: stop what still runs (its turn is stored as started, so the
    next `crewctl run` runs it again)."""
