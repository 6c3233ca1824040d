"""No request and no reply stops the supervisor: it keeps answering, and what goes wrong
for one goal is recorded on that goal (blocked, with the reason), never the daemon's end."""

from __future__ import annotations

import json
import math
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crewctl.exceptions import CrewError, NoSupervisor
from crewctl.goal.validate import OPERATIONS
from crewctl.testing import Supervisor, wait_until, write_agent
from crewctl.testing.agents import agent_file
from crewctl.transport import control


WAITER = """
deadline = time.time() + 300
while time.time() < deadline and not os.path.exists(os.path.join(state_dir, "stop")):
    time.sleep(0.05)  # poll: the agent works until the test says stop, with a deadline
"""

# Plain values of every type the wire carries, at every size a control frame takes, nested:
# non-finite floats, integers to the codec's edges, text, and bytes (non-UTF-8 where text belongs).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.inf, -math.inf, math.nan, 10**19, -(2**63), 0, -1, 1e308])
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
    | st.binary(max_size=40)
    | st.integers(min_value=0, max_value=40_000).map(lambda n: "x" * n)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=25,
)
FIELDS = sorted({name for fields in OPERATIONS.values() for name in fields} | {"x", ""})
OPS = sorted(OPERATIONS) + ["goal.nope", "", "status.all", "goal.new.x"]
requests = st.tuples(
    st.sampled_from(OPS) | st.text(max_size=20),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=8),
)
# Requests aimed at the real goal whose every value is one its rules refuse.
not_a_budget = st.sampled_from([math.inf, -math.inf, math.nan, 0, -1, 10**19, 2**64 - 1, 1e300, "100", True, [5], {"n": 5}, b"\xff"])
at_the_goal = st.one_of(
    st.tuples(st.just("goal.budget"), st.dictionaries(st.sampled_from(["tokens", "seconds", "cost"]), not_a_budget, min_size=1)),
    st.tuples(st.just("goal.steer"), st.fixed_dictionaries({"message": st.sampled_from(["", "   ", b"\xfe\xff", 7, None, [], math.nan])})),
    st.tuples(st.just("goal.answer"), st.fixed_dictionaries({"answers": values})),
    st.tuples(st.just("goal.approve"), st.fixed_dictionaries({"step": values})),
    st.tuples(st.just("goal.signoff"), st.fixed_dictionaries({"x": values})),
    st.tuples(st.just("goal.send_back"), st.fixed_dictionaries({"notes": values})),
)


@pytest.fixture(scope="module")
def crew(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    ws = tmp / "ws"
    ws.mkdir()
    with Supervisor(tmp) as sup:
        goal = sup.new_goal("hold still", "--criterion", "c", "--check", "true", lead=write_agent(tmp, "waiter", WAITER), workspace=str(ws))
        sup.wait_for_event(goal, "turn_started")
        yield sup, goal, (sup.show(goal), sup.events(goal))
        agent_file(tmp, "waiter", "stop").write_text("1")


def ask(sup, op, args):
    """One request through the CLI's own client; the answer, or the typed error it became."""
    try:
        return control.call(sup.home, op, args, timeout=10)
    except NoSupervisor as exc:
        pytest.fail(f"the supervisor stopped answering after {op!r} {args!r}: {exc}")
    except CrewError as exc:
        assert "internal error" not in exc.message, f"{op!r} {args!r} met a bug: {exc.message}"
        return exc


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests | at_the_goal.map(lambda r: (r[0], r[1])), aimed=st.booleans())
def test_random_requests_to_the_control_rpc_are_answered_and_change_no_goal(crew, request, aimed):
    sup, goal, _ = crew
    op, args = request
    if aimed and op in ("goal.budget", "goal.steer", "goal.answer", "goal.approve", "goal.signoff", "goal.send_back"):
        args = {**args, "id": goal}  # the real goal, with values its rules must refuse
    else:
        ident = args.get("id")
        assume(not (isinstance(ident, str) and len(ident) >= 4 and goal.startswith(ident)))
    if op == "goal.new":
        args.pop("workspace", None)  # a random request must not be able to create a goal
    answer = ask(sup, op, args)
    if op != "status":
        assert isinstance(answer, CrewError), f"{op!r} {args!r} was accepted: {answer!r}"


def test_after_the_random_requests_the_goal_and_the_daemon_are_as_they_were(crew):
    sup, goal, before = crew
    assert (sup.show(goal), sup.events(goal)) == before
    assert [g["id"] for g in sup.cli("goal", "list", "--json").json()] == [goal]
    assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid
    assert "Traceback" not in sup.log()


