"""The agents transport in one process: a real broker, dispatcher and agent hosts on loopback.

A stand-in goal actor collects what the dispatcher delivers (StepAssigned, StepFinished,
StepFailed); brains are Python objects, so a test controls exactly when a turn ends.
As in the daemon, the agents endpoint is CURVE (a server pair and an allowed folder in a
temporary home, with the ZAP handler running), so every host and raw peer on TCP gets a
key of its own, allowed; in-process hosts use the inproc:// `local` endpoint.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Callable

import pykka
import pytest
import zmq

from crewctl.actors.dispatcher import CancelGoal, Enqueue, start_dispatcher
from crewctl.actors.messages import Deliver
from crewctl.brains import TurnReply, Usage
from crewctl.exceptions import BrainError
from crewctl.goal import events as ev
from crewctl.goal.effects import DispatchStep
from crewctl.testing import wait_until
from crewctl.testing.hosts import RawPeer
from crewctl.transport import keys
from crewctl.transport.broker import Broker, Endpoint
from crewctl.transport.codec import message
from crewctl.actors.agent_host import AgentHost, HostSettings, changed_files, snapshot_tree

HB = 0.1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Sink(pykka.ThreadingActor):
    """Stands in for a goal supervisor: records every event delivered to it."""

    def __init__(self, box: list) -> None:
        super().__init__()
        self.box = box

    def on_receive(self, msg: Any) -> None:
        if isinstance(msg, Deliver):
            self.box.append(msg.event)


class FnBrain:
    spec = "fn"

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def run(self, request):
        return self.fn(request)


@dataclass
class Rig:
    broker: Broker
    dispatcher: Any
    workspace: str
    events: list
    goal_ref: Any
    endpoint: str
    hosts: list
    home: str

    def key(self, name: str, *, allow: bool = True) -> dict[str, Any]:
        """CURVE settings (client_keys, server_key) for key `name`, made once, allowed if asked."""
        directory = os.path.join(self.home, "worker-keys")
        public = os.path.join(directory, name + ".key")
        if not os.path.exists(public):
            keys.new_key_pair(name, directory)
        if allow:
            keys.allow(self.home, public)
        return {"client_keys": keys.load_secret(public + "_secret"), "server_key": keys.server_keys(self.home)[0]}

    def host(self, name: str, fn: Callable | None = None, *, lanes=(), concurrency=1, endpoint: str | None = None, key: str | None = "", **kw) -> AgentHost:
        """An agent host on TCP with key `key` (default: its name; None: no key), unless kw says otherwise."""
        fn = fn or (lambda r: TurnReply(text=f"did {r.prompt}", usage=Usage(3, 4)))
        if "client_keys" not in kw and key is not None:
            kw |= self.key(key or name)
        settings = HostSettings(
            endpoint=endpoint or self.endpoint,
            name=name,
            lanes=tuple(lanes),
            concurrency=concurrency,
            heartbeat=HB,
            brain_factory=lambda spec: FnBrain(fn),
            **kw,
        )
        host = AgentHost(settings).start()
        self.hosts.append(host)
        return host

    def enqueue(self, task: str, step: str | None = None, *, goal: str = "g1", lane: str | None = None, not_before: str | None = None, prompt: str | None = None) -> None:
        step = step or task.split("/")[1]
        effect = DispatchStep(step=step, task=task, prompt=prompt or step, lane=lane, not_before=not_before)
        self.dispatcher.ref.tell(Enqueue(goal_id=goal, effect=effect, workspace=self.workspace, spec="fn", reply_to=self.goal_ref))

    def wait(self, kind: type, timeout: float = 10, **fields: Any):
        def found():
            for e in list(self.events):
                if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items()):
                    return e
            return None

        return wait_until(found, timeout=timeout, interval=0.01, message=f"{kind.__name__} {fields}; got {self.events}")

    def of(self, kind: type, **fields: Any) -> list:
        return [e for e in list(self.events) if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())]

    def wait_host(self, name: str, **match: Any) -> dict:
        def found():
            return next((h for h in self.dispatcher.hosts() if h["name"] == name and all(h[k] == v for k, v in match.items())), None)

        return wait_until(found, timeout=10, interval=0.01, message=f"host {name} {match}")

    def dropped(self) -> int:
        return self.broker.dropped()["agents"]


def _make_broker(bind: str, handler, home: str) -> Broker:
    agents = Endpoint("agents", bind, handler)
    agents.curve_public, agents.curve_secret = keys.server_keys(home)
    local = Endpoint("local", f"inproc://test-local-{uuid.uuid4().hex}", handler, in_process=True)
    broker = Broker([agents, local])
    broker.start()
    broker.ready.wait(5)
    assert broker.failed is None, broker.failed
    return broker


@pytest.fixture
def home(tmp_path):
    """A home with the server's key pair, and the ZAP handler that reads its allowed folder."""
    path = str(tmp_path / "home")
    keys.init_server_keys(path)
    auth = keys.start_authenticator(path)
    yield path
    auth.stop()


