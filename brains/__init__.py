"""Brains: what turns a prompt into a reply.

    scripted:FILE            deterministic replies per role (tests, the demo)
    exec:COMMAND             any command: prompt on stdin, reply on stdout (docs/contracts.md)
    openai:MODEL[@BASE_URL]  any OpenAI-compatible Chat Completions server
    anthropic:MODEL          the Anthropic Messages API
    claude | codex | gemini | opencode | aider | llm [:MODEL]
                             presets over exec for agent CLIs people already use
    NAME                     a brain named in the config file

`resolve(spec)` is the one way to get a brain from a spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import ConfigError
from .base import MAX_REPLY_BYTES, Brain, Message, TurnReply, TurnRequest, Usage

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "MAX_REPLY_BYTES",
    "Brain",
    "Message",
    "TurnReply",
    "TurnRequest",
    "Usage",
    "check_runnable",
    "resolve",
    "validate_spec",
]


def resolve(spec: str, config: "Config | None" = None) -> Brain:
    """Build the brain a spec names. Raises ConfigError with a one-line reason."""
    spec = (spec or "").strip()
    if not spec:
        raise ConfigError("empty brain spec; try exec:COMMAND, scripted:FILE, openai:MODEL or a preset such as claude")
    kind, sep, rest = spec.partition(":")
    if config is not None and not sep and spec in config.brains:
        return resolve(config.brains[spec]["spec"], config)
    if kind == "exec" and sep:
        from .exec import ExecBrain

        return ExecBrain(rest)
    if kind == "scripted" and sep:
        from .scripted import ScriptedBrain

        return ScriptedBrain(rest)
    if kind == "openai" and sep:
        from .openai import OpenAIBrain

        return OpenAIBrain.from_spec(rest, config)
    if kind == "anthropic" and sep:
        from .anthropic import AnthropicBrain

        return AnthropicBrain.from_spec(rest, config)
    from .presets import PRESETS, preset_brain

    if kind in PRESETS:
        return preset_brain(kind, rest or None, config)
    known = "exec:, scripted:, openai:, anthropic:, " + ", ".join(sorted(PRESETS))
    raise ConfigError(f"unknown brain {spec!r}; known kinds: {known}")


def check_runnable(spec: str, config: "Config | None" = None) -> None:
    """Refuse a spec that cannot run on this machine, with the reason (ConfigError): one
    that does not parse, a brain the config does not name, an agent CLI that is not
    installed (not on PATH), a scripted file that is missing. What only a turn can tell
    (an API key the server rejects, an exec command that fails) is the turn's to report."""
    brain = resolve(spec, config)
    from .presets import PresetBrain, find_executable

    if isinstance(brain, PresetBrain):
        argv0 = (brain.settings.command or brain.preset.command)[0]
        if find_executable(argv0) is None:
            raise ConfigError(
                f"{argv0} is not installed here (not on the supervisor's PATH); install "
                f"{brain.preset.install} or set [presets.{brain.preset.name}] command in the config"
            )


def validate_spec(spec: str, config: "Config | None" = None) -> str:
    """Check a spec can be built (without running anything); return it normalised."""
    resolve(spec, config)
    return spec.strip()
