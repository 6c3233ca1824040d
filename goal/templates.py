"""Goal templates: an objective, criteria with checks, protect patterns and a budget, with
`{placeholders}` filled from `crewctl goal new --template NAME --set KEY=VALUE`.

A template is TOML, the built-ins below as much as the operator's own in
`~/.config/crewctl/templates/NAME.toml` (the shell reads those files):

    description = "one line for `crewctl templates list`"
    objective = "Make the failing tests in {tests} pass ..."
    keys = ["tests", { name = "test_command", default = "python -m pytest -q", help = "..." }]
    protect = ["{tests}"]          # optional: replaces the default pinned patterns
    [budget]                       # optional: tokens, seconds, cost_usd
    seconds = 3600
    [[criteria]]
    text = "the tests in {tests} pass"
    check = "{test_command} {tests}"   # optional: a check command crewctl runs itself

`keys` names every placeholder the template uses, each a name (a value is required) or a
table with a `default` and a `help`. `{{` and `}}` are literal braces; any other brace is
left alone, so `${HOME}` or `awk '{print $1}'` need no escaping. A value is put in as it
is: `--set tests="tests/test_a.py tests/test_b.py"` gives a check command two paths, and
protect patterns split on spaces, so each path is pinned.

Pure: parsing TOML text is not I/O; finding files is the shell's (crewctl.outputs.templates).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..exceptions import UsageError
from .criteria import MAX_CRITERIA, check_command_problem

__all__ = ["BUILTIN", "Key", "Rendered", "Template", "TemplateError", "parse_template"]

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_KEY_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}")
_FIELDS = {"description", "objective", "keys", "protect", "budget", "criteria"}
_BUDGET_FIELDS = {"tokens": int, "seconds": float, "cost_usd": float}
_MAX_NUMBER = 1e12
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")


class TemplateError(UsageError):
    """A template that cannot be used as written (exit 2, like any bad input)."""


@dataclass(frozen=True)
class Key:
    name: str
    default: str | None = None
    help: str | None = None


@dataclass(frozen=True)
class Rendered:
    """A template with its values in: what `goal new` sends as if typed as flags."""

    objective: str
    criteria: tuple[dict[str, Any], ...]  # {"text", "verify"?: {"run": cmd}}
    protect: tuple[str, ...] | None  # None: the default patterns
    budget: Mapping[str, float]  # of tokens, seconds, cost_usd
    values: Mapping[str, str]


@dataclass(frozen=True)
class Template:
    name: str
    source: str  # "built-in" or the file it came from
    description: str
    objective: str
    criteria: tuple[tuple[str, str | None], ...]  # (text, check)
    keys: tuple[Key, ...]
    protect: tuple[str, ...] | None = None
    budget: Mapping[str, float] = field(default_factory=dict)
    text: str = ""  # the TOML it was read from

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys if k.default is None)

    def render(self, given: Mapping[str, str]) -> Rendered:
        """Fill the placeholders. A missing or unknown key is a usage error naming it."""
        known = {k.name: k for k in self.keys}
        for name, value in given.items():
            if name not in known:
                listing = ", ".join(known) or "none"
                raise TemplateError(f"template {self.name} has no key {name!r} (its keys: {listing})")
            if _CONTROL.search(value):
                raise TemplateError(f"--set {name}: the value must be one line without control characters")
        missing = [k for k in self.keys if k.default is None and not given.get(k.name, "").strip()]
        if missing:
            k = missing[0]
            why = f" ({k.help})" if k.help else ""
            more = f" (and {', '.join(m.name for m in missing[1:])})" if len(missing) > 1 else ""
            raise TemplateError(f"template {self.name} needs --set {k.name}=VALUE{why}{more}")
        values = {k.name: given[k.name] if given.get(k.name, "").strip() else (k.default or "") for k in self.keys}

        def fill(text: str) -> str:
            return _TOKEN.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], text)

        criteria = []
        for n, (text, check) in enumerate(self.criteria, 1):
            row: dict[str, Any] = {"text": fill(text)}
            if check is not None:
                command = fill(check)
                if problem := check_command_problem(command):
                    raise TemplateError(f"template {self.name}: criterion {n}'s check {problem} once filled in")
                row["verify"] = {"run": command}
            criteria.append(row)
        protect = None
        if self.protect is not None:
            protect = tuple(p for pattern in self.protect for p in fill(pattern).split())
        return Rendered(fill(self.objective), tuple(criteria), protect, dict(self.budget), values)


def parse_template(name: str, text: str, source: str) -> Template:
    """A template from its TOML text. Raises TemplateError saying what is wrong and where."""
    where = f"template {name} ({source})"
    if not _NAME.fullmatch(name):
        raise TemplateError(f"{where}: a template name is lowercase letters, digits and '-'")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise TemplateError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})")
    objective = data.get("objective")
    if not isinstance(objective, str) or not objective.strip():
        raise TemplateError(f"{where}: objective must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise TemplateError(f"{where}: description must be a string")
    keys = _keys(data.get("keys", []), where)
    criteria = _criteria(data.get("criteria"), where)
    protect = data.get("protect")
    if protect is not None:
        if not isinstance(protect, list) or not all(isinstance(p, str) and p.strip() for p in protect):
            raise TemplateError(f"{where}: protect must be a list of glob patterns")
        protect = tuple(protect)
    budget = _budget(data.get("budget", {}), where)
    declared = {k.name for k in keys}
    used: set[str] = set()
    for piece in [objective, *(t for t, _ in criteria), *(c for _, c in criteria if c), *(protect or ())]:
        used |= {m.group(1) for m in _TOKEN.finditer(piece) if m.group(1)}
    if used - declared:
        raise TemplateError(f"{where}: placeholder {{{sorted(used - declared)[0]}}} is not one of its keys")
    if declared - used:
        raise TemplateError(f"{where}: key {sorted(declared - used)[0]!r} is used by no placeholder")
    return Template(
        name=name, source=source, description=" ".join(description.split()), objective=objective.strip(),
        criteria=criteria, keys=keys, protect=protect, budget=budget, text=text,
    )


def _keys(raw: Any, where: str) -> tuple[Key, ...]:
    if not isinstance(raw, list):
        raise TemplateError(f"{where}: keys must be a list")
    keys: list[Key] = []
    for n, item in enumerate(raw, 1):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or set(item) - {"name", "default", "help"}:
            raise TemplateError(f"{where}: keys[{n}] is a name or a table with name, default and help")
        name, default, help_ = item.get("name"), item.get("default"), item.get("help")
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise TemplateError(f"{where}: keys[{n}]: a key name is lowercase letters, digits and '_'")
        if default is not None and (not isinstance(default, str) or _CONTROL.search(default)):
            raise TemplateError(f"{where}: key {name}: default must be a one-line string")
        if help_ is not None and not isinstance(help_, str):
            raise TemplateError(f"{where}: key {name}: help must be a string")
        if any(k.name == name for k in keys):
            raise TemplateError(f"{where}: key {name} appears twice")
        keys.append(Key(name, default, " ".join(help_.split()) if help_ else None))
    return tuple(keys)


def _criteria(raw: Any, where: str) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(raw, list) or not raw:
        raise TemplateError(f"{where}: needs at least one [[criteria]] with text")
    if len(raw) > MAX_CRITERIA:
        raise TemplateError(f"{where}: at most {MAX_CRITERIA} criteria")
    out = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, dict) or set(item) - {"text", "check"}:
            raise TemplateError(f"{where}: criteria[{n}] is a table with text and an optional check")
        text, check = item.get("text"), item.get("check")
        if not isinstance(text, str) or not text.strip():
            raise TemplateError(f"{where}: criteria[{n}] needs a non-empty text")
        if check is not None and (not isinstance(check, str) or not check.strip()):
            raise TemplateError(f"{where}: criteria[{n}].check must be a non-empty command")
        out.append((" ".join(text.split()), check))
    return tuple(out)


def _budget(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: [budget] must be a table")
    out: dict[str, float] = {}
    for key, value in raw.items():
        kind = _BUDGET_FIELDS.get(key)
        if kind is None:
            raise TemplateError(f"{where}: unknown budget {key!r} (budgets: {', '.join(_BUDGET_FIELDS)})")
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= _MAX_NUMBER
        if not ok or (kind is int and not isinstance(value, int)):
            raise TemplateError(f"{where}: budget.{key} must be a positive {'whole ' if kind is int else ''}number")
        out[key] = value
    return out


# -- the built-ins -------------------------------------------------------------------------
# Written the way an experienced engineer would brief a colleague: the criteria say what
# "done" means and, wherever a command can decide it, crewctl's own check runs it. Every
# check runs in a fresh copy of the work (no .git, nothing git-ignored), each on its own.

_TEST_COMMAND = (
    '{ name = "test_command", default = "python -m pytest -q", '
    'help = "the command that runs the whole test suite" }'
)

_BUILTIN_TEXT: dict[str, str] = {
    "fix-failing-tests": r'''
description = "Make failing tests pass by fixing the code under test; the tests are pinned."
objective = """Make the failing tests in {tests} pass by fixing the code they test. The tests \
are the specification: do not edit, skip, mark as expected failures or delete them (they are \
pinned: a changed test file holds the gate). Find the root cause, fix it, and keep the rest of \
the test suite passing."""
keys = [
  { name = "tests", help = "the failing test files, space-separated, e.g. tests/test_dates.py" },
  @TEST_COMMAND@,
]
protect = ["{tests}", "**/tests/**", "**/test/**", "**/test_*.py", "**/*_test.py"]

[budget]
seconds = 3600

[[criteria]]
text = "the previously failing tests pass: {tests}"
check = "{test_command} {tests}"

[[criteria]]
text = "the whole test suite passes"
check = "{test_command}"

[[criteria]]
text = """the fix is in the code under test and addresses the root cause: no test is edited, \
skipped or weakened, and no special case exists only to satisfy a test"""
''',
    "fix-issue": r'''
description = "Fix a reported bug: reproduce it with a regression test, then fix it."
objective = """Fix this issue: {issue}

