"""The store's read side for mission control, on SQLite and PostgreSQL (the `db_url` fixture):
what `goal list`, `goal show`, `goal logs --follow` and `crewctl watch` read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crewctl.goal import events as ev
from crewctl.goal import phases
from crewctl.goal.model import Budget, Criterion
from crewctl.store import TurnWrite, open_store
from crewctl.testing.phases import block, ready, verify

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CRITERIA = (Criterion(id="c1", text="the docs say how", verify="read README.md"),)


class Goal:
    """A goal driven through the phase machine and committed, as its supervisor would."""

    def __init__(self, store, goal_id: str, *, at: datetime = T0, criteria=CRITERIA, budget: Budget = Budget()) -> None:
        self.store, self.now = store, at
        settings = phases.GoalSettings(roster={"lead": "exec:lead", "verifier": "exec:verifier"}, budget=budget)
        t = phases.new_goal(goal_id, f"objective of {goal_id}", "/ws", settings, at, criteria=criteria)
        store.create_goal(t, at.isoformat())
        self.state, self.version = t.state, 1

    def step(self, event, turn_writes=()) -> None:
        self.now += timedelta(seconds=1)
        t = phases.step(self.state, event, self.now)
        self.version = self.store.commit(self.state, self.version, t, self.now.isoformat(), turn_writes=turn_writes)
        self.state = t.state

    def reply(self, text: str) -> None:
        f = self.state.in_flight
        if f.role == "lead":
            self.step(ev.TurnFinished(turn=f.turn, text=text), (TurnWrite(turn=f.turn, reply=text),))
        else:
            self.step(ev.RoundFinished(round=self.state.round, turn=f.turn, text=text), (TurnWrite(turn=f.turn, reply=text),))


@pytest.fixture
def store(db_url, tmp_path):
    s = open_store(db_url, home=str(tmp_path / "home"))
    yield s
    s.close()


def test_list_goals_gives_the_turn_in_flight_with_its_start_and_the_attention_since(store):
    working = Goal(store, "g-working")
    passed = Goal(store, "g-passed", at=T0 + timedelta(minutes=1))
    passed.reply(ready())
    passed.reply(verify(("c1", "pass", "seen")))
    rows = {g["id"]: g for g in store.list_goals()}
    assert rows["g-working"]["in_flight"]["started_at"] == T0.isoformat()
    assert rows["g-working"]["attention"] is None
    assert rows["g-passed"]["in_flight"] is None
    assert rows["g-passed"]["attention"] == {"why": "awaiting_signoff", "since": passed.now.isoformat(), "reason": None}
    assert [g["id"] for g in store.list_goals(updated_since=(T0 + timedelta(minutes=1)).isoformat())] == ["g-passed"]
    assert working.state.status == "running"


def test_view_fills_in_when_the_turn_started_and_when_the_goal_started_waiting(store):
    g = Goal(store, "g-blocks")
    g.reply("thinking")  # a continuation turn starts a second later
    view = store.view("g-blocks")
    assert view["in_flight"]["turn"] == 2 and view["in_flight"]["started_at"] == g.now.isoformat()
    g.reply(block("blocked", {"reason": "no key"}))
    view = store.view("g-blocks")
    assert view["in_flight"] is None
    assert view["attention"] == {"why": "blocked", "since": g.now.isoformat(), "reason": "no key"}


def test_the_change_mark_moves_with_every_commit_and_only_then(store):
    g = Goal(store, "g-mark")
    before = store.change_mark()
    assert store.change_mark() == before
    g.reply("more")
    assert store.change_mark() != before


def test_turn_heads_events_by_type_and_chosen_turns_read_only_what_a_follower_needs(store):
    g = Goal(store, "g-follow")
    g.reply("first")
    g.reply(ready())
    heads = store.turn_heads("g-follow")
    assert [(n, status) for n, status, _, _ in heads] == [(1, "finished"), (2, "finished"), (3, "running")]
    [second] = store.turns("g-follow", [2], prompts=False)
    assert second["reply"] == ready() and second["prompt"] is None
    [verifier] = store.turns("g-follow", [3])
    assert verifier["role"] == "verifier" and "the docs say how" in verifier["prompt"]
    types = {e["type"] for e in store.events("g-follow", types=["ready", "round_started"])}
    assert types == {"ready", "round_started"}
    assert store.status_of("g-follow") == "verifying"
