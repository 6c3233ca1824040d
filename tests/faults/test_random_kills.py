"""SIGKILL a worker, a verifier process or the supervisor at random moments; nothing is lost.

Twenty seeded runs of one goal with a plan (two steps for two remote `crewctl worker`
processes) and two gate rounds (the first claim is premature and holds; the fix passes),
plus an operator steer at a random moment. Each run kills three things at random moments
(a worker, the round's verifier process, or the whole supervisor with its process group),
restarting what it killed. Every run must converge to awaiting_signoff, the gate must never
open without a passing VERIFY of that round, no step completes twice, and the steer reaches
the lead exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from crewctl.testing import AGENT_STATE, PASS_EVERY_CRITERION, Supervisor, lock_is_held, wait_until, write_agent
from crewctl.testing.hosts import WorkerProcess
from crewctl.testing.http import free_port

# Agents mark their busy windows with files they hold an flock on while they live (pids
# inside the sandbox are its own), so the test can kill them mid-work.
BUSY = """
import fcntl, uuid
busy = os.path.join({busy!r}, "busy-%s-%s" % ({who}, uuid.uuid4().hex))
busy_fd = os.open(busy, os.O_RDWR | os.O_CREAT)
fcntl.flock(busy_fd, fcntl.LOCK_EX)
"""

LEAD = """
time.sleep(0.2)  # the agent's turn takes a moment: a window to kill the supervisor in
if "Reports since your last turn" in prompt or "The gate held at round" in prompt or "The operator steers" in prompt:
    if "The gate held at round" in prompt or os.path.exists("fixed.txt"):
        open("fixed.txt", "w").write("fixed")
    marker("READY", {"summary": "steps done"})
elif "Start the work" in prompt:
    marker("PLAN", {"steps": [{"title": "write s1.txt"}, {"title": "write s2.txt"}]})
else:
    marker("READY", {"summary": "picking up where it stopped"})
os.remove(busy)
"""

WORKER = r"""
import re
m = re.search(r"## Your step: (\S+): write (\S+)", prompt)
time.sleep(0.4)  # long enough to be killed in the middle
open(m.group(2), "w").write("done")
say("wrote " + m.group(2))
os.remove(busy)
"""

VERIFIER = "time.sleep(0.4)\n" + PASS_EVERY_CRITERION  # a verifier that takes a moment to judge

CHECK = "test -f s1.txt -a -f s2.txt -a -f fixed.txt"


def verifier_hosts(daemon_pid: int) -> list[int]:
    """The verifier processes the supervisor started (children running verifier_host)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if b"crewctl.actors.verifier_host" in cmdline and int(stat[1]) == daemon_pid and stat[0] != b"Z":
            found.append(int(entry))
    return found


def events_of(sup: Supervisor, goal: str) -> list[dict]:
    return sup.cli("goal", "events", goal, "--json").json()


