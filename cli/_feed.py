"""Learning that the store changed, without querying it in a loop.

The supervisor is another process, so the read side cannot be told by a callback; it can
only notice. With SQLite every commit appends to the write-ahead log, so the WAL file's and
the database file's (size, mtime) change with every write the supervisor makes: a stat()
of two files every 50 ms costs microseconds, never touches the database and takes no lock
the supervisor could wait on. Only when that signature moves do readers query. PostgreSQL
has no file to watch: there one cheap statement (the sum of the goals' write versions, see
`Store.change_mark`) is compared every half second.

File times have the kernel's clock-tick resolution, and a commit writes several frames, so
a change seen mid-commit could be followed by one the signature cannot see; after any
change the feed reports one more change an interval later, so the commit's end is read too.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..store import Store

__all__ = ["ChangeFeed"]

FILE_INTERVAL = 0.05  # seconds between stat() calls of the SQLite files
QUERY_INTERVAL = 0.5  # seconds between change_mark() statements (PostgreSQL)


class ChangeFeed:
    def __init__(self, store: Store, *, interval: float | None = None) -> None:
        self.store = store
        self.paths: tuple[str, ...] = ()
        if store.is_sqlite and store.db is not None:
            path = store.db.database
            self.paths = (path, path + "-wal")
        elif store.db is None:
            self.paths = (store.describe, store.describe + "-wal")  # not created yet: appears later
        self.interval = interval if interval is not None else (FILE_INTERVAL if self.paths else QUERY_INTERVAL)
        self._last = self.mark()
        self._recheck = False

    def mark(self) -> Any:
        if self.paths:
            out = []
            for p in self.paths:
                try:
                    st = os.stat(p)
                except OSError:
                    out.append(None)
                else:
                    out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            return tuple(out)
        return self.store.change_mark()

    def changed(self) -> bool:
        """Did the store change since the last call? (One stat pair or one statement.)"""
        now = self.mark()
        if now != self._last:
            self._last = now
            self._recheck = True
            return True
        if self._recheck:
            self._recheck = False
            return True
        return False

    def wait(self, timeout: float) -> bool:
        """Block until the store changes (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self.changed():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.interval, left))  # poll: the writer is another process
