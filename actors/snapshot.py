"""Snapshot the lead's workspace for a gate round, without touching it and without trusting it.

Its length (about 630 lines) is one adversarial copy: every refusal (symlinks, quotas,
git config, sparse files) sits beside the copy step it guards, which a split would separate.

What the lead left is what the checks and the verifier see: tracked, modified and untracked
files; not git-ignored files and not `.git`. The workspace is the lead's, so everything in
it is treated as hostile input:

- **git never runs the repository's code.** The file list comes from `git ls-files --cached
  --others --exclude-standard`, but git gets a private, empty GIT_DIR: the repository's
  index and `info/exclude` are read as data (GIT_INDEX_FILE), and its config, hooks and
  fsmonitor are never read at all, so `core.fsmonitor`, `core.hooksPath`, filter drivers and
  `include.path` in `.git/config` cannot run anything in the supervisor. System and global
  config are off too (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null); only the
  operator's global excludes file is passed on by name, so what they git-ignore stays out.
  `-c core.fsmonitor=false -c core.hooksPath=/dev/null` stand behind that as a second wall.
- **Paths are checked, not followed.** A listed path must be relative, without `..` or a
  `.git` segment, and reach its file through real directories only: a path through a
  symlinked directory (a crafted index, a directory swapped for a link) is skipped, so
  nothing outside the workspace is ever read into a snapshot.
- **Symlinks are judged by where they resolve once all of them exist.** Files are copied
  first, then every symlink is created, then each is resolved (realpath) and removed if it
  leads out of the snapshot, again until none does: a chain of links that each look inside
  on their own cannot lead out together. Absolute targets are dropped.
- **Copies keep holes and are bounded.** Regular files are copied range by range
  (SEEK_DATA/SEEK_HOLE, copy_file_range), so a 1 GiB sparse file stays a few blocks; the
  bytes actually written and the number of files count against a per-round quota
  (`[snapshot] quota`, `max_files`), and going past it refuses the round (SnapshotRefused)
  with the largest files named.

Protected paths (goal/protect.py) need hashes of some files: `hash_files` reads them where
they resolve inside a root, and `observe` is the baseline's view of a workspace.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field

from ..exceptions import CrewError
from ..goal import protect

__all__ = [
    "Listing",
    "Snapshot",
    "SnapshotError",
    "SnapshotLimits",
    "SnapshotRefused",
    "check_protected",
    "copy_tree",
    "hash_files",
    "hash_hooks",
    "list_workspace",
    "observe",
    "snapshot_workspace",
]

GiB = 1024**3
_CHUNK = 1 << 20
_EXCLUDE_FILE_MAX = 1 << 20
_GIT_TIMEOUT = 120


class SnapshotError(CrewError):
    code = "snapshot"


class SnapshotRefused(SnapshotError):
    """The workspace is over the round's quota: the lead's doing, which the lead can undo."""

    code = "snapshot_refused"


@dataclass(frozen=True)
class SnapshotLimits:
    max_bytes: int = 2 * GiB  # bytes written into one snapshot (holes are free)
    max_files: int = 200_000


@dataclass
class Listing:
    """The files a snapshot takes from a workspace (relative paths, checked), and its git hooks."""

    root: str
    files: list[str]
    git: bool
    hooks: dict[str, str] = field(default_factory=dict)  # ".git/hooks/NAME" -> absolute path
    skipped: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    root: str
    paths: tuple[str, ...]  # regular files and the symlinks kept
    files: int
    written: int  # bytes written
    apparent: int  # bytes the files claim (holes included)
    skipped: list[str]
    git: bool
    hooks: dict[str, str]

    def summary(self) -> dict:
        return {
            "files": self.files,
            "bytes": self.written,
            "apparent_bytes": self.apparent,
            "git": self.git,
            "skipped": self.skipped[:20],
        }


# -- listing ------------------------------------------------------------------------------------


def list_workspace(workspace: str, *, exclude: tuple[str, ...] = ()) -> Listing:
    root = os.path.realpath(workspace)
    if not os.path.isdir(root):
        raise SnapshotError(f"workspace {root} does not exist")
    excluded = tuple(os.path.realpath(x) for x in exclude)
    repo = _find_repo(root)
    skipped: list[str] = []
    parents: dict[str, bool] = {}
    names = _git_list(root, repo) if repo is not None else _walk(root, excluded)
    files: list[str] = []
    for name in names:
        rel = name.rstrip("/")
        if not _safe_relative(rel) or not _through_real_dirs(root, rel, parents):
            skipped.append(rel)
            continue
        path = os.path.join(root, rel)
        if excluded and _under(path, excluded):
            continue  # crewctl's own home inside the workspace
        try:
            st = os.lstat(path)
        except OSError:
            continue  # deleted in the working tree
        if stat.S_ISDIR(st.st_mode):
            # A submodule or a nested repository: its files, not its .git.
            files.extend(r for r in _walk(path, excluded, prefix=rel) if _through_real_dirs(root, r, parents))
        else:
            files.append(rel)
    hooks = _hooks(repo[2]) if repo is not None else {}
    return Listing(root=root, files=sorted(set(files)), git=repo is not None, hooks=hooks, skipped=skipped)


def _walk(top: str, excluded: tuple[str, ...], prefix: str = "") -> list[str]:
    out = []
    for dirpath, dirs, names in os.walk(top):
        keep = []
        for d in dirs:
            full = os.path.join(dirpath, d)
            if d == ".git" or (excluded and _under(full, excluded)):
                continue
            if os.path.islink(full):
                names.append(d)  # a symlinked directory is a link entry, never walked into
            else:
                keep.append(d)
        dirs[:] = keep
        rel_dir = os.path.relpath(dirpath, top)
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            out.append(f"{prefix}/{rel}" if prefix else rel)
    return out


def _safe_relative(rel: str) -> bool:
    if not rel or rel.startswith("/") or "\0" in rel:
        return False
    return all(part not in ("", ".", "..", ".git") for part in rel.split("/"))


def _through_real_dirs(root: str, rel: str, cache: dict[str, bool]) -> bool:
    """Does `rel` reach its last component through real directories of `root` only?"""
    parent = os.path.dirname(rel)
    if not parent:
        return True
    ok = cache.get(parent)
    if ok is None:
        ok = os.path.realpath(os.path.join(root, parent)) == os.path.join(root, parent)
        cache[parent] = ok
    return ok


def _under(path: str, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def _find_repo(root: str) -> tuple[str, str, str] | None:
    """(work tree top, git dir, common dir) of the repository `root` is in, found by reading
    `.git` entries as git's discovery would, without running git in the repository."""
    device = os.stat(root).st_dev
    here = root
    while True:
        dotgit = os.path.join(here, ".git")
        gitdir = None
        if os.path.isdir(dotgit) and not os.path.islink(dotgit):
            gitdir = dotgit
        elif os.path.isfile(dotgit):
            try:
                with open(dotgit, encoding="utf-8", errors="replace") as f:
                    line = f.read(4096).strip()
            except OSError:
                line = ""
            if line.startswith("gitdir:"):
                gitdir = os.path.normpath(os.path.join(here, line[len("gitdir:") :].strip()))
        if gitdir is not None and os.path.isfile(os.path.join(gitdir, "HEAD")):
            common = gitdir
            try:
                with open(os.path.join(gitdir, "commondir"), encoding="utf-8", errors="replace") as f:
                    common = os.path.normpath(os.path.join(gitdir, f.read(4096).strip()))
            except OSError:
                pass
            return here, gitdir, common
        parent = os.path.dirname(here)
        if parent == here:
            return None
        try:
            if os.stat(parent).st_dev != device:
                return None  # git stops at a filesystem boundary too
        except OSError:
            return None
        here = parent


