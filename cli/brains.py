"""`crewctl brains`: what each role can run on this machine, and the exact command lines."""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

import click

from ..exceptions import ConfigError, NotFound

ROLES = ("lead", "worker", "verifier", "reflector")
# Kinds that are not presets: how they are spelled and what they need.
_KINDS = {
    "exec": "exec:COMMAND — any command; prompt on stdin, reply on stdout",
    "scripted": "scripted:FILE — deterministic replies per role (tests, the demo)",
    "openai": "openai:MODEL[@BASE_URL] — any OpenAI-compatible Chat Completions server",
    "anthropic": "anthropic:MODEL — the Anthropic Messages API",
}
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@click.group("brains")
def brains_group() -> None:
    """Brains: what each role runs (presets for agent CLIs, configured brains).

    \b
    Examples:
      crewctl brains list                 presets, kinds and configured brains, and which work here
      crewctl brains list --json
      crewctl brains show claude          the exact command line claude runs for each role
      crewctl brains show codex:gpt-5 --role verifier
      crewctl brains show mybrain         a brain named in the config ([brains.mybrain])

    A preset's command line can be changed in the config file (CREWCTL_CONFIG, else
    ~/.config/crewctl/config.toml):

    \b
      [presets.claude]
      command = ["npx", "@anthropic-ai/claude-code", "-p", "--output-format", "json"]
      model = "sonnet"
      args = ["--max-turns", "40"]          # lead and worker turns
      verifier_args = []                    # verifier turns, after its read-only switches
      env = { CLAUDE_CODE_MAX_OUTPUT_TOKENS = "32000" }
    """


@brains_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (nothing else).")
def list_command(as_json: bool) -> None:
    """Show configured brains, the roster, and every preset and kind with whether it works here.

    \b
    A preset is available when its command is found on PATH; openai and anthropic when an
    API key is set (OPENAI_API_KEY / ANTHROPIC_API_KEY, or api_key in [openai] / [anthropic]).

    \b
    Examples:
      crewctl brains list
      crewctl brains list --json | jq '.kinds[] | select(.available) | .name'
    """
    from ..config import load_config

    config = load_config()
    report = _inventory(config)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"config: {report['config'] or '(none; ' + _config_hint() + ')'}")
    click.echo("")
    click.echo("roster:")
    if report["roster"]:
        for role in ROLES:
            if role in report["roster"]:
                click.echo(f"  {role:<9} {report['roster'][role]}")
    else:
        click.echo("  (empty: goal new needs --lead/--worker/--verifier, or a [roster] table)")
    click.echo("")
    click.echo("configured brains:")
    if report["brains"]:
        for b in report["brains"]:
            mark = "yes" if b["available"] else "no "
            click.echo(f"  {b['name']:<12} {mark}  {b['spec']}" + (f"   ({b['detail']})" if b["detail"] else ""))
    else:
        click.echo("  (none; add [brains.NAME] spec = \"...\" to the config)")
    click.echo("")
    click.echo("presets and kinds:            available")
    for k in report["kinds"]:
        mark = "yes" if k["available"] else "no "
        click.echo(f"  {k['name']:<10} {k['kind']:<8} {mark}  {k['detail']}")
    click.echo("")
    click.echo("crewctl brains show NAME prints a preset's exact command line for each role.")


@brains_group.command("show")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), help="Show only this role's command line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (nothing else).")
def show_command(name: str, role: str | None, as_json: bool) -> None:
    """Print the exact command line NAME runs for each role, and where it came from.

    NAME is a preset (claude, codex, gemini, opencode, aider, llm), optionally with a model
    (claude:sonnet), or a brain named in the config. <session> stands for the tool's own
    session id from the previous turn; <prompt-file> for the temp file holding the prompt.

    \b
    Examples:
      crewctl brains show claude
      crewctl brains show gemini:gemini-2.5-pro --role verifier
      crewctl brains show opencode --json
    """
    from ..config import load_config

    config = load_config()
    data = _describe(name, config, roles=(role,) if role else ROLES)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in _render(data):
        click.echo(line)


# ---------------------------------------------------------------------------------------------


def _config_hint() -> str:
    return "set CREWCTL_CONFIG or create ~/.config/crewctl/config.toml"


