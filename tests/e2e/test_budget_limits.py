"""Budgets stop a goal within one turn's spend of the limit: no turn starts once a budget is
spent (the one wind-down turn aside), and a lead turn may only run as long as the time
budget has left. `goal show` says what is left; a raise that is not enough says so."""

from __future__ import annotations

from crewctl.testing import write_agent

SPENDS = """
def spend(tokens):
    with open(env["CREWCTL_USAGE_FILE"], "w") as f:
        json.dump({"input_tokens": tokens, "output_tokens": 0}, f)
"""


def test_no_verifier_round_starts_once_the_token_budget_is_spent(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", SPENDS + """
spend(1500)
if "budget is spent" in prompt:
    say("Done: a parser. Left: the flag. Next: wire it.")
else:
    marker("READY", {"summary": "done, I think"})
""")
    verifier = write_agent(tmp_path, "verifier", SPENDS + """
spend(1500)
marker("VERIFY", {"results": [{"id": "c1", "verdict": "fail", "evidence": "not yet"}]})
""")
    goal = sup.new_goal("spend", "--criterion", "it works", "--token-budget", "4000", lead=lead, verifier=verifier, workspace=ws)
    view = sup.wait_for_status(goal, "budget_limited", timeout=60)
    sup.wait_for_event(goal, "wind_down")
    events = sup.events(goal)
    limited = next(i for i, e in enumerate(events) if e["type"] == "budget_limited")
    spend = events[limited]["payload"]["spend"]
    assert spend["input_tokens"] <= 4000 + 1500  # within one turn's spend of the limit
    started = [e["payload"] for e in events if e["type"] == "turn_started"]
    assert [(t["role"], t["kind"]) for t in started] == [("lead", "work"), ("verifier", "verify"), ("lead", "held"), ("lead", "wind_down")]
    assert view["reason"] == "tokens budget spent"


def test_a_lead_turn_is_stopped_when_the_time_budget_runs_out(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
if "budget is spent" in prompt:
    say("Done: nothing yet. Left: everything.")
else:
    time.sleep(60)  # a turn that would run far past the budget
    marker("READY", {"summary": "done"})
""")
    goal = sup.new_goal("slow", "--criterion", "c", "--check", "true", "--time-budget", "2", lead=lead, workspace=ws)
    view = sup.wait_for_status(goal, "budget_limited", timeout=40)  # well before the 60 s turn would end
    assert view["reason"] == "time budget spent"
    sup.wait_for_event(goal, "wind_down", timeout=30)
    [stopped] = [e for e in sup.events(goal) if e["type"] == "turn_failed"]
    assert stopped["payload"]["kind"] == "time_budget" and stopped["payload"]["seconds"] >= 2
    assert sup.show(goal)["usage"]["seconds"] < 60


def test_goal_show_says_what_is_left_of_each_budget_and_how_much_is_spent(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", SPENDS + """
spend(1000)
marker("READY", {"summary": "done"})
""")
    goal = sup.new_goal("show", "--criterion", "c", "--check", "true", "--token-budget", "4000", "--cost-budget", "2", lead=lead, workspace=ws)
    view = sup.wait_for_status(goal, "awaiting_signoff")
    assert view["budget_left"]["tokens"] == {"limit": 4000, "spent": 1000, "left": 3000, "percent": 25.0}
    assert view["budget_left"]["cost_usd"]["percent"] == 0.0
    text = sup.cli("goal", "show", goal).stdout
    assert "budget:    1000 tokens of 4000 tokens spent (25%), 3000 tokens left" in text
    assert "of $2.0000 spent (0%)" in text


def test_a_raise_still_below_what_is_spent_says_so_and_the_goal_stays_limited(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", SPENDS + """
spend(3000)
say("working")
""")
    goal = sup.new_goal("raise", "--criterion", "c", "--check", "true", "--token-budget", "1000", lead=lead, workspace=ws)
    sup.wait_for_event(goal, "wind_down")
    spent = sup.show(goal)["usage"]["input_tokens"]
    low = sup.cli("goal", "budget", goal, "--tokens", str(spent - 1))
    assert low.code == 0 and "Traceback" not in low.stderr
    [line] = low.stderr.strip().splitlines()
    assert "still not more than what is spent" in line and f"{spent} tokens" in line and "stays budget_limited" in line
    assert sup.show(goal)["status"] == "budget_limited"
    high = sup.cli("goal", "budget", goal, "--tokens", str(spent * 10), "--json")
    assert high.stderr == "" and high.json()["status"] == "running"


def test_raising_the_budget_after_two_identical_held_gates_starts_a_new_run(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", SPENDS + """
n = count()
spend(1000)
if "budget is spent" in prompt:
    say("Done: two tries. Left: the fix.")
elif n >= 6:
    marker("BLOCKED", {"reason": "stop here"})
else:
    marker("READY", {"summary": "try again"})
""")
    goal = sup.new_goal("same failure", "--criterion", "c", "--check", "echo same failure; false", "--token-budget", "2500",
                        lead=lead, workspace=ws)
    sup.wait_for_event(goal, "wind_down", timeout=60)
    assert [e["type"] for e in sup.events(goal)].count("gate_held") == 2
    sup.cli("goal", "budget", goal, "--tokens", "100000")
    view = sup.wait_for_status(goal, "blocked", timeout=60)
    assert view["reason"] == "stop here"  # the lead's, not no_progress after a third identical failure
    events = sup.events(goal)
    assert [e["type"] for e in events].count("gate_held") == 4
    assert not [e for e in events if e["type"] == "blocked" and e["payload"]["reason"] == "no_progress"]
