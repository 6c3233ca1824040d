"""`crewctl watch`: the dashboard's screens and keys through Textual's own test driver
(App.run_test, pilot key presses) on a real supervisor and store, and once in a real
terminal under tmux."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from crewctl.cli.tui import Ask, Confirm, GoalList, GoalView, Thread, WatchApp
from crewctl.store import open_store
from crewctl.testing import PASS_EVERY_CRITERION, crewctl_binary, wait_until, write_agent


def play(sup, scenario, size=(80, 24), goal: str | None = None):
    """Run `scenario(app, pilot)` in the dashboard on the supervisor's store, at `size`."""
    store = open_store(None, sup.home, create=False)
    app = WatchApp(store, sup.home, goal)

    async def main():
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    try:
        asyncio.run(main())
    finally:
        store.close()
    return app


async def until(pilot, condition, timeout: float = 30.0, message: str = ""):
    """Let the app run until `condition()` holds (a deadline, never a fixed wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message or condition}")
        await pilot.pause(0.05)


def cells(table) -> list[list[str]]:
    return [[str(c) for c in table.get_row(key)] for key in table.rows]


def text_of(widget) -> str:
    return str(widget.render())


@pytest.fixture
def passed_goal(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            say("LEAD-THREAD-PLANTED")
            marker("READY", {"summary": "done"})
        elif n == 2:
            say("noted")  # a steer's turn: the gate stays passed
        else:
            marker("BLOCKED", {"reason": "stopping here"})
    """)
    goal = sup.new_goal("make the parser strict", "--criterion", "the suite passes", "--check", "true",
                        "--criterion", "the README says so", lead=lead, verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION),
                        workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    return goal


def test_the_list_shows_each_goal_and_enter_opens_it_with_criteria_and_evidence(sup, passed_goal):
    async def scenario(app, pilot):
        screen = app.screen
        assert isinstance(screen, GoalList)
        rows = cells(screen.query_one("#goals"))
        assert rows[0][0] == passed_goal and rows[0][1] == "awaiting_signoff" and "sign-off" in rows[0][2]
        assert "1 needs you" in text_of(screen.query_one("#title"))
        await pilot.press("enter")
        view = await until(pilot, lambda: isinstance(app.screen, GoalView) and app.screen.view and app.screen, message="the goal view")
        assert [r[:2] for r in cells(view.query_one("#criteria"))] == [["c1", "pass"], ["c2", "pass"]]
        assert "exited 0" in text_of(view.query_one("#evidence"))  # c1's evidence, highlighted
        await pilot.press("down")
        await until(pilot, lambda: "checked" in text_of(view.query_one("#evidence")), message="c2's evidence")
        summary = text_of(view.query_one("#summary"))
        assert passed_goal in summary and "needs you: your sign-off" in summary
        await until(pilot, lambda: any("gate_passed" in str(line.text) for line in view.query_one("#feed").lines), message="the feed")
        await pilot.press("escape")
        assert isinstance(app.screen, GoalList)

    play(sup, scenario)


def test_the_thread_shows_the_agents_recent_replies_and_escape_goes_back_to_the_goal(sup, passed_goal):
    async def scenario(app, pilot):
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, GoalView) and app.screen.view)
        await pilot.press("t")
        thread = await until(pilot, lambda: isinstance(app.screen, Thread) and app.screen.signature and app.screen, message="the thread")
        assert thread.role == "lead" and "LEAD-THREAD-PLANTED" in text_of(thread.query_one("#turns"))
        await pilot.press("v")
        await until(pilot, lambda: "CREW_VERIFY_BEGIN" in text_of(thread.query_one("#turns")), message="the verifier's thread")
        await pilot.press("escape")
        assert isinstance(app.screen, GoalView) and app.screen.goal_id == passed_goal

    play(sup, scenario)


def test_sign_off_from_the_dashboard_happens_only_after_a_yes(sup, passed_goal):
    async def scenario(app, pilot):
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, GoalView) and app.screen.view)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        assert "Sign off goal" in text_of(app.screen.query_one("#question"))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, GoalView))
        assert sup.show(passed_goal)["status"] == "awaiting_signoff"
        await pilot.press("o", "y")
        await until(pilot, lambda: sup.show(passed_goal)["status"] == "done", message="the sign-off")
        await until(pilot, lambda: app.screen.view["status"] == "done", message="the screen to show it")

    play(sup, scenario)


def test_steer_and_send_back_from_the_dashboard_take_text_and_a_confirmation(sup, passed_goal):
    async def scenario(app, pilot):
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, GoalView) and app.screen.view)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, Ask))
        await pilot.press(*"use zoneinfo", "enter")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        assert "use zoneinfo" in text_of(app.screen.query_one("#question"))
        await pilot.press("y")
        steer = await until(pilot, lambda: next((e for e in sup.events(passed_goal) if e["type"] == "steer"), None), message="the steer")
        assert steer["payload"]["text"] == "use zoneinfo"
        await until(pilot, lambda: sup.show(passed_goal)["in_flight"] is None, message="the steer's turn")
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, Ask))
        await pilot.press("escape")  # dropped: nothing is sent
        await until(pilot, lambda: isinstance(app.screen, GoalView))
        await pilot.press("b", *"redo it", "enter", "y")
        back = await until(pilot, lambda: next((e for e in sup.events(passed_goal) if e["type"] == "send_back"), None), message="the send-back")
        assert back["payload"]["notes"] == "redo it"

    play(sup, scenario)


