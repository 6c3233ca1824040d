"""When a goal needs its operator, which hook a transition fires, and spend against budgets
(goal.attention), driven through the pure phase machine."""

from __future__ import annotations

from crewctl.goal import events as ev
from crewctl.goal.attention import attention_why, budget_use, hook_due
from crewctl.goal.model import Budget
from crewctl.goal.views import goal_view
from crewctl.testing.phases import Drive, block, ready, verify

CHECK = [("c1", "tests pass", {"run": "pytest -q"})]
JUDGED = [("c1", "README documents it", "read README.md")]


def step_hook(g: Drive, event: ev.Event) -> str | None:
    before = g.state
    g.step(event)
    return hook_due(before, g.state)


def lead_hook(g: Drive, text: str) -> str | None:
    before = g.state
    g.lead(text)
    return hook_due(before, g.state)


def test_a_running_goal_needs_nobody():
    g = Drive.new(CHECK)
    assert attention_why(g.state) is None
    assert goal_view(g.state)["attention"] is None


def test_a_passed_gate_is_one_entry_into_awaiting_signoff():
    g = Drive.new(JUDGED)
    g.lead(ready())
    before = g.state
    g.verifier(verify(("c1", "pass", "seen")))
    assert g.status == "awaiting_signoff"
    assert hook_due(before, g.state) == "on_attention"
    assert goal_view(g.state, since="2025-01-01T00:00:00+00:00")["attention"] == {
        "why": "awaiting_signoff", "since": "2025-01-01T00:00:00+00:00", "reason": None,
    }
    # A steer turn that ends while the gate stays passed is no new entry.
    assert step_hook(g, ev.Steer(text="also update the changelog")) is None
    assert lead_hook(g, "noted") is None
    assert g.status == "awaiting_signoff"


def test_sign_off_fires_on_done_once():
    g = Drive.new(JUDGED)
    g.lead(ready())
    g.verifier(verify(("c1", "pass", "seen")))
    assert step_hook(g, ev.Signoff()) == "on_done"
    assert hook_due(g.state, g.state) is None


def test_blocked_then_resumed_then_blocked_again_is_two_entries():
    g = Drive.new(CHECK)
    assert lead_hook(g, block("blocked", {"reason": "no key"})) == "on_attention"
    assert attention_why(g.state) == "blocked"
    assert step_hook(g, ev.Resume()) is None
    assert lead_hook(g, block("blocked", {"reason": "still no key"})) == "on_attention"


def test_questions_while_scoping_count_as_awaiting_input():
    g = Drive.new()
    assert lead_hook(g, block("clarify", {"questions": [{"text": "Which Python?"}]})) == "on_attention"
    assert g.status == "scoping"
    assert attention_why(g.state) == "awaiting_input"


def test_a_spent_budget_is_an_entry_and_its_wind_down_turn_is_not_another():
    g = Drive.new(CHECK, budget=Budget(tokens=100))
    before = g.state
    g.lead("working", usage=ev.TurnUsage(input_tokens=90, output_tokens=20))
    assert g.status == "budget_limited"
    assert hook_due(before, g.state) == "on_attention"
    assert lead_hook(g, "here is where I stopped") is None  # the wind-down report


def test_a_failed_goal_needs_its_operator():
    g = Drive.new(CHECK)
    assert step_hook(g, ev.Fail(reason="disk gone")) == "on_attention"
    assert attention_why(g.state) == "failed"


def test_a_failed_hook_is_recorded_even_on_a_done_goal_and_moves_nothing():
    g = Drive.new(JUDGED)
    g.lead(ready())
    g.verifier(verify(("c1", "pass", "seen")))
    g.step(ev.Signoff())
    done = g.state
    t = g.step(ev.HookFailed(hook="on_done", status="done", error="exited 1"))
    assert [r.type for r in t.records] == ["hook_failed"]
    assert t.state == done and not t.effects


def test_budget_use_gives_each_set_budget_with_its_percent():
    g = Drive.new(CHECK, budget=Budget(tokens=1000, seconds=100.0))
    g.lead("working", usage=ev.TurnUsage(input_tokens=200, output_tokens=50, seconds=10.0))
    assert budget_use(g.state) == [
        {"budget": "tokens", "used": 250, "limit": 1000, "percent": 25.0},
        {"budget": "seconds", "used": 10.0, "limit": 100.0, "percent": 10.0},
    ]


def test_the_verifier_turn_carries_its_prompt_so_the_turn_table_can_store_it():
    g = Drive.new(JUDGED)
    g.lead(ready())
    f = g.state.in_flight
    assert f.role == "verifier" and "README documents it" in f.prompt and "independent verifier" in f.prompt


def test_a_round_of_check_commands_only_sends_no_prompt_and_stores_none():
    g = Drive.new(CHECK)
    g.lead(ready())
    assert g.state.in_flight.role == "verifier" and g.state.in_flight.prompt == ""
