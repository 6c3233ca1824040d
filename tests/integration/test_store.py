"""The store, the same suite on SQLite and on PostgreSQL (the `db_url` fixture).

Goals are driven by the real phase machine and written through the real commit path, so
what is stored here is what a supervisor stores. The last test runs a real `crewctl run
--db postgresql://...` through a goal's whole life.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from crewctl.exceptions import NotFound, SchemaTooNew, StoreError
from crewctl.goal import events as ev
from crewctl.goal import phases
from crewctl.goal.effects import Record, Transition
from crewctl.goal.model import (
    Budget,
    CheckRun,
    ClarifyRound,
    Criterion,
    InFlight,
    Question,
    Report,
    Spend,
    Steer,
    Step,
)
from crewctl.store import SessionWrite, StaleWrite, TurnWrite, open_store
from crewctl.store import MAX_SESSION_MESSAGES
from crewctl.testing import Supervisor, run_cli, wait_until, write_agent
from crewctl.testing.phases import ready, verify
from crewctl.testing.store import raw_sql

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CRITERIA = (
    Criterion(id="c1", text="the tests pass", verify={"run": "pytest -q"}),
    Criterion(id="c2", text="the docs say how", verify="read README.md"),
)


# -- helpers ----------------------------------------------------------------------------------


class Goal:
    """One goal driven through the phase machine and committed to a store, like a supervisor."""

    def __init__(self, store, goal_id: str, *, criteria=CRITERIA, attempt_cap: int = 1000, max_turns: int = 1000, budget: Budget = Budget()):
        self.store = store
        self.now = T0
        settings = phases.GoalSettings(
            roster={"lead": "exec:lead", "verifier": "exec:verifier"},
            budget=budget,
            attempt_cap=attempt_cap,
            max_turns=max_turns,
        )
        t = phases.new_goal(goal_id, f"objective of {goal_id}", "/ws", settings, self.now, criteria=tuple(criteria))
        store.create_goal(t, self.now.isoformat())
        self.state = t.state
        self.version = 1

    @property
    def id(self) -> str:
        return self.state.id

    def step(self, event, *, turn_writes=(), session_writes=(), store=None) -> Transition:
        self.now += timedelta(seconds=1)
        t = phases.step(self.state, event, self.now)
        self.version = (store or self.store).commit(
            self.state, self.version, t, self.now.isoformat(), turn_writes=turn_writes, session_writes=session_writes
        )
        self.state = t.state
        return t

    def lead_reply(self, text: str, **usage) -> Transition:
        f = self.state.in_flight
        assert f is not None and f.role == "lead", f
        return self.step(
            ev.TurnFinished(turn=f.turn, text=text, usage=ev.TurnUsage(**usage)),
            turn_writes=(TurnWrite(turn=f.turn, reply=text),),
            session_writes=(SessionWrite(role="lead", session_id=f"s-{self.id}"),),
        )

    def verdict(self, passed: bool, evidence: str = "") -> Transition:
        f = self.state.in_flight
        assert f is not None and f.role == "verifier", f
        text = verify(("c2", "pass", "the docs say how"))
        return self.step(
            ev.RoundFinished(
                round=self.state.round,
                turn=f.turn,
                text=text,
                checks={"c1": {"exit": 0 if passed else 1, "output": evidence or "ok", "timed_out": False}},
            ),
            turn_writes=(TurnWrite(turn=f.turn, reply=text),),
        )

    def gate_cycle(self, n: int) -> None:
        """READY, then a held gate (different evidence every round, so it never stalls)."""
        self.lead_reply("did the work\n" + ready(f"round {n}"))
        self.verdict(False, f"2 failed in round {n}")


def seqs(store, goal_id: str) -> list[int]:
    return [e["seq"] for e in store.events(goal_id)]




@pytest.fixture
def second_store(db_url, home, store):
    """Another Store on the same database: its own connections and its own writer."""
    s = open_store(db_url, home=home)
    yield s
    s.close()


# -- round trips ------------------------------------------------------------------------------


def test_a_created_goal_reads_back_exactly(store):
    g = Goal(store, "g-new", budget=Budget(tokens=50_000, seconds=3600.0, cost_usd=2.5))
    state, version = store.load_goal(g.id)
    assert state == g.state and version == 1
    assert state.in_flight.prompt and state.in_flight.role == "lead"
    assert [e["type"] for e in store.events(g.id)] == ["goal_created", "lock", "turn_started"]


def test_every_part_of_a_goal_state_round_trips_exactly(store, db_url, home):
    g = Goal(store, "g-full")
    rich = replace(
        g.state,
        status="awaiting_approval",
        resume_to="running",
        reason="waiting for step s2",
        statement="make it so",
        criteria=(
            Criterion(id="c1", text="tests pass", verify={"run": "pytest -q"}, status="fail", evidence="2 failed\nsee log"),
            Criterion(id="c2", text="documented", verify="read the README", status="pass", evidence="it is"),
            Criterion(id="c3", text="ünïcode ✓", verify="look", status="pending", evidence=None),
        ),
        revision=3,
        clarify=(
            ClarifyRound(seq=1, questions=(Question(id="q1", text="which db?", options=("sqlite", "pg"), multi=True),), intro="hi", answers={"q1": "sqlite, pg"}),
            ClarifyRound(seq=2, questions=(Question(id="q1", text="sure?"),), answers=None),
        ),
        plan=2,
        steps=(
            Step(id="s1", title="old", plan=1, status="skipped"),
            Step(id="s2", title="build", plan=2, detail="do it", lane="gpu", needs_approval=True, approved=False,
                 status="in_progress", attempts=1, task="t-9", dispatches=2, holder="host-a", result="half done"),
            Step(id="s3", title="test", plan=2, approved=True, status="completed", result="ok"),
        ),
        reports=(Report(kind="step_completed", text="s3 done", step="s3"),),
        replans=1,
        steers=(Steer(id=4, text="use the fast path"), Steer(id=5, text="and log it")),
        steers_sent=5,
        notes="rework the docs",
        turn=12,
        in_flight=InFlight(turn=12, role="lead", kind="held", round=None, prompt="the whole prompt\n" * 50, interrupted=True),
        retry_at="2026-11-21T10:00:00+00:00",
        errors_in_row=1,
        last_error="boom",
        round=4,
        round_revision=3,
        ready_summary="all done",
        ready_evidence=("ran the tests", "read the docs"),
        round_checks={"c1": CheckRun(exit=1, output="2 failed")},
        last_failures=(("c1", "2 failed"),),
        fingerprints=("abc", "def"),
        attempt=2,
        auto_turns=3,
        run_turns=7,
        lead_corrections=1,
        verifier_corrections=1,
        restarts=(1763715600.25, 1763715601.5),
        budget=Budget(tokens=100_000, seconds=7200.5, cost_usd=3.125),
        spend=Spend(input_tokens=1234, output_tokens=567, cached_tokens=89, cost_usd=0.123456789, seconds=42.75),
        wind_down=True,
        check_timeout=30.0,
    )
    version = store.commit(g.state, g.version, Transition(rich, (Record("note", {"x": 1}),), ()), "2026-11-21T09:30:00+00:00")
    loaded, loaded_version = store.load_goal(g.id)
    assert loaded == rich
    assert loaded_version == version == 2
    other = open_store(db_url, home=home)  # a store that never had it in memory
    assert other.load_goal(g.id) == (rich, 2)
    other.close()


def test_a_steer_waits_in_the_store_until_a_turn_delivers_it(store):
    g = Goal(store, "g-steer")
    g.step(ev.Steer(text="prefer small commits"))  # the lead's turn is running: it waits
    state, _ = store.load_goal(g.id)
    assert state.steers == (Steer(id=1, text="prefer small commits"),)
    assert store.steers(g.id) == [{"id": 1, "text": "prefer small commits", "created_at": g.now.isoformat(), "delivered_turn": None}]

    g.lead_reply("still working")  # no marker: the next turn starts and carries the steer
    state, _ = store.load_goal(g.id)
    assert state.steers == () and state == g.state
    assert store.steers(g.id)[0]["delivered_turn"] == state.in_flight.turn
    assert [e["type"] for e in store.events(g.id)].count("steer_delivered") == 1


def test_a_steer_delivered_at_once_is_still_recorded(store):
    g = Goal(store, "g-idle")
    g.lead_reply(ready("done"))
    g.verdict(True)  # awaiting_signoff: idle, so a steer starts a turn immediately
    g.step(ev.Steer(text="one more thing"))
    assert store.load_goal(g.id)[0].steers == ()
    [row] = store.steers(g.id)
    assert row["text"] == "one more thing" and row["delivered_turn"] == g.state.in_flight.turn


def test_a_reply_with_nul_characters_is_stored(store):
    g = Goal(store, "g-nul")
    g.lead_reply("binary\x00junk from a tool")
    [turn] = [t for t in store.turns(g.id) if t["turn"] == 1]
    assert turn["reply"].startswith("binary") and turn["reply"].endswith("junk from a tool")


# -- one transaction ----------------------------------------------------------------------------


def test_a_transition_whose_event_collides_leaves_nothing_behind(store, db_url, home):
    g = Goal(store, "g-collide")
    before_state, before_version = store.load_goal(g.id)
    before_events = store.events(g.id)
    before_turns = store.turns(g.id)
    # A stray row where the transition's second event will go: the (goal, seq) key refuses it.
    last = before_events[-1]["seq"]
    raw_sql(db_url, home, 'INSERT INTO "event" ("goal", "seq", "type", "at", "payload") VALUES (?, ?, ?, ?, ?)',
            (g.id, last + 2, "stray", "x", "{}"))
    t = phases.step(g.state, ev.TurnFinished(turn=1, text=ready("done")), T0 + timedelta(seconds=5))
    assert len(t.records) >= 3
    with pytest.raises(StoreError):
        store.commit(g.state, g.version, t, "2026-11-21T09:05:00+00:00", turn_writes=(TurnWrite(turn=1, reply="r"),))
    assert store.load_goal(g.id) == (before_state, before_version)
    assert [e for e in store.events(g.id) if e["type"] != "stray"] == before_events
    assert store.turns(g.id) == before_turns
    # With the stray row gone, the very same transition commits.
    raw_sql(db_url, home, 'DELETE FROM "event" WHERE "type" = ?', ("stray",))
    assert store.commit(g.state, g.version, t, "2026-11-21T09:05:00+00:00") == before_version + 1
    assert seqs(store, g.id) == list(range(1, last + len(t.records) + 1))


def test_a_write_that_fails_midway_changes_nothing(store):
    g = Goal(store, "g-midway")
    before = store.load_goal(g.id)
    n_events = len(store.events(g.id))
    # The goal row is updated first; the criterion insert after it breaks NOT NULL.
    t = phases.step(g.state, ev.Steer(text="x"), T0 + timedelta(seconds=1))
    broken = t._replace(state=replace(t.state, status="verifying", criteria=(Criterion(id="c1", text=None, verify="v"),)))
    with pytest.raises(StoreError):
        store.commit(g.state, g.version, broken, "2026-11-21T09:01:00+00:00")
    assert store.load_goal(g.id) == before
    assert len(store.events(g.id)) == n_events and store.steers(g.id) == []


def committed_together(store, commits) -> list:
    """Run the commit callables from threads while the store's writer is parked, so that
    they all queue up and go into one transaction; their results (or errors) in order."""
    parked, release = threading.Event(), threading.Event()

    def park(tx):
        parked.set()
        release.wait(10)

    parker = threading.Thread(target=store._write, args=(park, None))
    parker.start()
    assert parked.wait(10)
    batches = store._writer.batches
    results: list = [None] * len(commits)

    def run(i: int) -> None:
        try:
            results[i] = commits[i]()
        except StoreError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(commits))]
    for th in threads:
        th.start()
    wait_until(lambda: store._writer.queue.qsize() == len(commits), timeout=10, message="all commits queued")
    release.set()
    for th in threads + [parker]:
        th.join(10)
    assert store._writer.batches == batches + 2  # the parked one, then all of them at once
    return results


def steer_commit(store, g: Goal, *, poison: bool = False, version: int | None = None):
    t = phases.step(g.state, ev.Steer(text=f"steer {g.id}"), T0 + timedelta(seconds=1))
    if poison:  # a criterion without text: NOT NULL refuses it after the goal row is written
        t = t._replace(state=replace(t.state, criteria=(Criterion(id="c1", text=None, verify="v"),)))
    return lambda: store.commit(g.state, g.version if version is None else version, t, "2026-11-21T09:01:00+00:00")


def test_transitions_of_many_goals_commit_together_in_one_transaction(store):
    goals = [Goal(store, f"g-batch{i}") for i in range(8)]
    merged = store._writer.merged
    assert committed_together(store, [steer_commit(store, g) for g in goals]) == [2] * len(goals)
    assert store._writer.merged == merged + 1  # as multi-row statements, not one transition at a time
    for g in goals:
        assert store.load_goal(g.id)[0].steers == (Steer(id=1, text=f"steer {g.id}"),)
        assert seqs(store, g.id) == [1, 2, 3, 4]
        assert [s["text"] for s in store.steers(g.id)] == [f"steer {g.id}"]


def test_a_failing_transition_in_a_group_commit_rolls_back_alone(store):
    goals = [Goal(store, f"g-batch{i}") for i in range(6)]
    results = committed_together(store, [steer_commit(store, g, poison=(i == 2)) for i, g in enumerate(goals)])
    for i, g in enumerate(goals):
        if i == 2:
            assert isinstance(results[i], StoreError)
            assert store.load_goal(g.id)[1] == 1 and store.steers(g.id) == [] and seqs(store, g.id) == [1, 2, 3]
        else:
            assert results[i] == 2
            assert store.load_goal(g.id)[0].steers == (Steer(id=1, text=f"steer {g.id}"),)
            assert seqs(store, g.id) == [1, 2, 3, 4]


def test_a_stale_transition_in_a_group_commit_is_refused_alone(store, second_store):
    goals = [Goal(store, f"g-batch{i}") for i in range(6)]
    for g in goals:
        store.load_goal(g.id)  # this store knows every goal at version 1 ...
    goals[3].step(ev.Pause(), store=second_store)  # ... but another writer moved one on
    commits = [steer_commit(store, g, version=1) for g in goals]
    results = committed_together(store, commits)
    assert isinstance(results[3], StaleWrite)
    assert results[:3] + results[4:] == [2] * 5
    assert store.load_goal(goals[3].id)[0].status == "paused" and store.load_goal(goals[3].id)[0].steers == ()
    assert [e["type"] for e in store.events(goals[3].id)][-1] == "paused"
    for g in goals[:3] + goals[4:]:
        assert seqs(store, g.id) == [1, 2, 3, 4]


def test_event_seq_is_contiguous_from_1_across_commits_and_reopening(db_url, home):
    store = open_store(db_url, home=home)
    g = Goal(store, "g-seq")
    for n in range(15):
        g.gate_cycle(n)
    store.close()
    store = open_store(db_url, home=home)
    g.store = store
    state, version = store.load_goal(g.id)
    assert (state, version) == (g.state, g.version)
    for n in range(15, 30):
        g.gate_cycle(n)
    events = store.events(g.id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("gate_held") == 30
    assert store.events(g.id, after=len(events) - 2) == events[-2:]
    assert store.events(g.id, after=3, limit=2) == events[3:5]
    store.close()


# -- concurrent writers -----------------------------------------------------------------------


def test_a_stale_version_is_refused_and_changes_nothing(store):
    g = Goal(store, "g-stale")
    old_state, old_version = g.state, g.version
    g.step(ev.Steer(text="first"))
    before = store.load_goal(g.id), store.events(g.id)
    t = phases.step(old_state, ev.Steer(text="second"), T0 + timedelta(seconds=9))
    with pytest.raises(StaleWrite):
        store.commit(old_state, old_version, t, "2026-11-21T09:09:00+00:00")
    assert (store.load_goal(g.id), store.events(g.id)) == before
    with pytest.raises(NotFound):
        store.commit(old_state, 1, t._replace(state=replace(t.state, id="nope")), "x")


def test_an_operator_edit_racing_a_turns_end_is_never_lost(store, second_store):
    """The classic lost update, across two Store objects (two connections, two writers)."""
    g = Goal(store, "g-race")
    turn_state, turn_version = store.load_goal(g.id)  # the turn's writer loaded this before its turn
    edited = CRITERIA + (Criterion(id="c3", text="and it is fast", verify={"run": "true"}),)
    g.step(ev.EditCriteria(criteria=edited), store=second_store)  # the operator's edit lands meanwhile
    t = phases.step(turn_state, ev.TurnFinished(turn=1, text=ready("done")), T0 + timedelta(seconds=30))
    with pytest.raises(StaleWrite):
        store.commit(turn_state, turn_version, t, "2026-11-21T09:30:00+00:00")
    state, version = store.load_goal(g.id)
    assert [c.id for c in state.criteria] == ["c1", "c2", "c3"] and version == g.version
    # The loser reloads and applies its event on top: both survive.
    g.state, g.version = state, version
    g.lead_reply(ready("done"))
    state, _ = store.load_goal(g.id)
    assert [c.id for c in state.criteria] == ["c1", "c2", "c3"] and state.status == "verifying"


def test_writers_racing_on_one_goal_from_many_stores_let_exactly_one_win(db_url, home, store):
    g = Goal(store, "g-many")
    stores = [open_store(db_url, home=home) for _ in range(6)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        s = stores[i]
        state, version = s.load_goal(g.id)
        t = phases.step(state, ev.Steer(text=f"from writer {i}"), T0 + timedelta(seconds=1))
        start.wait(10)
        try:
            s.commit(state, version, t, "2026-11-21T09:01:00+00:00")
            outcome = "won"
        except StaleWrite:
            outcome = "stale"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["stale"] * (len(stores) - 1) + ["won"]
    state, version = store.load_goal(g.id)
    assert version == 2 and len(state.steers) == 1
    assert seqs(store, g.id) == [1, 2, 3, 4]


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from crewctl.goal import events as ev, phases
    from crewctl.store import StaleWrite, open_store
    url, home, goal = sys.argv[1] or None, sys.argv[2], sys.argv[3]
    store = open_store(url, home=home)
    state, version = store.load_goal(goal)
    t = phases.step(state, ev.Steer(text="from pid %d" % __import__("os").getpid()), datetime.now(timezone.utc))
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        store.commit(state, version, t, datetime.now(timezone.utc).isoformat())
        print("won", flush=True)
    except StaleWrite:
        print("stale", flush=True)
    store.close()
    """
)


