"""Protected paths: the files a goal's check commands rely on, and whether a round still has them.

A check command is only as honest as the files it runs. At LOCK (or at creation with
criteria) the supervisor records a **baseline** (docs/contracts.md, "Protected paths"):

- **pinned**: files that exist at lock time and match the goal's protect patterns (by
  default, when some criterion has a check command: everything under `tests/` or `test/`,
  every `test_*.py` and `*_test.py`) or that a check command names (`./check.sh`,
  `scripts/verify.py`). A pinned file may not change or vanish.
- **forbidden**: patterns no file may newly match or change (`**/conftest.py`,
  `pytest.ini`, ... `.git/hooks/**`).

Every round compares the snapshot with the baseline (`compare`); any finding holds the round
before a single check runs. This module is the whole rule: the supervisor lists and hashes
files (outside any sandbox) and hands the results in; nothing here touches a file.

Decisions the contract leaves open, made here fail-closed:

- Patterns are anchored at the workspace root and use `/`. `*`, `?` and `[...]` stay within
  one path segment and match dotfiles too; `**` as a whole segment matches any number of
  segments, none included. A pattern also covers everything under a directory it matches
  (`vendor` means `vendor/**` too), so a pattern never protects less than it seems to.
- `tests/` and `test/` are pinned at any depth (`**/tests/**`), not only at the root: a test
  directory is a test directory wherever it sits.
- A check command names a file when one of its words (split as a POSIX shell would, and
  again at `=`, `::` and inside quoted sub-commands) is, read relative to the workspace, a
  file there; `python -m pkg.mod` names `pkg/mod.py`, `pkg/mod/__main__.py` and
  `pkg/mod/__init__.py`. A directory it names is not pinned: `ruff check src/` must not
  freeze `src/`.
- A forbidden file present at lock that is deleted counts as changed: a deleted
  `conftest.py` changes what pytest runs as much as an edited one.
- A pinned file still in the workspace but not in the snapshot (git-ignored, or untracked
  with `git rm --cached`) is `missing`; gone from both, it is `deleted`. Either holds.
- A round with protection on and no baseline (it could not be recorded) holds: no
  baseline, no proof.
- Rebaselining "add" (a new pattern, a new check command) pins files at their current
  content but never absorbs a forbidden file: only a full `--rebaseline` by the operator
  accepts one.
- A glob that cannot be read (empty, absolute, `..`, `\\`, control characters, `**` inside
  a segment, an unclosed `[`) is refused with a reason, never guessed at; in the matcher,
  a pattern that fails validation matches nothing (every entry point validates first).
- Nothing here raises on data: odd paths, hashes or commands give findings or nothing.
"""

from __future__ import annotations

import functools
import posixpath
import re
import shlex
from dataclasses import dataclass, replace
from typing import Callable, Collection, Iterable, Mapping, NamedTuple

from .model import Protect

__all__ = [
    "ADD",
    "ADDED",
    "CHANGED",
    "DEFAULT_PINNED",
    "DELETED",
    "FORBIDDEN",
    "FORBIDDEN_RULE",
    "FULL",
    "Finding",
    "GIT_HOOKS",
    "MISSING",
    "NAMED_RULE",
    "PINNED_RULE",
    "RoundPlan",
    "Scope",
    "build_baseline",
    "candidates",
    "capped",
    "compare",
    "describe",
    "edited",
    "forbidden_present",
    "matcher",
    "matches",
    "named_files",
    "pattern_problem",
    "pinned_files",
    "prune",
    "round_plan",
    "scope",
    "settings",
    "wanted",
]

DEFAULT_PINNED = ("**/tests/**", "**/test/**", "**/test_*.py", "**/*_test.py")
FORBIDDEN = (
    "**/conftest.py",
    "pytest.ini",
    "tox.ini",
    "setup.cfg",
    "noxfile.py",
    "**/pytest.py",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "**/*.pth",
    ".git/hooks/**",
)
GIT_HOOKS = ".git/hooks/"  # the one place inside .git a listing reaches: forbidden, never copied

# Why a baseline entry exists.
PINNED_RULE = "pinned"  # matches a protect pattern
NAMED_RULE = "named"  # a check command names it
FORBIDDEN_RULE = "forbidden"  # matches a forbidden pattern (present at lock)

# What happened to a path.
CHANGED, DELETED, MISSING, ADDED = "changed", "deleted", "missing", "added"

# Baseline modes.
FULL, ADD = "full", "add"

MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 300
MAX_FINDINGS = 200  # in the timeline; the count says how many there were
MAX_FINDINGS_KEPT = 50  # in the goal's state (rewritten with every commit until a clean round)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


