"""Protected paths in the pure phase machine: the baseline at lock, a round held before its checks."""

from __future__ import annotations

import pytest

from crewctl.exceptions import Refused
from crewctl.goal import events as ev
from crewctl.goal import protect
from crewctl.goal.effects import DispatchStep, EndRound, RunLeadTurn, StartRound, TakeBaseline
from crewctl.testing.phases import Drive, block, ready

H1, H2 = "1" * 64, "2" * 64
CRITERIA = [("c1", "tests pass", {"run": "python -m pytest"}), ("c2", "README documents it", "read README.md")]
OBSERVED = {"tests/test_x.py": H1, "tests/test_y.py": H1}


def protected(criteria=CRITERIA, observed=OBSERVED, **kw) -> Drive:
    """A goal with default protection whose baseline was taken at creation."""
    g = Drive.new(criteria, protect=protect.settings(), **kw)
    [take] = g.effects(TakeBaseline)
    g.step(ev.BaselineTaken(mode=take.mode, reason=take.reason, observed=observed))
    return g


def round_finished(g: Drive, *, findings=(), refused=None, checks=None, text=None, snapshot=None):
    f = g.state.in_flight
    return g.step(ev.RoundFinished(round=g.state.round, turn=f.turn, text=text, checks=checks if checks is not None else {},
                                   protected=findings, refused=refused, snapshot=snapshot))


def test_a_goal_created_with_criteria_takes_its_baseline_before_the_leads_first_turn():
    g = Drive.new(CRITERIA, protect=protect.settings())
    effects = g.last.effects
    assert [type(e) for e in effects] == [TakeBaseline, RunLeadTurn]
    take = effects[0]
    assert (take.mode, take.reason) == ("full", "lock")
    assert take.scope.pinned == protect.DEFAULT_PINNED and take.scope.checks == ("python -m pytest",)
    assert g.state.protect.owed == "full"


def test_a_lead_lock_with_a_plan_takes_the_baseline_before_any_worker_or_lead_starts():
    g = Drive.new(protect=protect.settings())
    assert not g.effects(TakeBaseline)  # scoping: nothing locked, nothing to protect yet
    lock = block("lock", {"criteria": [{"text": "tests pass", "verify": {"run": "pytest"}}]})
    plan = block("plan", {"steps": [{"title": "fix it"}, {"title": "test it"}]})
    g.lead(lock + plan)
    kinds = [type(e) for e in g.last.effects]
    assert kinds[0] is TakeBaseline and kinds.count(DispatchStep) == 2


def test_the_baseline_is_recorded_with_what_it_pinned():
    g = protected()
    assert g.types() == ["protect_baseline"]
    payload = g.record("protect_baseline").payload
    assert payload["pinned"] == 2 and payload["reason"] == "lock" and payload["unmatched"] == []
    assert g.state.baseline == (("pinned", "tests/test_x.py", H1), ("pinned", "tests/test_y.py", H1))
    assert g.state.protect.owed is None and g.state.protect.baseline_at == g.now.isoformat()


def test_the_built_in_patterns_pin_nothing_without_a_check_command():
    g = Drive.new([("c1", "README documents it", "read README.md")], protect=protect.settings())
    [take] = g.effects(TakeBaseline)
    assert take.scope.pinned == () and take.scope.forbidden == protect.FORBIDDEN


def test_an_operator_pattern_that_matches_nothing_is_a_recorded_warning():
    g = Drive.new(CRITERIA, protect=protect.settings(["tests/**", "nothing/**"]))
    g.step(ev.BaselineTaken(mode="full", reason="lock", observed=OBSERVED))
    assert g.record("protect_baseline").payload["unmatched"] == ["nothing/**"]
    assert g.state.protect.unmatched == ("nothing/**",)


def test_each_round_carries_the_baseline_it_is_checked_against():
    g = protected()
    g.lead(ready())
    [start] = g.effects(StartRound)
    assert start.protect.entries == g.state.baseline and start.protect.problem is None


def test_a_round_with_changed_protected_paths_is_held_before_any_check_with_the_paths_named():
    g = protected()
    g.lead(ready())
    findings = (("tests/test_x.py", "deleted", "pinned"), ("conftest.py", "added", "forbidden"))
    t = round_finished(g, findings=findings, snapshot={"files": 3, "bytes": 10, "skipped": []})
    assert g.types(t) == ["turn_finished", "snapshot", "protected_changed", "verify", "gate_held", "turn_started"]
    changed = g.record("protected_changed").payload
    assert changed["paths"] == ["tests/test_x.py", "conftest.py"] and changed["count"] == 2
    results = {r["id"]: r for r in g.record("verify").payload["results"]}
    for r in results.values():
        assert r["verdict"] == "fail"
        assert "held before any check ran" in r["evidence"] and "tests/test_x.py (deleted)" in r["evidence"]
    assert g.record("gate_held").payload["failed"] == ["c1", "c2"]
    assert g.status == "running" and g.state.attempt == 1
    assert g.effects(EndRound) == [EndRound(round=1, keep_snapshot=True)]
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "held"
    assert "Restore these paths" in turn.prompt and "tests/test_x.py (deleted)" in turn.prompt
    assert "conftest.py (added, forbidden)" in turn.prompt


def test_a_round_without_a_protected_path_result_never_passes_by_omission():
    g = protected()
    g.lead(ready())
    f = g.state.in_flight
    g.step(ev.RoundFinished(round=1, turn=f.turn, text=None, checks={"c1": {"exit": 0}}))  # protected=None
    assert g.record("snapshot_refused").payload["reason"] == "the protected-path check did not run"
    assert "gate_passed" not in g.all_types() and g.status == "running"