def test_two_processes_racing_on_one_goal_cannot_lose_an_update(db_url, home, store):
    g = Goal(store, "g-procs")
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, db_url or "", home, g.id], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # both loaded version 1; now both write
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(30)
    assert outcomes == ["stale", "won"]
    state, version = store.load_goal(g.id)
    assert version == 2 and len(state.steers) == 1
    assert seqs(store, g.id) == [1, 2, 3, 4]


def test_concurrent_commits_to_different_goals_all_land(store, second_store):
    """Many writer threads on two stores: no lost writes, no 'database is locked', no deadlock."""
    goals = [Goal(store if i % 2 else second_store, f"g-par{i:02d}") for i in range(24)]
    errors: list[BaseException] = []
    cycles = 12

    def drive(g: Goal) -> None:
        try:
            for n in range(cycles):
                g.gate_cycle(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(g,)) for g in goals]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    for g in goals:
        state, version = store.load_goal(g.id)
        assert (state, version) == (g.state, 1 + 2 * cycles)
        events = store.events(g.id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["type"] for e in events].count("gate_held") == cycles


def test_writers_contending_on_the_same_goals_from_two_stores_never_deadlock(store, second_store):
    goals = [Goal(store, f"g-hot{i}").id for i in range(4)]
    stores = (store, second_store)
    errors: list[BaseException] = []
    won: dict[str, int] = {gid: 0 for gid in goals}
    lock = threading.Lock()

    def contend(worker: int) -> None:
        s = stores[worker % 2]
        try:
            for n in range(15):
                for gid in (goals if worker % 2 else reversed(goals)):  # opposite orders
                    while True:
                        state, version = s.load_goal(gid)
                        t = phases.step(state, ev.Steer(text=f"w{worker} n{n}"), T0 + timedelta(seconds=n))
                        try:
                            s.commit(state, version, t, T0.isoformat())
                        except StaleWrite:
                            continue
                        with lock:
                            won[gid] += 1
                        break
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    assert not errors, errors[:3]
    for gid in goals:
        state, version = store.load_goal(gid)
        assert won[gid] == 8 * 15 == len(state.steers) == version - 1
        events = store.events(gid)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len(store.steers(gid)) == 8 * 15


