"""The docs stand alone in a clone: their links resolve, nothing points at a design file
outside the repository, and the CLI that docs/contracts.md shows is the CLI that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from crewctl.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# What a clone does not have. Spelled here in two pieces so that this file, which must name
# them, does not trip its own check.
_OUTSIDE = ("../" + "shared", "DESIGN" + ".md")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower-case, punctuation dropped, spaces become hyphens."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in _HEADING.findall(text)}


def _relative_links(path: Path) -> list[str]:
    links = _LINK.findall(path.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]


def test_docs_folder_holds_the_architecture_contracts_and_contributing_guide():
    names = {p.name for p in DOCS}
    assert {"architecture.md", "contracts.md", "contributing.md", "two-machines.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_in_the_docs_points_at_a_file_in_the_repository(doc: Path):
    broken = []
    for link in _relative_links(doc):
        target, _, anchor = link.partition("#")
        where = (doc.parent / target).resolve() if target else doc
        if not where.exists() or ROOT not in (where, *where.parents):
            broken.append(f"{link}: no such file in the repository")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{link}: no heading #{anchor} in {where.relative_to(ROOT)}")
    assert broken == []


def test_no_tracked_file_sends_readers_outside_the_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    mentions = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        mentions += [f"{name}: {word}" for word in _OUTSIDE if word.encode() in data]
    assert mentions == []


def _cli_section() -> str:
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    match = re.search(r"^## CLI\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "docs/contracts.md has no '## CLI' section"
    return match.group(1)


def _shown_commands() -> dict[tuple[str, ...], set[str]]:
    """Each command path in the CLI section's synopsis, with the options shown for it.

    `crewctl goal pause | resume | cancel ID` shows three commands; lines indented deeper
    than a `crewctl` line continue it; `on|off`, `bash|zsh|fish` are values, not commands.
    """
    shown: dict[tuple[str, ...], set[str]] = {}
    path: tuple[str, ...] = ()
    for line in _cli_section().splitlines():
        if line.startswith("    crewctl "):
            tokens, path, in_path = line.split()[1:], (), True
        elif line.startswith("     ") and path:
            tokens, in_path = line.split(), False
        else:
            continue
        for token in tokens:
            if token == "|":
                path, in_path = path[:-1], True
            elif in_path and re.fullmatch(r"[a-z][a-z-]*", token):
                path += (token,)
                shown.setdefault(path, set())
            else:
                in_path = False
                shown[path] |= set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", token))
    return shown


def _help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    out = capsys.readouterr()
    return exited.value.code, out.out + out.err


def test_the_contracts_cli_section_shows_commands_at_all():
    shown = _shown_commands()
    assert ("goal", "new") in shown and "--criterion" in shown[("goal", "new")]
    assert ("goal", "cancel") in shown and ("keys", "list") in shown and ("completion",) in shown


def test_every_command_in_the_contracts_cli_section_exists_with_the_options_shown(capsys):
    top_code, top = _help((), capsys)
    assert top_code == 0
    missing = []
    for path, options in sorted(_shown_commands().items()):
        if not re.search(rf"^  {re.escape(path[0])}\s", top, re.M):
            missing.append(f"crewctl {path[0]}: not in `crewctl --help`")
            continue
        code, text = _help(path, capsys)
        if code != 0:
            missing.append(f"crewctl {' '.join(path)}: `--help` exits {code}")
            continue
        missing += [
            f"crewctl {' '.join(path)} {option}: not in its --help"
            for option in sorted(options)
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)
        ]
    assert missing == []
