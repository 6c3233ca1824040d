"""Durability cost: gate transitions per second against the bare-commit floor, and resume time.

    .venv/bin/python bench/durability.py [--goals 200] [--cycles 10] [--resume 1000] [--no-postgres]

For SQLite (WAL, synchronous=FULL, in a temp dir) and PostgreSQL (a throwaway server on
loopback from crewctl.testing.postgres, fsync=on, synchronous_commit=on), side by side:

1. Gate transitions per second. `--goals` goals, one thread each (as one supervisor actor
   each), every goal running `--cycles` full gate cycles with instant replies: the lead's
   READY (turn_finished, ready, round_started, turn_started) and the verifier's verdict
   (turn_finished, verify, gate_held, turn_started for the next lead turn). Each transition
   goes the way a supervisor sends it: `phases.step`, then `Store.commit` with the turn's
   reply and the lead's session write, and the session lookup before each lead turn.
   The clock runs from the moment all threads start until the last commit returns. The
   same run with a store that does nothing shows what the phase machine and the threads
   cost by themselves.
2. The floor: a bare loop of the same number of committed transactions on the same
   database with the same durability settings, one UPDATE and one INSERT of an event-sized
   row each, on one connection; run before and after the gate transitions, the faster of
   the two counts. Target: gate transitions/s at least a third of it.
3. Resume: `--resume` live goals, each with a lead turn in flight (as after a crash), in a
   fresh home; then a real `crewctl run` is started and the clock runs until every goal has
   been picked up (its supervisor loaded it and committed the rerun of its turn: the
   turn's `runs` column reaches 2). The lead is a scripted brain that answers BLOCKED, so
   each goal then settles; the time until all have settled is printed too. Target: every
   goal picked up within 5 s.

Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from crewctl.goal import events as ev
from crewctl.goal import phases
from crewctl.goal.model import Criterion
from crewctl.store import SessionWrite, TurnWrite, open_store
from crewctl.testing import crewctl_binary
from crewctl.testing.phases import ready, verify

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CRITERIA = (
    Criterion(id="c1", text="the tests pass", verify={"run": "pytest -q"}),
    Criterion(id="c2", text="the docs say how", verify="read README.md"),
)
FLOOR_TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_goal (id VARCHAR(32) PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_event (goal VARCHAR(32) NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (goal, seq))",
)


@dataclass
class Result:
    transitions: int = 0
    gate_seconds: float = 0.0
    alone_seconds: float = 0.0
    floor_seconds: float = 0.0
    resume_ready: float | None = None
    resume_picked_up: float | None = None
    resume_settled: float | None = None

    @property
    def gate_rate(self) -> float:
        return self.transitions / self.gate_seconds

    @property
    def floor_rate(self) -> float:
        return self.transitions / self.floor_seconds

    @property
    def alone_rate(self) -> float:
        return self.transitions / self.alone_seconds

    @property
    def ratio(self) -> float:
        return self.floor_rate / self.gate_rate


# -- 1. gate transitions ---------------------------------------------------------------------


def settings(lead: str = "exec:lead") -> phases.GoalSettings:
    return phases.GoalSettings(roster={"lead": lead, "verifier": "exec:verifier"}, attempt_cap=10**6, max_turns=10**6)


class NullStore:
    """The store's interface doing nothing: what the phase machine and the threads cost alone."""

    class _Session:
        session_id = "s"

    def create_goal(self, transition, at):
        pass

    def add_session_messages(self, goal_id, write, at):
        pass

    def session(self, goal_id, role):
        return self._Session()

    def commit(self, old, version, transition, at, **writes):
        return version + 1

    def close(self):
        pass