class Finding(NamedTuple):
    path: str
    kind: str  # CHANGED, DELETED, MISSING or ADDED
    rule: str  # PINNED_RULE, NAMED_RULE or FORBIDDEN_RULE


# -- settings ---------------------------------------------------------------------------------


def settings(patterns: Iterable[str] | None = None, *, enabled: bool = True, off: str | None = None) -> Protect:
    """A new goal's protection: the given pinned patterns (replacing the defaults) or the defaults."""
    if not enabled:
        return Protect(enabled=False, off=off or "--no-protect")
    chosen = tuple(dict.fromkeys(patterns or ()))
    return Protect(
        enabled=True,
        patterns=chosen or DEFAULT_PINNED,
        defaults=not chosen,
        forbidden=FORBIDDEN,
    )


@dataclass(frozen=True)
class Scope:
    """What a baseline covers: effective pinned patterns, forbidden patterns, check commands."""

    pinned: tuple[str, ...]
    forbidden: tuple[str, ...]
    checks: tuple[str, ...]


def scope(p: Protect, checks: Iterable[str]) -> Scope:
    """The built-in pinned defaults apply only when some criterion has a check command."""
    commands = tuple(c for c in checks if isinstance(c, str))
    pinned = p.patterns if (commands or not p.defaults) else ()
    return Scope(pinned=tuple(pinned), forbidden=tuple(p.forbidden), checks=commands)


# -- globs ------------------------------------------------------------------------------------


def pattern_problem(glob: object) -> str | None:
    """Why `glob` is not a usable protect pattern, or None. Never raises."""
    if not isinstance(glob, str):
        return "is not text"
    if not glob.strip():
        return "is empty"
    if len(glob) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    if _CONTROL.search(glob):
        return "contains control characters"
    if "\\" in glob:
        return "contains a backslash (use / between directories; escapes are not supported)"
    if glob.startswith("/"):
        return "is absolute (patterns are relative to the workspace)"
    body = _normalise(glob)
    for segment in body.split("/"):
        if segment in ("", "."):
            return "has an empty or '.' path segment"
        if segment == "..":
            return "leaves the workspace ('..')"
        if "**" in segment and segment != "**":
            return "uses ** inside a path segment (** must stand alone between slashes)"
        if _unclosed_class(segment):
            return "has an unclosed '['"
    return None


def _normalise(glob: str) -> str:
    while glob.startswith("./"):
        glob = glob[2:]
    if glob.endswith("/"):
        glob = glob.rstrip("/") + "/**"
    return glob


def _unclosed_class(segment: str) -> bool:
    i = 0
    while i < len(segment):
        if segment[i] == "[":
            j = i + 1
            if j < len(segment) and segment[j] in "!^":
                j += 1
            if j < len(segment) and segment[j] == "]":
                j += 1
            while j < len(segment) and segment[j] != "]":
                j += 1
            if j >= len(segment):
                return True
            i = j
        i += 1
    return False


def _segment_regex(segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = i + 1
            negate = j < len(segment) and segment[j] in "!^"
            if negate:
                j += 1
            start = j
            if j < len(segment) and segment[j] == "]":
                j += 1
            while j < len(segment) and segment[j] != "]":
                j += 1
            body = segment[start:j].replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(("[^/" if negate else "[") + body + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _glob_regex(glob: str) -> str:
    parts = _normalise(glob).split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(part) + ("" if last else "/"))
    # ...and everything under whatever it matches.
    return "(?:" + "".join(out) + ")(?:/.*)?"


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    usable = [p for p in patterns if pattern_problem(p) is None]
    if not usable:
        return lambda path: False
    regex = re.compile("|".join(_glob_regex(p) for p in usable), re.DOTALL)
    fullmatch = regex.fullmatch
    return lambda path: isinstance(path, str) and fullmatch(path) is not None


def matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """One function that says whether a path matches any of `patterns`."""
    return _compiled(tuple(patterns))


def matches(pattern: str, path: str) -> bool:
    return _compiled((pattern,))(path)


# -- what check commands name ---------------------------------------------------------------

_SHELL_WORDS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "<", ">", ">>", "<<", "<&", ">&", "|&"})


def _words(command: str, depth: int = 0) -> list[str]:
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the shell would refuse it; take the words as they come
        words = command.split()
    out: list[str] = []
    for w in words:
        if w in _SHELL_WORDS:
            continue
        if depth < 3 and any(c.isspace() for c in w):
            out.extend(_words(w, depth + 1))  # `sh -c "./check.sh && pytest"`
            continue
        out.append(w)
    return out


