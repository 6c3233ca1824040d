"""`crewctl demo`: the whole loop in a minute, with a scripted lead and a real supervisor."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import click

from ..store import open_store
from ..goal.vocab import RecordType as R, Status
from ..transport import control
from ._common import format_event

__all__ = ["demo_command"]

BUGGY = '''def add(a, b):
    """Return the sum of a and b."""
    return a - b
'''
FIXED = '''def add(a, b):
    """Return the sum of a and b."""
    return a + b
'''
TESTS = '''import unittest

from calc import add


class AddTest(unittest.TestCase):
    def test_adds_two_numbers(self):
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
'''


def _ready(summary: str) -> str:
    return "CREW_READY_BEGIN\n" + json.dumps({"summary": summary}) + "\nCREW_READY_END\n"


def _reflect() -> str:
    payload = {
        "summary": "add() subtracted; the first READY was a claim nobody had checked, and the gate held it.",
        "lessons": ["run the unit tests before declaring READY"],
        "memory": [{"kind": "strategy", "text": "run `python -m unittest` before declaring READY here"}],
    }
    return "CREW_REFLECT_BEGIN\n" + json.dumps(payload) + "\nCREW_REFLECT_END\n"


def _script() -> dict:
    """The scripted lead: first a confident claim without a fix, then the fix; and the
    one reflection after sign-off."""
    return {
        "reflector": [{"text": "A false READY cost a round.\n\n" + _reflect()}],
        "lead": [
            {
                "when": "The gate held at round",
                "write": {"calc.py": FIXED},
                "text": "The verifier's evidence shows the unit test failing: add() subtracts.\n"
                "I changed `a - b` to `a + b` in calc.py.\n\n"
                + _ready("add() now returns a + b; the unit test should pass."),
            },
            {
                "text": "I read calc.py and it looks correct to me. Done!\n\n"
                + _ready("calc.add is implemented and tested; everything works."),
            },
        ]
    }


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo's temporary project and home for inspection.")
def demo_command(keep):
    """Watch the gate hold a false claim, then pass a real fix (a scripted lead, a real supervisor).

    \b
    In a fresh temporary project with a failing unit test, a goal runs whose lead is a
    SCRIPTED brain: it first claims READY without fixing anything; crewctl runs the check
    command itself, the gate holds and the failing output goes back to the lead; it fixes
    the bug and claims READY again; the gate passes and the verified work becomes a branch
    (the PR envelope); the demo signs off; a reflection writes down what it learned.
    """
    root = tempfile.mkdtemp(prefix="crewctl-demo-")
    project, home = os.path.join(root, "project"), os.path.join(root, "home")
    os.makedirs(project)
    with open(os.path.join(project, "calc.py"), "w") as f:
        f.write(BUGGY)
    with open(os.path.join(project, "test_calc.py"), "w") as f:
        f.write(TESTS)
    git = _git_init(project)  # so that the passed gate can hand over a branch (the PR envelope)
    script = os.path.join(root, "lead.json")
    with open(script, "w") as f:
        json.dump(_script(), f, indent=2)
    check = f"{shlex.quote(sys.executable)} -m unittest -q"

    say = click.echo
    say(click.style("crewctl demo", bold=True) + f"  (workspace {project})")
    say("The lead in this demo is SCRIPTED (scripted:lead.json): its replies are canned, not a model's.")
    say("Everything else is real: a supervisor process, its store, crewctl's own check command, the gate.\n")
    say(f"Goal: make the unit tests of calc.py pass.  Criterion c1: `{check}` exits 0.\n")

    env = dict(os.environ, CREWCTL_HOME=home)
    env.pop("CREWCTL_CRASH_AT", None)
    log_path = os.path.join(root, "supervisor.log")
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "crewctl", "run", "--quiet"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    ok = False
    try:
        if not _wait(lambda: control.read_daemon_info(home) is not None or daemon.poll() is not None, 30) or daemon.poll() is not None:
            raise click.ClickException(f"the supervisor did not start; see {log_path}")
        view = control.call(
            home,
            "goal.new",
            {
                "objective": "Make the unit tests of calc.py pass.",
                "criteria": [{"text": "the unit tests pass", "verify": {"run": check}}],
                "workspace": project,
                "lead": f"scripted:{script}",
            },
        )
        goal_id = view["id"]
        ok = _follow(home, goal_id, say)
        if ok:
            _show_outputs(home, goal_id, project, git, say)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
    say("")
    say("To run the same goal with real agents (Claude Code as lead, Codex as verifier):")
    say("  crewctl run &")
    say(f'  crewctl goal new "Make the unit tests of calc.py pass." --workspace {shlex.quote(project)} \\')
    say(f'      --criterion "the unit tests pass" --check {shlex.quote(check)} \\')
    say("      --lead claude --verifier codex")
    say("  (any brain works: --lead openai:MODEL@URL, --lead exec:'your-agent-command', ...; see `crewctl brains list`)")
    say("  or from a template: crewctl goal new --template fix-failing-tests --set tests=test_calc.py ... (`crewctl templates list`)")
    if keep:
        say(f"\nKept the demo's project and home in {root}")
    else:
        say("  (this project is removed now; `crewctl demo --keep` keeps it to try these on)")
        shutil.rmtree(root, ignore_errors=True)
    if not ok:
        raise click.ClickException("the demo did not reach done")


_NARRATION = {
    "gate_held": "  -> the gate HELD: crewctl ran the check itself; the lead's claim did not count.",
    "gate_passed": "  -> the gate PASSED: every criterion verified. Waiting for the operator's sign-off...",
    "envelope": "  -> the PR envelope: the verified work as a branch and a PR body (crewctl goal pr ID).",
    "done": "  -> signed off: the goal is done. One reflection turn follows.",
    "reflection": "  -> the reflection is recorded; what it learned goes into the workspace's memory.",
}


def _git_init(project: str) -> bool:
    if shutil.which("git") is None:
        return False
    env = dict(os.environ, GIT_AUTHOR_NAME="crewctl demo", GIT_AUTHOR_EMAIL="demo@localhost",
               GIT_COMMITTER_NAME="crewctl demo", GIT_COMMITTER_EMAIL="demo@localhost", GIT_CONFIG_GLOBAL="/dev/null")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "calc with a failing test"]):
        if subprocess.run(["git", *args], cwd=project, env=env, capture_output=True).returncode != 0:
            return False
    return True


def _show_outputs(home: str, goal_id: str, project: str, git: bool, say) -> None:
    from ..outputs import memory

    store = open_store(None, home, create=False)
    state, _ = store.load_goal(goal_id)
    envelope = state.envelope
    say("")
    if git and envelope is not None and envelope.status == "ready":
        say(f"PR envelope: branch {envelope.branch} (commit {envelope.commit[:12]}), body {envelope.pr}")
    text = memory.read(home, project)
    if text:
        say("The workspace's memory now (the next goal's lead starts with it):")
        for line in text.splitlines():
            if line.startswith("- "):
                say("  " + line)


def _follow(home: str, goal_id: str, say) -> bool:
    store = open_store(None, home, create=False)
    last = 0
    deadline = time.monotonic() + 120
    signed = False
    while time.monotonic() < deadline:
        for e in store.events(goal_id, after=last):
            last = e["seq"]
            say(format_event(e))
            if e["type"] == R.VERIFY:
                for r in e["payload"]["results"]:
                    say(f"       {r['id']} {r['verdict'].upper()}: {' '.join(str(r['evidence']).split())[:160]}")
            if e["type"] in _NARRATION:
                say(click.style(_NARRATION[e["type"]], bold=True))
        state, _ = store.load_goal(goal_id)
        envelope_done = state.envelope is None or state.envelope.status != "pending"
        if state.status == Status.AWAITING_SIGNOFF and not signed and envelope_done:
            control.call(home, "goal.signoff", {"id": goal_id})
            signed = True
            continue
        if state.status == "done" and state.reflection == "due":
            time.sleep(0.1)  # poll: the reflection turn runs after sign-off
            continue
        if state.status in ("done", "blocked", "failed", "cancelled"):
            for e in store.events(goal_id, after=last):
                say(format_event(e))
            return state.status == "done"
        time.sleep(0.1)  # poll: events come from the supervisor process
    return False


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # poll
    return False