First reproduce it with a new regression test that fails before the fix (add new tests in new \
test files: the existing ones are pinned). Then fix the cause, not the symptom, and keep the \
change focused on the issue."""
keys = [
  { name = "issue", help = "the issue: its title and what goes wrong, or its number and URL" },
  @TEST_COMMAND@,
]

[budget]
seconds = 7200

[[criteria]]
text = "a new regression test reproduces the issue: it fails on the code as it was and passes with the fix"

[[criteria]]
text = "the whole test suite passes, the new regression test included"
check = "{test_command}"

[[criteria]]
text = "the issue is fixed at its cause, as the issue describes it: {issue}"

[[criteria]]
text = """the change is focused: no unrelated refactoring, no new dependencies, no behaviour changed \
beyond the fix"""
''',
    "refactor-module": r'''
description = "Restructure one module without changing behaviour; the tests are pinned."
objective = """Refactor {module}: {aim}

Behaviour must not change: the existing tests are pinned and must pass unchanged; the module's \
public interface stays as it is. Keep the change reviewable."""
keys = [
  { name = "module", help = "the module or package to refactor, e.g. src/app/parser.py" },
  { name = "aim", help = "what the refactoring achieves, e.g. split parsing from validation" },
  @TEST_COMMAND@,
]
protect = ["**/tests/**", "**/test/**", "**/test_*.py", "**/*_test.py"]

