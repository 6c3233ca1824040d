"""What a finished goal leaves behind: reflection, memory, skills, templates, the PR envelope.

Through the installed binary and a real `crewctl run`; agents are `exec:` scripts (and the
demo's scripted lead), git repositories are real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from crewctl.cli.demo import BUGGY, FIXED, TESTS
from crewctl.testing import PASS_EVERY_CRITERION, Supervisor, run_cli, wait_until, write_agent
from crewctl.testing.agents import agent_state_dir

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Operator",
    "GIT_AUTHOR_EMAIL": "op@example.com",
    "GIT_COMMITTER_NAME": "Operator",
    "GIT_COMMITTER_EMAIL": "op@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def state(tmp_path, name: str):
    """The state folder of the test agent `name` (the one place a sandboxed agent writes)."""
    return Path(agent_state_dir(tmp_path, name))


def git(cwd, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=str(cwd), env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def git_repo(path, files: dict[str, str]) -> str:
    """A repository at `path` with one commit of `files`; returns the commit."""
    path.mkdir(exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Operator")
    git(path, "config", "user.email", "op@example.com")
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "the starting point")
    return git(path, "rev-parse", "HEAD").strip()


def reflecting_lead(tmp_path, name: str, work: str, reflect: dict | None = None) -> str:
    """A lead whose work turns run `work` then say READY, and whose brain, as the
    reflector, records its prompt and environment and answers with `reflect`."""
    reflect = reflect or {"summary": "done", "lessons": [], "memory": []}
    return write_agent(tmp_path, name, f"""
        if role == "reflector":
            n = count("reflections")
            open(os.path.join(state_dir, "reflect-prompt%d" % n), "w").write(prompt)
            json.dump(env, open(os.path.join(state_dir, "reflect-env%d" % n), "w"))
            try:  # the workspace is read-only for the reflection
                open("reflector-was-here", "w").write("x")
                open(os.path.join(state_dir, "reflector-wrote"), "w").write("yes")
            except OSError as exc:
                open(os.path.join(state_dir, "reflector-wrote"), "w").write("no: %s" % exc)
            marker("REFLECT", {reflect!r})
        else:
            n = count()
            open(os.path.join(state_dir, "prompt%d" % n), "w").write(prompt)
            json.dump(env, open(os.path.join(state_dir, "env%d" % n), "w"))
{_indent(work, 12)}
            marker("READY", {{"summary": "done"}})
    """)


def _indent(code: str, n: int) -> str:
    return textwrap.indent(textwrap.dedent(code).strip() or "pass", " " * n)


def recording_verifier(tmp_path, name: str = "verifier") -> str:
    records = 'open(os.path.join(state_dir, "prompt%d" % count()), "w").write(prompt)\n'
    return write_agent(tmp_path, name, records + textwrap.dedent(PASS_EVERY_CRITERION))


def signed_off(sup: Supervisor, goal: str) -> dict:
    sup.wait_for_status(goal, "awaiting_signoff")
    sup.wait_for_event(goal, "envelope")
    sup.cli("goal", "signoff", goal)
    return sup.wait_for_event(goal, "reflection")


# -- reflection and memory --------------------------------------------------------------------


def test_a_signed_off_goal_reflects_and_its_memory_reaches_the_next_lead_but_never_its_verifier(sup, ws, tmp_path):
    memory = [
        {"kind": "fact", "text": "the widget catalogue lives in widgets.txt, one per line"},
        {"kind": "preference", "text": "the operator wants no new dependencies"},
    ]
    lead = reflecting_lead(tmp_path, "lead", 'open("widgets.txt", "w").write("w1\\n")',
                           {"summary": "wrote the catalogue", "lessons": ["read the README first"], "memory": memory})
    first = sup.new_goal("write the widget catalogue", "--criterion", "it exists", "--check", "test -f widgets.txt",
                         lead=lead, workspace=ws)
    reflection = signed_off(sup, first)

    assert reflection["payload"]["ok"] is True and reflection["payload"]["memory"] == memory
    assert sup.show(first)["status"] == "done" and sup.show(first)["reflection"] == {"status": "ok", "tries": 1}
    reflector_env = json.load(open(state(tmp_path, "lead") / "reflect-env1"))
    lead_env = json.load(open(state(tmp_path, "lead") / "env1"))
    assert reflector_env["CREWCTL_ROLE"] == "reflector"
    assert reflector_env["CREWCTL_SESSION"] != lead_env["CREWCTL_SESSION"]  # a fresh session
    assert state(tmp_path, "lead").joinpath("reflector-wrote").read_text().startswith("no: ")
    assert not os.path.exists(os.path.join(ws, "reflector-was-here"))
    digest = (state(tmp_path, "lead") / "reflect-prompt1").read_text()
    assert "write the widget catalogue" in digest and "test -f widgets.txt" in digest

    shown = sup.cli("memory", "show", "--workspace", ws).stdout
    assert "- [fact] the widget catalogue lives in widgets.txt, one per line" in shown
    assert "- [preference] the operator wants no new dependencies" in shown
    as_json = sup.cli("memory", "show", "--workspace", ws, "--json").json()
    assert [(e["kind"], e["text"]) for e in as_json["entries"]] == [(m["kind"], m["text"]) for m in memory]
    assert sup.cli("memory", "path", "--workspace", ws).stdout.strip() == as_json["path"]

    lead2 = write_agent(tmp_path, "lead2", """
        n = count()
        open(os.path.join(state_dir, "prompt%d" % n), "w").write(prompt)
        if n == 1:
            say("looking around first")
        else:
            marker("READY", {"summary": "checked"})
    """)
    second = sup.new_goal("add a widget", "--criterion", "the catalogue reads well", lead=lead2,
                          verifier=recording_verifier(tmp_path), workspace=ws)
    sup.wait_for_status(second, "awaiting_signoff")
    first_prompt = (state(tmp_path, "lead2") / "prompt1").read_text()
    later_prompt = (state(tmp_path, "lead2") / "prompt2").read_text()
    verifier_prompt = (state(tmp_path, "verifier") / "prompt1").read_text()
    for entry in memory:
        assert entry["text"] in first_prompt
        assert entry["text"] not in later_prompt
        assert entry["text"] not in verifier_prompt
    # newest first: the entry appended last comes first
    assert first_prompt.index(memory[1]["text"]) < first_prompt.index(memory[0]["text"])


def test_the_same_memory_entry_is_not_added_twice(sup, ws, tmp_path):
    entry = {"kind": "strategy", "text": "Run the fast unit tests before the slow ones."}
    lead = reflecting_lead(tmp_path, "lead", "", {"summary": "s", "memory": [entry]})
    for n in (1, 2):
        goal = sup.new_goal(f"goal {n}", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        signed_off(sup, goal)
    entries = sup.cli("memory", "show", "--workspace", ws, "--json").json()["entries"]
    assert entries == [{"kind": "strategy", "text": "Run the fast unit tests before the slow ones."}]


def test_memory_edit_opens_the_file_in_the_editor_and_a_person_may_change_it(sup, ws, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf -- "- [preference] tabs, never spaces\\n" >> "$1"\n')
    editor.chmod(0o755)
    sup.cli("memory", "edit", "--workspace", ws, env={"VISUAL": str(editor)})
    entries = sup.cli("memory", "show", "--workspace", ws, "--json").json()["entries"]
    assert entries == [{"kind": "preference", "text": "tabs, never spaces"}]
    lead = write_agent(tmp_path, "lead", """
        open(os.path.join(state_dir, "prompt"), "w").write(prompt)
        marker("BLOCKED", {"reason": "enough"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "blocked")
    assert "- [preference] tabs, never spaces" in (state(tmp_path, "lead") / "prompt").read_text()


def test_a_reflect_block_in_a_work_turn_is_ignored(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        if role == "reflector":
            marker("REFLECT", {"summary": "the real one", "memory": []})
        else:
            marker("REFLECT", {"summary": "sneaky", "memory": [{"kind": "fact", "text": "planted by a work turn"}]})
            marker("READY", {"summary": "done"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    ignored = [e["payload"] for e in sup.events(goal) if e["type"] == "marker_ignored"]
    assert {"kind": "reflect", "role": "lead"}.items() <= ignored[0].items()
    assert "reflection" not in sup.event_types(goal)
    reflection = signed_off(sup, goal)
    assert reflection["payload"]["summary"] == "the real one"
    assert "planted by a work turn" not in sup.cli("memory", "show", "--workspace", ws).stdout


def test_a_malformed_reflection_is_retried_once_then_leaves_the_goal_done_with_the_error(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        if role == "reflector":
            count("reflections")
            say("CREW_REFLECT_BEGIN\\n{\\"summary\\": \\"x\\", \\"memory\\": [{\\"kind\\": \\"rumour\\", \\"text\\": \\"t\\"}]}\\nCREW_REFLECT_END")
            marker("READY", {"summary": "not mine to send"})
        else:
            marker("READY", {"summary": "done"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    reflection = signed_off(sup, goal)
    assert reflection["payload"]["ok"] is False
    assert "memory[1].kind" in reflection["payload"]["error"] and reflection["payload"]["tries"] == 2
    view = sup.show(goal)
    assert view["status"] == "done" and view["reflection"] == {"status": "failed", "tries": 2}
    assert (state(tmp_path, "lead") / "reflections").read_text() == "2"
    events = sup.events(goal)
    reflector_turns = [e for e in events if e["type"] == "turn_started" and e["payload"]["role"] == "reflector"]
    assert len(reflector_turns) == 2
    assert any(e["type"] == "marker_ignored" and e["payload"]["role"] == "reflector" and e["payload"]["kind"] == "ready" for e in events)
    assert [e["type"] for e in events].count("reflection") == 1
    assert not os.path.exists(sup.cli("memory", "path", "--workspace", ws).stdout.strip())


def test_a_reflector_that_fails_once_is_retried_and_its_second_answer_counts(sup, ws, tmp_path):
    reflector = write_agent(tmp_path, "reflector", """
        if count() == 1:
            sys.exit(3)
        marker("REFLECT", {"summary": "second time lucky", "memory": [{"kind": "fact", "text": "retries work"}]})
    """)
    lead = write_agent(tmp_path, "lead", """
        marker("READY", {"summary": "done"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", "--reflector", reflector, lead=lead, workspace=ws)
    reflection = signed_off(sup, goal)
    assert reflection["payload"]["ok"] is True and reflection["payload"]["tries"] == 2
    assert "turn_failed" in sup.event_types(goal)
    assert "retries work" in sup.cli("memory", "show", "--workspace", ws).stdout


def test_a_supervisor_killed_during_the_reflection_reflects_after_its_restart(tmp_path, ws):
    release = tmp_path / "release"
    lead = write_agent(tmp_path, "lead", f"""
        if role == "reflector":
            n = count("reflections")
            open(os.path.join(state_dir, "reflecting"), "w").write(str(n))
            deadline = time.time() + 60
            while n == 1 and not os.path.exists({str(release)!r}) and time.time() < deadline:
                time.sleep(0.02)  # poll: the agent waits for the test's go-ahead, with a deadline
            marker("REFLECT", {{"summary": "after the crash", "memory": [{{"kind": "fact", "text": "survives a crash"}}]}})
        else:
            marker("READY", {{"summary": "done"}})
    """)
    with Supervisor(tmp_path) as sup:
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        sup.wait_for_status(goal, "awaiting_signoff")
        sup.wait_for_event(goal, "envelope")
        sup.cli("goal", "signoff", goal)
        wait_until(lambda: (state(tmp_path, "lead") / "reflecting").exists(), message="the reflection to be running")
        sup.kill()
        sup.start()
        reflection = sup.wait_for_event(goal, "reflection")
        assert reflection["payload"]["ok"] is True
        events = sup.events(goal)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    reruns = [e for e in events if e["type"] == "turn_started" and e["payload"].get("rerun")]
    assert len(reruns) == 1 and reruns[0]["payload"]["role"] == "reflector"
    assert "survives a crash" in run_cli(str(tmp_path / "home"), "memory", "show", "--workspace", ws).stdout


# -- skills -------------------------------------------------------------------------------------


def test_a_skill_becomes_a_valid_skill_md_that_round_trips_through_export(sup, ws, tmp_path):
    skill = {
        "name": "2024-01-01",  # digits and dashes: YAML would read a bare one as a date
        "description": 'Fix "date: parsing" bugs # not a comment: reproduce first, then fix — ünïcode',
        "body": "# Fixing date parsing\n\n1. Reproduce with a failing test.\n2. Fix `parse()`.\n\n---\n\nThe end.\n",
    }
    lead = reflecting_lead(tmp_path, "lead", "", {"summary": "s", "memory": [], "skill": skill})
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    signed_off(sup, goal)

    path = os.path.join(sup.home, "skills", skill["name"], "SKILL.md")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta == {"name": skill["name"], "description": skill["description"]}
    assert body.lstrip("\n").startswith(skill["body"])

    listed = sup.cli("skills", "list", "--json").json()
    assert [(s["name"], s["description"]) for s in listed] == [(skill["name"], skill["description"])]
    assert sup.cli("skills", "show", skill["name"]).stdout.rstrip("\n") == text.rstrip("\n")

    out = tmp_path / "exported"
    written = sup.cli("skills", "export", skill["name"], str(out)).stdout.strip()
    assert written == str(out / skill["name"] / "SKILL.md")
    exported = open(written, encoding="utf-8").read()
    assert exported == text
    assert yaml.safe_load(exported[4:].split("\n---\n", 1)[0]) == meta

    # Later leads see the name and the description, never the body.
    lead2 = write_agent(tmp_path, "lead2", """
        open(os.path.join(state_dir, "prompt"), "w").write(prompt)
        marker("BLOCKED", {"reason": "enough"})
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    later = sup.new_goal("y", "--criterion", "c", "--check", "true", lead=lead2, workspace=str(elsewhere))
    sup.wait_for_status(later, "blocked")
    prompt = (state(tmp_path, "lead2") / "prompt").read_text()
    assert f"- {skill['name']}: " in prompt and "Reproduce with a failing test" not in prompt


def test_a_missing_skill_and_a_bad_name_are_one_line_errors(sup):
    missing = sup.cli("skills", "show", "no-such-skill", check=False)
    assert missing.code == 1 and "no skill no-such-skill" in missing.stderr and "Traceback" not in missing.stderr
    bad = sup.cli("skills", "show", "../../etc", check=False)
    assert bad.code == 1 and "not a skill name" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# -- templates ----------------------------------------------------------------------------------

_VALUES = {
    "fix-failing-tests": {"tests": "tests/test_dates.py tests/test_zones.py", "test_command": "python -m pytest -q -x"},
    "fix-issue": {"issue": "#42: parse() crashes on dates before 1970"},
    "refactor-module": {"module": "src/app/parser.py", "aim": "split tokenising from parsing"},
    "add-feature": {"feature": "a --json flag on `app list` that prints one object per item"},
    "release-readiness": {"version": "1.4.0"},
    "investigate-build": {"command": "make dist"},
}


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}", lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], text)


@pytest.mark.parametrize("name", sorted(_VALUES))
def test_each_built_in_template_creates_a_goal_whose_criteria_and_checks_are_what_it_says(sup, ws, tmp_path, name):
    template = sup.cli("templates", "show", name, "--json").json()
    values = {k["name"]: k["default"] for k in template["keys"] if k["default"] is not None} | _VALUES[name]
    sets = [arg for key, value in _VALUES[name].items() for arg in ("--set", f"{key}={value}")]
    lead = write_agent(tmp_path, "lead", """
        marker("BLOCKED", {"reason": "only the goal's shape is under test"})
    """)
    goal = sup.new_goal(*(["--template", name] + sets), lead=lead, verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION),
                        workspace=ws)
    view = sup.show(goal)
    expected = [
        {"text": _fill(c["text"], values), "verify": {"run": _fill(c["check"], values)} if c["check"] else _fill(c["text"], values)}
        for c in template["criteria"]
    ]
    assert [{"text": c["text"], "verify": c["verify"]} for c in view["criteria"]] == expected
    assert view["objective"] == _fill(template["objective"], values)
    assert view["budget"]["seconds"] == template["budget"].get("seconds")
    checks = [c["verify"]["run"] for c in view["criteria"] if isinstance(c["verify"], dict)]
    assert checks, f"{name} has no check command crewctl runs itself"
    # What makes each a good goal on a real project:
    if name == "fix-failing-tests":
        assert "python -m pytest -q -x tests/test_dates.py tests/test_zones.py" in checks  # the failing tests
        assert "python -m pytest -q -x" in checks  # and the whole suite
        assert {"tests/test_dates.py", "tests/test_zones.py"} <= set(template["protect"] and _fill(" ".join(template["protect"]), values).split())
    if name == "release-readiness":
        assert any("python -m build" in c and "twine check --strict" in c for c in checks)  # builds and checks metadata
        assert any("1.4.0.tar.gz" in c and "1.4.0-*.whl" in c for c in checks)  # the version it carries
        assert any(c.startswith("grep") and "CHANGELOG.md" in c for c in checks)
    if name in ("fix-issue", "add-feature", "refactor-module"):
        assert "python -m pytest -q" in checks  # the suite guards the change
    if name == "investigate-build":
        assert "make dist" in checks and "test -s BUILD-INVESTIGATION.md" in checks


@pytest.mark.parametrize("name, key", [("fix-failing-tests", "tests"), ("fix-issue", "issue"), ("refactor-module", "module"),
                                       ("add-feature", "feature"), ("release-readiness", "version"), ("investigate-build", "command")])
def test_a_missing_set_key_is_exit_2_naming_it_and_creates_nothing(sup, ws, name, key):
    result = sup.cli("goal", "new", "--template", name, "--lead", "exec:true", "--verifier", "exec:true", "--workspace", ws, check=False)
    assert result.code == 2 and f"--set {key}=" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sup.cli("goal", "list", "--json").json() == []


def test_flags_beside_a_template_override_it_and_an_unknown_key_is_refused(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        marker("BLOCKED", {"reason": "shape only"})
    """)
    goal = sup.new_goal("my own objective", "--template", "fix-failing-tests", "--set", "tests=t.py", "--time-budget", "99",
                        "--criterion", "only this", "--check", "true", lead=lead, workspace=ws)
    view = sup.show(goal)
    assert view["objective"] == "my own objective" and view["budget"]["seconds"] == 99
    assert [c["text"] for c in view["criteria"]] == ["only this"]
    unknown = sup.cli("goal", "new", "--template", "fix-failing-tests", "--set", "tests=t.py", "--set", "tset=x",
                      "--lead", "exec:true", "--workspace", ws, check=False)
    assert unknown.code == 2 and "no key 'tset'" in unknown.stderr


def test_a_template_of_ones_own_in_the_config_directory_is_used_and_listed(sup, ws, tmp_path):
    # Beside the config file crewctl reads (the test supervisor's, by CREWCTL_CONFIG).
    templates = Path(os.path.dirname(sup.env["CREWCTL_CONFIG"])) / "templates"
    templates.mkdir()
    (templates / "lint-clean.toml").write_text(
        'description = "make the linter happy"\n'
        'objective = "Make {tool} report nothing in {path}"\n'
        'keys = ["path", { name = "tool", default = "ruff check" }]\n'
        '[budget]\ntokens = 50000\n'
        '[[criteria]]\ntext = "{tool} is clean on {path}"\ncheck = "{tool} {path}"\n'
    )
    (templates / "broken.toml").write_text('objective = "x {nokey}"\n[[criteria]]\ntext = "c"\n')
    env = {}
    listed = {t["name"]: t for t in sup.cli("templates", "list", "--json", env=env).json()["templates"]}
    assert listed["lint-clean"]["description"] == "make the linter happy" and listed["lint-clean"]["error"] is None
    assert "placeholder {nokey}" in listed["broken"]["error"]
    assert "fix-failing-tests" in listed
    lead = write_agent(tmp_path, "lead", """
        marker("BLOCKED", {"reason": "shape only"})
    """)
    result = sup.cli("goal", "new", "--template", "lint-clean", "--set", "path=src", "--lead", lead, "--workspace", ws, "--json", env=env)
    view = sup.show(result.json()["id"])
    assert view["objective"] == "Make ruff check report nothing in src" and view["budget"]["tokens"] == 50000
    assert view["criteria"][0]["verify"] == {"run": "ruff check src"}
    broken = sup.cli("goal", "new", "--template", "broken", "--lead", lead, "--workspace", ws, env=env, check=False)
    assert broken.code == 2 and "nokey" in broken.stderr and "Traceback" not in broken.stderr


# -- the PR envelope ----------------------------------------------------------------------------


def _tree_state(repo) -> dict:
    """HEAD, the refs, the index file and every working-tree file, byte for byte."""
    files = {}
    for root, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, repo)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    git_dir = os.path.join(repo, ".git")
    return {
        "HEAD": open(os.path.join(git_dir, "HEAD"), "rb").read(),
        "head_commit": git(repo, "rev-parse", "HEAD"),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"),
        "index": hashlib.sha256(open(os.path.join(git_dir, "index"), "rb").read()).hexdigest(),
        "files": files,
    }


_RECORD_TREE = """
import hashlib, subprocess
def tree_state():
    files = {}
    for root, dirs, names in os.walk("."):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, ".")] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout
    return {"HEAD": open(".git/HEAD").read(), "head_commit": git("rev-parse", "HEAD"),
            "refs": git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"),
            "index": hashlib.sha256(open(".git/index", "rb").read()).hexdigest(), "files": files}
"""


def envelope_lead(tmp_path) -> str:
    """A lead that changes, adds and deletes files (and writes an ignored one), then records
    the repository as it left it, for comparison after crewctl built the envelope."""
    return write_agent(tmp_path, "lead", _RECORD_TREE + """
if role == "reflector":
    marker("REFLECT", {"summary": "s"})
else:
    n = count()
    if n == 1:
        open("src/calc.py", "w").write("def add(a, b):\\n    return a + b\\n")
        os.makedirs("docs", exist_ok=True)
        open("docs/calc.md", "w").write("# calc\\n")
        os.remove("OLD.txt")
        open("build.log", "w").write("git-ignored, so no part of the work\\n")
    state = tree_state()
    state["HEAD"] = state["HEAD"]
    json.dump(state, open(os.path.join(state_dir, "tree%d.json" % n), "w"))
    marker("READY", {"summary": "add() adds now"})
""")


def test_the_pr_envelope_commits_exactly_the_leads_change_and_leaves_the_users_repository_alone(sup, tmp_path):
    repo = tmp_path / "repo"
    base = git_repo(repo, {"src/calc.py": "def add(a, b):\n    return a - b\n", "OLD.txt": "old\n", "README.md": "# r\n",
                           ".gitignore": "*.log\n"})
    # The operator has staged something without committing it, and the work tree differs
    # from the index there: the envelope must leave both exactly as they are.
    (repo / "README.md").write_text("# r, staged\n")
    git(repo, "add", "README.md")
    (repo / "README.md").write_text("# r\n")
    goal = sup.new_goal("make add() add", "--criterion", "it adds", "--check",
                        f"{sys.executable} -c \"import sys; sys.path.insert(0, 'src'); from calc import add; assert add(2, 3) == 5\"",
                        lead=envelope_lead(tmp_path), workspace=str(repo))
    envelope = sup.wait_for_event(goal, "envelope")["payload"]
    assert envelope["ok"] is True and envelope["branch"] == f"crewctl/{goal}" and envelope["base"] == base

    # The user's HEAD, refs (but the new branch), index and working tree: byte for byte as the lead left them.
    before = json.load(open(state(tmp_path, "lead") / "tree1.json"))
    after = _tree_state(str(repo))
    after["HEAD"] = after["HEAD"].decode()
    branch_line = f"refs/heads/crewctl/{goal} {envelope['commit']}\n"
    assert branch_line in after["refs"]
    after["refs"] = after["refs"].replace(branch_line, "")
    assert after == before

    commit = envelope["commit"]
    assert git(repo, "rev-parse", f"crewctl/{goal}").strip() == commit
    assert git(repo, "rev-list", "--parents", "-n", "1", commit).split() == [commit, base]  # one commit on the start
    changes = sorted(git(repo, "diff-tree", "-r", "--no-commit-id", "--name-status", base, commit).splitlines())
    assert changes == ["A\tdocs/calc.md", "D\tOLD.txt", "M\tsrc/calc.py"]
    assert git(repo, "show", f"{commit}:src/calc.py") == "def add(a, b):\n    return a + b\n"
    assert git(repo, "show", f"{commit}:README.md") == "# r\n"  # the staged change is not in it

    view = sup.show(goal)["envelope"]
    assert view["status"] == "ready" and view["commit"] == commit and view["files"] == ["OLD.txt", "docs/calc.md", "src/calc.py"]
    pr = open(view["pr"]).read()
    assert pr.startswith("# make add() add") and "**c1** it adds" in pr and "exited 0" in pr and "round 1: passed" in pr
    assert os.path.dirname(view["patch"]) == os.path.dirname(view["pr"]) == os.path.join(sup.home, "goals", goal)
    check = subprocess.run(["git", "apply", "--check", "-R", view["patch"]], cwd=repo, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # the patch is exactly the change in the working tree
    shown = sup.cli("goal", "show", goal).stdout
    assert f"branch crewctl/{goal}" in shown and view["pr"] in shown


def test_building_the_envelope_runs_nothing_the_lead_planted_in_the_repository(sup, tmp_path):
    repo = tmp_path / "repo"
    git_repo(repo, {"a.txt": "a\n"})
    ran = tmp_path / "ran"
    lead = write_agent(tmp_path, "lead", f"""
        if role == "reflector":
            marker("REFLECT", {{"summary": "s"}})
        else:
            # The attack: make crewctl's own git (outside every sandbox) run this script.
            evil = os.path.abspath(".git/evil.sh")
            open(evil, "w").write("#!/bin/sh\\necho \\"$0 $*\\" >> {str(ran)!r}\\ncat\\n")
            os.chmod(evil, 0o755)
            with open(".git/config", "a") as f:
                f.write("[core]\\n\\tfsmonitor = %s\\n\\thooksPath = .evil-hooks\\n[filter \\"evil\\"]\\n\\tclean = %s\\n\\tsmudge = %s\\n"
                        "[diff \\"evil\\"]\\n\\ttextconv = %s\\n[diff]\\n\\texternal = %s\\n[commit]\\n\\tgpgSign = true\\n[gpg]\\n\\tprogram = %s\\n"
                        % ((evil,) * 6))
            # Hooks outside .git/hooks: planted there, protected paths would hold the round
            # before any envelope is made (tests/e2e/test_protect.py); here they must not run.
            os.makedirs(".evil-hooks", exist_ok=True)
            for hook in ("reference-transaction", "post-commit", "pre-commit", "post-index-change"):
                open(".evil-hooks/" + hook, "w").write(open(evil).read())
                os.chmod(".evil-hooks/" + hook, 0o755)
            open(".gitattributes", "w").write("* filter=evil diff=evil\\n")
            open("a.txt", "w").write("changed\\n")
            marker("READY", {{"summary": "done"}})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=str(repo))
    envelope = sup.wait_for_event(goal, "envelope")["payload"]
    assert envelope["ok"] is True, envelope
    assert not ran.exists(), ran.read_text()
    assert git(repo, "show", f"{envelope['commit']}:a.txt") == "changed\n"  # no clean filter ran on it


def test_goal_pr_push_reaches_a_real_bare_repository(sup, tmp_path):
    repo = tmp_path / "repo"
    git_repo(repo, {"src/calc.py": "def add(a, b):\n    return a - b\n", "OLD.txt": "old\n", ".gitignore": "*.log\n"})
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=envelope_lead(tmp_path), workspace=str(repo))
    envelope = sup.wait_for_event(goal, "envelope")["payload"]
    pushed = sup.cli("goal", "pr", goal, "--push", "origin", "--json").json()
    assert pushed["pushed"]["remote"] == "origin" and pushed["branch"] == f"crewctl/{goal}"
    there = subprocess.run(["git", "--git-dir", str(remote), "rev-parse", f"refs/heads/crewctl/{goal}"], capture_output=True, text=True)
    assert there.stdout.strip() == envelope["commit"]
    assert sup.show(goal)["status"] == "awaiting_signoff"  # handing it over moves nothing
    nowhere = sup.cli("goal", "pr", goal, "--push", "no-such-remote", check=False)
    assert nowhere.code == 1 and "push failed" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_goal_pr_open_runs_gh_pr_create_with_the_envelopes_body(sup, tmp_path):
    repo = tmp_path / "repo"
    git_repo(repo, {"src/calc.py": "x\n", "OLD.txt": "old\n", ".gitignore": "*.log\n"})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls.jsonl"
    gh = bin_dir / "gh"
    gh.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                  f"body = open(sys.argv[sys.argv.index('--body-file') + 1]).read() if '--body-file' in sys.argv else None\n"
                  f"open({str(calls)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'body': body}}) + '\\n')\n"
                  f"print('https://github.example/o/r/pull/7')\n")
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    goal = sup.new_goal("make add() add\nand say so", "--criterion", "c", "--check", "true", lead=envelope_lead(tmp_path),
                        workspace=str(repo))
    envelope = sup.wait_for_event(goal, "envelope")["payload"]
    sup.cli("goal", "signoff", goal)
    sup.wait_for_event(goal, "reflection")
    result = sup.cli("goal", "pr", goal, "--open", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert "https://github.example/o/r/pull/7" in result.stdout
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    argv = call["argv"]
    assert argv[:2] == ["pr", "create"]
    assert argv[argv.index("--head") + 1] == f"crewctl/{goal}" and argv[argv.index("--base") + 1] == "main"
    assert argv[argv.index("--title") + 1] == "make add() add"
    assert argv[argv.index("--body-file") + 1] == envelope["pr"] and call["body"] == open(envelope["pr"]).read()
    assert os.path.realpath(call["cwd"]) == os.path.realpath(repo)
    without = sup.cli("goal", "pr", goal, "--open", env={"PATH": "/usr/bin:/bin"}, check=False)
    assert without.code == 1 and "gh (GitHub's CLI) is not installed" in without.stderr


def test_a_send_back_supersedes_the_envelope_and_the_next_pass_makes_a_new_one(sup, tmp_path):
    repo = tmp_path / "repo"
    git_repo(repo, {"src/calc.py": "x\n", "OLD.txt": "old\n", ".gitignore": "*.log\n"})
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=envelope_lead(tmp_path), workspace=str(repo))
    first = sup.wait_for_event(goal, "envelope")["payload"]
    sup.cli("goal", "send-back", goal, "--notes", "also document subtraction")
    superseded = sup.wait_for_event(goal, "envelope_superseded")["payload"]
    assert superseded == {"round": 1, "branch": f"crewctl/{goal}", "commit": first["commit"]}
    second = sup.wait_for_event(goal, "envelope", where=lambda e: e["payload"]["round"] == 2)["payload"]
    assert second["ok"] and second["branch"] == first["branch"]
    assert git(repo, "rev-parse", f"crewctl/{goal}").strip() == second["commit"]
    assert sup.show(goal)["envelope"]["status"] == "ready"


def test_goal_pr_is_refused_before_the_gate_passes_and_after_a_send_back(sup, tmp_path):
    repo = tmp_path / "repo"
    git_repo(repo, {"a.txt": "a\n"})
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            marker("READY", {"summary": "done"})
        else:
            marker("BLOCKED", {"reason": "enough"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=str(repo))
    sup.wait_for_event(goal, "envelope")
    sup.cli("goal", "send-back", goal, "--notes", "again")
    sup.wait_for_status(goal, "blocked")
    refused = sup.cli("goal", "pr", goal, check=False)
    assert refused.code == 3 and "blocked" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    wait_until(lambda: "superseded" in sup.cli("goal", "show", goal).stdout)
    assert not os.path.exists(os.path.join(sup.home, "goals", goal, "pr.md"))
    gone = subprocess.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/crewctl/{goal}"], cwd=repo, capture_output=True)
    assert gone.returncode != 0  # the branch of a superseded envelope is taken down


# -- the whole loop on the demo's project ---------------------------------------------------------


def test_fix_failing_tests_end_to_end_on_the_demo_project(sup, tmp_path):
    project = tmp_path / "project"
    base = git_repo(project, {"calc.py": BUGGY, "test_calc.py": TESTS})
    script = tmp_path / "agents.json"
    script.write_text(json.dumps({
        "lead": [
            {"when": "The gate held at round", "write": {"calc.py": FIXED},
             "text": "add() subtracted; fixed.\n\nCREW_READY_BEGIN\n{\"summary\": \"add() returns a + b\"}\nCREW_READY_END\n"},
            {"text": "Looks right to me.\n\nCREW_READY_BEGIN\n{\"summary\": \"calc works\"}\nCREW_READY_END\n"},
        ],
        "reflector": [
            {"text": "CREW_REFLECT_BEGIN\n" + json.dumps({
                "summary": "add() subtracted; the first READY claimed success without running the tests",
                "lessons": ["run the unit tests before READY"],
                "memory": [{"kind": "strategy", "text": "run python -m unittest before declaring READY in calc"}],
                "skill": {"name": "fix-arithmetic-bug", "description": "fix an operator typo that a unit test catches",
                          "body": "1. Run the failing test.\n2. Read the operator.\n3. Fix it and run the tests again.\n"},
            }) + "\nCREW_REFLECT_END\n"},
        ],
    }))
    goal = sup.new_goal(
        "--template", "fix-failing-tests", "--set", "tests=test_calc.py",
        "--set", f"test_command={sys.executable} -m pytest -q -p no:cacheprovider",
        lead=f"scripted:{script}", verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION), workspace=str(project),
    )
    held = sup.wait_for_event(goal, "gate_held")["payload"]
    assert held["failed"] == ["c1", "c2"]  # the scripted claim without a fix does not pass
    passed = sup.wait_for_event(goal, "gate_passed")["payload"]
    assert passed["round"] == 2
    envelope = sup.wait_for_event(goal, "envelope")["payload"]
    assert envelope["ok"] and envelope["base"] == base
    assert git(project, "diff-tree", "-r", "--no-commit-id", "--name-only", base, envelope["commit"]).split() == ["calc.py"]
    assert git(project, "show", f"{envelope['commit']}:calc.py") == FIXED
    assert git(project, "status", "--porcelain") == " M calc.py\n"  # the work tree is the lead's; nothing committed there
    sup.cli("goal", "signoff", goal)
    reflection = sup.wait_for_event(goal, "reflection")["payload"]
    assert reflection["ok"] and reflection["skill"]["name"] == "fix-arithmetic-bug"
    view = sup.show(goal)
    assert view["status"] == "done" and all(c["status"] == "pass" for c in view["criteria"])
    memory = sup.cli("memory", "show", "--workspace", str(project)).stdout
    assert "- [strategy] run python -m unittest before declaring READY in calc" in memory
    assert "fix-arithmetic-bug" in sup.cli("skills", "list").stdout
    types = sup.event_types(goal)
    for kind in ("gate_held", "gate_passed", "envelope", "signoff", "done", "reflection"):
        assert kind in types
    assert types.index("gate_passed") < types.index("envelope") < types.index("signoff") < types.index("reflection")


def test_the_demo_shows_the_envelope_the_reflection_and_the_memory_it_leaves(tmp_path):
    done = run_cli(str(tmp_path / "home"), "demo", timeout=180)
    assert done.code == 0, done
    assert "the gate HELD" in done.stdout and "the gate PASSED" in done.stdout
    assert re.search(r"PR envelope: branch crewctl/[0-9a-f]+ \(commit [0-9a-f]{12}\)", done.stdout)
    assert "reflection is recorded" in done.stdout and "- [strategy] run `python -m unittest`" in done.stdout
