"""The protected-path rules (goal/protect.py): globs, what check commands name, baselines, findings."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crewctl.goal import protect
from crewctl.goal.protect import ADD, FULL, Finding, RoundPlan, Scope

H1, H2 = "a" * 64, "b" * 64


# -- globs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "glob, path, expected",
    [
        ("**/tests/**", "tests/test_x.py", True),
        ("**/tests/**", "pkg/tests/data/in.json", True),
        ("**/tests/**", "tests", False),  # the directory itself is no file to pin
        ("**/tests/**", "contests/x.py", False),
        ("**/test_*.py", "test_x.py", True),
        ("**/test_*.py", "a/b/test_x.py", True),
        ("**/test_*.py", "a/b/xtest_x.py", False),
        ("**/*_test.py", "go/thing_test.py", True),
        ("pytest.ini", "pytest.ini", True),
        ("pytest.ini", "sub/pytest.ini", False),  # anchored: only the root's
        ("**/conftest.py", "conftest.py", True),
        ("**/conftest.py", "a/b/conftest.py", True),
        ("**/*.pth", "venv/lib/site-packages/evil.pth", True),
        (".git/hooks/**", ".git/hooks/pre-commit", True),
        ("src", "src/a/b.py", True),  # a pattern covers what lies under what it matches
        ("src/", "src/a.py", True),
        ("./src/*.py", "src/a.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/*.py", "src/odd.py/inner.txt", True),  # below a directory the pattern matches
        ("src/?.py", "src/ab.py", False),
        ("src/[ab].py", "src/b.py", True),
        ("src/[!ab].py", "src/b.py", False),
        ("src/[!ab].py", "src/c.py", True),
        ("*", ".hidden", True),  # dotfiles are files too
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a.py", "a_py", False),  # regex characters are literal
    ],
)
def test_a_glob_matches_what_it_says(glob, path, expected):
    assert protect.pattern_problem(glob) is None
    assert protect.matches(glob, path) is expected


@pytest.mark.parametrize(
    "glob, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "leaves the workspace"),
        ("a/../b", "leaves the workspace"),
        ("a\\b", "backslash"),
        ("a**", "** must stand alone"),
        ("a/**b/c", "** must stand alone"),
        ("a//b", "empty or '.'"),
        ("a/./b", "empty or '.'"),
        ("src/[ab.py", "unclosed"),
        ("x\ny", "control characters"),
        ("x" * 301, "longer than"),
        (None, "not text"),
    ],
)
def test_a_glob_that_cannot_be_read_is_refused_with_the_reason(glob, reason):
    assert reason in protect.pattern_problem(glob)


def test_an_invalid_pattern_matches_nothing_in_the_matcher():
    assert protect.matches("a**", "a**") is False
    assert protect.matcher(["a**", "b"])("b") is True


@given(st.text(max_size=40), st.text(max_size=40))
def test_glob_functions_never_raise_on_any_text(glob, path):
    protect.pattern_problem(glob)
    protect.matches(glob, path)


_segment = st.text(alphabet="abcxyz._-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@given(st.text(alphabet="abcxyz._-*?", min_size=1, max_size=8).filter(lambda s: "**" not in s and s not in (".", "..")), _segment)
def test_a_one_segment_glob_at_the_root_matches_like_fnmatch(glob, name):
    assert protect.matches(glob, name) is fnmatch.fnmatchcase(name, glob)


@given(st.lists(_segment, min_size=1, max_size=5), _segment)
def test_a_double_star_prefix_matches_a_name_at_any_depth(dirs, name):
    assert protect.matches(f"**/{name}", "/".join([*dirs, name]))
    assert protect.matches(f"**/{name}", name)


# -- what a check command names ---------------------------------------------------------------


FILES = frozenset({"check.sh", "scripts/verify.py", "tests/test_x.py", "pkg/mod.py", "tool/__main__.py", "cfg.ini", "src/a.py"})


@pytest.mark.parametrize(
    "command, named",
    [
        ("./check.sh", {"check.sh"}),
        ("python scripts/verify.py --strict", {"scripts/verify.py"}),
        ("python -m pytest tests/test_x.py::test_one -q", {"tests/test_x.py"}),
        ("python -m pkg.mod", {"pkg/mod.py"}),
        ("python -mtool", {"tool/__main__.py"}),
        ("sh -c './check.sh && python scripts/verify.py'", {"check.sh", "scripts/verify.py"}),
        ("pytest --config=cfg.ini", {"cfg.ini"}),
        ("make test; ./check.sh|tee log", {"check.sh"}),
        ("ruff check src/", set()),  # a directory is not pinned
        ("cat /etc/passwd ../outside.py", set()),
        ("echo 'unbalanced", set()),
    ],
)
def test_a_check_command_names_the_workspace_files_it_runs(command, named):
    assert protect.named_files([command], FILES) == frozenset(named)


@given(st.text(max_size=80))
def test_reading_a_check_command_never_raises(command):
    protect.named_files([command], FILES)


# -- baselines ----------------------------------------------------------------------------------


def defaults(checks=("python -m pytest",)) -> Scope:
    return protect.scope(protect.settings(), checks)


def test_the_default_pinned_patterns_apply_only_when_a_criterion_has_a_check():
    assert protect.scope(protect.settings(), ()).pinned == ()
    assert protect.scope(protect.settings(), ("pytest",)).pinned == protect.DEFAULT_PINNED
    explicit = protect.settings(["src/**"])
    assert protect.scope(explicit, ()).pinned == ("src/**",)  # the operator's own apply always
    assert protect.scope(explicit, ("pytest",)).forbidden == protect.FORBIDDEN


def test_a_full_baseline_pins_tests_named_files_and_records_forbidden_ones_present():
    sc = defaults(("./check.sh",))
    observed = {"tests/test_x.py": H1, "check.sh": H1, "conftest.py": H2, "tests/conftest.py": H2}
    entries, unmatched = protect.build_baseline(sc, observed, (), FULL)
    assert entries == (
        ("forbidden", "conftest.py", H2),
        ("forbidden", "tests/conftest.py", H2),
        ("named", "check.sh", H1),
        ("pinned", "tests/conftest.py", H2),
        ("pinned", "tests/test_x.py", H1),
    )
    assert protect.pinned_files(entries) == ["check.sh", "tests/conftest.py", "tests/test_x.py"]
    assert unmatched == ("**/test/**", "**/*_test.py")  # (the phase machine warns only about the operator's own)


def test_candidates_are_every_listed_path_a_baseline_needs_and_no_other():
    paths = ["tests/a.py", "src/b.py", "check.sh", "x/conftest.py", ".git/hooks/pre-commit"]
    assert protect.candidates(defaults(("./check.sh",)), paths) == {"tests/a.py", "check.sh", "x/conftest.py", ".git/hooks/pre-commit"}


def test_an_add_baseline_pins_newly_covered_files_but_never_absorbs_a_forbidden_one():
    sc = protect.scope(protect.settings(["src/**", "tests/**"]), ("pytest",))
    old = (("pinned", "tests/a.py", H1),)
    observed = {"tests/a.py": H2, "src/b.py": H2, "conftest.py": H2}  # a.py changed, conftest added meanwhile
    entries, _ = protect.build_baseline(sc, observed, old, ADD)
    assert entries == (("pinned", "src/b.py", H2), ("pinned", "tests/a.py", H1))


def test_patterns_that_match_nothing_are_reported():
    sc = protect.scope(protect.settings(["src/**", "nothing/**"]), ())
    _, unmatched = protect.build_baseline(sc, {"src/a.py": H1}, (), FULL)
    assert unmatched == ("nothing/**",)


def test_removing_a_pattern_prunes_only_the_files_it_alone_covered():
    entries = (("forbidden", "conftest.py", H1), ("named", "check.sh", H1), ("pinned", "src/a.py", H1), ("pinned", "tests/t.py", H1))
    p = protect.edited(protect.settings(["src/**", "tests/**"]), add=(), remove=("src/**", "**/conftest.py"))
    assert p.patterns == ("tests/**",) and "**/conftest.py" not in p.forbidden
    assert protect.prune(entries, protect.scope(p, ("./check.sh",))) == (("named", "check.sh", H1), ("pinned", "tests/t.py", H1))


def test_editing_the_pinned_patterns_makes_them_the_operators_own():
    p = protect.edited(protect.settings(), add=("fixtures/**",), remove=())
    assert p.defaults is False and p.patterns[-1] == "fixtures/**"
    assert protect.edited(protect.settings(), add=(), remove=("**/conftest.py",)).defaults is True


# -- a round ------------------------------------------------------------------------------------


BASE = (
    ("forbidden", "conftest.py", H1),
    ("named", "check.sh", H1),
    ("pinned", "tests/a.py", H1),
    ("pinned", "tests/b.py", H1),
)
PLAN = RoundPlan(entries=BASE, forbidden=protect.FORBIDDEN)
SAME = {"conftest.py": H1, "check.sh": H1, "tests/a.py": H1, "tests/b.py": H1}


def test_an_unchanged_snapshot_has_no_findings_and_new_test_files_are_fine():
    assert protect.compare(PLAN, {**SAME, "tests/c.py": H2, "src/x.py": H2}) == ()


def test_every_way_a_protected_path_changes_is_a_finding():
    hashes = {"check.sh": H2, "tests/a.py": H1, "pkg/conftest.py": H1, "pytest.ini": H1, "conftest.py": H2}
    assert protect.compare(PLAN, hashes, on_disk={"tests/b.py"}) == (
        Finding("check.sh", "changed", "named"),
        Finding("conftest.py", "changed", "forbidden"),
        Finding("pkg/conftest.py", "added", "forbidden"),
        Finding("pytest.ini", "added", "forbidden"),
        Finding("tests/b.py", "missing", "pinned"),
    )


def test_a_forbidden_file_present_at_lock_may_not_be_deleted_either():
    hashes = {k: v for k, v in SAME.items() if k != "conftest.py"}
    assert protect.compare(PLAN, hashes) == (Finding("conftest.py", "deleted", "forbidden"),)


def test_wanted_names_every_baseline_path_and_every_forbidden_match():
    assert protect.wanted(PLAN, ["src/x.py", "a/sitecustomize.py", "tests/a.py"]) == {
        "conftest.py", "check.sh", "tests/a.py", "tests/b.py", "a/sitecustomize.py",
    }


def test_a_round_without_a_baseline_holds_with_the_way_out():
    p = protect.settings()
    plan = protect.round_plan(p, (), "g1")
    assert "no protected-path baseline" in plan.problem and "crewctl goal protect g1 --rebaseline" in plan.problem
    assert protect.round_plan(protect.settings(enabled=False), (), "g1") is None


def test_a_damaged_baseline_holds_instead_of_protecting_nothing():
    plan = RoundPlan(entries=(("pinned", "tests/a.py"), 7, ("pinned", "tests/b.py", H1)), forbidden=())
    findings = protect.compare(plan, {"tests/a.py": H1, "tests/b.py": H1})
    assert findings == (Finding("tests/a.py", "changed", "pinned"),)


_paths = st.lists(st.builds("/".join, st.lists(_segment, min_size=1, max_size=3)), max_size=12, unique=True)


@settings(max_examples=200)
@given(_paths, _paths, st.data())
def test_a_snapshot_equal_to_its_baseline_never_holds_and_any_change_to_a_pinned_file_does(pinned, extra, data):
    sc = protect.scope(protect.settings(["**"]), ())
    observed = {p: H1 for p in pinned if not protect.matcher(protect.FORBIDDEN)(p)}
    entries, _ = protect.build_baseline(sc, observed, (), FULL)
    plan = RoundPlan(entries=entries, forbidden=protect.FORBIDDEN)
    assert protect.compare(plan, observed) == ()
    if observed:
        victim = data.draw(st.sampled_from(sorted(observed)))
        changed = {**observed, victim: H2}
        assert [f.path for f in protect.compare(plan, changed)] == [victim]
        gone = {k: v for k, v in observed.items() if k != victim}
        assert protect.compare(plan, gone) == (Finding(victim, "deleted", "pinned"),)


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=3), st.integers(), st.none()), max_size=6))
def test_compare_never_raises_on_odd_data(hashes):
    protect.compare(PLAN, hashes, on_disk=list(hashes))
    protect.describe(protect.compare(PLAN, hashes))


def test_describe_says_what_happened_in_one_line_capped():
    findings = [Finding(f"t/{i}\nx.py", "deleted", "pinned") for i in range(25)] + [Finding("conftest.py", "added", "forbidden")]
    text = protect.describe(sorted(findings), limit=3)
    assert "\n" not in text and text.endswith("and 23 more")
    assert protect.describe([Finding("conftest.py", "added", "forbidden")]) == "conftest.py (added, forbidden)"
    assert "untracked or git-ignored" in protect.describe([Finding("a.py", "missing", "pinned")])
