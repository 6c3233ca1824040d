"""Presets: agent CLIs people already use, driven through exec's `run_process`.

One module per tool (claude.py, codex.py, gemini.py, opencode.py, aider.py, llm.py) holds
everything crewctl knows of it: flags per role, parsing, failures, the files its fresh HOME
needs, and the versions it was proven against. `_base` is what a preset is made of, `_run`
turns one into a command line and a brain.

    claude[:MODEL]    Claude Code       claude -p --output-format json     prompt on stdin
    codex[:MODEL]     OpenAI Codex CLI  codex exec --json ... -            prompt on stdin
    gemini[:MODEL]    Gemini CLI        gemini --output-format json        prompt on stdin
    opencode[:MODEL]  opencode          opencode run --format json         prompt on stdin
    aider[:MODEL]     aider             aider ... --message-file FILE      prompt in a temp file
    llm[:MODEL]       Simon Willison's llm   llm prompt --json             prompt on stdin

Every preset runs its tool non-interactively with the tool's documented flags, as an argument
list (no shell), with stdin a pipe (never a TTY). `crewctl brains show NAME` prints the exact
command line for each role and where it came from.

Roles
-----
lead and worker turns may edit the workspace and resume the tool's own session: the
`resume_ref` of one turn's reply (claude's session_id, codex's thread_id, gemini's session_id,
opencode's sessionID, llm's conversation_id) comes back as `request.resume_ref` on the next.
A verifier turn NEVER resumes (its `resume_ref` is ignored) and is started with whatever
read-only switch the tool has; each preset's `verifier_isolation` says exactly what that is,
and where a tool has no such switch. Those switches are a second line of defence: the
verifier's isolation is by construction (a snapshot as its working directory, a scrubbed
environment), not by these flags.

Inside crewctl's sandbox
------------------------
Every turn of every preset runs inside crewctl's sandbox (crewctl.sandbox): the lead's and
workers' tools keep their own state and login under HOME writable (`Preset.state_dirs`), the
verifier's get a fresh HOME with only their credentials file. The tools' own sandboxes:
- codex keeps its own (`--sandbox read-only` / `workspace-write`): on Linux it is Landlock
  plus seccomp, which need no new namespaces and so stack inside bubblewrap's;
- gemini's `--sandbox` runs the tool in docker or podman, which a sandboxed turn cannot
  reach: it stays off (crewctl's sandbox is the OS boundary; `--approval-mode plan` the
  verifier's read-only switch);
- claude, opencode, aider and llm have no OS sandbox of their own to nest or switch off;
  their permission flags below still apply.

Usage
-----
`Usage.input_tokens` counts every prompt token the model processed, cached ones included;
`cached_tokens` is the part of it read from a cache; `output_tokens` includes reasoning or
"thought" tokens where the tool reports them apart. `cost_usd` is only set where the tool
reports a cost (claude, opencode, aider); crewctl never guesses prices.

Config
------
    [presets.claude]
    command = ["npx", "@anthropic-ai/claude-code", "-p", "--output-format", "json"]
                                  # argv prefix replacing the built-in base command (the part
                                  # `brains show` labels "base"); a string is split like a shell
    model = "sonnet"              # default model when the spec names none (claude:MODEL wins)
    args = ["--max-turns", "40"]  # extra arguments for lead and worker turns
    verifier_args = []            # extra arguments for verifier turns (added after, never
                                  # instead of, the read-only switches)
    env = { CLAUDE_CODE_MAX_OUTPUT_TOKENS = "32000" }   # extra environment for every turn

Flags were checked against the tools' own `--help` (claude 2.1.197, codex-cli 0.169.0,
gemini 0.61.0, opencode 1.18.33, aider 0.86.2, llm 0.36) and their docs; see
tests/data/recordings/README.md for where each recorded output came from. Proven by real runs
against the local model, one turn at a time (tests/e2e/test_real_aider_codex.py) and in whole
goals through `crewctl run`, as lead and as verifier, with no process left after a turn, a
`goal cancel` or a supervisor stop (tests/e2e/test_real_tools_goal.py): aider 0.86.2,
codex-cli 0.171.0 (through a Responses shim) and opencode 1.18.33; llm 0.36 as lead in the
sandbox and as a goal's verifier (test_sandboxed_cli.py, test_brains_check.py). gemini 0.61.0
and claude 2.1.197 reach no model here: their flags and first failures are checked against
the installed tools (test_real_gemini_claude.py).
"""

from __future__ import annotations

from ._base import PROMPT_FILE_PLACEHOLDER, ROLES, SESSION_PLACEHOLDER, Invocation, Preset, PresetSettings, copy_home_files
from ._registry import PRESETS
from ._run import PresetBrain, find_executable, invocation, preset_brain, preset_settings
from .codex import codex_provider_config

__all__ = [
    "PRESETS",
    "PROMPT_FILE_PLACEHOLDER",
    "ROLES",
    "SESSION_PLACEHOLDER",
    "Invocation",
    "Preset",
    "PresetBrain",
    "PresetSettings",
    "codex_provider_config",
    "copy_home_files",
    "find_executable",
    "invocation",
    "preset_brain",
    "preset_settings",
]
