"""Process-wide facts of a running supervisor: the clock, paths, and the crash points.

CREWCTL_CRASH_AT (a test switch, read once at start) names a point where the daemon calls
os._exit(70) the first time it gets there; restarting `crewctl run` without it must finish
every goal. The names are a contract:

    after_ready_persisted       READY is stored, the verifier not yet started
    verifier_in_flight          the verifier's process is running its turn
    after_verify_persisted      the verdict is stored, its effects not yet performed
    after_steer_persisted       a steer is stored, not yet delivered
    mid_dispatch                half of a plan's tasks are queued
    after_reply_before_record   a turn's reply has arrived, not yet stored
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

__all__ = ["CRASH_POINTS", "crash_point", "arm_crash_points", "utcnow", "goal_dir", "round_dir"]

CRASH_POINTS = frozenset(
    {
        "after_ready_persisted",
        "verifier_in_flight",
        "after_verify_persisted",
        "after_steer_persisted",
        "mid_dispatch",
        "after_reply_before_record",
    }
)
CRASH_EXIT_CODE = 70
_armed: str | None = None


def arm_crash_points(value: str | None) -> None:
    """Read CREWCTL_CRASH_AT once; an unknown name is a usage error, not a silent no-op."""
    global _armed
    if value and value not in CRASH_POINTS:
        from ..exceptions import UsageError

        raise UsageError(f"CREWCTL_CRASH_AT={value!r} is not a crash point ({', '.join(sorted(CRASH_POINTS))})")
    _armed = value or None


def crash_point(name: str) -> None:
    assert name in CRASH_POINTS, name
    if _armed == name:
        sys.stderr.write(f"crewctl: crash point {name} reached (CREWCTL_CRASH_AT); exiting {CRASH_EXIT_CODE}\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def goal_dir(home: str, goal_id: str) -> str:
    """The goal's environment directory: snapshots and verifier homes live here."""
    return os.path.join(home, "goals", goal_id)


def round_dir(home: str, goal_id: str, round_no: int) -> str:
    return os.path.join(goal_dir(home, goal_id), "rounds", str(round_no))
