"""Starting a turn: the one place a turn number is handed out, the prompt is kept in
`InFlight` (so the turn table stores it for every role, the verifier's included: an audit of
verifier isolation reads exactly what it was asked) and `turn_started` is recorded."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from .model import GoalState, InFlight, Steer
from .vocab import RecordType as R

__all__ = ["start_turn", "text_bytes"]


class _Builds(Protocol):
    state: GoalState

    def set(self, **changes: Any) -> None: ...

    def emit(self, type_: str, **payload: Any) -> None: ...


def text_bytes(text: str) -> int:
    """Bytes of a text as sent (lone surrogates from a reply counted, not refused)."""
    return len(text.encode("utf-8", "surrogatepass"))


def start_turn(
    b: _Builds,
    *,
    role: str,
    kind: str,
    prompt: str,
    turn: int | None = None,
    round: int | None = None,
    revision: int | None = None,
    rerun: bool = False,
    delivering: Iterable[Steer] = (),
    **changes: Any,
) -> int:
    """Put a new turn in flight and record its start (and the steers its prompt delivers);
    `changes` are the other state changes of the same step. Returns the turn number."""
    s = b.state
    turn = s.turn + 1 if turn is None else turn
    b.set(
        turn=max(s.turn, turn),
        in_flight=InFlight(turn=turn, role=role, kind=kind, round=round, prompt=prompt, revision=revision),
        **changes,
    )
    payload: dict[str, Any] = {"turn": turn, "role": role, "kind": kind}
    if round is not None:
        payload["round"] = round
    if rerun:
        payload["rerun"] = True
    payload["prompt_bytes"] = text_bytes(prompt)
    b.emit(R.TURN_STARTED, **payload)
    for steer in delivering:
        b.emit(R.STEER_DELIVERED, steer=steer.id, turn=turn)
    return turn
