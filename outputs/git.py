"""git, run by crewctl on a repository an agent could write to.

A lead works in the repository with full write access, `.git/config` and `.git/hooks`
included, so anything crewctl runs there itself (outside every sandbox) must not execute
what the repository's config names: hooks, fsmonitor, filters, textconv and external diff
drivers, gpg, the `ext::` transport. Building the envelope also ignores the system and
global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null) and the caller's GIT_*
environment (a GIT_DIR or GIT_INDEX_FILE of the shell that started the supervisor), and
uses plumbing only, which reads no porcelain settings.
"""

from __future__ import annotations

import os
import subprocess
from typing import Mapping, Sequence

__all__ = ["GitError", "SAFE_CONFIG", "git", "git_env", "porcelain_paths"]

# Overrides of what a repository's own config could make git run.
SAFE_CONFIG = (
    "-c", "core.fsmonitor=false",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.quotepath=off",
    "-c", "protocol.ext.allow=never",
    "-c", "commit.gpgSign=false",
)
_TIMEOUT = 300.0


class GitError(Exception):
    """A git command failed; the message is one line (its stderr, capped)."""


def git_env(*, isolated: bool = True, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment git runs with. `isolated`: no system or global config either (the
    envelope); otherwise the operator's own config stays (a push needs its credentials)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    if isolated:
        env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    if extra:
        env.update(extra)
    return env


# The operator's own transport settings, for a push.
_KEEP = frozenset({"GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"})


def git(
    args: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = _TIMEOUT,
) -> subprocess.CompletedProcess:
    """Run `git <SAFE_CONFIG> args` in `cwd`; raise GitError when it fails (and `check`)."""
    try:
        done = subprocess.run(
            ["git", *SAFE_CONFIG, *args],
            cwd=cwd,
            env=dict(env) if env is not None else git_env(),
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} could not run: {exc}") from None
    if check and done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[:300] or f"exit {done.returncode}"
        raise GitError(f"git {args[0]} failed: {said}")
    return done


def porcelain_paths(text: str, cap: int | None = None) -> list[str]:
    """The paths `git status --porcelain=v1 -z` lists, in its order (at most `cap`): for a
    rename or copy the destination, whose source follows it as an entry of its own."""
    paths: list[str] = []
    entries = text.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        paths.append(path)
        if "R" in code or "C" in code:
            i += 1
        if cap is not None and len(paths) >= cap:
            break
    return paths
