"""Check results cross from the verifier's actor into the phase machine as CheckRun values."""

from __future__ import annotations

import json
from dataclasses import replace

from crewctl.goal.model import CheckRun, GoalState
from crewctl.testing.phases import Drive


def test_a_check_passes_only_on_exit_zero_within_its_timeout():
    assert CheckRun(exit=0).passed
    assert not CheckRun(exit=1).passed
    assert not CheckRun(exit=None, output="could not start").passed
    assert not CheckRun(exit=0, timed_out=True).passed


def test_a_goal_row_stored_with_plain_check_mappings_loads_as_check_runs():
    state = replace(Drive.new().state, round_checks={"c1": CheckRun(exit=1, output="2 failed")})
    row = json.loads(json.dumps(state.to_dict()))  # as the store writes and reads a goal row
    assert row["round_checks"] == {"c1": {"exit": 1, "output": "2 failed", "timed_out": False}}  # the stored JSON shape
    row["round_checks"] = {"c1": {"exit": 1, "output": "2 failed"}}  # as an older row may hold it
    assert GoalState.from_dict(row).round_checks == {"c1": CheckRun(exit=1, output="2 failed")}


def test_the_round_remembers_its_check_runs_typed_whatever_shape_they_arrived_in():
    g = Drive.new([("c1", "tests pass", {"run": "pytest"})], verifier=False)
    g.state = replace(g.state, status="running")
    g.lead('CREW_READY_BEGIN\n{"summary": "done"}\nCREW_READY_END\n')
    g.verifier(None, checks={"c1": {"exit": 3, "output": "boom"}})
    assert g.state.round_checks == {"c1": CheckRun(exit=3, output="boom")}
    assert "exited 3: boom" in g.record("verify").payload["results"][0]["evidence"]