@pytest.fixture
def make_rig(tmp_path, home):
    made: list[Rig] = []

    def make(*, local_workers: int = 0, bind: str = "tcp://127.0.0.1:*") -> Rig:
        holder: dict = {}
        broker = _make_broker(bind, lambda peer, msg: holder["d"].on_agent_message(peer, msg), home)
        ctx = SimpleNamespace(clock=utcnow, config=None, sandbox=None)  # in-process hosts of a bare dispatcher: no agents to seal
        opts = SimpleNamespace(heartbeat=HB, turn_timeout=None, local_workers=local_workers)
        dispatcher = start_dispatcher(ctx, broker, opts)
        holder["d"] = dispatcher
        box: list = []
        workspace = tmp_path / f"ws{len(made)}"
        workspace.mkdir()
        rig = Rig(broker, dispatcher, str(workspace), box, Sink.start(box), broker.endpoints["agents"].bound, [], home)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        for host in rig.hosts:
            host.stop(timeout=2)
        rig.dispatcher.stop()
        rig.goal_ref.stop()
        rig.broker.stop()
        rig.broker.join(5)


# -- the happy path -------------------------------------------------------------------------


def test_a_queued_step_runs_on_a_host_and_its_result_comes_back_with_usage_and_changed_files(make_rig):
    rig = make_rig()

    def work(request):
        with open(os.path.join(request.workdir, "out.txt"), "w") as f:
            f.write(request.prompt)
        return TurnReply(text="wrote out.txt", usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.01))

    rig.host("alpha", work)
    rig.wait_host("alpha")
    rig.enqueue("g1/s1/1")
    assigned = rig.wait(ev.StepAssigned, task="g1/s1/1")
    assert assigned.host == "alpha"
    done = rig.wait(ev.StepFinished, task="g1/s1/1")
    assert (done.step, done.host, done.text) == ("s1", "alpha", "wrote out.txt")
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cost_usd) == (10, 5, 0.01)
    assert done.usage.seconds >= 0
    assert done.changed_files == ("out.txt",)
    assert rig.events.index(assigned) < rig.events.index(done)


def test_status_lists_a_host_with_its_lanes_capacity_and_tasks_in_flight(make_rig):
    rig = make_rig()
    release = threading.Event()
    rig.host("gpu-box", lambda r: (release.wait(10), TurnReply(text="ok"))[1], lanes=["gpu", "cuda"], concurrency=2)
    rig.wait_host("gpu-box")
    rig.enqueue("g1/s1/1", lane="gpu")
    h = rig.wait_host("gpu-box", in_flight=1)
    assert h["lanes"] == ["cuda", "gpu"] and h["capacity"] == 2
    assert datetime.fromisoformat(h["last_seen"]) > utcnow() - timedelta(seconds=5)
    release.set()
    rig.wait_host("gpu-box", in_flight=0)


def test_a_brain_error_comes_back_as_a_failed_step_not_a_lost_one(make_rig):
    rig = make_rig()

    def fail(request):
        raise BrainError("the tool exited 3")

    rig.host("alpha", fail)
    rig.enqueue("g1/s1/1")
    failed = rig.wait(ev.StepFailed, task="g1/s1/1")
    assert not failed.lost and failed.host == "alpha"
    assert "the tool exited 3" in failed.error


