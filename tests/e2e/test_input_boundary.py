"""Every command's input is checked where it enters, through the real binary: a bad value
gets its exit code and at most two lines on stderr, never a traceback, never changes what
is stored, and the supervisor answers `crewctl status` right after it."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from crewctl.testing import Supervisor, run_cli, write_agent
from crewctl.testing.agents import agent_file


HUGE = str(10**30)
BAD_BYTE = "\udcff"  # how a non-UTF-8 byte in argv reaches Python; subprocess sends it back as 0xff


def assert_refused(result, code: int, *words: str) -> None:
    assert result.code == code, str(result)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, str(result)
    assert "Traceback" not in result.stderr and "Error" not in result.stderr.replace("Error:", ""), str(result)
    for word in words:
        assert word in result.stderr, str(result)


def stored(sup, goal: str | None = None):
    """Everything a bad input must leave alone: the goal list, and a goal's view and timeline."""
    goals = sup.cli("goal", "list", "--json").json()
    if goal is None:
        return goals
    return goals, sup.show(goal), sup.events(goal)


def assert_still_answers(sup) -> None:
    assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid


@pytest.fixture
def waiting_goal(sup, tmp_path, ws):
    """A goal whose lead works until the test ends: it stays `running`, its timeline still."""
    lead = write_agent(tmp_path, "waiter", """
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.exists(os.path.join(state_dir, "stop")):
            time.sleep(0.05)  # poll: the agent works until the test says stop, with a deadline
    """)
    goal = sup.new_goal("wait", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_event(goal, "turn_started")
    yield goal
    agent_file(tmp_path, "waiter", "stop").write_text("1")


def new_goal_args(ws: str, *extra: str) -> list[str]:
    return ["goal", "new", "x", "--workspace", ws, "--lead", "exec:true", "--criterion", "c", "--check", "true", *extra]


@pytest.mark.parametrize(
    "flag,value,words",
    [
        ("--time-budget", "inf", ["--time-budget", "finite"]),
        ("--time-budget", "nan", ["--time-budget", "finite"]),
        ("--cost-budget", "inf", ["--cost-budget", "finite"]),
        ("--cost-budget", "nan", ["--cost-budget", "finite"]),
        ("--token-budget", HUGE, ["--token-budget", "31-digit"]),
        ("--time-budget", "1e300", ["--time-budget", "at most"]),
        ("--check-timeout", "inf", ["--check-timeout", "finite"]),
        ("--token-budget", str(2**70), ["--token-budget"]),
    ],
)
def test_a_budget_that_is_not_finite_and_bounded_is_a_usage_error_and_the_supervisor_answers(sup, ws, flag, value, words):
    before = stored(sup)
    assert_refused(sup.cli(*new_goal_args(ws, flag, value), check=False), 2, *words)
    assert stored(sup) == before
    assert_still_answers(sup)


@pytest.mark.parametrize("flag,value", [("--tokens", HUGE), ("--seconds", "inf"), ("--seconds", "nan"), ("--cost", "inf"), ("--cost", "1e308")])
def test_goal_budget_with_a_value_that_is_not_finite_and_bounded_is_a_usage_error_and_changes_nothing(sup, waiting_goal, flag, value):
    before = stored(sup, waiting_goal)
    assert_refused(sup.cli("goal", "budget", waiting_goal, flag, value, check=False), 2, flag)
    assert stored(sup, waiting_goal) == before
    assert_still_answers(sup)


def test_a_non_utf8_objective_is_a_usage_error(sup, ws):
    before = stored(sup)
    result = sup.cli("goal", "new", f"fix {BAD_BYTE} it", "--workspace", ws, "--lead", "exec:true", "--criterion", "c", "--check", "true", check=False)
    assert_refused(result, 2, "OBJECTIVE", "UTF-8")
    assert stored(sup) == before
    assert_still_answers(sup)


@pytest.mark.parametrize("command", [["goal", "steer", "{goal}", f"use {BAD_BYTE}"], ["goal", "show", f"{BAD_BYTE}"],
                                     ["goal", "events", f"ab{BAD_BYTE}"], ["goal", "answer", "{goal}", f"q1={BAD_BYTE}"]])
def test_non_utf8_text_anywhere_is_a_usage_error_and_changes_nothing(sup, waiting_goal, command):
    before = stored(sup, waiting_goal)
    result = sup.cli(*[part.format(goal=waiting_goal) for part in command], check=False)
    assert_refused(result, 2, "UTF-8")
    assert stored(sup, waiting_goal) == before
    assert_still_answers(sup)


def test_a_garbage_listen_endpoint_is_named_as_a_bad_endpoint_not_a_missing_key(tmp_path):
    result = run_cli(str(tmp_path / "home"), "run", "--listen", "garbage")
    assert_refused(result, 2, "--listen", "'garbage' is not an endpoint", "tcp://HOST:PORT")
    assert "CURVE" not in result.stderr and "keys" not in result.stderr


def test_a_garbage_worker_connect_endpoint_is_named_as_a_bad_endpoint(tmp_path):
    result = run_cli(str(tmp_path / "home"), "worker", "--connect", "garbage")
    assert_refused(result, 2, "--connect", "is not an endpoint")
    assert "CURVE" not in result.stderr


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1", "tcp://127.0.0.1:99999", "tcp://*:7700"])
def test_a_worker_endpoint_without_a_usable_host_and_port_is_a_usage_error(tmp_path, endpoint):
    assert_refused(run_cli(str(tmp_path / "home"), "worker", "--connect", endpoint), 2, "--connect")


@pytest.mark.parametrize(
    "spec,words",
    [
        ("openai:m@not a url", ["--lead", "not a base URL"]),
        ("claude", ["--lead", "claude is not installed", "PATH"]),
        ("nosuchbrain", ["--lead", "unknown brain"]),
        ("scripted:/no/such/script.json", ["--lead"]),
    ],
)
def test_a_brain_that_cannot_run_here_is_refused_at_goal_new_with_the_reason(sup, ws, spec, words):
    before = stored(sup)
    result = sup.cli("goal", "new", "x", "--workspace", ws, "--lead", spec, "--criterion", "c", "--check", "true", check=False)
    assert_refused(result, 2, *words)
    assert stored(sup) == before
    assert_still_answers(sup)


def test_an_uninstalled_verifier_is_refused_too(sup, ws):
    result = sup.cli("goal", "new", "x", "--workspace", ws, "--lead", "exec:true", "--verifier", "codex", "--criterion", "c", check=False)
    assert_refused(result, 2, "--verifier", "codex is not installed")


def test_a_usage_file_claiming_infinite_cost_leaves_every_json_output_valid(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "spender", """
        with open(env["CREWCTL_USAGE_FILE"], "w") as f:
            f.write('{"input_tokens": 10, "output_tokens": 5, "cost_usd": Infinity}')
        marker("READY", {"summary": "done"})
    """)
    goal = sup.new_goal("spend", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    view = strict(sup.cli("goal", "show", goal, "--json").stdout)
    assert view["usage"]["cost_usd"] == 0 and view["usage"]["input_tokens"] == 10
    events = strict(sup.cli("goal", "events", goal, "--json").stdout)
    finished = [e for e in events if e["type"] == "turn_finished" and e["payload"]["role"] == "lead"]
    assert finished[0]["payload"]["usage"]["cost_usd"] is None
    strict(sup.cli("goal", "list", "--json").stdout)


# -- `crewctl run` where it cannot run ------------------------------------------------------------


def test_crewctl_run_with_crewctl_home_a_file_is_one_line(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a directory")
    result = run_cli(str(home), "run")
    assert_refused(result, 1, "is a file, not a directory")
    assert home.read_text() == "not a directory"


def test_crewctl_run_with_an_unwritable_home_is_one_line(tmp_path):
    if os.geteuid() == 0:
        home = "/sys/kernel"  # exists, and not even root may create files in it
    else:
        home = str(tmp_path / "locked")
        os.mkdir(home, 0o500)
    result = run_cli(home, "run")
    assert_refused(result, 1, "cannot use CREWCTL_HOME", "write")


def test_crewctl_run_on_a_page_corrupted_store_is_one_line_and_leaves_it_alone(tmp_path, ws):
    home = tmp_path / "home"
    with Supervisor(tmp_path, home=str(home)) as sup:
        for n in range(3):
            goal = sup.new_goal(f"goal {n}", "--criterion", "c", "--check", "false", lead=write_agent(tmp_path, f"l{n}", "say('thinking')"), workspace=ws)
        sup.wait_for_event(goal, "turn_finished")
    db = home / "crew.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the first: the header still reads
        data[offset + 8 : offset + 208] = bytes(range(200))
    db.write_bytes(bytes(data))
    result = run_cli(str(home), "run", timeout=60)
    assert_refused(result, 1, "damaged")
    assert "ActorDeadError" not in result.stderr
    assert db.read_bytes() == bytes(data)
