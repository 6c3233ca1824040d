"""A supervisor killed while it starts leaves nothing that stops the next start, and a worker
the supervisor refuses stops with the reason instead of knocking forever."""

from __future__ import annotations

import os

import pytest

from crewctl.testing import Supervisor, run_cli, wait_until, write_agent
from crewctl.testing.agents import agent_file
from crewctl.testing.hosts import WorkerProcess


WAITS_FOR_GO = """
deadline = time.time() + 120
while time.time() < deadline and not os.path.exists(os.path.join(state_dir, "go")):
    time.sleep(0.05)  # poll: the agent waits for the test's go-ahead, with a deadline
marker("READY", {"summary": "done"})
"""


def kill_when(sup: Supervisor, condition, what: str) -> None:
    sup.start(wait=False)
    wait_until(lambda: condition() or sup.proc.poll() is not None, timeout=30, interval=0.005, message=what)
    sup.kill()


def test_a_supervisor_killed_while_it_creates_a_fresh_store_starts_cleanly_next_time(tmp_path, ws):
    sup = Supervisor(tmp_path, start=False)
    kill_when(sup, lambda: os.path.exists(os.path.join(sup.home, "crew.db")), "the store to be created")
    with sup:
        sup.start()
        assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid
        goal = sup.new_goal("after", "--criterion", "c", "--check", "true", lead=write_agent(tmp_path, "lead", 'marker("READY", {"summary": "ok"})'), workspace=ws)
        sup.wait_for_status(goal, "awaiting_signoff")


@pytest.mark.parametrize("point", ["store opened", "endpoint written", "goals resumed"])
def test_a_supervisor_killed_mid_startup_recovers_its_goals_on_the_next_start(tmp_path, ws, point):
    lead = write_agent(tmp_path, "lead", WAITS_FOR_GO)
    with Supervisor(tmp_path) as sup:
        goal = sup.new_goal("survive", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        sup.wait_for_event(goal, "turn_started")
    seen = len(sup.log())

    def logged(text: str):
        return lambda: text in sup.log()[seen:]

    marks = {
        "store opened": logged("crewctl.daemon INFO config"),  # logged once the store has been read
        "endpoint written": lambda: os.path.exists(os.path.join(sup.home, "daemon.json")),
        "goals resumed": logged("live goal(s) resumed"),
    }
    kill_when(sup, marks[point], point)
    agent_file(tmp_path, "lead", "go").write_text("1")
    with sup:
        assert sup.cli("status", "--json").json()["daemon"]["pid"] == sup.pid
        view = sup.wait_for_status(goal, "awaiting_signoff", timeout=60)
        assert view["criteria"][0]["status"] == "pass"
        seqs = [e["seq"] for e in sup.events(goal)]
        assert seqs == list(range(1, len(seqs) + 1))


def test_a_worker_whose_key_the_supervisor_refuses_exits_with_the_reason(tmp_path):
    home = str(tmp_path / "home")
    assert run_cli(home, "keys", "init").code == 0
    out = str(tmp_path / "keys")
    assert run_cli(home, "keys", "new", "rogue", "--out", out).code == 0
    with Supervisor(tmp_path, home=home, args=["--heartbeat", "0.2", "--curve"]) as sup:
        with WorkerProcess(sup, "rogue", "--key", f"{out}/rogue.key_secret") as rogue:
            assert rogue.wait_exit(timeout=30) == 1
            log = rogue.log()
        assert "refused this host's CURVE key" in log and "crewctl keys allow" in log
        assert log.strip().splitlines()[-1].startswith("crewctl: the supervisor refused this worker: ")
        assert "send queue full" not in log and "Traceback" not in log
        assert [h["name"] for h in sup.cli("status", "--json").json()["hosts"]] == ["local-1"]