def _key_source(provider: str, config) -> str | None:
    env = _KEY_ENV[provider]
    if os.environ.get(env):
        return f"${env}"
    value = config.provider(provider).get("api_key")
    if isinstance(value, str) and value.strip():
        return f"[{provider}] api_key in the config"
    return None


def _preset_status(name: str, config) -> dict[str, Any]:
    from ..brains.presets import PRESETS, find_executable, preset_settings

    preset = PRESETS[name]
    try:
        settings = preset_settings(name, config)
    except ConfigError as exc:
        return {"available": False, "detail": f"config error: {exc}", "command": list(preset.command)}
    command = list(settings.command or preset.command)
    found = find_executable(command[0])
    if found:
        detail = f"{preset.title}: {found}"
    else:
        detail = f"{preset.title}: {command[0]} not on PATH; install {preset.install}"
    return {"available": found is not None, "detail": detail, "command": command}


def _kind_status(kind: str, rest: str, config) -> tuple[bool, str]:
    """Whether a spec of this kind can run here, and why (one phrase)."""
    from ..brains.presets import PRESETS

    if kind in PRESETS:
        status = _preset_status(kind, config)
        return status["available"], status["detail"]
    if kind in _KEY_ENV:
        source = _key_source(kind, config)
        if source:
            return True, f"API key from {source}"
        if kind == "openai" and re.search(r"@https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", rest or ""):
            return True, "local server: no API key needed"
        if kind == "openai":
            return False, "no OPENAI_API_KEY or [openai] api_key (a local server needs none)"
        return False, "no ANTHROPIC_API_KEY or [anthropic] api_key"
    if kind == "scripted":
        if rest and not os.path.isfile(os.path.expanduser(rest)):
            return False, f"script file {rest} not found"
        return True, "built in"
    if kind == "exec":
        words = _split(rest)
        if words:
            from ..brains.presets import find_executable

            if find_executable(words[0]) is None and "=" not in words[0]:
                return False, f"{words[0]} not on PATH (run through /bin/sh)"
        return True, "runs through /bin/sh"
    return False, "unknown kind"


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _inventory(config) -> dict[str, Any]:
    from ..brains.presets import PRESETS

    kinds = []
    for name in PRESETS:
        status = _preset_status(name, config)
        kinds.append({"name": name, "kind": "preset", **status})
    for kind in ("openai", "anthropic"):
        ok, detail = _kind_status(kind, "", config)
        kinds.append({"name": kind, "kind": "api", "available": ok, "detail": detail})
    for kind in ("exec", "scripted"):
        kinds.append({"name": kind, "kind": "builtin", "available": True, "detail": _KINDS[kind]})

    brains = []
    for name, entry in sorted(config.brains.items()):
        spec = entry["spec"]
        kind, _, rest = spec.partition(":")
        if kind not in PRESETS and kind not in _KINDS and spec in config.brains:
            kind, rest = "brain", spec
        ok, detail = _kind_status(kind, rest, config) if kind != "brain" else (True, f"another named brain: {spec}")
        brains.append({"name": name, "spec": spec, "kind": kind, "available": ok, "detail": detail})
    return {"config": config.path, "roster": dict(config.roster), "brains": brains, "kinds": kinds}


def _describe(name: str, config, roles: tuple[str, ...]) -> dict[str, Any]:
    from ..brains.presets import PRESETS

    requested = name.strip()
    via = None
    spec = requested
    if spec in config.brains:
        via = spec
        spec = config.brains[spec]["spec"]
        if spec in config.brains:  # one level of naming is what resolve() follows, too
            spec = config.brains[spec]["spec"]
    kind, sep, rest = spec.partition(":")
    if kind in PRESETS:
        data = _describe_preset(kind, rest.strip() or None, config, roles)
    elif sep and kind in _KINDS:
        data = _describe_kind(kind, rest, config, roles)
    else:
        known = ", ".join(list(PRESETS) + sorted(config.brains))
        raise NotFound(f"no preset or configured brain named {requested!r} (known: {known}); see crewctl brains list")
    data["name"] = requested
    data["spec"] = spec
    data["configured_as"] = via
    return data


