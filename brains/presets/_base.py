"""What every preset is made of: the Preset record, its settings, and the parsing helpers
the tools' modules share."""

from __future__ import annotations

import json
import os
import shutil
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ...exceptions import BrainError, UsageLimited
from ..base import TurnReply

ROLES = ("lead", "worker", "verifier", "reflector")
# The reflector (one turn after sign-off, docs/contracts.md, "Durable outputs") runs as the verifier
# does: read-only where the tool allows, never resumed.
_AS_VERIFIER = frozenset({"verifier", "reflector"})
# Placeholders `brains show` prints where a real turn has a value.
SESSION_PLACEHOLDER = "<session>"
PROMPT_FILE_PLACEHOLDER = "<prompt-file>"

# For every preset: no colours, no pager, no terminal tricks. Tools that ignore these lose nothing.
_QUIET_ENV = {"NO_COLOR": "1", "TERM": "dumb"}
_SETTING_KEYS = ("command", "model", "args", "verifier_args", "env")


@dataclass(frozen=True)
class Invocation:
    """One turn's command line: what `run_process` gets, and what `brains show` prints."""

    argv: list[str]
    env: dict[str, str]  # added to the role's environment
    prompt_via: str  # "stdin" or "file" (the prompt file's path is in argv)
    resumed: bool  # whether this turn continues the tool's own session


@dataclass(frozen=True)
class PresetSettings:
    """`[presets.NAME]` from the config, validated."""

    command: tuple[str, ...] | None = None
    model: str | None = None
    args: tuple[str, ...] = ()
    verifier_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None  # the config file that set `command`, if any


# A role-args builder gets (role, model, resume_ref or None, extra args, prompt file or None)
# and returns the arguments that follow the base command.
ArgsBuilder = Callable[[str, "str | None", "str | None", Sequence[str], "str | None"], list[str]]
# A parser gets (stdout bytes, stderr tail, the resume_ref passed in) and returns the reply.
Parser = Callable[[bytes, str, "str | None"], TurnReply]
# A failure reader gets stdout and the stderr tail of a non-zero exit and returns the tool's own
# error, if it said one.
FailureReader = Callable[[bytes, str], "BrainError | None"]


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    command: tuple[str, ...]  # the built-in base command (argv prefix)
    install: str  # how to get it, for "not found on PATH"
    docs: str  # where its non-interactive mode is documented
    prompt_via: str  # "stdin" or "file"
    resumes: bool
    parses: str  # what is read from where, one line, for `brains show`
    verifier_isolation: str  # what keeps a verifier turn read-only, honestly
    build_args: ArgsBuilder = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    parse: Parser = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    failure: FailureReader = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    # Reads stdout while the tool runs; a message means it will never finish: stop it now.
    watch: Callable[[bytes], "str | None"] | None = field(repr=False, compare=False, default=None)
    env: Mapping[str, str] = field(default_factory=dict)
    verifier_env: Mapping[str, str] = field(default_factory=dict)
    # (role, the turn's working directory or None for `brains show`) -> arguments that depend on
    # what is in that directory, put before the prompt arguments.
    context_args: Callable[[str, "str | None"], list[str]] | None = field(repr=False, compare=False, default=None)
    # What crewctl's sandbox needs to know of the tool (crewctl.sandbox asks, by the resolved kind):
    # the variables that carry its credentials and choice of provider and model;
    credential_env: tuple[str, ...] = ()
    # where under HOME it keeps login, sessions and settings (writable for lead and worker
    # turns), and the variables that move that place elsewhere;
    state_dirs: tuple[str, ...] = ()
    state_env: tuple[str, ...] = ()
    # the files, relative to HOME, that a verifier's fresh HOME gets: its login and its choice
    # of provider and model, never sessions or history;
    home_files: tuple[str, ...] = ()
    # and what must be derived rather than copied (a settings file that also names MCP
    # servers or history): (the operator's HOME, the fresh HOME) -> the files written.
    seed: Callable[[str, str], list[str]] | None = field(repr=False, compare=False, default=None)


# ---------------------------------------------------------------------------------------------
# shared parsing helpers


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _cost(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _decode(stdout: bytes) -> str:
    return stdout.decode("utf-8", errors="replace")


def _json_object(stdout: bytes, tool: str) -> dict:
    """The tool's single JSON object. A stray line before it (a warning some tools print to
    stdout) is tolerated by falling back to the last line that is a JSON object."""
    text = _decode(stdout).strip()
    if not text:
        raise BrainError(f"{tool} printed nothing on stdout (expected its JSON result)")
    try:
        data = json.loads(text)
    except ValueError:
        data = _embedded_json(text)
        if data is None:
            raise BrainError(f"{tool} output is not JSON: {_one_line(text, 120)}") from None
    if not isinstance(data, dict):
        raise BrainError(f"{tool} output is JSON but not an object")
    return data


def _embedded_json(text: str) -> Any:
    """A JSON object that starts at the beginning of a line and runs to the end of the text
    (gemini prints warnings, then its pretty-printed error object, on stderr)."""
    decoder = json.JSONDecoder()
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                value, end = decoder.raw_decode(text, offset)
            except ValueError:
                value, end = None, offset
            if value is not None and not text[end:].strip():
                return value
        offset += len(line)
    return None


def _json_lines(stdout: bytes, tool: str) -> list[dict]:
    """JSONL events; lines that are not JSON objects are skipped (progress noise)."""
    events = []
    for line in _decode(stdout).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    if not events:
        text = _decode(stdout).strip()
        why = f": {_one_line(text, 120)}" if text else " (stdout was empty)"
        raise BrainError(f"{tool} printed no JSON events{why}")
    return events


def _model_flag(flag: str, model: str | None) -> list[str]:
    return [flag, model] if model else []




def _limited_or_error(message: str) -> BrainError:
    lowered = message.lower()
    if "rate limit" in lowered or "usage limit" in lowered or " 429" in lowered:
        return UsageLimited(message)
    return BrainError(message)


def _no_failure(_stdout: bytes, _stderr: str) -> BrainError | None:
    return None



def copy_home_files(source_home: str, fresh_home: str, names: Sequence[str]) -> list[str]:
    """Copy these files (relative to HOME) that exist into the fresh HOME, private."""
    copied = []
    for rel in names:
        src = os.path.join(source_home, rel)
        if os.path.isfile(src):
            dst = os.path.join(fresh_home, rel)
            os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            copied.append(rel)
    return copied


def write_home_file(fresh_home: str, rel: str, text: str) -> list[str]:
    dst = os.path.join(fresh_home, rel)
    os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return [rel]
