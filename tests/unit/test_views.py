"""What `goal show --json` and the summaries show (contract shapes): goal/views.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crewctl.goal.model import Budget, Envelope, Spend
from crewctl.goal.views import budget_report, envelope_view, goal_view, protect_view, summary_view
from crewctl.goal.vocab import Status
from crewctl.testing.phases import Drive

# The keys docs/contracts.md promises a script at least.
CONTRACT_KEYS = {"id", "objective", "status", "criteria", "attempt", "attempt_cap", "round", "usage", "budget", "reason"}


def goal(**changes):
    d = Drive.new([("c1", "tests pass", {"run": "pytest"}), ("c2", "readme says so", "read it")])
    return replace(d.state, **changes)


def test_goal_view_holds_every_contract_key_with_plain_json_values():
    view = goal_view(goal())
    assert CONTRACT_KEYS <= set(view)
    assert set(view["usage"]) >= {"input_tokens", "output_tokens", "seconds"}
    assert view["criteria"] == [
        {"id": "c1", "text": "tests pass", "verify": {"run": "pytest"}, "status": "pending", "evidence": None},
        {"id": "c2", "text": "readme says so", "verify": "read it", "status": "pending", "evidence": None},
    ]


@pytest.mark.parametrize("status", [Status.BLOCKED, Status.FAILED, Status.PAUSED, Status.BUDGET_LIMITED, Status.CANCELLED])
def test_the_reason_is_shown_while_the_status_explains_it(status):
    assert goal_view(goal(status=status, reason="why"))["reason"] == "why"


@pytest.mark.parametrize("status", [Status.RUNNING, Status.VERIFYING, Status.AWAITING_SIGNOFF, Status.DONE])
def test_a_leftover_reason_is_not_shown_once_the_goal_moved_on(status):
    assert goal_view(goal(status=status, reason="old"))["reason"] is None


def test_attention_names_why_and_since_only_when_the_goal_needs_somebody():
    assert goal_view(goal(status=Status.RUNNING))["attention"] is None
    view = goal_view(goal(status=Status.BLOCKED, reason="lead: stuck"), since="2026-01-01T00:00:00Z")
    assert view["attention"] == {"why": "blocked", "since": "2026-01-01T00:00:00Z", "reason": "lead: stuck"}


def test_budget_report_lists_only_the_budgets_that_are_set():
    s = goal(budget=Budget(tokens=1000), spend=Spend(input_tokens=300, output_tokens=100))
    assert budget_report(s) == {"tokens": {"limit": 1000, "spent": 400, "left": 600, "percent": 40.0}}


def test_budget_report_never_shows_less_than_nothing_left():
    s = goal(budget=Budget(tokens=100), spend=Spend(input_tokens=150))
    assert budget_report(s)["tokens"] == {"limit": 100, "spent": 150, "left": 0, "percent": 150.0}


def test_envelope_view_is_none_until_a_gate_passes_and_then_names_its_branch():
    assert envelope_view(goal()) is None
    env = Envelope(round=2, status="ready", branch="crewctl/g1", commit="c" * 40, base="b" * 40, files=("a.py",))
    view = envelope_view(goal(envelope=env))
    assert view is not None
    assert (view["round"], view["status"], view["branch"], view["files"]) == (2, "ready", "crewctl/g1", ["a.py"])


def test_protect_view_holds_its_contract_keys():
    assert {"patterns", "forbidden", "pinned_files", "baseline_at"} <= set(protect_view(goal()))


def test_summary_view_is_the_short_line_of_a_goal():
    assert summary_view(goal(status=Status.RUNNING, round=3, attempt=1)) == {
        "id": "g1", "objective": "make the tests pass", "status": "running", "reason": None, "round": 3, "attempt": 1,
    }
