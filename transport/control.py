"""The control RPC between the CLI and the running daemon.

The daemon binds a ROUTER on loopback and records its endpoint, pid and a random token in
$CREWCTL_HOME/daemon.json (mode 0600): only someone who can read the home can steer its
goals. The CLI connects a DEALER, sends one request and waits for one reply:

    {"v": 1, "type": "request", "id": 7, "op": "goal.steer", "args": {...}, "token": "..."}
    {"v": 1, "type": "reply", "id": 7, "ok": true, "result": {...}}
    {"v": 1, "type": "reply", "id": 7, "ok": false, "error": {"code": "refused", "message": "..."}}

Error codes are the `code` of crewctl.exceptions classes, so the CLI rebuilds the same
typed error and exits with its code.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

import zmq

from ..exceptions import NoSupervisor, ProtocolError, from_wire
from .codec import message, pack, unpack

__all__ = ["call", "daemon_info_path", "read_daemon_info", "remove_daemon_info", "write_daemon_info", "new_token", "pid_alive"]

DEFAULT_TIMEOUT = 15.0


def daemon_info_path(home: str) -> str:
    return os.path.join(home, "daemon.json")


def new_token() -> str:
    return secrets.token_hex(16)


def write_daemon_info(home: str, info: dict[str, Any]) -> None:
    path = daemon_info_path(home)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 * 1024 * 1024)
    try:
        sock.connect(info["control"])
        request_id = secrets.randbits(31)
        sock.send(pack(message("request", id=request_id, op=op, args=args or {}, token=info.get("token", ""))))
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
            if reply.get("type") == "reply" and reply.get("id") == request_id:
                break
    finally:
        sock.close(0)
    if reply.get("ok"):
        return reply.get("result")
    error = reply.get("error") or {}
    raise from_wire(str(error.get("code", "error")), str(error.get("message", "the supervisor refused")))
