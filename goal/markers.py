"""Markers: the blocks in an agent's reply that ask the supervisor to act.

    CREW_LOCK_BEGIN
    {"criteria": [{"text": "pytest passes", "verify": {"run": "pytest -q"}}]}
    CREW_LOCK_END

The grammar is a contract (docs/contracts.md, "Markers"): users' scripts and tests outside the
project rely on it. `extract` is the only parser; `quote` and `collapse` are how text
from agents and operators is made safe to put into the next prompt.

Decisions the contract leaves open, made here fail-closed:

- Lines end only at LF or CRLF. A lone CR is content, so `CREW_READY_END\\r` is not a
  tag (str.splitlines() would disagree, which is why it is never used here).
- Tags are upper-case exactly as written in the contract; an unknown KIND is plain text.
- A block with no closing tag is an error and swallows the rest of the reply: if the
  model lost track of its tags, nothing after that point can be trusted to run.
- A fence that is never closed runs to the end, as in CommonMark.
- Error reasons count list items from 1, like the normalised ids (q1, c1, s1), and never
  repeat the agent's text: they go back into a corrective prompt.
- An optional field given as JSON null is treated as absent; models emit both. An
  optional text that collapses to nothing is None.
- VERIFY keeps unknown and repeated criterion ids, in order: the phase machine knows the
  locked criteria, so it drops the unknown ones and merges repeats fail-closed.
- Fences are tracked as the contract defines them, without CommonMark's containers
  (lists, block quotes, HTML blocks), which would need a full block parser. Where the two
  could disagree, the doubt is resolved inert (the contract: a doubt never makes a marker
  live). A fence-looking line inside an HTML block or a list item makes what follows
  inert here, not in CommonMark: safe as it is. The one shape that would err the other
  way is a fence opened inside a list item ("- x" then "  ```") and closed by a less
  indented fence line ("```" at column 0): CommonMark ends the item there, and the line
  opens a new fence. So when the lines above an indented fence could make it part of a
  list item (a list marker above it, before anything that surely ends a list), a less
  indented closing line is taken as both: it ends the first fence and opens another,
  and a tag after it stays inert until that one closes too. With no list above, the
  line just closes the fence, as in CommonMark.
- A duplicate key in a body's JSON object makes it invalid JSON (never "the last one
  wins": {"verdict": "fail", ..., "verdict": "pass"} is not a pass).
- REFLECT's lists may be absent (empty); its texts are collapsed like every field that
  reaches a prompt, except a skill's body: Markdown that is written to SKILL.md and never
  prompted, so it keeps its lines (CRLF becomes LF) and loses only control characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = [
    "BODY_LIMIT",
    "KINDS",
    "MEMORY_KINDS",
    "SKILL_BODY_LIMIT",
    "SKILL_NAME",
    "Extraction",
    "check_command_problem",
    "Marker",
    "MarkerError",
    "collapse",
    "extract",
    "quote",
    "quoted_section",
]

KINDS = ("clarify", "lock", "plan", "ready", "blocked", "verify", "reflect")
BODY_LIMIT = 64 * 1024  # bytes of the UTF-8 body

_REASON_CAP = 200


@dataclass(frozen=True, slots=True)
class Marker:
    """A valid block: `kind` in KINDS, `payload` normalised, `line` of its opening tag."""

    kind: str
    payload: dict[str, Any]
    line: int


@dataclass(frozen=True, slots=True)
class MarkerError:
    """A live block that is not a valid marker; `reason` is one line for a corrective prompt."""

    kind: str
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Extraction:
    """What a reply asks for. `text` is the reply with every live block (valid or not,
    tag lines included) cut out, and everything else kept byte for byte."""

    markers: tuple[Marker, ...]
    errors: tuple[MarkerError, ...]
    text: str


# --- prompt-safe text ---------------------------------------------------------------

# \s already covers \r, \x1c-\x1f, \x85, U+2028 and U+2029; the explicit ranges add the
# C0/C1 controls that are not whitespace (NUL, ESC...), which a terminal or a model may
# still act on.
_RUNS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def collapse(text: str, cap: int) -> str:
    """One line of at most `cap` characters; ends in "…" when it was cut."""
    if cap < 1:
        raise ValueError("cap must be at least 1")
    # Most fields need no change: isprintable() is false for every control and every
    # whitespace but " ", and checking it in C is much cheaper than a regex substitution.
    if text.isprintable() and "  " not in text:
        text = text.strip(" ")
    else:
        text = _RUNS.sub(" ", text).strip(" ")
    if len(text) > cap:
        text = text[: cap - 1].rstrip(" ") + "…"
    return text


_BACKTICKS = re.compile(r"`+")


def quoted_section(head: str, lines: Iterable[str], cap: int, used: int) -> str:
    """`head`, a blank line and as many of `lines` as fit, quoted, within `cap` bytes in all
    (`used` is the estimate of head and fence); "" when none fits. Quoted like every text an
    agent wrote, so a line never acts as a marker."""
    kept: list[str] = []
    for line in lines:
        size = len(line.encode()) + 1
        if used + size > cap:
            break
        kept.append(line)
        used += size
    while kept:
        section = head + "\n\n" + quote("\n".join(kept))
        if len(section.encode()) <= cap:
            return section
        kept.pop()  # a backtick run in a line made the fence longer than reckoned
    return ""


def quote(text: str) -> str:
    """`text` inside a backtick fence that nothing in it can close.

    Put the result on lines of its own: a fence only opens at the start of a line.
    """
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    newline = "" if text.endswith("\n") else "\n"
    return f"{fence}\n{text}{newline}{fence}"


# --- the scanner --------------------------------------------------------------------

# A line end is LF or CRLF; the lookahead leaves it unconsumed so that the next search,
# which starts with "\n", finds the following line.
_EOL = r"(?=\r?\n|\Z)"
_LINE = (
    rf"(?:CREW_(?P<kind>{'|'.join(k.upper() for k in KINDS)})_(?P<edge>BEGIN|END)[ \t]*{_EOL}"
    # A backtick fence's info string may not contain a backtick (then it is inline
    # code, not a fence); a tilde fence's info string may contain anything.
    r"| {0,3}(?P<fence>`{3,}(?=[^`\n]*(?:\n|\Z))|~{3,}))"
)
# Only lines that start a tag or a fence are ever looked at. The literal "\n" prefix
# lets the regex engine skip from newline to newline in C instead of trying every
# position, which is what makes the pass fast; the first line has no "\n" before it.
_FIRST_LINE = re.compile(_LINE)
_NEXT_LINE = re.compile(r"\n" + _LINE)
_CLOSING_FENCE = {
    "`": re.compile(rf"\n( {{0,3}})(`{{3,}})[ \t]*{_EOL}"),
    "~": re.compile(rf"\n( {{0,3}})(~{{3,}})[ \t]*{_EOL}"),
}
_END_TAG = {k: re.compile(rf"\nCREW_{k.upper()}_END[ \t]*{_EOL}") for k in KINDS}


class _Invalid(Exception):
    """A body that is not a valid payload; the message is the reason."""


def extract(text: str) -> Extraction:
    """Every live block in `text`, in order, as a marker or an error. Never raises."""
    markers: list[Marker] = []
    errors: list[MarkerError] = []
    cuts: list[tuple[int, int]] = []  # [start, end) of each live block, in order
    counted_to, line = 0, 1  # line numbers are counted incrementally: one pass in all

    pos = 0
    match = _FIRST_LINE.match(text)
    start = 0
    while True:
        if match is None:
            match = _NEXT_LINE.search(text, pos)
            if match is None:
                break
            start = match.start() + 1
        kind, edge, fence = match.group("kind", "edge", "fence")
        if fence:
            closing = _find_closing_fence(text, fence, match.end(), start, match.start("fence") - start)
            if closing is None:
                break  # an unclosed fence runs to the end: nothing after it is live
            pos, match = closing, None
            continue
        pos = match.end()
        match = None
        if edge == "END":
            continue  # a stray closing tag is plain text

        kind = kind.lower()
        line += text.count("\n", counted_to, start)
        counted_to = start
        end_tag = _END_TAG[kind].search(text, pos)
        if end_tag is None:
            errors.append(MarkerError(kind, line, "block is never closed"))
            cuts.append((start, len(text)))
            break
        outcome = _block(kind, line, text, text.index("\n", pos), end_tag.start())
        if isinstance(outcome, Marker):
            markers.append(outcome)
        else:
            errors.append(outcome)
        pos = end_tag.end()
        after = text.find("\n", pos)
        cuts.append((start, len(text) if after < 0 else after + 1))

    if cuts:
        kept, last = [], 0
        for cut_start, cut_end in cuts:
            kept.append(text[last:cut_start])
            last = cut_end
        kept.append(text[last:])
        text = "".join(kept)
    return Extraction(tuple(markers), tuple(errors), text)


def _find_closing_fence(text: str, fence: str, pos: int, line_start: int, indent: int) -> int | None:
    """Where the line closing `fence` (opened `indent` spaces in, on the line starting at
    `line_start`) ends, or None when nothing closes it. In a possible list item, a closing
    line less indented than the opening also opens a fence (see the module docstring), and
    the search goes on for that one's close."""
    closing = _CLOSING_FENCE[fence[0]]
    in_item: bool | None = None  # worked out only if a less indented close turns up (rare)
    while True:
        match = closing.search(text, pos)
        if match is None:
            return None
        if len(match.group(2)) >= len(fence):
            if len(match.group(1)) >= indent:
                return match.end()
            if in_item is None:
                in_item = _maybe_in_list_item(text, line_start)
            if not in_item:
                return match.end()
            fence, indent, in_item = match.group(2), len(match.group(1)), True
        pos = match.end()


