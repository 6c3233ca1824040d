"""What an operator does, through the real binary: scope, watch, pause, and rely on the contracts."""

from __future__ import annotations

import json
import os
import subprocess


from crewctl.testing import AGENT_STATE, lock_is_held, PASS_EVERY_CRITERION, crewctl_binary, wait_until, write_agent




def test_a_goal_without_criteria_is_scoped_through_questions_and_a_lock(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        if "answer: 3.12" in prompt:
            marker("LOCK", {"criteria": [{"text": "runs on 3.12", "verify": {"run": "true"}},
                                         {"text": "documented", "verify": "read the README"}]})
        elif "Acceptance criteria (locked)" in prompt:
            marker("READY", {"summary": "done"})
        else:
            marker("CLARIFY", {"questions": [{"text": "Which Python?", "options": ["3.11", "3.12"]}]})
    """)
    goal = sup.new_goal("support the new Python", lead=lead, verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION), workspace=ws)
    view = wait_until(lambda: (v := sup.show(goal))["questions"] and v)
    assert view["status"] == "scoping"
    assert view["questions"]["questions"][0]["options"] == ["3.11", "3.12"]
    sup.cli("goal", "answer", goal, "--seq", str(view["questions"]["seq"]), "q1=2")
    view = sup.wait_for_status(goal, "awaiting_signoff")
    assert [c["id"] for c in view["criteria"]] == ["c1", "c2"]
    assert view["criteria"][0]["verify"] == {"run": "true"}
    lock = next(e for e in sup.events(goal) if e["type"] == "lock")
    assert lock["payload"]["by"] == "lead"


def test_pause_stops_the_running_turn_and_resume_runs_it_again(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        alive = hold("alive%d" % n)
        if n == 1:
            time.sleep(60)  # the agent's turn runs until the test pauses it: that is what is tested
        marker("READY", {"summary": "turn %d" % n})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    first = tmp_path / AGENT_STATE / "lead.state" / "alive1"
    wait_until(lambda: lock_is_held(first), message="the lead's first turn")
    paused = sup.cli("goal", "pause", goal, "--json").json()
    assert paused["status"] == "paused" and paused["reason"] == "paused by the operator"
    wait_until(lambda: not lock_is_held(first), message="the paused turn's process to be gone")
    assert sup.show(goal)["status"] == "paused"
    sup.cli("goal", "resume", goal)
    sup.wait_for_status(goal, "awaiting_signoff")
    starts = [e["payload"] for e in sup.events(goal) if e["type"] == "turn_started" and e["payload"]["role"] == "lead"]
    assert [(s["turn"], bool(s.get("rerun"))) for s in starts] == [(1, False), (1, True)]


def test_events_follow_streams_the_timeline_and_ends_with_the_goal(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        marker("READY", {"summary": "ok"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    env = dict(os.environ, CREWCTL_HOME=sup.home)
    follower = subprocess.Popen([crewctl_binary(), "goal", "events", goal, "--follow", "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sup.wait_for_status(goal, "awaiting_signoff")
    sup.cli("goal", "signoff", goal)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    types = [e["type"] for e in lines]
    assert "done" in types and types[-1] == "reflection"  # a done goal's timeline ends with its reflection


def test_status_json_carries_the_daemon_hosts_and_dropped_frames(sup):
    status = sup.cli("status", "--json").json()
    assert status["daemon"]["pid"] == sup.pid
    assert status["daemon"]["control"].startswith("ipc://")  # the operator's socket, not a port
    assert status["daemon"]["listen"].startswith("tcp://127.0.0.1:")
    assert isinstance(status["hosts"], list)
    for host in status["hosts"]:
        assert {"name", "lanes", "last_seen", "in_flight"} <= set(host)
    assert "dropped_frames" in status


def test_goal_show_json_has_every_contract_field(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        marker("READY", {"summary": "ok"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", "--token-budget", "1000", lead=lead, workspace=ws)
    view = sup.wait_for_status(goal, "awaiting_signoff")
    assert {"id", "objective", "status", "criteria", "attempt", "attempt_cap", "round", "usage", "budget", "reason"} <= set(view)
    assert {"id", "text", "verify", "status", "evidence"} <= set(view["criteria"][0])
    assert {"input_tokens", "output_tokens", "seconds"} <= set(view["usage"])
    assert view["budget"]["tokens"] == 1000 and view["reason"] is None
    for e in sup.events(goal):
        assert {"seq", "type", "at", "payload"} <= set(e)


def test_an_exec_brain_gets_the_contract_environment_and_its_usage_file_counts(sup, ws, tmp_path):
    seen = tmp_path / AGENT_STATE / "seen.jsonl"  # where the agents may write
    lead = write_agent(tmp_path, "lead", f"""
        keys = ["CREWCTL_ROLE", "CREWCTL_GOAL", "CREWCTL_SESSION", "CREWCTL_TURN", "CREWCTL_WORKDIR", "CREWCTL_USAGE_FILE", "CREWCTL_ROUND"]
        with open({str(seen)!r}, "a") as f:
            f.write(json.dumps({{k: env.get(k) for k in keys}} | {{"cwd": os.getcwd(), "stdin": len(prompt)}}) + "\\n")
        json.dump({{"input_tokens": 100, "output_tokens": 7, "cost_usd": 0.25}}, open(env["CREWCTL_USAGE_FILE"], "w"))
        marker("READY", {{"summary": "ok"}})
    """)
    verifier = write_agent(tmp_path, "v", f"""
        with open({str(seen)!r}, "a") as f:
            f.write(json.dumps({{k: env.get(k) for k in ["CREWCTL_ROLE", "CREWCTL_ROUND", "CREWCTL_SESSION"]}}) + "\\n")
        json.dump({{"input_tokens": 10, "output_tokens": 3}}, open(env["CREWCTL_USAGE_FILE"], "w"))
        marker("VERIFY", {{"results": [{{"id": "c1", "verdict": "pass", "evidence": "checked"}}]}})
    """)
    goal = sup.new_goal("x", "--criterion", "judged", lead=lead, verifier=verifier, workspace=ws)
    view = sup.wait_for_status(goal, "awaiting_signoff")
    lead_env, verifier_env = [json.loads(line) for line in seen.read_text().splitlines()]
    assert lead_env["CREWCTL_ROLE"] == "lead" and lead_env["CREWCTL_GOAL"] == goal
    assert lead_env["CREWCTL_TURN"] == "1" and lead_env["CREWCTL_ROUND"] is None
    assert lead_env["CREWCTL_WORKDIR"] == ws == lead_env["cwd"] and lead_env["stdin"] > 0
    assert verifier_env["CREWCTL_ROLE"] == "verifier" and verifier_env["CREWCTL_ROUND"] == "1"
    assert verifier_env["CREWCTL_SESSION"] != lead_env["CREWCTL_SESSION"]
    assert view["usage"]["input_tokens"] == 110 and view["usage"]["output_tokens"] == 10
    assert view["usage"]["cost_usd"] == 0.25
