"""Sandbox: the supervisor's sandbox settings, and the policy each role gets from them.

What each role sees (docs/contracts.md, "The sandbox"):

    every role     root read-only; $CREWCTL_HOME and the config file masked (the store,
                   the control socket, keys and API keys in the config are not there); its
                   own PID namespace; a private TMPDIR; `[sandbox] writable` read-write,
                   `[sandbox] masked` hidden
    lead, worker   the workspace read-write; the operator's HOME readable, and its agent
                   CLI's own state directories (sessions, credentials) writable
    verifier       its own copy of the round's snapshot read-write, a fresh HOME; the
                   operator's HOME and the lead's workspace masked
    check          like the verifier, on a copy of its own, with no brain credentials
    reflector      the workspace read-only

Executables on PATH that live under a masked directory (an agent CLI installed in
~/.local/bin) are shown read-only again, so a verifier can still run its CLI; other paths
under a masked one are added with `[sandbox] readable`.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from ..exceptions import ConfigError, SandboxUnavailable
from ._env import agent_env, seed_home, state_dirs
from ._ledger import Ledger
from ._policy import ROLES, SandboxPolicy
from ._probe import SandboxProbe, probe_bwrap

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["MODES", "Sandbox", "probe"]

MODES = ("on", "off")


@dataclass(frozen=True)
class Sandbox:
    mode: str  # "on" | "off"
    home: str  # $CREWCTL_HOME
    bwrap: str | None = None
    writable: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    readable: tuple[str, ...] = ()
    env_allow: tuple[str, ...] = ()
    config_path: str | None = None
    operator_home: str = ""
    probe: SandboxProbe | None = None
    # Whose processes the ledger holds: the supervisor's, or one `crewctl worker`'s. A worker
    # on the supervisor's machine shares its home but must only ever reap what it left itself.
    owner: str = "supervisor"

    @classmethod
    def from_config(cls, config: "Config", home: str, mode: str | None = None, *, owner: str = "supervisor") -> "Sandbox":
        """The daemon's sandbox. Raises SandboxUnavailable (on, but none can be made) or ConfigError."""
        section = dict(getattr(config, "sandbox", None) or {})
        where = f"config {config.path}: [sandbox]" if config.path else "[sandbox]"
        mode = mode or section.get("mode", "on")
        if mode not in MODES:
            raise ConfigError(f"{where} mode is \"on\" or \"off\", not {mode!r}")
        paths = {key: _paths(section.get(key, []), f"{where} {key}") for key in ("writable", "masked", "readable")}
        for path in paths["writable"]:
            if not os.path.isdir(path):
                raise ConfigError(f"{where} writable: {path} does not exist (or is not a directory); create it or remove it")
        env_allow = section.get("env_allow", [])
        if not isinstance(env_allow, list) or not all(isinstance(x, str) for x in env_allow):
            raise ConfigError(f"{where} env_allow is a list of variable names")
        verifier_allow = (getattr(config, "verifier", None) or {}).get("env_allow", [])
        found = None
        if mode == "on":
            found = probe_bwrap(section.get("bwrap"))
            if not found.ok:
                raise SandboxUnavailable(f"refusing to start agent turns: {found.why}")
        return cls(
            mode=mode,
            home=os.path.realpath(home),
            bwrap=found.bwrap if found else None,
            writable=paths["writable"],
            masked=paths["masked"],
            readable=paths["readable"],
            env_allow=tuple(env_allow) + tuple(verifier_allow),
            config_path=config.path,
            operator_home=os.path.realpath(os.path.expanduser("~")),
            probe=found,
            owner=owner,
        )

    @classmethod
    def off(cls, home: str) -> "Sandbox":
        return cls(mode="off", home=os.path.realpath(home), operator_home=os.path.realpath(os.path.expanduser("~")))

    @property
    def enabled(self) -> bool:
        return self.mode == "on" and self.bwrap is not None

    @property
    def scratch_root(self) -> str:
        """Where a turn's private scratch (TMPDIR, usage file) is made: inside the masked home."""
        return os.path.join(self.home, "run", "turns")

    @property
    def ledger(self) -> Ledger:
        return Ledger(os.path.join(self.home, "run", "procs", self.owner))

    def describe(self) -> str:
        return self.probe.how if self.enabled and self.probe else "off (--sandbox off / [sandbox] mode = \"off\")"

    def policy(
        self,
        role: str,
        workdir: str,
        *,
        tmpdir: str | None = None,
        kind: str | None = None,
        lead_workspace: str | None = None,
        own_home: str | None = None,
        extra_writable: Iterable[str] = (),
    ) -> SandboxPolicy | None:
        """The policy of one process of `role` (None when the sandbox is off)."""
        if role not in ROLES:
            raise ValueError(f"unknown sandbox role {role!r}")
        if not self.enabled:
            return None
        assert self.bwrap is not None
        masked = [self.home, *self.masked]
        if self.config_path:
            masked.append(self.config_path)
        writable = [*self.writable, *extra_writable]
        readable = list(self.readable)
        if role in ("lead", "worker"):
            writable += self._cli_state(kind)
        if role in ("verifier", "check"):
            masked += [p for p in (self.operator_home, lead_workspace) if p]
            if own_home:
                writable.append(own_home)
        readable += _toolchains(tuple(masked))
        return SandboxPolicy(
            bwrap=self.bwrap,
            role=role,
            workdir=workdir,
            tmpdir=tmpdir,
            writable=tuple(writable),
            readable=tuple(readable),
            masked=tuple(masked),
            ledger=self.ledger.directory,
            scratch_root=self.scratch_root,
            workdir_readonly=role == "reflector",
        )

    def for_turn(self, role: str, workdir: str, *, kind: str | None, source: Mapping[str, str] | None = None) -> tuple[dict[str, str], SandboxPolicy | None]:
        """The environment and policy of a lead, worker or reflector turn in `workdir`.

        They keep the operator's HOME (their agent CLI's login and sessions live there);
        TMPDIR is the turn's own when sandboxed (run_process makes it).
        """
        source = os.environ if source is None else source
        env = agent_env(
            source,
            kind=kind,
            home=source.get("HOME") or self.operator_home,
            tmp=source.get("TMPDIR") or tempfile.gettempdir(),
            extra_allow=self.env_allow,
        )
        return env, self.policy(role, workdir, kind=kind)

    def for_verifier(
        self,
        workdir: str,
        *,
        kind: str | None,
        own_home: str,
        tmpdir: str,
        lead_workspace: str | None = None,
        inherit_home: bool = False,
        source: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, str], SandboxPolicy | None]:
        """The environment and policy of a verifier turn in its snapshot `workdir`.

        Its HOME is `own_home`, fresh, seeded with only what its CLI needs to log in and
        reach the operator's provider (seed_home), unless the operator chose
        `[verifier] home = "inherit"`. One definition for the gate's verifier and for
        `crewctl brains check`, so a check proves what a gate will get.
        """
        source = os.environ if source is None else source
        if not inherit_home:
            seed_home(kind, source.get("HOME"), own_home)
        home = source.get("HOME", own_home) if inherit_home else own_home
        env = agent_env(source, kind=kind, home=home, tmp=tmpdir, extra_allow=self.env_allow)
        if not inherit_home:
            for name in state_dirs(kind)[1]:  # LLM_USER_PATH & co. point at the operator's own state
                env.pop(name, None)
        policy = self.policy("verifier", workdir, tmpdir=tmpdir, kind=kind, lead_workspace=lead_workspace, own_home=home)
        return env, policy

    def _cli_state(self, kind: str | None) -> list[str]:
        dirs, moved_by = state_dirs(kind)  # the tool's preset knows where it keeps its state
        candidates = [os.path.join(self.operator_home, rel) for rel in dirs]
        for path in candidates if os.path.isabs(self.operator_home) else ():
            # Made here when missing, as the tool would on its first run: inside the sandbox
            # the rest of HOME is read-only, and a tool that cannot make its state folder
            # fails (opencode 1.18: "EROFS: read-only file system, mkdir ~/.local").
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError:
                pass  # not ours to make (a file in the way, no permission): the tool says why
        candidates += [os.environ[name] for name in moved_by if os.environ.get(name)]
        return [path for path in candidates if os.path.isabs(path) and os.path.exists(path)]