# Looking up from a fence, what decides whether it may sit in a list item: a list marker
# line (maybe), or a line that ends every list: column-0 text right after a blank line (no
# lazy continuation crosses a blank line) or a column-0 fence line. Whichever comes last
# wins; the greedy prefix makes the regex engine find that last one from the end, in C,
# at a cost that grows with its distance from the fence, not with the reply.
_LAST_LIST_CONTEXT = re.compile(
    r"(?s:.*)(?m:^)(?:(?P<item> {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|\r?\n))|[ \t]*\r?\n(?=\S)|`{3,}|~{3,})"
)
_LOOK_BACK = 64 * 1024  # bytes; nothing decisive that far up, and a list is not ruled out


def _maybe_in_list_item(text: str, line_start: int) -> bool:
    """Could the line starting at `line_start` belong to a list item? The last decisive
    line above it tells (see _LAST_LIST_CONTEXT); the start of the text says no; nothing
    decisive within reach is a maybe: a doubt never makes a marker live."""
    begin = 0
    if line_start > _LOOK_BACK:
        begin = text.find("\n", line_start - _LOOK_BACK, line_start) + 1  # whole lines only
    found = _LAST_LIST_CONTEXT.match(text, begin, line_start)
    if found is None:
        return begin > 0
    return found.lastgroup == "item"


