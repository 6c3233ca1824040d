"""Role actors: the lead (one brain session, one turn at a time) and the verifier of a round.

A role actor blocks in its own thread while its brain works, so the goal's supervisor stays
free to take steers, pauses and cancels; those reach a running turn through its cancel
event, never through the actor's mailbox.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pykka

from ..brains import TurnRequest, resolve
from ..brains.exec import run_bounded
from ..config import Config
from ..exceptions import BrainCrashed, BrainError, ConfigError, turn_failure_kind
from ..goal import events as ev
from ..goal.effects import EndRound, RunVerifierTurn, StartRound
from ..goal.model import CheckRun
from ..outputs import envelope
from ..store import SessionWrite, TurnWrite
from ..sandbox import Sandbox, SandboxPolicy, agent_env, brain_kind
from .messages import Deliver, RoleCrashed, RunTurn
from .runtime import crash_point, round_dir
from .snapshot import SnapshotError, SnapshotLimits, SnapshotRefused, check_protected, copy_tree, snapshot_workspace

__all__ = ["Interrupt", "LeadActor", "RoundActor", "VerifierSettings"]

log = logging.getLogger("crewctl.roles")

CHECK_OUTPUT_KEEP = 16 * 1024
# Check commands run the workspace's own code: Python must not import a module from the
# current directory ahead of the real one (./pytest.py shadowing pytest), nor leave
# bytecode behind in the copy.
CHECK_ENV = {"PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def resume_at_of(exc: BaseException) -> str | None:
    """When a usage-limited provider said its limit resets, as an ISO time (else None)."""
    resets_at = getattr(exc, "resets_at", None)
    if not isinstance(resets_at, (int, float)) or isinstance(resets_at, bool) or not math.isfinite(resets_at):
        return None
    try:
        return datetime.fromtimestamp(resets_at, timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _usage(reply_usage, seconds: float) -> ev.TurnUsage:
    return ev.TurnUsage(
        input_tokens=reply_usage.input_tokens,
        output_tokens=reply_usage.output_tokens,
        cached_tokens=reply_usage.cached_tokens,
        cost_usd=reply_usage.cost_usd,
        seconds=seconds,
    )


class LeadActor(pykka.ThreadingActor):
    """Runs the lead's turns in the goal's workspace, in one brain session."""

    use_daemon_thread = True  # a brain stuck past cancellation must not keep the process alive

    def __init__(
        self,
        supervisor: pykka.ActorRef,
        goal_id: str,
        workspace: str,
        spec: str,
        config: Config,
        timeout: float | None,
        sandbox: Sandbox,
    ) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.goal_id = goal_id
        self.workspace = workspace
        self.spec = spec
        self.config = config
        self.timeout = timeout
        self.sandbox = sandbox
        self.brain = None
        self.current: int | None = None

    def on_receive(self, message: Any) -> None:
        if isinstance(message, RunTurn):
            self._run(message)

    def _run(self, msg: RunTurn) -> None:
        self.current = msg.turn
        started = time.monotonic()
        # A turn may not outlast the goal's time budget: the brain's own timeout is cut to
        # what is left of it, and a turn stopped there is reported as such (not retried).
        timeout = self.timeout
        by_budget = msg.time_left is not None and (timeout is None or msg.time_left < timeout)
        if by_budget:
            timeout = max(msg.time_left, 0.05)
        try:
            if self.brain is None:
                self.brain = resolve(self.spec, self.config)
            wants_history = getattr(self.brain, "wants_history", False)
            env, policy = self.sandbox.for_turn("lead", self.workspace, kind=brain_kind(self.spec, self.config))
            request = TurnRequest(
                role="lead",
                goal_id=self.goal_id,
                session_id=msg.session_id,
                turn=msg.turn,
                prompt=msg.prompt,
                workdir=self.workspace,
                timeout=timeout,
                history=msg.history if wants_history else (),
                resume_ref=msg.resume_ref,
                cancel=msg.cancel,
                env=env,
                sandbox=policy,
            )
            reply = self.brain.run(request)
        except BrainCrashed as exc:
            # The brain died under us: the supervisor restarts this role in a fresh session.
            self.supervisor.tell(RoleCrashed(role="lead", error=str(exc), turn=msg.turn))
            self.actor_ref.stop(block=False)
            return
        except (BrainError, ConfigError) as exc:
            if msg.cancel.is_set():
                return  # we were told to stop; nothing to report
            elapsed = time.monotonic() - started
            if by_budget and elapsed >= timeout:
                failed = ev.TurnFailed(turn=msg.turn, error=f"stopped after {elapsed:.1f}s: the time budget ran out",
                                       kind="time_budget", seconds=elapsed)
            else:
                failed = ev.TurnFailed(turn=msg.turn, error=str(exc), kind=turn_failure_kind(exc), resume_at=resume_at_of(exc))
            self.supervisor.tell(Deliver(failed))
            return
        seconds = time.monotonic() - started
        if msg.cancel.is_set():
            return
        messages = (("user", msg.prompt), ("assistant", reply.text)) if wants_history else ()
        self.supervisor.tell(
            Deliver(
                ev.TurnFinished(turn=msg.turn, text=reply.text, usage=_usage(reply.usage, seconds)),
                turn_writes=(TurnWrite(turn=msg.turn, reply=reply.text),),
                session_writes=(SessionWrite(role="lead", session_id=msg.session_id, resume_ref=reply.resume_ref, messages=messages),),
                before_record=True,
            )
        )
        self.current = None

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.supervisor.tell(
            RoleCrashed(role="lead", error=f"{exception_type.__name__}: {exception_value}", turn=self.current)
        )


class Interrupt:
    """Stops a round from another thread: sets the cancel flag and kills its processes.

    The supervisor holds it; the round actor is busy in a blocking call and cannot read its
    mailbox, so a pause or cancel must reach the processes directly.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []

    def is_set(self) -> bool:
        return self.event.is_set()

    def register(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.append(proc)
            stopped = self.event.is_set()
        if stopped:
            _kill(proc)

    def set(self) -> None:
        self.event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill(proc)


@dataclass(frozen=True)
class VerifierSettings:
    inherit_home: bool = False
    keep_failed_rounds: int = 3
    snapshot_limits: SnapshotLimits = SnapshotLimits()


class RoundActor(pykka.ThreadingActor):
    """One gate round: snapshot, protected paths, crewctl's own checks, then a brand-new verifier.

    Lives for one round. Nothing it does touches the lead's workspace: the snapshot is a copy
    in the goal's environment directory that nothing ever runs in; each check command and
    the verifier get their own copy of it (so one cannot prepare the files another reads),
    with a scrubbed environment, and the verifier process is new for this round. If the
    snapshot is refused (over its quota) or a protected path changed, the round is reported
    held before any check runs.
    """

    use_daemon_thread = True

    def __init__(
        self,
        supervisor: pykka.ActorRef,
        *,
        home: str,
        goal_id: str,
        workspace: str,
        spec: str | None,
        config: Config,
        settings: VerifierSettings,
        timeout: float | None,
        interrupt: Interrupt,
        sandbox: Sandbox,
        envelope_base: str | None = None,
    ) -> None:
        super().__init__()
        self.envelope_base = envelope_base  # the goal's starting commit: each round's PR envelope tree
        self.supervisor = supervisor
        self.sandbox = sandbox
        self.home = home
        self.goal_id = goal_id
        self.workspace = workspace
        self.spec = spec
        self.config = config
        self.settings = settings
        self.timeout = timeout
        self.cancel = interrupt
        self.host: subprocess.Popen | None = None
        self.session_id = str(uuid.uuid4())
        self.round: int | None = None
        self.dir: str | None = None
        self._round_facts: dict = {}
        self.policy: dict | None = None  # the verifier's sandbox, sent with each of its turns

    # -- the actor's thread -----------------------------------------------------------------

    def on_receive(self, message: Any) -> None:
        if isinstance(message, StartRound):
            self._start(message)
        elif isinstance(message, RunVerifierTurn):
            self._corrective(message)
        elif isinstance(message, EndRound):
            self._end(message.keep_snapshot)

    def _start(self, e: StartRound) -> None:
        self.round = e.round
        self.dir = round_dir(self.home, self.goal_id, e.round)
        snapshot, work, home, tmp = (os.path.join(self.dir, d) for d in ("snapshot", "work", "home", "tmp"))
        started = time.monotonic()
        try:
            if os.path.exists(self.dir):
                shutil.rmtree(self.dir)  # a rerun of this round starts from a fresh snapshot
            taken = snapshot_workspace(self.workspace, snapshot, exclude=(self.home,), limits=self.settings.snapshot_limits)
            held = None if e.protect is None else _protected(taken, e.protect, self.workspace)
        except SnapshotRefused as exc:
            self._held(e, started, refused=str(exc), snapshot=None)
            return
        except (SnapshotError, OSError) as exc:
            self._failed(e.turn, f"snapshot failed: {exc}", "error")
            return
        if held is not None:
            findings, refused = held
            if findings or refused:
                self._held(e, started, findings=findings, refused=refused, snapshot=taken.summary())
                return
        try:
            if self.envelope_base:
                # The pristine snapshot, which no check or verifier ever runs in, is what
                # the lead left. Kept outside the round's directory.
                envelope.prepare(self.home, self.goal_id, e.round, workspace=self.workspace, snapshot=snapshot, base=self.envelope_base)
            os.makedirs(home, mode=0o700)
            os.makedirs(tmp)
            kind = brain_kind(self.spec, self.config)
            # `[verifier] home = "inherit"` is the operator's explicit opt-out for a CLI that
            # keeps its login in HOME: the verifier then sees (and may write) the real HOME.
            env, verifier_policy = self.sandbox.for_verifier(
                work, kind=kind, own_home=home, tmpdir=tmp, lead_workspace=self.workspace,
                inherit_home=self.settings.inherit_home,
            )
        except (SnapshotError, OSError) as exc:
            self._failed(e.turn, f"snapshot failed: {exc}", "error")
            return
        self.policy = verifier_policy.as_dict() if verifier_policy else None
        # Check commands hold no brain credentials: the test suite has no use for an API key.
        check_env = {**agent_env(os.environ, kind=None, home=home, tmp=tmp, extra_allow=self.sandbox.env_allow), **CHECK_ENV}
        checks: dict[str, CheckRun] = {}
        for cid, command in e.checks:
            if self.cancel.is_set():
                return
            own = os.path.join(self.dir, "checks", cid)
            try:
                copy_tree(snapshot, own)
            except OSError as exc:
                self._failed(e.turn, f"cannot copy the snapshot for check {cid}: {exc}", "error")
                return
            policy = self.sandbox.policy("check", own, tmpdir=tmp, lead_workspace=self.workspace, own_home=home)
            checks[cid] = _run_check(command, own, check_env, e.timeout, self.cancel.event, sandbox=policy)
            if checks[cid].exit == 0:
                shutil.rmtree(own, ignore_errors=True)  # a failed check's copy stays for inspection
        if self.cancel.is_set():
            return
        protected = () if e.protect is not None else None
        summary = taken.summary()
        if not e.model_needed:
            self._finished(e, text=None, checks=checks, usage=ev.TurnUsage(seconds=time.monotonic() - started), pid=None,
                           protected=protected, snapshot=summary)
            return
        if not self.spec:
            self._failed(e.turn, "no verifier brain configured (--verifier)", "config")
            return
        try:
            copy_tree(snapshot, work)
        except OSError as exc:
            self._failed(e.turn, f"cannot copy the snapshot for the verifier: {exc}", "error")
            return
        self._round_facts = {"protected": protected, "snapshot": summary}
        try:
            self._spawn(work, env)
        except _HostGone as exc:
            self._failed(e.turn, str(exc), "crashed")
            return
        self._verifier_turn(e, started, checks, crash_at="verifier_in_flight")

    def _corrective(self, e: RunVerifierTurn) -> None:
        if self.host is None or self.host.poll() is not None:
            self._failed(e.turn, "the verifier process is gone", "crashed")
            return
        self._verifier_turn(e, time.monotonic(), None, crash_at=None)

    def _verifier_turn(self, e, started: float, checks: dict | None, crash_at: str | None) -> None:
        """One turn in this round's verifier process, reported to the supervisor."""
        try:
            result = self._ask(e, e.prompt, crash_at=crash_at)
        except _HostGone as exc:
            self._failed(e.turn, str(exc), "crashed")
            return
        if result is None:
            return  # cancelled
        if not result.get("ok"):
            resets = result.get("resets_at")
            resume_at = resume_at_of(_Reset(resets)) if resets is not None else None
            self._failed(e.turn, str(result.get("error", "verifier failed")), str(result.get("kind", "error")), resume_at)
            return
        usage = _usage_from(result.get("usage") or {}, time.monotonic() - started)
        facts = self._round_facts if checks is not None else {}
        self._finished(e, text=result["text"], checks=checks, usage=usage, pid=result.get("pid"), **facts)

    def _finished(self, e, *, text: str | None, checks: dict | None, usage: ev.TurnUsage, pid: int | None,
                  protected=None, refused: str | None = None, snapshot: dict | None = None) -> None:
        self.supervisor.tell(
            Deliver(
                ev.RoundFinished(round=e.round, turn=e.turn, text=text, checks=checks, usage=usage, host_pid=pid,
                                 protected=protected, refused=refused, snapshot=snapshot),
                turn_writes=(TurnWrite(turn=e.turn, reply=text),),
                before_record=True,
            )
        )

    def _held(self, e, started: float, *, findings=(), refused: str | None = None, snapshot: dict | None) -> None:
        """The round ends here, before any check: the phase machine holds it and says why."""
        protected = tuple(tuple(f) for f in findings) if e.protect is not None else None
        self._finished(e, text=None, checks={}, usage=ev.TurnUsage(seconds=time.monotonic() - started), pid=None,
                       protected=protected, refused=refused, snapshot=snapshot)

    def _failed(self, turn: int, error: str, kind: str, resume_at: str | None = None) -> None:
        if not self.cancel.is_set():  # a stopped round has nothing to report
            self.supervisor.tell(Deliver(ev.TurnFailed(turn=turn, error=error, kind=kind, resume_at=resume_at)))

    def _spawn(self, work: str, env: dict[str, str]) -> None:
        try:
            host = subprocess.Popen(
                [sys.executable, "-m", "crewctl.actors.verifier_host", "--parent", str(os.getpid())],
                cwd=work,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise _HostGone(f"cannot start the verifier process: {exc}") from None
        self.host = host
        self.cancel.register(host)

    def _ask(self, e, prompt: str, crash_at: str | None) -> dict | None:
        """One turn in the verifier process; None if cancelled."""
        assert self.host is not None and self.host.stdin is not None and self.host.stdout is not None
        job = {
            "spec": self.spec,
            "prompt": prompt,
            "goal": self.goal_id,
            "session": self.session_id,
            "turn": e.turn,
            "round": e.round,
            "timeout": self.timeout,
            "sandbox": self.policy,
            "config": {
                "brains": self.config.brains,
                "presets": self.config.presets,
                "providers": self.config.providers,
            },
        }
        try:
            self.host.stdin.write((json.dumps(job) + "\n").encode())
            self.host.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _HostGone("the verifier process exited before its turn") from None
        if crash_at:
            crash_point(crash_at)
        line = self.host.stdout.readline()  # the brain's own timeout bounds this turn
        if self.cancel.is_set():
            return None
        if not line:
            code = self.host.poll()
            raise _HostGone(f"the verifier process died (exit {code})")
        try:
            return json.loads(line)
        except ValueError:
            raise _HostGone("the verifier process wrote something that is not a result") from None

    def _end(self, keep: bool) -> None:
        self._close_host()
        if self.dir and os.path.isdir(self.dir):
            if keep:
                _prune_rounds(os.path.dirname(self.dir), self.settings.keep_failed_rounds)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        self.actor_ref.stop(block=False)

    def _close_host(self) -> None:
        host, self.host = self.host, None
        if host is None:
            return
        try:
            if host.stdin:
                host.stdin.close()
            host.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            _kill(host)

    def on_stop(self) -> None:
        self._close_host()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._close_host()
        self.supervisor.tell(RoleCrashed(role="verifier", error=f"{exception_type.__name__}: {exception_value}"))


class _HostGone(Exception):
    pass


@dataclass(frozen=True)
class _Reset:
    resets_at: Any


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _usage_from(data: dict, seconds: float) -> ev.TurnUsage:
    return ev.TurnUsage(
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=int(data.get("cached_tokens") or 0),
        cost_usd=data.get("cost_usd"),
        seconds=seconds,
    )


def _protected(taken, plan, workspace: str) -> tuple[tuple, str | None]:
    """(findings, refusal) of the protected-path check for this round's snapshot."""
    if plan.problem:
        return (), plan.problem
    return check_protected(taken, plan, workspace), None


def _run_check(
    command: str, cwd: str, env: dict[str, str], timeout: float, cancel: threading.Event, *, sandbox: SandboxPolicy | None = None
) -> CheckRun:
    """crewctl runs a check command itself; its exit code is the verdict."""
    try:
        done = run_bounded(
            command,
            cwd=cwd,
            env=env,
            stdin=b"",
            timeout=timeout,
            cancel=cancel,
            max_output=CHECK_OUTPUT_KEEP,
            keep_tail=True,
            sandbox=sandbox,
        )
    except OSError as exc:
        return CheckRun(exit=None, output=f"could not start: {exc}")
    output = (done.stdout.decode("utf-8", "replace") + "\n" + done.stderr_tail).strip()
    return CheckRun(
        exit=None if done.killed else done.returncode,
        output=output[-CHECK_OUTPUT_KEEP:],
        timed_out=done.killed == "timeout",
    )


def _prune_rounds(rounds_dir: str, keep: int) -> None:
    """Held rounds are kept for inspection, but only the newest few."""
    try:
        rounds = sorted((int(n) for n in os.listdir(rounds_dir) if n.isdigit()), reverse=True)
    except OSError:
        return
    for n in rounds[keep:]:
        shutil.rmtree(os.path.join(rounds_dir, str(n)), ignore_errors=True)