# -- turns and sessions -----------------------------------------------------------------------


def test_a_turn_row_keeps_its_prompt_reply_usage_and_reruns(store):
    g = Goal(store, "g-turns")
    [t1] = store.turns(g.id)
    assert t1["status"] == "running" and t1["runs"] == 1 and t1["prompt"] == g.state.in_flight.prompt and t1["reply"] is None
    g.step(ev.Pause())  # the running turn is interrupted ...
    g.step(ev.Resume())  # ... and run again: same turn, same prompt
    [t1] = store.turns(g.id)
    assert t1["runs"] == 2 and t1["status"] == "running" and t1["prompt"] == g.state.in_flight.prompt
    g.lead_reply("working on it", input_tokens=1200, output_tokens=340, cached_tokens=100, cost_usd=0.0123456789, seconds=12.5)
    t1, t2 = store.turns(g.id)
    assert t1["status"] == "finished" and t1["reply"] == "working on it" and t1["finished_at"]
    assert t1["usage"] == {"input_tokens": 1200, "output_tokens": 340, "cached_tokens": 100, "cost_usd": 0.0123456789, "seconds": 12.5}
    assert t2["turn"] == 2 and t2["kind"] == "continue" and t2["status"] == "running"
    g.step(ev.TurnFailed(turn=2, error="the brain fell over"))
    t2 = store.turns(g.id)[1]
    assert t2["status"] == "failed" and t2["error"] == "the brain fell over"
    state, _ = store.load_goal(g.id)
    assert state == g.state and state.spend.cost_usd == 0.0123456789