def gate_transitions(url: str | None, home: str, goals: int, cycles: int, *, null: bool = False) -> tuple[int, float]:
    store = NullStore() if null else open_store(url, home=home)
    states = {}
    for i in range(goals):
        t = phases.new_goal(f"bench{i:04d}", "benchmark goal", "/ws", settings(), T0, criteria=CRITERIA)
        store.create_goal(t, T0.isoformat())
        # The first lead turn opened the lead's session (the supervisor does this once).
        store.add_session_messages(t.state.id, SessionWrite(role="lead", session_id=f"s-{t.state.id}", reset=True), T0.isoformat())
        states[t.state.id] = (t.state, 1)
    start = threading.Barrier(goals + 1)
    counts = [0] * goals
    errors: list[BaseException] = []

    def supervisor(n: int, gid: str) -> None:
        state, version = states[gid]
        now = T0
        start.wait()
        try:
            for c in range(cycles):
                # the lead's turn: its session is looked up, its READY comes back
                session = store.session(gid, "lead")
                f = state.in_flight
                text = f"did round {c}\n" + ready(f"round {c}")
                now += timedelta(seconds=1)
                t = phases.step(state, ev.TurnFinished(turn=f.turn, text=text, usage=ev.TurnUsage(input_tokens=900, output_tokens=120)), now)
                version = store.commit(
                    state, version, t, now.isoformat(),
                    turn_writes=(TurnWrite(turn=f.turn, reply=text),),
                    session_writes=(SessionWrite(role="lead", session_id=session.session_id),),
                )
                state = t.state
                # the verifier's verdict: the check fails with new evidence each round
                f = state.in_flight
                text = verify(("c2", "pass", "documented"))
                now += timedelta(seconds=1)
                checks = {"c1": {"exit": 1, "output": f"{c % 7 + 1} failed in round {c}", "timed_out": False}}
                t = phases.step(state, ev.RoundFinished(round=state.round, turn=f.turn, text=text, checks=checks), now)
                version = store.commit(state, version, t, now.isoformat(), turn_writes=(TurnWrite(turn=f.turn, reply=text),))
                state = t.state
                counts[n] += 2
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=supervisor, args=(n, gid), daemon=True) for n, gid in enumerate(states)]
    for th in threads:
        th.start()
    start.wait()
    began = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise SystemExit(f"gate transitions failed: {errors[0]!r} (and {len(errors) - 1} more)")
    # every event of every goal landed, numbered without gaps
    for gid in list(states)[:: max(goals // 10, 1)] if not null else ():
        seqs = [e["seq"] for e in store.events(gid)]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 3 + 8 * cycles, (gid, len(seqs))
    store.close()
    return sum(counts), elapsed


# -- 2. the floor --------------------------------------------------------------------------------


def floor(url: str | None, home: str, n: int, tag: str) -> float:
    """n transactions of one UPDATE and one INSERT, one after another, on one connection,
    in the benchmark's own tables of the same database the gate transitions use."""
    payload = json.dumps({"round": 1, "failed": ["c1"], "evidence": "x" * 200})
    if url is None:
        # The store's own durability settings (crewctl.store.repository._sqlite): WAL, synchronous=FULL.
        conn = sqlite3.connect(os.path.join(home, "crew.db"), isolation_level=None, timeout=30)
        for pragma in ("journal_mode = wal", "synchronous = full", "busy_timeout = 30000"):
            conn.execute(f"PRAGMA {pragma}")
        p = "?"
    else:
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True
        p = "%s"
    cur = conn.cursor()
    for sql in FLOOR_TABLES:
        cur.execute(sql)
    cur.execute(f"INSERT INTO bench_goal VALUES ({p}, 0)", (tag,))
    begin = "BEGIN IMMEDIATE" if url is None else "BEGIN"
    began = time.perf_counter()
    for i in range(1, n + 1):
        cur.execute(begin)
        cur.execute(f"UPDATE bench_goal SET version = version + 1 WHERE id = {p}", (tag,))
        cur.execute(f"INSERT INTO bench_event VALUES ({p}, {p}, {p})", (tag, i, payload))
        cur.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


# -- 3. resume -------------------------------------------------------------------------------------


def resume(url: str | None, root: str, goals: int) -> tuple[float, float, float]:
    home = os.path.join(root, "home")
    script = os.path.join(root, "lead.json")
    with open(script, "w") as f:
        json.dump({"lead": ['CREW_BLOCKED_BEGIN\n{"reason": "benchmark: stop here"}\nCREW_BLOCKED_END\n']}, f)
    store = open_store(url, home=home)
    for i in range(goals):
        t = phases.new_goal(f"live{i:05d}", "a live goal", root, settings(f"scripted:{script}"), T0, criteria=CRITERIA[:1])
        store.create_goal(t, T0.isoformat())  # running, its first lead turn in flight: as after a crash
    store.close()

    env = dict(os.environ, CREWCTL_HOME=home, XDG_CONFIG_HOME=os.path.join(root, "config"))
    env.pop("CREWCTL_CRASH_AT", None)
    argv = [crewctl_binary(), "run", "-q", "--grace", "1"] + (["--db", url] if url else [])
    counter = _Counter(url, home)
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "run.log"), "wb"))
    ready_at = picked_up = settled = None
    try:
        deadline = began + 120
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"crewctl run exited {proc.returncode}: {open(os.path.join(root, 'run.log')).read()[-2000:]}")
            now = time.perf_counter() - began
            if ready_at is None and os.path.exists(os.path.join(home, "daemon.json")):
                ready_at = now
            rerun, blocked = counter.counts()
            if picked_up is None and rerun >= goals:
                picked_up = now
            if blocked >= goals:
                settled = now
                break
            time.sleep(0.02)  # poll the database from outside, as an operator would
        else:
            raise SystemExit(f"resume: not settled within 120 s (picked up {counter.counts()})")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        counter.close()
    return ready_at or 0.0, picked_up or 0.0, settled