[budget]
seconds = 7200

[[criteria]]
text = "the whole test suite passes, with the existing tests unchanged"
check = "{test_command}"

[[criteria]]
text = "the refactoring achieves what it set out to do: {aim}"

[[criteria]]
text = """the public interface of {module} is unchanged: every name other code imports from it still \
exists, with the same signature and behaviour"""

[[criteria]]
text = "no behaviour changed: no new features, no new dependencies, no error handling dropped"
''',
    "add-feature": r'''
description = "Add a feature with tests and documentation."
objective = """Add this feature: {feature}

Cover it with tests (in new test files: the existing ones are pinned), including its edge and \
error cases, and document it where its users will look (README, docs or --help)."""
keys = [
  { name = "feature", help = "what the feature does, for whom, and how it is used" },
  @TEST_COMMAND@,
]

[budget]
seconds = 10800

[[criteria]]
text = "the feature works as described, exercised the way a user would use it: {feature}"

[[criteria]]
text = "new tests cover the feature, including at least one edge case and one error case"

[[criteria]]
text = "the whole test suite passes, the new tests included"
check = "{test_command}"

[[criteria]]
text = "the feature is documented where its users look for it (README, docs or --help)"
''',
    "release-readiness": r'''
description = "Get a Python package ready to release: builds, metadata, version, changelog, tests."
objective = """Make the package ready to release version {version}: it builds an sdist and a \
wheel, the built metadata is complete and valid and says {version}, the changelog has an entry \
for {version}, and the tests pass. Change only what the release needs."""
keys = [
  { name = "version", help = "the version to release, as the built files name it, e.g. 1.4.0" },
  @TEST_COMMAND@,
  { name = "build_command", default = "python -m build", help = "builds the sdist and the wheel into dist/" },
  { name = "changelog", default = "CHANGELOG.md", help = "the changelog file" },
]

[budget]
seconds = 3600

[[criteria]]
text = """the package builds, and twine accepts the built metadata (name, version, summary, \
readme that renders, license)"""
check = "rm -rf dist && {build_command} && python -m twine check --strict dist/*"

[[criteria]]
text = "the built sdist and wheel carry version {version}"
check = "rm -rf dist && {build_command} && ls dist/*-{version}.tar.gz dist/*-{version}-*.whl"

[[criteria]]
text = "{changelog} has an entry for {version} that says what changed for users"
check = "grep -F -- '{version}' {changelog}"

[[criteria]]
text = "the whole test suite passes"
check = "{test_command}"

[[criteria]]
text = """the installation and usage instructions in the README match this release: no stale \
version, command or option"""
''',
    "investigate-build": r'''
description = "Find out why a build fails, fix it, and write down the root cause."
objective = """The build fails: `{command}`. Find out why, fix the cause, and write down what \
you found in {report}: the symptom, the root cause, the fix, and how to check it. Do not \
disable, skip or silence the failing step."""
keys = [
  { name = "command", help = "the build command that fails, e.g. make or python -m build" },
  { name = "report", default = "BUILD-INVESTIGATION.md", help = "where the findings go" },
]

[budget]
seconds = 3600

[[criteria]]
text = "the build succeeds from a clean copy of the work: {command}"
check = "{command}"

[[criteria]]
text = "{report} exists and is not empty"
check = "test -s {report}"

[[criteria]]
text = """{report} names the symptom, the root cause, the fix and how to check it, and the root \
cause it names is the real one"""

[[criteria]]
text = """the fix addresses the cause: no failing step is disabled, skipped, silenced or made to \
ignore its errors"""
''',
}

BUILTIN: dict[str, str] = {name: text.replace("@TEST_COMMAND@", _TEST_COMMAND).lstrip("\n") for name, text in _BUILTIN_TEXT.items()}
