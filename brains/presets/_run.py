"""Settings from the config, command lines, and the preset as a brain."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from typing import TYPE_CHECKING, Mapping

from ...exceptions import BrainConfigError, ConfigError
from ..base import TurnReply, TurnRequest
from ..exec import ProcessResult, check_exit, run_process
from ._base import _AS_VERIFIER, Invocation, Preset, PresetSettings, PROMPT_FILE_PLACEHOLDER, _QUIET_ENV, ROLES, _SETTING_KEYS
from ._registry import PRESETS

if TYPE_CHECKING:
    from ...config import Config

# ---------------------------------------------------------------------------------------------
# settings and command lines


def preset_settings(name: str, config: "Config | None") -> PresetSettings:
    """`[presets.NAME]` validated; ConfigError with one line if it is malformed."""
    table = (config.presets.get(name) if config is not None else None) or {}
    where = f"config {config.path}: [presets.{name}]" if config is not None and config.path else f"[presets.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_SETTING_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_SETTING_KEYS)})")

    command = table.get("command")
    if command is not None:
        if isinstance(command, str):
            command = shlex.split(command)
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            raise ConfigError(f"{where}: command must be a non-empty list of strings, e.g. [\"{name}\"]")
    model = table.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"{where}: model must be a non-empty string")
    lists = {}
    for key in ("args", "verifier_args"):
        value = table.get(key, [])
        if isinstance(value, str):
            value = shlex.split(value)
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        lists[key] = tuple(value)
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"{where}: env must be a table of strings, e.g. env = {{ KEY = \"value\" }}")
    return PresetSettings(
        command=tuple(command) if command else None,
        model=model.strip() if isinstance(model, str) else None,
        args=lists["args"],
        verifier_args=lists["verifier_args"],
        env=dict(env),
        source=(config.path if config is not None else None) if command else None,
    )


def invocation(
    preset: Preset,
    role: str,
    *,
    model: str | None = None,
    resume_ref: str | None = None,
    settings: PresetSettings | None = None,
    prompt_file: str | None = None,
    workdir: str | None = None,
) -> Invocation:
    """The command line of one turn. A verifier (or reflector) turn never resumes, whatever `resume_ref` is."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    settings = settings or PresetSettings()
    if role in _AS_VERIFIER:
        role = "verifier"
    resume = None if role == "verifier" or not preset.resumes else (resume_ref or None)
    extra = settings.verifier_args if role == "verifier" else settings.args
    base = list(settings.command or preset.command)
    if preset.context_args is not None:
        extra = [*preset.context_args(role, workdir), *extra]
    argv = base + preset.build_args(role, model or settings.model, resume, extra, prompt_file)
    env = dict(_QUIET_ENV)
    env.update(preset.env)
    if role == "verifier":
        env.update(preset.verifier_env)
    env.update(settings.env)
    return Invocation(argv=argv, env=env, prompt_via=preset.prompt_via, resumed=resume is not None)


def find_executable(argv0: str, env: Mapping[str, str] | None = None) -> str | None:
    """Where argv[0] would be found (with the PATH of the environment the turn will get)."""
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    if os.sep in argv0:
        return argv0 if os.path.isfile(argv0) and os.access(argv0, os.X_OK) else None
    return shutil.which(argv0, path=path)


class PresetBrain:
    """An agent CLI as a brain. Stateless: the tool's session id travels in the request."""

    def __init__(self, preset: Preset, model: str | None = None, settings: PresetSettings | None = None) -> None:
        self.preset = preset
        self.settings = settings or PresetSettings()
        self.model = model or self.settings.model
        self.spec = preset.name + (f":{model}" if model else "")

    def invocation(self, request: TurnRequest, prompt_file: str | None = None) -> Invocation:
        return invocation(
            self.preset,
            request.role,
            model=self.model,
            resume_ref=request.resume_ref,
            settings=self.settings,
            prompt_file=prompt_file,
            workdir=request.workdir,
        )

    def run(self, request: TurnRequest) -> TurnReply:
        name = self.preset.name
        probe = self.invocation(request, prompt_file=PROMPT_FILE_PLACEHOLDER)
        if find_executable(probe.argv[0], request.env) is None:
            raise BrainConfigError(
                f"{probe.argv[0]} not found on PATH; install {self.preset.install} "
                f"or override [presets.{name}] command"
            )
        if self.preset.prompt_via == "file":
            # The prompt goes in a private temp file, never into the workspace.
            with tempfile.TemporaryDirectory(prefix=f"crewctl-{name}-") as scratch:
                path = os.path.join(scratch, "prompt.md")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(request.prompt)
                call = self.invocation(request, prompt_file=path)
                result = run_process(call.argv, request, stdin=b"", extra_env=call.env, watch=self.preset.watch)
        else:
            call = probe
            result = run_process(call.argv, request, stdin=request.prompt.encode("utf-8"), extra_env=call.env,
                                 watch=self.preset.watch)
        return self.reply(result, call, request)

    def reply(self, result: ProcessResult, call: Invocation, request: TurnRequest) -> TurnReply:
        if result.returncode != 0:
            said = self.preset.failure(result.stdout, result.stderr_tail)
            if said is not None:
                raise said
            check_exit(result, call.argv)
        passed_in = request.resume_ref if call.resumed else None
        return self.preset.parse(result.stdout, result.stderr_tail, passed_in)


def preset_brain(name: str, model: str | None, config: "Config | None") -> PresetBrain:
    """`claude` or `claude:MODEL` (and so on for every preset) as a brain."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    model = (model or "").strip() or None
    return PresetBrain(preset, model, preset_settings(name, config))