def test_session_history_is_bounded_and_reset_by_a_new_session(store):
    g = Goal(store, "g-session")
    at = T0.isoformat()
    store.add_session_messages(g.id, SessionWrite(role="lead", session_id="s1", reset=True), at)
    first = store.session(g.id, "lead")
    assert (first.session_id, json.loads(first.messages), first.resume_ref) == ("s1", [], None)
    for n in range(30):
        store.add_session_messages(g.id, SessionWrite(role="lead", session_id="s1", messages=(("user", f"q{n}"), ("assistant", f"a{n}"))), f"t{n}")
    row = store.session(g.id, "lead")
    messages = json.loads(row.messages)
    assert len(messages) == MAX_SESSION_MESSAGES
    assert messages[-1] == {"role": "assistant", "content": "a29"} and messages[0] == {"role": "user", "content": "q10"}
    assert row.created_at == at
    # An agent CLI's own session id is kept across writes that do not name one ...
    g.lead_reply("hi")  # a commit with a SessionWrite that adds nothing
    store.add_session_messages(g.id, SessionWrite(role="lead", session_id=f"s-{g.id}", resume_ref="cli-7"), "later")
    store.add_session_messages(g.id, SessionWrite(role="lead", session_id=f"s-{g.id}"), "later still")
    row = store.session(g.id, "lead")
    assert (row.session_id, row.resume_ref, json.loads(row.messages)) == (f"s-{g.id}", "cli-7", [])
    # ... and a reset starts from nothing.
    store.add_session_messages(g.id, SessionWrite(role="lead", session_id="s2", messages=(("user", "fresh"),), reset=True), "now")
    row = store.session(g.id, "lead")
    assert (row.session_id, row.resume_ref, json.loads(row.messages), row.created_at) == ("s2", None, [{"role": "user", "content": "fresh"}], "now")
    assert store.session(g.id, "verifier") is None


