"""What one reply can write is bounded: a reply full of stray markers is recorded as its
first few plus a count, so the timeline (and the store) stay small."""

from __future__ import annotations

import os

from crewctl.goal.phases import MAX_MARKER_RECORDS
from crewctl.testing import write_agent

STRAY = 200_000


def test_a_lead_reply_of_200000_empty_verify_blocks_writes_a_bounded_timeline(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", f"""
        if count() == 1:
            sys.stdout.write("CREW_VERIFY_BEGIN\\nCREW_VERIFY_END\\n" * {STRAY})
        else:
            marker("READY", {{"summary": "done"}})
    """)
    goal = sup.new_goal("flood", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff", timeout=120)
    events = sup.events(goal)
    ignored = [e for e in events if e["type"] == "marker_ignored"]
    assert len(ignored) == MAX_MARKER_RECORDS
    [capped] = [e for e in events if e["type"] == "markers_capped"]
    assert capped["payload"] == {"role": "lead", "recorded": MAX_MARKER_RECORDS, "ignored": STRAY - MAX_MARKER_RECORDS, "invalid": 0}
    assert len(events) < MAX_MARKER_RECORDS + 30
    assert os.path.getsize(os.path.join(sup.home, "crew.db")) < 16 * 1024 * 1024  # the reply itself is kept once, in its turn row
    text = sup.cli("goal", "events", goal).stdout
    assert "markers_capped" in text and f"{STRAY - MAX_MARKER_RECORDS} more ignored" in text


def test_a_verifier_reply_of_200000_verify_blocks_is_one_protocol_error(sup, tmp_path, ws):
    lead = write_agent(tmp_path, "lead", """
        if count() == 1:
            marker("READY", {"summary": "done"})
        else:
            marker("BLOCKED", {"reason": "held"})
    """)
    verifier = write_agent(tmp_path, "verifier", f"""
        sys.stdout.write("CREW_VERIFY_BEGIN\\nCREW_VERIFY_END\\n" * {STRAY})
    """)
    goal = sup.new_goal("flood", "--criterion", "judged", lead=lead, verifier=verifier, workspace=ws)
    sup.wait_for_status(goal, "blocked", timeout=120)
    events = sup.events(goal)
    invalid = [e for e in events if e["type"] == "marker_invalid"]
    assert [e["payload"]["reason"] for e in invalid] == [f"{STRAY} VERIFY blocks in one reply"]
    assert len(events) < 40
