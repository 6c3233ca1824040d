"""Supervision: crashing actors restart until the crash loop stops them; shutdown drains;
operator writes during a turn are never lost."""

from __future__ import annotations

import os
import signal

import pytest

from crewctl.goal import phases
from crewctl.testing import AGENT_STATE, Supervisor, wait_until, write_agent


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    return str(path)


def test_a_lead_whose_brain_crashes_on_every_turn_reaches_crash_loop_and_stops_retrying(tmp_path, ws, db_url):
    lead = write_agent(tmp_path, "lead", """
        count()
        os.kill(os.getpid(), 9)
    """)
    with Supervisor(tmp_path, db=db_url) as sup:
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        view = sup.wait_for_status(goal, "blocked")
        assert view["reason"].startswith("crash_loop")
        events = sup.events(goal)
        restarts = [e for e in events if e["type"] == "actor_restarted"]
        assert len(restarts) == phases.RESTART_INTENSITY
        assert all(e["payload"]["actor"] == "lead" and "SIGKILL" in e["payload"]["error"] for e in restarts)
        blocked = [e for e in events if e["type"] == "blocked"][-1]
        assert blocked["payload"]["reason"] == "crash_loop" and blocked["payload"]["actor"] == "lead"
        # Every restart ran in a fresh session, and nothing is scheduled to run again.
        sessions = [e for e in events if e["type"] == "turn_started" and e["payload"].get("new_session")]
        assert len(sessions) == phases.RESTART_INTENSITY
        assert view["retry_at"] is None and view["in_flight"]["interrupted"] is True
        assert int((tmp_path / AGENT_STATE / "lead.state" / "turns").read_text()) == phases.RESTART_INTENSITY + 1
        # Stopping the supervisor and starting it again does not retry a blocked goal.
        sup.stop()
        sup.start()
        assert sup.show(goal)["status"] == "blocked"
        sup.cli("goal", "list")  # a round trip through the store after the resume
        assert int((tmp_path / AGENT_STATE / "lead.state" / "turns").read_text()) == phases.RESTART_INTENSITY + 1


def test_sigterm_lets_the_running_turn_finish_and_record_before_exiting(tmp_path, ws, db_url):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            open(os.path.join(state_dir, "started"), "w").write("1")
            deadline = time.time() + 30
            while not os.path.exists(os.path.join(state_dir, "go")) and time.time() < deadline:
                time.sleep(0.02)  # poll: the agent waits for the test's go-ahead, with a deadline
        marker("READY", {"summary": "turn %d" % n})
    """)
    with Supervisor(tmp_path, db=db_url) as sup:
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        wait_until(lambda: (tmp_path / AGENT_STATE / "lead.state" / "started").exists())
        sup.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutting down" in sup.log(), message="the supervisor to start draining")
        (tmp_path / AGENT_STATE / "lead.state" / "go").write_text("1")
        assert sup.wait_exit(timeout=30) == 0
        types = [e["type"] for e in sup.events(goal)]
        assert "turn_finished" in types and "ready" in types  # the turn's result was stored
        assert "round_started" in types
        assert not os.path.exists(os.path.join(sup.home, "daemon.json"))
        sup.start()
        sup.wait_for_status(goal, "awaiting_signoff")
        reruns = [e for e in sup.events(goal) if e["type"] == "turn_started" and e["payload"].get("rerun")]
        assert [e["payload"]["role"] for e in reruns] == ["verifier"]  # the round drained away reruns; the lead turn does not


def test_a_turn_longer_than_the_grace_period_is_stopped_and_rerun_on_the_next_start(tmp_path, ws, db_url):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            open(os.path.join(state_dir, "started"), "w").write("1")
            time.sleep(60)  # the agent's turn outlasts the grace period: that is what is tested
        marker("READY", {"summary": "turn %d" % n})
    """)
    with Supervisor(tmp_path, db=db_url) as sup:  # started with --grace 2
        goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        wait_until(lambda: (tmp_path / AGENT_STATE / "lead.state" / "started").exists())
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.wait_exit(timeout=30) == 0
        assert "turn_finished" not in [e["type"] for e in sup.events(goal)]
        sup.start()
        sup.wait_for_status(goal, "awaiting_signoff")
        reruns = [e for e in sup.events(goal) if e["type"] == "turn_started" and e["payload"].get("rerun")]
        assert [(e["payload"]["role"], e["payload"]["turn"]) for e in reruns] == [("lead", 1)]


def test_a_criteria_edit_racing_the_end_of_a_turn_survives(tmp_path, ws, db_url):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        open(os.path.join(state_dir, "started%d" % n), "w").write("1")
        deadline = time.time() + 30
        while n == 1 and not os.path.exists(os.path.join(state_dir, "go")) and time.time() < deadline:
            time.sleep(0.005)  # poll: the agent waits for the test's go-ahead, with a deadline
        marker("READY", {"summary": "turn %d" % n})
    """)
    edited = tmp_path / "criteria.json"
    edited.write_text('[{"id": "c1", "text": "the file exists", "verify": {"run": "true"}}, '
                      '{"id": "c2", "text": "added during the turn", "verify": {"run": "true"}}]')
    with Supervisor(tmp_path, db=db_url) as sup:
        goal = sup.new_goal("x", "--criterion", "the file exists", "--check", "true", lead=lead, workspace=ws)
        wait_until(lambda: (tmp_path / AGENT_STATE / "lead.state" / "started1").exists())
        (tmp_path / AGENT_STATE / "lead.state" / "go").write_text("1")  # the turn ends now, while the edit is sent
        sup.cli("goal", "criteria", goal, "--file", str(edited))
        view = sup.wait_for_status(goal, "awaiting_signoff")
        assert [c["text"] for c in view["criteria"]] == ["the file exists", "added during the turn"]
        assert [c["status"] for c in view["criteria"]] == ["pass", "pass"]
        verdicts = [e for e in sup.events(goal) if e["type"] == "verify"]
        assert verdicts[-1]["payload"]["revision"] == view["revision"]  # the gate opened on the edited list
