"""Run the real `crewctl` binary and a real supervisor process for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = ["CliResult", "Supervisor", "crewctl_binary", "read_log", "run_cli", "wait_until"]


def read_log(path: str) -> str:
    """A process's log so far ("" if it has none yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def crewctl_binary() -> str:
    """The `crewctl` console script installed next to this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), "crewctl")
    if not os.path.exists(path):
        raise RuntimeError(f"crewctl is not installed next to {sys.executable}; run `pip install -e .`")
    return path


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message or condition}; last value: {last!r}")
        time.sleep(interval)  # poll


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_cli(home: str, *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60) -> CliResult:
    full_env = dict(os.environ)
    full_env["CREWCTL_HOME"] = home
    full_env.pop("CREWCTL_CRASH_AT", None)
    if env:
        full_env.update(env)
    done = subprocess.run(
        [crewctl_binary(), *args],
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


class Supervisor:
    """A `crewctl run` process on a temporary home, stopped (or killed) at exit."""

    def __init__(
        self,
        tmp_path: Any,
        *,
        home: str | None = None,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        db: str | None = None,
        start: bool = True,
        config: str = "",
        env_allow: Iterable[str] = (),
    ) -> None:
        self.root = str(tmp_path)
        self.home = home or os.path.join(self.root, "home")
        self.args = list(args)
        self.env = dict(env or {})
        if "CREWCTL_CONFIG" not in self.env:
            self.env["CREWCTL_CONFIG"] = self.write_config(config, env_allow=env_allow)
        self.db = db
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.root, "supervisor.log")
        self._start_now = start

    def write_config(self, extra: str = "", *, env_allow: Iterable[str] = ()) -> str:
        """The config this supervisor and its CLI calls read: agents run sandboxed as users'
        would, with the test agents' state folder writable (crewctl.testing.agents) and
        `env_allow` passed to them beyond the allowlist."""
        from .agents import AGENT_STATE

        state = os.path.join(self.root, AGENT_STATE)
        os.makedirs(state, exist_ok=True)
        path = os.path.join(self.root, "crewctl-test-config.toml")
        with open(path, "w") as f:
            f.write(f"[sandbox]\nwritable = [{json.dumps(state)}]\nenv_allow = {json.dumps(list(env_allow))}\n\n{extra}")
        return path

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "Supervisor":
        if self._start_now:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, env: dict[str, str] | None = None, args: Iterable[str] | None = None, wait: bool = True) -> "Supervisor":
        os.makedirs(self.home, exist_ok=True)
        info = os.path.join(self.home, "daemon.json")
        if os.path.exists(info):
            os.remove(info)  # left by a killed supervisor; wait for the new one's
        full_env = dict(os.environ)
        full_env["CREWCTL_HOME"] = self.home
        full_env.pop("CREWCTL_CRASH_AT", None)
        full_env.update(self.env)
        if env:
            full_env.update(env)
        argv = [crewctl_binary(), "run", "--grace", "2", *(args if args is not None else self.args)]
        if self.db:
            argv += ["--db", self.db]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            wait_until(
                lambda: os.path.exists(info) or self.proc.poll() is not None,
                timeout=30,
                message="the supervisor to write daemon.json",
            )
            if self.proc.poll() is not None:
                raise AssertionError(f"crewctl run exited {self.proc.returncode}:\n{self.log()}")
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the supervisor (its process group: brains and verifier processes too)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return read_log(self.log_path)

    def info(self) -> dict[str, Any]:
        with open(os.path.join(self.home, "daemon.json")) as f:
            return json.load(f)

    # -- the CLI -----------------------------------------------------------------------------

    def cli(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> CliResult:
        full = dict(self.env)
        if self.db:
            full["CREWCTL_DB"] = self.db
        if env:
            full.update(env)
        result = run_cli(self.home, *args, env=full)
        if check and result.code != 0:
            raise AssertionError(f"crewctl {' '.join(args)} failed:\n{result}\n--- supervisor log\n{self.log()[-3000:]}")
        return result

    def new_goal(self, objective: str, *args: str, lead: str | None = None, verifier: str | None = None, worker: str | None = None, workspace: str | None = None) -> str:
        argv = ["goal", "new", objective, *args, "--json"]
        if lead:
            argv += ["--lead", lead]
        if verifier:
            argv += ["--verifier", verifier]
        if worker:
            argv += ["--worker", worker]
        if workspace:
            argv += ["--workspace", workspace]
        return self.cli(*argv).json()["id"]

    def show(self, goal_id: str) -> dict[str, Any]:
        return self.cli("goal", "show", goal_id, "--json").json()

    def events(self, goal_id: str) -> list[dict[str, Any]]:
        return self.cli("goal", "events", goal_id, "--json").json()

    def event_types(self, goal_id: str) -> list[str]:
        return [e["type"] for e in self.events(goal_id)]

    def wait_for_status(self, goal_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        def reached():
            view = self.show(goal_id)
            return view if view["status"] in statuses else None

        try:
            return wait_until(reached, timeout=timeout, interval=0.1, message=f"goal {goal_id} to reach {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- events\n{json.dumps(self.events(goal_id), indent=1)[-6000:]}\n--- supervisor log\n{self.log()[-3000:]}") from None

    def wait_for_event(self, goal_id: str, type_: str, timeout: float = 60, where: Callable[[dict], bool] | None = None) -> dict[str, Any]:
        def found():
            for e in self.events(goal_id):
                if e["type"] == type_ and (where is None or where(e)):
                    return e
            return None

        try:
            return wait_until(found, timeout=timeout, interval=0.1, message=f"a {type_} event on goal {goal_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- events\n{json.dumps(self.events(goal_id), indent=1)[-6000:]}\n--- supervisor log\n{self.log()[-3000:]}") from None