def _block(kind: str, line: int, text: str, begin_eol: int, end_nl: int) -> Marker | MarkerError:
    """The block whose opening tag's LF is at `begin_eol`, closing tag's LF at `end_nl`."""
    span = end_nl - begin_eol - 1
    # A body character costs at most two raw characters (CRLF -> LF), so a raw span this
    # long is over the limit without copying it.
    if span > 2 * BODY_LIMIT + 1:
        return MarkerError(kind, line, "body exceeds 64 KiB")
    body = text[begin_eol + 1 : end_nl] if span > 0 else ""
    if body.endswith("\r"):
        body = body[:-1]  # the CR of the last body line's CRLF
    body = body.replace("\r\n", "\n")
    size = len(body)
    # A character is 1 to 4 bytes: only encode when the count of characters cannot tell.
    if size > BODY_LIMIT or (4 * size > BODY_LIMIT and len(body.encode("utf-8", "surrogatepass")) > BODY_LIMIT):
        return MarkerError(kind, line, "body exceeds 64 KiB")
    try:
        value = _JSON.decode(body)
    except _DuplicateKey as e:
        return _error(kind, line, f"body is not valid JSON: the key {e} appears twice in one object")
    except json.JSONDecodeError as e:
        # The body's line n is the reply's line `line + n`: point at the reply.
        return _error(kind, line, f"body is not valid JSON: {e.msg} at line {line + e.lineno}, column {e.colno}")
    except RecursionError:
        return MarkerError(kind, line, "body nests too deeply")
    except Exception as e:  # noqa: BLE001 - e.g. a 5000-digit number; extract never raises
        return _error(kind, line, f"body is not valid JSON: {e}")
    if not isinstance(value, dict):
        return MarkerError(kind, line, "body must be one JSON object")
    try:
        return Marker(kind, _PAYLOADS[kind](value), line)
    except _Invalid as e:
        return _error(kind, line, str(e))
    except Exception:  # noqa: BLE001 - a bug here must not take the supervisor down
        return MarkerError(kind, line, "body could not be checked (internal error)")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class _DuplicateKey(ValueError):
    """A JSON object names one key twice; the message is the key, quoted and capped."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)  # in C; only a short dict means a repeated key
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(json.dumps(key[:40]))
            seen.add(key)
    return value


# One decoder for every call, as json.loads does for its defaults: building one per
# block costs more than decoding a small body.
# (object_pairs_hook costs a Python call per JSON object: about 1.5 µs of a small block's
# 13; a cheaper pre-test that stays sound cost as much as it saved.)
_JSON = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_unique_keys)


def _error(kind: str, line: int, reason: str) -> MarkerError:
    return MarkerError(kind, line, collapse(reason, _REASON_CAP))


# --- payloads -----------------------------------------------------------------------

_LANE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# A check command goes to a shell: a line break or NUL in it would run something else
# than what the operator read, so it is rejected rather than rewritten.
_UNSAFE_COMMAND = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def check_command_problem(command: str) -> str | None:
    """Why a check command may not run, or None: the one rule for a LOCK, `--check`, a
    criteria file and a template, so a command refused from one is refused from all."""
    if not command.strip(" \t"):
        return "must be a non-empty command"
    if _UNSAFE_COMMAND.search(command):
        return "must be one line without control characters"
    if len(command) > 1000:
        return "must be at most 1000 characters"
    return None


def _items(obj: dict[str, Any], key: str, where: str, low: int, high: int) -> list[Any]:
    value = obj.get(key)
    if value is None:
        if low == 0:
            return []
        raise _Invalid(f"{where}{key} is required")
    if not isinstance(value, list):
        raise _Invalid(f"{where}{key} must be a list")
    if not low <= len(value) <= high:
        raise _Invalid(f"{where}{key} must have {low}–{high} items")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object")
    return value


def _string(value: Any, where: str, cap: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be a string")
    value = collapse(value, cap)
    if not value:
        if required:
            raise _Invalid(f"{where} must not be empty")
        return None
    return value


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Invalid(f"{where} must be true or false")
    return value


def _clarify(body: dict[str, Any]) -> dict[str, Any]:
    questions = []
    for n, question in enumerate(_items(body, "questions", "", 1, 10), 1):
        at = f"questions[{n}]"
        question = _object(question, at)
        options = question.get("options")
        if options is None:
            options = []
        if not isinstance(options, list):
            raise _Invalid(f"{at}.options must be a list")
        if len(options) == 1 or len(options) > 8:
            raise _Invalid(f"{at}.options must have 0 or 2–8 items")
        questions.append({
            "id": f"q{n}",
            "text": _string(question.get("text"), f"{at}.text", 500, required=True),
            "options": [
                _string(option, f"{at}.options[{m}]", 200, required=True)
                for m, option in enumerate(options, 1)
            ],
            "multi": _flag(question.get("multi"), f"{at}.multi"),
        })
    return {"intro": _string(body.get("intro"), "intro", 1000, required=False), "questions": questions}


def _lock(body: dict[str, Any]) -> dict[str, Any]:
    criteria = []
    for n, criterion in enumerate(_items(body, "criteria", "", 1, 20), 1):
        at = f"criteria[{n}]"
        criterion = _object(criterion, at)
        text = _string(criterion.get("text"), f"{at}.text", 1000, required=True)
        criteria.append({"id": f"c{n}", "text": text, "verify": _verify(criterion.get("verify"), f"{at}.verify")})
    return {"statement": _string(body.get("statement"), "statement", 2000, required=False), "criteria": criteria}


def _verify(value: Any, at: str) -> str | dict[str, str]:
    if isinstance(value, dict):
        command = value.get("run")
        if not isinstance(command, str):
            raise _Invalid(f"{at}.run must be a non-empty command")
        if problem := check_command_problem(command):
            raise _Invalid(f"{at}.run {problem}")
        return {"run": command}
    if not isinstance(value, str):
        raise _Invalid(f'{at} must be a string or {{"run": command}}')
    return _string(value, at, 2000, required=True)  # type: ignore[return-value]


def _plan(body: dict[str, Any]) -> dict[str, Any]:
    steps = []
    for n, step in enumerate(_items(body, "steps", "", 1, 50), 1):
        at = f"steps[{n}]"
        step = _object(step, at)
        lane = step.get("lane")
        if lane is not None:
            if not isinstance(lane, str) or not _LANE.fullmatch(lane.lower()):
                raise _Invalid(f"{at}.lane must match ^[a-z0-9][a-z0-9_-]{{0,31}}$")
            lane = lane.lower()
        steps.append({
            "id": f"s{n}",
            "title": _string(step.get("title"), f"{at}.title", 200, required=True),
            "detail": _string(step.get("detail"), f"{at}.detail", 2000, required=False),
            "lane": lane,
            "needs_approval": _flag(step.get("needs_approval"), f"{at}.needs_approval"),
        })
    return {"steps": steps}


def _ready(body: dict[str, Any]) -> dict[str, Any]:
    evidence = []
    for n, item in enumerate(_items(body, "evidence", "", 0, 20), 1):
        if not isinstance(item, str):
            raise _Invalid(f"evidence[{n}] must be a string")
        evidence.append(collapse(item, 1000))
    return {"summary": _string(body.get("summary"), "summary", 4000, required=True), "evidence": evidence}


def _blocked(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "reason": _string(body.get("reason"), "reason", 1000, required=True),
        "needs": _string(body.get("needs"), "needs", 1000, required=False),
    }


def _verify_results(body: dict[str, Any]) -> dict[str, Any]:
    results = []
    for n, result in enumerate(_items(body, "results", "", 1, 100), 1):
        at = f"results[{n}]"
        result = _object(result, at)
        verdict = result.get("verdict")
        if not (isinstance(verdict, str) and verdict.isascii() and verdict.lower() in ("pass", "fail")):
            raise _Invalid(f'{at}.verdict must be "pass" or "fail"')
        evidence = result.get("evidence")
        if not isinstance(evidence, str):
            raise _Invalid(f"{at}.evidence must be a string")
        results.append({
            "id": _string(result.get("id"), f"{at}.id", 64, required=True),
            "verdict": verdict.lower(),
            "evidence": collapse(evidence, 2000),
        })
    return {"results": results}


# REFLECT (docs/contracts.md, "Durable outputs"): what a finished goal leaves for the next one.
# A skill's name becomes a directory and an Agent Skills `name`; its body is Markdown that
# never reaches a prompt, so it keeps its lines and loses only control characters.
MEMORY_KINDS = ("fact", "preference", "strategy")
SKILL_NAME = re.compile(r"[a-z0-9-]{1,64}")
SKILL_BODY_LIMIT = 16 * 1024  # bytes of UTF-8
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _sound(text: str) -> str:
    """`text` without lone surrogates (JSON allows "\\ud800"; a file or YAML does not)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _reflect(body: dict[str, Any]) -> dict[str, Any]:
    """Everything in it is written to disk (memory, skills), so it is made sound for that."""
    payload = _reflect_fields(body)
    payload["summary"] = _sound(payload["summary"])
    payload["lessons"] = [_sound(x) for x in payload["lessons"]]
    payload["memory"] = [{"kind": m["kind"], "text": _sound(m["text"])} for m in payload["memory"]]
    if payload["skill"] is not None:
        payload["skill"] = {k: _sound(v) for k, v in payload["skill"].items()}
    return payload


