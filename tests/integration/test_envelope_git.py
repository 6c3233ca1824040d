"""The PR envelope's git plumbing on real repositories: what the commit holds, and what it
leaves alone, in the shapes a workspace takes (a subdirectory, symlinks, modes, submodules)."""

from __future__ import annotations

import os
import subprocess

from crewctl.actors.snapshot import snapshot_workspace
from crewctl.outputs import envelope

ENV = {**os.environ, "GIT_AUTHOR_NAME": "o", "GIT_AUTHOR_EMAIL": "o@example.com", "GIT_COMMITTER_NAME": "o",
       "GIT_COMMITTER_EMAIL": "o@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ALLOW_PROTOCOL": "file"}


def git(cwd, *args: str) -> str:
    done = subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=str(cwd), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def repo(path, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    return git(path, "rev-parse", "HEAD").strip()


def envelope_of(workspace, tmp_path, base: str) -> envelope.Built:
    snap = tmp_path / "snapshot"
    snapshot_workspace(str(workspace), str(snap))
    return envelope.build(str(workspace), str(snap), base=base, branch="crewctl/g1", message="the envelope\n")


def changes(top, built: envelope.Built) -> list[str]:
    return sorted(git(top, "diff-tree", "-r", "--no-commit-id", "--name-status", built.base, built.commit).splitlines())


def test_a_workspace_in_a_subdirectory_commits_its_changes_under_its_path_and_keeps_the_rest(tmp_path):
    top = tmp_path / "mono"
    base = repo(top, {"app/main.py": "print(1)\n", "lib/util.py": "x = 1\n", "README.md": "r\n"})
    (top / "app" / "main.py").write_text("print(2)\n")
    (top / "lib" / "util.py").write_text("x = 2  # outside the workspace: not the goal's\n")
    built = envelope_of(top / "app", tmp_path, base)
    assert changes(top, built) == ["M\tapp/main.py"]
    assert built.files == ("app/main.py",)
    assert git(top, "show", f"{built.commit}:lib/util.py") == "x = 1\n"


def test_modes_symlinks_and_a_file_that_became_a_directory(tmp_path):
    top = tmp_path / "r"
    base = repo(top, {"run.sh": "echo hi\n", "data": "a file\n", "keep.txt": "k\n"})
    os.chmod(top / "run.sh", 0o755)
    git(top, "add", "-A")
    git(top, "commit", "-qm", "exec")
    base = git(top, "rev-parse", "HEAD").strip()
    (top / "data").unlink()
    (top / "data").mkdir()
    (top / "data" / "part1.txt").write_text("now a directory\n")
    os.symlink("keep.txt", top / "link-inside")
    os.chmod(top / "keep.txt", 0o755)
    built = envelope_of(top, tmp_path, base)
    tree = {line.split("\t")[1]: line.split()[0] for line in git(top, "ls-tree", "-r", built.commit).splitlines()}
    assert tree == {"data/part1.txt": "100644", "keep.txt": "100755", "link-inside": "120000", "run.sh": "100755"}
    assert git(top, "cat-file", "blob", f"{built.commit}:link-inside") == "keep.txt"


def test_a_symlink_out_of_the_work_and_a_submodule_are_left_as_they_were(tmp_path):
    sub = tmp_path / "sub"
    repo(sub, {"s.txt": "s\n"})
    top = tmp_path / "r"
    repo(top, {"a.txt": "a\n"})
    os.symlink("/etc/hostname", top / "escape")
    git(top, "submodule", "--quiet", "add", str(sub), "vendor/sub")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "with a submodule and an escaping link")
    base = git(top, "rev-parse", "HEAD").strip()
    (top / "a.txt").write_text("changed\n")
    built = envelope_of(top, tmp_path, base)  # the snapshot copies neither as they are
    assert changes(top, built) == ["M\ta.txt"]


def test_no_change_is_a_commit_with_the_starting_tree_and_an_empty_patch(tmp_path):
    top = tmp_path / "r"
    base = repo(top, {"a.txt": "a\n"})
    built = envelope_of(top, tmp_path, base)
    assert git(top, "rev-parse", f"{built.commit}^{{tree}}") == git(top, "rev-parse", f"{base}^{{tree}}")
    assert built.patch == b"" and built.files == ()


def test_a_starting_commit_the_repository_does_not_have_is_a_clear_error(tmp_path):
    top = tmp_path / "r"
    repo(top, {"a.txt": "a\n"})
    snap = tmp_path / "snapshot"
    snapshot_workspace(str(top), str(snap))
    try:
        envelope.build(str(top), str(snap), base="0" * 40, branch="crewctl/g1", message="m\n")
    except envelope.EnvelopeError as exc:
        assert "starting commit 000000000000 is not in the workspace's repository" in str(exc)
    else:
        raise AssertionError("no error")


def test_porcelain_paths_lists_each_changed_path_once_with_a_rename_as_its_destination(tmp_path):
    import subprocess

    from crewctl.outputs.git import porcelain_paths

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "old name.txt").write_text("a\n")
    (tmp_path / "kept.txt").write_text("b\n")
    git("add", ".")
    git("commit", "-qm", "start")
    git("mv", "old name.txt", "new name.txt")
    (tmp_path / "kept.txt").write_text("changed\n")
    (tmp_path / "fresh.txt").write_text("c\n")
    out = git("status", "--porcelain=v1", "-z", "--untracked-files=all").decode()
    assert sorted(porcelain_paths(out)) == ["fresh.txt", "kept.txt", "new name.txt"]
    assert len(porcelain_paths(out, cap=2)) == 2
