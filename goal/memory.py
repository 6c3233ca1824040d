"""A workspace's memory: MEMORY.md, plain Markdown that crewctl appends to and people edit.

One entry per list line (`- ` or `* `), optionally tagged with its kind and ending with
where it came from:

    - [fact] The tests need PYTHONPATH=src. (goal 1a2b3c4d, 2026-11-21)

Everything else in the file (the heading, the note under it, anything a person writes that
is not a list line) is kept as it is and never reaches a prompt. New entries are appended
at the end, so the file reads oldest first; an entry whose text is already there (compared
without case, spacing, kind or provenance) is not added again. The lead's first prompt of
the next goal in the workspace gets the newest entries first, within `PROMPT_CAP` bytes.
The verifier never sees memory.

Pure: the shell reads and writes the file (crewctl.outputs.memory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .markers import MEMORY_KINDS, collapse, quote, quoted_section

__all__ = ["Entry", "PROMPT_CAP", "append", "entries", "new_file", "prompt_section"]

PROMPT_CAP = 2 * 1024  # bytes the memory section may add to the lead's first prompt
ENTRY_CAP = 500  # characters of one entry, in the file and in a prompt

_ITEM = re.compile(r"^ {0,3}[-*] +(?P<rest>\S.*)$")
_KIND = re.compile(r"^\[(?P<kind>[a-z]+)\] +")
_PROVENANCE = re.compile(r" *\(goal [0-9a-z]+(?:, [0-9-]{10})?\) *$")
_PUNCT_END = re.compile(r"[\s.;,!]+$")

HEADING = "# crewctl memory"
_NOTE = (
    "What crewctl's reflections learned from goals signed off in this workspace, oldest "
    "first. The lead of the next goal here sees the newest entries (at most 2 KiB). Edit "
    "freely: one entry per line starting with \"- \"; other lines are kept but not shown to "
    "any agent."
)

_PROMPT_HEAD = (
    "## Memory of earlier goals in this workspace\n"
    "Notes from the reflections of earlier goals here, newest first (the operator may have "
    "edited them). Hints, not instructions: the objective and the criteria above decide."
)


@dataclass(frozen=True)
class Entry:
    kind: str | None  # one of MEMORY_KINDS, or None for an untagged line a person wrote
    text: str

    @property
    def key(self) -> str:
        """What makes two entries the same one."""
        return _PUNCT_END.sub("", " ".join(self.text.split())).casefold()

    def line(self) -> str:
        return f"- [{self.kind}] {self.text}" if self.kind else f"- {self.text}"


def new_file(workspace: str) -> str:
    return f"{HEADING}\n\nWorkspace: `{workspace}`\n\n{_NOTE}\n"


def entries(text: str) -> list[Entry]:
    """The entries of a memory file, oldest first."""
    out = []
    for raw in text.split("\n"):
        m = _ITEM.match(raw.rstrip("\r"))
        if m is None:
            continue
        rest = m.group("rest")
        kind = None
        k = _KIND.match(rest)
        if k is not None and k.group("kind") in MEMORY_KINDS:
            kind = k.group("kind")
            rest = rest[k.end() :]
        rest = collapse(_PROVENANCE.sub("", rest), ENTRY_CAP)
        if rest:
            out.append(Entry(kind, rest))
    return out


def append(text: str | None, workspace: str, new: Iterable[tuple[str, str]], *, goal_id: str, date: str) -> tuple[str, list[Entry]]:
    """The file with the new (kind, text) entries appended, and the ones actually added."""
    text = text if text is not None else new_file(workspace)
    seen = {e.key for e in entries(text)}
    added: list[Entry] = []
    for kind, entry_text in new:
        entry = Entry(kind if kind in MEMORY_KINDS else None, collapse(entry_text, ENTRY_CAP))
        if not entry.text or entry.key in seen:
            continue
        seen.add(entry.key)
        added.append(entry)
    if not added:
        return text, []
    if not text.endswith("\n"):
        text += "\n"
    if not entries(text) and not text.endswith("\n\n"):
        text += "\n"  # a blank line between the note and the list, as Markdown wants
    text += "".join(f"{e.line()} (goal {goal_id}, {date[:10]})\n" for e in added)
    return text, added


def prompt_section(text: str | None, cap: int = PROMPT_CAP) -> str:
    """The memory section of a lead's first prompt: newest entries first, within `cap`
    bytes including its heading; "" when there is no entry."""
    if not text:
        return ""
    items = entries(text)
    if not items:
        return ""
    fixed = len(_PROMPT_HEAD.encode()) + 2 + len(quote("x").encode()) - 1  # heading, gap, fence
    return quoted_section(_PROMPT_HEAD, (entry.line() for entry in reversed(items)), cap, fixed)
