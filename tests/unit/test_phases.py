"""Every rule of the gate, driven through the pure phase machine (goal.phases.step)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from freezegun import freeze_time

from crewctl.exceptions import Refused
from crewctl.goal import events as ev
from crewctl.goal import phases
from crewctl.goal.effects import (
    CancelWork,
    EndRound,
    PrepareReflection,
    Release,
    RunLeadTurn,
    RunVerifierTurn,
    StartRound,
    WakeAt,
)
from crewctl.goal.model import Criterion
from crewctl.testing.phases import Drive, block, ready, reflect_block, verify

CHECK = [("c1", "tests pass", {"run": "pytest -q"})]
JUDGED = [("c1", "tests pass", {"run": "pytest -q"}), ("c2", "README documents it", "read README.md")]


def at_round(criteria=JUDGED, **kw) -> Drive:
    g = Drive.new(criteria, **kw)
    g.lead(ready())
    assert g.status == "verifying"
    return g


# -- creation and scoping ------------------------------------------------------------------


def test_goal_with_criteria_is_locked_at_once_and_starts_a_work_turn():
    g = Drive.new(CHECK)
    assert g.status == "running"
    assert g.types() == ["goal_created", "lock", "turn_started"]
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "work"
    assert "tests pass" in turn.prompt


def test_goal_without_criteria_starts_scoping_with_a_scope_turn():
    g = Drive.new()
    assert g.status == "scoping"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["scope"]


def test_clarify_while_scoping_opens_a_questions_round_and_waits():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?", "options": ["3.11", "3.12"]}]}))
    assert g.status == "scoping"
    assert g.types() == ["turn_finished", "clarify"]
    assert g.state.open_clarify.seq == 1
    assert not g.effects(RunLeadTurn)


def test_clarify_while_running_puts_the_goal_in_awaiting_input():
    g = Drive.new(CHECK)
    g.lead(block("clarify", {"questions": [{"text": "May I add a dependency?"}]}))
    assert g.status == "awaiting_input"
    assert g.state.resume_to == "running"


def test_answer_closes_the_round_and_starts_a_turn_that_sees_the_answers():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?", "options": ["3.11", "3.12"]}]}))
    g.step(ev.Answer(answers={"q1": "2"}, seq=1))
    assert g.types() == ["answer", "turn_started"]
    [turn] = g.effects(RunLeadTurn)
    assert "answer: 3.12" in turn.prompt


def test_answer_with_a_stale_seq_is_refused_and_changes_nothing():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?"}]}))
    g.step(ev.Answer(answers={"q1": "3.12"}, seq=1))
    g.lead(block("clarify", {"questions": [{"text": "And the OS?"}]}))
    before = g.state
    with pytest.raises(Refused, match="stale"):
        phases.step(before, ev.Answer(answers={"q1": "linux"}, seq=1), g.now)
    assert g.state is before


def test_answer_to_an_unknown_question_is_refused():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which Python?"}]}))
    with pytest.raises(Refused, match="no question 'q9'"):
        g.step(ev.Answer(answers={"q9": "x"}))


def test_answer_outside_the_options_is_refused():
    g = Drive.new()
    g.lead(block("clarify", {"questions": [{"text": "Which?", "options": ["a", "b"]}]}))
    with pytest.raises(Refused, match="one of its options"):
        g.step(ev.Answer(answers={"q1": "c"}))


def test_lock_kicks_off_the_first_work_turn():
    g = Drive.new()
    g.lead(block("lock", {"criteria": [{"text": "tests pass", "verify": {"run": "pytest"}}]}))
    assert g.status == "running"
    assert g.types() == ["turn_finished", "lock", "turn_started"]
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["work"]
    assert g.state.criteria[0].id == "c1"


def test_ready_in_the_same_reply_as_lock_is_discarded():
    g = Drive.new()
    g.lead(block("lock", {"criteria": [{"text": "ok", "verify": "look"}]}) + ready())
    assert g.status == "running"
    ignored = [r for r in g.last.records if r.type == "marker_ignored"]
    assert [r.payload["kind"] for r in ignored] == ["ready"]
    assert "same reply as LOCK" in ignored[0].payload["reason"]
    assert not g.effects(StartRound)


# -- ownership before validity -------------------------------------------------------------


def test_a_verify_marker_from_the_lead_is_ignored_and_never_moves_the_gate():
    g = Drive.new(CHECK)
    g.lead(verify(("c1", "pass", "trust me")))
    assert g.status == "running"
    assert "marker_ignored" in g.types()
    assert all(c.status == "pending" for c in g.state.criteria)
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["continue"]


def test_a_lock_while_running_is_ignored_and_costs_no_correction():
    g = Drive.new(CHECK)
    g.lead(block("lock", "{not json"))
    assert g.state.lead_corrections == 0
    [ignored] = [r for r in g.last.records if r.type == "marker_ignored"]
    assert "not accepted while the goal is running" in ignored.payload["reason"]
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["continue"]


def test_a_malformed_lead_marker_gets_one_corrective_turn_then_blocks():
    g = Drive.new(CHECK)
    g.lead(block("ready", "{oops"))
    assert "marker_invalid" in g.types()
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "corrective"
    assert "could not accept" in turn.prompt
    g.lead(block("ready", "{still oops"))
    assert g.status == "blocked"
    assert g.state.reason.startswith("malformed_marker")


def test_a_good_reply_restores_the_lead_correction():
    g = Drive.new(CHECK)
    g.lead(block("ready", "{oops"))
    g.lead("fixing things, no marker yet")
    assert g.state.lead_corrections == 0


def test_a_fenced_ready_starts_no_round():
    g = Drive.new(CHECK)
    g.lead("Here is what I would send:\n```\n" + ready() + "```\n")
    assert g.status == "running"
    assert not g.effects(StartRound)


def test_blocked_marker_blocks_with_the_leads_reason():
    g = Drive.new(CHECK)
    g.lead(block("blocked", {"reason": "no network", "needs": "a proxy"}))
    assert g.status == "blocked"
    assert g.state.reason == "no network (needs: a proxy)"
    assert g.types()[-1] == "blocked"


def test_a_lead_turn_without_marker_continues_at_most_max_auto_turns_then_blocks_turn_cap():
    g = Drive.new(CHECK, max_auto_turns=3)
    for n in range(3):
        g.lead("still working")
        assert [e.kind for e in g.effects(RunLeadTurn)] == ["continue"], n
    g.lead("still working")
    assert g.status == "blocked"
    assert g.state.reason.startswith("turn_cap")


def test_automatic_turns_stop_at_the_per_run_maximum():
    g = Drive.new(CHECK, max_turns=2, max_auto_turns=50)
    g.lead("working")
    g.lead("working")
    g.lead("working")
    assert g.status == "blocked"
    assert g.state.reason.startswith("max_turns")


# -- the gate --------------------------------------------------------------------------------


def test_ready_starts_a_round_bound_to_the_current_revision():
    g = at_round()
    assert g.types() == ["turn_finished", "ready", "round_started", "turn_started"]
    [start] = g.effects(StartRound)
    assert start.round == 1 and start.checks == (("c1", "pytest -q"),) and start.model_needed
    assert g.state.round_revision == g.state.revision


def test_the_verifier_prompt_holds_the_claims_delimited_and_nothing_else_of_the_lead():
    g = Drive.new(JUDGED)
    g.lead("SECRET-lead-scratchpad\n" + ready("I fixed everything"))
    [start] = g.effects(StartRound)
    assert "I fixed everything" in start.prompt
    assert "UNVERIFIED" in start.prompt
    assert "SECRET-lead-scratchpad" not in start.prompt


def test_every_criterion_passing_moves_the_goal_to_awaiting_signoff():
    g = at_round()
    g.verifier(verify(("c2", "pass", "README has it")), checks={"c1": {"exit": 0, "output": "ok"}})
    assert g.status == "awaiting_signoff"
    assert g.types() == ["turn_finished", "verify", "gate_passed"]
    assert g.effects(EndRound) == [EndRound(round=1, keep_snapshot=False)]


def test_a_check_command_failing_holds_the_gate_whatever_the_verifier_says():
    g = at_round()
    g.verifier(verify(("c1", "pass", "looks fine"), ("c2", "pass", "ok")), checks={"c1": {"exit": 1, "output": "1 failed"}})
    assert g.status == "running"
    assert "gate_held" in g.types()
    c1 = g.state.criterion("c1")
    assert c1.status == "fail" and "exited 1" in c1.evidence and "1 failed" in c1.evidence


def test_criteria_that_are_all_checks_need_no_verifier_model():
    g = Drive.new(CHECK, verifier=False)
    g.lead(ready())
    [start] = g.effects(StartRound)
    assert not start.model_needed
    g.verifier(None, checks={"c1": {"exit": 0, "output": ""}})
    assert g.status == "awaiting_signoff"


def test_a_missing_verdict_fails_its_criterion():
    g = at_round()
    g.verifier(verify(("c1", "pass", "x")), checks={"c1": {"exit": 0}})
    c2 = g.state.criterion("c2")
    assert c2.status == "fail" and "no verdict" in c2.evidence


def test_duplicate_verdicts_merge_fail_closed():
    g = at_round()
    g.verifier(verify(("c2", "pass", "yes"), ("c2", "fail", "actually no")), checks={"c1": {"exit": 0}})
    assert g.state.criterion("c2").status == "fail"
    assert g.status == "running"


def test_unknown_verdict_ids_are_dropped():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok"), ("c99", "fail", "?")), checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff"
    assert "verdict_dropped" in g.types()


def test_two_verify_blocks_in_one_verifier_reply_hold_the_gate():
    g = at_round()
    g.verifier(verify(("c2", "fail", "no")) + verify(("c2", "pass", "yes")), checks={"c1": {"exit": 0}})
    assert g.status == "running"
    assert g.state.criterion("c2").status == "fail"
    assert "protocol error" in g.state.criterion("c2").evidence


def test_a_verifier_without_a_verdict_gets_one_corrective_turn_then_the_gate_holds():
    g = at_round()
    g.verifier("I looked around and it seems fine.", checks={"c1": {"exit": 0}})
    assert g.status == "verifying"
    [turn] = g.effects(RunVerifierTurn)
    assert "no valid VERIFY" in turn.prompt
    g.verifier("still no block")
    assert g.status == "running"
    assert g.state.criterion("c1").status == "pass"  # crewctl's own check still counts
    assert g.state.criterion("c2").status == "fail"


def test_a_corrected_verifier_verdict_uses_the_rounds_checks():
    g = at_round()
    g.verifier("no verdict", checks={"c1": {"exit": 3, "output": "boom"}})
    g.verifier(verify(("c1", "pass", "x"), ("c2", "pass", "y")))
    assert g.state.criterion("c1").status == "fail"
    assert g.status == "running"


def test_only_the_current_rounds_verify_moves_the_gate():
    g = at_round()
    f = g.state.in_flight
    t = g.step(ev.RoundFinished(round=7, turn=f.turn, text=verify(("c2", "pass", "")), checks={"c1": {"exit": 0}}))
    assert t.records == () and g.status == "verifying"
    t = g.step(ev.RoundFinished(round=1, turn=f.turn + 5, text=verify(("c2", "pass", "")), checks={"c1": {"exit": 0}}))
    assert t.records == () and g.status == "verifying"


def test_a_verdict_bound_to_an_old_revision_holds_the_gate():
    g = at_round()
    g.step(ev.EditCriteria(criteria=(Criterion("c1", "tests pass", {"run": "pytest -q"}), Criterion("c2", "README and CHANGELOG", "read"))))
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    assert g.status == "running"
    verdict = g.record("verify")
    assert verdict.payload["stale"] is True
    assert "criteria changed" in g.record("gate_held").payload["reason"]
    assert g.state.attempt == 0  # not the lead's failure


def test_a_held_gate_continues_with_the_failed_criteria_and_evidence():
    g = at_round()
    g.verifier(verify(("c2", "fail", "README says nothing about --json")), checks={"c1": {"exit": 0}})
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "held"
    assert "The gate held at round 1. Failed: c2 " in turn.prompt
    assert "status: fail; last evidence: README says nothing about --json" in turn.prompt
    assert g.state.attempt == 1


def test_the_attempt_cap_blocks_after_that_many_held_gates():
    g = Drive.new(CHECK, attempt_cap=2, verifier=False)
    for n in range(3):
        g.lead(ready(f"try {n}"))
        g.verifier(None, checks={"c1": {"exit": 1, "output": f"failure {n}"}})
    assert g.status == "blocked"
    assert g.state.reason.startswith("attempt_cap")
    assert g.all_types().count("gate_held") == 3


def test_the_same_failures_three_rounds_running_block_with_no_progress():
    g = Drive.new(CHECK, attempt_cap=10, verifier=False)
    for _ in range(3):
        g.lead(ready())
        g.verifier(None, checks={"c1": {"exit": 1, "output": "same failure"}})
    assert g.status == "blocked"
    assert g.state.reason.startswith("no_progress")


def test_ready_after_the_gate_passed_rearms_it():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    g.step(ev.Steer(text="also mention the flag in --help"))
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["steer"]
    g.lead(ready("added it to --help too"))
    assert g.status == "verifying"
    assert g.state.round == 2


# -- steers ----------------------------------------------------------------------------------


def test_a_steer_while_the_lead_works_reaches_the_next_turn_exactly_once():
    g = Drive.new(CHECK)
    g.step(ev.Steer(text="use the stdlib only"))
    assert g.types() == ["steer"]
    assert not g.effects(RunLeadTurn)  # the lead is busy: queued
    g.lead("working")
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "steer" and "use the stdlib only" in turn.prompt
    assert "steer_delivered" in g.types()
    g.lead("still working")
    [turn] = g.effects(RunLeadTurn)
    assert "use the stdlib only" not in turn.prompt


def test_a_pending_steer_suppresses_the_automatic_continuation():
    g = Drive.new(CHECK, max_auto_turns=1)
    g.lead("working")  # continuation 1 of 1
    g.step(ev.Steer(text="stop and write tests first"))
    g.lead("working")  # would have hit turn_cap
    assert g.status == "running"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["steer"]
    assert g.state.auto_turns == 0


def test_a_steer_to_an_idle_goal_starts_a_turn_at_once():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    t = g.step(ev.Steer(text="one more thing"))
    assert [e.kind for e in g.effects(RunLeadTurn, t)] == ["steer"]


def test_an_empty_steer_is_refused():
    g = Drive.new(CHECK)
    with pytest.raises(Refused):
        g.step(ev.Steer(text="   "))


# -- pause, resume, cancel ---------------------------------------------------------------------


def test_pause_interrupts_the_turn_and_resume_reruns_it_with_the_same_prompt():
    g = Drive.new(CHECK)
    [first] = g.effects(RunLeadTurn)
    g.step(ev.Pause())
    assert g.status == "paused"
    assert g.effects(CancelWork)
    late = g.step(ev.TurnFinished(turn=first.turn, text=ready()))
    assert late.records == ()  # the interrupted turn's reply changes nothing
    g.step(ev.Resume())
    [rerun] = g.effects(RunLeadTurn)
    assert (rerun.turn, rerun.prompt, rerun.rerun) == (first.turn, first.prompt, True)
    assert g.status == "running"


def test_a_paused_goal_gets_no_turn_from_a_wake():
    g = Drive.new(CHECK)
    g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="boom"))
    g.step(ev.Pause())
    t = g.step(ev.Wake(), after=3600)
    assert not g.effects(RunLeadTurn, t)


def test_cancel_stops_all_work_and_nothing_follows():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    g.step(ev.Cancel())
    assert g.status == "cancelled"
    assert g.effects(CancelWork) and g.effects(Release)
    assert g.step(ev.TurnFinished(turn=turn, text=ready())).records == ()
    with pytest.raises(Refused):
        g.step(ev.Resume())


# -- criteria edits, sign-off, send-back -------------------------------------------------------


def test_a_criteria_edit_keeps_status_only_for_rows_whose_id_text_and_verify_are_unchanged():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    g.step(
        ev.EditCriteria(
            criteria=(
                Criterion("c1", "tests pass", {"run": "pytest -q"}),
                Criterion("c2", "README documents it", "read README.md and --help"),
                Criterion("c3", "changelog entry", "read CHANGELOG"),
            )
        )
    )
    assert [c.status for c in g.state.criteria] == ["pass", "pending", "pending"]
    assert "criteria_updated" in g.types()


def test_a_criteria_edit_with_a_row_not_passed_reopens_a_passed_gate():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff"
    g.step(ev.EditCriteria(criteria=(Criterion("c1", "tests pass", {"run": "pytest -q -x"}),)))
    assert g.status == "running"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["criteria"]


def test_signoff_is_refused_unless_the_gate_passed():
    g = Drive.new(CHECK)
    with pytest.raises(Refused, match="awaiting_signoff"):
        g.step(ev.Signoff())


def test_signoff_after_a_passed_gate_finishes_the_goal_then_releases_it_after_its_outputs():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    g.step(ev.Signoff())
    assert g.status == "done"
    assert g.types() == ["signoff", "done"]
    assert g.effects(PrepareReflection) and not g.effects(Release)  # the reflection runs first
    g.envelope_built()
    g.reflector(reflect_block())
    assert g.status == "done" and g.effects(Release)


def test_send_back_needs_notes():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    with pytest.raises(Refused, match="notes"):
        g.step(ev.SendBack(notes="  "))


def test_send_back_resets_the_criteria_and_starts_a_rework_turn_that_sees_the_notes():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    g.step(ev.SendBack(notes="the flag is called --json, not --JSON"))
    assert g.status == "running"
    assert all(c.status == "pending" for c in g.state.criteria)
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "rework" and "the flag is called --json, not --JSON" in turn.prompt
    # The passed gate no longer stands, nor does its PR envelope.
    assert g.types() == ["send_back", "turn_started", "envelope_superseded"]


# -- failures, supervision, recovery -------------------------------------------------------------


def test_a_failed_turn_is_retried_with_backoff_then_the_goal_blocks_with_the_error():
    with freeze_time("2026-11-21 09:00:00") as clock:
        g = Drive.new(CHECK, now=datetime.now(timezone.utc))
        turn = g.state.in_flight.turn
        for attempt in range(1, 4):
            g.step(ev.TurnFailed(turn=turn, error=f"exit 1 ({attempt})"))
            [wake] = g.effects(WakeAt)
            assert datetime.fromisoformat(wake.at) > g.now
            clock.move_to(wake.at)
            g.now = datetime.now(timezone.utc)
            g.step(ev.Wake())
            [rerun] = g.effects(RunLeadTurn)
            assert rerun.turn == turn and rerun.rerun
        g.step(ev.TurnFailed(turn=turn, error="exit 1 (4)"))
        assert g.status == "blocked"
        assert g.state.reason == "brain_error: exit 1 (4)"


def test_backoff_grows_between_retries():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    delays = []
    for _ in range(3):
        g.step(ev.TurnFailed(turn=turn, error="x"))
        delays.append((datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds())
        g.step(ev.Wake(), after=delays[-1])
    assert delays == sorted(delays) and delays[0] < delays[-1]


def test_a_brain_that_can_never_work_blocks_at_once():
    g = Drive.new(CHECK)
    g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="claude not found on PATH", kind="config"))
    assert g.status == "blocked"
    assert "claude not found" in g.state.reason


def test_a_crashed_actor_restarts_in_a_fresh_session_until_the_crash_loop_blocks():
    with freeze_time("2026-11-21 09:00:00"):
        g = Drive.new(CHECK, now=datetime.now(timezone.utc))
        turn = g.state.in_flight.turn
        for _n in range(phases.RESTART_INTENSITY):
            g.step(ev.ActorCrashed(role="lead", error="segfault", turn=turn), after=1)
            [rerun] = g.effects(RunLeadTurn)
            assert rerun.new_session and rerun.turn == turn
            assert g.types()[0] == "actor_restarted"
        g.step(ev.ActorCrashed(role="lead", error="segfault", turn=turn), after=1)
        assert g.status == "blocked"
        assert g.state.reason.startswith("crash_loop")
        assert g.record("blocked").payload["actor"] == "lead"


def test_restarts_outside_the_window_do_not_add_up():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    for _ in range(phases.RESTART_INTENSITY + 3):
        g.step(ev.ActorCrashed(role="lead", error="x", turn=turn), after=phases.RESTART_WINDOW + 1)
    assert g.status == "running"


def test_recover_reruns_the_in_flight_turn_marked_as_a_rerun():
    g = Drive.new(CHECK)
    [first] = g.effects(RunLeadTurn)
    g.step(ev.Recover())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.rerun and rerun.prompt == first.prompt
    assert g.last.records[0].payload.get("rerun") is True


def test_recover_during_verification_restarts_the_round_with_a_fresh_verifier():
    g = at_round()
    turn = g.state.in_flight.turn
    g.step(ev.Recover())
    [start] = g.effects(StartRound)
    assert start.rerun and start.turn == turn and start.round == 1
    assert "round_started" not in g.types()  # the transition is not recorded twice


def test_every_operator_command_on_a_finished_goal_is_refused():
    g = at_round()
    g.verifier(verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}})
    g.step(ev.Signoff())
    for command in (ev.Steer(text="x"), ev.Pause(), ev.Resume(), ev.SendBack(notes="x"), ev.Signoff()):
        with pytest.raises(Refused, match="done"):
            g.step(command)


# -- plans and steps ---------------------------------------------------------------------------


def plan(*titles: str, **step) -> str:
    return block("plan", {"steps": [{"title": t, **step} for t in titles]})


def test_a_plan_queues_every_step_and_the_lead_waits_for_the_reports():
    from crewctl.goal.effects import DispatchStep

    g = Drive.new(CHECK)
    g.lead(plan("write the parser", "write the flag"))
    queued = g.effects(DispatchStep)
    assert [d.step for d in queued] == ["s1", "s2"] and not g.effects(RunLeadTurn)
    for d in queued:
        g.step(ev.StepFinished(step=d.step, task=d.task, host="h1", text=f"did {d.step}"))
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "reports" and "did s1" in turn.prompt and "did s2" in turn.prompt


def test_a_failing_step_is_retried_then_replanned_within_the_default_budget_then_blocks():
    from crewctl.goal.effects import DispatchStep

    g = Drive.new(CHECK)
    g.lead(plan("doomed"))
    for replan in range(3):  # the first plan and two replans
        for _attempt in range(3):  # three attempts per step
            [d] = g.effects(DispatchStep)
            g.step(ev.StepFailed(step=d.step, task=d.task, host="h1", error="exit 3"))
        if replan < 2:
            [turn] = g.effects(RunLeadTurn)
            assert turn.kind == "replan"
            g.lead(plan("doomed again"))
    assert g.status == "blocked" and g.state.reason.startswith("replan_budget")
    assert g.all_types().count("step_retry") == 6 and g.all_types().count("step_failed") == 3


def test_a_result_for_a_task_that_was_given_up_on_is_late_and_changes_nothing():
    from crewctl.goal.effects import DispatchStep

    g = Drive.new(CHECK)
    g.lead(plan("only step"))
    [first] = g.effects(DispatchStep)
    g.step(ev.StepFailed(step=first.step, task=first.task, host="h1", error="host lost", lost=True))
    [second] = g.effects(DispatchStep)
    assert second.task != first.task
    t = g.step(ev.StepFinished(step=first.step, task=first.task, host="h1", text="late"))
    assert g.types(t) == ["task_late"] and g.state.steps[0].status == "in_progress"
    g.step(ev.StepFinished(step=second.step, task=second.task, host="h2", text="done"))
    assert g.all_types().count("step_finished") == 1


def test_a_step_needing_approval_waits_in_awaiting_approval_until_approved():
    from crewctl.goal.effects import DispatchStep

    g = Drive.new(CHECK)
    g.lead(plan("drop the table", needs_approval=True))
    assert g.status == "awaiting_approval" and not g.effects(DispatchStep)
    g.step(ev.Approve(step="s1"))
    assert g.status == "running" and [d.step for d in g.effects(DispatchStep)] == ["s1"]


def test_markers_in_a_workers_reply_move_nothing():
    from crewctl.goal.effects import DispatchStep

    g = Drive.new(CHECK)
    g.lead(plan("work"))
    [d] = g.effects(DispatchStep)
    g.step(ev.StepFinished(step=d.step, task=d.task, host="h1", text=ready("the worker says done")))
    assert g.status == "running" and not g.effects(StartRound)
    ignored = [r for r in g.last.records if r.type == "marker_ignored"]
    assert [(r.payload["kind"], r.payload["role"]) for r in ignored] == [("ready", "worker")]