def _describe_preset(name: str, model: str | None, config, roles: tuple[str, ...]) -> dict[str, Any]:
    from ..brains.presets import (
        PRESETS,
        PROMPT_FILE_PLACEHOLDER,
        SESSION_PLACEHOLDER,
        invocation,
        preset_settings,
    )

    preset = PRESETS[name]
    settings = preset_settings(name, config)
    status = _preset_status(name, config)
    effective_model = model or settings.model
    lines = {}
    for role in roles:
        first = invocation(preset, role, model=model, settings=settings, prompt_file=PROMPT_FILE_PLACEHOLDER)
        entry: dict[str, Any] = {"first_turn": first.argv, "env": first.env}
        if role != "verifier" and preset.resumes:
            later = invocation(
                preset, role, model=model, resume_ref=SESSION_PLACEHOLDER, settings=settings,
                prompt_file=PROMPT_FILE_PLACEHOLDER,
            )
            entry["next_turns"] = later.argv
        elif role == "verifier":
            entry["next_turns"] = None
            entry["isolation"] = preset.verifier_isolation
        else:
            entry["next_turns"] = first.argv  # the tool keeps no session: every turn is fresh
        lines[role] = entry
    return {
        "kind": "preset",
        "title": preset.title,
        "available": status["available"],
        "found": status["detail"],
        "base_command": list(settings.command or preset.command),
        "base_command_source": (
            f"config {settings.source} [presets.{name}] command" if settings.command else "built-in"
        ),
        "model": effective_model,
        "model_source": ("spec" if model else f"[presets.{name}] model" if settings.model else "the tool's default"),
        "prompt": "on stdin" if preset.prompt_via == "stdin" else "in a temp file (<prompt-file>); stdin empty",
        "resumes": preset.resumes,
        "parses": preset.parses,
        "docs": preset.docs,
        "roles": lines,
    }


def _describe_kind(kind: str, rest: str, config, roles: tuple[str, ...]) -> dict[str, Any]:
    ok, detail = _kind_status(kind, rest, config)
    data: dict[str, Any] = {"kind": kind, "available": ok, "found": detail, "summary": _KINDS[kind]}
    if kind == "exec":
        data["command"] = rest
        data["prompt"] = "on stdin"
        data["roles"] = {
            role: {"first_turn": ["/bin/sh", "-c", rest], "next_turns": ["/bin/sh", "-c", rest]} for role in roles
        }
    return data


def _render(data: dict[str, Any]) -> list[str]:
    out = []
    title = data.get("title") or data["kind"]
    head = f"{data['name']}"
    if data.get("configured_as"):
        head += f"  (configured brain: spec {data['spec']})"
    out.append(f"{head} — {title}")
    out.append(f"  available: {'yes' if data['available'] else 'no'} ({data['found']})")
    if data["kind"] != "preset":
        out.append(f"  {data['summary']}")
        if data["kind"] == "exec":
            out.append(f"  command:   {data['command']}   (through /bin/sh; prompt on stdin)")
        else:
            out.append("  (no command line: crewctl calls it in-process)")
        return out
    out.append(f"  base:      {shlex.join(data['base_command'])}   ({data['base_command_source']})")
    out.append(f"  model:     {data['model'] or '-'}   ({data['model_source']})")
    out.append(f"  prompt:    {data['prompt']}")
    out.append(f"  parses:    {data['parses']}")
    out.append(f"  docs:      {data['docs']}")
    for role, entry in data["roles"].items():
        out.append("")
        out.append(f"  {role}:")
        out.append(f"    first turn:  {shlex.join(entry['first_turn'])}")
        if role == "verifier":
            out.append("    next turns:  never resumes: every verifier turn is a new session")
            out.append(f"    read-only:   {entry['isolation']}")
        elif entry["next_turns"] == entry["first_turn"]:
            out.append("    next turns:  same line (the tool keeps no session id; every turn starts fresh)")
        else:
            out.append(f"    next turns:  {shlex.join(entry['next_turns'])}")
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in entry["env"].items())
        out.append(f"    env adds:    {env}")
    return out


# ---------------------------------------------------------------------------------------------
# brains check: one tiny real turn per role

CHECK_ROLES = ("lead", "verifier")
CHECK_PROMPT = "This is a connection check from crewctl. Reply with one short line that says OK."
_CHECK_REPLY_SHOWN = 80


