"""Skills: SKILL.md in the Agent Skills format, so Claude Code and Codex can load them.

    ---
    name: "fix-date-parsing"
    description: "When a date parser fails on ...: reproduce, then ..."
    ---
    The body: Markdown.

The front matter is YAML; crewctl writes both values as double-quoted scalars (escaping
what YAML may not hold as it is), so a name like `2024-01-01` or `true` stays a string.
`parse` reads what crewctl writes and what a person is likely to write by hand (plain,
single- or double-quoted scalars, `|` and `>` blocks); it is not a YAML parser, and says
so when a file is beyond it.

Pure: the shell reads and writes the files (crewctl.outputs.skills).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .markers import SKILL_NAME, collapse, quoted_section

__all__ = ["LIST_CAP", "Skill", "SkillFormatError", "parse", "prompt_section", "render"]

LIST_CAP = 1024  # bytes the skills section may add to the lead's first prompt
DESCRIPTION_CAP = 1024  # characters, as the Agent Skills format allows
_LISTED_DESCRIPTION = 100  # characters of a description in the prompt's list: more skills fit

_PROMPT_HEAD = (
    "## Skills from earlier goals\n"
    "Names and descriptions only; to read one, ask the operator (CLARIFY) to run "
    "`crewctl skills export NAME DIR` into the workspace."
)


class SkillFormatError(ValueError):
    """A SKILL.md this module cannot read; the message says why, in one line."""


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    body: str


# YAML's printable set (YAML 1.1 as PyYAML reads it); anything else is escaped.
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _quote(value: str) -> str:
    def esc(m: re.Match) -> str:
        code = ord(m.group(0))
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return '"' + _UNPRINTABLE.sub(esc, value) + '"'


def render(skill: Skill, provenance: str | None = None) -> str:
    """The SKILL.md text. `provenance` (one line) goes at the end as an HTML comment."""
    if not SKILL_NAME.fullmatch(skill.name):
        raise SkillFormatError(f"skill name {skill.name!r} must match ^[a-z0-9-]{{1,64}}$")
    body = skill.body if skill.body.endswith("\n") else skill.body + "\n"
    text = f"---\nname: {_quote(skill.name)}\ndescription: {_quote(collapse(skill.description, DESCRIPTION_CAP))}\n---\n\n{body}"
    if provenance:
        text += f"\n<!-- {collapse(provenance, 200).replace('--', '- -')} -->\n"
    return text


_FRONT_END = re.compile(r"^---[ \t]*$", re.M)
_KEY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_-]*):(?:[ \t]+(?P<value>.*?))?[ \t]*$")
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
            "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def parse(text: str) -> Skill:
    """Name, description and body of a SKILL.md. Raises SkillFormatError."""
    text = text.replace("\r\n", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith("---\n"):
        raise SkillFormatError("no YAML front matter (the file must start with a line ---)")
    end = _FRONT_END.search(text, 4)
    if end is None:
        raise SkillFormatError("the front matter is never closed (a line ---)")
    fields = _front_matter(text[4 : end.start()])
    body = text[end.end() :].lstrip("\n")
    name = fields.get("name")
    description = fields.get("description")
    if not isinstance(name, str) or not name:
        raise SkillFormatError("the front matter has no name")
    if not isinstance(description, str) or not description.strip():
        raise SkillFormatError("the front matter has no description")
    return Skill(name=name, description=description, body=body)


def _front_matter(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            continue  # nested under a key we do not read (metadata: ...)
        m = _KEY.match(line)
        if m is None:
            raise SkillFormatError(f"front matter line {i} is not `key: value`")
        key, value = m.group("key"), m.group("value") or ""
        if value in ("|", "|-", "|+", ">", ">-", ">+"):
            block_lines = []
            while i < len(lines) and (not lines[i].strip() or lines[i][0] in " \t"):
                block_lines.append(lines[i].strip())
                i += 1
            joiner = "\n" if value[0] == "|" else " "
            fields[key] = joiner.join(block_lines).strip()
        else:
            fields[key] = _scalar(value, i)
    return fields


def _scalar(value: str, line: int) -> str:
    if value.startswith('"'):
        out: list[str] = []
        j = 1
        while j < len(value):
            ch = value[j]
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                j += 1
                code = value[j : j + 1]
                if code in ("x", "u", "U"):
                    width = {"x": 2, "u": 4, "U": 8}[code]
                    digits = value[j + 1 : j + 1 + width]
                    try:
                        out.append(chr(int(digits, 16)))
                    except ValueError:
                        raise SkillFormatError(f"front matter line {line}: bad escape \\{code}{digits}") from None
                    j += width
                elif code in _ESCAPES:
                    out.append(_ESCAPES[code])
                else:
                    raise SkillFormatError(f"front matter line {line}: bad escape \\{code}")
            else:
                out.append(ch)
            j += 1
        raise SkillFormatError(f"front matter line {line}: unclosed double quote")
    if value.startswith("'"):
        if len(value) < 2 or not value.endswith("'"):
            raise SkillFormatError(f"front matter line {line}: unclosed single quote")
        return value[1:-1].replace("''", "'")
    return re.sub(r"[ \t]+#.*$", "", value).strip()


def prompt_section(skills: Iterable[tuple[str, str]], cap: int = LIST_CAP) -> str:
    """The skills section of a lead's first prompt: names and descriptions, in the order
    given (newest first), within `cap` bytes including its heading; "" when there are none."""
    used = len(_PROMPT_HEAD.encode()) + 2 + 8  # heading, blank line, the fence around the list
    # A description is the reflector's words: quoted like every text an agent wrote.
    lines = (f"- {collapse(name, 64)}: {collapse(description, _LISTED_DESCRIPTION)}" for name, description in skills)
    return quoted_section(_PROMPT_HEAD, lines, cap, used)
