"""Every agent and check process on record, so that nothing outlives its supervisor.

A sandbox dies with the thread that started it (`--die-with-parent`), so a supervisor
killed with SIGKILL takes its sandboxes with it. That is the kernel's job and it is quick,
but it is asynchronous, and "no agent of the old run is still working when the new run
reruns its turn" must not depend on a race. So each process crewctl starts is written down
(`$CREWCTL_HOME/run/procs/<pid>`, holding the process's start time, which tells it apart
from a later process that reuses the pid) and struck off when it is reaped; the next
`crewctl run` kills the process group of every entry still alive and waits for it to be
gone before it resumes any goal.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["Ledger"]

_REAP_WAIT = 10.0


class Ledger:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def record(self, pid: int) -> None:
        started = _start_time(pid)
        if started is None:
            return  # already gone
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(os.path.join(self.directory, str(pid)), "w") as f:
                f.write(started)
        except OSError:
            pass  # a full disk must not fail the turn; the kernel still ends the sandbox

    def forget(self, pid: int) -> None:
        try:
            os.remove(os.path.join(self.directory, str(pid)))
        except OSError:
            pass

    def reap(self, wait: float = _REAP_WAIT) -> list[int]:
        """Kill what a previous run left (each entry's whole process group); return their pids."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        killed = []
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(os.path.join(self.directory, name)) as f:
                    recorded = f.read().strip()
            except OSError:
                recorded = ""
            if recorded and _start_time(pid) == recorded:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                killed.append(pid)
            self.forget(pid)
        deadline = time.monotonic() + wait
        for pid in killed:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)  # poll: a killed process is gone once its parent (init) reaps it
        return killed


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat); the start time is field 22.
    return fields[19].decode() if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