def test_pause_and_resume_from_the_dashboard(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        time.sleep(600)  # a long turn, stopped by the pause
    """)
    goal = sup.new_goal("x", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    wait_until(lambda: sup.show(goal)["in_flight"] is not None)

    async def scenario(app, pilot):
        view = await until(pilot, lambda: isinstance(app.screen, GoalView) and app.screen.view and app.screen)
        assert "now: lead turn 1 (work)" in text_of(view.query_one("#summary"))
        await pilot.press("p", "y")
        await until(pilot, lambda: sup.show(goal)["status"] == "paused", message="the pause")
        await pilot.press("r", "y")
        await until(pilot, lambda: sup.show(goal)["status"] == "running", message="the resume")

    play(sup, scenario, goal=goal)  # opened on the goal, as `crewctl watch ID` does


def test_the_list_follows_the_store_without_a_key_press(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", 'marker("BLOCKED", {"reason": "needs a key"})')

    async def scenario(app, pilot):
        table = app.screen.query_one("#goals")
        assert table.row_count == 0
        goal = sup.new_goal("appears later", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
        await until(pilot, lambda: any(r[0] == goal and r[1] == "blocked" for r in cells(table)), message="the new goal, blocked")
        loads = app.loads
        assert loads < 50  # it read the store when something changed, not in a loop

    play(sup, scenario)


def test_the_list_fits_80_columns_and_the_needs_you_filter_hides_working_goals(sup, ws, tmp_path, passed_goal):
    lead = write_agent(tmp_path, "slow", "time.sleep(600)  # keeps this goal working")
    busy = sup.new_goal("keeps working", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
    wait_until(lambda: sup.show(busy)["in_flight"] is not None)

    async def scenario(app, pilot):
        table = app.screen.query_one("#goals")
        await until(pilot, lambda: table.row_count == 2)
        assert sum(col.get_render_width(table) for col in table.columns.values()) <= 80
        assert cells(table)[0][0] == passed_goal  # what needs you comes first
        await pilot.press("a")
        await until(pilot, lambda: [r[0] for r in cells(table)] == [passed_goal], message="only the goal that needs you")

    play(sup, scenario)


# -- a real terminal ---------------------------------------------------------------------------


_SOCKET = f"crewctl-test-{os.getpid()}"  # a tmux server of our own, shared with no other test run


def _tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", _SOCKET, *args], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_watch_in_a_real_terminal_shows_the_goal_and_quits_on_q(sup, passed_goal):
    session = f"crewctl-watch-{uuid.uuid4().hex[:8]}"
    command = f"env CREWCTL_HOME={shlex.quote(sup.home)} NO_COLOR=1 TERM=xterm-256color {shlex.quote(crewctl_binary())} watch"
    assert _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command).returncode == 0
    try:
        def screen() -> str:
            return _tmux("capture-pane", "-p", "-t", session).stdout

        shown = wait_until(lambda: passed_goal in screen() and "awaiting_signoff" in screen() and screen(), timeout=30,
                           message="the goal's id and status on screen")
        assert "1 needs you" in shown
        colours = _tmux("capture-pane", "-p", "-e", "-t", session).stdout
        for r, g, b in re.findall(r"38;2;(\d+);(\d+);(\d+)", colours):
            assert r == g == b, "NO_COLOR: only shades of grey"
        _tmux("send-keys", "-t", session, "q")
        wait_until(lambda: _tmux("has-session", "-t", session).returncode != 0, timeout=30, message="watch to quit on q")
    finally:
        _tmux("kill-session", "-t", session)
        _tmux("kill-server")


def test_a_watch_opened_before_the_first_supervisor_shows_goals_once_there_are_some(tmp_path):
    """`crewctl watch` on a fresh machine: no database yet; the first goal still shows up."""
    from crewctl.testing import Supervisor

    home = str(tmp_path / "home")
    store = open_store(None, home, create=False)
    app = WatchApp(store, home, reopen=lambda: open_store(None, home, create=False))

    async def main():
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.screen.query_one("#goals").row_count == 0
            with Supervisor(tmp_path, home=home) as sup:
                lead = write_agent(tmp_path, "lead", 'marker("BLOCKED", {"reason": "first goal"})')
                ws = tmp_path / "ws"
                ws.mkdir()
                goal = sup.new_goal("the first goal", "--criterion", "ok", "--check", "true", lead=lead, workspace=str(ws))
                await until(pilot, lambda: any(r[0] == goal for r in cells(app.screen.query_one("#goals"))), message="the first goal")

    try:
        asyncio.run(main())
    finally:
        app.store.close()
