"""The one writer thread: group commit of the transitions that queue up while one
transaction commits (see the store package's module docs for why)."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..exceptions import StoreError
from ._pool import _close_quietly, _connection_lost, _job_error, _store_error
from ._records import MAX_BATCH, SessionWrite
from ._rows import _bump_goal, _refuse, _write_session
from ._sql import _EVENT_INSERT, _GOAL_INSERT, _GOAL_UPDATE, _SESSION_KEEP, _Stmt, _Tx

if TYPE_CHECKING:
    from .repository import Store


class _Plan:
    """One transition's writes, made ready by the caller's thread: run alone (`run`) or with
    other goals' plans in one multi-row statement per kind of row (`_run_merged`)."""

    __slots__ = ("goal", "create", "head", "version", "last_seq", "nrec", "ops", "events", "sessions", "at")

    def __init__(self, goal: str, *, create: bool, head: tuple, version: int, last_seq: int | None, nrec: int,
                 ops: list[tuple[_Stmt, tuple]], events: list[tuple], sessions: tuple[SessionWrite, ...], at: str) -> None:
        self.goal, self.create, self.head, self.version, self.last_seq = goal, create, head, version, last_seq
        self.nrec, self.ops, self.events, self.sessions, self.at = nrec, ops, events, sessions, at

    @property
    def mergeable(self) -> bool:
        # A session write that appends messages reads the row first: that one runs alone.
        return self.last_seq is not None and all(not sw.messages and not sw.reset for sw in self.sessions)

    def head_row(self) -> tuple:
        assert self.last_seq is not None  # only a mergeable plan's head row is built here
        return self.head + (self.last_seq + self.nrec, self.goal, self.version)

    def event_rows(self, last_seq: int) -> list[tuple]:
        return [(self.goal, last_seq + i, type_, at, payload) for i, (type_, at, payload) in enumerate(self.events, 1)]

    def run(self, tx: _Tx) -> int:
        """Alone, in the caller's transaction; returns the goal's new last_seq."""
        if self.create:
            tx.run(_GOAL_INSERT.one, self.head)
            last_seq = 0
        elif self.last_seq is not None:
            if tx.run(_GOAL_UPDATE.one, self.head_row()) != 1:
                _refuse(tx, self.goal, self.version)
            last_seq = self.last_seq
        else:
            last_seq = _bump_goal(tx, self.head + (self.nrec, self.goal, self.version)) - self.nrec
        statements: list[tuple[str, Sequence[Any]]] = []
        for stmt, row in self.ops:
            statements.append((stmt.one, row))
        if self.events:
            statements += tx.rows(_EVENT_INSERT, self.event_rows(last_seq))
        tx.run_all(statements)
        for sw in self.sessions:
            _write_session(tx, self.goal, sw, self.at)
        return last_seq + self.nrec


def _run_merged(tx: _Tx, plans: list[_Plan]) -> None:
    """Many goals' plans in one go: a statement per kind of row, not per transition.

    Raises _Fallback if a goal was not at its expected version: the caller then rolls the
    whole transaction back and runs every plan alone, which names the stale one.
    """
    creates = [p.head for p in plans if p.create]
    updates = [p.head_row() for p in plans if not p.create]
    statements = tx.rows(_GOAL_INSERT, creates) if creates else []
    if updates:
        tx.run_all(statements)
        statements = []
        changed = 0
        for sql, params in tx.rows(_GOAL_UPDATE, updates):
            changed += tx.run(sql, params)
        if changed != len(updates):
            raise _Fallback()
    groups: dict[_Stmt, list[tuple]] = {}
    for p in plans:
        for stmt, row in p.ops:
            groups.setdefault(stmt, []).append(row)
        if p.events:
            groups.setdefault(_EVENT_INSERT, []).extend(p.event_rows(0 if p.create else (p.last_seq or 0)))
        for sw in p.sessions:
            groups.setdefault(_SESSION_KEEP, []).append((p.goal, sw.role, sw.session_id, sw.resume_ref, "[]", p.at))
    for stmt in sorted(groups, key=lambda st: st.order):
        statements += tx.rows(stmt, groups[stmt])
    tx.run_all(statements)


class _Fallback(Exception):
    """The merged path cannot tell which transition failed: run them one by one."""


class _Job:
    __slots__ = ("fn", "plan", "goal", "latch", "result", "error")

    def __init__(self, fn: Callable[[_Tx], Any] | None, goal: str | None, plan: _Plan | None = None) -> None:
        self.fn = fn if fn is not None else plan.run  # type: ignore[union-attr]
        self.plan = plan
        self.goal = goal or ""
        self.latch = threading.Lock()  # held until the job is done: the cheapest one-shot signal
        self.latch.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


