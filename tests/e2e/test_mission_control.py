"""Mission control through the installed binary and a real `crewctl run`: goal logs, show,
list, wait, report, hooks, completion and doctor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from html.parser import HTMLParser

import pytest

from crewctl.store import SCHEMA_VERSION
from crewctl.testing import PASS_EVERY_CRITERION, Supervisor, crewctl_binary, run_cli, wait_until, write_agent


def held_lead(tmp_path, name: str = "lead", first: str = "FIRST-REPLY-PLANTED") -> tuple[str, str]:
    """A lead whose first turn says `first` (no marker: a continuation follows) and whose
    second turn waits until the test creates the release file, then claims READY."""
    release = os.path.join(str(tmp_path), f"{name}.release")
    spec = write_agent(tmp_path, name, f"""
        n = count()
        if n == 1:
            say({first!r})
        else:
            while not os.path.exists({release!r}):
                time.sleep(0.05)  # poll: the test decides when this turn may finish
            say("SECOND-REPLY-PLANTED")
            marker("READY", {{"summary": "released"}})
    """)
    return spec, release


def release(path: str) -> None:
    with open(path, "w") as f:
        f.write("go")


class Lines:
    """A subprocess's stdout, line by line, read in a thread (no blocking reads in the test)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def popen_cli(sup: Supervisor, *args: str) -> subprocess.Popen:
    env = dict(os.environ, CREWCTL_HOME=sup.home)
    return subprocess.Popen([crewctl_binary(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- goal logs --------------------------------------------------------------------------------


def test_goal_logs_shows_planted_replies_and_filters_by_role(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        say("LEAD-SAYS-PLANTED")
        marker("READY", {"summary": "done"})
    """)
    verifier = write_agent(tmp_path, "v", 'say("VERIFIER-SAYS-PLANTED")\n' + PASS_EVERY_CRITERION)
    goal = sup.new_goal("x", "--criterion", "judged", lead=lead, verifier=verifier, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")

    text = sup.cli("goal", "logs", goal).stdout
    assert "LEAD-SAYS-PLANTED" in text and "VERIFIER-SAYS-PLANTED" in text
    assert "=== lead turn 1" in text and "=== verifier turn 2" in text

    lead_only = sup.cli("goal", "logs", goal, "--role", "lead", "--json").json()
    assert [e["role"] for e in lead_only] == ["lead"]
    assert "LEAD-SAYS-PLANTED" in lead_only[0]["reply"] and "prompt" not in lead_only[0]
    assert {"role", "turn", "kind", "started_at", "finished_at", "usage", "reply"} <= set(lead_only[0])

    verifier_only = sup.cli("goal", "logs", goal, "--role", "verifier").stdout
    assert "VERIFIER-SAYS-PLANTED" in verifier_only and "LEAD-SAYS-PLANTED" not in verifier_only
    assert [e["turn"] for e in sup.cli("goal", "logs", goal, "--turn", "2", "--json").json()] == [2]


def test_goal_logs_prompts_include_the_verifiers_prompt_which_the_turn_table_stores(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "done"})')
    goal = sup.new_goal("make the README say hello", "--criterion", "the README greets the reader",
                        lead=lead, verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION), workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    entries = sup.cli("goal", "logs", goal, "--prompts", "--json").json()
    by_role = {e["role"]: e for e in entries}
    assert "make the README say hello" in by_role["lead"]["prompt"]
    assert "the README greets the reader" in by_role["verifier"]["prompt"]
    assert "UNVERIFIED" in by_role["verifier"]["prompt"]
    text = sup.cli("goal", "logs", goal, "--prompts", "--role", "verifier").stdout
    assert "--- prompt (" in text and "the README greets the reader" in text

    from crewctl.store import open_store

    store = open_store(None, sup.home, create=False)
    try:
        rows = {t["role"]: t for t in store.turns(goal)}
        assert rows["verifier"]["prompt"] and "the README greets the reader" in rows["verifier"]["prompt"]
    finally:
        store.close()


def test_goal_logs_follow_prints_a_turns_reply_while_the_goal_still_runs(sup, ws, tmp_path):
    lead, gate = held_lead(tmp_path)
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    follow = popen_cli(sup, "goal", "logs", goal, "--follow")
    out = Lines(follow)
    try:
        wait_until(lambda: "FIRST-REPLY-PLANTED" in out.text, timeout=60, message="the first reply to be followed")
        view = sup.show(goal)
        assert view["status"] == "running" and view["in_flight"]["turn"] == 2  # the goal still runs
        assert follow.poll() is None
        release(gate)
        sup.wait_for_status(goal, "awaiting_signoff")
        wait_until(lambda: "SECOND-REPLY-PLANTED" in out.text, timeout=30, message="the second reply")
        sup.cli("goal", "signoff", goal)
        assert follow.wait(timeout=30) == 0  # it stops when the goal is done
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_goal_logs_follow_json_prints_one_object_per_line(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", 'say("ONLY-REPLY")\nmarker("READY", {"summary": "done"})')
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    sup.cli("goal", "cancel", goal)
    result = sup.cli("goal", "logs", goal, "--follow", "--json")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(o["role"] == "lead" and "ONLY-REPLY" in (o["reply"] or "") for o in objects)


def test_goal_logs_of_an_unknown_goal_is_one_line_and_exit_1(sup):
    result = sup.cli("goal", "logs", "nosuchgoal", check=False)
    assert result.code == 1 and result.stderr.count("\n") == 1 and "no goal" in result.stderr


# -- goal show, wait --------------------------------------------------------------------------


def test_goal_show_has_in_flight_during_a_turn_and_null_after(sup, ws, tmp_path):
    lead, gate = held_lead(tmp_path)
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", "--token-budget", "1000000", lead=lead, workspace=ws)
    view = wait_until(lambda: (v := sup.show(goal))["in_flight"] and v["in_flight"]["turn"] == 2 and v, timeout=60)
    f = view["in_flight"]
    assert (f["role"], f["turn"], f["kind"]) == ("lead", 2, "continue") and f["started_at"]
    assert view["attention"] is None
    text = sup.cli("goal", "show", goal).stdout
    assert "now:       lead turn 2 (continue), " in text
    assert "tokens of 1000000 tokens spent (" in text and "%), " in text
    release(gate)
    view = sup.wait_for_status(goal, "awaiting_signoff")
    wait_until(lambda: sup.show(goal)["in_flight"] is None, timeout=30)
    attention = sup.show(goal)["attention"]
    assert attention["why"] == "awaiting_signoff" and attention["since"]
    assert "needs you: your sign-off since" in sup.cli("goal", "show", goal).stdout


def test_goal_wait_returns_when_the_gate_passes_and_exits_5_on_timeout(sup, ws, tmp_path):
    lead, gate = held_lead(tmp_path)
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    timed_out = sup.cli("goal", "wait", goal, "--timeout", "0.3", check=False)
    assert timed_out.code == 5 and timed_out.stdout == ""
    assert timed_out.stderr.count("\n") == 1 and "still running" in timed_out.stderr
    waiter = popen_cli(sup, "goal", "wait", goal, "--json", "--timeout", "120")
    try:
        release(gate)
        out, _ = waiter.communicate(timeout=120)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0
    assert json.loads(out)["status"] == "awaiting_signoff"
    assert sup.cli("goal", "wait", goal, "--for", "done", "--timeout", "0.2", check=False).code == 5
    sup.cli("goal", "signoff", goal)
    assert sup.cli("goal", "wait", goal, "--for", "done", "--timeout", "30", "--json").json()["status"] == "done"


# -- attention states and goal list -----------------------------------------------------------


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    """One supervisor with a goal in each attention state the binary can reach, and one running."""
    root = tmp_path_factory.mktemp("crowd")
    ws = root / "ws"
    ws.mkdir()
    with Supervisor(root) as sup:
        usage = 'open(env["CREWCTL_USAGE_FILE"], "w").write(json.dumps({"input_tokens": 500, "output_tokens": 500}))\n'
        agents = {
            "awaiting_input": write_agent(root, "asks", 'marker("CLARIFY", {"questions": [{"text": "Which Python?"}]})'),
            "awaiting_approval": write_agent(root, "plans", 'marker("PLAN", {"steps": [{"title": "drop the table", "needs_approval": True}]})'),
            "awaiting_signoff": write_agent(root, "ready", 'marker("READY", {"summary": "done"})'),
            "blocked": write_agent(root, "blocks", 'marker("BLOCKED", {"reason": "no staging key"})'),
            "budget_limited": write_agent(root, "spends", usage + 'say("working")'),
        }
        goals = {}
        for status, agent in agents.items():
            extra = ["--token-budget", "100"] if status == "budget_limited" else []
            goals[status] = sup.new_goal(f"goal that ends {status}", "--criterion", "ok", "--check", "true", *extra, lead=agent, workspace=str(ws))
        scoping = sup.new_goal("goal that asks while scoping", lead=agents["awaiting_input"], workspace=str(ws),
                               verifier=write_agent(root, "v", PASS_EVERY_CRITERION))
        lead, gate = held_lead(root, "busy")
        goals["running"] = sup.new_goal("goal that keeps running", "--criterion", "ok", "--check", "true", lead=lead, workspace=str(ws))
        for status, goal in goals.items():
            sup.wait_for_status(goal, status)
        wait_until(lambda: sup.show(goals["budget_limited"])["in_flight"] is None, timeout=60)  # its wind-down turn
        wait_until(lambda: sup.show(scoping)["attention"] is not None, timeout=60)
        wait_until(lambda: sup.show(goals["running"])["in_flight"] and sup.show(goals["running"])["in_flight"]["turn"] == 2, timeout=60)
        yield sup, goals, scoping
        release(gate)


@pytest.mark.parametrize("status", ["awaiting_input", "awaiting_approval", "awaiting_signoff", "blocked", "budget_limited"])
def test_goal_show_json_has_attention_in_each_attention_state(crowd, status):
    sup, goals, _ = crowd
    view = sup.show(goals[status])
    assert view["status"] == status
    assert view["attention"]["why"] == status and view["attention"]["since"]


def test_a_goal_scoping_with_open_questions_waits_for_input(crowd):
    sup, _, scoping = crowd
    view = sup.show(scoping)
    assert view["status"] == "scoping" and view["attention"]["why"] == "awaiting_input"


def test_a_running_goal_has_no_attention(crowd):
    sup, goals, _ = crowd
    assert sup.show(goals["running"])["attention"] is None


def test_goal_list_filters_by_status_and_attention(crowd):
    sup, goals, scoping = crowd
    blocked = sup.cli("goal", "list", "--status", "blocked", "--json").json()
    assert [g["id"] for g in blocked] == [goals["blocked"]]
    either = {g["id"] for g in sup.cli("goal", "list", "--status", "blocked", "--status", "budget_limited", "--json").json()}
    assert either == {goals["blocked"], goals["budget_limited"]}
    needing = {g["id"] for g in sup.cli("goal", "list", "--attention", "--json").json()}
    assert needing == {goals[s] for s in ("awaiting_input", "awaiting_approval", "awaiting_signoff", "blocked", "budget_limited")} | {scoping}
    rows = sup.cli("goal", "list").stdout.splitlines()
    assert rows[0].split()[:4] == ["ID", "STATUS", "AGE", "SPEND"]
    running_row = next(r for r in rows if r.startswith(goals["running"]))
    assert "lead turn 2 (continue)" in running_row
    assert "your sign-off" in next(r for r in rows if r.startswith(goals["awaiting_signoff"]))


def test_goal_list_refuses_an_unknown_status_with_a_usage_error(crowd):
    sup, _, _ = crowd
    result = sup.cli("goal", "list", "--status", "sleeping", check=False)
    assert result.code == 2 and "sleeping" in result.stderr


# -- the report -------------------------------------------------------------------------------


class _Dossier(HTMLParser):
    """What a reader of the HTML report sees, structurally: criteria rows, rounds, links."""

    def __init__(self) -> None:
        super().__init__()
        self.criteria: dict[str, dict] = {}
        self.rounds: dict[str, dict] = {}
        self.fetches: list[str] = []  # anything the page would load from elsewhere
        self._row: dict | None = None
        self._cell: str | None = None
        self._round: dict | None = None
        self._verdict: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.fetches.append(a[key])
        if tag in ("script", "link", "iframe", "img"):
            self.fetches.append(tag)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "criterion" in cls:
            self._row = self.criteria.setdefault(a["data-id"], {"status": a["data-status"], "evidence": ""})
        if tag == "section" and "round" in cls:
            self._round = self.rounds.setdefault(a["data-round"], {"outcome": a["data-outcome"], "verdicts": {}})
        if tag == "tr" and "verdict" in cls and self._round is not None:
            self._verdict = self._round["verdicts"].setdefault(a["data-id"], {"verdict": a["data-verdict"], "evidence": ""})
        if tag == "td" and "evidence" in cls:
            self._cell, self._text = "evidence", []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell == "evidence":
            text = "".join(self._text)
            if self._verdict is not None:
                self._verdict["evidence"] = text
            elif self._row is not None:
                self._row["evidence"] = text
            self._cell = None
        if tag == "tr":
            self._row = self._verdict = None
        if tag == "section":
            self._round = None

    def handle_data(self, data):
        if self._cell:
            self._text.append(data)


def test_the_report_in_every_format_holds_each_criterion_with_its_evidence_and_every_round(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 2:
            open("ok.txt", "w").write("fixed")
        if n <= 2:
            marker("READY", {"summary": "attempt %d" % n})
        else:
            say("noted")  # the steer's turn: the gate stays passed
    """)
    verifier = write_agent(tmp_path, "v", PASS_EVERY_CRITERION)
    goal = sup.new_goal("create ok.txt", "--criterion", "ok.txt exists", "--check", "test -f ok.txt",
                        "--criterion", "it reads well", lead=lead, verifier=verifier, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    sup.cli("goal", "steer", goal, "mention the fix in the summary")
    wait_until(lambda: any(s for s in sup.events(goal) if s["type"] == "steer_delivered"), timeout=30)
    wait_until(lambda: sup.show(goal)["in_flight"] is None, timeout=30)
    view = sup.show(goal)
    evidence = {c["id"]: c["evidence"] for c in view["criteria"]}
    assert set(evidence) == {"c1", "c2"} and all(evidence.values())

    data = sup.cli("goal", "report", goal, "--format", "json").json()
    assert {c["id"]: c["evidence"] for c in data["criteria"]} == evidence
    assert [(r["round"], r["outcome"]) for r in data["rounds"]] == [(1, "held"), (2, "passed")]
    first = {res["id"]: res for res in data["rounds"][0]["results"]}
    assert first["c1"]["verdict"] == "fail" and "exited 1" in first["c1"]["evidence"]
    assert [s["text"] for s in data["steers"]] == ["mention the fix in the summary"]
    assert {"path": "ok.txt", "change": "added"} in data["changed_files"]["files"]

    md = sup.cli("goal", "report", goal).stdout
    for cid, text in evidence.items():
        assert f"**{cid}** [PASS]" in md and " ".join(text.split()) in md
    assert "### Round 1: HELD" in md and "### Round 2: PASSED" in md
    assert "`ok.txt`" in md and "mention the fix in the summary" in md

    out = os.path.join(str(tmp_path), "report.html")
    sup.cli("goal", "report", goal, "--format", "html", "-o", out)
    parser = _Dossier()
    with open(out, encoding="utf-8") as f:
        parser.feed(f.read())
    assert {cid: " ".join(row["evidence"].split()) for cid, row in parser.criteria.items()} == {
        cid: " ".join(text.split()) for cid, text in evidence.items()
    }
    assert {cid: row["status"] for cid, row in parser.criteria.items()} == {"c1": "pass", "c2": "pass"}
    assert {n: r["outcome"] for n, r in parser.rounds.items()} == {"1": "held", "2": "passed"}
    assert parser.rounds["1"]["verdicts"]["c1"]["verdict"] == "fail"
    assert parser.rounds["2"]["verdicts"]["c2"]["evidence"] == "checked"
    assert parser.fetches == []  # self-contained: nothing to load at view time


def test_the_report_lists_files_changed_since_the_starting_commit_of_a_git_workspace(sup, ws, tmp_path):
    git = ["git", "-C", ws, "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    for name in ("kept.txt", "edited.txt", "removed.txt"):
        with open(os.path.join(ws, name), "w") as f:
            f.write(name)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    lead = write_agent(tmp_path, "lead", """
        open("edited.txt", "a").write(" more")
        os.remove("removed.txt")
        open("new.txt", "w").write("new")
        marker("READY", {"summary": "changed three files"})
    """)
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    changed = sup.cli("goal", "report", goal, "--format", "json").json()["changed_files"]
    assert changed["against"]["kind"] == "git" and len(changed["against"]["commit"]) == 40
    assert {f["path"]: f["change"] for f in changed["files"]} == {"edited.txt": "modified", "removed.txt": "deleted", "new.txt": "added"}


# -- hooks ------------------------------------------------------------------------------------


def hooked_supervisor(tmp_path, hooks: str) -> Supervisor:
    return Supervisor(tmp_path, config="[hooks]\n" + hooks)


def recorder(tmp_path) -> tuple[str, str]:
    """A hook command that appends one JSON line per call: its environment and stdin. It
    writes next to the test, where no sandboxed agent could: hooks run as the operator."""
    log = os.path.join(str(tmp_path), "hook.log")
    script = os.path.join(str(tmp_path), "hook.py")
    with open(script, "w") as f:
        f.write(
            "import json, os, sys\n"
            "goal = json.loads(sys.stdin.read())\n"
            f"with open({log!r}, 'a') as f:\n"
            "    f.write(json.dumps({k: os.environ.get(k) for k in ('CREWCTL_GOAL', 'CREWCTL_STATUS', 'CREWCTL_REASON')} | {'stdin': goal}) + '\\n')\n"
        )
    return f"{shutil.which('python3') or 'python3'} {script}", log


def calls(log: str) -> list[dict]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_the_attention_hook_fires_once_per_entry_with_the_goal_on_stdin(tmp_path):
    command, log = recorder(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    with hooked_supervisor(tmp_path, f"on_attention = {json.dumps(command)}\non_done = {json.dumps(command)}\n") as sup:
        lead = write_agent(tmp_path, "lead", """
            if count() == 2:
                say("noted")  # the steer's turn: the gate stays passed
            else:
                marker("READY", {"summary": "done"})
        """)
        goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
        [first] = wait_until(lambda: calls(log), timeout=30, message="the on_attention hook")
        assert first["CREWCTL_GOAL"] == goal and first["CREWCTL_STATUS"] == "awaiting_signoff" and first["CREWCTL_REASON"] == ""
        assert first["stdin"]["id"] == goal and first["stdin"]["status"] == "awaiting_signoff"
        assert first["stdin"]["attention"]["why"] == "awaiting_signoff"
        # A steer turn while the gate stays passed is no new entry ...
        sup.cli("goal", "steer", goal, "one more thing")
        sup.wait_for_event(goal, "steer_delivered")
        wait_until(lambda: sup.show(goal)["in_flight"] is None, timeout=30)
        # ... a send-back and a passed gate again is one.
        sup.cli("goal", "send-back", goal, "--notes", "redo it")
        sup.wait_for_event(goal, "gate_passed", where=lambda e: e["payload"]["round"] == 2)
        wait_until(lambda: len(calls(log)) >= 2, timeout=30, message="the second entry's hook")
        sup.cli("goal", "signoff", goal)
        wait_until(lambda: len(calls(log)) >= 3, timeout=30, message="the on_done hook")
        statuses = [c["CREWCTL_STATUS"] for c in calls(log)]
        assert statuses == ["awaiting_signoff", "awaiting_signoff", "done"]
        assert "hook_failed" not in sup.event_types(goal)


def test_a_failing_hook_is_recorded_and_the_goal_proceeds(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with hooked_supervisor(tmp_path, 'on_attention = "echo nope >&2; exit 3"\n') as sup:
        lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "done"})')
        goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
        failed = sup.wait_for_event(goal, "hook_failed")
        assert failed["payload"]["hook"] == "on_attention" and failed["payload"]["status"] == "awaiting_signoff"
        assert "exited 3" in failed["payload"]["error"] and "nope" in failed["payload"]["error"]
        sup.cli("goal", "signoff", goal)
        assert sup.show(goal)["status"] == "done"


def test_a_hanging_hook_is_killed_at_its_timeout_recorded_and_holds_nothing_up(tmp_path):
    started = os.path.join(str(tmp_path), "hook.started")
    ws = tmp_path / "ws"
    ws.mkdir()
    hooks = f'on_attention = "touch {started}; sleep 600"\ntimeout = 2\n'
    with hooked_supervisor(tmp_path, hooks) as sup:
        lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "done"})')
        goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
        wait_until(lambda: os.path.exists(started), timeout=30, message="the hook to start")
        sup.cli("goal", "signoff", goal)  # the supervisor answers while the hook hangs
        assert sup.show(goal)["status"] == "done"
        failed = sup.wait_for_event(goal, "hook_failed", timeout=60)
        assert "timed out after 2s" in failed["payload"]["error"]


def test_a_config_with_a_bad_hook_is_refused_with_one_line(tmp_path):
    config = os.path.join(str(tmp_path), "config.toml")
    with open(config, "w") as f:
        f.write("[hooks]\non_attention = 42\n")
    result = run_cli(str(tmp_path / "home"), "run", env={"CREWCTL_CONFIG": config}, timeout=60)
    assert result.code == 1 and "[hooks] on_attention" in result.stderr and result.stderr.count("\n") == 1


# -- completion, doctor -----------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_for_each_shell_is_valid_and_completes_goal_ids(sup, ws, tmp_path, shell):
    script = sup.cli("completion", shell).stdout
    assert "_CREWCTL_COMPLETE" in script
    checker = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}[shell]
    if shutil.which(checker[0]):
        path = os.path.join(str(tmp_path), f"completion.{shell}")
        with open(path, "w") as f:
            f.write(script)
        done = subprocess.run([*checker, path], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    elif shell == "bash":
        pytest.fail("bash is needed to check the bash completion script")
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=write_agent(tmp_path, "lead", 'marker("READY", {"summary": "d"})'), workspace=ws)
    # click's protocol: bash and zsh name the word being completed by index, fish gives it.
    env = {"_CREWCTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": f"crewctl goal show {goal[:2]}",
           "COMP_CWORD": goal[:2] if shell == "fish" else "3"}
    completed = sup.cli(env=env).stdout
    assert goal in completed


def test_doctor_json_reports_each_check_and_exits_by_whether_all_is_well(sup):
    result = sup.cli("doctor", "--json", check=False)
    report = result.json()
    assert set(report["sandbox"]) >= {"ok", "how", "why"}
    assert report["config"]["path"]
    assert {"claude", "codex"} <= {b["name"] for b in report["brains"]}
    assert all(set(b) >= {"name", "found", "version"} for b in report["brains"])
    assert report["home"]["path"] == sup.home and report["home"]["mode"].startswith("0o7")
    assert report["database"]["reachable"] and report["database"]["schema"] == SCHEMA_VERSION
    assert result.code == (0 if report["ok"] else 1)


def test_doctor_says_a_home_others_can_read_needs_fixing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    result = run_cli(str(home), "doctor")
    assert result.code == 1
    assert f"chmod 700 {home}" in result.stdout
    report = run_cli(str(home), "doctor", "--json").json()
    assert report["home"]["ok"] is False and report["ok"] is False


def test_doctor_says_an_unreachable_postgresql_is_not_well(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    result = run_cli(str(home), "doctor", "--json", "--db", "postgresql://crew:secret@127.0.0.1:1/crew")
    report = result.json()
    assert result.code == 1
    assert report["database"]["kind"] == "postgres" and report["database"]["reachable"] is False
    assert "secret" not in result.stdout  # the password is never printed


def test_turns_that_report_no_tokens_are_named_where_a_token_budget_could_not_count_them(sup, ws, tmp_path):
    # An exec brain that writes no CREWCTL_USAGE_FILE, like an agent CLI that prints no usage:
    # its turns cost nothing as far as a token budget can tell.
    lead = write_agent(tmp_path, "silent", 'say("working on it")')
    goal = sup.new_goal("say hello", "--criterion", "it said hello", "--check", "true",
                        "--max-auto-turns", "1", "--token-budget", "5000", lead=lead, workspace=ws)
    view = sup.wait_for_status(goal, "blocked")
    assert view["usage"]["uncounted_turns"] >= 1 and view["usage"]["input_tokens"] == 0
    shown = sup.cli("goal", "show", goal).stdout
    assert "reported no token usage: the token budget cannot count them" in shown, shown
    result = sup.cli("doctor", "--json", check=False)
    report = result.json()
    assert result.code == 1 and report["budgets"]["ok"] is False
    assert [u["goal"] for u in report["budgets"]["uncounted"]] == [goal]
    assert f"goal budget {goal} --seconds" in report["budgets"]["why"]
    sup.cli("goal", "cancel", goal)  # a goal that is over no longer needs its budget counted
    assert sup.cli("doctor", "--json", check=False).json()["budgets"] == {"ok": True, "uncounted": []}