def _as_relative(word: str) -> str | None:
    word = word.split("::", 1)[0]  # pytest node ids: tests/test_x.py::test_y
    if not word or word.startswith("/") or word.startswith("-"):
        return None
    path = posixpath.normpath(word)
    if path in (".", "") or path == ".." or path.startswith("../"):
        return None
    return path


def named_files(commands: Iterable[str], paths: Collection[str]) -> frozenset[str]:
    """The workspace files among `paths` that the check commands name."""
    present = paths if isinstance(paths, (set, frozenset)) else frozenset(paths)
    named: set[str] = set()
    for command in commands:
        if not isinstance(command, str):
            continue
        words = _words(command)
        for i, word in enumerate(words):
            pieces = [word]
            if "=" in word:
                pieces += word.split("=")[1:]  # --rootdir=tests/x, PYTHONPATH=...
            for piece in pieces:
                rel = _as_relative(piece)
                if rel is not None and rel in present:
                    named.add(rel)
            module = None
            if word == "-m" and i + 1 < len(words):
                module = words[i + 1]
            elif word.startswith("-m") and len(word) > 2 and not word.startswith("--"):
                module = word[2:]
            if module and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
                base = module.replace(".", "/")
                for rel in (base + ".py", base + "/__main__.py", base + "/__init__.py"):
                    if rel in present:
                        named.add(rel)
    return frozenset(named)


# -- the baseline ---------------------------------------------------------------------------


def candidates(sc: Scope, paths: Iterable[str]) -> frozenset[str]:
    """The listed paths a baseline needs hashes of: pinned, named and forbidden ones."""
    listed = [p for p in paths if isinstance(p, str)]
    pinned, forbidden = matcher(sc.pinned), matcher(sc.forbidden)
    out = {p for p in listed if pinned(p) or forbidden(p)}
    out |= named_files(sc.checks, frozenset(listed))
    return frozenset(out)


def build_baseline(
    sc: Scope,
    observed: Mapping[str, str],
    old: tuple[tuple[str, str, str], ...],
    mode: str,
) -> tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]:
    """The new baseline entries (rule, path, hash) and the pinned patterns that matched nothing.

    `observed` maps each candidate path to its content hash. FULL replaces the baseline;
    ADD keeps every entry and pins what is newly covered, but never adds a forbidden file.
    """
    seen = {p: h for p, h in observed.items() if isinstance(p, str) and isinstance(h, str)}
    pinned, forbidden = matcher(sc.pinned), matcher(sc.forbidden)
    named = named_files(sc.checks, frozenset(seen))
    fresh: dict[tuple[str, str], str] = {}
    for path, digest in seen.items():
        if pinned(path):
            fresh[(PINNED_RULE, path)] = digest
        elif path in named:
            fresh[(NAMED_RULE, path)] = digest
        if forbidden(path):
            fresh[(FORBIDDEN_RULE, path)] = digest
    if mode == ADD:
        entries = {(r, p): h for r, p, h in old}
        held = {p for r, p in entries if r in (PINNED_RULE, NAMED_RULE)}
        for (rule, path), digest in fresh.items():
            if rule != FORBIDDEN_RULE and path not in held:
                entries[(rule, path)] = digest
    else:
        entries = fresh
    unmatched = tuple(pat for pat in sc.pinned if not any(matches(pat, p) for p in seen))
    return _sorted_entries(entries), unmatched


def prune(entries: tuple[tuple[str, str, str], ...], sc: Scope) -> tuple[tuple[str, str, str], ...]:
    """Drop entries no pattern covers any more (after `goal protect --remove`)."""
    pinned, forbidden = matcher(sc.pinned), matcher(sc.forbidden)
    keep = {}
    for rule, path, digest in entries:
        if (rule == PINNED_RULE and pinned(path)) or rule == NAMED_RULE or (rule == FORBIDDEN_RULE and forbidden(path)):
            keep[(rule, path)] = digest
    return _sorted_entries(keep)


def _sorted_entries(entries: Mapping[tuple[str, str], str]) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted((rule, path, digest) for (rule, path), digest in entries.items()))


# -- a round ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundPlan:
    """What one round's protected-path check compares against (carried by StartRound)."""

    entries: tuple[tuple[str, str, str], ...]
    forbidden: tuple[str, ...]
    problem: str | None = None  # set: the round holds with this reason, whatever the files say