class _Writer(threading.Thread):
    """The store's one writer: runs queued write jobs, many to a transaction (group commit)."""

    def __init__(self, store: "Store") -> None:
        super().__init__(name="crewctl-store-writer", daemon=True)
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.conn: Any = None
        self.batches = 0  # for tests and benchmarks: transactions committed
        self.merged = 0  # ... of which took the merged path

    def submit(self, job: _Job) -> Any:
        self.queue.put(job)
        while not job.latch.acquire(timeout=5.0):
            if not self.is_alive():  # closed under us: the job was never taken
                raise StoreError(f"the store at {self.store.describe} is closed")
        if job.error is not None:
            raise job.error
        return job.result

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.join(timeout=30)

    def run(self) -> None:
        stopping = False
        held: list[_Job] = []  # a second job for a goal already in the batch waits for the next
        while not stopping or held:
            batch: list[_Job] = []
            goals: set[str] = set()
            pending, held = held, []
            if not pending:
                first = self.queue.get()
                if first is _STOP:
                    break
                pending = [first]
            while True:
                for job in pending:
                    if job.goal and job.goal in goals:
                        held.append(job)
                    else:
                        goals.add(job.goal)
                        batch.append(job)
                pending = []
                if stopping or len(batch) >= MAX_BATCH:
                    break
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                pending = [job]
            if not batch:
                continue
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never leave a caller waiting
                for job in batch:
                    job.error = job.error or _store_error(exc, self.store.describe)
            finally:
                for job in batch:
                    job.latch.release()
        if self.conn is not None:
            _close_quietly(self.conn)
            self.conn = None

    def _run_batch(self, batch: list[_Job]) -> None:
        store = self.store
        if store.dialect.pg and len(batch) > 1:
            batch.sort(key=lambda j: j.goal)  # per-job order follows the lock order
        for attempt in (1, 2):
            for job in batch:
                job.result, job.error = None, None
            try:
                if self.conn is None:
                    self.conn = store._connect_raw()
                self._transaction(batch)
                self.batches += 1
                return
            except BaseException as exc:
                lost = self.conn is not None and _connection_lost(exc, self.conn)
                if lost or self.conn is None:
                    if self.conn is not None:
                        _close_quietly(self.conn)
                    self.conn = None
                else:
                    self._rollback()
                # A lost connection may have lost the COMMIT's answer only: running the batch
                # again is safe, since a transition that did commit now fails its version check.
                if lost and attempt == 1:
                    continue
                error = _store_error(exc, store.describe)
                for job in batch:
                    job.error = error
                return

    def _begin(self, tx: _Tx, batch: list[_Job]) -> None:
        d = self.store.dialect
        tx.cur.execute("BEGIN" if d.pg else "BEGIN IMMEDIATE")
        goals = sorted({j.goal for j in batch if j.goal})
        if d.pg and len(goals) > 1:
            # Lock the batch's goals in id order before touching any: another process's
            # batch does the same, so the two can wait for each other but never deadlock.
            tx.all(f'SELECT 1 FROM "goal" WHERE "id" IN ({", ".join("?" * len(goals))}) ORDER BY "id" FOR UPDATE', goals)

    def _transaction(self, batch: list[_Job]) -> None:
        store = self.store
        cur = self.conn.cursor()
        tx = _Tx(cur, store.dialect)
        self._begin(tx, batch)
        alone = batch
        merge = [j for j in batch if j.plan is not None and j.plan.mergeable] if store.dialect.merge else []
        if len(merge) > 1:
            try:
                _run_merged(tx, [j.plan for j in merge])  # type: ignore[misc]
            except BaseException as exc:
                if not isinstance(exc, _Fallback) and (not _job_error(exc) or _connection_lost(exc, self.conn)):
                    raise
                cur.execute("ROLLBACK")
                self._begin(tx, batch)
            else:
                for job in merge:
                    plan = job.plan
                    assert plan is not None  # merge holds only jobs with a plan
                    job.result = (plan.last_seq or 0) + plan.nrec
                merged = set(map(id, merge))
                alone = [j for j in batch if id(j) not in merged]
                self.merged += 1
        single = len(batch) == 1
        for job in alone:
            if not single:
                cur.execute("SAVEPOINT w")
            try:
                job.result = job.fn(tx)
            except BaseException as exc:
                if not _job_error(exc) or _connection_lost(exc, self.conn):
                    raise
                job.error = _store_error(exc, store.describe)
                if single:
                    cur.execute("ROLLBACK")
                    return
                cur.execute("ROLLBACK TO SAVEPOINT w")
                cur.execute("RELEASE SAVEPOINT w")
                continue
            if not single:
                cur.execute("RELEASE SAVEPOINT w")
        cur.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self.conn.cursor().execute("ROLLBACK")
        except Exception:
            _close_quietly(self.conn)
            self.conn = None


# -- the store --------------------------------------------------------------------------------
