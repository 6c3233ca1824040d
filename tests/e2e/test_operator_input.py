"""What the operator says reaches the crew's next prompt, whatever state the goal is in."""

from __future__ import annotations

import json

from crewctl.testing import PASS_EVERY_CRITERION, wait_until, write_agent
from crewctl.testing.agents import agent_file


# A lead that keeps every prompt it gets; its first run works until it is stopped (paused),
# every later one is done at once.
KEEPS_PROMPTS = """
n = count()
with open(os.path.join(state_dir, f"prompt-{n}.txt"), "w") as f:
    f.write(prompt)
if n == 1:
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.05)  # poll: the first run works until the pause stops it, with a deadline
marker("READY", {"summary": "done"})
"""


def prompt_of(tmp_path, run: int) -> str:
    return agent_file(tmp_path, "lead", f"prompt-{run}.txt").read_text()


def test_a_steer_and_a_criteria_edit_made_while_paused_reach_the_resumed_turns_prompt(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", KEEPS_PROMPTS)
    goal = sup.new_goal("parse dates", "--criterion", "tests pass", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_event(goal, "turn_started")
    wait_until(lambda: agent_file(tmp_path, "lead", "prompt-1.txt").exists(), message="the first run to start")
    sup.cli("goal", "pause", goal)
    sup.cli("goal", "steer", goal, "use zoneinfo, not pytz")
    criteria = tmp_path / "criteria.json"
    criteria.write_text(json.dumps([
        {"id": "c1", "text": "tests pass", "verify": {"run": "true"}},
        {"id": "c2", "text": "the changelog names the fix", "verify": {"run": "true"}},
    ]))
    sup.cli("goal", "criteria", goal, "--file", str(criteria))
    assert sup.show(goal)["status"] == "paused"
    sup.cli("goal", "resume", goal)
    sup.wait_for_status(goal, "awaiting_signoff")

    first, resumed = prompt_of(tmp_path, 1), prompt_of(tmp_path, 2)
    assert "use zoneinfo, not pytz" not in first and "the changelog names the fix" not in first
    assert resumed.startswith(first)  # the same turn, asked again, with what came since
    assert "use zoneinfo, not pytz" in resumed and "the changelog names the fix" in resumed
    events = sup.events(goal)
    turn = [e for e in events if e["type"] == "turn_started"][0]["payload"]["turn"]
    assert [e["payload"] for e in events if e["type"] == "steer_delivered"] == [{"steer": 1, "turn": turn}]
    rerun = [e for e in events if e["type"] == "turn_started" and e["payload"].get("rerun")]
    assert rerun and rerun[0]["payload"]["turn"] == turn and rerun[0]["payload"]["refreshed"] is True


def test_criteria_given_while_the_leads_questions_are_open_close_the_round_on_the_record(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        with open(os.path.join(state_dir, f"prompt-{n}.txt"), "w") as f:
            f.write(prompt)
        if n == 1:
            marker("CLARIFY", {"questions": [{"text": "Which Python versions?"}]})
        else:
            marker("READY", {"summary": "done"})
    """)
    verifier = write_agent(tmp_path, "verifier", PASS_EVERY_CRITERION)
    goal = sup.new_goal("support old pythons", lead=lead, verifier=verifier, workspace=ws)
    sup.wait_for_event(goal, "clarify")
    criteria = tmp_path / "criteria.json"
    criteria.write_text(json.dumps([{"text": "python 3.9 works", "verify": {"run": "true"}}]))
    sup.cli("goal", "criteria", goal, "--file", str(criteria))
    sup.wait_for_status(goal, "awaiting_signoff")
    events = sup.events(goal)
    types = [e["type"] for e in events]
    assert types.index("clarify_closed") < types.index("lock")
    closed = events[types.index("clarify_closed")]["payload"]
    assert closed["seq"] == 1 and "instead of answering" in closed["reason"]
    assert "your questions (round 1) are closed unanswered" in prompt_of(tmp_path, 2)
    assert sup.show(goal)["questions"] is None
    late = sup.cli("goal", "answer", goal, "--seq", "1", "q1=3.9", check=False)
    assert late.code == 3 and "Traceback" not in late.stderr


def test_a_steer_sent_while_a_goal_is_blocked_reaches_the_turn_that_resumes_it(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        with open(os.path.join(state_dir, f"prompt-{n}.txt"), "w") as f:
            f.write(prompt)
        if n == 1:
            marker("BLOCKED", {"reason": "which database?"})
        else:
            marker("READY", {"summary": "done"})
    """)
    goal = sup.new_goal("migrate", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "blocked")
    sup.cli("goal", "steer", goal, "use PostgreSQL 16")
    sup.cli("goal", "resume", goal)
    sup.wait_for_status(goal, "awaiting_signoff")
    assert "use PostgreSQL 16" in prompt_of(tmp_path, 2) and "use PostgreSQL 16" not in prompt_of(tmp_path, 1)