def _clean_git_env(fake: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": fake,
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_DIR": fake,
    }


_GIT_WALL = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false")


def _git_list(root: str, repo: tuple[str, str, str]) -> list[str]:
    top, gitdir, common = repo
    git = shutil.which("git")
    if git is None:
        raise SnapshotError(f"{root} is in a git repository, but git is not installed (it lists the files to copy)")
    fake = tempfile.mkdtemp(prefix="crewctl-git-")
    try:
        env = _clean_git_env(fake)
        for d in ("objects", "refs", "info"):
            os.makedirs(os.path.join(fake, d))
        with open(os.path.join(fake, "HEAD"), "w") as f:
            f.write("ref: refs/heads/crewctl-snapshot\n")
        fmt = (_config_value(git, env, os.path.join(common, "config"), "extensions.objectformat") or "").lower()
        with open(os.path.join(fake, "config"), "w") as f:
            if fmt in ("sha1", "sha256"):
                f.write(f"[core]\n\trepositoryformatversion = 1\n[extensions]\n\tobjectformat = {fmt}\n")
            else:
                f.write("[core]\n\trepositoryformatversion = 0\n")
        _copy_small(os.path.join(common, "info", "exclude"), os.path.join(fake, "info", "exclude"))
        for name in _listdir(gitdir):
            if name.startswith("sharedindex."):  # a split index names its shared part by path
                os.symlink(os.path.join(gitdir, name), os.path.join(fake, name))
        env.update(
            GIT_WORK_TREE=top,
            GIT_INDEX_FILE=os.path.join(gitdir, "index"),
            GIT_OBJECT_DIRECTORY=os.path.join(common, "objects"),
        )
        argv = [git, *_GIT_WALL]
        excludes = _operator_excludes(git, env)
        if excludes:
            argv += ["-c", f"core.excludesFile={excludes}"]
        argv += ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        try:
            listing = subprocess.run(argv, cwd=root, env=env, capture_output=True, timeout=_GIT_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SnapshotError(f"git could not list the workspace files: {exc}") from None
    finally:
        shutil.rmtree(fake, ignore_errors=True)
    if listing.returncode != 0:
        raise SnapshotError("git ls-files failed: " + listing.stderr.decode(errors="replace").strip()[:300])
    names = listing.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return sorted({n for n in names if n})


def _config_value(git: str, env: dict[str, str], path: str, key: str) -> str | None:
    """One value from a config file, read as data (`--file` follows no includes)."""
    if not os.path.isfile(path):
        return None
    try:
        done = subprocess.run(
            [git, "config", "--file", path, "--get", key], env=env, cwd=env["GIT_DIR"], capture_output=True, timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="surrogateescape").strip() or None


def _operator_excludes(git: str, env: dict[str, str]) -> str | None:
    """The operator's global excludes file: named in their own git config, or git's default."""
    home = os.environ.get("HOME") or os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    for config in (os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")):
        value = _config_value(git, env, config, "core.excludesfile")
        if value:
            value = os.path.join(home, value[2:]) if value.startswith("~/") else value
            if os.path.isabs(value) and os.path.isfile(value):
                return value
    default = os.path.join(xdg, "git", "ignore")
    return default if os.path.isfile(default) else None


def _copy_small(src: str, dst: str) -> None:
    try:
        st = os.stat(src)
        if stat.S_ISREG(st.st_mode) and st.st_size <= _EXCLUDE_FILE_MAX:
            shutil.copyfile(src, dst)
    except OSError:
        pass


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _hooks(common: str) -> dict[str, str]:
    """The repository's hooks directory as listed paths (never copied; forbidden to change)."""
    base = os.path.join(common, "hooks")
    out = {}
    if not os.path.isdir(base):
        return out
    for rel in _walk(base, ()):
        out[protect.GIT_HOOKS + rel] = os.path.join(base, rel)
    return out


# -- copying ------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, limits: SnapshotLimits | None) -> None:
        self.limits = limits
        self.written = 0
        self.apparent = 0
        self.files = 0
        self.largest: list[tuple[int, str]] = []

    def file(self) -> None:
        self.files += 1
        if self.limits and self.files > self.limits.max_files:
            raise SnapshotRefused(
                f"the workspace has more than {self.limits.max_files} files to snapshot ([snapshot] max_files); "
                "git-ignore or remove generated files"
            )

    def charge(self, rel: str, data: int, apparent: int) -> None:
        self.apparent += apparent
        self.largest = sorted(self.largest + [(data, rel)], reverse=True)[:3]
        if self.limits and self.written + data > self.limits.max_bytes:
            largest = ", ".join(f"{r} ({_size(n)})" for n, r in self.largest)
            raise SnapshotRefused(
                f"the snapshot is over its quota: more than {_size(self.limits.max_bytes)} to write "
                f"([snapshot] quota); largest files: {largest}. Git-ignore or remove them"
            )
        self.written += data


def _size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def snapshot_workspace(
    workspace: str, dest: str, *, exclude: tuple[str, ...] = (), limits: SnapshotLimits | None = SnapshotLimits()
) -> Snapshot:
    """Copy `workspace` into the new directory `dest` (see the module docstring)."""
    listing = list_workspace(workspace, exclude=exclude)
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest, mode=0o700)
    budget = _Budget(limits)
    skipped = list(listing.skipped)
    links: list[tuple[str, str]] = []
    paths: list[str] = []
    made: set[str] = set()
    for rel in listing.files:
        src = os.path.join(listing.root, rel)
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            budget.file()
            try:
                links.append((rel, os.readlink(src)))
            except OSError:
                pass
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # sockets, fifos, devices: nothing a check should read
        budget.file()
        _ensure_dir(dest, os.path.dirname(rel), made)
        if _copy_file(src, os.path.join(dest, rel), budget, rel):
            paths.append(rel)
    paths.extend(_place_links(dest, links, skipped, made))
    return Snapshot(
        root=os.path.realpath(dest),
        paths=tuple(sorted(paths)),
        files=len(paths),
        written=budget.written,
        apparent=budget.apparent,
        skipped=skipped,
        git=listing.git,
        hooks=listing.hooks,
    )


def copy_tree(src: str, dst: str) -> None:
    """A snapshot's own copy for one check or the verifier: holes kept, symlinks as they are
    (they were judged in the snapshot, and resolve the same in an identical tree)."""
    if os.path.lexists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst, mode=0o700)
    budget = _Budget(None)
    for dirpath, dirs, names in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        target_dir = dst if rel_dir == "." else os.path.join(dst, rel_dir)
        for d in list(dirs):
            s = os.path.join(dirpath, d)
            if os.path.islink(s):
                os.symlink(os.readlink(s), os.path.join(target_dir, d))
                dirs.remove(d)
            else:
                os.mkdir(os.path.join(target_dir, d), 0o700)
        for name in names:
            s = os.path.join(dirpath, name)
            d = os.path.join(target_dir, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                _copy_file(s, d, budget, name)


def _ensure_dir(dest: str, rel_dir: str, made: set[str]) -> None:
    if not rel_dir or rel_dir in made:
        return
    os.makedirs(os.path.join(dest, rel_dir), mode=0o700, exist_ok=True)
    while rel_dir and rel_dir not in made:
        made.add(rel_dir)
        rel_dir = os.path.dirname(rel_dir)


def _copy_file(src: str, dst: str, budget: _Budget, rel: str) -> bool:
    """Copy a regular file's data ranges only, so holes stay holes; False if it is not one."""
    try:
        fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode):
            return False
        ranges = _data_ranges(fin, st.st_size)
        budget.charge(rel, sum(end - start for start, end in ranges), st.st_size)
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            for start, end in ranges:
                _copy_range(fin, fout, start, end)
            os.ftruncate(fout, st.st_size)  # a trailing hole stays a hole
            os.fchmod(fout, stat.S_IMODE(st.st_mode) & 0o777)
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
        return True
    finally:
        os.close(fin)


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    ranges = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break  # the rest is a hole
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if end <= start:
                break
            ranges.append((start, end))
            pos = end
    except OSError:
        return [(0, size)] if size else []  # no hole support here: copy it whole (and count it whole)
    return ranges


