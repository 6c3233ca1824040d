"""Every command's input, checked once where it enters: the rules the CLI and the control RPC share.

The CLI runs `request(op, args)` before it sends anything, and the daemon runs it again on
every request it receives (any program that reads daemon.json can send one), so a value
that would break a prompt, a timer, the msgpack codec or a JSON reader is refused at the
door with one line, and nothing behind the door has to wonder. The rules (docs/contracts.md, "CLI"):

- numbers are finite and bounded: a budget of inf, nan or 10**30 is a usage error;
- text is UTF-8: a string that cannot be encoded (a non-UTF-8 byte that reached argv as a
  lone surrogate) or bytes where text belongs is a usage error;
- every value of a request is plain data (None, bool, int, float, str, list, map with text
  keys), bounded in size and nesting, whatever the operation; fields an operation does not
  name pass through these generic checks to its handler.

Pure: standard library and crewctl.exceptions only. Every rule returns the clean value or
raises UsageError naming the option as the operator typed it (`--token-budget`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from ..exceptions import CrewError, UsageError

__all__ = [
    "MAX_COST_USD",
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_TOKENS",
    "OPERATIONS",
    "TEXT_CAP",
    "budget_raise",
    "count",
    "endpoint",
    "finite_usage",
    "goal_id",
    "number",
    "plain",
    "request",
    "rework_notes",
    "steer_message",
    "text",
    "whole",
]

MAX_TOKENS = 10**12  # a trillion tokens: past any real budget, far inside every codec
MAX_SECONDS = 10**8  # about three years: timers and deadlines stay representable
MAX_COST_USD = 10**7
MAX_COUNT = 10**6  # caps, attempts, sequence numbers
# Characters of one objective, steer or note. A control request is capped at 64 KiB on the
# wire (transport.control), which binds first for the CLI; this bound holds for anything
# that reaches `request` another way.
TEXT_CAP = 256 * 1024
SPEC_CAP = 4096
PATH_CAP = 4096
ID_CAP = 64

# Generic bounds on any request value: what a control frame can carry anyway, with room.
_MAX_DEPTH = 8
_MAX_ITEMS = 1000
_MAX_STRING = 256 * 1024
_MAX_INT = 2**53  # exact in JSON readers everywhere


# -- single values -------------------------------------------------------------------------


def text(value: Any, where: str, *, cap: int = TEXT_CAP, required: bool = True, empty: bool = False) -> str | None:
    """A UTF-8 string of at most `cap` characters; None when absent and not required."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where} must be text")
    _utf8(value, where)
    if len(value) > cap:
        raise UsageError(f"{where} is longer than {cap} characters")
    if not empty and not value.strip():
        raise UsageError(f"{where} is empty")
    return value


def whole(value: Any, where: str, *, low: int = 1, high: int = MAX_COUNT, required: bool = False) -> int | None:
    """A whole number in [low, high]; None when absent."""
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)  # 5.0 from a JSON writer is 5
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{where} must be a whole number, not {_show(value)}")
    if not low <= value <= high:
        raise UsageError(f"{where} must be {_range(low, high)}, not {_show(value)}")
    return value


def count(value: Any, where: str, *, high: int = MAX_COUNT) -> int | None:
    """A whole number of things, 0 or more."""
    return whole(value, where, low=0, high=high)