def check_invariants(events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "the timeline has a gap or a duplicate"
    types = [e["type"] for e in events]
    assert types.count("goal_created") == 1 and types.count("lock") == 1
    current_round = None
    verdict_of_round: dict[int, dict] = {}
    for e in events:
        p = e["payload"]
        if e["type"] == "round_started":
            current_round = p["round"]
        elif e["type"] == "verify":
            assert p["round"] == current_round, "a verdict for a round that is not the current one"
            assert p["round"] not in verdict_of_round, "a round got two verdicts"
            verdict_of_round[p["round"]] = p
        elif e["type"] == "gate_passed":
            verdict = verdict_of_round.get(p["round"])
            assert verdict is not None and p["round"] == current_round, "the gate opened without a verdict"
            assert not verdict["stale"] and all(r["verdict"] == "pass" for r in verdict["results"])
            assert any(r["source"] == "verifier" and r["verdict"] == "pass" for r in verdict["results"])
    finished = [e["payload"]["step"] for e in events if e["type"] == "step_finished"]
    assert len(finished) == len(set(finished)), f"a step completed twice: {finished}"


@pytest.mark.parametrize("seed", range(20))
def test_random_kills_of_workers_verifiers_and_the_supervisor_lose_nothing(tmp_path, seed, request):
    rng = random.Random(seed)
    db = request.getfixturevalue("postgres_server").url(f"kills_{seed}") if seed % 2 else None  # odd seeds: PostgreSQL
    ws = tmp_path / "ws"
    ws.mkdir()
    marks = tmp_path / AGENT_STATE / "busy"  # where the sandboxed agents may write
    marks.mkdir(parents=True)
    lead = write_agent(tmp_path, "lead", BUSY.format(busy=str(marks), who='"lead"') + LEAD)
    worker = write_agent(tmp_path, "worker", BUSY.format(busy=str(marks), who='env["TEST_WORKER"]') + WORKER)
    verifier = write_agent(tmp_path, "verifier", VERIFIER)
    # A fixed endpoint, as a real deployment has: workers reconnect to a restarted supervisor.
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sup = Supervisor(tmp_path, db=db, env_allow=["TEST_WORKER"], args=["--heartbeat", "0.2", "--local-workers", "0", "--listen", endpoint])
    sup.start()
    workers = {name: _worker(sup, name, ws, endpoint) for name in ("alpha", "beta")}
    kills: list[str] = []
    try:
        goal = sup.new_goal("two steps, two rounds", "--criterion", "the files exist", "--check", CHECK,
                            "--criterion", "the work is sensible", lead=lead, worker=worker, verifier=verifier,
                            workspace=str(ws))
        steer_at = time.monotonic() + rng.uniform(0.2, 3.0)
        steered = False
        for _ in range(3):
            target = rng.choice(["worker", "verifier", "daemon"])
            busy = wait_until(lambda: _busy(sup, marks, target) or (_converged(sup, goal) and "converged"),  # noqa: B023 (called at once)
                              timeout=15, interval=0.01, message=f"a moment when the {target} works")
            if busy == "converged":
                break  # the goal converged before this kill: the run is over
            pause = time.monotonic() + rng.uniform(0.0, 0.3)
            while time.monotonic() < pause:
                time.sleep(0.01)  # poll: a random moment inside the busy window
            if not steered and time.monotonic() >= steer_at:
                steered = _steer(sup, goal)
            if target == "worker":
                name = rng.choice(busy)
                workers[name].kill()
                workers[name] = _worker(sup, name, ws, endpoint)
                kills.append(f"worker {name}")
            elif target == "verifier":
                alive = verifier_hosts(sup.pid)
                if alive:
                    os.kill(rng.choice(alive), signal.SIGKILL)
                    kills.append("verifier")
            else:
                sup.kill()
                sup.start()
                kills.append("daemon")
        if not steered:
            steered = _steer(sup, goal)
        view = wait_until(
            lambda: (v := sup.show(goal))["status"] == "awaiting_signoff" and v["in_flight"] is None
            and "steer_delivered" in [e["type"] for e in events_of(sup, goal)] and v,
            timeout=120, interval=0.2, message=f"run {seed} ({kills}) to converge",
        )
        events = events_of(sup, goal)
        if os.environ.get("CREWCTL_SHOW_KILLS"):
            effects = [e["type"] for e in events if e["type"] in ("step_retry", "turn_failed", "task_late", "actor_restarted")
                       or (e["type"] == "turn_started" and e["payload"].get("rerun"))]
            print(f"\nseed {seed}: kills {kills}; effects {effects}")
        check_invariants(events)
        assert [c["status"] for c in view["criteria"]] == ["pass", "pass"]
        assert [e["type"] for e in events].count("steer") == 1
        assert [e["type"] for e in events].count("steer_delivered") == 1
        assert all((ws / f).exists() for f in ("s1.txt", "s2.txt", "fixed.txt"))
    finally:
        for w in workers.values():
            w.kill()
        sup.kill()


def _converged(sup: Supervisor, goal: str) -> bool:
    from crewctl.store import open_store

    store = open_store(sup.db, sup.home, create=False)  # a direct read: far cheaper than a CLI call
    try:
        state, _ = store.load_goal(goal)
    finally:
        store.close()
    return state.status == "awaiting_signoff" and state.in_flight is None


def _busy(sup: Supervisor, marks, target: str):
    """Truthy when the target is working: the busy workers' names, or True."""
    running = [name.split("-")[1] for name in os.listdir(marks) if lock_is_held(os.path.join(marks, name))]
    if target == "worker":
        return sorted({n for n in running if n in ("alpha", "beta")}) or None
    if target == "verifier":
        return bool(verifier_hosts(sup.pid))
    return bool(running) or bool(verifier_hosts(sup.pid))


def _worker(sup: Supervisor, name: str, ws, endpoint: str) -> WorkerProcess:
    return WorkerProcess(sup, name, "--workdir", str(ws), env={"TEST_WORKER": name}, connect=endpoint).start()


def _steer(sup: Supervisor, goal: str) -> bool:
    """Steer once. A supervisor killed mid-request may or may not have stored it: look first."""
    result = sup.cli("goal", "steer", goal, "keep the files small", check=False)
    if result.code == 0:
        return True
    assert result.code == 4, str(result)
    if sup.proc.poll() is not None:
        sup.start()
    if "steer" in [e["type"] for e in events_of(sup, goal)]:
        return True
    return sup.cli("goal", "steer", goal, "keep the files small").code == 0