def _reflect_fields(body: dict[str, Any]) -> dict[str, Any]:
    lessons = []
    for n, item in enumerate(_items(body, "lessons", "", 0, 10), 1):
        lessons.append(_string(item, f"lessons[{n}]", 500, required=True))
    memory = []
    for n, entry in enumerate(_items(body, "memory", "", 0, 10), 1):
        at = f"memory[{n}]"
        entry = _object(entry, at)
        kind = entry.get("kind")
        if kind not in MEMORY_KINDS:
            raise _Invalid(f'{at}.kind must be "fact", "preference" or "strategy"')
        memory.append({"kind": kind, "text": _string(entry.get("text"), f"{at}.text", 500, required=True)})
    skill = body.get("skill")
    if skill is not None:
        skill = _object(skill, "skill")
        name = skill.get("name")
        if not isinstance(name, str) or not SKILL_NAME.fullmatch(name):
            raise _Invalid("skill.name must match ^[a-z0-9-]{1,64}$")
        text = skill.get("body")
        if not isinstance(text, str):
            raise _Invalid("skill.body must be a string")
        text = _BODY_CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
        if not text.strip():
            raise _Invalid("skill.body must not be empty")
        if len(text.encode("utf-8", "surrogatepass")) > SKILL_BODY_LIMIT:
            raise _Invalid("skill.body exceeds 16 KiB")
        skill = {
            "name": name,
            "description": _string(skill.get("description"), "skill.description", 1024, required=True),
            "body": text + "\n",
        }
    return {
        "summary": _string(body.get("summary"), "summary", 2000, required=True),
        "lessons": lessons,
        "memory": memory,
        "skill": skill,
    }


_PAYLOADS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "clarify": _clarify,
    "lock": _lock,
    "plan": _plan,
    "ready": _ready,
    "blocked": _blocked,
    "verify": _verify_results,
    "reflect": _reflect,
}