def number(value: Any, where: str, *, high: float, required: bool = False) -> float | None:
    """A finite number more than 0 and at most `high`; None when absent."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where} must be a number, not {_show(value)}")
    if isinstance(value, int) and abs(value) > _MAX_INT:
        raise UsageError(f"{where} must be more than 0 and at most {high:g}, not {_show(value)}")
    if not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number, not {_show(value)}")
    if not 0 < value <= high:
        raise UsageError(f"{where} must be more than 0 and at most {high:g}, not {_show(value)}")
    return float(value)


_HOST = re.compile(r"^(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")
_NAME = re.compile(r"^[^\s\x00]{1,1024}$")


def endpoint(value: Any, where: str, *, bind: bool) -> str:
    """A ZeroMQ endpoint: tcp://HOST:PORT (PORT may be * and HOST * when binding),
    ipc://PATH or inproc://NAME. Anything else is named as a bad endpoint, before any
    rule about keys or loopback is even looked at."""
    value = text(value, where, cap=PATH_CAP)
    assert value is not None
    hint = "tcp://HOST:PORT" + (" (PORT may be *)" if bind else "") + ", ipc://PATH or inproc://NAME"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise UsageError(f"{where} {_show(value)} is not an endpoint; use {hint}")
    if scheme in ("ipc", "inproc"):
        if not _NAME.match(rest):
            raise UsageError(f"{where} {_show(value)} has no {'path' if scheme == 'ipc' else 'name'}; use {hint}")
        return value
    host, colon, port = rest.rpartition(":")
    if not colon or not host:
        raise UsageError(f"{where} {_show(value)} needs a host and a port; use {hint}")
    if not _HOST.match(host) or (host == "*" and not bind):
        raise UsageError(f"{where} {_show(value)} has no valid host; use {hint}")
    if port == "*" and bind:
        return value
    low = 0 if bind else 1  # binding to port 0, like *, takes any free port
    if not port.isascii() or not port.isdigit() or len(port) > 5 or not low <= int(port) <= 65535:
        raise UsageError(f"{where} {_show(value)} needs a port from 1 to 65535" + (" or *" if bind else ""))
    return value


def plain(value: Any, where: str = "the request", depth: int = 0) -> Any:
    """Plain, bounded data: what every field of every request must be, named or not."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise UsageError(f"{where} must be a bounded number, not {_show(value)}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{where} must be a finite number, not {_show(value)}")
        return value
    if isinstance(value, str):
        _utf8(value, where)
        if len(value) > _MAX_STRING:
            raise UsageError(f"{where} is longer than {_MAX_STRING} characters")
        return value
    if depth >= _MAX_DEPTH:
        raise UsageError(f"{where} nests deeper than {_MAX_DEPTH}")
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_ITEMS:
            raise UsageError(f"{where} holds a list of more than {_MAX_ITEMS} items")
        return [plain(v, where, depth + 1) for v in value]
    if isinstance(value, Mapping):
        if len(value) > _MAX_ITEMS:
            raise UsageError(f"{where} holds a map of more than {_MAX_ITEMS} entries")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"{where} holds a map whose keys are not all text")
            out[plain(k, where, depth + 1)] = plain(v, where, depth + 1)
        return out
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise UsageError(f"{where} is binary data where text belongs")
    raise UsageError(f"{where} is a {type(value).__name__}, which is not plain data")


