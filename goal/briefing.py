"""What a goal's first lead prompt carries from earlier goals: memory and skills.

Only the first lead turn of a goal gets it (goal.prompts.lead_prompt), never a verifier or
a worker. Each section is capped where it is made; with the blank lines that join them to
the prompt, the briefing adds at most memory.PROMPT_CAP + skills.LIST_CAP bytes.
"""

from __future__ import annotations

from typing import Iterable

from . import memory, skills

__all__ = ["briefing", "MAX_BYTES"]

_JOIN = 2  # the blank line before each section
MAX_BYTES = memory.PROMPT_CAP + skills.LIST_CAP


def briefing(memory_text: str | None, listed_skills: Iterable[tuple[str, str]]) -> str:
    """The sections for the first prompt ("" when there is nothing to say)."""
    parts = [
        memory.prompt_section(memory_text, memory.PROMPT_CAP - _JOIN),
        skills.prompt_section(listed_skills, skills.LIST_CAP - _JOIN),
    ]
    return "\n\n".join(p for p in parts if p)