def _copy_range(fin: int, fout: int, start: int, end: int) -> None:
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(fin, fout, min(end - pos, 1 << 30), pos, pos)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
            n = 0
        if n == 0:
            data = os.pread(fin, min(end - pos, _CHUNK), pos)
            if not data:
                return  # the file shrank under us
            n = os.pwrite(fout, data, pos)
        pos += n


def _place_links(dest: str, links: list[tuple[str, str]], skipped: list[str], made: set[str]) -> list[str]:
    """Create every symlink, then remove each that resolves out of `dest`, until none does."""
    root = os.path.realpath(dest)
    placed = []
    for rel, target in links:
        if os.path.isabs(target) or "\0" in target:
            skipped.append(rel)
            continue
        _ensure_dir(dest, os.path.dirname(rel), made)
        try:
            os.symlink(target, os.path.join(dest, rel))
        except OSError:
            skipped.append(rel)
            continue
        placed.append(rel)
    changed = True
    while changed:
        changed = False
        for rel in list(placed):
            real = os.path.realpath(os.path.join(dest, rel))
            if real != root and not real.startswith(root + os.sep):
                os.unlink(os.path.join(dest, rel))
                placed.remove(rel)
                skipped.append(rel)
                changed = True
    return placed


# -- hashing ------------------------------------------------------------------------------------


