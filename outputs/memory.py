"""Workspace memory on disk: $CREWCTL_HOME/memory/<workspace key>/MEMORY.md.

The key is the workspace's directory name (made safe) and a hash of its real path, so two
checkouts named `app` keep apart and a person can still tell which folder is which.
Appends take a lock and replace the file atomically, so two goals finishing at once in
one workspace both land and a reader never sees half a file; what a person wrote in the
file is kept as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import contextmanager
from typing import Iterable, Iterator

from ..goal import memory as rules
from ..goal.memory import Entry

__all__ = ["append", "memory_path", "read", "workspace_key"]

_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def workspace_key(workspace: str) -> str:
    real = os.path.realpath(workspace)
    name = _UNSAFE.sub("-", os.path.basename(real).lower()).strip("-.")[:40] or "root"
    return f"{name}-{hashlib.sha256(os.fsencode(real)).hexdigest()[:12]}"


def memory_path(home: str, workspace: str) -> str:
    return os.path.join(home, "memory", workspace_key(workspace), "MEMORY.md")


def read(home: str, workspace: str) -> str | None:
    try:
        with open(memory_path(home, workspace), encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def append(home: str, workspace: str, new: Iterable[tuple[str, str]], *, goal_id: str, at: str) -> list[Entry]:
    """Append the entries not already there; returns those added."""
    path = memory_path(home, workspace)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with _locked(path):
        text, added = rules.append(read(home, workspace), os.path.realpath(workspace), new, goal_id=goal_id, date=at)
        if added:
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    return added


@contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