class _Counter:
    def __init__(self, url: str | None, home: str) -> None:
        if url is None:
            self.conn = sqlite3.connect(os.path.join(home, "crew.db"), isolation_level=None)
        else:
            import psycopg2

            self.conn = psycopg2.connect(url)
            self.conn.autocommit = True

    def counts(self) -> tuple[int, int]:
        cur = self.conn.cursor()
        cur.execute("SELECT count(*) FROM turn WHERE runs >= 2")
        rerun = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM goal WHERE status = 'blocked'")
        return rerun, cur.fetchone()[0]

    def close(self) -> None:
        self.conn.close()


# -- the run --------------------------------------------------------------------------------------


def measure(kind: str, url_for, args, root: str) -> Result:
    r = Result()
    home = os.path.join(root, kind, "gate")
    os.makedirs(home)
    url = url_for("bench_gate")
    n = args.goals * args.cycles * 2
    open_store(url, home=home).close()  # the schema, then the floor on the same, still empty, database
    before = floor(url, home, n, "before")
    r.transitions, r.gate_seconds = gate_transitions(url, home, args.goals, args.cycles)
    after = floor(url, home, n, "after")
    # Other processes on the machine move fsync times around: the faster floor is the
    # stricter comparison.
    r.floor_seconds = min(before, after)
    _, r.alone_seconds = gate_transitions(None, home, args.goals, args.cycles, null=True)
    print(f"  {kind}: {r.transitions} gate transitions in {r.gate_seconds:.2f} s; the same number of bare commits "
          f"in {before:.2f} s before and {after:.2f} s after", flush=True)
    if args.resume:
        resume_root = os.path.join(root, kind, "resume")
        os.makedirs(resume_root)
        r.resume_ready, r.resume_picked_up, r.resume_settled = resume(url_for("bench_resume"), resume_root, args.resume)
        print(f"  {kind}: {args.resume} goals picked up {r.resume_picked_up:.2f} s after start", flush=True)
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=int, default=200, help="concurrent goals (threads)")
    parser.add_argument("--cycles", type=int, default=10, help="gate cycles per goal (2 transitions each)")
    parser.add_argument("--resume", type=int, default=1000, help="live goals to resume (0: skip)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, sqlite {sqlite3.sqlite_version}")
    root = tempfile.mkdtemp(prefix="crewctl-bench-")
    results: dict[str, Result] = {}
    try:
        results["SQLite"] = measure("sqlite", lambda name: None, args, root)
        if not args.no_postgres:
            from crewctl.testing.postgres import TempPostgres

            with TempPostgres() as pg:
                results["PostgreSQL"] = measure("postgres", pg.url, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    names = list(results)
    width = 26
    print()
    print(f"{'':34}" + "".join(f"{n:>{width}}" for n in names))
    rows = [
        ("gate transitions/s", lambda r: f"{r.gate_rate:,.0f}"),
        ("bare commits/s (floor)", lambda r: f"{r.floor_rate:,.0f}"),
        ("floor / gate (target <= 3)", lambda r: f"{r.ratio:.2f}x"),
        ("per transition vs per bare commit", lambda r: f"{1000 / r.gate_rate:.3f} / {1000 / r.floor_rate:.3f} ms"),
        ("same transitions, no store", lambda r: f"{r.alone_rate:,.0f}/s = {1000 / r.alone_rate:.3f} ms"),
    ]
    if args.resume:
        rows += [
            (f"resume {args.resume}: daemon ready", lambda r: f"{r.resume_ready:.2f} s"),
            (f"resume {args.resume}: all picked up", lambda r: f"{r.resume_picked_up:.2f} s"),
            (f"resume {args.resume}: all settled", lambda r: f"{r.resume_settled:.2f} s"),
        ]
    for label, fmt in rows:
        print(f"{label:34}" + "".join(f"{fmt(results[n]):>{width}}" for n in names))
    print()
    missed = []
    for n, r in results.items():
        if r.ratio > 3:
            missed.append(f"{n}: gate transitions {r.ratio:.2f}x slower than the floor (target 3x)")
        if args.resume and r.resume_picked_up > 5:
            missed.append(f"{n}: resume of {args.resume} goals took {r.resume_picked_up:.2f} s (target 5 s)")
    for line in missed:
        print("MISSED " + line)
    if not missed:
        print("targets met: gate transitions within 3x of the bare-commit floor" + (f"; {args.resume} goals resumed within 5 s" if args.resume else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
