"""The agent host: serves worker turns for a daemon over a ZeroMQ DEALER.

Used by `crewctl worker --connect ENDPOINT` (a process of its own, on any machine, with a
CURVE key the daemon allows) and by the daemon's `--local-workers` (threads of the daemon,
over inproc:// in its ZeroMQ context, with no key: the same code).

A `refused` from the daemon (another key holds our name, the name is reserved, a newer
instance took it over, or the daemon speaks another protocol version) ends `run()` with
exit code 1 and the reason in `refused`: it would be refused again, so it does not retry.
A CURVE handshake the daemon rejects is retried (with backoff) instead: the operator may
allow the key while the host waits, and the next connection gets in.

Threads: the I/O thread owns the socket (connect, hello, heartbeats, messages in and out);
each task runs in a pool thread that never touches the socket, and hands its result back
through a queue plus a wake pipe the I/O thread polls.

Liveness is Paranoid-Pirate style, both ways: the host sends a heartbeat every interval;
any message from the daemon proves it alive; after `liveness` intervals of silence the host
drops the connection, waits (exponential backoff from one interval up to a cap) and
connects again with a fresh socket and a new hello. The daemon declares a host dead after
the same silence on its side and hands the host's tasks back to their goals.

Each task runs `brains.resolve(spec).run(TurnRequest(role="worker", ...))` in a working
directory, with a cancel event the daemon's `cancel` sets; the result carries the reply,
usage, seconds, and the files the turn changed (git status before/after in a git tree, an
mtime scan otherwise; both bounded). Brain errors become `ok: false` results. Markers in a
worker's reply are the goal core's business (it ignores them), not the host's.
"""

from __future__ import annotations

import logging
import os
import queue
import socket as _socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from .. import brains
from ..brains import TurnRequest
from ..exceptions import BrainConfigError, BrainError, ConfigError, ProtocolError, turn_failure_kind
from ..sandbox import brain_kind
from ..outputs.git import porcelain_paths
from ..transport import protocol
from ..transport.wake import WakePipe
from ..transport.codec import MAX_FRAME, message, pack, unpack

__all__ = ["AgentHost", "HostSettings", "changed_files", "dial_endpoint", "snapshot_tree"]

log = logging.getLogger("crewctl.host")

LIVENESS = 3
HELLO_RETRY = 0.25  # seconds between hellos until the daemon welcomes us
CLOSE_LINGER_MS = 200  # how long a closed connection may still send what it queued
BACKOFF_MAX = 30.0
SCAN_CAP = 20_000  # files an mtime scan looks at before it gives up on completeness
CHANGED_CAP = 1000
GIT_TIMEOUT = 30.0

BrainFactory = Callable[[str], Any]  # spec -> brain (tests and benchmarks pass an instant one)


@dataclass
class HostSettings:
    endpoint: str | Callable[[], str]  # a callable is asked again at every (re)connect
    name: str = ""
    lanes: tuple[str, ...] = ()
    concurrency: int = 1
    spec: str | None = None  # the host's own worker brain; None: the task's spec
    workdir: str | None = None  # the host's own working directory; None: the task's workspace
    heartbeat: float = 1.0
    liveness: int = LIVENESS
    backoff_max: float = BACKOFF_MAX
    client_keys: tuple[bytes, bytes] | None = None  # (public, secret), z85: CURVE on
    server_key: bytes | None = None  # the daemon's public key, z85
    config: Any = None  # crewctl.config.Config for brains.resolve
    brain_factory: BrainFactory | None = None
    turn_timeout: float | None = None  # a cap of our own on top of the task's timeout
    # A failed security handshake (our key not allowed there, or CURVE on one side only):
    # stop with the reason (`crewctl worker` does: its operator must act), or keep knocking
    # quietly, so that allowing the key later lets this very host in.
    stop_when_refused: bool = False
    sandbox: Any = None  # crewctl.sandbox.Sandbox every worker turn runs in; None: unsandboxed

    def __post_init__(self) -> None:
        if not self.name:
            self.name = _socket.gethostname() or "worker"


@dataclass
class _Running:
    task: dict
    cancel: threading.Event


