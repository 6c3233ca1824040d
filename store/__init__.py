"""The durable store: a goal's state, timeline, turns and sessions in SQLite or PostgreSQL.

Public: `open_store` and the `Store` it returns, what a commit carries besides the state
(`TurnWrite`, `SessionWrite`), the refusal of a stale writer (`StaleWrite`). The modules
behind it are private and split by concern:

    repository.py  the Store API: open, create, commit, read views
    _writer.py     the one writer thread and its group commit
    _pool.py       reader connections, and telling a lost connection from a refused job
    _sql.py        the hand-written SQL of the hot paths, its dialect and transaction
    _rows.py       rows <-> GoalState, the child tables, the timeline and turn rows
    _records.py    commit payloads and the store's limits
    models.py      the peewee schema, created and checked by version
"""

from ._records import MAX_SESSION_MESSAGES, SessionWrite, StaleWrite, TurnWrite
from .models import SCHEMA_VERSION
from .repository import Store, default_home, open_store

__all__ = [
    "MAX_SESSION_MESSAGES",
    "SCHEMA_VERSION",
    "SessionWrite",
    "StaleWrite",
    "Store",
    "TurnWrite",
    "default_home",
    "open_store",
]
