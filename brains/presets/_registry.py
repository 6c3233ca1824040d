"""Every preset by name: one module per tool, each holding its own PRESET."""

from __future__ import annotations

from . import aider, claude, codex, gemini, llm, opencode
from ._base import Preset

PRESETS: dict[str, Preset] = {m.PRESET.name: m.PRESET for m in (claude, codex, gemini, opencode, aider, llm)}