def test_a_step_with_a_lane_waits_for_a_host_that_serves_it(make_rig):
    rig = make_rig()
    rig.host("plain")
    rig.wait_host("plain")
    rig.enqueue("g1/s1/1", lane="gpu")
    rig.enqueue("g1/s2/1")
    rig.wait(ev.StepFinished, task="g1/s2/1", host="plain")
    assert rig.of(ev.StepAssigned, task="g1/s1/1") == []
    rig.host("gpu-box", lanes=["gpu"])
    rig.wait(ev.StepFinished, task="g1/s1/1", host="gpu-box")


def test_a_backed_off_task_waits_for_its_not_before(make_rig):
    rig = make_rig()
    rig.host("alpha")
    rig.wait_host("alpha")
    due = utcnow() + timedelta(seconds=0.5)
    rig.enqueue("g1/s1/2", not_before=due.isoformat())
    rig.wait(ev.StepAssigned, task="g1/s1/2")
    assert utcnow() >= due - timedelta(milliseconds=20)


# -- liveness ---------------------------------------------------------------------------------


def test_a_host_that_goes_silent_loses_its_task_and_its_late_result_is_forwarded_as_late(make_rig):
    rig = make_rig()
    with RawPeer(rig.endpoint, **rig.key("mute")) as peer:
        peer.send_msg(message("hello", name="mute", lanes=[], concurrency=1, instance="i1", pid=1))
        assert peer.recv()["type"] == "welcome"
        rig.enqueue("g1/s1/1")
        task = peer.recv()
        while task["type"] != "task":
            task = peer.recv()
        assert (task["task"], task["goal"], task["step"], task["workspace"]) == ("g1/s1/1", "g1", "s1", rig.workspace)
        lost = rig.wait(ev.StepFailed, task="g1/s1/1", timeout=5)  # no heartbeats from us: dead
        assert lost.lost and lost.host == "mute" and "silent" in lost.error
        assert rig.dispatcher.hosts() == []
        peer.send_msg(message("result", task="g1/s1/1", ok=True, text="late!", usage={}, seconds=1.0, changed_files=[], error=None, kind=None))
        late = rig.wait(ev.StepFinished, task="g1/s1/1")
        assert late.text == "late!"  # the goal core records it as task_late and ignores it
        assert rig.dropped() == 0


def test_a_host_that_says_bye_hands_its_task_back_at_once(make_rig):
    rig = make_rig()
    started = threading.Event()
    host = rig.host("alpha", lambda r: (started.set(), r.cancel.wait(10), TurnReply(text="cancelled"))[2])
    rig.enqueue("g1/s1/1")
    wait_until(started.is_set, timeout=5)
    host.stop()
    lost = rig.wait(ev.StepFailed, task="g1/s1/1", timeout=2)
    assert lost.lost and "left" in lost.error


def test_a_host_reconnects_with_a_new_hello_when_the_daemon_comes_back(make_rig, tmp_path):
    rig = make_rig()
    port = rig.endpoint.rsplit(":", 1)[1]
    host = rig.host("alpha")
    rig.wait_host("alpha")
    assert host.connections == 1
    rig.broker.stop()
    rig.broker.join(5)
    wait_until(lambda: not host.attached.is_set(), timeout=5, message="the host to notice the daemon is gone")
    again = make_rig(bind=f"tcp://127.0.0.1:{port}")
    again.wait_host("alpha")
    assert host.connections >= 2
    again.enqueue("g1/s1/1")
    again.wait(ev.StepFinished, task="g1/s1/1", host="alpha")


