"""The store's operations: open a database, create goals, commit transitions, read views.

A transition and its timeline records are one transaction, committed before any effect
runs. Writes are checked optimistically (`goal.version`): if two writers ever meet on one
goal, the second gets `StaleWrite` instead of silently overwriting the first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Iterable

import peewee as pw
from playhouse.db_url import connect as connect_url

from ..exceptions import NotFound, SchemaTooNew, StoreError
from ..goal.effects import Record, Transition
from ..goal.model import TERMINAL, ClarifyRound, Criterion, GoalState, Question, Step, Steer
from .models import (
    ALL_MODELS,
    SCHEMA_VERSION,
    ClarifyRoundRow,
    CriterionRow,
    EventRow,
    GoalRow,
    MetaRow,
    SessionRow,
    SteerRow,
    StepRow,
    TurnRow,
    database,
)

__all__ = ["Store", "StaleWrite", "TurnWrite", "SessionWrite", "default_home", "open_store"]

# Fields of GoalState that live in their own tables rather than in goal.data.
_TABLE_FIELDS = ("criteria", "steps", "clarify", "steers")
MAX_SESSION_MESSAGES = 40  # API brains see at most this much history: bounded, like the prompts


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


def default_home() -> str:
    if os.environ.get("CREWCTL_HOME"):
        return os.environ["CREWCTL_HOME"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "crewctl")


def open_store(url: str | None = None, home: str | None = None, *, create: bool = True) -> "Store":
    """Open the database at `url`, or SQLite in `home` (default: $CREWCTL_HOME).

    With create=False a missing SQLite file is not created (read-only commands on a fresh
    machine must not leave files behind); the returned store then reads as empty.
    """
    home = home or default_home()
    if url is None:
        path = os.path.join(home, "crew.db")
        if not create and not os.path.exists(path):
            return Store(None, describe=path)
        os.makedirs(home, exist_ok=True)
        db = pw.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                # FULL: a committed decision survives power loss, not only a killed process.
                "synchronous": "full",
                "foreign_keys": 1,
                "busy_timeout": 30000,
            },
            timeout=30,
            check_same_thread=False,
        )
        describe = path
    else:
        try:
            db = connect_url(url)
        except Exception as exc:  # playhouse raises plain errors for unknown schemes
            raise StoreError(f"cannot use database URL {_redact(url)}: {exc}") from None
        describe = _redact(url)
    return Store(db, describe=describe, create=create)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


class Store:
    def __init__(self, db: pw.Database | None, *, describe: str, create: bool = True) -> None:
        self.db = db
        self.describe = describe
        self.is_sqlite = isinstance(db, pw.SqliteDatabase)
        # SQLite has one writer at a time; waiting on our own lock is far cheaper than
        # SQLite's busy handler, which sleeps in growing steps.
        self._write_lock = threading.Lock() if self.is_sqlite else _NoLock()
        if db is None:
            return
        database.initialize(db)
        try:
            db.connect(reuse_if_open=True)
            self._check_schema(create)
        except (pw.OperationalError, pw.InterfaceError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"cannot open the store at {describe}: {_one_line(exc)}") from None

    # -- schema -------------------------------------------------------------------------

    def _check_schema(self, create: bool) -> None:
        assert self.db is not None
        if MetaRow.table_exists():
            row = MetaRow.get_or_none(MetaRow.key == "schema_version")
            version = int(row.value) if row else 0
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the store at {self.describe} was written by a newer crewctl (schema v{version}; "
                    f"this crewctl knows v{SCHEMA_VERSION}); upgrade crewctl"
                )
            if version == SCHEMA_VERSION:
                return
        if not create:
            return
        with self._write_lock, self.db.atomic():
            self.db.create_tables(ALL_MODELS, safe=True)
            MetaRow.delete().where(MetaRow.key == "schema_version").execute()
            MetaRow.insert(key="schema_version", value=str(SCHEMA_VERSION)).execute()

    def close(self) -> None:
        if self.db is not None and not self.db.is_closed():
            self.db.close()

    @property
    def empty(self) -> bool:
        return self.db is None

    # -- writes -------------------------------------------------------------------------

    def create_goal(self, transition: Transition, at: str) -> None:
        state = transition.state
        with self._tx():
            GoalRow.create(
                id=state.id,
                objective=state.objective,
                workspace=state.workspace,
                status=state.status,
                reason=state.reason,
                created_at=state.created_at,
                updated_at=at,
                version=1,
                last_seq=0,
                data=_data_json(state),
            )
            _write_tables(None, state, at)
            _append_records(state.id, 0, transition.records, at)
            _write_turns(state.id, None, transition, at, ())
            GoalRow.update(last_seq=len(transition.records)).where(GoalRow.id == state.id).execute()

    def commit(
        self,
        old: GoalState,
        version: int,
        transition: Transition,
        at: str,
        *,
        turn_writes: Iterable[TurnWrite] = (),
        session_writes: Iterable[SessionWrite] = (),
    ) -> int:
        """Persist a transition in one transaction; return the goal's new version."""
        new = transition.state
        with self._tx():
            row = GoalRow.select(GoalRow.last_seq, GoalRow.version).where(GoalRow.id == new.id).first()
            if row is None:
                raise NotFound(f"no goal {new.id}")
            if row.version != version:
                raise StaleWrite(f"goal {new.id} changed under this writer (version {row.version}, expected {version})")
            updated = (
                GoalRow.update(
                    status=new.status,
                    reason=new.reason,
                    objective=new.objective,
                    updated_at=at,
                    version=version + 1,
                    last_seq=row.last_seq + len(transition.records),
                    data=_data_json(new),
                )
                .where((GoalRow.id == new.id) & (GoalRow.version == version))
                .execute()
            )
            if updated != 1:
                raise StaleWrite(f"goal {new.id} changed under this writer")
            _write_tables(old, new, at)
            _append_records(new.id, row.last_seq, transition.records, at)
            _write_turns(new.id, old, transition, at, tuple(turn_writes))
            for sw in session_writes:
                _write_session(new.id, sw, at)
        return version + 1

    def add_session_messages(self, goal_id: str, write: SessionWrite, at: str) -> None:
        with self._tx():
            _write_session(goal_id, write, at)

    def _tx(self):
        return _Tx(self)

    # -- reads --------------------------------------------------------------------------

    def load_goal(self, goal_id: str) -> tuple[GoalState, int]:
        """The goal's state and version."""
        self._need_db(goal_id)
        row = GoalRow.get_or_none(GoalRow.id == goal_id)
        if row is None:
            raise NotFound(f"no goal {goal_id}")
        return _state_from_row(row), row.version

    def live_goal_ids(self) -> list[str]:
        if self.db is None:
            return []
        return [r.id for r in GoalRow.select(GoalRow.id).where(GoalRow.status.not_in(list(TERMINAL))).order_by(GoalRow.created_at)]

    def resolve_id(self, ref: str) -> str:
        """An exact goal id, or a unique prefix of at least 4 characters."""
        self._need_db(ref)
        if GoalRow.select(GoalRow.id).where(GoalRow.id == ref).exists():
            return ref
        if len(ref) >= 4:
            matches = [r.id for r in GoalRow.select(GoalRow.id).where(GoalRow.id.startswith(ref)).limit(2)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFound(f"goal id prefix {ref!r} is ambiguous; give more characters")
        raise NotFound(f"no goal {ref}")

    def list_goals(self) -> list[dict[str, Any]]:
        if self.db is None:
            return []
        out = []
        for row in GoalRow.select().order_by(GoalRow.created_at):
            data = json.loads(row.data)
            out.append(
                {
                    "id": row.id,
                    "objective": row.objective,
                    "status": row.status,
                    "reason": row.reason,
                    "round": data.get("round", 0),
                    "attempt": data.get("attempt", 0),
                    "created_at": row.created_at,
                    "updated_at": row.updated_at,
                }
            )
        return out

    def events(self, goal_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        self._need_db(goal_id)
        q = EventRow.select().where((EventRow.goal == goal_id) & (EventRow.seq > after)).order_by(EventRow.seq)
        if limit:
            q = q.limit(limit)
        return [{"seq": r.seq, "type": r.type, "at": r.at, "payload": json.loads(r.payload)} for r in q]

    def turns(self, goal_id: str) -> list[dict[str, Any]]:
        self._need_db(goal_id)
        return [
            {
                "turn": r.turn,
                "role": r.role,
                "kind": r.kind,
                "round": r.round,
                "status": r.status,
                "runs": r.runs,
                "prompt": r.prompt,
                "reply": r.reply,
                "error": r.error,
                "usage": {
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "cached_tokens": r.cached_tokens,
                    "cost_usd": r.cost_usd,
                    "seconds": r.seconds,
                },
                "started_at": r.started_at,
                "finished_at": r.finished_at,
            }
            for r in TurnRow.select().where(TurnRow.goal == goal_id).order_by(TurnRow.turn)
        ]

    def session(self, goal_id: str, role: str) -> SessionRow | None:
        if self.db is None:
            return None
        return SessionRow.get_or_none((SessionRow.goal == goal_id) & (SessionRow.role == role))

    def steers(self, goal_id: str) -> list[dict[str, Any]]:
        self._need_db(goal_id)
        return [
            {"id": r.id, "text": r.text, "created_at": r.created_at, "delivered_turn": r.delivered_turn}
            for r in SteerRow.select().where(SteerRow.goal == goal_id).order_by(SteerRow.id)
        ]

    def _need_db(self, goal_id: str) -> None:
        if self.db is None:
            raise NotFound(f"no goal {goal_id} (no store at {self.describe} yet)")


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Tx:
    """One write transaction: our lock (SQLite), then BEGIN IMMEDIATE / a PostgreSQL txn."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self):
        self.store._write_lock.__enter__()
        try:
            assert self.store.db is not None
            self.atomic = self.store.db.atomic("IMMEDIATE") if self.store.is_sqlite else self.store.db.atomic()
            self.atomic.__enter__()
        except BaseException:
            self.store._write_lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            return self.atomic.__exit__(*exc)
        finally:
            self.store._write_lock.__exit__(None, None, None)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- row <-> state --------------------------------------------------------------------------


def _data_json(state: GoalState) -> str:
    data = state.to_dict()
    for name in _TABLE_FIELDS:
        data.pop(name, None)
    return json.dumps(data, separators=(",", ":"))


def _state_from_row(row: GoalRow) -> GoalState:
    data = json.loads(row.data)
    gid = row.id
    data["criteria"] = [
        {"id": c.id, "text": c.text, "verify": json.loads(c.verify), "status": c.status, "evidence": c.evidence}
        for c in CriterionRow.select().where(CriterionRow.goal == gid).order_by(CriterionRow.position)
    ]
    data["steps"] = [
        {
            "id": s.id,
            "title": s.title,
            "plan": s.plan,
            "detail": s.detail,
            "lane": s.lane,
            "needs_approval": s.needs_approval,
            "approved": s.approved,
            "status": s.status,
            "attempts": s.attempts,
            "task": s.task,
            "dispatches": s.dispatches,
            "holder": s.holder,
            "result": s.result,
        }
        for s in StepRow.select().where(StepRow.goal == gid).order_by(StepRow.position)
    ]
    data["clarify"] = [
        {
            "seq": r.seq,
            "intro": r.intro,
            "questions": json.loads(r.questions),
            "answers": json.loads(r.answers) if r.answers is not None else None,
        }
        for r in ClarifyRoundRow.select().where(ClarifyRoundRow.goal == gid).order_by(ClarifyRoundRow.seq)
    ]
    data["steers"] = [
        {"id": r.id, "text": r.text}
        for r in SteerRow.select().where((SteerRow.goal == gid) & SteerRow.delivered_turn.is_null()).order_by(SteerRow.id)
    ]
    return GoalState.from_dict(data)


def _write_tables(old: GoalState | None, new: GoalState, at: str) -> None:
    gid = new.id
    if old is None or old.criteria != new.criteria:
        CriterionRow.delete().where(CriterionRow.goal == gid).execute()
        if new.criteria:
            CriterionRow.insert_many(
                [
                    {
                        "goal": gid,
                        "id": c.id,
                        "position": i,
                        "text": c.text,
                        "verify": json.dumps(c.verify if isinstance(c.verify, str) else dict(c.verify)),
                        "status": c.status,
                        "evidence": c.evidence,
                    }
                    for i, c in enumerate(new.criteria)
                ]
            ).execute()
    old_steps = {s.id: s for s in old.steps} if old else {}
    for i, st in enumerate(new.steps):
        if old_steps.get(st.id) == st:
            continue
        values = _step_values(gid, i, st)
        if st.id in old_steps:
            StepRow.update(values).where((StepRow.goal == gid) & (StepRow.id == st.id)).execute()
        else:
            StepRow.insert(values).execute()
    old_rounds = {r.seq: r for r in old.clarify} if old else {}
    for r in new.clarify:
        if old_rounds.get(r.seq) == r:
            continue
        values = {
            "goal": gid,
            "seq": r.seq,
            "intro": r.intro,
            "questions": json.dumps([{"id": q.id, "text": q.text, "options": list(q.options), "multi": q.multi} for q in r.questions]),
            "answers": json.dumps(dict(r.answers)) if r.answers is not None else None,
        }
        if r.seq in old_rounds:
            ClarifyRoundRow.update(values).where((ClarifyRoundRow.goal == gid) & (ClarifyRoundRow.seq == r.seq)).execute()
        else:
            ClarifyRoundRow.insert(values).execute()
    old_steers = {s.id for s in old.steers} if old else set()
    for steer in new.steers:
        if steer.id not in old_steers:
            SteerRow.insert(goal=gid, id=steer.id, text=steer.text, created_at=at, delivered_turn=None).execute()


def _step_values(gid: str, position: int, st: Step) -> dict[str, Any]:
    return {
        "goal": gid,
        "id": st.id,
        "plan": st.plan,
        "position": position,
        "title": st.title,
        "detail": st.detail,
        "lane": st.lane,
        "needs_approval": st.needs_approval,
        "approved": st.approved,
        "status": st.status,
        "attempts": st.attempts,
        "task": st.task,
        "dispatches": st.dispatches,
        "holder": st.holder,
        "result": st.result,
    }


def _append_records(gid: str, last_seq: int, records: tuple[Record, ...], at: str) -> None:
    if not records:
        return
    EventRow.insert_many(
        [
            {"goal": gid, "seq": last_seq + i, "type": r.type, "at": at, "payload": json.dumps(dict(r.payload), separators=(",", ":"), default=str)}
            for i, r in enumerate(records, 1)
        ]
    ).execute()
    for r in records:
        if r.type == "steer_delivered":
            SteerRow.update(delivered_turn=r.payload["turn"]).where(
                (SteerRow.goal == gid) & (SteerRow.id == r.payload["steer"])
            ).execute()


def _write_turns(gid: str, old: GoalState | None, transition: Transition, at: str, writes: tuple[TurnWrite, ...]) -> None:
    by_turn = {w.turn: w for w in writes}
    new = transition.state
    for r in transition.records:
        p = r.payload
        if r.type == "turn_started":
            if p.get("rerun"):
                TurnRow.update(runs=TurnRow.runs + 1, status="running", error=None).where(
                    (TurnRow.goal == gid) & (TurnRow.turn == p["turn"])
                ).execute()
                continue
            prompt = None
            if new.in_flight is not None and new.in_flight.turn == p["turn"]:
                prompt = new.in_flight.prompt or None
            TurnRow.insert(
                goal=gid,
                turn=p["turn"],
                role=p["role"],
                kind=p["kind"],
                round=p.get("round"),
                status="running",
                prompt=prompt,
                started_at=at,
            ).on_conflict_ignore().execute()
        elif r.type == "turn_finished":
            u = p.get("usage") or {}
            w = by_turn.get(p["turn"])
            TurnRow.update(
                status="finished",
                reply=w.reply if w else None,
                input_tokens=u.get("input_tokens", 0),
                output_tokens=u.get("output_tokens", 0),
                cached_tokens=u.get("cached_tokens", 0),
                cost_usd=u.get("cost_usd"),
                seconds=u.get("seconds", 0.0),
                finished_at=at,
            ).where((TurnRow.goal == gid) & (TurnRow.turn == p["turn"])).execute()
        elif r.type == "turn_failed":
            TurnRow.update(status="failed", error=p.get("error"), finished_at=at).where(
                (TurnRow.goal == gid) & (TurnRow.turn == p["turn"])
            ).execute()


def _write_session(gid: str, sw: SessionWrite, at: str) -> None:
    row = SessionRow.get_or_none((SessionRow.goal == gid) & (SessionRow.role == sw.role))
    same = row is not None and not sw.reset and row.session_id == sw.session_id
    messages = json.loads(row.messages) if same else []
    messages.extend({"role": role, "content": content} for role, content in sw.messages)
    resume_ref = sw.resume_ref if sw.resume_ref is not None else (row.resume_ref if same else None)
    if row is not None:
        SessionRow.delete().where((SessionRow.goal == gid) & (SessionRow.role == sw.role)).execute()
    SessionRow.insert(
        goal=gid,
        role=sw.role,
        session_id=sw.session_id,
        resume_ref=resume_ref,
        messages=json.dumps(messages[-MAX_SESSION_MESSAGES:]),
        created_at=row.created_at if same else at,
    ).execute()