class AgentHost:
    """One agent host. `run()` blocks until `stop()`; `start()` runs it in a thread."""

    def __init__(self, settings: HostSettings, context: zmq.Context | None = None) -> None:
        self.s = settings
        self.context = context or zmq.Context.instance()
        self.instance = uuid.uuid4().hex
        self.exit_code = 0
        self.refused: str | None = None  # why the daemon refused us, if it did
        self.attached = threading.Event()  # set while welcomed on the current connection
        self.connections = 0
        self.tasks_done = 0
        self._stop = threading.Event()
        self._results: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._waker = WakePipe()
        self._running: dict[str, _Running] = {}
        self._running_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Running | None] = queue.SimpleQueue()  # tasks for the task threads
        self._workers: list[threading.Thread] = []
        self._brains: dict[str, Any] = {}
        self._brains_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._auth_warned = False

    # -- control from other threads ----------------------------------------------------------

    def start(self) -> "AgentHost":
        self._thread = threading.Thread(target=self.run, name=f"crewctl-host-{self.s.name}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the I/O thread to leave; returns at once (see stop)."""
        self._stop.set()
        self._wake()

    def stop(self, timeout: float = 5.0) -> None:
        """Leave: say bye (the daemon hands our tasks to others), cancel running turns, close."""
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the I/O thread started by start(); True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def running(self) -> list[str]:
        with self._running_lock:
            return list(self._running)

    def _wake(self) -> None:
        self._waker.wake()

    # -- the I/O thread --------------------------------------------------------------------

    def run(self) -> int:
        backoff = self.s.heartbeat
        try:
            while not self._stop.is_set():
                welcomed = self._session()
                if self._stop.is_set() or self.refused is not None:
                    break
                if welcomed:
                    backoff = self.s.heartbeat
                log.info("host %s: lost the daemon; reconnecting in %.1fs", self.s.name, backoff)
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.s.backoff_max)
        finally:
            self._shutdown()
        return self.exit_code

    def _endpoint(self) -> str:
        return self.s.endpoint() if callable(self.s.endpoint) else self.s.endpoint

    def _socket(self, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.RECONNECT_IVL, max(int(self.s.heartbeat * 1000), 10))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(int(self.s.backoff_max * 1000), 100))
        if self.s.client_keys is not None:
            if self.s.server_key is None:
                raise ConfigError("a CURVE client key needs the supervisor's public key (--server-key)")
            sock.curve_publickey, sock.curve_secretkey = self.s.client_keys
            sock.curve_serverkey = self.s.server_key
        sock.connect(endpoint)
        return sock

    def _session(self) -> bool:
        """One connection, from hello until the daemon goes silent or we stop. True if welcomed."""
        self.attached.clear()
        try:
            endpoint = self._endpoint()
            sock = self._socket(endpoint)
        except (zmq.ZMQError, ConfigError, OSError, ValueError) as exc:
            log.error("host %s: cannot connect: %s", self.s.name, exc)
            return False
        self.connections += 1
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        interval = self.s.heartbeat  # how often we beat
        silence = self.s.heartbeat * self.s.liveness  # how long the daemon may say nothing
        welcomed = False
        hello = protocol.hello(self.s.name, list(self.s.lanes), self.s.concurrency, self.instance, os.getpid())
        self._send(sock, hello)
        last_heard = time.monotonic()
        next_beat = last_heard + min(interval, HELLO_RETRY)
        try:
            while not self._stop.is_set():
                timeout = max(next_beat - time.monotonic(), 0.0)
                for item, _ in poller.poll(timeout * 1000):
                    if item is sock:
                        for msg in self._receive(sock):
                            last_heard = time.monotonic()
                            outcome = self._handle(sock, msg)
                            if outcome == "welcome":
                                welcomed = True
                                theirs = float(msg["heartbeat"])
                                interval = min(self.s.heartbeat, theirs)
                                silence = max(self.s.heartbeat, theirs) * int(msg.get("liveness") or self.s.liveness)
                                next_beat = min(next_beat, time.monotonic() + interval)
                            elif outcome == "refused":
                                return welcomed
                    elif item is monitor:
                        self._monitor_event(monitor, endpoint)
                        if self.refused is not None:
                            return welcomed  # no key or the wrong one: trying again cannot help
                    else:
                        self._waker.drain()
                self._flush_results(sock)
                now = time.monotonic()
                if now >= next_beat:
                    if now - last_heard > silence:
                        self.attached.clear()
                        return welcomed
                    # Until welcomed, say hello again (a hello can be lost: the daemon was
                    # still starting, or restarted on the same endpoint); then heartbeats.
                    self._send(sock, message("heartbeat") if welcomed else hello)
                    next_beat = now + (interval if welcomed else min(interval, HELLO_RETRY))
            # stopping: tell the daemon, which hands our tasks to other hosts at once
            self._send(sock, message("bye"))
            return welcomed
        finally:
            self.attached.clear()
            # A result or bye sent just now may still be queued: let it leave (bounded), so
            # a daemon we gave up on too early still gets it (as a late result).
            sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(0)
            sock.close(0)

    def _receive(self, sock: zmq.Socket):
        for _ in range(1000):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = unpack(frame, check_version=False)
                protocol.check_daemon_message(msg)
            except ProtocolError as exc:
                log.warning("host %s: dropped a frame from the daemon: %s", self.s.name, exc.message)
                continue
            yield msg

    def _monitor_event(self, monitor: zmq.Socket, endpoint: str) -> None:
        """A failed security handshake is a refusal: the key is not allowed there, or the two
        sides disagree about CURVE. It is said once; then the host stops with the reason
        (exit 1) if its settings say so, else it keeps knocking, quietly."""
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError):
            return
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reason = (f"the supervisor at {endpoint} refused this host's CURVE key; ask its operator to run "
                      "`crewctl keys allow NAME.key` with this host's public key")
        elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            reason = (f"the security handshake with {endpoint} failed (CURVE on one side only, or the wrong "
                      "--server-key)")
        else:
            reason = f"the security handshake with {endpoint} failed"
        if not self._auth_warned:
            self._auth_warned = True
            log.error("host %s: %s", self.s.name, reason)
        if self.s.stop_when_refused and event["event"] != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.refused = reason
            self.exit_code = 1

    def _send(self, sock: zmq.Socket, msg: dict) -> None:
        try:
            sock.send(pack(msg), zmq.NOBLOCK)
        except zmq.Again:
            # Nothing connected takes it (yet): hellos are resent anyway; say it once, not
            # four times a second.
            if msg.get("type") != "hello" and msg.get("type") != "heartbeat":
                log.warning("host %s: send queue full; dropped a %s", self.s.name, msg.get("type"))
        except zmq.ZMQError as exc:
            log.warning("host %s: send failed: %s", self.s.name, exc)

    def _handle(self, sock: zmq.Socket, msg: dict) -> str:
        kind = msg["type"]
        if kind == "welcome":
            if not self.attached.is_set():
                log.info("host %s: attached (heartbeat %gs)", self.s.name, msg["heartbeat"])
            self.attached.set()
        elif kind == "task":
            self._start_task(msg)
        elif kind == "cancel":
            with self._running_lock:
                running = self._running.get(msg["task"])
            if running is not None:
                running.cancel.set()
        elif kind == "refused":
            self.refused = str(msg.get("reason", "refused"))
            self.exit_code = 1
            speaks = msg.get("speaks")
            log.error("host %s: the supervisor refused us: %s%s", self.s.name, self.refused, f" (it speaks protocol {speaks})" if speaks else "")
            return "refused"
        return kind

    def _flush_results(self, sock: zmq.Socket) -> None:
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return
            self._send(sock, result)

    # -- tasks -------------------------------------------------------------------------------

    def _start_task(self, task: dict) -> None:
        task_id = task["task"]
        with self._running_lock:
            if task_id in self._running:
                return  # a duplicate delivery; the first one answers
            running = _Running(task=task, cancel=threading.Event())
            self._running[task_id] = running
        if len(self._workers) < self.s.concurrency and len(self._workers) < len(self._running):
            t = threading.Thread(target=self._task_thread, name=f"crewctl-task-{self.s.name}-{len(self._workers) + 1}", daemon=True)
            self._workers.append(t)
            t.start()
        self._queue.put(running)

    def _task_thread(self) -> None:
        while (running := self._queue.get()) is not None:
            self._run_task(running)

    def _brain(self, spec: str) -> Any:
        with self._brains_lock:
            brain = self._brains.get(spec)
            if brain is None:
                brain = self.s.brain_factory(spec) if self.s.brain_factory else brains.resolve(spec, self.s.config)
                self._brains[spec] = brain
            return brain

    def _run_task(self, running: _Running) -> None:
        task = running.task
        started = time.monotonic()
        workdir = self.s.workdir or task["workspace"]
        spec = self.s.spec or task.get("spec")
        attempt = task.get("attempt") or 1
        before = None
        try:
            if running.cancel.is_set():
                raise BrainError("turn cancelled")
            if not spec:
                raise BrainConfigError("no worker brain: the goal has none and this host was started without --worker")
            if not os.path.isdir(workdir):
                raise BrainConfigError(f"working directory {workdir} does not exist on host {self.s.name}")
            brain = self._brain(spec)
            env, policy = None, None
            if self.s.sandbox is not None:
                env, policy = self.s.sandbox.for_turn("worker", workdir, kind=brain_kind(spec, self.s.config))
            before = snapshot_tree(workdir)
            timeout = task.get("timeout")
            if self.s.turn_timeout:
                timeout = min(timeout, self.s.turn_timeout) if timeout else self.s.turn_timeout
            reply = brain.run(
                TurnRequest(
                    role="worker",
                    goal_id=task["goal"],
                    session_id=f"{task['goal']}:{task['step']}:{self.s.name}",
                    turn=attempt,
                    prompt=task["prompt"],
                    workdir=workdir,
                    timeout=timeout,
                    cancel=running.cancel,
                    env=env,
                    sandbox=policy,
                )
            )
            text = reply.text
            if len(text.encode()) > protocol.MAX_TEXT - 1024:
                raise BrainError("the worker's reply is larger than 8 MiB")
            result = protocol.result(
                task["task"],
                ok=True,
                text=text,
                usage=reply.usage.as_dict(),
                seconds=time.monotonic() - started,
                changed_files=changed_files(before, snapshot_tree(workdir, before[0])),
                attempt=attempt,
            )
        except Exception as exc:  # every failure is a result; nothing kills the host
            kind = turn_failure_kind(exc)
            error = str(exc) if isinstance(exc, (BrainError, ConfigError)) else f"{type(exc).__name__}: {exc}"
            if running.cancel.is_set():
                kind, error = "cancelled", "turn cancelled"
            changed: list[str] = []
            if before is not None:
                try:
                    changed = changed_files(before, snapshot_tree(workdir, before[0]))
                except Exception:
                    pass
            result = protocol.result(
                task["task"],
                ok=False,
                error=error[: protocol.MAX_ERROR],
                kind=kind,
                seconds=time.monotonic() - started,
                changed_files=changed,
                attempt=attempt,
            )
        with self._running_lock:
            self._running.pop(task["task"], None)
        self.tasks_done += 1
        self._results.put(result)
        self._wake()

    def _shutdown(self) -> None:
        with self._running_lock:
            for running in self._running.values():
                running.cancel.set()
        for _ in self._workers:
            self._queue.put(None)  # each task thread ends after its current turn
        self._waker.close()


