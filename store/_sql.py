"""The hand-written SQL of the hot paths, and the dialect and transaction it runs in.

Written with `?` placeholders; PostgreSQL (psycopg2) gets them as `%s`."""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from ..goal.attention import ENTRY_EVENTS
from .models import ALL_MODELS

try:  # psycopg2 is a dependency, but SQLite-only use must not need it to import
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None


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

    def run_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
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

    def rows(self, stmt: _Stmt, rows: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
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