def test_a_new_process_with_a_known_name_takes_over_and_the_old_one_stops(make_rig):
    rig = make_rig()
    release = threading.Event()
    old = rig.host("alpha", lambda r: (release.wait(10), TurnReply(text="old"))[1])
    rig.enqueue("g1/s1/1")
    rig.wait(ev.StepAssigned, task="g1/s1/1", host="alpha")
    new = rig.host("alpha")
    lost = rig.wait(ev.StepFailed, task="g1/s1/1")
    assert lost.lost and "new instance" in lost.error
    assert old.wait(5) and old.exit_code == 1 and "replaced" in (old.refused or "")
    assert rig.wait_host("alpha")["instance"] == new.instance
    release.set()


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_goal_stops_the_running_turn_and_frees_the_slot_quietly(make_rig):
    rig = make_rig()
    seen = []

    def slow(request):
        seen.append(request.prompt)
        if request.prompt == "s1":
            request.cancel.wait(10)
            raise BrainError("turn cancelled")
        return TurnReply(text="quick")

    rig.host("alpha", slow)
    rig.enqueue("g1/s1/1")
    rig.wait(ev.StepAssigned, task="g1/s1/1")
    rig.enqueue("g2/s1/1", goal="g2", prompt="quick one")
    rig.dispatcher.ref.tell(CancelGoal("g1"))
    rig.wait(ev.StepFinished, task="g2/s1/1")  # the slot came back once the host stopped s1
    assert rig.of(ev.StepFailed) == []  # the cancelled goal hears nothing more


# -- bad frames ----------------------------------------------------------------------------------


def test_messages_of_the_wrong_shape_are_dropped_counted_and_never_stop_the_broker(make_rig):
    rig = make_rig()
    with RawPeer(rig.endpoint, **rig.key("peer")) as peer:
        bad = [
            message("heartbeat"),  # never said hello
            message("result", task="x", ok=True, text="", usage={}, seconds=0, changed_files=[]),  # ditto
            message("hello", name="x"),  # missing fields
            message("hello", name="x y!", lanes=[], concurrency=1, instance="i"),  # bad name
            message("hello", name="x", lanes="gpu", concurrency=1, instance="i"),  # lanes not a list
            message("hello", name="x", lanes=[], concurrency=0, instance="i"),  # no capacity
            message("hello", name="x", lanes=[], concurrency=True, instance="i"),  # a bool is no int
            message("steal", goal="g1"),  # unknown type
        ]
        for msg in bad:
            peer.send_msg(msg)
        wait_until(lambda: rig.dropped() == len(bad), timeout=5, message="every bad frame counted")
        peer.send_msg(message("hello", name="ok", lanes=[], concurrency=1, instance="i", pid=1))
        assert peer.recv()["type"] == "welcome"
        peer.send_msg(message("result", task="g9/s1/1", ok=True, text="", usage={}, seconds=0, changed_files=[]))
        wait_until(lambda: rig.dropped() == len(bad) + 1, timeout=5, message="a result for an unknown task counted")
        peer.send_msg(message("result", task="g9/s1/1", ok="yes", text="", usage={}, seconds=0, changed_files=[]))
        wait_until(lambda: rig.dropped() == len(bad) + 2, timeout=5)
        assert [h["name"] for h in rig.dispatcher.hosts()] == ["ok"]


# -- CURVE ---------------------------------------------------------------------------------------


def test_only_allowed_keys_attach_and_a_key_allowed_later_works_without_restart(make_rig):
    rig = make_rig(local_workers=1)
    rig.wait_host("local-1")  # in-process hosts need no key: they are on inproc://
    curve = rig.key("box", allow=False)
    box = rig.host("box", lanes=["remote"], **curve)
    rig.enqueue("g1/s1/1", lane="remote")
    with RawPeer(rig.endpoint, **curve) as forger:
        forger.offer_msg(message("hello", name="forger", lanes=["remote"], concurrency=1, instance="f", pid=1))
        forger.offer_msg(message("result", task="g1/s1/1", ok=True, text="forged", usage={}, seconds=0, changed_files=[]))
        assert forger.recv(timeout=1.0) is None  # refused at the handshake: nothing comes back
    with RawPeer(rig.endpoint) as plain:  # no CURVE at all, on loopback: refused too
        plain.offer_msg(message("hello", name="plain", lanes=["remote"], concurrency=1, instance="p", pid=1))
        assert plain.recv(timeout=1.0) is None
    assert not box.attached.is_set()
    assert sorted(h["name"] for h in rig.dispatcher.hosts()) == ["local-1"]
    assert rig.of(ev.StepAssigned) == [] and rig.dropped() == 0  # nothing even reached the broker
    rig.key("box")  # allowed now
    rig.wait(ev.StepFinished, task="g1/s1/1", host="box", timeout=10)  # its next reconnect is let in
    assert rig.of(ev.StepFinished, text="forged") == []