def dial_endpoint(bound: str) -> str:
    """A bound endpoint as a client dials it: a wildcard address (0.0.0.0, *, [::]) becomes loopback."""
    if bound.startswith("tcp://"):
        host, _, port = bound[len("tcp://") :].rpartition(":")
        if host in ("0.0.0.0", "*", ""):
            return f"tcp://127.0.0.1:{port}"
        if host in ("[::]", "::"):
            return f"tcp://[::1]:{port}"
    return bound


# -- what a turn changed ----------------------------------------------------------------------

Snapshot = tuple[str, dict[str, tuple[int, int]], bool]  # (how, path -> (mtime_ns, size), complete)


def snapshot_tree(workdir: str, how: str | None = None) -> Snapshot:
    """The state of the files a turn might change, cheaply: git's view in a git tree
    (every path `git status` lists, with its mtime and size), else an mtime scan.

    `how` ("git" or "scan") skips the look for a git tree: pass the `before` snapshot's so
    both sides of a turn are taken the same way."""
    if how is None:
        how = "git" if _in_git_tree(workdir) else "scan"
    if how == "git":
        listing = _git_dirty(workdir)
        if listing is not None:
            return ("git", _stat_all(workdir, listing), True)
    files: dict[str, tuple[int, int]] = {}
    stack = [("", workdir)]
    while stack:
        rel, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            name = rel + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append((name + "/", entry.path))
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files[name] = (st.st_mtime_ns, st.st_size)
            if len(files) >= SCAN_CAP:
                return ("scan", files, False)
    return ("scan", files, True)


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths added, removed or modified between two snapshots (sorted, at most CHANGED_CAP)."""
    _, old, _ = before
    _, new, _ = after
    changed = {p for p in new.keys() | old.keys() if old.get(p) != new.get(p)}
    return sorted(changed)[:CHANGED_CAP]


def _in_git_tree(workdir: str) -> bool:
    path = os.path.abspath(workdir)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def _git_dirty(workdir: str) -> list[str] | None:
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            cwd=workdir,
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return porcelain_paths(done.stdout.decode("utf-8", "surrogateescape"), cap=SCAN_CAP)


def _stat_all(workdir: str, paths: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for p in paths:
        try:
            st = os.lstat(os.path.join(workdir, p))
            out[p] = (st.st_mtime_ns, st.st_size)
        except OSError:
            out[p] = (-1, -1)  # deleted: listed by git, gone from disk
    return out
