"""`scripted:FILE`: deterministic replies per role, for tests and the demo.

FILE is JSON (or TOML, by extension) mapping a role to a list of entries:

    {"lead": [
        "a fixed reply",
        {"when": "gate held", "write": {"calc.py": "..."}, "text": "Fixed it.\\n..."},
        {"text": "turn {{turn}} of goal {{goal}}", "usage": {"input_tokens": 10}}
     ],
     "verifier": [...], "worker": [...], "reflector": [...]}

An entry with "when" (a regular expression) is used whenever it matches the prompt, first
match wins. Otherwise the session's n-th reply is the n-th entry without "when" (the last
one repeats). "text" may use {{role}}, {{goal}}, {{turn}}, {{round}}, {{session}} and
{{match.N}} (group N of the "when" match). "write" puts files in the working directory
before replying, which is how a scripted agent "edits" code; paths must stay inside it.
"""

from __future__ import annotations

import json
import os
import re
import tomllib

from ..exceptions import ConfigError
from .base import TurnReply, TurnRequest, Usage

__all__ = ["ScriptedBrain"]

ROLES = ("lead", "worker", "verifier", "reflector")


class ScriptedBrain:
    wants_history = True  # the session's ordinal comes from its history

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self.spec = f"scripted:{path}"
        self.script = _load(self.path)

    def run(self, request: TurnRequest) -> TurnReply:
        entries = self.script.get(request.role) or []
        if not entries:
            return TurnReply(text="")
        entry, match = _choose(entries, request)
        for rel, content in entry.get("write", {}).items():
            _write_inside(request.workdir, rel, content)
        text = _render(entry.get("text", ""), request, match)
        usage = entry.get("usage") or {}
        return TurnReply(
            text=text,
            usage=Usage(
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cached_tokens=int(usage.get("cached_tokens", 0)),
                cost_usd=usage.get("cost_usd"),
            ),
        )


def _load(path: str) -> dict[str, list[dict]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"scripted brain: cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.endswith(".toml") else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scripted brain: {path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"scripted brain: {path} must map roles to lists of replies")
    script: dict[str, list[dict]] = {}
    for role, entries in data.items():
        if role not in ROLES:
            raise ConfigError(f"scripted brain: unknown role {role!r} in {path} (roles: {', '.join(ROLES)})")
        if not isinstance(entries, list):
            raise ConfigError(f"scripted brain: {role} must be a list of replies")
        script[role] = [_entry(e, role, path) for e in entries]
    return script


def _entry(raw, role: str, path: str) -> dict:
    if isinstance(raw, str):
        return {"text": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("text", ""), str):
        raise ConfigError(f"scripted brain: each {role} reply in {path} is a string or an object with 'text'")
    entry = dict(raw)
    if "when" in entry:
        try:
            entry["when"] = re.compile(entry["when"])
        except (re.error, TypeError) as exc:
            raise ConfigError(f"scripted brain: bad 'when' pattern in {path}: {exc}") from None
    writes = entry.get("write", {})
    if not isinstance(writes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in writes.items()):
        raise ConfigError(f"scripted brain: 'write' in {path} maps relative paths to file contents")
    return entry


def _choose(entries: list[dict], request: TurnRequest) -> tuple[dict, re.Match | None]:
    for entry in entries:
        when = entry.get("when")
        if when is not None and (m := when.search(request.prompt)):
            return entry, m
    sequence = [e for e in entries if "when" not in e]
    if not sequence:
        return {"text": ""}, None
    ordinal = sum(1 for m in request.history if m.role == "assistant")
    return sequence[min(ordinal, len(sequence) - 1)], None


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z]+(?:\.\d+)?)\s*\}\}")


def _render(text: str, request: TurnRequest, match: re.Match | None) -> str:
    values = {
        "role": request.role,
        "goal": request.goal_id,
        "turn": str(request.turn),
        "round": "" if request.round is None else str(request.round),
        "session": request.session_id,
    }

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name.startswith("match."):
            index = int(name.split(".", 1)[1])
            if match is not None and index <= (match.re.groups or 0):
                return match.group(index) or ""
            return ""
        return values.get(name, m.group(0))

    return _PLACEHOLDER.sub(sub, text)


def _write_inside(workdir: str, rel: str, content: str) -> None:
    root = os.path.realpath(workdir)
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.isabs(rel) or os.path.commonpath([root, target]) != root:
        raise ConfigError(f"scripted brain: refusing to write {rel!r} outside the working directory")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        f.write(content)
