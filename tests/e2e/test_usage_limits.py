"""When the provider says when the account's usage limit resets, the goal waits for it and
goes on by itself then; `goal resume` goes on at once. Through the real `claude` preset,
with a stand-in `claude` executable that answers as Claude Code does."""

from __future__ import annotations

import json
import os
import stat
import sys

from crewctl.testing import Supervisor
from crewctl.testing.agents import agent_state_dir

# Claude Code's JSON result; at its usage limit: is_error, "Claude AI usage limit reached|EPOCH", exit 1.
FAKE_CLAUDE = """\
#!{python}
import json, os, sys, time
sys.stdin.read()
state = {state!r}
n = len(os.listdir(state)) + 1
open(os.path.join(state, str(n)), "w").close()
if n == 1:
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": True,
                      "result": "Claude AI usage limit reached|%d" % int(time.time() + {reset_in})}}))
    sys.exit(1)
ready = "CREW_READY_BEGIN\\n" + json.dumps({{"summary": "done"}}) + "\\nCREW_READY_END"
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": ready, "session_id": "s-1",
                  "usage": {{"input_tokens": 10, "output_tokens": 5}}}}))
"""


def fake_claude(tmp_path, reset_in: float) -> str:
    """The config that makes the `claude` preset run the stand-in; it counts its runs in
    its state folder (the one place a sandboxed agent may write)."""
    state = agent_state_dir(tmp_path, "claude")
    os.makedirs(state, exist_ok=True)
    script = tmp_path / "claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable, state=state, reset_in=reset_in))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"[presets.claude]\ncommand = [{json.dumps(str(script))}]\n"


def test_a_usage_limit_with_a_reset_time_waits_and_goes_on_by_itself_then(tmp_path, ws):
    with Supervisor(tmp_path, config=fake_claude(tmp_path, reset_in=2)) as sup:
        goal = sup.new_goal("limited", "--criterion", "c", "--check", "true", lead="claude", workspace=ws)
        waiting = sup.wait_for_status(goal, "blocked", timeout=30)
        assert waiting["reason"].startswith("usage_limited:") and waiting["resume_at"]
        [blocked] = [e for e in sup.events(goal) if e["type"] == "blocked"]
        assert blocked["payload"]["reason"] == "usage_limited" and blocked["payload"]["resume_at"] == waiting["resume_at"]
        view = sup.wait_for_status(goal, "awaiting_signoff", timeout=60)
        assert view["resume_at"] is None
        [resumed] = [e for e in sup.events(goal) if e["type"] == "resumed"]
        assert resumed["payload"]["automatic"] is True and resumed["payload"]["reason"] == "usage_limited"
        assert len(os.listdir(agent_state_dir(tmp_path, "claude"))) == 2


def test_goal_resume_goes_on_at_once_while_a_usage_limit_is_waited_for(tmp_path, ws):
    with Supervisor(tmp_path, config=fake_claude(tmp_path, reset_in=3600)) as sup:
        goal = sup.new_goal("limited", "--criterion", "c", "--check", "true", lead="claude", workspace=ws)
        waiting = sup.wait_for_status(goal, "blocked", timeout=30)
        assert waiting["resume_at"] and waiting["reason"].startswith("usage_limited:")
        shown = sup.cli("goal", "show", goal).stdout
        assert f"resumes:   by itself at {waiting['resume_at']}" in shown and f"crewctl goal resume {goal}" in shown
        sup.cli("goal", "resume", goal)
        view = sup.wait_for_status(goal, "awaiting_signoff", timeout=30)
        assert view["resume_at"] is None
        assert [e["payload"].get("automatic") for e in sup.events(goal) if e["type"] == "resumed"] == [None]
