"""`crewctl brains` as a user runs it: the installed binary, a temporary config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CREWCTL = Path(sys.executable).with_name("crewctl")

CONFIG = """\
[roster]
lead = "claude"
verifier = "codex:gpt-5"

[brains.local]
spec = "openai:qwen2.5-coder@http://127.0.0.1:11434/v1"

[brains.scribe]
spec = "exec:python3 agent.py"

[presets.claude]
command = ["my-claude", "-p", "--output-format", "json"]
model = "sonnet"
args = ["--max-turns", "40"]
"""


@pytest.fixture
def env(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "my-claude"  # only needs to exist and be executable for `brains list`
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    environ.update(CREWCTL_CONFIG=str(config), PATH=f"{bin_dir}{os.pathsep}{os.defpath}", NO_COLOR="1")
    return environ


def crewctl(env, *args):
    return subprocess.run([str(CREWCTL), *args], env=env, capture_output=True, text=True, timeout=60)


def test_brains_list_json_shows_the_configured_brain_the_roster_and_availability(env):
    done = crewctl(env, "brains", "list", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["roster"] == {"lead": "claude", "verifier": "codex:gpt-5"}
    brains = {b["name"]: b for b in data["brains"]}
    assert brains["local"]["spec"] == "openai:qwen2.5-coder@http://127.0.0.1:11434/v1"
    assert brains["local"]["available"] is True  # a loopback server needs no key
    assert brains["scribe"]["kind"] == "exec"
    kinds = {k["name"]: k for k in data["kinds"]}
    assert set(kinds) >= {"claude", "codex", "gemini", "opencode", "aider", "llm", "openai", "anthropic", "exec", "scripted"}
    assert kinds["claude"]["available"] is True  # the config's command is on PATH
    assert kinds["claude"]["command"][0] == "my-claude"
    assert kinds["codex"]["available"] is False and "not on PATH" in kinds["codex"]["detail"]
    assert kinds["anthropic"]["available"] is False  # no key in the environment or the config


def test_brains_list_reads_an_api_key_from_the_environment(env):
    env["ANTHROPIC_API_KEY"] = "sk-test"
    kinds = {k["name"]: k for k in json.loads(crewctl(env, "brains", "list", "--json").stdout)["kinds"]}
    assert kinds["anthropic"]["available"] is True and "$ANTHROPIC_API_KEY" in kinds["anthropic"]["detail"]


def test_brains_list_prints_a_readable_table(env):
    done = crewctl(env, "brains", "list")
    assert done.returncode == 0
    assert "roster:" in done.stdout and "local" in done.stdout and "codex" in done.stdout


def test_brains_show_claude_prints_the_command_line_and_where_it_came_from(env):
    done = crewctl(env, "brains", "show", "claude")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "my-claude -p --output-format json --permission-mode acceptEdits --model sonnet --max-turns 40" in out
    assert "--resume '<session>'" in out
    assert "[presets.claude] command" in out and "config.toml" in out
    assert "--tools Read,Grep,Glob" in out and "never resumes" in out


def test_brains_show_a_builtin_preset_for_one_role_as_json(env):
    done = crewctl(env, "brains", "show", "codex:gpt-5", "--role", "verifier", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["base_command_source"] == "built-in"
    assert list(data["roles"]) == ["verifier"]
    assert data["roles"]["verifier"]["first_turn"] == [
        "codex", "exec", "--json", "--sandbox", "read-only", "--skip-git-repo-check", "--ephemeral",
        "-c", 'web_search="disabled"', "-m", "gpt-5", "-",
    ]
    assert data["roles"]["verifier"]["next_turns"] is None


def test_brains_show_unknown_name_exits_1_with_one_line_and_no_traceback(env):
    done = crewctl(env, "brains", "show", "nope")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("crewctl: no preset or configured brain named 'nope'")
    assert "Traceback" not in done.stderr


def test_brains_help_teaches_with_examples(env):
    done = crewctl(env, "brains", "show", "--help")
    assert done.returncode == 0
    assert "crewctl brains show claude" in done.stdout
