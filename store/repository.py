"""The store's operations: open a database, create goals, commit transitions, read views.

A transition and its timeline records are one transaction, committed before any effect
runs. The peewee models (models.py) define the schema for SQLite and PostgreSQL alike and
create it; the hot paths below are hand-written parameterised SQL on those same tables,
because building each statement through peewee's query compiler cost more than the fsync
it guards (about 0.25 ms a statement, eight statements a transition).

Connections. Nothing here relies on peewee's one-connection-per-thread default: a daemon
has a thread per actor, so that meant one connection per goal (a thousand goals: a
thousand PostgreSQL backends, past any default max_connections, and a thousand SQLite
handles). Instead every Store has

- one writer thread with one connection, doing group commit: the transitions that queue
  up while one transaction commits go into the next one together, and `commit()` returns
  only after that COMMIT, so "persisted, then act" holds exactly as with a transaction
  each. Their rows go out as one multi-row statement per kind of row (goal rows, events,
  turns, ...), so a batch of a hundred transitions costs about as many statements as one.
  That matters twice on SQLite: one fsync for the batch, and few GIL hand-offs, since
  every sqlite3 call releases the GIL and getting it back from a hundred busy supervisor
  threads takes milliseconds. If any transition of a merged batch fails (a stale version,
  a constraint), the transaction is rolled back and the batch runs again one transition
  at a time, each in its own SAVEPOINT, so only the failing one is refused;
- a small pool of reader connections, lent per call.

Concurrency on one goal (PostgreSQL and SQLite alike). A goal's supervisor holds the goal
in memory for as long as turns run (minutes to hours) and is normally its only writer, so
holding a row lock (SELECT ... FOR UPDATE) from load to save would mean a transaction and
a connection parked per goal for hours. Writes are checked optimistically instead: every
commit is `UPDATE goal ... SET version = version + 1 WHERE id = ? AND version = ?` first.
That UPDATE also takes the goal's row lock for the rest of its short transaction, so two
writers that meet on one goal (a second daemon on the same database, a supervisor that
outlived its restart) serialise on it: the second one re-checks the WHERE against the
committed row, matches nothing and gets `StaleWrite` instead of overwriting the first (no
lost update); its rows, event numbers included, are never written. On PostgreSQL a batch
first locks all its goals with SELECT ... ORDER BY id FOR UPDATE, and a lone session write
locks its goal row, so every transaction takes goal locks in id order and two processes
writing overlapping goals can wait for each other but never deadlock.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import peewee as pw
from playhouse.db_url import connect as connect_url

from ..exceptions import CrewError, NotFound, SchemaTooNew, StoreError
from ..goal.attention import ATTENTION, ENTRY_EVENTS, attention_why
from ..goal.effects import Record, Transition
from ..home import private_dir, private_file
from ..goal.model import TERMINAL, Criterion, GoalState, Step
from ..goal.views import goal_view
from .models import ALL_MODELS, SCHEMA_VERSION, SessionRow

try:  # psycopg2 is a dependency, but SQLite-only use must not need it to import
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None  # type: ignore[assignment]

__all__ = ["Store", "StaleWrite", "TurnWrite", "SessionWrite", "default_home", "open_store"]

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


def default_home() -> str:
    if os.environ.get("CREWCTL_HOME"):
        return os.environ["CREWCTL_HOME"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "crewctl")


def open_store(url: str | None = None, home: str | None = None, *, create: bool = True) -> "Store":
    """Open the database at `url`, or SQLite in `home` (default: $CREWCTL_HOME).

    With create=False nothing is created: a missing SQLite file is not made (read-only
    commands on a fresh machine must not leave files behind) and an empty PostgreSQL
    database gets no tables; the store then reads as empty.
    """
    home = home or default_home()
    if url is None:
        path = os.path.join(home, "crew.db")
        if not create and not os.path.exists(path):
            return Store(None, describe=path)
        private_dir(home)
        return Store(_sqlite(path, private=create), describe=path, create=create)
    try:
        db = connect_url(url)
    except Exception as exc:  # playhouse raises plain errors for unknown schemes
        raise StoreError(f"cannot use database URL {_redact(url)}: {exc}") from None
    if isinstance(db, pw.SqliteDatabase):
        path = db.database
        if not path or path == ":memory:":
            raise StoreError(f"cannot use database URL {_redact(url)}: an in-memory database does not outlive the process")
        if not create and not os.path.exists(path):
            return Store(None, describe=path)
        return Store(_sqlite(path, private=create), describe=path, create=create)  # with our durability settings
    if not isinstance(db, pw.PostgresqlDatabase):
        raise StoreError(f"cannot use database URL {_redact(url)}: crewctl stores goals in SQLite or PostgreSQL")
    return Store(db, describe=_redact(url), create=create)


def _sqlite(path: str, *, private: bool = False) -> pw.SqliteDatabase:
    if private:
        # Every prompt and reply lives here (the WAL holds the newest ones): 0600 before
        # SQLite opens it. SQLite gives -wal and -shm the database file's mode when it makes
        # them; ones left by an older crewctl are tightened here too.
        for suffix in ("", "-wal", "-shm"):
            if suffix == "" or os.path.exists(path + suffix):
                private_file(path + suffix)
    return pw.SqliteDatabase(
        path,
        pragmas={
            "journal_mode": "wal",
            # FULL: a committed decision survives power loss, not only a killed process.
            "synchronous": "full",
            "foreign_keys": 1,
            "busy_timeout": 30000,
        },
        timeout=30,
        check_same_thread=False,  # pooled connections move between threads, one at a time
        cached_statements=256,  # the multi-row statements of group commits come in many sizes
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# -- SQL --------------------------------------------------------------------------------------
# Written with `?` placeholders; PostgreSQL (psycopg2) gets them as `%s`. No statement
# contains a literal `?` or `%`.

MAX_ROWS = 400  # rows in one multi-row statement
MAX_PARAMS = 30000  # SQLite allows 32766 bound parameters a statement


def _q(name: str) -> str:
    return f'"{name}"'


# The newest event of each type that puts a goal into an attention state, per goal: the
# "since" of `goal list` for every goal in one statement.
_ENTRY_TYPES = tuple(sorted({t for types in ENTRY_EVENTS.values() for t in types}))
_ENTRY_SQL = (
    'SELECT e."goal", e."type", e."at" FROM "event" e JOIN ('
    f'SELECT "goal", "type", MAX("seq") AS m FROM "event" WHERE "type" IN ({", ".join("?" * len(_ENTRY_TYPES))}) '
    'GROUP BY "goal", "type") x ON e."goal" = x."goal" AND e."seq" = x.m'
)


def _insert(table: str, cols: Sequence[str], rows: int = 1, tail: str = "") -> str:
    values = ", ".join(["(" + ", ".join("?" * len(cols)) + ")"] * rows)
    return f'INSERT INTO {_q(table)} ({", ".join(_q(c) for c in cols)}) VALUES {values}{tail}'


_SQL_TYPES = {"VARCHAR": "TEXT", "TEXT": "TEXT", "INT": "INTEGER", "DOUBLE": "DOUBLE PRECISION", "FLOAT": "DOUBLE PRECISION", "BOOL": "BOOLEAN"}
_COLUMN_TYPES = {(m._meta.table_name, f.column_name): _SQL_TYPES[f.field_type] for m in ALL_MODELS for f in m._meta.sorted_fields}


class _Stmt:
    """One kind of row write. Alone it is one statement; the rows of many transitions in one
    group commit go out as one multi-row statement (INSERT ... VALUES (..), (..); UPDATE ...
    FROM (VALUES ...); DELETE ... IN (...)), so a batch costs a handful of statements however
    many transitions it carries."""

    _order = 0

    def __init__(self, kind: str, table: str, cols: Sequence[str] = (), *, keys: Sequence[str] = (), extra: str = "", tail: str = "") -> None:
        self.kind, self.table, self.cols, self.keys, self.extra, self.tail = kind, table, tuple(cols), tuple(keys), extra, tail
        self.width = len(self.cols) + len(self.keys)
        _Stmt._order += 1
        self.order = ({"delete": 0, "insert": 1, "update": 2}[kind], _Stmt._order)
        if kind == "insert":
            self.one = _insert(table, self.cols, 1, tail)
        elif kind == "update":
            sets = [f"{_q(c)} = ?" for c in self.cols] + ([extra] if extra else [])
            self.one = f"UPDATE {_q(table)} SET {', '.join(sets)} WHERE " + " AND ".join(f"{_q(k)} = ?" for k in self.keys)
        else:
            self.one = f"DELETE FROM {_q(table)} WHERE {_q(self.keys[0])} = ?"
        self._many: dict[int, str] = {}

    def many(self, n: int) -> str:
        if n == 1:
            return self.one
        sql = self._many.get(n)
        if sql is not None:
            return sql
        t = _q(self.table)
        if self.kind == "insert":
            sql = _insert(self.table, self.cols, n, self.tail)
        elif self.kind == "delete":
            sql = f"DELETE FROM {t} WHERE {_q(self.keys[0])} IN ({', '.join('?' * n)})"
        else:
            # VALUES columns are column1, column2, ... in SQLite and PostgreSQL alike; the
            # casts give PostgreSQL the types its untyped literals lack (NULL, 'text').
            def cast(i: int, col: str) -> str:
                return f"CAST(v.column{i} AS {_COLUMN_TYPES[(self.table, col)]})"

            sets = [f"{_q(c)} = {cast(i, c)}" for i, c in enumerate(self.cols, 1)] + ([self.extra] if self.extra else [])
            where = [f"{t}.{_q(k)} = {cast(len(self.cols) + i, k)}" for i, k in enumerate(self.keys, 1)]
            row = "(" + ", ".join("?" * self.width) + ")"
            sql = f"UPDATE {t} SET {', '.join(sets)} FROM (VALUES {', '.join([row] * n)}) AS v WHERE {' AND '.join(where)}"
        if n <= 64:
            self._many[n] = sql
        return sql

    def chunk(self) -> int:
        return max(1, min(MAX_ROWS, MAX_PARAMS // max(self.width, 1)))


_GOAL_COLS = ("id", "objective", "workspace", "status", "reason", "created_at", "updated_at", "version", "last_seq", "data")
_GOAL_INSERT = _Stmt("insert", "goal", _GOAL_COLS)
# The optimistic check: matches nothing unless the goal is still at the version its writer read.
_GOAL_UPDATE = _Stmt(
    "update", "goal", ("status", "reason", "objective", "updated_at", "data", "last_seq"),
    keys=("id", "version"), extra='"version" = "version" + 1',
)
_GOAL_BUMP_SQL = (  # when the writer does not know last_seq yet: add to it, read it back
    'UPDATE "goal" SET "status" = ?, "reason" = ?, "objective" = ?, "updated_at" = ?, "data" = ?, '
    '"version" = "version" + 1, "last_seq" = "last_seq" + ? WHERE "id" = ? AND "version" = ?'
)
_CRIT_DELETE = _Stmt("delete", "criterion", keys=("goal",))
_CRIT_INSERT = _Stmt("insert", "criterion", ("goal", "id", "position", "text", "verify", "status", "evidence"))
_CRIT_UPDATE = _Stmt("update", "criterion", ("position", "text", "verify", "status", "evidence"), keys=("goal", "id"))
_STEP_COLS = (
    "goal", "id", "plan", "position", "title", "detail", "lane", "needs_approval", "approved", "status",
    "attempts", "task", "dispatches", "holder", "result",
)
_STEP_INSERT = _Stmt("insert", "step", _STEP_COLS)
_STEP_UPDATE = _Stmt("update", "step", _STEP_COLS[2:], keys=("goal", "id"))
_CLARIFY_INSERT = _Stmt("insert", "clarify_round", ("goal", "seq", "intro", "questions", "answers"))
_CLARIFY_UPDATE = _Stmt("update", "clarify_round", ("intro", "questions", "answers"), keys=("goal", "seq"))
_STEER_INSERT = _Stmt("insert", "steer", ("goal", "id", "text", "created_at", "delivered_turn"))
_STEER_DELIVERED = _Stmt("update", "steer", ("delivered_turn",), keys=("goal", "id"))
_EVENT_INSERT = _Stmt("insert", "event", ("goal", "seq", "type", "at", "payload"))
_BASELINE_DELETE = _Stmt("delete", "protected_file", keys=("goal",))
_BASELINE_INSERT = _Stmt("insert", "protected_file", ("goal", "rule", "path", "hash"))
_TURN_INSERT = _Stmt(
    "insert", "turn",
    ("goal", "turn", "role", "kind", "round", "status", "runs", "prompt", "input_tokens", "output_tokens", "cached_tokens", "seconds", "started_at"),
    tail=' ON CONFLICT ("goal", "turn") DO NOTHING',
)
# A rerun restarts the turn's clock too: started_at is when the run now in flight began.
_TURN_RERUN = _Stmt("update", "turn", ("status", "started_at"), keys=("goal", "turn"), extra='"runs" = "runs" + 1, "error" = NULL')
# A rerun whose prompt gained what the operator said meanwhile (phases: refreshed): the
# turn row keeps the prompt the turn was actually asked.
_TURN_RERUN_PROMPT = _Stmt("update", "turn", ("status", "started_at", "prompt"), keys=("goal", "turn"), extra='"runs" = "runs" + 1, "error" = NULL')
_TURN_FINISH = _Stmt(
    "update", "turn",
    ("status", "reply", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "seconds", "finished_at"),
    keys=("goal", "turn"),
)
_TURN_FAIL = _Stmt("update", "turn", ("status", "error", "finished_at"), keys=("goal", "turn"))
_SESSION_COLS = ("goal", "role", "session_id", "resume_ref", "messages", "created_at")
# One statement for a session write that adds no messages (every exec-brain turn): the same
# session keeps its history, created_at and (unless a new one is given) resume_ref; another
# session id replaces the row.
_SAME = '"session"."session_id" = excluded."session_id"'
_SESSION_KEEP = _Stmt(
    "insert", "session", _SESSION_COLS,
    tail=(
        ' ON CONFLICT ("goal", "role") DO UPDATE SET '
        f'"resume_ref" = CASE WHEN {_SAME} THEN COALESCE(excluded."resume_ref", "session"."resume_ref") ELSE excluded."resume_ref" END, '
        f'"messages" = CASE WHEN {_SAME} THEN "session"."messages" ELSE excluded."messages" END, '
        f'"created_at" = CASE WHEN {_SAME} THEN "session"."created_at" ELSE excluded."created_at" END, '
        '"session_id" = excluded."session_id"'
    ),
)
_SESSION_SET = _insert("session", _SESSION_COLS) + (
    ' ON CONFLICT ("goal", "role") DO UPDATE SET "session_id" = excluded."session_id", '
    '"resume_ref" = excluded."resume_ref", "messages" = excluded."messages", "created_at" = excluded."created_at"'
)
_SELECT_SESSION = 'SELECT "session_id", "resume_ref", "messages", "created_at" FROM "session" WHERE "goal" = ? AND "role" = ?'


class _Dialect:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pg = name == "postgres"
        self._cache: dict[str, str] = {}
        self.returning = self.pg or sqlite3.sqlite_version_info >= (3, 35, 0)
        self.merge = self.pg or sqlite3.sqlite_version_info >= (3, 33, 0)  # UPDATE ... FROM

    def sql(self, text: str) -> str:
        if not self.pg:
            return text
        out = self._cache.get(text)
        if out is None:
            out = text.replace("?", "%s")
            if len(text) < 4096:
                self._cache[text] = out
        return out

    def text(self, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; a brain's reply can. SQLite keeps it as is.
        if isinstance(value, str) and "\x00" in value:
            return value.replace("\x00", "\ufffd")
        return value


class _Tx:
    """The statements of one transaction (or one read), on one connection."""

    __slots__ = ("cur", "d")

    def __init__(self, cur: Any, dialect: _Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def _params(self, params: Sequence[Any]) -> Sequence[Any]:
        return [self.d.text(p) for p in params] if self.d.pg else params

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(self.d.sql(sql), self._params(params))
        return self.cur.rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        self.cur.execute(self.d.sql(sql), self._params(params))
        return self.cur.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.cur.execute(self.d.sql(sql), self._params(params))
        return self.cur.fetchall()

    def run_all(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        if not statements:
            return
        if self.d.pg and len(statements) > 1:
            # psycopg2 binds parameters client-side, so the statements can travel as one
            # round trip; inside our transaction they still succeed or fail together.
            params: list[Any] = []
            for _, p in statements:
                params.extend(p)
            self.run(";\n".join(s for s, _ in statements), params)
        else:
            for sql, p in statements:
                self.run(sql, p)

    def rows(self, stmt: _Stmt, rows: list[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
        """The statements that write `rows` of `stmt`, as few as the limits allow."""
        out = []
        step = stmt.chunk()
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            params: list[Any] = []
            for r in part:
                params.extend(r)
            out.append((stmt.many(len(part)), params))
        return out


# -- errors -----------------------------------------------------------------------------------


def _driver_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [sqlite3.Error, pw.PeeweeException]
    if psycopg2 is not None:
        errs.append(psycopg2.Error)
    return tuple(errs)


_DB_ERRORS = _driver_errors()


def _connection_lost(exc: BaseException, conn: Any) -> bool:
    """Did this error take the connection with it (a PostgreSQL server restart, a network cut)?"""
    if psycopg2 is not None and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return bool(getattr(conn, "closed", 0))
    return False


def _job_error(exc: BaseException) -> bool:
    """An error that belongs to one transition (its data or its version), not to the connection."""
    if isinstance(exc, (CrewError, ValueError, TypeError, KeyError, sqlite3.IntegrityError, sqlite3.InterfaceError)):
        return True
    if psycopg2 is not None and isinstance(
        exc, (psycopg2.IntegrityError, psycopg2.DataError, psycopg2.ProgrammingError, psycopg2.errors.TransactionRollbackError)
    ):
        return True
    return False


def _store_error(exc: BaseException, describe: str) -> CrewError:
    if isinstance(exc, CrewError):
        return exc
    return StoreError(f"the store at {describe} refused a write: {_one_line(exc)}")


def _no_version(describe: str) -> int:
    raise StoreError(f"the store at {describe} has no readable schema version; it may be damaged: "
                     "restore it from a backup or move it aside")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- connections ------------------------------------------------------------------------------


class _Pool:
    """A bounded set of reader connections, lent per call. The free ones wait in a C-level
    queue (a `None` there is the right to open one more), so lending costs no Python locks."""

    def __init__(self, connect: Callable[[], Any], size: int) -> None:
        self._connect = connect
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(size):
            self._free.put(None)
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> Any:
        conn = self._free.get()
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                self._free.put(None)
                raise
            with self._lock:
                self._all.append(conn)
        return conn

    def give(self, conn: Any, broken: bool = False) -> None:
        if broken or self._closed:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            _close_quietly(conn)
            conn = None
        self._free.put(conn)

    @contextmanager
    def conn(self) -> Iterator[Any]:
        conn = self.take()
        broken = False
        try:
            yield conn
        except BaseException as exc:
            broken = _connection_lost(exc, conn)
            raise
        finally:
            self.give(conn, broken)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


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
            groups.setdefault(_EVENT_INSERT, []).extend(p.event_rows(0 if p.create else p.last_seq))
        for sw in p.sessions:
            groups.setdefault(_SESSION_KEEP, []).append((p.goal, sw.role, sw.session_id, sw.resume_ref, "[]", p.at))
    for stmt in sorted(groups, key=lambda st: st.order):
        statements += tx.rows(stmt, groups[stmt])
    tx.run_all(statements)


class _Fallback(Exception):
    """The merged path cannot tell which transition failed: run them one by one."""


def _refuse(tx: _Tx, gid: str, version: int) -> None:
    current = tx.one('SELECT "version" FROM "goal" WHERE "id" = ?', (gid,))
    if current is None:
        raise NotFound(f"no goal {gid}")
    raise StaleWrite(f"goal {gid} changed under this writer (version {current[0]}, expected {version})")


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
                    p = job.plan
                    job.result = (p.last_seq or 0) + p.nrec
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


class Store:
    def __init__(self, db: pw.Database | None, *, describe: str, create: bool = True) -> None:
        self.db = db
        self.describe = describe
        self.is_sqlite = isinstance(db, pw.SqliteDatabase)
        self.dialect = _Dialect("sqlite" if self.is_sqlite else "postgres")
        self._schema = False  # the tables exist (False: reads see an empty store)
        self._version = SCHEMA_VERSION  # of the tables read (older until a writer migrates them)
        self._writer: _Writer | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._seq: dict[str, tuple[int, int]] = {}  # goal -> (version, last_seq) this store has seen
        if db is None:
            return
        self._pool = _Pool(self._connect_raw, READ_CONNECTIONS[self.dialect.name])
        try:
            self._check_schema(create)
        except CrewError:
            self._pool.close()
            raise
        except _DB_ERRORS as exc:
            self._pool.close()
            raise StoreError(f"cannot open the store at {describe}: {_one_line(exc)}") from None

    def _connect_raw(self) -> Any:
        """A new DB-API connection, configured as peewee would (pragmas; autocommit on PG)."""
        assert self.db is not None
        if self.is_sqlite:
            return pw.SqliteDatabase._connect(self.db)
        return pw.PostgresqlDatabase._connect(self.db)

    # -- schema -------------------------------------------------------------------------

    def _check_schema(self, create: bool) -> None:
        version = self._schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the store at {self.describe} was written by a newer crewctl (schema v{version}; "
                f"this crewctl knows v{SCHEMA_VERSION}); upgrade crewctl"
            )
        if version == SCHEMA_VERSION:
            self._schema = True
            return
        if not create:
            self._schema = version is not None  # an older schema still reads
            self._version = version or 0
            return
        assert self.db is not None
        with _BIND_LOCK, self.db.bind_ctx(ALL_MODELS):
            self.db.connect(reuse_if_open=True)
            try:
                with self.db.atomic(*(("IMMEDIATE",) if self.is_sqlite else ())):
                    if not self.is_sqlite:
                        self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                    # Checked again under the lock: another process may have just done it.
                    cur = self._schema_version_on(self.db.connection())
                    if cur is not None and cur > SCHEMA_VERSION:
                        raise SchemaTooNew(f"the store at {self.describe} was written by a newer crewctl; upgrade crewctl")
                    if cur != SCHEMA_VERSION:
                        # Migrations. v1 -> v2 adds the protected_file table (no existing row
                        # changes: goals stored without protected paths load with them off),
                        # which create_tables(safe=True) makes with every other missing table.
                        self.db.create_tables(ALL_MODELS, safe=True)
                        self.db.execute_sql(self.dialect.sql('DELETE FROM "meta" WHERE "key" = ?'), ("schema_version",))
                        self.db.execute_sql(self.dialect.sql(_insert("meta", ("key", "value"))), ("schema_version", str(SCHEMA_VERSION)))
            finally:
                self.db.close()
                if hasattr(self.db, "close_all"):  # a postgresql+pool URL: do not keep it
                    self.db.close_all()
        self._schema = True

    def _schema_version(self) -> int | None:
        with self._pool.conn() as conn:
            return self._schema_version_on(conn)

    def _schema_version_on(self, conn: Any) -> int | None:
        cur = conn.cursor()
        if self.is_sqlite:
            try:
                cur.execute("SELECT json_group_array(json_array(1))")  # built in since SQLite 3.38
            except sqlite3.OperationalError:
                raise StoreError(
                    f"the SQLite library of this Python ({sqlite3.sqlite_version}) has no JSON functions; "
                    "crewctl needs SQLite 3.38 or one built with JSON1"
                ) from None
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
        else:
            cur.execute("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'meta'")
        if cur.fetchone() is None:
            return None
        cur.execute(self.dialect.sql('SELECT "value" FROM "meta" WHERE "key" = ?'), ("schema_version",))
        row = cur.fetchone()
        # The meta table and its version row are written in one transaction, so a table
        # without the row (or a row that is no number) is damage, never a store to set up
        # again: "creating" it would write over what is left.
        try:
            return int(row[0]) if row else _no_version(self.describe)
        except (TypeError, ValueError):
            return _no_version(self.describe)

    def close(self) -> None:
        if self.db is None or self._closed:
            return
        self._closed = True
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
        self._pool.close()

    @property
    def empty(self) -> bool:
        return self.db is None or not self._schema

    # -- writes -------------------------------------------------------------------------

    def _write(self, fn: Callable[[_Tx], Any] | None, goal: str | None, plan: _Plan | None = None) -> Any:
        if self.db is None:
            raise StoreError(f"no store at {self.describe}")
        if self._closed:
            raise StoreError(f"the store at {self.describe} is closed")
        if not self._schema:
            raise StoreError(f"the store at {self.describe} has no tables (it was opened read-only)")
        writer = self._writer
        if writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = _Writer(self)
                    self._writer.start()
                writer = self._writer
        return writer.submit(_Job(fn, goal, plan))

    def create_goal(self, transition: Transition, at: str) -> None:
        state = transition.state
        records = transition.records
        head = (
            state.id, state.objective, state.workspace, state.status, state.reason, state.created_at, at,
            1, len(records), _data_json(state),
        )
        plan = _Plan(
            state.id, create=True, head=head, version=0, last_seq=0, nrec=len(records),
            ops=_row_writes(None, state, transition, at, ()), events=_events(records, at), sessions=(), at=at,
        )
        last_seq = self._write(None, state.id, plan)
        self._seq[state.id] = (1, last_seq)

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
        """Persist a transition in one transaction; return the goal's new version.

        Raises StaleWrite (and changes nothing) if the goal is no longer at `version`.
        """
        new = transition.state
        gid = new.id
        records = transition.records
        # (goal, version) names one committed row, so its last_seq never changes: when this
        # store saw it (it loaded or wrote that version), the events' numbers are known here.
        known = self._seq.get(gid)
        plan = _Plan(
            gid, create=False, head=(new.status, new.reason, new.objective, at, _data_json(new)), version=version,
            last_seq=known[1] if known is not None and known[0] == version else None, nrec=len(records),
            ops=_row_writes(old, new, transition, at, tuple(turn_writes)), events=_events(records, at),
            sessions=tuple(session_writes), at=at,
        )
        try:
            last_seq = self._write(None, gid, plan)
        except StaleWrite:
            self._seq.pop(gid, None)
            raise
        self._seq[gid] = (version + 1, last_seq)
        return version + 1

    def add_session_messages(self, goal_id: str, write: SessionWrite, at: str) -> None:
        def job(tx: _Tx) -> None:
            if self.dialect.pg:
                # The same lock order as a commit: the goal row first.
                tx.one('SELECT 1 FROM "goal" WHERE "id" = ? FOR UPDATE', (goal_id,))
            _write_session(tx, goal_id, write, at)

        self._write(job, goal_id)

    # -- reads --------------------------------------------------------------------------

    def _read(self, fn: Callable[[_Tx], Any]) -> Any:
        """Run `fn` on a pooled connection (every read is one statement: one snapshot).

        A connection that a PostgreSQL restart took away is replaced and the read tried once more.
        """
        for attempt in (1, 2):
            conn = self._pool.take()
            broken = False
            try:
                return fn(_Tx(conn.cursor(), self.dialect))
            except CrewError:
                raise
            except _DB_ERRORS as exc:
                broken = _connection_lost(exc, conn)
                if broken and attempt == 1:
                    continue
                raise StoreError(f"cannot read the store at {self.describe}: {_one_line(exc)}") from None
            finally:
                self._pool.give(conn, broken)
        raise AssertionError("unreachable")

    def load_goal(self, goal_id: str) -> tuple[GoalState, int]:
        """The goal's state and version."""
        self._need_db(goal_id)

        sql = _LOAD_SQL[(self.dialect.pg, self._version >= 2)]
        row = self._read(lambda tx: tx.one(sql, (goal_id,)))
        if row is None:
            raise NotFound(f"no goal {goal_id}")
        version, last_seq = row[0], row[1]
        state = _state_from_json(*row[2:])
        self._seq[goal_id] = (version, last_seq)
        return state, version

    def live_goal_ids(self) -> list[str]:
        if self.empty:
            return []
        terminal = sorted(TERMINAL)
        marks = ", ".join("?" * len(terminal))
        rows = self._read(
            lambda tx: tx.all(f'SELECT "id" FROM "goal" WHERE "status" NOT IN ({marks}) ORDER BY "created_at", "id"', terminal)
        )
        return [r[0] for r in rows]

    def outputs_due_ids(self) -> list[str]:
        """Done goals whose reflection or PR envelope is still to be made (a supervisor
        stopped before it was), so that `crewctl run` picks them up like live goals."""
        if self.empty:
            return []
        # A cheap filter on the stored JSON (its keys are written without spaces), then the
        # state itself decides.
        rows = self._read(
            lambda tx: tx.all(
                'SELECT "id" FROM "goal" WHERE "status" = ? AND ("data" LIKE ? OR "data" LIKE ?) ORDER BY "created_at", "id"',
                ("done", '%"reflection":"due"%', '%"status":"pending"%'),
            )
        )
        due = []
        for (gid,) in rows:
            state, _ = self.load_goal(gid)
            if state.reflection == "due" or (state.envelope is not None and state.envelope.status == "pending"):
                due.append(gid)
        return due

    def resolve_id(self, ref: str) -> str:
        """An exact goal id, or a unique prefix of at least 4 characters."""
        self._need_db(ref)

        def read(tx: _Tx) -> list[str]:
            if tx.one('SELECT 1 FROM "goal" WHERE "id" = ?', (ref,)):
                return [ref]
            if len(ref) < 4:
                return []
            return [r[0] for r in tx.all('SELECT "id" FROM "goal" WHERE substr("id", 1, ?) = ? ORDER BY "id" LIMIT 2', (len(ref), ref))]

        matches = self._read(read)
        if matches == [ref]:
            return ref
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise NotFound(f"goal id prefix {ref!r} is ambiguous; give more characters")
        raise NotFound(f"no goal {ref}")

    def list_goals(self, updated_since: str | None = None) -> list[dict[str, Any]]:
        """Every goal, oldest first, with what `goal list` and `crewctl watch` show: spend
        and budget, the turn in flight (and when it started) and the attention state (and
        since when). A few statements however many goals there are.

        With `updated_since` (an ISO time), only the goals written at or after it: what a
        dashboard that already holds the rest reads when something changed."""
        if self.empty:
            return []

        def read(tx: _Tx) -> tuple:
            where, params = ("", ()) if updated_since is None else (' WHERE "updated_at" >= ?', (updated_since,))
            goals = tx.all(
                'SELECT "id", "objective", "status", "reason", "created_at", "updated_at", "data", "workspace" '
                f'FROM "goal"{where} ORDER BY "created_at", "id"', params,
            )
            if not goals:
                return goals, [], []
            asking = tx.all('SELECT DISTINCT "goal" FROM "clarify_round" WHERE "answers" IS NULL')
            if updated_since is None or len(goals) > 100:
                entries = tx.all(_ENTRY_SQL, _ENTRY_TYPES)
            else:  # a few goals: the newest entry event of those waiting, by primary key, not a scan of every event
                entries = []
                waiting = {r[0] for r in asking}
                for g in goals:
                    why = g[2] if g[2] in ATTENTION else ("awaiting_input" if g[2] == "scoping" and g[0] in waiting else None)
                    for type_ in ENTRY_EVENTS.get(why, ()) if why else ():
                        row = tx.one('SELECT "at" FROM "event" WHERE "goal" = ? AND "type" = ? ORDER BY "seq" DESC LIMIT 1', (g[0], type_))
                        if row:
                            entries.append((g[0], type_, row[0]))
            return goals, asking, entries

        rows, asking, entries = self._read(read)
        flights = {}
        for row in rows:
            data = json.loads(row[6])
            flights[row[0]] = data
        # When each in-flight turn started: by primary key, for the few goals with one.
        wanted = [(gid, d["in_flight"]["turn"]) for gid, d in flights.items() if d.get("in_flight")]
        started: dict[tuple[str, int], str] = {}
        for i in range(0, len(wanted), 400):
            part = wanted[i : i + 400]
            where = " OR ".join(['("goal" = ? AND "turn" = ?)'] * len(part))
            params = [x for pair in part for x in pair]
            for g, turn, at in self._read(lambda tx: tx.all(f'SELECT "goal", "turn", "started_at" FROM "turn" WHERE {where}', params)):
                started[(g, turn)] = at
        asking_ids = {r[0] for r in asking}
        entered = {(g, type_): at for g, type_, at in entries}
        out = []
        for gid, objective, status, reason, created_at, updated_at, _, workspace in rows:
            data = flights[gid]
            flight = data.get("in_flight")
            why = status if status in ATTENTION else ("awaiting_input" if status == "scoping" and gid in asking_ids else None)
            since = None
            if why is not None:
                since = max((entered.get((gid, t)) or "" for t in ENTRY_EVENTS[why]), default="") or updated_at
            spend = data.get("spend") or {}
            out.append(
                {
                    "id": gid,
                    "objective": objective,
                    "status": status,
                    "reason": reason,
                    "round": data.get("round", 0),
                    "attempt": data.get("attempt", 0),
                    "created_at": created_at,
                    "updated_at": updated_at,
                    "workspace": workspace,
                    "usage": {k: spend.get(k, 0) for k in ("input_tokens", "output_tokens", "cached_tokens", "cost_usd", "seconds")},
                    "budget": data.get("budget") or {},
                    "in_flight": None
                    if not flight
                    else {
                        "turn": flight["turn"],
                        "role": flight["role"],
                        "kind": flight["kind"],
                        "round": flight.get("round"),
                        "interrupted": flight.get("interrupted", False),
                        "started_at": started.get((gid, flight["turn"])),
                    },
                    "attention": None if why is None else {"why": why, "since": since, "reason": reason},
                }
            )
        return out

    def status_of(self, goal_id: str) -> str:
        """Just the goal's status: what a follower checks to know when to stop."""
        self._need_db(goal_id)
        row = self._read(lambda tx: tx.one('SELECT "status" FROM "goal" WHERE "id" = ?', (goal_id,)))
        if row is None:
            raise NotFound(f"no goal {goal_id}")
        return row[0]

    def view(self, goal_id: str) -> dict[str, Any]:
        """`goal show --json` for one goal: its state plus what only the timeline knows."""
        state, _ = self.load_goal(goal_id)
        return self.view_of(state)

    def view_of(self, state: GoalState) -> dict[str, Any]:
        why = attention_why(state)
        flight = state.in_flight

        def read(tx: _Tx) -> tuple[str | None, str | None]:
            started = None
            if flight is not None:
                row = tx.one('SELECT "started_at" FROM "turn" WHERE "goal" = ? AND "turn" = ?', (state.id, flight.turn))
                started = row[0] if row else None
            since = None
            if why is not None:
                types = ENTRY_EVENTS[why]
                row = tx.one(
                    f'SELECT "at" FROM "event" WHERE "goal" = ? AND "type" IN ({", ".join("?" * len(types))}) ORDER BY "seq" DESC LIMIT 1',
                    (state.id, *types),
                )
                since = row[0] if row else None
            return started, since

        started, since = (None, None) if self.empty else self._read(read)
        return goal_view(state, started_at=started, since=since)

    def change_mark(self) -> tuple[int, int]:
        """Changes whenever any goal is written (every write bumps its version): what a
        watcher compares to learn that something happened, in one cheap statement."""
        if self.empty:
            return (0, 0)
        row = self._read(lambda tx: tx.one('SELECT COALESCE(SUM("version"), 0), COUNT(*) FROM "goal"'))
        return (int(row[0]), int(row[1]))

    def turn_heads(self, goal_id: str) -> list[tuple[int, str, int, str | None]]:
        """(turn, status, runs, finished_at) of every turn: enough to tell which changed."""
        self._need_db(goal_id)
        return [
            tuple(r)
            for r in self._read(
                lambda tx: tx.all('SELECT "turn", "status", "runs", "finished_at" FROM "turn" WHERE "goal" = ? ORDER BY "turn"', (goal_id,))
            )
        ]

    def events(self, goal_id: str, after: int = 0, limit: int | None = None, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
        self._need_db(goal_id)
        params: list[Any] = [goal_id, after]
        where = ""
        if types is not None:
            wanted = sorted(set(types))
            where = f' AND "type" IN ({", ".join("?" * len(wanted))})'
            params += wanted
        sql = f'SELECT "seq", "type", "at", "payload" FROM "event" WHERE "goal" = ? AND "seq" > ?{where} ORDER BY "seq"'
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._read(lambda tx: tx.all(sql, params))
        return [{"seq": seq, "type": type_, "at": at, "payload": json.loads(payload)} for seq, type_, at, payload in rows]

    def turns(self, goal_id: str, numbers: Iterable[int] | None = None, *, prompts: bool = True) -> list[dict[str, Any]]:
        """The goal's turns in order (only `numbers`, if given); without `prompts` the
        prompt column is not even read (prompt is then None)."""
        self._need_db(goal_id)
        cols = ("turn", "role", "kind", "round", "status", "runs", "prompt", "reply", "error", "input_tokens",
                "output_tokens", "cached_tokens", "cost_usd", "seconds", "started_at", "finished_at")
        selected = ", ".join("NULL" if c == "prompt" and not prompts else _q(c) for c in cols)
        sql = f'SELECT {selected} FROM "turn" WHERE "goal" = ?'
        params: list[Any] = [goal_id]
        if numbers is not None:
            wanted = sorted(set(numbers))
            if not wanted:
                return []
            sql += f' AND "turn" IN ({", ".join("?" * len(wanted))})'
            params += wanted
        rows = self._read(lambda tx: tx.all(sql + ' ORDER BY "turn"', params))
        out = []
        for row in rows:
            r = dict(zip(cols, row))
            out.append(
                {
                    **{k: r[k] for k in ("turn", "role", "kind", "round", "status", "runs", "prompt", "reply", "error")},
                    "usage": {k: r[k] for k in ("input_tokens", "output_tokens", "cached_tokens", "cost_usd", "seconds")},
                    "started_at": r["started_at"],
                    "finished_at": r["finished_at"],
                }
            )
        return out

    def session(self, goal_id: str, role: str) -> SessionRow | None:
        if self.empty:
            return None
        row = self._read(lambda tx: tx.one(_SELECT_SESSION, (goal_id, role)))
        if row is None:
            return None
        session_id, resume_ref, messages, created_at = row
        return SessionRow(goal=goal_id, role=role, session_id=session_id, resume_ref=resume_ref, messages=messages, created_at=created_at)

    def steers(self, goal_id: str) -> list[dict[str, Any]]:
        self._need_db(goal_id)
        rows = self._read(
            lambda tx: tx.all('SELECT "id", "text", "created_at", "delivered_turn" FROM "steer" WHERE "goal" = ? ORDER BY "id"', (goal_id,))
        )
        return [{"id": i, "text": text, "created_at": created, "delivered_turn": turn} for i, text, created, turn in rows]

    def _need_db(self, goal_id: str) -> None:
        if self.db is None:
            raise NotFound(f"no goal {goal_id} (no store at {self.describe} yet)")
        if not self._schema:
            raise NotFound(f"no goal {goal_id} (the store at {self.describe} is empty)")


# -- row <-> state --------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """What json cannot encode itself: our frozen dataclasses (as dataclasses.asdict would
    give them, without its deep copies) and read-only mappings. Tuples and dicts it does."""
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return vars(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} in goal.data")


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_ENCODE_PAYLOAD = json.JSONEncoder(separators=(",", ":"), default=str).encode
_DATA_FIELDS = tuple(f.name for f in fields(GoalState) if f.name not in _TABLE_FIELDS)
_PLAIN_STATE = not hasattr(GoalState, "__slots__")  # its fields are its __dict__


def _data_json(state: GoalState) -> str:
    if _PLAIN_STATE:
        data = dict(vars(state))
        for name in _TABLE_FIELDS:
            del data[name]
    else:  # pragma: no cover - if GoalState ever gets slots
        data = {n: getattr(state, n) for n in _DATA_FIELDS}
    return _ENCODE(data)


_CHILD_COLS = {
    "criterion": ("position", "id", "text", "verify", "status", "evidence"),
    "step": ("position", "id", "title", "plan", "detail", "lane", "needs_approval", "approved", "status",
             "attempts", "task", "dispatches", "holder", "result"),
    "clarify_round": ("seq", "intro", "questions", "answers"),
    "steer": ("id", "text"),
    "protected_file": ("rule", "path", "hash"),
}
_CHILD_WHERE = {"steer": ' AND "delivered_turn" IS NULL'}  # the state holds the steers still waiting


def _load_sql(pg: bool, baseline: bool = True) -> str:
    """The goal row and all its child rows in one statement: one round trip, one snapshot.
    Each child table comes back as a JSON array of row arrays (sorted in Python). A schema
    older than v2 has no protected_file table: its goals read with an empty baseline."""

    def agg(table: str) -> str:
        cols = ", ".join(_q(c) for c in _CHILD_COLS[table])
        where = f'"goal" = g."id"{_CHILD_WHERE.get(table, "")}'
        if pg:
            return f"(SELECT COALESCE(json_agg(json_build_array({cols}))::text, '[]') FROM {_q(table)} WHERE {where})"
        return f"(SELECT json_group_array(json_array({cols})) FROM {_q(table)} WHERE {where})"

    children = ", ".join(agg(t) if baseline or t != "protected_file" else "'[]'" for t in _CHILD_COLS)
    return f'SELECT g."version", g."last_seq", g."data", {children} FROM "goal" g WHERE g."id" = ?'


_LOAD_SQL = {(pg, baseline): _load_sql(pg, baseline) for pg in (False, True) for baseline in (False, True)}


def _state_from_json(data_json: str, criteria: str, steps: str, clarify: str, steers: str, baseline: str = "[]") -> GoalState:
    data = json.loads(data_json)
    data["baseline"] = sorted(tuple(r) for r in json.loads(baseline))
    data["criteria"] = [
        {"id": cid, "text": text, "verify": json.loads(verify), "status": status, "evidence": evidence}
        for _, cid, text, verify, status, evidence in sorted(json.loads(criteria), key=lambda r: r[0])
    ]
    names = _CHILD_COLS["step"][1:]
    steps_out = []
    for row in sorted(json.loads(steps), key=lambda r: r[0]):
        st = dict(zip(names, row[1:]))
        st["needs_approval"] = bool(st["needs_approval"])  # SQLite keeps booleans as 0/1
        st["approved"] = bool(st["approved"])
        steps_out.append(st)
    data["steps"] = steps_out
    data["clarify"] = [
        {"seq": seq, "intro": intro, "questions": json.loads(questions), "answers": json.loads(answers) if answers is not None else None}
        for seq, intro, questions, answers in sorted(json.loads(clarify), key=lambda r: r[0])
    ]
    data["steers"] = [{"id": sid, "text": text} for sid, text in sorted(json.loads(steers), key=lambda r: r[0])]
    return GoalState.from_dict(data)


def _bump_goal(tx: _Tx, head: tuple) -> int:
    """The optimistic check, for a writer that does not know last_seq: returns the new one."""
    gid, version = head[-2], head[-1]
    if tx.d.returning:
        row = tx.one(_GOAL_BUMP_SQL + ' RETURNING "last_seq"', head)
    else:  # SQLite before 3.35: our write lock is the whole database, so read it back
        row = tx.one('SELECT "last_seq" FROM "goal" WHERE "id" = ?', (gid,)) if tx.run(_GOAL_BUMP_SQL, head) == 1 else None
    if row is None:
        _refuse(tx, gid, version)
    return row[0]


def _row_writes(old: GoalState | None, new: GoalState, transition: Transition, at: str, turn_writes: tuple[TurnWrite, ...]) -> list[tuple[_Stmt, tuple]]:
    """Every row a transition writes besides the goal row and its events, in a safe order:
    deletes, then inserts, then updates (an update may touch a row inserted just before)."""
    ops = _table_rows(old, new, transition.records, at) + _turn_rows(new.id, transition, at, turn_writes)
    ops.sort(key=lambda op: op[0].order)
    return ops


def _events(records: tuple[Record, ...], at: str) -> list[tuple]:
    return [(r.type, at, _ENCODE_PAYLOAD(dict(r.payload))) for r in records]


def _table_rows(old: GoalState | None, new: GoalState, records: tuple[Record, ...], at: str) -> list[tuple[_Stmt, tuple]]:
    gid = new.id
    out: list[tuple[_Stmt, tuple]] = []
    if old is not None and old.criteria != new.criteria and [c.id for c in old.criteria] == [c.id for c in new.criteria]:
        # The same list with new verdicts (every gate round): only the changed rows.
        for i, (was, c) in enumerate(zip(old.criteria, new.criteria)):
            if was != c:
                out.append((_CRIT_UPDATE, (i, c.text, _verify_json(c), c.status, c.evidence, gid, c.id)))
    elif old is None or old.criteria != new.criteria:
        if old is not None and old.criteria:
            out.append((_CRIT_DELETE, (gid,)))
        for i, c in enumerate(new.criteria):
            out.append((_CRIT_INSERT, (gid, c.id, i, c.text, _verify_json(c), c.status, c.evidence)))
    if old is None or old.steps != new.steps:
        old_steps = {s.id: s for s in old.steps} if old else {}
        for i, st in enumerate(new.steps):
            prev = old_steps.get(st.id)
            if prev == st:
                continue
            values = _step_values(gid, i, st)
            if prev is not None:
                out.append((_STEP_UPDATE, values[2:] + values[:2]))
            else:
                out.append((_STEP_INSERT, values))
    if old is None or old.clarify != new.clarify:
        old_rounds = {r.seq: r for r in old.clarify} if old else {}
        for r in new.clarify:
            prev_round = old_rounds.get(r.seq)
            if prev_round == r:
                continue
            questions = json.dumps([{"id": q.id, "text": q.text, "options": list(q.options), "multi": q.multi} for q in r.questions])
            answers = json.dumps(dict(r.answers)) if r.answers is not None else None
            if prev_round is not None:
                out.append((_CLARIFY_UPDATE, (r.intro, questions, answers, gid, r.seq)))
            else:
                out.append((_CLARIFY_INSERT, (gid, r.seq, r.intro, questions, answers)))
    # Steers: new pending ones come from the state (full text); one that the very transition
    # queuing it also delivered is in the state no more, only in its `steer` record.
    old_pending = {s.id for s in old.steers} if old else set()
    delivered = {r.payload["steer"]: r.payload["turn"] for r in records if r.type == "steer_delivered"}
    new_steers = {s.id: s.text for s in new.steers if s.id not in old_pending}
    for r in records:
        if r.type == "steer" and r.payload["steer"] not in new_steers and r.payload["steer"] not in old_pending:
            new_steers[r.payload["steer"]] = r.payload.get("text", "")
    for sid, text in sorted(new_steers.items()):
        out.append((_STEER_INSERT, (gid, sid, text, at, delivered.pop(sid, None))))
    for sid, turn in delivered.items():
        out.append((_STEER_DELIVERED, (turn, gid, sid)))
    if old is None or (old.baseline is not new.baseline and old.baseline != new.baseline):
        # Replaced whole, and only when it changes (a lock, `goal protect`): rarely, and
        # every other transition of the goal writes nothing here.
        if old is not None and old.baseline:
            out.append((_BASELINE_DELETE, (gid,)))
        for rule, path, digest in new.baseline:
            out.append((_BASELINE_INSERT, (gid, rule, path, digest)))
    return out


def _verify_json(c: Criterion) -> str:
    return json.dumps(c.verify if isinstance(c.verify, str) else dict(c.verify))


def _step_values(gid: str, position: int, st: Step) -> tuple:
    return (
        gid, st.id, st.plan, position, st.title, st.detail, st.lane, bool(st.needs_approval), bool(st.approved),
        st.status, st.attempts, st.task, st.dispatches, st.holder, st.result,
    )


def _turn_rows(gid: str, transition: Transition, at: str, writes: tuple[TurnWrite, ...]) -> list[tuple[_Stmt, tuple]]:
    by_turn = {w.turn: w for w in writes}
    new = transition.state
    out: list[tuple[_Stmt, tuple]] = []
    for r in transition.records:
        p = r.payload
        if r.type == "turn_started":
            if p.get("rerun"):
                if p.get("refreshed") and new.in_flight is not None and new.in_flight.turn == p["turn"]:
                    out.append((_TURN_RERUN_PROMPT, ("running", at, new.in_flight.prompt, gid, p["turn"])))
                else:
                    out.append((_TURN_RERUN, ("running", at, gid, p["turn"])))
                continue
            prompt = None
            if new.in_flight is not None and new.in_flight.turn == p["turn"]:
                prompt = new.in_flight.prompt or None
            out.append((_TURN_INSERT, (gid, p["turn"], p["role"], p["kind"], p.get("round"), "running", 1, prompt, 0, 0, 0, 0.0, at)))
        elif r.type == "turn_finished":
            u = p.get("usage") or {}
            w = by_turn.get(p["turn"])
            out.append((
                _TURN_FINISH,
                (
                    "finished", w.reply if w else None, u.get("input_tokens", 0), u.get("output_tokens", 0),
                    u.get("cached_tokens", 0), u.get("cost_usd"), u.get("seconds", 0.0), at, gid, p["turn"],
                ),
            ))
        elif r.type == "turn_failed":
            out.append((_TURN_FAIL, ("failed", p.get("error"), at, gid, p["turn"])))
    return out


def _write_session(tx: _Tx, gid: str, sw: SessionWrite, at: str) -> None:
    if not sw.messages and not sw.reset:
        tx.run(_SESSION_KEEP.one, (gid, sw.role, sw.session_id, sw.resume_ref, "[]", at))
        return
    row = None if sw.reset else tx.one(_SELECT_SESSION, (gid, sw.role))
    same = row is not None and row[0] == sw.session_id
    messages = json.loads(row[2]) if same else []
    messages.extend({"role": role, "content": content} for role, content in sw.messages)
    resume_ref = sw.resume_ref if sw.resume_ref is not None else (row[1] if same else None)
    created_at = row[3] if same else at
    tx.run(_SESSION_SET, (gid, sw.role, sw.session_id, resume_ref, json.dumps(messages[-MAX_SESSION_MESSAGES:]), created_at))
