"""Snapshot the lead's workspace for a verifier, without touching the workspace.

What the lead left is what the verifier sees: tracked, modified and untracked files; not
git-ignored files and not `.git`. For a git work tree the file list comes from
`git ls-files --cached --others --exclude-standard` (read-only: no commit, no index change,
no worktree metadata in the user's repository); otherwise the directory is copied whole,
minus `.git` directories. Symlinks are kept only when they stay inside the snapshot, so a
verifier can never write through one into the lead's workspace.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..exceptions import CrewError

__all__ = ["SnapshotError", "snapshot_workspace"]


class SnapshotError(CrewError):
    code = "snapshot"


def snapshot_workspace(workspace: str, dest: str, *, exclude: tuple[str, ...] = ()) -> dict:
    """Copy `workspace` into the new directory `dest`. Returns a small report."""
    workspace = os.path.realpath(workspace)
    if not os.path.isdir(workspace):
        raise SnapshotError(f"workspace {workspace} does not exist")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    excluded = tuple(os.path.realpath(x) for x in exclude)
    files = _git_files(workspace)
    skipped: list[str] = []
    copied = 0
    if files is None:
        for root, dirs, names in os.walk(workspace):
            dirs[:] = [d for d in dirs if d != ".git" and not _under(os.path.join(root, d), excluded)]
            for name in names:
                src = os.path.join(root, name)
                rel = os.path.relpath(src, workspace)
                copied += _copy_one(src, os.path.join(dest, rel), dest, skipped, rel)
            for d in dirs:
                path = os.path.join(root, d)
                if os.path.islink(path):
                    rel = os.path.relpath(path, workspace)
                    copied += _copy_one(path, os.path.join(dest, rel), dest, skipped, rel)
    else:
        for rel in files:
            src = os.path.join(workspace, rel)
            if _under(src, excluded) or not os.path.lexists(src):
                continue  # deleted in the working tree, or crewctl's own home
            if os.path.isdir(src) and not os.path.islink(src):
                # A submodule (a gitlink): copy its files, not its .git.
                for root, dirs, names in os.walk(src):
                    dirs[:] = [d for d in dirs if d != ".git"]
                    for name in names:
                        s = os.path.join(root, name)
                        r = os.path.relpath(s, workspace)
                        copied += _copy_one(s, os.path.join(dest, r), dest, skipped, r)
                continue
            copied += _copy_one(src, os.path.join(dest, rel), dest, skipped, rel)
    return {"files": copied, "skipped_symlinks": skipped[:50], "git": files is not None}


# The lead can write the repository's .git/config: listing the files must not run the
# fsmonitor (or a hook) it names, outside every sandbox.
_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


def _git_files(workspace: str) -> list[str] | None:
    if shutil.which("git") is None:
        return None
    try:
        inside = subprocess.run(
            ["git", *_SAFE, "rev-parse", "--is-inside-work-tree"],
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        listing = subprocess.run(
            ["git", *_SAFE, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=workspace,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotError(f"git could not list the workspace files: {exc}") from None
    if listing.returncode != 0:
        raise SnapshotError("git ls-files failed: " + listing.stderr.decode(errors="replace").strip()[:300])
    names = listing.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return sorted({n for n in names if n})


def _under(path: str, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def _copy_one(src: str, dst: str, dest_root: str, skipped: list[str], rel: str) -> int:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(src):
        target = os.readlink(src)
        resolved = os.path.normpath(os.path.join(os.path.dirname(dst), target))
        if os.path.isabs(target) or not (resolved == dest_root or resolved.startswith(dest_root + os.sep)):
            skipped.append(rel)
            return 0
        os.symlink(target, dst)
        return 1
    if not os.path.isfile(src):
        return 0  # sockets, fifos, devices: nothing a verifier should read
    shutil.copy2(src, dst)
    return 1
