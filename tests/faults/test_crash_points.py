"""Kill the supervisor at each named crash point; a restart must finish the goal as if nothing happened.

Every run plays the same story: the lead claims READY before fixing (round 1 holds on
crewctl's own check), fixes and claims again (round 2 passes), then the operator steers and
the lead re-arms the gate (round 3 passes). The agents decide from their prompt and the
workspace only, so a rerun turn answers the same way. A run crashed at a point (exit 70)
and restarted without CREWCTL_CRASH_AT must end where an uncrashed run ends, with the
same decisions recorded once each, a contiguous timeline and the steer delivered once.
"""

from __future__ import annotations

import pytest

from crewctl.testing import PASS_EVERY_CRITERION, Supervisor, wait_until, write_agent

LEAD = """
if "The operator steers" in prompt:
    open("note.txt", "w").write("steered")
    marker("READY", {"summary": "added the note"})
elif "The gate held at round" in prompt:
    open("fixed.txt", "w").write("fixed")
    marker("READY", {"summary": "fixed it"})
else:
    marker("READY", {"summary": "should be fine"})
"""


# Decisions: each must be recorded exactly as often as in an uncrashed run.
DECISIONS = (
    "goal_created", "lock", "ready", "round_started", "verify", "gate_held", "gate_passed",
    "steer", "steer_delivered", "turn_finished",
)


def play(tmp_path, crash_at: str | None, db: str | None = None) -> tuple[dict, list[dict], Supervisor]:
    ws = tmp_path / "ws"
    ws.mkdir()
    lead = write_agent(tmp_path, "lead", LEAD)
    verifier = write_agent(tmp_path, "verifier", PASS_EVERY_CRITERION)
    env = {"CREWCTL_CRASH_AT": crash_at} if crash_at else {}
    sup = Supervisor(tmp_path, db=db)
    sup.start(env=env)
    crashed = False

    def crashed_or(condition):
        nonlocal crashed
        if sup.proc.poll() is not None:
            assert sup.proc.returncode == 70, f"exit {sup.proc.returncode}:\n{sup.log()}"
            crashed = True
            return True
        return condition()

    def restart_if_crashed():
        nonlocal crashed
        if crashed:
            sup.start()  # the same home, without the crash point
            crashed = False

    goal = sup.new_goal(
        "fix it", "--criterion", "fixed.txt exists", "--check", "test -f fixed.txt",
        "--criterion", "the change is sensible", lead=lead, verifier=verifier, workspace=str(ws),
    )
    wait_until(lambda: crashed_or(lambda: sup.show(goal)["status"] == "awaiting_signoff"), timeout=60,
               message="round 2 to pass (or the crash)")
    restart_if_crashed()
    sup.wait_for_status(goal, "awaiting_signoff")
    steer = sup.cli("goal", "steer", goal, "add a note, please", check=False)
    assert steer.code in (0, 4), str(steer)  # 4: the supervisor died before answering
    wait_until(lambda: crashed_or(lambda: sup.show(goal)["round"] == 3 and sup.show(goal)["status"] == "awaiting_signoff"),
               timeout=60, message="round 3 to pass (or the crash)")
    restart_if_crashed()
    view = wait_until(lambda: (v := sup.show(goal))["round"] == 3 and v["status"] == "awaiting_signoff" and v,
                      timeout=60, message="round 3 to pass after the restart")
    events = sup.events(goal)
    sup.stop()
    return view, events, sup


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """What an uncrashed run ends with (the same on either database)."""
    view, events, _ = play(tmp_path_factory.mktemp("baseline"), None)
    return view, events


def counts(events: list[dict]) -> dict[str, int]:
    return {t: sum(1 for e in events if e["type"] == t) for t in DECISIONS}


@pytest.mark.parametrize(
    "point",
    ["after_ready_persisted", "verifier_in_flight", "after_verify_persisted", "after_steer_persisted",
     "after_reply_before_record"],
)
def test_a_supervisor_crashed_at_a_point_finishes_the_goal_as_an_uncrashed_one_does(tmp_path, baseline, point, db_url):
    expected_view, expected_events = baseline
    view, events, sup = play(tmp_path, point, db_url)
    assert f"crash point {point} reached" in sup.log()
    assert view["status"] == expected_view["status"] == "awaiting_signoff"
    assert [c["status"] for c in view["criteria"]] == [c["status"] for c in expected_view["criteria"]]
    assert view["round"] == expected_view["round"] == 3
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert counts(events) == counts(expected_events)
    assert counts(events)["steer_delivered"] == 1
    reruns = [e for e in events if e["type"] == "turn_started" and e["payload"].get("rerun")]
    if point in ("after_ready_persisted", "verifier_in_flight", "after_verify_persisted", "after_reply_before_record"):
        assert len(reruns) == 1, reruns  # the interrupted turn ran again, marked as such


PLANNING_LEAD = """
if "Reports since your last turn" in prompt:
    marker("READY", {"summary": "all four steps reported"})
elif "Start the work" in prompt:
    marker("PLAN", {"steps": [{"title": "write s%d.txt" % n} for n in (1, 2, 3, 4)]})
else:
    marker("READY", {"summary": "picking up where it stopped"})
"""

WRITING_WORKER = r"""
import re
name = re.search(r"## Your step: \S+: write (\S+)", prompt).group(1)
open(name, "w").write("done")
say("wrote " + name)
"""


def run_plan(tmp_path, crash_at: str | None, db: str | None = None) -> tuple[dict, list[dict], str]:
    ws = tmp_path / "ws"
    ws.mkdir(parents=True)
    sup = Supervisor(tmp_path, db=db)
    sup.start(env={"CREWCTL_CRASH_AT": crash_at} if crash_at else {})
    try:
        goal = sup.new_goal(
            "four steps", "--criterion", "every file", "--check", "test -f s1.txt -a -f s2.txt -a -f s3.txt -a -f s4.txt",
            lead=write_agent(tmp_path, "lead", PLANNING_LEAD), worker=write_agent(tmp_path, "worker", WRITING_WORKER),
            workspace=str(ws),
        )
        if crash_at:
            assert sup.wait_exit(timeout=60) == 70, sup.log()
            sup.start()
        view = sup.wait_for_status(goal, "awaiting_signoff")
        return view, sup.events(goal), sup.log()
    finally:
        sup.stop()


def test_a_supervisor_crashed_with_half_a_plan_queued_runs_every_step_once_after_restart(tmp_path, db_url):
    expected_view, expected_events, _ = run_plan(tmp_path / "baseline", None, None)
    view, events, log = run_plan(tmp_path / "crashed", "mid_dispatch", db_url)
    assert "crash point mid_dispatch reached" in log
    assert view["status"] == expected_view["status"] == "awaiting_signoff"
    assert [s["status"] for s in view["steps"]] == ["completed"] * 4
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finished = sorted(e["payload"]["step"] for e in events if e["type"] == "step_finished")
    assert finished == ["s1", "s2", "s3", "s4"]  # every step completed once
    for once in ("goal_created", "lock", "plan", "ready", "round_started", "verify", "gate_passed"):
        assert [e["type"] for e in events].count(once) == [e["type"] for e in expected_events].count(once) == 1, once
