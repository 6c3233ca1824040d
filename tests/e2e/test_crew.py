"""A crew across processes: `crewctl run`, `crewctl worker` processes, real sockets on loopback.

Agents are `exec:` brains written by each test. Heartbeats are 0.2 s, so a host that dies is
noticed in 0.6 s; a step's first retry waits 2 s (the goal core's backoff). The agents
endpoint is CURVE on loopback too: every WorkerProcess attaches with a key of its own,
allowed in the supervisor's home (crewctl.testing.hosts.worker_key).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from crewctl.testing import AGENT_STATE, Supervisor, run_cli, wait_until, write_agent
from crewctl.testing.hosts import RawPeer, WorkerProcess, peer_keys, status, wait_for_host, wait_host_gone
from crewctl.transport import keys
from crewctl.transport.codec import message

FAST = ["--heartbeat", "0.2"]

WORKER = r"""
import re
m = re.search(r"## Your step: (\S+): (.*)", prompt)
step, title = m.group(1), m.group(2).strip()
if title.startswith("hang") and not os.path.exists(os.path.join(state_dir, "hang-started")):
    # The first run of a hanging step blocks until the test kills its host (and then it).
    with open(os.path.join(state_dir, "hang.tmp"), "w") as f:
        json.dump({"worker": env.get("TEST_WORKER"), "pid": os.getpid()}, f)
    os.replace(os.path.join(state_dir, "hang.tmp"), os.path.join(state_dir, "hang-started"))
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)  # poll: the agent hangs until its host is killed, with a deadline
    sys.exit(1)
if title.startswith("stall") and not os.path.exists(os.path.join(state_dir, "stall-started")):
    # The first run waits for the test's go-ahead (its host is frozen meanwhile), then reports.
    with open(os.path.join(state_dir, "stall.tmp"), "w") as f:
        json.dump({"worker": env.get("TEST_WORKER"), "pid": os.getpid()}, f)
    os.replace(os.path.join(state_dir, "stall.tmp"), os.path.join(state_dir, "stall-started"))
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(state_dir, "release")) and time.time() < deadline:
        time.sleep(0.02)  # poll: the agent waits for the test's go-ahead, with a deadline
if title.startswith("fail"):
    sys.stderr.write("this step always fails\n")
    sys.exit(3)
with open(step + ".txt", "w") as f:
    f.write(title)
say(f"{step} done: wrote {step}.txt on {env.get('TEST_WORKER', 'a local host')}")
say("CREW_READY_BEGIN")
say('{"summary": "a worker may not declare anything"}')
say("CREW_READY_END")
"""


def lead_that_plans(steps: list[dict], *, then: str = "ready") -> str:
    """A lead whose first turn PLANs `steps`; later turns say READY (or PLAN again)."""
    later = 'marker("READY", {"summary": "every step reported"})' if then == "ready" else f'marker("PLAN", {{"steps": {steps!r}}})'
    return f"""
n = count()
if n == 1:
    marker("PLAN", {{"steps": {steps!r}}})
else:
    {later}
