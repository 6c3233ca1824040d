"""Budgets and the limits that keep the continuation loop from running away.

Driven through the pure phase machine (crewctl.testing.phases.Drive); freezegun holds the
clock wherever a rule depends on time (backoff delays, agent seconds).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from crewctl.exceptions import Refused
from crewctl.goal import events as ev
from crewctl.goal import markers, phases
from crewctl.goal.effects import CancelWork, DispatchStep, RunLeadTurn, RunVerifierTurn, StartRound, WakeAt
from crewctl.goal.model import Budget, Criterion
from crewctl.testing.phases import Drive, block, ready, verify

CHECK = [("c1", "tests pass", {"run": "pytest -q"})]
JUDGED = [("c1", "tests pass", {"run": "pytest -q"}), ("c2", "README documents it", "read README.md")]

TURN_EFFECTS = (RunLeadTurn, StartRound, RunVerifierTurn, DispatchStep)


def usage(tokens_in: int = 0, tokens_out: int = 0, *, seconds: float = 0.0, cost: float | None = None) -> ev.TurnUsage:
    return ev.TurnUsage(input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost, seconds=seconds)


def started_turns(g: Drive, transition=None) -> list:
    """Every effect of the last transition that would start work for an agent."""
    t = transition or g.last
    return [e for e in t.effects if isinstance(e, TURN_EFFECTS)]


def limited_by_tokens(limit: int = 1000, **kw) -> Drive:
    """A goal whose first turn spent its token budget: budget_limited, wind-down in flight."""
    g = Drive.new(CHECK, budget=Budget(tokens=limit), **kw)
    g.lead("working on it", usage=usage(limit - 200, 300))
    assert g.status == "budget_limited"
    return g


def wound_down(limit: int = 1000) -> Drive:
    g = limited_by_tokens(limit)
    g.lead("Done: the parser. Left: the CLI flag. Next step: wire --json into `crewctl goal show`.")
    return g


def clock_now() -> datetime:
    return datetime.now(timezone.utc)


# -- token budget and the one wind-down turn -------------------------------------------------


def test_spending_the_token_budget_limits_the_goal_and_starts_exactly_one_wind_down_turn():
    g = Drive.new(CHECK, budget=Budget(tokens=1000))
    g.lead("working", usage=usage(400, 100))
    assert g.status == "running"  # 500 of 1000: keep going
    g.lead("still working", usage=usage(450, 50))

    assert g.status == "budget_limited"
    assert g.state.reason == "tokens budget spent"
    assert g.types() == ["turn_finished", "budget_limited", "turn_started"]
    limited = g.record("budget_limited").payload
    assert limited["budget"] == "tokens"
    assert limited["spend"]["input_tokens"] + limited["spend"]["output_tokens"] == 1000
    assert limited["limit"]["tokens"] == 1000
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "wind_down"
    assert g.record("turn_started").payload["kind"] == "wind_down"
    assert g.state.in_flight.kind == "wind_down"
    assert started_turns(g) == [turn]


def test_the_wind_down_prompt_asks_for_what_is_done_what_is_left_and_the_next_step():
    g = limited_by_tokens()
    [turn] = g.effects(RunLeadTurn)
    assert "progress report" in turn.prompt
    assert "what is done, what is left, and the next step" in turn.prompt
    assert "Do not start new work" in turn.prompt
    assert "Markers in this reply are ignored" in turn.prompt
    assert "tokens 0 left of 1000" in turn.prompt
    assert markers.extract(turn.prompt).markers == ()


def test_the_wind_down_turn_is_kept_so_a_rerun_asks_the_same_thing():
    g = limited_by_tokens()
    [turn] = g.effects(RunLeadTurn)
    assert g.state.in_flight.prompt == turn.prompt
    g.step(ev.ActorCrashed(role="lead", error="segfault", turn=turn.turn))
    [rerun] = g.effects(RunLeadTurn)
    assert (rerun.turn, rerun.kind, rerun.prompt, rerun.new_session) == (turn.turn, "wind_down", turn.prompt, True)


def test_markers_in_the_wind_down_reply_are_ignored_and_its_report_is_recorded():
    g = limited_by_tokens()
    g.lead(
        "Done: the parser. Left: the CLI flag. Next step: wire --json into goal show.\n"
        + ready("all done, trust me")
        + block("blocked", {"reason": "out of budget"})
        + block("plan", {"steps": [{"title": "more work"}]})
    )
    assert g.status == "budget_limited"
    ignored = [r.payload for r in g.last.records if r.type == "marker_ignored"]
    assert [(p["kind"], p["reason"]) for p in ignored] == [
        ("ready", "wind-down turn"),
        ("blocked", "wind-down turn"),
        ("plan", "wind-down turn"),
    ]
    report = g.record("wind_down").payload
    assert report["turn"] == g.record("turn_finished").payload["turn"]
    assert report["report"] == "Done: the parser. Left: the CLI flag. Next step: wire --json into goal show."
    assert "CREW_" not in report["report"]
    assert g.types() == ["turn_finished", "marker_ignored", "marker_ignored", "marker_ignored", "wind_down"]
    assert started_turns(g) == []
    assert g.state.in_flight is None
    assert g.state.round == 0 and g.state.plan == 0  # neither READY nor PLAN acted


def test_the_wind_down_turn_is_counted_against_the_spend():
    g = limited_by_tokens()
    before = g.state.spend.tokens
    g.lead("Done: a. Left: b. Next: c.", usage=usage(120, 30))
    assert g.state.spend.tokens == before + 150
    assert g.record("turn_finished").payload["usage"]["input_tokens"] == 120


def test_after_the_wind_down_nothing_starts_another_turn():
    g = wound_down()
    fed = [
        g.step(ev.Wake(), after=3600),
        g.step(ev.Recover()),
        g.step(ev.Steer(text="keep going anyway")),
        g.step(ev.Wake(), after=86400),
        g.step(ev.EditCriteria(criteria=(Criterion("c1", "tests pass", {"run": "pytest -q -x"}),))),
        g.step(ev.Recover()),
        g.step(ev.TurnFinished(turn=g.state.turn, text=ready())),  # a late duplicate of the wind-down
    ]
    for transition in fed:
        assert started_turns(g, transition) == [], transition.records
    assert g.status == "budget_limited"
    assert g.all_types().count("turn_started") == 2  # the work turn and the one wind-down
    assert len(g.state.steers) == 1  # queued for the turn after a raise, not lost
    with pytest.raises(Refused, match="budget_limited"):
        g.step(ev.Pause())


def test_a_budget_spent_by_the_verifier_limits_the_goal_instead_of_the_next_held_turn():
    g = Drive.new(JUDGED, budget=Budget(tokens=1000))
    g.lead(ready(), usage=usage(300, 100))
    g.verifier(verify(("c2", "fail", "README says nothing")), checks={"c1": {"exit": 0}}, usage=usage(550, 60))
    assert "gate_held" in g.types()
    assert g.status == "budget_limited"
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "wind_down"
    assert g.state.resume_to == "running"


def test_a_spent_budget_stops_the_corrective_turn_too():
    g = Drive.new(CHECK, budget=Budget(tokens=100))
    g.lead(block("ready", "{oops"), usage=usage(90, 20))
    assert "marker_invalid" in g.types()
    assert g.status == "budget_limited"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["wind_down"]


# -- time and cost budgets -------------------------------------------------------------------


def test_agent_seconds_add_up_to_the_time_budget_and_limit_the_goal():
    with freeze_time("2026-11-21 09:00:00") as clock:
        g = Drive.new(CHECK, budget=Budget(seconds=100.0), now=clock_now())
        for seconds in (30.0, 30.0, 30.0):
            clock.tick(seconds)
            g.now = clock_now()
            g.lead("working", usage=usage(seconds=seconds))
            assert g.status == "running"
        assert g.state.spend.seconds == pytest.approx(90.0)
        clock.tick(12.5)
        g.now = clock_now()
        g.lead("working", usage=usage(seconds=12.5))

    assert g.status == "budget_limited"
    assert g.state.reason == "time budget spent"
    assert g.record("budget_limited").payload["budget"] == "time"
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "wind_down"
    assert "time 0s left of 100s" in turn.prompt


def test_the_time_budget_counts_agent_time_not_time_waiting_for_the_operator():
    with freeze_time("2026-11-21 09:00:00") as clock:
        g = Drive.new(CHECK, budget=Budget(seconds=100.0), now=clock_now())
        g.lead(block("clarify", {"questions": [{"text": "May I add a dependency?"}]}), usage=usage(seconds=20.0))
        assert g.status == "awaiting_input"
        clock.tick(timedelta(days=2))  # the operator answers two days later
        g.now = clock_now()
        g.step(ev.Answer(answers={"q1": "yes"}))
    assert g.status == "running"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["answer"]
    assert g.state.spend.seconds == pytest.approx(20.0)


def test_reported_cost_adds_up_to_the_cost_budget_and_limits_the_goal():
    g = Drive.new(CHECK, budget=Budget(cost_usd=1.0))
    g.lead("working", usage=usage(1000, 100, cost=0.40))
    g.lead("working", usage=usage(1000, 100, cost=0.40))
    assert g.status == "running"
    g.lead("working", usage=usage(1000, 100, cost=0.25))
    assert g.status == "budget_limited"
    assert g.state.reason == "cost budget spent"
    assert g.state.spend.cost_usd == pytest.approx(1.05)
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "wind_down"
    assert "cost $0.00 left of $1.00" in turn.prompt


def test_turns_that_report_no_cost_never_spend_the_cost_budget():
    g = Drive.new(CHECK, budget=Budget(cost_usd=0.01), max_auto_turns=50)
    for _ in range(10):
        g.lead("working", usage=usage(100_000, 10_000))
    assert g.status == "running"
    assert g.state.spend.cost_usd == 0.0


# -- raising the budget ----------------------------------------------------------------------


def test_raising_the_budget_above_the_spend_resumes_the_goal_with_a_new_turn():
    g = wound_down()
    spent_turns = g.state.turn
    g.step(ev.RaiseBudget(tokens=5000))
    assert g.status == "running"
    assert g.state.reason is None
    assert g.types() == ["budget_raised", "resumed", "turn_started"]
    assert g.record("budget_raised").payload["budget"]["tokens"] == 5000
    assert g.record("resumed").payload == {"status": "running", "was": "budget_limited"}
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "resume" and turn.turn == spent_turns + 1 and not turn.rerun
    assert "tokens 3900 left of 5000" in turn.prompt
    assert (g.state.wind_down, g.state.auto_turns, g.state.run_turns, g.state.attempt) == (False, 0, 0, 0)


def test_raising_the_budget_still_below_the_spend_keeps_the_goal_limited():
    g = wound_down()
    g.step(ev.RaiseBudget(tokens=1050))  # the spend is 1100
    assert g.status == "budget_limited"
    assert g.types() == ["budget_raised"]
    assert started_turns(g) == []
    assert g.state.budget.tokens == 1050
    g.step(ev.RaiseBudget(tokens=1100))  # equal to the spend: still spent
    assert g.status == "budget_limited" and started_turns(g) == []


def test_raising_one_of_two_spent_budgets_keeps_the_goal_limited_and_says_which_is_spent():
    g = Drive.new(CHECK, budget=Budget(tokens=1000, cost_usd=0.5))
    g.lead("working", usage=usage(900, 200, cost=0.75))
    assert g.state.reason == "tokens budget spent"
    g.lead("Done: a. Left: b. Next: c.")
    g.step(ev.RaiseBudget(tokens=10_000))
    assert g.status == "budget_limited"
    assert g.state.reason == "cost budget spent"
    assert started_turns(g) == []
    g.step(ev.RaiseBudget(cost_usd=2.0))
    assert g.status == "running"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["resume"]


def test_resuming_a_goal_whose_budget_is_still_spent_is_refused():
    g = wound_down()
    before = g.state
    with pytest.raises(Refused, match=r"tokens budget is still spent.*crewctl goal budget g1 --tokens N"):
        g.step(ev.Resume())
    assert g.state is before


def test_a_raise_with_no_budget_named_is_refused():
    g = wound_down()
    with pytest.raises(Refused, match="at least one"):
        g.step(ev.RaiseBudget())


def test_raising_the_budget_while_the_wind_down_turn_runs_drops_it_and_resumes_with_a_fresh_turn():
    g = limited_by_tokens()
    [wind] = g.effects(RunLeadTurn)
    g.step(ev.RaiseBudget(tokens=5000))
    assert g.status == "running"
    assert g.effects(CancelWork)  # the report is moot once the goal runs again
    [turn] = g.effects(RunLeadTurn)
    assert turn.kind == "resume" and turn.turn == wind.turn + 1 and turn.prompt
    late = g.step(ev.TurnFinished(turn=wind.turn, text="Done: a. Left: b."))
    assert late.records == ()  # the dropped turn's reply changes nothing
    g.lead(ready())
    assert g.status == "verifying"


def test_a_queued_steer_rides_with_the_turn_that_resumes_the_goal():
    g = wound_down()
    g.step(ev.Steer(text="only the CLI flag is left; skip the docs"))
    g.step(ev.RaiseBudget(tokens=5000))
    [turn] = g.effects(RunLeadTurn)
    assert "only the CLI flag is left; skip the docs" in turn.prompt
    assert "steer_delivered" in g.types()
    assert g.state.steers == ()


def test_a_goal_that_spends_its_raised_budget_winds_down_once_more():
    g = wound_down()
    g.step(ev.RaiseBudget(tokens=2000))
    g.lead("working", usage=usage(800, 200))
    assert g.status == "budget_limited"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["wind_down"]
    g.lead("Done: more. Left: less.")
    assert g.all_types().count("wind_down") == 2
    assert started_turns(g) == []


def test_a_goal_limited_while_scoping_resumes_scoping():
    g = Drive.new(budget=Budget(tokens=100))
    g.lead("thinking about the scope", usage=usage(80, 40))
    assert g.status == "budget_limited" and g.state.resume_to == "scoping"
    g.lead("Done: read the repo. Left: the criteria.")
    g.step(ev.RaiseBudget(tokens=1000))
    assert g.status == "scoping"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["resume"]


# -- provider usage limits -------------------------------------------------------------------


def test_usage_limit_errors_back_off_with_growing_delays_then_block_with_usage_limited():
    with freeze_time("2026-11-21 09:00:00") as clock:
        g = Drive.new(CHECK, now=clock_now())
        turn = g.state.in_flight.turn
        delays = []
        for n in range(1, phases.MAX_USAGE_LIMITED + 1):
            g.step(ev.TurnFailed(turn=turn, error=f"openai: 429 rate limited ({n})", kind="usage_limited"))
            assert g.status == "running"
            [wake] = g.effects(WakeAt)
            delays.append((datetime.fromisoformat(wake.at) - g.now).total_seconds())
            assert g.record("turn_failed").payload["kind"] == "usage_limited"
            clock.move_to(wake.at)
            g.now = clock_now()
            g.step(ev.Wake())
            [rerun] = g.effects(RunLeadTurn)
            assert rerun.turn == turn and rerun.rerun
        g.step(ev.TurnFailed(turn=turn, error="openai: 429 quota exhausted", kind="usage_limited"))

    assert delays == sorted(delays) and len(set(delays)) == len(delays), delays
    assert delays[0] >= 60.0  # a usage limit is not a blip: wait at least a minute
    assert g.status == "blocked"
    assert g.state.reason == "usage_limited: openai: 429 quota exhausted"
    assert g.record("blocked").payload["reason"] == "usage_limited"
    assert started_turns(g) == []


def test_an_early_wake_during_usage_limit_backoff_waits_on():
    with freeze_time("2026-11-21 09:00:00") as clock:
        g = Drive.new(CHECK, now=clock_now())
        g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="429", kind="usage_limited"))
        retry_at = g.state.retry_at
        clock.tick(10)
        g.now = clock_now()
        g.step(ev.Wake())
    assert g.effects(WakeAt) == [WakeAt(at=retry_at)]
    assert started_turns(g) == []


def test_usage_limit_backoff_is_longer_than_the_backoff_after_an_ordinary_error():
    def first_delay(kind: str) -> float:
        g = Drive.new(CHECK)
        g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="x", kind=kind))
        return (datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds()

    assert first_delay("usage_limited") > first_delay("error")


def test_a_successful_turn_resets_the_usage_limit_backoff():
    g = Drive.new(CHECK)
    turn = g.state.in_flight.turn
    for _ in range(3):
        g.step(ev.TurnFailed(turn=turn, error="429", kind="usage_limited"))
        g.step(ev.Wake(), after=(datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds())
    g.lead("working")
    assert g.state.errors_in_row == 0
    g.step(ev.TurnFailed(turn=g.state.in_flight.turn, error="429", kind="usage_limited"))
    assert (datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds() == 60.0


def test_a_usage_limited_verifier_backs_off_and_reruns_its_round():
    g = Drive.new(JUDGED)
    g.lead(ready())
    turn = g.state.in_flight.turn
    g.step(ev.TurnFailed(turn=turn, error="429", kind="usage_limited"))
    assert g.status == "verifying" and started_turns(g) == []
    g.step(ev.Wake(), after=(datetime.fromisoformat(g.state.retry_at) - g.now).total_seconds())
    [start] = g.effects(StartRound)
    assert start.rerun and start.round == 1 and start.turn == turn


# -- the automatic-turn maximum ---------------------------------------------------------------


def test_the_automatic_turn_maximum_blocks_with_max_turns():
    g = Drive.new(CHECK, max_turns=3, max_auto_turns=50)
    for n in range(3):
        g.lead("working")
        assert [e.kind for e in g.effects(RunLeadTurn)] == ["continue"], n
    g.lead("working")
    assert g.status == "blocked"
    assert g.state.reason == "max_turns: 3 automatic turns this run"
    assert g.record("blocked").payload["reason"] == "max_turns"
    assert started_turns(g) == []


def test_held_gate_continuations_count_toward_the_automatic_turn_maximum():
    g = Drive.new(CHECK, max_turns=2, attempt_cap=10, verifier=False)
    for n in range(2):
        g.lead(ready(f"try {n}"))
        g.verifier(None, checks={"c1": {"exit": 1, "output": f"failure {n}"}})
        assert [e.kind for e in g.effects(RunLeadTurn)] == ["held"]
    g.lead(ready("try 2"))
    g.verifier(None, checks={"c1": {"exit": 1, "output": "failure 2"}})
    assert g.status == "blocked"
    assert g.state.reason.startswith("max_turns")


def test_turns_the_operator_asked_for_do_not_count_toward_the_automatic_turn_maximum():
    g = Drive.new(CHECK, max_turns=1, max_auto_turns=50)
    g.lead("working")  # the one automatic turn of this run
    for n in range(3):
        g.step(ev.Steer(text=f"also do {n}"))
        g.lead("working")
        assert [e.kind for e in g.effects(RunLeadTurn)] == ["steer"], n
    assert g.state.run_turns == 1
    g.lead("working")
    assert g.status == "blocked" and g.state.reason.startswith("max_turns")


def test_resuming_a_goal_blocked_at_the_maximum_starts_a_new_run():
    g = Drive.new(CHECK, max_turns=1, max_auto_turns=50)
    g.lead("working")
    g.lead("working")
    assert g.status == "blocked"
    g.step(ev.Resume())
    assert g.status == "running" and g.state.run_turns == 0
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["resume"]
    g.lead("working")
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["continue"]
    g.lead("working")
    assert g.status == "blocked"


# -- no_progress -----------------------------------------------------------------------------


def held_round(g: Drive, evidence: str, *, failed: str = "c2") -> None:
    g.lead(ready())
    results = [("c2", "fail" if failed == "c2" else "pass", evidence)]
    g.verifier(verify(*results), checks={"c1": {"exit": 1 if failed == "c1" else 0, "output": evidence}})
    assert "gate_held" in g.types()


def test_the_same_failed_criteria_and_evidence_three_rounds_running_block_with_no_progress():
    g = Drive.new(JUDGED, attempt_cap=10)
    for n in range(3):
        assert g.status == "running", n
        held_round(g, "README says nothing about --json")
    assert g.status == "blocked"
    assert g.state.reason.startswith("no_progress")
    assert g.record("blocked").payload["reason"] == "no_progress"
    assert g.state.attempt == 3 and g.state.attempt < g.state.attempt_cap
    assert started_turns(g) == []


def test_different_evidence_each_round_is_progress_and_does_not_block():
    g = Drive.new(JUDGED, attempt_cap=10)
    for n in range(5):
        held_round(g, f"README mentions --json only in section {n}")
    assert g.status == "running"
    assert [e.kind for e in g.effects(RunLeadTurn)] == ["held"]
    assert g.state.attempt == 5


def test_a_different_failed_criterion_with_the_same_evidence_is_progress():
    g = Drive.new(JUDGED, attempt_cap=10)
    held_round(g, "missing", failed="c2")
    held_round(g, "missing", failed="c1")
    held_round(g, "missing", failed="c2")
    assert g.status == "running"


def test_a_different_failure_in_between_restarts_the_no_progress_count():
    g = Drive.new(JUDGED, attempt_cap=10)
    for evidence in ("same", "same", "other", "same", "same"):
        held_round(g, evidence)
        assert g.status == "running", evidence
    held_round(g, "same")
    assert g.status == "blocked" and g.state.reason.startswith("no_progress")


# -- a paused goal never gets a turn ----------------------------------------------------------


def test_a_paused_goal_never_gets_a_turn():
    g = Drive.new(JUDGED)
    [first] = g.effects(RunLeadTurn)
    g.step(ev.Pause())
    fed = [
        g.step(ev.TurnFinished(turn=first.turn, text="no marker here")),  # the interrupted turn's late reply
        g.step(ev.TurnFailed(turn=first.turn, error="boom")),
        g.step(ev.Wake(), after=3600),
        g.step(ev.Recover()),
        g.step(ev.Steer(text="do it differently")),
        g.step(ev.EditCriteria(criteria=(Criterion("c1", "tests pass", {"run": "pytest"}),))),
        g.step(ev.RaiseBudget(tokens=10**6)),
        g.step(ev.ActorCrashed(role="lead", error="segfault", turn=first.turn)),
        g.step(ev.Wake(), after=86400),
    ]
    for transition in fed:
        assert started_turns(g, transition) == [], transition.records
    assert g.status == "paused"
    with pytest.raises(Refused):
        g.step(ev.Pause())
    g.step(ev.Resume())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.turn == first.turn and rerun.rerun


def test_a_goal_paused_during_verification_moves_nothing_on_the_verdict():
    g = Drive.new(JUDGED)
    g.lead(ready())
    f = g.state.in_flight
    g.step(ev.Pause())
    late = g.step(ev.RoundFinished(round=1, turn=f.turn, text=verify(("c2", "pass", "ok")), checks={"c1": {"exit": 0}}))
    assert late.records == () and started_turns(g, late) == []
    assert g.status == "paused"
    t = g.step(ev.Recover())
    assert started_turns(g, t) == []


def test_a_failed_wind_down_turn_is_retried_after_its_backoff():
    g = limited_by_tokens()
    wind_down = g.state.in_flight
    assert wind_down.kind == "wind_down"
    g.step(ev.TurnFailed(turn=wind_down.turn, error="exit 1"))
    [wake] = g.effects(WakeAt)
    g.step(ev.Wake(), after=(datetime.fromisoformat(wake.at) - g.now).total_seconds())
    [rerun] = g.effects(RunLeadTurn)
    assert (rerun.kind, rerun.turn, rerun.prompt) == ("wind_down", wind_down.turn, wind_down.prompt)
    assert g.status == "budget_limited"


def test_a_wind_down_turn_interrupted_by_a_restart_runs_again_once():
    g = limited_by_tokens()
    wind_down = g.state.in_flight
    g.step(ev.Recover())
    [rerun] = g.effects(RunLeadTurn)
    assert rerun.kind == "wind_down" and rerun.rerun and rerun.turn == wind_down.turn
    g.lead("done: a; left: b; next: c")
    assert g.status == "budget_limited" and g.state.in_flight is None
    assert not g.effects(RunLeadTurn, g.step(ev.Recover()))
