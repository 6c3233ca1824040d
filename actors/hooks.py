"""The operator's hooks: `[hooks] on_attention` and `on_done` in the config.

A hook is the operator's own command, so it runs as the supervisor runs (never in a turn's
sandbox), through the shell, with the goal's `goal show --json` on stdin and CREWCTL_GOAL,
CREWCTL_STATUS, CREWCTL_REASON set. It must never hold a goal up: the goal's supervisor
only hands the goal over (`fire` returns at once) and a small pool of threads runs the
commands, each killed (its whole process group) at the timeout. A non-zero exit or a
timeout goes back to the daemon as a `HookFailed` event for the goal's timeline.

Which transition fires which hook is the pure rule goal.attention.hook_due.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..config import HOOK_TIMEOUT
from ..goal import events as ev
from ..goal.model import GoalState
from ..store import Store

__all__ = ["HookRunner", "MAX_CONCURRENT_HOOKS"]

log = logging.getLogger("crewctl.hooks")

MAX_CONCURRENT_HOOKS = 4  # more wait their turn in the pool's queue; the goals never wait
_STDERR_KEEP = 2000


class HookRunner:
    def __init__(self, hooks: dict[str, Any], store: Store, report: Callable[[str, ev.HookFailed], None]) -> None:
        self.commands = {name: hooks[name] for name in ("on_attention", "on_done") if hooks.get(name)}
        self.timeout = float(hooks.get("timeout") or HOOK_TIMEOUT)
        self.store = store
        self.report = report
        self._pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_HOOKS, thread_name_prefix="crewctl-hook")
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._closed = False

    @property
    def active(self) -> bool:
        return bool(self.commands)

    def fire(self, hook: str, state: GoalState) -> None:
        """Run `hook` for the goal as it is now (the state just committed); returns at once."""
        command = self.commands.get(hook)
        if command is None or self._closed:
            return
        try:
            self._pool.submit(self._run, hook, command, state)
        except RuntimeError:  # shut down meanwhile
            pass

    def _run(self, hook: str, command: str, state: GoalState) -> None:
        try:
            view = self.store.view_of(state)
        except Exception as exc:  # the store is closing: the hook still learns the essentials
            log.warning("hook %s for goal %s: reading the goal failed (%s); passing its state alone", hook, state.id, exc)
            from ..goal.views import goal_view

            view = goal_view(state)
        env = dict(os.environ, CREWCTL_GOAL=state.id, CREWCTL_STATUS=state.status, CREWCTL_REASON=state.reason or "")
        error = None
        try:
            proc = subprocess.Popen(
                command,
                shell=True,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills all it started
            )
        except OSError as exc:
            error = f"could not start: {exc}"
        else:
            with self._lock:
                self._running.add(proc)
            try:
                _, stderr = proc.communicate(json.dumps(view, default=str).encode(), timeout=self.timeout)
                if proc.returncode != 0:
                    tail = stderr.decode("utf-8", "replace").strip()[-_STDERR_KEEP:]
                    error = f"exited {proc.returncode}" + (f": {tail}" if tail else "")
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                error = f"timed out after {self.timeout:g}s (killed)"
            except (BrokenPipeError, OSError) as exc:  # it exited without reading stdin: judged by its exit
                proc.wait()
                if proc.returncode != 0:
                    error = f"exited {proc.returncode} ({exc})"
            finally:
                with self._lock:
                    self._running.discard(proc)
        if error is not None and not self._closed:
            log.warning("hook %s for goal %s failed: %s", hook, state.id, error)
            self.report(state.id, ev.HookFailed(hook=hook, status=state.status, error=error))

    def close(self) -> None:
        """Stop: hooks not started yet are dropped, running ones killed."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
