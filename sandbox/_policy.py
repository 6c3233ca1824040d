"""SandboxPolicy: what one sandboxed process may see, and the bwrap command line for it.

The layout inside (bubblewrap):

    /                 the host's root, read-only (so /tmp and an agent script kept there too)
    /proc             a new procfs for a new PID namespace: the supervisor's processes and
                      their /proc/<pid>/environ and fds are not there
    /dev              a minimal /dev
    masked paths      an empty tmpfs over each (a file: /dev/null over it)
    binds             the working directory, the private TMPDIR, the turn's scratch and the
                      configured writable paths read-write; `readable` paths read-only

Mounts are applied parents first, so a bind inside a masked directory (a round's snapshot
inside $CREWCTL_HOME) shows through its mask, and a mask inside a writable directory (a
$CREWCTL_HOME inside the workspace) still hides it.

`--die-with-parent` ties the sandbox to the thread that started it and `--unshare-pid`
makes bwrap PID 1 of the namespace: when the turn's process ends, is killed, or its
supervisor dies, the kernel kills everything it started, setsid or not.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

__all__ = ["ROLES", "SandboxPolicy"]

# Who runs sandboxed. "check" is crewctl's own check command, in the verifier's view.
ROLES = ("lead", "worker", "verifier", "check", "reflector")

_RW, _RO, _MASK = "rw", "ro", "mask"


@dataclass(frozen=True)
class SandboxPolicy:
    bwrap: str
    role: str
    workdir: str  # read-write, and the working directory
    tmpdir: str | None  # read-write, the process's TMPDIR (run_process makes one per turn when None)
    writable: tuple[str, ...] = ()
    readable: tuple[str, ...] = ()  # shown read-only even inside a masked path
    masked: tuple[str, ...] = ()
    ledger: str | None = None  # where the started process is put on record (see Ledger)
    scratch_root: str | None = None  # where a turn's scratch is made: inside a masked path
    workdir_readonly: bool = False  # the reflector reads the workspace, never writes it
    extra: tuple[str, ...] = field(default=(), compare=False)  # more bwrap args, for tests of the sandbox itself

    def with_writable(self, *paths: str) -> "SandboxPolicy":
        return replace(self, writable=self.writable + tuple(p for p in paths if p))

    def wrap(self, command: str | Sequence[str]) -> list[str]:
        """The bwrap command line that runs `command` (a shell string or an argv) inside."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        return [self.bwrap, *self.bwrap_args(), "--", *argv]

    def bwrap_args(self) -> list[str]:
        args = [
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",  # no TIOCSTI into the operator's terminal
        ]
        masks = []
        for kind, path in self._mounts():
            if kind == _MASK:
                if os.path.isdir(path):
                    args += ["--tmpfs", path]
                    masks.append(path)
                elif os.path.lexists(path):
                    args += ["--ro-bind", "/dev/null", path]
            elif kind == _RW:
                args += ["--bind", path, path]
            else:
                args += ["--ro-bind", path, path]
        # A mask is read-only once everything inside it is mounted: an agent cannot plant a
        # file where a program would look for crewctl's own (crew.db, daemon.json).
        for path in reversed(masks):
            args += ["--remount-ro", path]
        args += ["--chdir", self.workdir, *self.extra]
        return args

    def _mounts(self) -> list[tuple[str, str]]:
        """(kind, path) in mount order: parents first; at the same path the later kind wins."""
        wanted: dict[str, str] = {}
        for path in self.masked:
            wanted[_norm(path)] = _MASK
        for path in self.readable:
            if os.path.exists(path):
                wanted[_norm(path)] = _RO
        for path in (*self.writable, self.tmpdir):
            if path:
                wanted[_norm(path)] = _RW
        wanted[_norm(self.workdir)] = _RO if self.workdir_readonly else _RW
        order = sorted(wanted, key=lambda p: (p.count(os.sep), p))
        return [(wanted[p], p) for p in order if wanted[p] == _MASK or os.path.exists(p)]

    # -- the wire (the verifier host gets its policy in its job) ---------------------------

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SandboxPolicy":
        def paths(key: str) -> tuple[str, ...]:
            value = data.get(key) or ()
            return tuple(str(p) for p in value)

        return cls(
            bwrap=str(data["bwrap"]),
            role=str(data["role"]),
            workdir=str(data["workdir"]),
            tmpdir=data.get("tmpdir"),
            writable=paths("writable"),
            readable=paths("readable"),
            masked=paths("masked"),
            ledger=data.get("ledger"),
            scratch_root=data.get("scratch_root"),
            workdir_readonly=bool(data.get("workdir_readonly")),
            extra=paths("extra"),
        )


def _norm(path: str) -> str:
    # Resolved, so a symlinked path is bound where it really is; bwrap itself refuses to
    # mount over a symlink.
    return os.path.realpath(path)