def probe(config: "Config | None" = None, mode: str | None = None) -> SandboxProbe:
    """Can agents be sandboxed here, as this config asks? (for `crewctl doctor`)"""
    section = dict(getattr(config, "sandbox", None) or {}) if config is not None else {}
    mode = mode or section.get("mode", "on")
    if mode == "off":
        return SandboxProbe(True, "off ([sandbox] mode = \"off\"): agents run unsandboxed", None)
    return probe_bwrap(section.get("bwrap"))


def _paths(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where} is a list of paths")
    out = []
    for p in value:
        path = os.path.expanduser(p)
        if not os.path.isabs(path):
            raise ConfigError(f"{where}: {p!r} is not an absolute path")
        out.append(os.path.realpath(path))
    return tuple(out)


_TOOLCHAIN_SCAN = 4000  # entries of one PATH directory looked at for symlinked installs


@functools.lru_cache(maxsize=64)
def _toolchains(masked: tuple[str, ...]) -> tuple[str, ...]:
    """What must stay readable under masked paths for programs on PATH to run at all.

    A masked HOME would otherwise take the interpreter and the tools with it: pyenv's
    pythons, a venv, nvm's node, pipx's and npm's symlinked installs. Shown read-only: the
    PATH directories under a masked path, the install prefix of each (the parent of a
    `bin` directory, unless that is a masked root itself or a shared `~/.local`), the
    install of each symlink in them, and this interpreter's own prefixes.
    """
    found: list[str] = []

    def add(path: str) -> None:
        if path not in found and _under_any(path, masked) and not any(path == os.path.realpath(m) for m in masked):
            found.append(path)

    def add_install(target: str) -> None:
        parent = os.path.dirname(target)
        prefix = os.path.dirname(parent) if os.path.basename(parent) == "bin" else parent
        if os.path.basename(prefix) in (".local", "") or any(prefix == os.path.realpath(m) for m in masked):
            prefix = parent
        add(prefix)

    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if not _under_any(real, masked):
            continue
        add(real)
        add_install(os.path.join(real, "x"))
        try:
            names = sorted(os.listdir(real))[:_TOOLCHAIN_SCAN]
        except OSError:
            continue
        for name in names:
            full = os.path.join(real, name)
            if os.path.islink(full):
                add_install(os.path.realpath(full))
    for prefix in {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}:
        add(os.path.realpath(prefix))
    return tuple(found)


def _under_any(path: str, roots: Iterable[str]) -> bool:
    for root in roots:
        root = os.path.realpath(root)
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False
