"""What is in $CREWCTL_HOME is the operator's alone: its directories 0700, its secrets 0600.

The home holds every prompt and reply (crew.db and its -wal), the control token
(daemon.json) and the supervisor's secret key: any local user who can read it can read
the goals and steer them. So every directory crewctl keeps state in is made private when it
is created, and tightened when it exists with looser bits (a home made by an older crewctl,
or by `mkdir`). A path (or what its symlink points to) that belongs to another user is
refused rather than used: it is not ours to secure, and trusting it would hand that user
our state (think of a directory someone made in /tmp before we did).

Stdlib only, no policy beyond the modes: store/, transport/ and actors/ all call it.
"""

from __future__ import annotations

import os
import stat

from .exceptions import UsageError

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_dir", "private_file", "mode_of"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def mode_of(path: str) -> int | None:
    """The permission bits of `path`, or None if it is missing."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def private_dir(path: str) -> str:
    """Make `path` a directory only its owner may enter (creating missing parents the same
    way only if they are missing too); tighten it if it exists with looser bits."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        private_dir(parent)
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass
    _own(path, want_dir=True)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: str) -> str:
    """Create `path` empty with mode 0600 if it is missing; tighten it if it exists.

    Creating it ourselves (rather than letting a library do so under the umask) means no
    moment exists in which another user could open it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        _own(path, want_dir=False)
        _tighten(path, PRIVATE_FILE)
    else:
        os.close(fd)
    return path


def _own(path: str, *, want_dir: bool) -> None:
    st = os.stat(path)
    if want_dir and not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise UsageError(
            f"{path} belongs to another user (uid {st.st_uid}); crewctl keeps its state only where "
            "no one else can read it: set CREWCTL_HOME to a directory of yours"
        )


def _tighten(path: str, mode: int) -> None:
    if stat.S_IMODE(os.stat(path).st_mode) & ~mode:
        os.chmod(path, mode)