@brains_group.command("check")
@click.argument("name")
@click.option("--role", "roles", type=click.Choice(ROLES), multiple=True,
              help="Check only this role (repeatable). Default: lead and verifier.")
@click.option("--sandbox", "sandbox_mode", type=click.Choice(["on", "off"]), default=None,
              help="Run the turns sandboxed as `crewctl run` would (default: the config's [sandbox] mode, else on).")
@click.option("--timeout", type=click.FloatRange(min=1, max=3600), default=180.0, show_default=True,
              help="Seconds each turn may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (nothing else).")
def check_command(name: str, roles: tuple[str, ...], sandbox_mode: str | None, timeout: float, as_json: bool) -> None:
    """Run one tiny real turn of NAME per role and say what works, before a goal finds out.

    Each turn runs as a goal's would: the lead's in a scratch workspace with your HOME, the
    verifier's in a scratch snapshot with a fresh HOME holding only what its tool needs to
    log in and reach your provider, both inside crewctl's sandbox. The model is asked for a
    one-line reply; what counts is that one came back. Exit 0 if every role worked, 1 if
    any failed, 2 if NAME is not a brain at all.

    \b
    Examples:
      crewctl brains check claude
      crewctl brains check local --role verifier      a brain named in the config
      crewctl brains check llm:gpt-4o-mini --json
    """
    import tempfile
    import time
    import uuid

    from .. import brains as brain_registry
    from ..brains.base import TurnRequest
    from ..config import load_config
    from ..exceptions import BrainError, CrewError, UsageError
    from ..goal.markers import collapse
    from ..sandbox import Sandbox, brain_kind
    from ._common import resolve_home

    config = load_config()
    try:
        brain = brain_registry.resolve(name, config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    sandbox = Sandbox.from_config(config, resolve_home(), sandbox_mode)
    kind = brain_kind(name, config)
    results = []
    for role in roles or CHECK_ROLES:
        with tempfile.TemporaryDirectory(prefix="crewctl-check-") as scratch:
            work = os.path.join(scratch, "work")
            home = os.path.join(scratch, "home")
            tmp = os.path.join(scratch, "tmp")
            for path in (work, home, tmp):
                os.makedirs(path, mode=0o700)
            if role == "verifier":
                env, policy = sandbox.for_verifier(work, kind=kind, own_home=home, tmpdir=tmp)
            else:
                env, policy = sandbox.for_turn(role, work, kind=kind)
            request = TurnRequest(role=role, goal_id="brains-check", session_id=str(uuid.uuid4()), turn=1,
                                  prompt=CHECK_PROMPT, workdir=work, env=env, timeout=timeout, sandbox=policy)
            started = time.monotonic()
            try:
                reply = brain.run(request)
            except (BrainError, CrewError) as exc:
                results.append({"role": role, "ok": False, "seconds": round(time.monotonic() - started, 2),
                                "kind": getattr(exc, "turn_kind", None) or getattr(exc, "code", "error"),
                                "error": collapse(str(exc), 500)})
                continue
            said = collapse(reply.text, _CHECK_REPLY_SHOWN)
            results.append({"role": role, "ok": bool(said), "seconds": round(time.monotonic() - started, 2),
                            "reply": said, "input_tokens": reply.usage.input_tokens,
                            "output_tokens": reply.usage.output_tokens, "resumable": reply.resume_ref is not None,
                            **({} if said else {"error": "the turn ended with an empty reply"})})
    ok = all(r["ok"] for r in results)
    if as_json:
        click.echo(json.dumps({"brain": name, "sandboxed": sandbox.enabled, "ok": ok, "roles": results}, indent=2))
    else:
        where = "sandboxed" if sandbox.enabled else "unsandboxed"
        for r in results:
            if r["ok"]:
                usage = f"{r['input_tokens']} in / {r['output_tokens']} out tokens"
                if not r["input_tokens"] and not r["output_tokens"]:
                    usage = "the tool reported no token usage: a token budget cannot count this brain"
                click.echo(f"{r['role']}: works ({where}, {r['seconds']:.1f}s, {usage}): {r['reply']}")
            else:
                click.echo(f"{r['role']}: FAILED ({where}, {r['seconds']:.1f}s): {r['error']}")
    if not ok:
        raise SystemExit(1)