"""


def files_check(*names: str) -> str:
    return " && ".join(f"test -f {n}" for n in names)


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    return str(path)


def of(events: list[dict], type_: str, **payload) -> list[dict]:
    return [e for e in events if e["type"] == type_ and all(e["payload"].get(k) == v for k, v in payload.items())]


def test_two_workers_serve_a_four_step_plan_and_a_killed_workers_task_is_finished_by_the_other(tmp_path, ws):
    steps = [{"title": "write a"}, {"title": "hang then write b"}, {"title": "write c"}, {"title": "write d"}]
    lead = write_agent(tmp_path, "lead", lead_that_plans(steps))
    worker = write_agent(tmp_path, "worker", WORKER)
    state = tmp_path / AGENT_STATE / "worker.state"
    with Supervisor(tmp_path, env_allow=["TEST_WORKER"], args=[*FAST, "--local-workers", "0"]) as sup:
        alpha = WorkerProcess(sup, "alpha", "--workdir", ws, env={"TEST_WORKER": "alpha"}).start()
        beta = WorkerProcess(sup, "beta", "--workdir", ws, env={"TEST_WORKER": "beta"}).start()
        workers = {"alpha": alpha, "beta": beta}
        try:
            wait_for_host(sup, "alpha")
            wait_for_host(sup, "beta")
            goal = sup.new_goal("four files", "--criterion", "all written", "--check", files_check("s1.txt", "s2.txt", "s3.txt", "s4.txt"),
                                lead=lead, worker=worker, workspace=ws)

            hang = wait_until(lambda: (state / "hang-started").exists() and json.loads((state / "hang-started").read_text()), timeout=20,
                              message="the hanging step to start")
            victim, survivor = hang["worker"], ({"alpha", "beta"} - {hang["worker"]}).pop()
            held = wait_until(lambda: next((s for s in sup.show(goal)["steps"] if s["id"] == "s2" and s["holder"]), None), timeout=10,
                              message="the holder of s2 in `goal show`")
            assert (held["status"], held["holder"]) == ("in_progress", victim)  # `goal show` names the holder
            workers[victim].kill()  # SIGKILL mid-task, as a crashed machine
            os.kill(hang["pid"], signal.SIGKILL)  # ... whose brain process dies with it

            view = sup.wait_for_status(goal, "awaiting_signoff", timeout=30)
            assert [s["status"] for s in view["steps"]] == ["completed"] * 4
            assert next(s for s in view["steps"] if s["id"] == "s2")["holder"] == survivor
            events = sup.events(goal)
            finished = of(events, "step_finished", step="s2")
            assert len(finished) == 1 and finished[0]["payload"]["host"] == survivor
            assert finished[0]["payload"]["changed_files"] == ["s2.txt"]
            retry = of(events, "step_retry", step="s2")
            assert len(retry) == 1 and retry[0]["payload"]["lost"] is True and retry[0]["payload"]["host"] == victim
            assert view["steps"][1]["attempts"] == 1
            for sid in ("s1", "s3", "s4"):
                assert len(of(events, "step_finished", step=sid)) == 1
            assert len(of(events, "marker_ignored", role="worker")) == 4  # workers move nothing
            assert not of(events, "task_late")
            assert [h["name"] for h in status(sup)["hosts"]] == [survivor]

            restarted = workers[victim] = WorkerProcess(sup, victim, "--workdir", ws, env={"TEST_WORKER": victim}).start()
            host = wait_for_host(sup, victim)
            assert host["pid"] == restarted.pid and host["in_flight"] == 0
        finally:
            for w in workers.values():
                w.stop()


def test_a_frozen_workers_late_result_is_recorded_as_late_and_never_completes_the_step_twice(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", lead_that_plans([{"title": "stall then write"}]))
    worker = write_agent(tmp_path, "worker", WORKER)
    state = tmp_path / AGENT_STATE / "worker.state"
    with Supervisor(tmp_path, env_allow=["TEST_WORKER"], args=[*FAST, "--local-workers", "0"]) as sup:
        workers = {name: WorkerProcess(sup, name, "--workdir", ws, env={"TEST_WORKER": name}).start() for name in ("alpha", "beta")}
        try:
            for name in workers:
                wait_for_host(sup, name)
            goal = sup.new_goal("one file", "--criterion", "written", "--check", "test -f s1.txt", lead=lead, worker=worker, workspace=ws)
            stalled = wait_until(lambda: (state / "stall-started").exists() and json.loads((state / "stall-started").read_text()),
                                 timeout=20, message="the stalling step to start")
            frozen = workers[stalled["worker"]]
            other = ({"alpha", "beta"} - {stalled["worker"]}).pop()
            os.kill(frozen.pid, signal.SIGSTOP)  # alive but silent: a hung machine
            try:
                sup.wait_for_event(goal, "step_finished", timeout=20)
            finally:
                (state / "release").write_text("go")
                os.kill(frozen.pid, signal.SIGCONT)
            late = sup.wait_for_event(goal, "task_late", timeout=20)
            assert late["payload"] == {"step": "s1", "task": f"{goal}/s1/1", "host": stalled["worker"]}
            sup.wait_for_status(goal, "awaiting_signoff")
            events = sup.events(goal)
            finished = of(events, "step_finished")
            assert [(e["payload"]["task"], e["payload"]["host"]) for e in finished] == [(f"{goal}/s1/2", other)]
            assert wait_for_host(sup, stalled["worker"])["name"] == stalled["worker"]  # it thawed and came back
        finally:
            for w in workers.values():
                w.stop()


def test_a_worker_restarted_with_the_same_name_before_it_is_missed_takes_over_its_name(tmp_path):
    with Supervisor(tmp_path, env_allow=["TEST_WORKER"], args=["--heartbeat", "5", "--local-workers", "0"]) as sup:
        with WorkerProcess(sup, "box", heartbeat=5) as first:
            wait_for_host(sup, "box", pid=first.pid)
            first.kill()
            with WorkerProcess(sup, "box", heartbeat=5) as second:
                host = wait_for_host(sup, "box", pid=second.pid)  # at once: no 15 s of silence first
                assert [h["name"] for h in status(sup)["hosts"]] == ["box"]
                assert host["instance"]


def test_a_step_needing_approval_waits_then_runs_after_approve(tmp_path, ws):
    steps = [{"title": "write a"}, {"title": "write b after sign-off", "needs_approval": True}]
    lead = write_agent(tmp_path, "lead", lead_that_plans(steps))
    worker = write_agent(tmp_path, "worker", WORKER)
    with Supervisor(tmp_path, env_allow=["TEST_WORKER"], args=FAST) as sup:
        goal = sup.new_goal("guarded", "--criterion", "both", "--check", files_check("s1.txt", "s2.txt"), lead=lead, worker=worker, workspace=ws)
        sup.wait_for_event(goal, "step_finished", where=lambda e: e["payload"]["step"] == "s1")
        view = sup.show(goal)
        assert view["status"] == "awaiting_approval"
        assert [(s["id"], s["status"]) for s in view["steps"]] == [("s1", "completed"), ("s2", "pending")]
        events = sup.events(goal)
        assert of(events, "approval_needed", step="s2")
        assert not of(events, "step_queued", step="s2")
        assert not os.path.exists(os.path.join(ws, "s2.txt"))

        sup.cli("goal", "approve", goal, "s2")
        view = sup.wait_for_status(goal, "awaiting_signoff")
        assert [s["status"] for s in view["steps"]] == ["completed", "completed"]
        types = sup.event_types(goal)
        assert types.index("approved") < max(i for i, t in enumerate(types) if t == "step_started")
        assert view["steps"][1]["holder"] == "local-1"


def test_a_failing_step_is_retried_then_replanned_then_the_goal_blocks_on_the_replan_budget(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", lead_that_plans([{"title": "fail every time"}], then="plan"))
    worker = write_agent(tmp_path, "worker", WORKER)
    with Supervisor(tmp_path, env_allow=["TEST_WORKER"], args=FAST) as sup:
        goal = sup.new_goal("doomed", "--criterion", "never", "--check", "false", "--step-attempts", "2",
                            "--replan-budget", "1", lead=lead, worker=worker, workspace=ws)
        view = sup.wait_for_status(goal, "blocked", timeout=45)
        assert view["reason"].startswith("replan_budget")
        events = sup.events(goal)
        plans = [e for e in events if e["type"] == "plan"]
        assert len(plans) == 2  # the first plan and one replan (--replan-budget 1)
        assert len([e for e in events if e["type"] == "step_retry"]) == 2  # 2 attempts per step
        failed = [e for e in events if e["type"] == "step_failed"]
        assert len(failed) == 2 and all(e["payload"]["attempts"] == 2 for e in failed)
        assert "exited 3" in failed[0]["payload"]["error"]
        assert [e["payload"]["kind"] for e in events if e["type"] == "turn_started"] == ["work", "replan"]
        assert events[-1]["type"] == "blocked" and events[-1]["payload"]["reason"] == "replan_budget"


def test_with_curve_an_unknown_key_gets_no_task_and_its_forged_result_is_not_recorded(tmp_path, ws):
    home = str(tmp_path / "home")
    assert run_cli(home, "keys", "init").code == 0
    out = str(tmp_path / "keys")
    for name in ("rogue", "legit"):
        assert run_cli(home, "keys", "new", name, "--out", out).code == 0
    steps = [{"title": "write a here"}, {"title": "write b remotely", "lane": "remote"}]
    lead = write_agent(tmp_path, "lead", lead_that_plans(steps))
    worker = write_agent(tmp_path, "worker", WORKER)
    with Supervisor(tmp_path, home=home, env_allow=["TEST_WORKER"], args=FAST) as sup:  # CURVE on loopback, with no flag
        with WorkerProcess(sup, "rogue", "--lanes", "remote", "--workdir", ws, "--key", f"{out}/rogue.key_secret") as rogue:
            goal = sup.new_goal("curve", "--criterion", "both", "--check", files_check("s1.txt", "s2.txt"), lead=lead, worker=worker, workspace=ws)
            # The in-process host needs no key: it is on inproc://, inside the supervisor.
            sup.wait_for_event(goal, "step_finished", where=lambda e: e["payload"]["step"] == "s1" and e["payload"]["host"] == "local-1")
            wait_until(lambda: "refused this host's CURVE key" in rogue.log(), timeout=10, message="the rogue to be refused")
            assert [h["name"] for h in status(sup)["hosts"]] == ["local-1"]
            events = sup.events(goal)
            queued = of(events, "step_queued", step="s2")[0]["payload"]["task"]
            assert not of(events, "step_started", step="s2")

            forged = message("result", task=queued, ok=True, text="forged", usage={}, seconds=1.0, changed_files=["evil"], error=None, kind=None)
            client = keys.load_secret(f"{out}/rogue.key_secret")
            with RawPeer(sup.info()["listen"], client_keys=client, server_key=keys.server_keys(home)[0]) as forger:
                forger.offer_msg(message("hello", name="forger", lanes=["remote"], concurrency=1, instance="x", pid=1))
                forger.offer_msg(forged)
                assert forger.recv(timeout=0.5) is None
            with RawPeer(sup.info()["listen"]) as plain:  # no CURVE at all: refused too
                plain.offer_msg(message("hello", name="plain", lanes=["remote"], concurrency=1, instance="y", pid=1))
                plain.offer_msg(forged)
                assert plain.recv(timeout=0.5) is None

            # Allowing a key takes effect in the running supervisor, with no restart.
            sup.cli("keys", "allow", f"{out}/legit.key")
            with WorkerProcess(sup, "legit", "--lanes", "remote", "--workdir", ws, "--key", f"{out}/legit.key_secret"):
                view = sup.wait_for_status(goal, "awaiting_signoff", timeout=20)
            events = sup.events(goal)
            assert [e["payload"]["host"] for e in of(events, "step_finished", step="s2")] == ["legit"]
            assert "evil" not in json.dumps(events) and "forged" not in json.dumps(events)
            assert view["steps"][1]["holder"] == "legit"
            after = status(sup)
            assert after["dropped_frames"]["agents"] == 0  # nothing of theirs even reached the broker
            assert "rogue" not in [h["name"] for h in after["hosts"]]


@pytest.mark.parametrize("args", [["--listen", "tcp://0.0.0.0:0"], ["--curve"], []], ids=["beyond-loopback", "curve-flag", "default"])
def test_run_makes_the_supervisors_key_pair_on_first_start_and_says_where(tmp_path, args):
    with Supervisor(tmp_path, args=args) as sup:
        keys_dir = os.path.join(sup.home, "keys")
        assert keys.has_server_keys(sup.home)
        assert mode(keys_dir) == 0o700 and mode(os.path.join(keys_dir, "allowed")) == 0o700
        assert mode(os.path.join(keys_dir, "server.key_secret")) == 0o600
        assert f"made this supervisor's CURVE keys; a worker on another machine needs {keys_dir}/server.key" in sup.log()
        public = keys.server_keys(sup.home)[0]
    with Supervisor(tmp_path, home=sup.home, args=args) as again:  # the next start keeps them
        assert keys.server_keys(again.home)[0] == public
        assert again.log().count("made this supervisor's CURVE keys") == 1


def mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_worker_pointed_beyond_loopback_without_a_key_is_a_usage_error(tmp_path):
    done = run_cli(str(tmp_path / "home"), "worker", "--connect", "tcp://192.0.2.1:7700", timeout=30)
    assert done.code == 2 and "crewctl keys new" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_without_a_key_on_the_supervisors_own_machine_is_a_usage_error_too(tmp_path):
    with Supervisor(tmp_path, args=FAST) as sup:
        done = sup.cli("worker", "--name", "box", check=False)
        assert done.code == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "crewctl keys new NAME" in lines[0] and "--allow" in lines[0]


# -- names and keys: no host passes for another ------------------------------------------------


@pytest.mark.parametrize("key", [None, "impostor"], ids=["no-key", "allowed-key"])
def test_a_peer_saying_hello_as_local_1_gets_no_task_and_the_in_process_worker_finishes_the_goal(tmp_path, ws, key):
    lead = write_agent(tmp_path, "lead", lead_that_plans([{"title": "write a"}, {"title": "write b"}]))
    worker = write_agent(tmp_path, "worker", WORKER)
    with Supervisor(tmp_path, args=FAST) as sup:
        local = wait_for_host(sup, "local-1")
        with RawPeer(sup.info()["listen"], **(peer_keys(sup, key) if key else {})) as impostor:
            hello = message("hello", name="local-1", lanes=[], concurrency=8, instance="impostor", pid=1)
            send = impostor.send_msg if key else impostor.offer_msg  # without a key it may have no connection
            send(hello)
            goal = sup.new_goal("two files", "--criterion", "both", "--check", files_check("s1.txt", "s2.txt"),
                                lead=lead, worker=worker, workspace=ws)
            send(hello)  # again, while the goal's steps are queued
            view = sup.wait_for_status(goal, "awaiting_signoff")
            got = impostor.recv_all(timeout=0.5)
        if key is None:
            assert got == []  # the CURVE handshake failed: not even a refusal
        else:
            assert [m["type"] for m in got] == ["refused", "refused"]
            assert "reserved for the supervisor's in-process hosts" in got[0]["reason"]
        events = sup.events(goal)
        assert [e["payload"]["host"] for e in of(events, "step_finished")] == ["local-1", "local-1"]
        assert [s["holder"] for s in view["steps"]] == ["local-1", "local-1"]
        assert not of(events, "step_retry") and not of(events, "task_late")
        after = status(sup)
        assert [(h["name"], h["instance"]) for h in after["hosts"]] == [("local-1", local["instance"])]
        assert after["dropped_frames"]["agents"] == 0


def test_a_keyed_worker_cannot_claim_a_name_another_key_holds_even_after_its_holder_left(tmp_path, ws):
    with Supervisor(tmp_path, args=[*FAST, "--local-workers", "0"]) as sup:
        with WorkerProcess(sup, "alpha", "--workdir", ws) as alpha:
            held = wait_for_host(sup, "alpha", pid=alpha.pid)
            mallory = WorkerProcess(sup, "alpha", "--workdir", ws, key="mallory").start()
            assert mallory.wait_exit() == 1
            assert "crewctl: the supervisor refused this worker: host name 'alpha' belongs to another host's key" in mallory.log()
            assert [(h["name"], h["pid"], h["instance"]) for h in status(sup)["hosts"]] == [("alpha", alpha.pid, held["instance"])]
            alpha.kill()
            wait_host_gone(sup, "alpha")
        again = WorkerProcess(sup, "alpha", "--workdir", ws, key="mallory").start()
        assert again.wait_exit() == 1 and "belongs to another host's key" in again.log()
        with WorkerProcess(sup, "alpha", "--workdir", ws) as back:  # its own key gets it back
            assert wait_for_host(sup, "alpha")["pid"] == back.pid