def test_one_valid_and_one_malformed_verify_block_hold_the_gate_as_a_protocol_error(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
        if count() == 1:
            marker("READY", {"summary": "done"})
        else:
            marker("BLOCKED", {"reason": "the verifier did not pass it"})
    """)
    verifier = write_agent(tmp_path, "verifier", """
        marker("VERIFY", {"results": [{"id": "c1", "verdict": "pass", "evidence": "looks right"}]})
        say("CREW_VERIFY_BEGIN")
        say('{"results": [{"id": "c1", "verdict": "pass"')
        say("CREW_VERIFY_END")
    """)
    goal = sup.new_goal("judge", "--criterion", "it works", lead=lead, verifier=verifier, workspace=ws)
    view = sup.wait_for_status(goal, "blocked", timeout=60)
    assert view["reason"] == "the verifier did not pass it"
    events = sup.events(goal)
    [invalid] = [e for e in events if e["type"] == "marker_invalid" and e["payload"]["role"] == "verifier"]
    assert invalid["payload"]["reason"] == "2 VERIFY blocks in one reply"
    [verdict] = [e for e in events if e["type"] == "verify"]
    assert verdict["payload"]["results"][0]["verdict"] == "fail" and "protocol error" in verdict["payload"]["results"][0]["evidence"]
    assert not [e for e in events if e["type"] == "gate_passed"]
    assert "Traceback" not in sup.log() and "IndexError" not in sup.log()


def edit_goal(home: str, goal: str, **changes) -> None:
    """Write fields of a stopped supervisor's goal row: the state a bug could leave behind."""
    with sqlite3.connect(os.path.join(home, "crew.db")) as conn:
        (data,) = conn.execute("SELECT data FROM goal WHERE id = ?", (goal,)).fetchone()
        data = json.loads(data)
        data.update(changes)
        conn.execute("UPDATE goal SET data = ? WHERE id = ?", (json.dumps(data), goal))


def test_a_goal_whose_supervisor_keeps_crashing_is_blocked_with_crash_loop_and_the_error(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", 'marker("READY", {"summary": "done"})')
    with Supervisor(tmp_path) as sup:
        goal = sup.new_goal("crashy", "--criterion", "c", "--check", "true", lead=write_agent(tmp_path, "waiter", WAITER), workspace=ws)
        other = sup.new_goal("fine", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        sup.wait_for_event(goal, "turn_started")
        sup.wait_for_status(other, "awaiting_signoff")
    agent_file(tmp_path, "waiter", "stop").write_text("1")
    # A retry time no clock can read: every start of this goal's supervisor dies setting its timer.
    edit_goal(sup.home, goal, retry_at="not a time")
    sup.start()
    view = sup.wait_for_status(goal, "blocked", timeout=90)
    assert view["reason"].startswith("crash_loop: ") and "not a time" in view["reason"]
    [blocked] = [e for e in sup.events(goal) if e["type"] == "blocked"]
    assert blocked["payload"]["reason"] == "crash_loop" and "ValueError" in blocked["payload"]["error"]
    assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid
    sup.cli("goal", "steer", other, "carry on")  # the other goal is served as ever
    sup.wait_for_event(other, "steer_delivered")
    sup.cli("goal", "resume", goal)  # and the operator can take the blocked one up again
    sup.wait_for_event(goal, "resumed")
    sup.stop()


def test_a_bug_met_by_one_goals_reply_blocks_that_goal_with_the_error_and_the_rest_goes_on(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.exists(os.path.join(state_dir, "go")):
            time.sleep(0.05)  # poll: the agent waits for the test's go-ahead, with a deadline
        marker("READY", {"summary": "done"})
    """)
    with Supervisor(tmp_path) as sup:
        goal = sup.new_goal("buggy", "--criterion", "c", "--check", "false", lead=lead, workspace=ws)
        sup.wait_for_event(goal, "turn_started")
    # A cap the held gate's comparison cannot handle: phases.step raises on that round.
    edit_goal(sup.home, goal, attempt_cap="five")
    sup.start()
    agent_file(tmp_path, "lead", "go").write_text("1")
    view = sup.wait_for_status(goal, "blocked", timeout=60)
    assert view["reason"].startswith("internal_error: TypeError") and "RoundFinished" in view["reason"]
    assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid
    other = sup.new_goal("fine", "--criterion", "c", "--check", "true", lead=write_agent(tmp_path, "ok", 'marker("READY", {"summary": "ok"})'), workspace=ws)
    sup.wait_for_status(other, "awaiting_signoff")
    wait_until(lambda: "handling RoundFinished failed" in sup.log(), timeout=5, message="the bug in the supervisor log")
    sup.stop()