def round_plan(p: Protect, baseline: tuple[tuple[str, str, str], ...], goal_id: str) -> RoundPlan | None:
    """The check for the next round, or None when protection is off."""
    if not p.enabled:
        return None
    problem = None
    if p.baseline_at is None:
        why = f" ({p.error})" if p.error else ""
        problem = (
            f"no protected-path baseline was recorded{why}; the operator can record one with "
            f"`crewctl goal protect {goal_id} --rebaseline`"
        )
    return RoundPlan(entries=baseline, forbidden=tuple(p.forbidden), problem=problem)


def wanted(plan: RoundPlan, paths: Iterable[str]) -> frozenset[str]:
    """The paths whose hashes `compare` needs: every baseline path, and every listed path
    that matches a forbidden pattern."""
    forbidden = matcher(plan.forbidden)
    out = {p for _, p, _ in plan.entries}
    out |= {p for p in paths if isinstance(p, str) and forbidden(p)}
    return frozenset(out)


def compare(plan: RoundPlan, hashes: Mapping[str, str], on_disk: Collection[str] = ()) -> tuple[Finding, ...]:
    """Findings for one round, sorted by path, one per path (the first rule that caught it).

    `hashes` maps each path present in the snapshot (resolved inside it) to its content
    hash, at least for the paths `wanted` names; `on_disk` holds paths that exist in the
    lead's workspace although the snapshot lacks them.
    """
    found: dict[str, Finding] = {}

    def note(path: str, kind: str, rule: str) -> None:
        if path not in found:
            found[path] = Finding(path, kind, rule)

    known_forbidden = set()
    for rule, path, digest in _entries(plan.entries):
        if rule == FORBIDDEN_RULE:
            known_forbidden.add(path)
        now = hashes.get(path)
        if now is None:
            note(path, MISSING if path in on_disk else DELETED, rule)
        elif now != digest:
            note(path, CHANGED, rule)
    forbidden = matcher(plan.forbidden)
    for path in hashes:
        if path not in known_forbidden and forbidden(path):
            note(path, ADDED, FORBIDDEN_RULE)
    return tuple(sorted(found.values()))


def _entries(entries: Iterable) -> Iterable[tuple[str, str, str]]:
    """Well-formed baseline entries; anything else is a pinned path with an impossible hash,
    so a damaged baseline holds rounds instead of protecting nothing."""
    for entry in entries:
        if isinstance(entry, (tuple, list)) and len(entry) == 3 and all(isinstance(x, str) for x in entry):
            yield entry[0], entry[1], entry[2]
        elif isinstance(entry, (tuple, list)) and entry and isinstance(entry[-1], str):
            yield PINNED_RULE, str(entry[1] if len(entry) > 1 else entry[0]), "\0damaged"


_KIND_TEXT = {
    CHANGED: "changed",
    DELETED: "deleted",
    MISSING: "missing from the snapshot: untracked or git-ignored",
    ADDED: "added",
}


def describe(findings: Iterable[Finding | tuple], limit: int = 20) -> str:
    """`tests/test_x.py (deleted), conftest.py (added, forbidden)`: one line for people and prompts."""
    items = [Finding(*f) if not isinstance(f, Finding) else f for f in findings if len(f) == 3]
    parts = []
    for f in items[:limit]:
        what = _KIND_TEXT.get(f.kind, f.kind)
        parts.append(f"{_CONTROL.sub('?', str(f.path))} ({what}{', forbidden' if f.rule == FORBIDDEN_RULE else ''})")
    if len(items) > limit:
        parts.append(f"and {len(items) - limit} more")
    return ", ".join(parts)


def pinned_files(entries: Iterable[tuple[str, str, str]]) -> list[str]:
    return sorted({p for r, p, _ in entries if r in (PINNED_RULE, NAMED_RULE)})


def forbidden_present(entries: Iterable[tuple[str, str, str]]) -> list[str]:
    return sorted({p for r, p, _ in entries if r == FORBIDDEN_RULE})


def capped(findings: tuple[Finding, ...], limit: int = MAX_FINDINGS_KEPT) -> tuple[tuple[str, str, str], ...]:
    return tuple((f.path, f.kind, f.rule) for f in findings[:limit])


def edited(p: Protect, add: Iterable[str], remove: Iterable[str]) -> Protect:
    """Protection after `goal protect --add/--remove` (validated by the caller)."""
    add, remove = tuple(add), tuple(remove)
    patterns = tuple(x for x in p.patterns if x not in remove)
    patterns += tuple(g for g in dict.fromkeys(add) if g not in patterns)
    forbidden = tuple(x for x in p.forbidden if x not in remove)
    # Once the operator touches the pinned list it is theirs: it applies with or without checks.
    return replace(p, patterns=patterns, forbidden=forbidden, defaults=p.defaults and patterns == p.patterns)