def hash_files(root: str, rels) -> dict[str, str]:
    """Content hashes of the regular files `rels` resolve to inside `root` (others left out)."""
    base = os.path.realpath(root)
    parents: dict[str, str | None] = {}
    out = {}
    for rel in rels:
        if not _safe_relative(rel):
            continue
        parent, name = os.path.split(rel)
        if parent not in parents:  # one resolution per directory, not one per file
            real_parent = os.path.realpath(os.path.join(base, parent)) if parent else base
            parents[parent] = real_parent if _inside(real_parent, base) else None
        real_parent = parents[parent]
        if real_parent is None:
            continue  # resolves out of the tree: it is not in this tree
        digest = _hash(os.path.join(real_parent, name), base)
        if digest is not None:
            out[rel] = digest
    return out


def _inside(real: str, base: str) -> bool:
    return real == base or real.startswith(base + os.sep)


def _hash(path: str, base: str | None = None) -> str | None:
    """sha256 of the regular file at `path`; a final symlink is followed only where it
    resolves inside `base` (when given)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if base else 0))
    except OSError as exc:
        if base is None or exc.errno != errno.ELOOP:
            return None
        real = os.path.realpath(path)  # the last component is a link: judge where it leads
        if not _inside(real, base):
            return None
        return _hash(real)
    except ValueError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return None


def hash_hooks(hooks: dict[str, str], wanted) -> dict[str, str]:
    out = {}
    for rel in wanted:
        path = hooks.get(rel)
        if path is not None and (digest := _hash(path)) is not None:
            out[rel] = digest
    return out


def observe(workspace: str, scope: protect.Scope, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """The baseline's view of a workspace: the hash of every candidate file (protect.candidates)."""
    listing = list_workspace(workspace, exclude=exclude)
    want = protect.candidates(scope, [*listing.files, *listing.hooks])
    found = hash_files(listing.root, [p for p in want if p not in listing.hooks])
    found.update(hash_hooks(listing.hooks, want))
    return found


def check_protected(snap: Snapshot, plan: protect.RoundPlan, workspace: str) -> tuple[protect.Finding, ...]:
    """A round's protected-path findings: the snapshot's files against the baseline."""
    want = protect.wanted(plan, [*snap.paths, *snap.hooks])
    hashes = hash_files(snap.root, [p for p in want if p not in snap.hooks])
    hashes.update(hash_hooks(snap.hooks, want))
    on_disk = [p for _, p, _ in plan.entries if p not in hashes and _safe_relative(p) and os.path.lexists(os.path.join(workspace, p))]
    return protect.compare(plan, hashes, on_disk)