def test_a_frame_on_a_curve_endpoint_without_an_authenticated_key_is_dropped(tmp_path):
    """With no ZAP handler running, ZeroMQ lets any CURVE client through unauthenticated:
    the broker still takes nothing from it (no User-Id, no frame)."""
    home = str(tmp_path / "bare")
    keys.init_server_keys(home)
    seen: list = []
    broker = _make_broker("tcp://127.0.0.1:*", lambda peer, msg: seen.append(peer), home)
    try:
        client = zmq.curve_keypair()
        with RawPeer(broker.endpoints["agents"].bound, client_keys=client, server_key=keys.server_keys(home)[0]) as peer:
            peer.send_msg(message("hello", name="x", lanes=[], concurrency=1, instance="i", pid=1))
            wait_until(lambda: broker.dropped()["agents"] == 1, timeout=5)
        assert seen == [] and broker.drop_reasons()["agents"] == {"no authenticated CURVE key": 1}
    finally:
        broker.stop()
        broker.join(5)


def test_hosts_learn_their_key_holds_their_name_and_another_key_is_refused_with_the_reason(make_rig):
    rig = make_rig(local_workers=1)
    alpha = rig.host("alpha", lanes=["a"])
    rig.wait_host("alpha")
    impostor = rig.host("alpha", key="mallory")
    assert impostor.wait(5) and impostor.exit_code == 1
    assert "belongs to another host's key" in impostor.refused
    local = rig.host("local-1", key="mallory2")
    assert local.wait(5) and "reserved" in local.refused
    assert [(h["name"], h["instance"]) for h in rig.dispatcher.hosts()] == [("alpha", alpha.instance), ("local-1", rig.dispatcher.local_hosts[0].instance)]
    rig.enqueue("g1/s1/1", lane="a")
    assert rig.wait(ev.StepFinished, task="g1/s1/1").host == "alpha"  # its tasks went nowhere else


def test_a_secret_key_file_cannot_be_allowed_by_mistake(tmp_path):
    from crewctl.exceptions import UsageError

    home = str(tmp_path / "home")
    pub, sec = keys.new_key_pair("box", str(tmp_path))
    with pytest.raises(UsageError, match="secret key file"):
        keys.allow(home, sec)
    assert keys.allowed_keys(home) == set()
    keys.allow(home, pub)
    assert keys.allowed_keys(home) == {keys.load_public(pub)}


# -- what a turn changed ----------------------------------------------------------------------


def test_changed_files_come_from_git_status_in_a_git_tree(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "kept.txt").write_text("same")
    (repo / "edited.txt").write_text("v1")
    (repo / "gone.txt").write_text("bye")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "dirty-before.txt").write_text("untouched by the turn")
    before = snapshot_tree(str(repo))
    (repo / "edited.txt").write_text("v2 longer")
    (repo / "gone.txt").unlink()
    (repo / "sub").mkdir()
    (repo / "sub" / "new.txt").write_text("new")
    assert changed_files(before, snapshot_tree(str(repo))) == ["edited.txt", "gone.txt", "sub/new.txt"]


def test_changed_files_come_from_an_mtime_scan_outside_git(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    before = snapshot_tree(str(tmp_path))
    (tmp_path / "b.txt").write_text("bb")
    (tmp_path / "c.txt").write_text("c")
    (tmp_path / "a.txt").unlink()
    assert changed_files(before, snapshot_tree(str(tmp_path))) == ["a.txt", "b.txt", "c.txt"]