def test_session_appends_from_many_threads_are_never_lost(store, second_store):
    g = Goal(store, "g-appends")
    store.add_session_messages(g.id, SessionWrite(role="lead", session_id="s", reset=True), "t")

    def append(i: int) -> None:
        s = (store, second_store)[i % 2]
        s.add_session_messages(g.id, SessionWrite(role="lead", session_id="s", messages=(("user", f"m{i}"),)), "t")

    threads = [threading.Thread(target=append, args=(i,)) for i in range(30)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    contents = sorted(m["content"] for m in json.loads(store.session(g.id, "lead").messages))
    assert len(contents) == 30 and contents == sorted(f"m{i}" for i in range(30))


# -- schema and opening -------------------------------------------------------------------------


def test_a_newer_schema_is_refused_and_left_alone(db_url, home, store):
    g = Goal(store, "g-schema")
    store.close()
    raw_sql(db_url, home, 'UPDATE "meta" SET "value" = ? WHERE "key" = ?', ("99", "schema_version"))
    for create in (True, False):
        with pytest.raises(SchemaTooNew, match="newer crewctl"):
            open_store(db_url, home=home, create=create)
    assert raw_sql(db_url, home, 'SELECT "value" FROM "meta"') == [("99",)]
    assert raw_sql(db_url, home, 'SELECT "status", "version" FROM "goal"') == [(g.state.status, 1)]


def test_reading_a_store_that_is_not_there_creates_nothing(db_url, tmp_path):
    home = str(tmp_path / "fresh")
    s = open_store(db_url, home=home, create=False)
    assert s.empty and s.list_goals() == [] and s.live_goal_ids() == [] and s.session("x", "lead") is None
    with pytest.raises(NotFound):
        s.load_goal("abcd")
    with pytest.raises(NotFound):
        s.events("abcd")
    s.close()
    if db_url is None:
        assert not os.path.exists(home)
    else:
        tables = raw_sql(db_url, home, "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()")
        assert tables == []


def test_live_goal_ids_leave_out_finished_goals(store):
    running = Goal(store, "g-live1")
    done = Goal(store, "g-live2")
    done.lead_reply(ready("done"))
    done.verdict(True)
    done.step(ev.Signoff())
    cancelled = Goal(store, "g-live3")
    cancelled.step(ev.Cancel())
    paused = Goal(store, "g-live4")
    paused.step(ev.Pause())
    failed = Goal(store, "g-live5")
    failed.step(ev.Fail(reason="disk gone"))
    assert store.live_goal_ids() == [running.id, paused.id]
    listed = {row["id"]: row["status"] for row in store.list_goals()}
    assert listed == {"g-live1": "running", "g-live2": "done", "g-live3": "cancelled", "g-live4": "paused", "g-live5": "failed"}


def test_goal_ids_resolve_from_unique_prefixes(store):
    for gid in ("abcd1234", "abcd5678", "ffff0000"):
        Goal(store, gid)
    assert store.resolve_id("abcd1234") == "abcd1234"
    assert store.resolve_id("abcd1") == "abcd1234"
    assert store.resolve_id("ffff") == "ffff0000"
    with pytest.raises(NotFound, match="ambiguous"):
        store.resolve_id("abcd")
    with pytest.raises(NotFound):
        store.resolve_id("fff")  # too short to be a prefix
    with pytest.raises(NotFound):
        store.resolve_id("abcd9")
    with pytest.raises(NotFound):
        store.resolve_id("ab%")


def test_a_postgresql_connection_that_dies_is_replaced(postgres_server):
    url = postgres_server.url("crew_reconnect")
    store = open_store(url)
    try:
        g = Goal(store, "g-reconnect")
        g.step(ev.Steer(text="before"))
        # Every other backend on this database goes away: the writer's and the readers'.
        killed = raw_sql(url, None, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert killed
        g.step(ev.Steer(text="after"))
        state, version = store.load_goal(g.id)
        assert [s.text for s in state.steers] == ["before", "after"] and version == g.version == 3
        assert seqs(store, g.id) == [1, 2, 3, 4, 5]
    finally:
        store.close()


# -- the whole daemon on PostgreSQL -------------------------------------------------------------


def test_the_daemon_runs_a_goal_to_done_on_postgresql(postgres_server, tmp_path):
    url = postgres_server.url("crew_daemon")
    ws = tmp_path / "ws"
    ws.mkdir()
    lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "nothing to do"})')
    with Supervisor(tmp_path, db=url) as sup:
        goal = sup.new_goal("say ready", "--criterion", "it holds", "--check", "true", lead=lead, workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
        sup.cli("goal", "signoff", goal)
        assert sup.show(goal)["status"] == "done"
        sup.wait_for_event(goal, "reflection")  # the last thing a done goal records
    # Read back with the daemon gone, from another home, naming the database on the command line only.
    env = {"CREWCTL_DB": ""}
    shown = run_cli(str(tmp_path / "elsewhere"), "goal", "show", goal, "--db", url, "--json", env=env)
    assert shown.code == 0, shown
    view = shown.json()
    assert view["status"] == "done" and [c["status"] for c in view["criteria"]] == ["pass"]
    events = run_cli(str(tmp_path / "elsewhere"), "goal", "events", goal, "--db", url, "--json", env=env).json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    gate = [e["type"] for e in events if e["type"] not in ("envelope", "reflection") and e["payload"].get("role") != "reflector"]
    assert gate[-3:] == ["gate_passed", "signoff", "done"] and events[-1]["type"] == "reflection"
    assert not (tmp_path / "home" / "crew.db").exists()  # everything went to PostgreSQL
