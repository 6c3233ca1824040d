"""What a commit carries besides the state, and the store's limits."""

from __future__ import annotations

import threading
from dataclasses import dataclass


from ..exceptions import StoreError


# Fields of GoalState that live in their own tables rather than in goal.data.
_TABLE_FIELDS = ("criteria", "steps", "clarify", "steers", "baseline")
MAX_SESSION_MESSAGES = 40  # API brains see at most this much history: bounded, like the prompts
MAX_BATCH = 256  # transitions in one group commit
READ_CONNECTIONS = {"sqlite": 4, "postgres": 6}
_BIND_LOCK = threading.Lock()  # peewee's model binding is global; DDL binds it for a moment
_PG_SCHEMA_LOCK = 0x63726577  # pg_advisory_xact_lock key: two processes creating the schema at once


class StaleWrite(StoreError):
    code = "stale_write"


@dataclass(frozen=True)
class TurnWrite:
    """What the turn table learns from one transition, besides the timeline."""

    turn: int
    reply: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SessionWrite:
    role: str
    session_id: str
    resume_ref: str | None = None
    messages: tuple[tuple[str, str], ...] = ()  # appended (role, content) pairs
    reset: bool = False  # a new session replaces the old one
