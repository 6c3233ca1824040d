"""What the operator says reaches the crew whatever the goal's state, and nothing a reply or
a bug holds can wedge a goal: the phase machine's side of issue 9, with no threads or clocks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crewctl.goal import events as ev
from crewctl.goal import phases
from crewctl.goal.effects import CancelWork, DispatchStep, RunLeadTurn, StartRound, WakeAt
from crewctl.goal.model import Budget, Criterion
from crewctl.testing.phases import Drive, block, ready, verify

CHECK = [("c1", "tests pass", {"run": "pytest -q"})]
JUDGED = [("c1", "tests pass", {"run": "pytest -q"}), ("c2", "README documents it", "read README.md")]
NEW_CRITERIA = (
    Criterion(id="c1", text="tests pass", verify={"run": "pytest -q"}),
    Criterion(id="c2", text="the changelog names the fix", verify="read CHANGELOG.md"),
)


def paused_mid_turn() -> tuple[Drive, RunLeadTurn]:
    g = Drive.new(CHECK)
    [first] = g.effects(RunLeadTurn)
    g.step(ev.Pause())
    assert g.status == "paused"
    return g, first


# -- input given while paused reaches the resumed turn ---------------------------------------


def test_a_steer_sent_while_paused_is_in_the_prompt_of_the_resumed_turn_and_delivered_with_it():
    g, first = paused_mid_turn()
    g.step(ev.Steer(text="use zoneinfo, not pytz"))
    assert not g.effects(RunLeadTurn)  # paused: nothing starts
    g.step(ev.Resume())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.turn == first.turn and rerun.rerun
    assert rerun.prompt.startswith(first.prompt)  # what it asked before, plus what came since
    assert "use zoneinfo, not pytz" in rerun.prompt
    assert g.types() == ["resumed", "turn_started", "steer_delivered"]
    assert g.record("steer_delivered").payload == {"steer": 1, "turn": first.turn}
    assert g.record("turn_started").payload["refreshed"] is True
    assert g.state.steers == () and g.state.in_flight.prompt == rerun.prompt


def test_a_criteria_edit_made_while_paused_is_in_the_prompt_of_the_resumed_turn():
    g, first = paused_mid_turn()
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    g.step(ev.Resume())
    [rerun] = g.effects(RunLeadTurn)
    assert "the changelog names the fix" not in first.prompt
    assert "The acceptance criteria changed" in rerun.prompt and "the changelog names the fix" in rerun.prompt


def test_a_steer_and_an_edit_while_paused_are_told_once_and_the_next_turn_does_not_repeat_them():
    g, _ = paused_mid_turn()
    g.step(ev.Steer(text="mind the locale"))
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    g.step(ev.Resume())
    g.lead("working on it")
    [following] = g.effects(RunLeadTurn)
    assert "mind the locale" not in following.prompt
    assert "Since this turn was first asked" not in following.prompt


def test_a_resume_with_nothing_new_reruns_exactly_the_same_prompt():
    g, first = paused_mid_turn()
    g.step(ev.Resume())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.prompt == first.prompt
    assert "refreshed" not in g.record("turn_started").payload


def test_a_crash_rerun_asks_exactly_what_it_asked_before_even_with_a_steer_waiting():
    g = Drive.new(CHECK)
    [first] = g.effects(RunLeadTurn)
    g.step(ev.Steer(text="later"))
    g.step(ev.Recover())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.prompt == first.prompt and rerun.rerun
    assert [s.text for s in g.state.steers] == ["later"]


def test_a_steer_sent_during_a_retry_backoff_reaches_the_retried_turn():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    g.step(ev.TurnFailed(turn=turn, error="exit 1"))
    g.step(ev.Steer(text="try the other parser"))
    assert not g.effects(RunLeadTurn)
    g.step(ev.Wake(), after=(phases.datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.turn == turn and "try the other parser" in rerun.prompt


def test_a_criteria_edit_while_paused_after_a_passed_gate_resumes_to_work_not_to_sign_off():
    g = Drive.new(CHECK)
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff"
    g.step(ev.Pause())
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    assert g.state.resume_to == "running"
    g.step(ev.Resume())
    assert g.status == "running"
    [turn] = g.effects(RunLeadTurn)
    assert "the changelog names the fix" in turn.prompt


def test_a_criteria_edit_while_blocked_is_reported_to_the_turn_that_resumes_it():
    g = Drive.new(CHECK)
    g.lead(block("blocked", {"reason": "need a token"}))
    assert g.status == "blocked"
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    g.step(ev.Resume())
    [turn] = g.effects(RunLeadTurn)
    assert "the changelog names the fix" in turn.prompt
    assert "the operator changed the acceptance criteria" in turn.prompt


# -- criteria replacing an open clarify round --------------------------------------------------


def test_criteria_replacing_an_open_clarify_round_close_it_on_the_record_and_tell_the_lead():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?"}]}))
    assert g.state.open_clarify is not None
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    assert g.state.open_clarify is None
    assert g.status == "running"
    assert g.types()[:2] == ["clarify_closed", "lock"]
    closed = g.record("clarify_closed").payload
    assert closed["seq"] == 1 and "instead of answering" in closed["reason"]
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "work"
    assert "your questions (round 1) are closed unanswered" in turn.prompt


def test_an_answer_after_the_criteria_closed_the_round_is_refused():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?"}]}))
    g.step(ev.EditCriteria(criteria=NEW_CRITERIA))
    with pytest.raises(phases.Refused):
        g.step(ev.Answer(answers={"q1": "3.12"}, seq=1))


# -- one new-run rule ---------------------------------------------------------------------------


def two_identical_held_gates(budget: Budget = Budget()) -> Drive:
    g = Drive.new(CHECK, budget=budget, verifier=False)
    for _ in range(2):
        g.lead(ready())
        g.verifier(checks={"c1": {"exit": 1, "output": "1 failed"}})
    assert g.status == "running" and len(set(g.state.fingerprints)) == 1 and len(g.state.fingerprints) == 2
    return g


def test_resume_a_budget_raise_and_send_back_start_the_same_new_run():
    g = two_identical_held_gates()
    g.step(ev.Steer(text="x"))
    fresh = phases.new_run(g.state)
    assert (fresh.attempt, fresh.auto_turns, fresh.run_turns, fresh.lead_corrections, fresh.errors_in_row) == (0, 0, 0, 0, 0)
    assert (fresh.restarts, fresh.fingerprints, fresh.wind_down, fresh.usage_waits, fresh.resume_at) == ((), (), False, 0, None)
    assert fresh.steers == g.state.steers and fresh.criteria == g.state.criteria  # a run's counters only


def test_raising_the_budget_after_two_identical_held_gates_starts_a_new_run_as_resume_does():
    g = two_identical_held_gates(Budget(tokens=1000))
    g.lead("still on it", usage=ev.TurnUsage(input_tokens=1000))
    assert g.status == "budget_limited"
    g.lead("report")
    g.step(ev.RaiseBudget(tokens=100_000))
    assert g.status == "running" and g.state.fingerprints == () and g.state.attempt == 0
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 1, "output": "1 failed"}})  # the same failure a third time
    assert g.status == "running", g.state.reason  # not no_progress: this run has seen it once
    assert [t.kind for t in g.effects(RunLeadTurn)] == ["held"]


def test_send_back_starts_a_new_run():
    g = Drive.new(CHECK, verifier=False)
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 1, "output": "x"}})
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff" and g.state.attempt == 1
    g.step(ev.SendBack(notes="also handle leap years"))
    assert (g.state.attempt, g.state.fingerprints, g.state.run_turns) == (0, (), 0)


# -- budgets: no turn starts on a spent budget ------------------------------------------------------


def test_a_round_is_not_started_once_the_budget_is_spent_the_lead_winds_down_instead():
    g = Drive.new(JUDGED, budget=Budget(tokens=1000))
    g.lead(ready(), usage=ev.TurnUsage(input_tokens=1200))
    assert g.status == "budget_limited" and g.state.resume_to == "verifying"
    assert not g.effects(StartRound)
    assert [t.kind for t in g.effects(RunLeadTurn)] == ["wind_down"]
    g.lead("done: the parser")
    g.step(ev.RaiseBudget(tokens=10_000))
    assert g.status == "verifying"
    [start] = g.effects(StartRound)
    assert start.round == 1


def test_no_corrective_verifier_turn_starts_on_a_spent_budget():
    g = Drive.new(JUDGED, budget=Budget(tokens=1000))
    g.lead(ready(), usage=ev.TurnUsage(input_tokens=500))
    g.verifier("no verdict here", checks={"c1": {"exit": 0}}, usage=ev.TurnUsage(input_tokens=600))
    assert g.status == "budget_limited"
    assert [t.kind for t in g.effects(RunLeadTurn)] == ["wind_down"]


def test_a_plan_on_a_spent_budget_queues_no_step_until_the_budget_is_raised():
    g = Drive.new(CHECK, budget=Budget(tokens=1000))
    g.lead(block("plan", {"steps": [{"title": "a"}, {"title": "b"}]}), usage=ev.TurnUsage(input_tokens=1000))
    assert g.status == "budget_limited" and not g.effects(DispatchStep)
    g.lead("report")
    g.step(ev.RaiseBudget(tokens=5000))
    assert [d.step for d in g.effects(DispatchStep)] == ["s1", "s2"]


def test_a_lead_turn_may_run_only_as_long_as_the_time_budget_has_left():
    g = Drive.new(CHECK, budget=Budget(seconds=100))
    [first] = g.effects(RunLeadTurn)
    assert first.time_left == 100
    g.lead("working", usage=ev.TurnUsage(seconds=70))
    [second] = g.effects(RunLeadTurn)
    assert second.time_left == pytest.approx(30)
    assert Drive.new(CHECK).effects(RunLeadTurn)[0].time_left is None


def test_a_turn_stopped_by_the_time_budget_counts_its_time_and_winds_down():
    g = Drive.new(CHECK, budget=Budget(seconds=3))
    turn = g.state.in_flight.turn
    g.step(ev.TurnFailed(turn=turn, error="stopped", kind="time_budget", seconds=3.05))
    assert g.status == "budget_limited" and g.state.reason == "time budget spent"
    assert g.state.spend.seconds == pytest.approx(3.05)
    [wind_down] = g.effects(RunLeadTurn)
    assert wind_down.kind == "wind_down" and wind_down.time_left is None
    assert g.record("turn_failed").payload["kind"] == "time_budget"


# -- usage limits with a reset time ---------------------------------------------------------------


def usage_limited(g: Drive, minutes: float = 30):
    at = (g.now + timedelta(minutes=minutes)).isoformat()
    g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="claude: usage limit reached", kind="usage_limited", resume_at=at))
    return at


def test_a_usage_limit_with_a_reset_time_waits_blocked_and_goes_on_by_itself_then():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    at = usage_limited(g)
    assert g.status == "blocked" and g.state.resume_at == at
    assert g.state.reason.startswith("usage_limited:") and at in g.state.reason
    assert g.effects(WakeAt) == [WakeAt(at=at)]
    assert g.record("blocked").payload["resume_at"] == at
    g.step(ev.Wake(), after=60)  # too early: wait on
    assert g.status == "blocked" and g.effects(WakeAt) == [WakeAt(at=at)]
    g.step(ev.Wake(), after=30 * 60)
    assert g.status == "running" and g.state.resume_at is None
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.turn == turn and rerun.rerun
    assert g.record("resumed").payload == {"status": "running", "was": "blocked", "automatic": True, "reason": "usage_limited"}


def test_usage_limit_waits_go_on_by_themselves_five_times_in_a_row_then_a_person_decides():
    g = Drive.new(CHECK)
    for n in range(phases.MAX_USAGE_WAITS):
        usage_limited(g)
        assert g.state.resume_at is not None, n
        g.step(ev.Wake(), after=31 * 60)
        assert g.status == "running"
    usage_limited(g)
    assert g.status == "blocked" and g.state.resume_at is None
    assert "5 times in a row" in g.state.reason and "crewctl goal resume" in g.state.reason


def test_a_successful_turn_ends_the_row_of_usage_limit_waits():
    g = Drive.new(CHECK)
    usage_limited(g)
    g.step(ev.Wake(), after=31 * 60)
    g.lead("working")
    assert g.state.usage_waits == 0


def test_goal_resume_goes_on_at_once_during_a_usage_limit_wait():
    g = Drive.new(CHECK)
    usage_limited(g, minutes=300)
    g.step(ev.Resume())
    assert g.status == "running" and g.state.resume_at is None
    assert g.effects(RunLeadTurn)
    g.step(ev.Wake(), after=301 * 60)  # the old timer fires: nothing more happens
    assert not g.effects(RunLeadTurn)


def test_a_reset_more_than_a_week_away_is_left_to_the_operator():
    g = Drive.new(CHECK)
    usage_limited(g, minutes=8 * 24 * 60)
    assert g.status == "blocked" and g.state.resume_at is None and "days away" in g.state.reason


def test_a_recovered_goal_waiting_for_a_usage_limit_sets_its_timer_again():
    g = Drive.new(CHECK)
    at = usage_limited(g)
    g.step(ev.Recover())
    assert g.effects(WakeAt) == [WakeAt(at=at)] and g.status == "blocked"


# -- replies that would break the supervisor ---------------------------------------------------------


def test_one_valid_and_one_malformed_verify_block_are_a_protocol_error_never_a_pass():
    g = Drive.new(JUDGED)
    g.lead(ready())
    good = verify(("c1", "pass", "ok"), ("c2", "pass", "ok"))
    for text in (good + block("verify", "{not json"), block("verify", "{not json") + good):
        g2 = Drive(g.last)
        g2.state = g.state
        g2.verifier(text, checks={"c1": {"exit": 0}})
        assert g2.status == "running"  # held, not passed
        [invalid] = [r for r in g2.last.records if r.type == "marker_invalid"]
        assert invalid.payload["reason"] == "2 VERIFY blocks in one reply" and invalid.payload["line"] > 1
        results = {r["id"]: r for r in g2.record("verify").payload["results"]}
        assert results["c2"]["verdict"] == "fail" and "protocol error" in results["c2"]["evidence"]


def test_a_reply_of_200000_stray_markers_writes_a_bounded_number_of_records():
    g = Drive.new(CHECK)
    reply = "CREW_VERIFY_BEGIN\nCREW_VERIFY_END\n" * 200_000
    t = g.lead(reply)
    assert len(t.records) <= phases.MAX_MARKER_RECORDS + 5
    capped = g.record("markers_capped").payload
    assert capped["recorded"] == phases.MAX_MARKER_RECORDS
    assert capped["ignored"] == 200_000 - phases.MAX_MARKER_RECORDS and capped["role"] == "lead"


def test_a_reply_of_many_malformed_lead_markers_gets_a_bounded_corrective_prompt():
    g = Drive.new(CHECK)
    g.lead("CREW_READY_BEGIN\n{}\nCREW_READY_END\n" * 5000)
    [corrective] = g.effects(RunLeadTurn)
    assert corrective.kind == "corrective"
    assert corrective.prompt.count("READY block at line") == phases.MAX_MARKER_RECORDS
    assert len(corrective.prompt) < 20_000


def test_usage_that_is_not_a_sane_number_is_dropped_where_it_enters():
    g = Drive.new(CHECK)
    g.lead("working", usage=ev.TurnUsage(input_tokens=10**30, output_tokens=-5, cost_usd=float("inf"), seconds=float("nan")))
    assert (g.state.spend.tokens, g.state.spend.cost_usd, g.state.spend.seconds) == (0, 0.0, 0.0)
    usage = g.record("turn_finished").payload["usage"]
    assert usage["cost_usd"] is None and usage["input_tokens"] == 0 and usage["seconds"] == 0.0


def test_a_fault_blocks_the_goal_with_the_error_and_stops_its_work():
    g = Drive.new(CHECK)
    g.step(ev.Fault(reason="crash_loop", error="ValueError: bad retry time"))
    assert g.status == "blocked" and g.state.reason == "crash_loop: ValueError: bad retry time"
    assert g.record("blocked").payload == {"reason": "crash_loop", "error": "ValueError: bad retry time"}
    assert g.effects(CancelWork) and g.state.in_flight.interrupted
    g.step(ev.Resume())
    assert g.status == "running" and g.effects(RunLeadTurn)


def test_a_reflection_reply_full_of_stray_markers_writes_a_bounded_timeline_and_sane_usage():
    from crewctl.goal import reflect

    g = Drive.new(CHECK)
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 0}})
    g.envelope_built()
    g.step(ev.Signoff())
    reply = "CREW_READY_BEGIN\n{\"summary\": \"x\"}\nCREW_READY_END\n" * 5000 + block(
        "reflect", {"summary": "done", "lessons": [], "memory": []}
    )
    t = g.reflector(reply, usage=ev.TurnUsage(input_tokens=10, cost_usd=float("inf")))
    assert len(t.records) < phases.MAX_MARKER_RECORDS + 10
    assert g.record("markers_capped").payload["ignored"] == 5000 - phases.MAX_MARKER_RECORDS
    assert g.state.reflection == "ok" and g.state.spend.cost_usd == 0.0 and reflect.ROLE == "reflector"
