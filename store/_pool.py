"""Reader connections lent per call, and how a driver's error is told apart: a lost
connection, a refused job, or the store's own failure."""

from __future__ import annotations

import queue
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import peewee as pw

from ..exceptions import CrewError, StoreError

try:  # psycopg2 is a dependency, but SQLite-only use must not need it to import
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None


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
