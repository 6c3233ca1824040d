"""Bad input gets one clear line on stderr and its exit code, never a traceback, and never
changes what is stored."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from crewctl.testing import AGENT_STATE, READY_EVERY_TURN, Supervisor, crewctl_binary, run_cli, write_agent


def assert_one_line(result, code: int, *words: str) -> None:
    assert result.code == code, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith(("crewctl: ", "Error: ", "Usage: ")) or "Error:" in result.stderr, str(result)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, str(result)


def click_usage_error(result, *words: str) -> None:
    """click prints its usage line plus one error line; still no traceback, exit 2."""
    assert result.code == 2, str(result)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:"), str(result)
    for word in words:
        assert word in result.stderr, str(result)


@pytest.fixture
def running_goal(sup, tmp_path):
    """A goal whose lead waits until the test ends: it stays `running`."""
    lead = write_agent(tmp_path, "lead", """
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.exists(os.path.join(state_dir, "stop")):
            time.sleep(0.05)  # poll: the agent works until the test says stop, with a deadline
    """)
    ws = tmp_path / "ws"
    ws.mkdir()
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=str(ws))
    yield goal
    (tmp_path / AGENT_STATE / "lead.state" / "stop").write_text("1")


def ready_lead(tmp_path) -> str:
    return write_agent(tmp_path, "ready", READY_EVERY_TURN)


def snapshot(sup, goal):
    return sup.show(goal), sup.events(goal)


def test_an_unknown_goal_id_is_one_line_and_exit_1(sup, running_goal):
    for args in (("goal", "show", "nosuchgoal"), ("goal", "steer", "nosuchgoal", "hello"), ("goal", "events", "nosuchgoal")):
        assert_one_line(sup.cli(*args, check=False), 1, "no goal nosuchgoal")


def test_a_command_in_the_wrong_status_is_refused_with_exit_3_and_changes_nothing(sup, running_goal):
    before = snapshot(sup, running_goal)
    for args in (("goal", "signoff", running_goal), ("goal", "send-back", running_goal, "--notes", "x"),
                 ("goal", "answer", running_goal, "q1=yes"), ("goal", "approve", running_goal, "s1")):
        assert_one_line(sup.cli(*args, check=False), 3)
    assert snapshot(sup, running_goal) == before


def test_malformed_criterion_and_check_options_are_usage_errors_even_without_a_supervisor(tmp_path):
    home = str(tmp_path / "home")
    ws = str(tmp_path)
    cases = [
        (["--check", "true"], "--check must follow"),
        (["--criterion", "a", "--check", "true", "--check", "false"], "two --check"),
        (["--criterion", "a", "--check", "echo 1\necho 2"], "one line"),
        # A C1 terminal escape (CSI) is refused here as it is from a LOCK: one check-command rule.
        (["--criterion", "a", "--check", "echo \x9b31m red"], "one line"),
        (["--criterion", "  "], "non-empty"),
        ([arg for n in range(21) for arg in ("--criterion", f"c{n}")], "at most 20"),
    ]
    for args, words in cases:
        result = run_cli(home, "goal", "new", "objective", "--workspace", ws, "--lead", "exec:true", *args)
        assert_one_line(result, 2, words)
    assert not os.path.exists(os.path.join(home, "crew.db"))


def test_an_unreadable_or_invalid_criteria_file_is_a_usage_error_and_changes_nothing(sup, running_goal, tmp_path):
    before = snapshot(sup, running_goal)
    missing = sup.cli("goal", "criteria", running_goal, "--file", str(tmp_path / "nope.json"), check=False)
    assert_one_line(missing, 2, "cannot read criteria file")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert_one_line(sup.cli("goal", "criteria", running_goal, "--file", str(bad), check=False), 2, "not valid JSON")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('[{"text": "x", "verify": {"run": "a\\nb"}}]')
    assert_one_line(sup.cli("goal", "criteria", running_goal, "--file", str(wrong), check=False), 2, "one line")
    assert snapshot(sup, running_goal) == before


def test_malformed_answers_are_usage_errors(sup, running_goal):
    assert_one_line(sup.cli("goal", "answer", running_goal, "no-equals-sign", check=False), 2, "QID=ANSWER")


def test_a_database_from_a_newer_crewctl_is_a_clear_error_and_is_left_alone(tmp_path):
    home = tmp_path / "home"
    with Supervisor(tmp_path, home=str(home)) as sup:
        ws = tmp_path / "ws"
        ws.mkdir()
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=ready_lead(tmp_path), workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
    db = home / "crew.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, so bytes compare
    conn.close()
    before = db.read_bytes()
    assert_one_line(run_cli(str(home), "goal", "list"), 1, "newer crewctl", "upgrade")
    done = run_cli(str(home), "run")
    assert_one_line(done, 1, "newer crewctl")
    assert db.read_bytes() == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == ("99",)
        assert conn.execute("SELECT status FROM goal").fetchone() == ("awaiting_signoff",)


def test_a_second_supervisor_on_the_same_home_is_refused(sup):
    result = run_cli(sup.home, "run")
    assert_one_line(result, 1, "already running", str(sup.pid))
    assert sup.cli("status").code == 0  # the first one is untouched


def test_mutations_without_a_supervisor_exit_4_and_reads_still_work(tmp_path):
    home = str(tmp_path / "home")
    with Supervisor(tmp_path, home=home) as sup:
        ws = tmp_path / "ws"
        ws.mkdir()
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=ready_lead(tmp_path), workspace=str(ws))
        sup.wait_for_status(goal, "awaiting_signoff")
    assert_one_line(run_cli(home, "goal", "signoff", goal), 4, "no supervisor", "crewctl run")
    assert_one_line(run_cli(home, "status"), 4, "no supervisor")
    assert run_cli(home, "goal", "show", goal, "--json").json()["status"] == "awaiting_signoff"
    assert run_cli(home, "goal", "list").code == 0


def test_reads_on_a_fresh_home_create_nothing(tmp_path):
    home = tmp_path / "fresh"
    assert run_cli(str(home), "goal", "list").code == 0
    assert_one_line(run_cli(str(home), "goal", "show", "abc"), 1, "no goal abc")
    assert not home.exists()


def test_a_reply_of_50_mib_is_a_failed_turn_and_is_never_stored(sup, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        if count() == 1:
            sys.stdout.write("x" * (50 * 1024 * 1024))
        else:
            marker("READY", {"summary": "small reply"})
    """)
    ws = tmp_path / "ws"
    ws.mkdir()
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=str(ws))
    failed = sup.wait_for_event(goal, "turn_failed")
    assert "more than 8 MiB" in failed["payload"]["error"]
    sup.wait_for_status(goal, "awaiting_signoff")
    with sqlite3.connect(os.path.join(sup.home, "crew.db")) as conn:
        longest = conn.execute("SELECT max(length(reply)) FROM turn").fetchone()[0]
    assert longest < 1024 * 1024
    assert os.path.getsize(os.path.join(sup.home, "crew.db")) < 5 * 1024 * 1024


def test_an_unknown_crash_point_is_a_usage_error(tmp_path):
    result = run_cli(str(tmp_path / "home"), "run", env={"CREWCTL_CRASH_AT": "nowhere"})
    assert_one_line(result, 2, "not a crash point")


def test_an_unusable_database_url_is_one_line(tmp_path):
    result = run_cli(str(tmp_path / "home"), "run", "--db", "nosuchscheme://x")
    assert_one_line(result, 1, "database URL")


def test_every_command_has_help():
    for args in (["--help"], ["run", "--help"], ["status", "--help"], ["demo", "--help"], ["goal", "--help"],
                 ["goal", "new", "--help"], ["goal", "events", "--help"], ["goal", "criteria", "--help"],
                 ["brains", "--help"]):
        done = subprocess.run([crewctl_binary(), *args], capture_output=True, text=True)
        assert done.returncode == 0 and "Usage:" in done.stdout, args
