"""Drive the pure phase machine in tests: no threads, sockets or clocks.

    g = Drive.new(criteria=[("c1", "tests pass", {"run": "pytest"})])
    g.lead('CREW_READY_BEGIN\\n{"summary": "done"}\\nCREW_READY_END')
    g.verifier(checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff"
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from ..goal import events as ev
from ..goal import phases
from ..goal.effects import Record, Transition
from ..goal.model import GOAL_DEFAULTS, Budget, Criterion, GoalState, Protect

__all__ = ["Drive", "block", "ready", "reflect_block", "verify"]

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


def block(kind: str, payload: Any) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"CREW_{kind.upper()}_BEGIN\n{body}\nCREW_{kind.upper()}_END\n"


def ready(summary: str = "done", **extra: Any) -> str:
    return block("ready", {"summary": summary, **extra})


def verify(*results: tuple[str, str, str]) -> str:
    return block("verify", {"results": [{"id": i, "verdict": v, "evidence": e} for i, v, e in results]})


def reflect_block(summary: str = "fixed it", **extra: Any) -> str:
    return block("reflect", {"summary": summary, "lessons": [], "memory": [], **extra})


class Drive:
    """A goal and everything it has recorded and asked for, one event at a time."""

    def __init__(self, transition: Transition, now: datetime = T0) -> None:
        self.state: GoalState = transition.state
        self.records: list[Record] = list(transition.records)
        self.last = transition
        self.now = now

    @classmethod
    def new(
        cls,
        criteria: list[tuple[str, str, Any]] | None = None,
        *,
        verifier: bool = True,
        budget: Budget = Budget(),
        attempt_cap: int = GOAL_DEFAULTS["attempt_cap"],
        max_auto_turns: int = GOAL_DEFAULTS["max_auto_turns"],
        max_turns: int = GOAL_DEFAULTS["max_turns"],
        now: datetime = T0,
        protect: Protect = Protect(),
    ) -> "Drive":
        roster = {"lead": "exec:lead"}
        if verifier:
            roster["verifier"] = "exec:verifier"
        settings = phases.GoalSettings(
            roster=roster, budget=budget, attempt_cap=attempt_cap, max_auto_turns=max_auto_turns, max_turns=max_turns,
            protect=protect,
        )
        crit = tuple(Criterion(id=i, text=t, verify=v) for i, t, v in (criteria or ()))
        return cls(phases.new_goal("g1", "make the tests pass", "/ws", settings, now, criteria=crit), now)

    # -- feeding events ----------------------------------------------------------------------

    def step(self, event: ev.Event, after: float = 0.0) -> Transition:
        self.now = self.now + timedelta(seconds=after)
        t = phases.step(self.state, event, self.now)
        self.state = t.state
        self.records.extend(t.records)
        self.last = t
        return t

    def lead(self, text: str, usage: ev.TurnUsage = ev.TurnUsage()) -> Transition:
        f = self.state.in_flight
        assert f is not None and f.role == "lead", f"no lead turn in flight: {f}"
        return self.step(ev.TurnFinished(turn=f.turn, text=text, usage=usage))

    def verifier(self, text: str | None = None, checks: dict | None = None, usage: ev.TurnUsage = ev.TurnUsage()) -> Transition:
        f = self.state.in_flight
        assert f is not None and f.role == "verifier", f"no verifier turn in flight: {f}"
        return self.step(ev.RoundFinished(round=self.state.round, turn=f.turn, text=text, checks=checks, usage=usage))

    def envelope_built(self, error: str | None = None, **fields: Any) -> Transition:
        env = self.state.envelope
        assert env is not None and env.status == "pending", f"no envelope being built: {env}"
        if error is None:
            fields = {"branch": f"crewctl/{self.state.id}", "commit": "c" * 40, "base": "b" * 40, **fields}
        return self.step(ev.EnvelopeBuilt(round=env.round, error=error, **fields))

    def reflector(self, text: str, usage: ev.TurnUsage = ev.TurnUsage()) -> Transition:
        """The reflection's reply; its digest is made first, as the shell would."""
        if self.state.in_flight is None:
            self.step(ev.ReflectionStarted(prompt="the digest"))
        f = self.state.in_flight
        assert f is not None and f.role == "reflector", f"no reflection turn in flight: {f}"
        return self.step(ev.ReflectionFinished(turn=f.turn, text=text, usage=usage))

    # -- looking -----------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.state.status

    def types(self, transition: Transition | None = None) -> list[str]:
        t = transition or self.last
        return [r.type for r in t.records]

    def all_types(self) -> list[str]:
        return [r.type for r in self.records]

    def effects(self, kind: type, transition: Transition | None = None) -> list:
        t = transition or self.last
        return [e for e in t.effects if isinstance(e, kind)]

    def record(self, type_: str) -> Record:
        matches = [r for r in self.records if r.type == type_]
        assert matches, f"no {type_} record in {self.all_types()}"
        return matches[-1]
