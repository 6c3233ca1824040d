"""What every brain takes and gives: a prompt in, a reply with its usage out.

A brain is stateless between calls apart from configuration; conversation state travels in
the request (`history` for API brains, `resume_ref` for agent CLIs that keep their own
sessions), so a brain object can serve many sessions and survive nothing it must remember.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Protocol

if TYPE_CHECKING:
    from ..sandbox import SandboxPolicy

__all__ = ["Brain", "Message", "TurnReply", "TurnRequest", "Usage", "MAX_REPLY_BYTES"]

# A reply larger than this is a failed turn, not something to store or parse: no agent's
# answer to one prompt is legitimately this big, and the store must never take 50 MiB rows.
MAX_REPLY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None

    def __add__(self, other: "Usage") -> "Usage":
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            cost,
        )

    def as_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True)
class Message:
    """One message of an API brain's conversation, as kept in the store."""

    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class TurnRequest:
    role: str  # "lead", "worker" or "verifier"
    goal_id: str
    session_id: str  # crewctl's id for this conversation; the verifier's is always new
    turn: int  # the goal's turn number (CREWCTL_TURN)
    prompt: str
    workdir: str
    round: int | None = None  # the gate round, for the verifier
    # The environment a subprocess brain starts from. None means this process's own; the
    # verifier host passes its scrubbed one explicitly.
    env: Mapping[str, str] | None = None
    timeout: float | None = None  # seconds for the whole turn; None means the brain's default
    history: tuple[Message, ...] = ()  # earlier messages of this session (API brains)
    resume_ref: str | None = None  # the brain's own session id from an earlier turn (CLIs)
    cancel: threading.Event | None = field(default=None, compare=False)
    # Where a subprocess brain's process runs (crewctl.sandbox); None: unsandboxed. Brains
    # that run in crewctl's own process (the HTTP ones, scripted) start no process to wrap.
    sandbox: "SandboxPolicy | None" = field(default=None, compare=False)


@dataclass(frozen=True)
class TurnReply:
    text: str
    usage: Usage = Usage()
    # The brain's own session id, when it has one (claude's session_id, codex's thread id):
    # the next turn of the same crewctl session passes it back as `resume_ref`.
    resume_ref: str | None = None


class Brain(Protocol):
    """Turns a prompt into a reply. Raises exceptions.BrainError (or a subclass) on failure."""

    spec: str

    def run(self, request: TurnRequest) -> TurnReply: ...