def test_a_snapshot_over_its_quota_holds_the_round_with_the_reason():
    g = protected()
    g.lead(ready())
    round_finished(g, findings=None, refused="the snapshot is over its quota: big.bin (3.0 GiB)")
    assert g.record("snapshot_refused").payload["reason"].startswith("the snapshot is over its quota")
    evidence = g.record("verify").payload["results"][0]["evidence"]
    assert "quota" in evidence and "big.bin" in evidence


def test_a_clean_round_goes_on_to_the_checks_and_forgets_old_findings():
    g = protected([("c1", "tests pass", {"run": "pytest"})])
    g.lead(ready())
    round_finished(g, findings=(("tests/test_x.py", "changed", "pinned"),))
    assert g.state.protect.findings
    g.lead(ready())
    round_finished(g, findings=(), checks={"c1": {"exit": 0, "output": "ok"}})
    assert g.status == "awaiting_signoff" and g.state.protect.findings == ()


def test_a_baseline_that_could_not_be_taken_holds_every_round_until_the_operator_rebaselines():
    g = Drive.new(CRITERIA, protect=protect.settings())
    g.step(ev.BaselineTaken(mode="full", reason="lock", error="cannot read the workspace: gone"))
    assert g.record("protect_baseline").payload["error"] == "cannot read the workspace: gone"
    g.lead(ready())
    [start] = g.effects(StartRound)
    assert "no protected-path baseline" in start.protect.problem
    g.step(ev.EditCriteria(criteria=g.state.criteria))
    assert not g.effects(TakeBaseline)  # no baseline to add to: only --rebaseline makes one
    g.step(ev.EditProtect(rebaseline=True))
    [take] = g.effects(TakeBaseline)
    assert take.mode == "full"


def test_recovery_takes_an_owed_baseline_before_anything_else():
    g = Drive.new(CRITERIA, protect=protect.settings())  # crashed before the baseline was stored
    t = g.step(ev.Recover())
    assert isinstance(t.effects[0], TakeBaseline) and t.effects[0].reason == "recover"
    assert any(isinstance(e, RunLeadTurn) for e in t.effects[1:])


def test_no_protect_is_recorded_and_no_baseline_or_check_happens():
    g = Drive.new(CRITERIA, protect=protect.settings(enabled=False))
    assert g.all_types()[:2] == ["goal_created", "protect_off"]
    assert g.record("protect_off").payload == {"reason": "--no-protect"}
    assert not g.effects(TakeBaseline)
    g.lead(ready())
    assert g.effects(StartRound)[0].protect is None
    with pytest.raises(Refused, match="--no-protect"):
        g.step(ev.EditProtect(rebaseline=True))


def test_editing_criteria_pins_files_a_new_check_names():
    g = protected([("c1", "tests pass", {"run": "pytest"})])
    g.step(ev.EditCriteria(criteria=g.state.criteria + (type(g.state.criteria[0])(id="c2", text="x", verify={"run": "./check.sh"}),)))
    [take] = g.effects(TakeBaseline)
    assert (take.mode, take.reason) == ("add", "criteria") and "./check.sh" in take.scope.checks


def test_goal_protect_add_remove_and_rebaseline():
    g = protected(observed={**OBSERVED, "calc.py": H1})
    t = g.step(ev.EditProtect(add=("calc.py",)))
    assert g.types(t) == ["protect_updated"]
    [take] = g.effects(TakeBaseline)
    assert take.mode == "add" and "calc.py" in take.scope.pinned
    g.step(ev.BaselineTaken(mode="add", reason="protect", observed={"tests/test_x.py": H2, "calc.py": H1}))
    assert ("pinned", "calc.py", H1) in g.state.baseline
    assert ("pinned", "tests/test_x.py", H1) in g.state.baseline  # add mode keeps what was pinned
    g.step(ev.EditProtect(remove=("calc.py",)))
    assert not g.effects(TakeBaseline) and all(p != "calc.py" for _, p, _ in g.state.baseline)
    g.step(ev.EditProtect(rebaseline=True))
    g.step(ev.BaselineTaken(mode="full", reason="protect", observed={"tests/test_x.py": H2}))
    assert g.state.baseline == (("pinned", "tests/test_x.py", H2),)


def test_goal_protect_refuses_what_it_cannot_do_and_changes_nothing():
    g = protected()
    before = g.state
    with pytest.raises(Refused, match="not a protect pattern"):
        g.step(ev.EditProtect(remove=("src/**",)))
    with pytest.raises(Refused, match="nothing to change"):
        g.step(ev.EditProtect())
    with pytest.raises(Refused, match="absolute"):
        g.step(ev.EditProtect(add=("/etc",)))
    assert g.state is before


def test_goal_protect_during_a_round_applies_from_the_next_round():
    g = protected([("c1", "tests pass", {"run": "pytest"})])
    g.lead(ready())
    [running] = g.effects(StartRound)
    g.step(ev.EditProtect(rebaseline=True))
    g.step(ev.BaselineTaken(mode="full", reason="protect", observed={"tests/test_x.py": H2}))
    assert running.protect.entries != g.state.baseline  # the running round keeps its own
    round_finished(g, findings=(("tests/test_x.py", "changed", "pinned"),))
    g.lead(ready())
    [following] = g.effects(StartRound)
    assert following.protect.entries == (("pinned", "tests/test_x.py", H2),)
