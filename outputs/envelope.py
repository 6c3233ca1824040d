"""The PR envelope on disk: a branch made with git plumbing, pr.md, pr.patch.

A gate round's snapshot becomes one commit on top of the goal's starting commit, on the
branch `crewctl/<goal id>`, without touching the user's branch, index or working tree:
`prepare` (every round, as soon as the snapshot is taken, before any check or verifier
can leave a file in it) builds its tree in a temporary index (GIT_INDEX_FILE) that starts
as the starting commit's tree, takes every file of the snapshot (`hash-object
--no-filters`: no clean filter runs; only the changed files' blobs are written) and drops
what the snapshot no longer has (`write-tree`); `finish` (when that round passed) makes
the commit (`commit-tree`) and the ref (`update-ref`). Only the object store and that one
ref change.

What the snapshot leaves out on purpose is not a deletion: a submodule stays at its
commit, and a symlink that points out of the work (the snapshot never copies those) stays
as it was.

`push` and `open_pr` are what `crewctl goal pr` runs on the operator's behalf.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from ..actors.runtime import goal_dir
from ..exceptions import CrewError
from .git import GitError, git, git_env

__all__ = [
    "Built",
    "EnvelopeError",
    "GitBase",
    "base_of",
    "build",
    "envelope_files",
    "finish",
    "open_pr",
    "prepare",
    "prepared",
    "push",
    "read_record",
    "supersede",
    "write_files",
]

_ZERO = "0" * 40
RECORD = "envelope.json"


class EnvelopeError(CrewError):
    """The envelope cannot be made or used; the message says why in one line (exit 1)."""

    code = "envelope"


@dataclass(frozen=True)
class GitBase:
    commit: str | None
    branch: str | None


@dataclass(frozen=True)
class Built:
    branch: str
    commit: str
    base: str
    files: tuple[str, ...]  # changed paths, relative to the repository's top
    patch: bytes


# -- where things are ------------------------------------------------------------------------


def envelope_files(home: str, goal_id: str) -> dict[str, str]:
    d = goal_dir(home, goal_id)
    return {"dir": d, "pr": os.path.join(d, "pr.md"), "patch": os.path.join(d, "pr.patch"), "record": os.path.join(d, RECORD)}


def _prepared_path(home: str, goal_id: str, round_no: int) -> str:
    return os.path.join(goal_dir(home, goal_id), "envelope", f"round-{round_no}.json")


# -- the starting point ----------------------------------------------------------------------


def base_of(workspace: str) -> GitBase:
    """The commit and branch checked out in `workspace` now, if it is in a git work tree."""
    try:
        inside = git(["rev-parse", "--is-inside-work-tree"], cwd=workspace, check=False)
        if inside.returncode != 0 or inside.stdout.strip() != b"true":
            return GitBase(None, None)
        head = git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=workspace, check=False)
        branch = git(["symbolic-ref", "--short", "-q", "HEAD"], cwd=workspace, check=False)
    except GitError:
        return GitBase(None, None)
    commit = head.stdout.decode().strip() if head.returncode == 0 else None
    name = branch.stdout.decode("utf-8", "replace").strip() if branch.returncode == 0 else None
    return GitBase(commit or None, name or None)


# -- building ----------------------------------------------------------------------------------
# In two halves. `prepare` runs in every gate round right after the snapshot is taken and
# before any check or verifier runs in it (they may leave files behind: bytecode, build
# output), and keeps only a tree id; `finish` makes the commit when that round passes.


def prepare(home: str, goal_id: str, round_no: int, *, workspace: str, snapshot: str, base: str) -> dict[str, Any]:
    """The tree of the snapshot on `base`, kept in the goal's directory for `finish`.
    Never raises: what went wrong is kept instead, for the envelope to report."""
    try:
        tree, files = _tree(workspace, snapshot, base)
        prepared: dict[str, Any] = {"round": round_no, "base": base, "tree": tree, "files": list(files)}
    except (EnvelopeError, GitError, OSError) as exc:
        prepared = {"round": round_no, "base": base, "error": str(exc)}
    path = _prepared_path(home, goal_id, round_no)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    _write(path, json.dumps(prepared).encode())
    return prepared


def prepared(home: str, goal_id: str, round_no: int) -> dict[str, Any] | None:
    try:
        with open(_prepared_path(home, goal_id, round_no), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("round") == round_no else None


def finish(workspace: str, ready: dict[str, Any], *, branch: str, message: str, when: str | None = None) -> Built:
    """The commit of a prepared tree on its base, as `branch`. Raises EnvelopeError."""
    if ready.get("error"):
        raise EnvelopeError(ready["error"])
    base, tree = ready["base"], ready["tree"]
    try:
        top = _top(workspace)
        env = git_env()
        commit = git(
            ["commit-tree", "--no-gpg-sign", tree, "-p", base, "-F", "-"], cwd=top, env=_identity(top, env, when), input=message.encode()
        ).stdout.decode().strip()
        git(["update-ref", "-m", f"crewctl: PR envelope ({branch})", f"refs/heads/{branch}", commit], cwd=top, env=env)
        patch = git(["diff-tree", "-p", "--binary", "--full-index", "--no-color", base, commit], cwd=top, env=env).stdout
    except GitError as exc:
        raise EnvelopeError(str(exc)) from None
    return Built(branch=branch, commit=commit, base=base, files=tuple(ready.get("files") or ()), patch=patch)


def build(workspace: str, snapshot: str, *, base: str, branch: str, message: str, when: str | None = None) -> Built:
    """Both halves at once (the benchmark; a caller with the snapshot still pristine)."""
    tree, files = _tree(workspace, snapshot, base)
    return finish(workspace, {"base": base, "tree": tree, "files": list(files)}, branch=branch, message=message, when=when)


def _top(workspace: str) -> str:
    return git(["rev-parse", "--show-toplevel"], cwd=workspace).stdout.decode("utf-8", "surrogateescape").strip()


def _tree(workspace: str, snapshot: str, base: str) -> tuple[str, tuple[str, ...]]:
    """A tree holding exactly the snapshot on top of `base`, made in a temporary index:
    only objects are written (the changed files' blobs and the trees)."""
    try:
        top = _top(workspace)
        prefix = git(["rev-parse", "--show-prefix"], cwd=workspace).stdout.decode("utf-8", "surrogateescape").strip()
        git(["cat-file", "-e", f"{base}^{{commit}}"], cwd=top)
    except GitError as exc:
        raise EnvelopeError(f"the starting commit {base[:12]} is not in the workspace's repository ({exc})") from None
    scratch = tempfile.mkdtemp(prefix="crewctl-envelope-")
    try:
        env = git_env(extra={"GIT_INDEX_FILE": os.path.join(scratch, "index")})
        git(["read-tree", base], cwd=top, env=env)
        before = _index(top, env, prefix)
        now = _snapshot_entries(snapshot, prefix, scratch)
        _hash(top, env, now, before)
        changes = _changes(top, env, prefix, before, now)
        if changes:
            records = b"".join(
                (f"{mode} {sha}\t".encode() + path.encode("utf-8", "surrogateescape") + b"\0")
                for path, (mode, sha) in changes
            )
            git(["update-index", "-z", "--replace", "--index-info"], cwd=top, env=env, input=records)
        tree = git(["write-tree"], cwd=top, env=env).stdout.decode().strip()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tree, tuple(sorted(p for p, _ in changes))


def _index(top: str, env: dict[str, str], prefix: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, sha) of the temporary index, under the workspace's prefix."""
    out = git(["ls-files", "-s", "-z", "--", prefix or "."], cwd=top, env=env).stdout
    entries = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, sha, _stage = meta.decode().split(" ")
        entries[path.decode("utf-8", "surrogateescape")] = (mode, sha)
    return entries


def _snapshot_entries(snapshot: str, prefix: str, scratch: str) -> dict[str, list]:
    """path -> [mode, source file, sha or None] for every file and symlink of the snapshot;
    a symlink's source is a scratch file holding its target, which is what git stores."""
    entries: dict[str, list] = {}
    links = 0
    pending = [(snapshot, prefix)]
    while pending:
        directory, rel_dir = pending.pop()
        with os.scandir(directory) as listing:
            for entry in listing:
                rel = rel_dir + entry.name
                if entry.is_symlink():  # from the directory entry: no system call
                    target = os.path.join(scratch, f"link-{links}")
                    links += 1
                    with open(target, "wb") as f:
                        f.write(os.fsencode(os.readlink(entry.path)))
                    entries[rel] = ["120000", target, None]
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    executable = entry.stat(follow_symlinks=False).st_mode & stat.S_IXUSR
                    entries[rel] = ["100755" if executable else "100644", entry.path, None]
    return entries


def _hash(top: str, env: dict[str, str], entries: dict[str, list], before: dict[str, tuple[str, str]]) -> None:
    """Every file's blob id (one git process for all of them), written to the object store
    only for the files that differ from the starting commit."""
    if not entries:
        return
    paths = list(entries)
    if any("\n" in entries[p][1] for p in paths):
        raise GitError("a path in the snapshot contains a line break; git hash-object cannot take it")

    def run(selected: list[str], write: bool) -> None:
        listing = "".join(entries[p][1] + "\n" for p in selected).encode("utf-8", "surrogateescape")
        args = ["hash-object", *(["-w"] if write else []), "--no-filters", "--stdin-paths"]
        shas = git(args, cwd=top, env=env, input=listing).stdout.split()
        if len(shas) != len(selected):
            raise GitError("git hash-object returned fewer objects than files")
        for path, sha in zip(selected, shas):
            entries[path][2] = sha.decode()

    run(paths, write=False)
    changed = [p for p in paths if before.get(p) != (entries[p][0], entries[p][2])]
    if changed:
        run(changed, write=True)


def _changes(top: str, env: dict[str, str], prefix: str, before: dict[str, tuple[str, str]], now: dict[str, list]) -> list[tuple[str, tuple[str, str]]]:
    """Index records turning `before` into the snapshot: removals first, then additions."""
    submodules = [p for p, (mode, _) in before.items() if mode == "160000"]

    def in_submodule(path: str) -> bool:
        return any(path == s or path.startswith(s + "/") for s in submodules)

    removed, added = [], []
    for path, (mode, sha) in before.items():
        if path in now or mode == "160000":
            continue
        if mode == "120000" and _escapes(top, env, path, sha, prefix):
            continue  # the snapshot never copies a symlink that points out of the work
        removed.append((path, ("0", _ZERO)))
    for path, (mode, _src, sha) in now.items():
        if in_submodule(path):
            continue  # a submodule's files, copied into the snapshot; its commit stays
        if before.get(path) != (mode, sha):
            added.append((path, (mode, sha)))
    return removed + added


def _escapes(top: str, env: dict[str, str], path: str, sha: str, prefix: str) -> bool:
    target = git(["cat-file", "blob", sha], cwd=top, env=env).stdout.decode("utf-8", "surrogateescape")
    rel = path[len(prefix):]
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return os.path.isabs(target) or resolved == ".." or resolved.startswith("../")


def _identity(top: str, env: dict[str, str], when: str | None) -> dict[str, str]:
    """The commit's author and committer: the operator's git identity if it has one."""
    own = git_env(isolated=False)
    name = git(["config", "--get", "user.name"], cwd=top, env=own, check=False).stdout.decode("utf-8", "replace").strip()
    email = git(["config", "--get", "user.email"], cwd=top, env=own, check=False).stdout.decode("utf-8", "replace").strip()
    ident = dict(env)
    ident.update(
        GIT_AUTHOR_NAME=name or "crewctl",
        GIT_AUTHOR_EMAIL=email or "crewctl@localhost",
        GIT_COMMITTER_NAME=name or "crewctl",
        GIT_COMMITTER_EMAIL=email or "crewctl@localhost",
    )
    if when:
        ident.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    return ident


# -- files -------------------------------------------------------------------------------------


def write_files(home: str, goal_id: str, *, round_no: int, body: str, built: Built | None) -> dict[str, str | None]:
    """pr.md (always), pr.patch and envelope.json (when there is a commit)."""
    paths = envelope_files(home, goal_id)
    os.makedirs(paths["dir"], mode=0o700, exist_ok=True)
    _write(paths["pr"], body.encode("utf-8"))
    if built is None:
        _remove(paths["patch"])
        record = {"round": round_no, "branch": None, "commit": None}
    else:
        _write(paths["patch"], built.patch)
        record = {"round": round_no, "branch": built.branch, "commit": built.commit, "base": built.base, "files": list(built.files)}
    # Last: whose files these are (a supersede takes down only its own round's), and what
    # was made, should the supervisor stop before it records it.
    _write(paths["record"], json.dumps(record).encode())
    return {"pr": paths["pr"], "patch": paths["patch"] if built is not None else None}


def read_record(home: str, goal_id: str) -> dict[str, Any] | None:
    try:
        with open(envelope_files(home, goal_id)["record"], encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def supersede(home: str, goal_id: str, workspace: str, *, round_no: int, branch: str | None, commit: str | None) -> None:
    """Take down the envelope of `round_no`: its branch (only if it still points at its own
    commit), its files (only if they are that round's), and its staged snapshot."""
    paths = envelope_files(home, goal_id)
    record = read_record(home, goal_id)
    if record is not None and record.get("round") == round_no:
        for key in ("pr", "patch", "record"):
            _remove(paths[key])
    if branch and commit:
        try:
            top = git(["rev-parse", "--show-toplevel"], cwd=workspace).stdout.decode("utf-8", "surrogateescape").strip()
            git(["update-ref", "-d", f"refs/heads/{branch}", commit], cwd=top, check=False)
        except GitError:
            pass  # the workspace or its repository is gone: nothing to take down
    _remove(_prepared_path(home, goal_id, round_no))


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# -- handing it over -----------------------------------------------------------------------------


def push(workspace: str, branch: str, remote: str) -> str:
    """Push the branch (forced: it is crewctl's own) with the operator's git config, which
    has the credentials, and without hooks. Returns what git said."""
    if remote.startswith("-"):
        raise EnvelopeError(f"{remote!r} is not a remote")
    ref = f"refs/heads/{branch}"
    try:
        done = git(["push", "--porcelain", remote, f"+{ref}:{ref}"], cwd=workspace, env=git_env(isolated=False), timeout=600)
    except GitError as exc:
        raise EnvelopeError(str(exc)) from None
    return done.stdout.decode("utf-8", "replace").strip()


def open_pr(workspace: str, *, branch: str, base_branch: str | None, title: str, body_file: str) -> str:
    """`gh pr create` with the envelope's body; returns what gh printed (the PR's URL)."""
    gh = shutil.which("gh")
    if gh is None:
        raise EnvelopeError("gh (GitHub's CLI) is not installed; open the pull request yourself with the body in " + body_file)
    argv = [gh, "pr", "create", "--head", branch, "--title", title, "--body-file", body_file]
    if base_branch:
        argv += ["--base", base_branch]
    try:
        done = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvelopeError(f"gh pr create could not run: {exc}") from None
    if done.returncode != 0:
        raise EnvelopeError("gh pr create failed: " + (" ".join(done.stderr.split())[:300] or f"exit {done.returncode}"))
    return done.stdout.strip()