def finite_usage(value: Any, *, high: float) -> float | None:
    """A spend figure from a brain (cost in USD): finite, 0 or more, else unknown (None).

    Brains report what they like; a figure that is not a number cannot be spent, so it is
    dropped where it enters rather than carried into a JSON timeline that no reader accepts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return float(value) if 0 <= value <= high else None
    return value if math.isfinite(value) and 0 <= value <= high else None


def _utf8(value: str, where: str) -> None:
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{where} is not valid UTF-8 text") from None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:39] + "…").encode("ascii", "backslashreplace").decode()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**15:
        return f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def _range(low: int, high: int) -> str:
    if low == 0:
        return f"0 or more and at most {high}"
    return f"from {low} to {high}"


# -- requests --------------------------------------------------------------------------------

Rule = Callable[[Any, str], Any]


def _tokens(v: Any, w: str) -> Any:
    return whole(v, w, high=MAX_TOKENS)


def _seconds(v: Any, w: str) -> Any:
    return number(v, w, high=MAX_SECONDS)


def _cost(v: Any, w: str) -> Any:
    return number(v, w, high=MAX_COST_USD)


def _cap(high: int) -> Rule:
    return lambda v, w: whole(v, w, high=high)


def _spec(v: Any, w: str) -> Any:
    return text(v, w, cap=SPEC_CAP, required=False)


def _message(v: Any, w: str) -> Any:
    return text(v, w, required=True)


# The operator's words the crew acts on: one rule each for the CLI, the control RPC and the
# core, stripped as the lead will read them. A request breaking one is a usage error; the
# core (goal.phases) asks the same rule and refuses, as it refuses any event it cannot take.
def steer_message(value: Any, where: str = "MESSAGE", *, error: type[CrewError] = UsageError) -> str:
    said = text(value, where, empty=True) or ""
    if not said.strip():
        raise error("the steer message is empty")
    return said.strip()


def rework_notes(value: Any, where: str = "--notes", *, error: type[CrewError] = UsageError) -> str:
    said = text(value, where, empty=True) or ""
    if not said.strip():
        raise error("--notes must say what to rework")
    return said.strip()


def budget_raise(tokens: Any, seconds: Any, cost: Any, *, error: type[CrewError] = UsageError) -> None:
    if tokens is None and seconds is None and cost is None:
        raise error("give at least one of --tokens, --seconds, --cost")


def goal_id(value: Any, where: str = "ID") -> str:
    """A goal id or a prefix of one, as typed: short printable text."""
    value = text(value, where, cap=ID_CAP)
    if not value.isprintable():
        raise UsageError(f"{where} {_show(value)} is not a goal id")
    return value


def _goal_id(v: Any, w: str) -> Any:
    return goal_id(v, w)


def _flag(v: Any, w: str) -> Any:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise UsageError(f"{w} must be true or false")
    return v


def _answers(v: Any, w: str) -> Any:
    if not isinstance(v, Mapping) or not v:
        raise UsageError("answers look like QID=ANSWER")
    if len(v) > 50:
        raise UsageError("at most 50 answers at once")
    for qid, answer in v.items():
        text(qid, "a question id", cap=ID_CAP)
        text(answer, f"the answer to {qid}", cap=4096, empty=True)
    return dict(v)


def _criteria_rows(v: Any, w: str) -> Any:
    if v is None:
        return None
    if not isinstance(v, list):
        raise UsageError("criteria must be a list")
    return v  # parse_criteria checks each row (one rule for the CLI, the RPC and files)


def _path(v: Any, w: str) -> Any:
    return text(v, w, cap=PATH_CAP)


# Per operation: field -> (the name the operator typed, its rule, required).
_ID = ("ID", _goal_id, True)
_SCHEMAS: dict[str, dict[str, tuple[str, Rule, bool]]] = {
    "goal.new": {
        "objective": ("OBJECTIVE", _message, True),
        "workspace": ("--workspace", _path, True),
        "criteria": ("--criterion", _criteria_rows, False),
        "lead": ("--lead", _spec, False),
        "worker": ("--worker", _spec, False),
        "verifier": ("--verifier", _spec, False),
        "reflector": ("--reflector", _spec, False),
        "token_budget": ("--token-budget", _tokens, False),
        "time_budget": ("--time-budget", _seconds, False),
        "cost_budget": ("--cost-budget", _cost, False),
        "attempt_cap": ("--attempt-cap", _cap(1000), False),
        "max_auto_turns": ("--max-auto-turns", _cap(10_000), False),
        "max_turns": ("--max-turns", _cap(100_000), False),
        "check_timeout": ("--check-timeout", _seconds, False),
        "step_attempts": ("--step-attempts", _cap(100), False),
        "replan_budget": ("--replan-budget", lambda v, w: count(v, w, high=100), False),
        "config_path": ("CREWCTL_CONFIG", _path, False),  # the config file the CLI reads
    },
    "goal.answer": {"id": _ID, "answers": ("QID=ANSWER", _answers, True), "seq": ("--seq", _cap(MAX_COUNT), False)},
    "goal.criteria": {"id": _ID, "criteria": ("--file", _criteria_rows, True)},
    "goal.steer": {"id": _ID, "message": ("MESSAGE", steer_message, True)},
    "goal.pause": {"id": _ID},
    "goal.resume": {"id": _ID},
    "goal.cancel": {"id": _ID},
    "goal.signoff": {"id": _ID},
    "goal.approve": {"id": _ID, "step": ("STEP", lambda v, w: text(v, w, cap=ID_CAP), True), "reject": ("--reject", _flag, False)},
    "goal.budget": {
        "id": _ID,
        "tokens": ("--tokens", _tokens, False),
        "seconds": ("--seconds", _seconds, False),
        "cost": ("--cost", _cost, False),
    },
    "goal.send_back": {"id": _ID, "notes": ("--notes", rework_notes, True)},
    "status": {},
}


# The operations whose arguments have rules here, and the fields each one names.
OPERATIONS: dict[str, tuple[str, ...]] = {op: tuple(schema) for op, schema in _SCHEMAS.items()}


def request(op: Any, args: Any) -> dict[str, Any]:
    """The checked arguments of one control request; UsageError names the first bad one."""
    if not isinstance(op, str) or not op.isascii() or len(op) > 64:
        raise UsageError("a request names its operation as short text")
    if not isinstance(args, Mapping):
        raise UsageError(f"{op}: the arguments must be a map")
    if len(args) > _MAX_ITEMS:
        raise UsageError(f"{op}: more than {_MAX_ITEMS} arguments")
    schema = _SCHEMAS.get(op, {})
    clean: dict[str, Any] = {}
    for key, value in args.items():
        if not isinstance(key, str):
            raise UsageError(f"{op}: argument names are text")
        if key in schema and not isinstance(value, (list, tuple, Mapping)):
            clean[key] = value  # a single value: its own rule below says precisely what is wrong
            continue
        label = schema[key][0] if key in schema else f"{op} argument {plain(key, op)!r}"
        clean[key] = plain(value, label, 1)
    # An operation this module does not know gets the generic checks only: its handler
    # checks the rest.
    for key, (label, rule, required) in schema.items():
        value = clean.get(key)
        if value is None:
            if required:
                raise UsageError(f"{op} needs {label}")
            clean.pop(key, None)
            continue
        clean[key] = rule(value, label)
    if op == "goal.budget":
        budget_raise(clean.get("tokens"), clean.get("seconds"), clean.get("cost"))
    return clean
