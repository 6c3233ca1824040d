"""`exec:COMMAND`: any command is a brain (contract in docs/contracts.md).

The command runs through the shell in the role's working directory; the prompt arrives on
stdin; stdout is the reply; a non-zero exit is a failed turn. The command may write its
token usage as JSON to the file named by CREWCTL_USAGE_FILE.

`run_process` is the one place crewctl starts an agent process; the agent-CLI presets build
on it with their own argument lists and output parsers.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from ..exceptions import BrainConfigError, BrainCrashed, BrainError, ConfigError
from ..goal import validate
from .base import MAX_REPLY_BYTES, TurnReply, TurnRequest, Usage

if TYPE_CHECKING:
    from ..sandbox import SandboxPolicy

__all__ = ["Bounded", "ExecBrain", "ProcessResult", "brain_env", "check_exit", "run_bounded", "run_process", "usage_from_file"]

DEFAULT_TIMEOUT = 3600.0
_STDERR_KEEP = 4096
_WATCH_TAIL = 16 * 1024  # of stdout, what a watch sees: the latest events
_USAGE_FILE_MAX = 64 * 1024


@dataclass(frozen=True)
class ProcessResult:
    stdout: bytes
    stderr_tail: str
    returncode: int
    usage_file: dict | None  # what the command wrote to CREWCTL_USAGE_FILE, if valid JSON
    seconds: float
    pid: int


def brain_env(request: TurnRequest, usage_file: str) -> dict[str, str]:
    """The environment of a brain process: its base plus the CREWCTL_* contract variables."""
    env = dict(os.environ if request.env is None else request.env)
    env.update(
        CREWCTL_ROLE=request.role,
        CREWCTL_GOAL=request.goal_id,
        CREWCTL_SESSION=request.session_id,
        CREWCTL_TURN=str(request.turn),
        CREWCTL_WORKDIR=request.workdir,
        CREWCTL_USAGE_FILE=usage_file,
    )
    if request.round is not None:
        env["CREWCTL_ROUND"] = str(request.round)
    else:
        env.pop("CREWCTL_ROUND", None)
    return env


@dataclass(frozen=True)
class Bounded:
    """How a bounded process ended. `killed` says why we killed it, if we did."""

    stdout: bytes
    stderr_tail: str
    returncode: int
    seconds: float
    pid: int
    killed: str | None  # "timeout", "cancelled", "oversize" or None


def run_bounded(
    command: str | Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
    cancel: threading.Event | None = None,
    max_output: int = MAX_REPLY_BYTES,
    keep_tail: bool = False,
    sandbox: "SandboxPolicy | None" = None,
    watch: "Callable[[bytes], str | None] | None" = None,
) -> Bounded:
    """Run a process in its own process group, bounded in time and output; never hangs.

    The one place crewctl starts an agent or a check command. Given a sandbox policy, the
    command runs inside it (crewctl.sandbox), and is on the policy's ledger while it runs.
    A timeout, a cancel or more than `max_output` bytes on stdout kills the whole group (with
    a sandbox: everything the command started, setsid or not), unless `keep_tail`: then only
    the last `max_output` bytes are kept (a check command may be as chatty as it likes).
    Raises OSError if it cannot start.
    """
    started = time.monotonic()
    argv = sandbox.wrap(command) if sandbox is not None else command
    ledger = None
    if sandbox is not None and sandbox.ledger:
        from ..sandbox import Ledger

        ledger = Ledger(sandbox.ledger)
    proc = subprocess.Popen(
        argv,
        shell=isinstance(argv, str),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if ledger is not None:
        ledger.record(proc.pid)
    out = _Collector(proc.stdout, max_output, keep_tail=keep_tail)
    err = _Collector(proc.stderr, _STDERR_KEEP, keep_tail=True)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
    for t in (out, err, feeder):
        t.start()
    try:
        killed = _wait(proc, started + timeout, cancel, out, watch)
    finally:
        if ledger is not None:
            ledger.forget(proc.pid)
    for t in (out, err, feeder):
        t.join(timeout=5)
    return Bounded(
        stdout=out.data(),
        stderr_tail=err.text(),
        returncode=proc.returncode,
        seconds=time.monotonic() - started,
        pid=proc.pid,
        killed=killed,
    )


def run_process(
    command: str | Sequence[str],
    request: TurnRequest,
    *,
    stdin: bytes | None = None,
    extra_env: Mapping[str, str] | None = None,
    watch: "Callable[[bytes], str | None] | None" = None,
) -> ProcessResult:
    """Run one agent process to completion, bounded in time and output size.

    `command` is a shell string (run through /bin/sh) or an argument list (no shell). The
    process gets its own process group so a timeout or cancel kills everything it started.
    Raises BrainError on timeout, cancel, oversize output or a missing workdir.
    """
    if not os.path.isdir(request.workdir):
        raise BrainError(f"working directory {request.workdir} does not exist")
    timeout = request.timeout or DEFAULT_TIMEOUT
    sandbox = request.sandbox
    scratch_root = sandbox.scratch_root if sandbox is not None else None
    if scratch_root:
        os.makedirs(scratch_root, mode=0o700, exist_ok=True)
    # The turn's scratch (its usage file and, sandboxed, its TMPDIR) lies inside crewctl's
    # masked home when sandboxed, so no other agent can see another turn's files.
    with tempfile.TemporaryDirectory(prefix="crewctl-turn-", dir=scratch_root) as scratch:
        usage_path = os.path.join(scratch, "usage.json")
        env = brain_env(request, usage_path)
        if extra_env:
            env.update(extra_env)
        if sandbox is not None:
            if sandbox.tmpdir is None:
                tmpdir = os.path.join(scratch, "tmp")
                os.mkdir(tmpdir)
                sandbox = replace(sandbox, tmpdir=tmpdir)
                env["TMPDIR"] = tmpdir
            sandbox = sandbox.with_writable(scratch)
        try:
            done = run_bounded(
                command,
                cwd=request.workdir,
                env=env,
                stdin=request.prompt.encode() if stdin is None else stdin,
                timeout=timeout,
                cancel=request.cancel,
                sandbox=sandbox,
                watch=watch,
            )
        except FileNotFoundError as exc:
            raise BrainConfigError(f"cannot start {_name(command)}: {exc.strerror}") from None
        except OSError as exc:
            raise BrainError(f"cannot start {_name(command)}: {exc}") from None
        if done.killed == "timeout":
            said = _last_words(done)
            raise BrainError(f"{_name(command)} timed out after {timeout:g}s" + (f"; its last words: {said}" if said else ""))
        if done.killed and done.killed.startswith("watch:"):
            # The tool said something that means it will never finish (codex's endless
            # reconnect loop): its own words, at once, not a timeout later.
            raise BrainError(done.killed[len("watch:"):])
        if done.killed == "cancelled":
            raise BrainError("turn cancelled")
        if done.killed == "oversize":
            raise BrainError(
                f"{_name(command)} replied more than {MAX_REPLY_BYTES // (1024 * 1024)} MiB; "
                "the reply was discarded"
            )
        return ProcessResult(
            stdout=done.stdout,
            stderr_tail=done.stderr_tail,
            returncode=done.returncode,
            usage_file=_read_usage_file(usage_path),
            seconds=done.seconds,
            pid=done.pid,
        )


_LAST_WORDS = 300
_STACK_FRAME = re.compile(r'(at \S|File "|Traceback \(most recent call last\))')  # JS and Python traces


def _last_words(done: Bounded) -> str:
    """What a killed tool said last (stderr first, else the end of stdout), on one capped
    line: a timeout that says "Retrying with backoff... fetch failed" tells the operator
    which of their settings is wrong; "timed out" alone does not."""
    for raw in (done.stderr_tail, done.stdout[-4096:].decode("utf-8", "replace")):
        lines = [" ".join(line.split()) for line in raw.splitlines()]
        lines = [line for line in lines if line and not _STACK_FRAME.match(line)]
        if lines:
            return " / ".join(lines[-3:])[-_LAST_WORDS:]
    return ""


def check_exit(result: ProcessResult, command: str | Sequence[str]) -> None:
    """Turn a non-zero exit into the failure the exec contract promises."""
    if result.returncode == 0:
        return
    tail = " ".join(result.stderr_tail.split())[-500:]
    signum = -result.returncode if result.returncode < 0 else None
    if signum is None and isinstance(command, str) and 128 < result.returncode < 128 + 32:
        signum = result.returncode - 128  # the shell's way of saying its child died of a signal
    if signum is not None:
        sig = signal.Signals(signum).name if signum in _SIGNALS else f"signal {signum}"
        raise BrainCrashed(f"{_name(command)} was killed by {sig}" + (f": {tail}" if tail else ""))
    raise BrainError(f"{_name(command)} exited {result.returncode}" + (f": {tail}" if tail else ""))


def usage_from_file(data: dict | None) -> Usage:
    """The CREWCTL_USAGE_FILE contract: non-negative integers and an optional cost."""
    if not data:
        return Usage()

    def count(key: str) -> int:
        value = data.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= validate.MAX_TOKENS
        return value if ok else 0

    # A cost that is not a finite number (the file may say Infinity or NaN, which Python's
    # JSON reader accepts) is unknown, not infinite: no timeline or `--json` may carry it.
    cost = validate.finite_usage(data.get("cost_usd"), high=validate.MAX_COST_USD)
    return Usage(count("input_tokens"), count("output_tokens"), count("cached_tokens"), cost)


class ExecBrain:
    def __init__(self, command: str) -> None:
        if not command.strip():
            raise ConfigError("exec: needs a command, e.g. exec:'python3 agent.py'")
        self.command = command
        self.spec = f"exec:{command}"

    def run(self, request: TurnRequest) -> TurnReply:
        result = run_process(self.command, request)
        check_exit(result, self.command)
        return TurnReply(
            text=result.stdout.decode("utf-8", errors="replace"),
            usage=usage_from_file(result.usage_file),
        )


_SIGNALS = {s.value for s in signal.Signals}


def _name(command: str | Sequence[str]) -> str:
    if isinstance(command, str):
        return "the exec command"
    return os.path.basename(command[0]) if command else "the command"


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the agent may exit without reading its whole prompt
    finally:
        try:
            pipe.close()
        except OSError:
            pass


class _Collector(threading.Thread):
    """Drains a pipe so the child never blocks on it, keeping at most `limit` bytes."""

    def __init__(self, pipe, limit: int, keep_tail: bool = False) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.limit = limit
        self.keep_tail = keep_tail
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = threading.Event()

    def run(self) -> None:
        try:
            while chunk := self.pipe.read1(65536):
                if self.keep_tail:
                    self.chunks.append(chunk)
                    self.size += len(chunk)
                    while self.size > self.limit and len(self.chunks) > 1:
                        self.size -= len(self.chunks.pop(0))
                elif not self.overflow.is_set():
                    self.size += len(chunk)
                    if self.size > self.limit:
                        self.overflow.set()
                        self.chunks.clear()
                    else:
                        self.chunks.append(chunk)
        except (OSError, ValueError):
            pass

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def text(self) -> str:
        return self.data()[-self.limit :].decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _wait(proc: subprocess.Popen, deadline: float, cancel: threading.Event | None, out: _Collector,
          watch: "Callable[[bytes], str | None] | None" = None) -> str | None:
    """Wait for exit; return why we killed it, or None if it exited by itself.

    On Linux the wait is on a pidfd, which wakes the moment the process exits;
    Popen.wait(timeout) sleeps in growing steps and would add up to ~15 ms to every turn.
    Cancel and oversize are checked at least every 50 ms either way.
    """
    pidfd = _pidfd(proc.pid)
    seen = 0
    try:
        while True:
            if pidfd is not None:
                select.select([pidfd], [], [], 0.05)  # poll: wakes on exit, else rechecks cancel
                exited = proc.poll() is not None
            else:
                try:
                    proc.wait(timeout=0.05)  # poll: cancel and oversize are checked between waits
                    exited = True
                except subprocess.TimeoutExpired:
                    exited = False
            if exited:
                # The process is gone, but children it left in its group may hold the pipes open.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return "oversize" if out.overflow.is_set() else None
            reason = _why_stop(proc, deadline, cancel, out)
            if reason:
                return reason
            if watch is not None and out.size != seen:
                seen = out.size
                said = watch(out.data()[-_WATCH_TAIL:])
                if said:
                    _kill_group(proc)
                    return "watch:" + said
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already reaped
        return None


def _why_stop(proc: subprocess.Popen, deadline: float, cancel: threading.Event | None, out: _Collector) -> str | None:
    """Kill the group if it must stop now, and say why; None to keep waiting."""
    if out.overflow.is_set():
        reason = "oversize"
    elif cancel is not None and cancel.is_set():
        reason = "cancelled"
    elif time.monotonic() >= deadline:
        reason = "timeout"
    else:
        return None
    _kill_group(proc)
    return reason


def _read_usage_file(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(_USAGE_FILE_MAX + 1)
    except OSError:
        return None
    if len(raw) > _USAGE_FILE_MAX:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
