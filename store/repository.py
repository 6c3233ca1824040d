"""The store's operations: open a database, create goals, commit transitions, read views.

Its length (about 650 lines) is the Store API alone (open, commit, reads); SQL, the pool,
the writer and row mapping are in the package's private modules.

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
import sqlite3
import threading
from typing import Any, Callable, Iterable

import peewee as pw
from playhouse.db_url import connect as connect_url

try:  # psycopg2 is a dependency, but SQLite-only use must not need it to import
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None

from ..exceptions import CrewError, NotFound, SchemaTooNew, StoreError
from ..goal.attention import ATTENTION, ENTRY_EVENTS, attention_why
from ..goal.effects import Transition
from ..home import private_dir, private_file
from ..goal.model import TERMINAL, GoalState
from ..goal.views import goal_view
from ..goal.vocab import EnvelopeStatus, ReflectionStatus, Status
from .models import ALL_MODELS, SCHEMA_VERSION, SessionRow
from ._pool import _connection_lost, _DB_ERRORS, _no_version, _one_line, _Pool
from ._records import _BIND_LOCK, _PG_SCHEMA_LOCK, READ_CONNECTIONS, SessionWrite, StaleWrite, TurnWrite
from ._rows import _data_json, _events, _LOAD_SQL, _row_writes, _state_from_json, _write_session
from ._sql import _Dialect, _ENTRY_SQL, _ENTRY_TYPES, _insert, _q, _SELECT_SESSION, _Tx
from ._writer import _Job, _Plan, _Writer


__all__ = ["Store", "StaleWrite", "TurnWrite", "SessionWrite", "default_home", "open_store"]


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
    return pw.SqliteDatabase(path, pragmas=_SQLITE_PRAGMAS, timeout=_SQLITE_TIMEOUT,
                             check_same_thread=False, cached_statements=_SQLITE_CACHED_STATEMENTS)


# One definition of how every SQLite connection is opened, whether peewee opens it (schema
# creation) or the store does (the writer and the readers, `_connect_raw`).
_SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    # FULL: a committed decision survives power loss, not only a killed process.
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 30000,
}
_SQLITE_TIMEOUT = 30
# Pooled connections move between threads, one at a time: check_same_thread=False on both.
_SQLITE_CACHED_STATEMENTS = 256  # the multi-row statements of group commits come in many sizes


def _connect_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=_SQLITE_TIMEOUT, isolation_level=None,
                           check_same_thread=False, cached_statements=_SQLITE_CACHED_STATEMENTS)
    try:
        for pragma, value in _SQLITE_PRAGMAS.items():
            conn.execute(f"PRAGMA {pragma} = {value}")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_postgres(db: pw.PostgresqlDatabase) -> Any:
    """As peewee's PostgreSQL adapter connects (a URL or a database name, plus the URL's
    parameters), in autocommit: the store issues its own BEGIN and COMMIT."""
    assert psycopg2 is not None
    params = dict(db.connect_params)
    params.setdefault("dsn" if db.database.startswith("postgresql://") else "dbname", db.database)
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


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
        """A new DB-API connection of our own (not one of peewee's thread-bound ones)."""
        assert self.db is not None
        if self.is_sqlite:
            return _connect_sqlite(self.db.database)
        assert isinstance(self.db, pw.PostgresqlDatabase)
        return _connect_postgres(self.db)

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
                (Status.DONE, f'%"reflection":"{ReflectionStatus.DUE}"%', f'%"status":"{EnvelopeStatus.PENDING}"%'),
            )
        )
        due = []
        for (gid,) in rows:
            state, _ = self.load_goal(gid)
            if state.reflection == ReflectionStatus.DUE or (state.envelope is not None and state.envelope.status == EnvelopeStatus.PENDING):
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
                    why = g[2] if g[2] in ATTENTION else (Status.AWAITING_INPUT if g[2] == Status.SCOPING and g[0] in waiting else None)
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
            for g, turn, at in self._read(lambda tx: tx.all(f'SELECT "goal", "turn", "started_at" FROM "turn" WHERE {where}', params)):  # noqa: B023 (called at once)
                started[(g, turn)] = at
        asking_ids = {r[0] for r in asking}
        entered = {(g, type_): at for g, type_, at in entries}
        out = []
        for gid, objective, status, reason, created_at, updated_at, _, workspace in rows:
            data = flights[gid]
            flight = data.get("in_flight")
            why = status if status in ATTENTION else (Status.AWAITING_INPUT if status == Status.SCOPING and gid in asking_ids else None)
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
                    "usage": {k: spend.get(k, 0) for k in ("input_tokens", "output_tokens", "cached_tokens", "cost_usd", "seconds", "uncounted_turns")},
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
