"""The agent-host protocol on the daemon's agents ROUTER: message shapes, checked both ways.

Every frame is one msgpack map from transport/codec.py: `{"v": 1, "type": ..., ...}`.

host -> daemon
    hello      {name, lanes: [str], concurrency: int, instance: str, pid: int}
    heartbeat  {}
    result     {task, ok: bool, text: str, usage: {input_tokens, output_tokens,
                cached_tokens, cost_usd}, seconds: float, changed_files: [str],
                error: str|nil, kind: str|nil, attempt?: int}
    bye        {}

daemon -> host
    welcome    {heartbeat: float, liveness: int}
    task       {task, goal, step, prompt, workspace, spec: str|nil, timeout: float|nil, attempt: int}
    heartbeat  {}
    cancel     {task}
    refused    {reason, speaks?: [int]}   (wrong protocol version; the name was taken over
                                           by a newer instance; the name belongs to another
                                           key or is reserved: the host stops)

Unknown extra fields are ignored (a newer minor revision may add some); a missing or
ill-typed field, an unknown type, or a value past its bound raises ProtocolError, which the
broker counts as a dropped frame.
"""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import ProtocolError
from .codec import message

__all__ = [
    "HOST_TYPES",
    "DAEMON_TYPES",
    "check_host_message",
    "check_daemon_message",
    "hello",
    "result",
    "task",
]

MAX_NAME = 128
MAX_LANES = 32
MAX_LANE = 32
MAX_TASK_ID = 96
MAX_CONCURRENCY = 256
MAX_TEXT = 8 * 1024 * 1024 + 1024
MAX_ERROR = 64 * 1024
MAX_CHANGED = 1000
MAX_PATH = 4096
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]*$")

HOST_TYPES = frozenset({"hello", "heartbeat", "result", "bye"})
DAEMON_TYPES = frozenset({"welcome", "task", "heartbeat", "cancel", "refused"})


def _str(msg: dict, key: str, limit: int, *, optional: bool = False, empty: bool = False) -> str | None:
    value = msg.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{msg.get('type')}: {key} must be a string")
    if len(value) > limit:
        raise ProtocolError(f"{msg.get('type')}: {key} is longer than {limit}")
    if not value and not empty:
        raise ProtocolError(f"{msg.get('type')}: {key} is empty")
    return value


def _int(msg: dict, key: str, lo: int, hi: int, *, optional: bool = False) -> int | None:
    value = msg.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"{msg.get('type')}: {key} must be an integer in {lo}..{hi}")
    return value


def _num(msg: dict, key: str, *, optional: bool = False) -> float | None:
    value = msg.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or value != value:
        raise ProtocolError(f"{msg.get('type')}: {key} must be a non-negative number")
    return float(value)


def check_host_message(msg: dict[str, Any]) -> str:
    """Check a host -> daemon message's shape; return its type. Raises ProtocolError."""
    kind = msg.get("type")
    if kind not in HOST_TYPES:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r} from a host")
    if kind == "hello":
        name = _str(msg, "name", MAX_NAME)
        if not NAME_RE.match(name):
            raise ProtocolError("hello: name has characters outside [A-Za-z0-9._@:+-]")
        lanes = msg.get("lanes")
        if not isinstance(lanes, list) or len(lanes) > MAX_LANES:
            raise ProtocolError(f"hello: lanes must be a list of at most {MAX_LANES}")
        for lane in lanes:
            if not isinstance(lane, str) or not lane or len(lane) > MAX_LANE:
                raise ProtocolError(f"hello: each lane is a non-empty string of at most {MAX_LANE}")
        _int(msg, "concurrency", 1, MAX_CONCURRENCY)
        _str(msg, "instance", 64)
        _int(msg, "pid", 0, 2**31 - 1, optional=True)
    elif kind == "result":
        _str(msg, "task", MAX_TASK_ID)
        if not isinstance(msg.get("ok"), bool):
            raise ProtocolError("result: ok must be true or false")
        _str(msg, "text", MAX_TEXT, empty=True)
        usage = msg.get("usage")
        if not isinstance(usage, dict):
            raise ProtocolError("result: usage must be a map")
        for key in ("input_tokens", "output_tokens", "cached_tokens"):
            _int(usage | {"type": "result.usage"}, key, 0, 2**62, optional=True)
        _num(usage | {"type": "result.usage"}, "cost_usd", optional=True)
        _num(msg, "seconds")
        changed = msg.get("changed_files")
        if not isinstance(changed, list) or len(changed) > MAX_CHANGED:
            raise ProtocolError(f"result: changed_files must be a list of at most {MAX_CHANGED}")
        if not all(isinstance(p, str) and len(p) <= MAX_PATH for p in changed):
            raise ProtocolError("result: changed_files must be paths")
        _str(msg, "error", MAX_ERROR, optional=True, empty=True)
        _str(msg, "kind", 32, optional=True, empty=True)
        _int(msg, "attempt", 0, 2**31 - 1, optional=True)
    return kind


def check_daemon_message(msg: dict[str, Any]) -> str:
    """Check a daemon -> host message's shape; return its type. Raises ProtocolError."""
    kind = msg.get("type")
    if kind not in DAEMON_TYPES:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r} from the daemon")
    if kind == "welcome":
        value = _num(msg, "heartbeat")
        if not value:
            raise ProtocolError("welcome: heartbeat must be positive")
        _int(msg, "liveness", 1, 1000, optional=True)
    elif kind == "task":
        _str(msg, "task", MAX_TASK_ID)
        _str(msg, "goal", 64)
        _str(msg, "step", 64)
        _str(msg, "prompt", MAX_TEXT, empty=True)
        _str(msg, "workspace", MAX_PATH)
        _str(msg, "spec", 64 * 1024, optional=True)
        _num(msg, "timeout", optional=True)
        _int(msg, "attempt", 0, 2**31 - 1, optional=True)
    elif kind == "cancel":
        _str(msg, "task", MAX_TASK_ID)
    elif kind == "refused":
        _str(msg, "reason", MAX_ERROR, empty=True)
    return kind


# -- builders ------------------------------------------------------------------------------


def hello(name: str, lanes: list[str], concurrency: int, instance: str, pid: int) -> dict[str, Any]:
    return message("hello", name=name, lanes=list(lanes), concurrency=concurrency, instance=instance, pid=pid)


def task(task_id: str, goal: str, step: str, prompt: str, workspace: str, spec: str | None, timeout: float | None, attempt: int) -> dict[str, Any]:
    return message("task", task=task_id, goal=goal, step=step, prompt=prompt, workspace=workspace, spec=spec, timeout=timeout, attempt=attempt)


def result(
    task_id: str,
    *,
    ok: bool,
    text: str = "",
    usage: dict[str, Any] | None = None,
    seconds: float = 0.0,
    changed_files: list[str] | None = None,
    error: str | None = None,
    kind: str | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    return message(
        "result",
        task=task_id,
        ok=ok,
        text=text,
        usage=usage or {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "cost_usd": None},
        seconds=seconds,
        changed_files=list(changed_files or ()),
        error=error,
        kind=kind,
        attempt=attempt,
    )
