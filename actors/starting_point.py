"""Where a goal's workspace stood when the goal was created, and what changed since.

Recorded once, by the daemon, when a goal is created (it is I/O, so not in goal/): for a
git work tree the commit at HEAD and the files that were already modified or untracked
then; for any other directory a manifest of (size, mtime) per file, kept in the goal's
directory under $CREWCTL_HOME. `goal report` compares the workspace now with it.
Nothing here writes to the workspace, and git runs with the repository's hooks and
fsmonitor off, as the snapshot does.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from ..outputs.git import porcelain_paths
from .runtime import goal_dir

__all__ = ["MAX_MANIFEST_FILES", "changed_files", "record_start"]

MAX_MANIFEST_FILES = 20000
MAX_LISTED = 500  # changed files named in a report
_GIT = ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.quotepath=off"]
_MANIFEST = "start-manifest.json"


def _git(workspace: str, *args: str) -> str | None:
    try:
        done = subprocess.run([*_GIT, "-C", workspace, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _is_git(workspace: str) -> bool:
    top = _git(workspace, "rev-parse", "--show-toplevel")
    return top is not None and os.path.realpath(top.strip()) == os.path.realpath(workspace)


def _dirty(workspace: str) -> list[str] | None:
    out = _git(workspace, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if out is None:
        return None
    return sorted(porcelain_paths(out))


def record_start(home: str, goal_id: str, workspace: str, at: str) -> dict[str, Any] | None:
    """The starting point to keep in the goal (small); a manifest may go to the goal's dir."""
    if _is_git(workspace):
        head = _git(workspace, "rev-parse", "--verify", "-q", "HEAD")
        dirty = _dirty(workspace) or []
        return {"kind": "git", "commit": head.strip() if head else None, "dirty": dirty[:MAX_LISTED], "at": at}
    manifest = _manifest(workspace, exclude=home)
    if manifest is None:
        return {"kind": "files", "manifest": None, "why": f"more than {MAX_MANIFEST_FILES} files", "at": at}
    directory = goal_dir(home, goal_id)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(os.path.join(directory, _MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
    except OSError as exc:
        return {"kind": "files", "manifest": None, "why": f"cannot write the manifest: {exc.strerror}", "at": at}
    return {"kind": "files", "manifest": _MANIFEST, "files": len(manifest), "at": at}


def _manifest(workspace: str, exclude: str | None = None) -> dict[str, list[int]] | None:
    out: dict[str, list[int]] = {}
    skip = os.path.realpath(exclude) if exclude else None
    for root, dirs, names in os.walk(workspace):
        dirs[:] = [d for d in dirs if d != ".git" and os.path.realpath(os.path.join(root, d)) != skip]
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            out[os.path.relpath(path, workspace)] = [st.st_size, st.st_mtime_ns]
            if len(out) > MAX_MANIFEST_FILES:
                return None
    return out


def changed_files(home: str, goal_id: str, workspace: str, start: dict[str, Any] | None) -> dict[str, Any]:
    """{"against": ..., "files": [{"path", "change"}], "note"?}: the workspace now against its start."""
    if not start:
        return {"against": None, "files": [], "note": "this goal has no recorded starting point (created by an older crewctl)"}
    if not os.path.isdir(workspace):
        return {"against": start, "files": [], "note": f"the workspace {workspace} is gone"}
    if start.get("kind") == "git":
        return _git_changes(workspace, start)
    if not start.get("manifest"):
        return {"against": start, "files": [], "note": f"no manifest was kept at the start ({start.get('why')})"}
    try:
        with open(os.path.join(goal_dir(home, goal_id), start["manifest"]), encoding="utf-8") as f:
            before = json.load(f)
    except (OSError, ValueError) as exc:
        return {"against": start, "files": [], "note": f"the starting manifest cannot be read: {exc}"}
    now = _manifest(workspace, exclude=home) or {}
    files = []
    for path in sorted(set(before) | set(now)):
        if path not in now:
            files.append({"path": path, "change": "deleted"})
        elif path not in before:
            files.append({"path": path, "change": "added"})
        elif now[path] != before[path]:
            files.append({"path": path, "change": "modified"})
    return _capped(start, files)


def _git_changes(workspace: str, start: dict[str, Any]) -> dict[str, Any]:
    commit = start.get("commit")
    letters = {"A": "added", "D": "deleted", "M": "modified", "T": "modified", "R": "renamed", "C": "copied"}
    files: dict[str, str] = {}
    if commit:
        out = _git(workspace, "diff", "--name-status", "--no-renames", "-z", commit, "--")
        if out is None:
            return {"against": start, "files": [], "note": f"git cannot compare with the starting commit {commit[:12]}"}
        parts = out.split("\0")
        for code, path in zip(parts[0::2], parts[1::2]):
            if code:
                files[path] = letters.get(code[0], "modified")
    untracked = _git(workspace, "ls-files", "--others", "--exclude-standard", "-z") or ""
    for path in untracked.split("\0"):
        if path:
            files.setdefault(path, "added")
    already = set(start.get("dirty") or ())
    rows = [{"path": p, "change": c, **({"dirty_at_start": True} if p in already else {})} for p, c in sorted(files.items())]
    return _capped(start, rows)


def _capped(start: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"against": start, "files": files[:MAX_LISTED], "total": len(files)}
    if len(files) > MAX_LISTED:
        out["note"] = f"{len(files)} files changed; the first {MAX_LISTED} are listed"
    return out
