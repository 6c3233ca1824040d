"""The control RPC between the CLI and the running daemon: the operator's authority.

Where it listens. By default on a unix socket, `ipc://$CREWCTL_HOME/run/control.sock`, in
a directory only the operator can enter (0700) and that no agent's sandbox shows: what
cannot be reached cannot be steered. `crewctl run --control tcp://HOST:PORT` listens on
TCP instead (for a CLI that cannot reach the socket); there the token below is what
keeps the power with the operator. daemon.json (0600, in the home) says where, with the
daemon's pid and a random token.

The frames. A request is two ZeroMQ frames, [token, payload]; the daemon compares the
token frame with hmac.compare_digest before it decodes anything, so a peer without the
token costs it one constant-time comparison per frame, whatever it sends (such frames are
dropped and counted; the peer gets a `refused`). Every control frame is capped at
CONTROL_MAX_FRAME (ZeroMQ's MAXMSGSIZE on the ROUTER): a bigger one closes that peer's
connection inside ZeroMQ, before it is buffered, so it can never stall the broker.

    [token, {"v": 1, "type": "request", "id": 7, "op": "goal.steer", "args": {...}}]
    {"v": 1, "type": "reply", "id": 7, "ok": true, "result": {...}}
    {"v": 1, "type": "reply", "id": 7, "ok": false, "error": {"code": "refused", "message": "..."}}
    {"v": 1, "type": "refused", "reason": "..."}        (the token was wrong)

Error codes are the `code` of crewctl.exceptions classes, so the CLI rebuilds the same
typed error and exits with its code.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from typing import Any

import zmq

from ..exceptions import NoSupervisor, ProtocolError, Refused, UsageError, from_wire
from ..home import private_dir
from .codec import message, pack, unpack

__all__ = [
    "CONTROL_MAX_FRAME",
    "call",
    "check_control_endpoint",
    "daemon_info_path",
    "default_control_endpoint",
    "new_token",
    "pid_alive",
    "read_daemon_info",
    "remove_daemon_info",
    "remove_run_dir",
    "run_dir",
    "write_daemon_info",
]

DEFAULT_TIMEOUT = 15.0
CONTROL_MAX_FRAME = 64 * 1024  # the largest request (a goal with 20 criteria) is a few KiB
SOCKET_NAME = "control.sock"
# A unix socket's path must fit sockaddr_un.sun_path with its NUL: 108 bytes on Linux,
# 104 on macOS and the BSDs.
MAX_IPC_PATH = 103 if sys.platform == "darwin" or "bsd" in sys.platform else 107
SHORT_RUN_ROOT = "/tmp"  # not $TMPDIR: that can be as long as the path it stands in for


def run_dir(home: str) -> str:
    """The directory of the daemon's control socket: $CREWCTL_HOME/run, unless that path is
    too long for a unix socket (a deep home, pytest's temporary directories).

    Then /tmp/crewctl-UID/HASH, HASH naming the home, so one home always gets the same
    directory and two homes never share one. Both levels are 0700 and must belong to us
    (private_dir refuses a squatter's directory or symlink), so the fallback is as private
    as the home. A sandbox that hides the home must hide this directory too; it is given
    by this function, which is the one place that decides it.
    """
    preferred = os.path.join(os.path.abspath(home), "run")
    if len(os.fsencode(os.path.join(preferred, SOCKET_NAME))) <= MAX_IPC_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(os.path.realpath(home))).hexdigest()[:16]
    return os.path.join(SHORT_RUN_ROOT, f"crewctl-{os.getuid()}", digest)


def default_control_endpoint(home: str) -> str:
    """ipc:// in the (newly made, or tightened) private run directory of `home`."""
    directory = private_dir(run_dir(home))
    return "ipc://" + os.path.join(directory, SOCKET_NAME)


def remove_run_dir(home: str) -> None:
    """After the daemon has closed its socket: remove the socket file, and the directory if
    it is the /tmp fallback (the home's own run directory stays). Never raises."""
    directory = run_dir(home)
    try:
        os.unlink(os.path.join(directory, SOCKET_NAME))
    except OSError:
        pass
    if directory != os.path.join(os.path.abspath(home), "run"):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def check_control_endpoint(endpoint: str) -> str:
    """An operator's `--control`: tcp://HOST:PORT or ipc://PATH (short enough). Raises UsageError."""
    if endpoint.startswith("tcp://"):
        host, sep, port = endpoint[len("tcp://") :].rpartition(":")
        if not sep or not host or not (port == "*" or port.isdigit()):
            raise UsageError(f"--control {endpoint}: a TCP endpoint is tcp://HOST:PORT (PORT may be 0 or *)")
        return endpoint
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://") :]
        if not path or path.startswith("@"):
            raise UsageError(f"--control {endpoint}: give a socket path (an abstract socket has no permissions)")
        if len(os.fsencode(path)) > MAX_IPC_PATH:
            raise UsageError(f"--control {endpoint}: a unix socket path is at most {MAX_IPC_PATH} bytes")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"--control {endpoint}: its directory does not exist")
        return endpoint
    raise UsageError(f"--control {endpoint}: the control endpoint is ipc://PATH or tcp://HOST:PORT")


def daemon_info_path(home: str) -> str:
    return os.path.join(home, "daemon.json")


def new_token() -> str:
    return secrets.token_hex(16)


def write_daemon_info(home: str, info: dict[str, Any]) -> None:
    path = daemon_info_path(home)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a .tmp left by a crash keeps its old mode through O_CREAT: it holds the token
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def read_daemon_info(home: str) -> dict[str, Any] | None:
    try:
        with open(daemon_info_path(home)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "control" in info else None


def remove_daemon_info(home: str, pid: int) -> None:
    info = read_daemon_info(home)
    if info is not None and info.get("pid") == pid:
        try:
            os.remove(daemon_info_path(home))
        except OSError:
            pass


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process its parent has not reaped yet is still "there" to kill(0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _no_supervisor(home: str) -> NoSupervisor:
    return NoSupervisor(f"no supervisor is running for {home}; start one with `crewctl run` (it runs in the foreground)")


def call(home: str, op: str, args: dict[str, Any] | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Send one request to the daemon of `home` and return its result, or raise its error."""
    info = read_daemon_info(home)
    if info is None or not pid_alive(info.get("pid")):
        raise _no_supervisor(home)
    request_id = secrets.randbits(31)
    payload = pack(message("request", id=request_id, op=op, args=args or {}))
    if len(payload) > CONTROL_MAX_FRAME:
        raise UsageError(f"the request is {len(payload)} bytes; the supervisor takes at most {CONTROL_MAX_FRAME // 1024} KiB")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 * 1024 * 1024)
    try:
        sock.connect(info["control"])
        sock.send_multipart([str(info.get("token", "")).encode(), payload])
        deadline = time.monotonic() + timeout
        while True:
            # Poll in slices: a supervisor that dies mid-request is noticed at once.
            if not sock.poll(250, zmq.POLLIN):
                if not pid_alive(info.get("pid")):
                    raise NoSupervisor(
                        f"the supervisor for {home} (pid {info.get('pid')}) exited before answering; "
                        f"check `crewctl goal show` to see whether the {op} took effect"
                    )
                if time.monotonic() >= deadline:
                    raise NoSupervisor(
                        f"the supervisor for {home} (pid {info.get('pid')}) did not answer within {timeout:g}s"
                    )
                continue
            try:
                reply = unpack(sock.recv())
            except ProtocolError:
                continue
            if reply.get("type") == "refused":
                raise Refused(f"the supervisor for {home} refused the request: {reply.get('reason')}")
            if reply.get("type") == "reply" and reply.get("id") == request_id:
                break
    finally:
        sock.close(0)
    if reply.get("ok"):
        return reply.get("result")
    error = reply.get("error") or {}
    raise from_wire(str(error.get("code", "error")), str(error.get("message", "the supervisor refused")))
