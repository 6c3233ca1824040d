"""Benchmark: the agents transport beside a bare pyzmq echo, and dispatch throughput.

    .venv/bin/python bench/transport.py            # about a minute on 2 cores
    .venv/bin/python bench/transport.py --quick    # fewer samples, for a smoke run

1. Round-trip latency (p50, p99) of one task envelope, daemon -> host -> daemon, side by
   side with the baseline: a bare pyzmq DEALER/ROUTER echo of the same bytes on TCP
   loopback (one thread each side, nothing else). The crewctl paths measured:
     envelope  broker.send(task) -> AgentHost (decode, check, run an instant brain in its
               pool thread, changed-files scan of an empty workdir, encode) -> broker ->
               handler, on TCP loopback: the codec, broker and host code every task goes
               through;
     envelope, CURVE  the same with the agents endpoint's CURVE and ZAP handler on, as
               every `crewctl worker` connects now: what encryption adds;
     dispatch  Enqueue to the dispatcher actor -> scheduler -> host -> result -> StepFinished
               delivered to a stand-in goal actor: the whole dispatcher, minus the store,
               with an in-process host on inproc:// (as `--local-workers`).
   Target: envelope p50 within 2x the bare echo.

2. Dispatch throughput (tasks/s) with 1, 4 and 16 local hosts and an instant brain:
     broker only   the dispatcher and hosts alone (tasks queued at once, results to a
                   stand-in goal actor that stores nothing);
     with store    a real daemon (run_daemon in this process, SQLite in WAL mode): goals
                   whose lead PLANs 50 steps; every step is committed when queued, started
                   and finished, by its goal's supervisor, as in production.
   Target: the store-inclusive rate is limited by the store's commits, not by the broker,
   i.e. it is well below the broker-only rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pykka
import zmq

from crewctl.actors.dispatcher import Enqueue, start_dispatcher
from crewctl.actors.messages import Deliver
from crewctl.brains import TurnReply
from crewctl.goal import events as ev
from crewctl.goal.effects import DispatchStep
from crewctl.transport import keys, protocol
from crewctl.transport.broker import Broker, Endpoint
from crewctl.actors.agent_host import AgentHost, HostSettings
from crewctl.transport.scheduler import in_process_name

PROMPT = "## Your step: s1: write the thing\n" + "context line for the worker\n" * 40  # ~1.2 KB


class InstantBrain:
    spec = "instant"

    def run(self, request):
        return TurnReply(text="done")


def instant(spec: str) -> InstantBrain:
    return InstantBrain()


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(int(len(s) * p / 100), len(s) - 1)]


def task_bytes(workdir: str) -> bytes:
    from crewctl.transport.codec import pack

    return pack(protocol.task("g1/s1/1", "g1", "s1", PROMPT, workdir, "instant", None, 1))


# -- 1. latency -----------------------------------------------------------------------------


def bare_echo(payload: bytes, n: int, warmup: int) -> list[float]:
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def echo():
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(100):
                router.send_multipart(router.recv_multipart())
        router.close(0)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    out = []
    for i in range(n + warmup):
        t0 = time.perf_counter()
        dealer.send(payload)
        dealer.recv()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    dealer.close(0)
    stop.set()
    t.join()
    return out


def envelope_rtt(workdir: str, n: int, warmup: int, *, curve_home: str | None = None) -> list[float]:
    """Daemon -> host -> daemon, driven from the broker thread as the dispatcher drives it:
    the handler that takes a result queues the next task (no other thread in the loop).
    With `curve_home`, the agents endpoint is CURVE with that home's keys and ZAP handler."""
    out: list[float] = []
    done = threading.Event()
    state = {"i": 0, "t0": 0.0}

    def send_next(identity: bytes) -> None:
        state["i"] += 1
        i = state["i"]
        msg = protocol.task(f"g1/s1/{i}", "g1", "s1", PROMPT, workdir, "instant", None, i)
        state["t0"] = time.perf_counter()
        broker.send("agents", identity, msg)

    def handler(peer, msg):
        kind = protocol.check_host_message(msg)
        if kind == "hello" and state["i"] == 0:
            broker.send("agents", peer.identity, {"v": 1, "type": "welcome", "heartbeat": 5.0})
            send_next(peer.identity)
        elif kind == "result":
            out.append(time.perf_counter() - state["t0"])
            if len(out) >= n + warmup:
                done.set()
            else:
                send_next(peer.identity)

    endpoint = Endpoint("agents", "tcp://127.0.0.1:*", handler)
    settings = HostSettings(endpoint="", name="bench", heartbeat=5.0, brain_factory=instant)
    auth = None
    if curve_home is not None:
        endpoint.curve_public, endpoint.curve_secret = keys.server_keys(curve_home)
        public, secret = keys.new_key_pair("bench", curve_home, force=True)
        keys.allow(curve_home, public)
        settings.client_keys, settings.server_key = keys.load_secret(secret), endpoint.curve_public
        auth = keys.start_authenticator(curve_home)
    broker = Broker([endpoint])
    broker.start()
    broker.ready.wait()
    settings.endpoint = endpoint.bound
    host = AgentHost(settings).start()
    done.wait(120)
    host.stop()
    broker.stop()
    broker.join(5)
    if auth is not None:
        auth.stop()
    return out[warmup:]


def same_hops_floor(payload: bytes, n: int, warmup: int) -> list[float]:
    """The thread hops of the crewctl path with no crewctl code: a ROUTER thread relays to a
    DEALER thread, which hands the bytes to a task thread and gets them back through a
    queue and a wake pipe, then answers. What the architecture costs before any work."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)

    def task_thread():
        while (item := tasks.get()) is not None:
            results.put(item)
            os.write(wake_w, b"x")

    def host():
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"hello")
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        while not stop.is_set():
            for item, _ in poller.poll(100):
                if item is dealer:
                    tasks.put(dealer.recv())
                else:
                    os.read(wake_r, 4096)
                    while not results.empty():
                        dealer.send(results.get())
        dealer.close(0)

    threads = [threading.Thread(target=task_thread, daemon=True), threading.Thread(target=host, daemon=True)]
    for t in threads:
        t.start()
    identity, _ = router.recv_multipart()
    out = []
    for i in range(n + warmup):
        t0 = time.perf_counter()
        router.send_multipart([identity, payload])
        router.recv_multipart()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    stop.set()
    tasks.put(None)
    for t in threads:
        t.join(5)
    router.close(0)
    return out


class Sink(pykka.ThreadingActor):
    """A stand-in goal supervisor: counts StepFinished, wakes whoever waits."""

    def __init__(self, box: queue.SimpleQueue) -> None:
        super().__init__()
        self.box = box

    def on_receive(self, msg):
        if isinstance(msg, Deliver) and isinstance(msg.event, ev.StepFinished):
            self.box.put(time.perf_counter())


def _dispatch_rig(workdir: str, hosts: int):
    """The dispatcher with `hosts` in-process hosts on inproc://, as the daemon's --local-workers
    (made here, not by start_dispatcher, so they get the instant brain)."""
    holder: dict = {}
    local = Endpoint("local", f"inproc://bench-local-{os.getpid()}-{hosts}", lambda p, m: holder["d"].on_agent_message(p, m), in_process=True)
    broker = Broker([local])
    broker.start()
    broker.ready.wait()
    ctx = SimpleNamespace(clock=lambda: datetime.now(timezone.utc), config=None)
    opts = SimpleNamespace(heartbeat=1.0, turn_timeout=None, local_workers=0)
    dispatcher = start_dispatcher(ctx, broker, opts)
    holder["d"] = dispatcher
    started = []
    for i in range(hosts):
        settings = HostSettings(endpoint=local.bound, name=in_process_name(i + 1), heartbeat=1.0, brain_factory=instant)
        started.append(AgentHost(settings, context=broker.context).start())
    deadline = time.monotonic() + 10
    while len(dispatcher.hosts()) < hosts and time.monotonic() < deadline:
        time.sleep(0.01)  # poll: hosts attach on their own threads
    box: queue.SimpleQueue = queue.SimpleQueue()
    sink = Sink.start(box)

    def close():
        for h in started:
            h.request_stop()
        for h in started:
            h.stop()
        dispatcher.stop()
        sink.stop()
        broker.stop()
        broker.join(5)

    return dispatcher, sink, box, close


def dispatch_rtt(workdir: str, n: int, warmup: int) -> list[float]:
    dispatcher, sink, box, close = _dispatch_rig(workdir, 1)
    out = []
    try:
        for i in range(n + warmup):
            effect = DispatchStep(step=f"s{i}", task=f"g1/s{i}/1", prompt=PROMPT, lane=None)
            t0 = time.perf_counter()
            dispatcher.ref.tell(Enqueue("g1", effect, workdir, "instant", sink))
            t1 = box.get(timeout=10)
            if i >= warmup:
                out.append(t1 - t0)
    finally:
        close()
    return out


# -- 2. throughput ----------------------------------------------------------------------------


def broker_only_rate(workdir: str, hosts: int, tasks: int) -> float:
    dispatcher, sink, box, close = _dispatch_rig(workdir, hosts)
    try:
        t0 = time.perf_counter()
        for i in range(tasks):
            goal = f"g{i % 32}"
            effect = DispatchStep(step=f"s{i}", task=f"{goal}/s{i}/1", prompt=PROMPT, lane=None)
            dispatcher.ref.tell(Enqueue(goal, effect, workdir, "instant", sink))
        last = t0
        for _ in range(tasks):
            last = box.get(timeout=60)
        return tasks / (last - t0)
    finally:
        close()


def store_rate(root: str, hosts: int, goals: int, steps: int) -> tuple[float, float]:
    """A real daemon in this process; returns (tasks/s, commits/s)."""
    from crewctl.actors.daemon import DaemonOptions, run_daemon
    from crewctl.store import open_store
    from crewctl.transport import control

    home = tempfile.mkdtemp(prefix="home-", dir=root)
    script = os.path.join(home, "brains.json")
    plan = {"steps": [{"title": f"step {i}"} for i in range(steps)]}
    with open(script, "w") as f:
        json.dump({
            "lead": [{"when": "## Reports|step_completed|reports", "text": 'CREW_READY_BEGIN\n{"summary": "done"}\nCREW_READY_END'},
                     f"CREW_PLAN_BEGIN\n{json.dumps(plan)}\nCREW_PLAN_END"],
            "worker": ["done"],
        }, f)
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(
        target=run_daemon,
        args=(DaemonOptions(home=home, local_workers=hosts, heartbeat=1.0),),
        kwargs={"stop": stop, "on_ready": lambda info: ready.set()},
        daemon=True,
    )
    t.start()
    if not ready.wait(60):
        raise SystemExit("the in-process daemon did not start within 60 s")
    ids = []
    for g in range(goals):
        ws = tempfile.mkdtemp(prefix="ws-", dir=root)
        view = control.call(home, "goal.new", {
            "objective": f"bench {g}", "workspace": ws, "lead": f"scripted:{script}", "worker": f"scripted:{script}",
            "criteria": [{"text": "trivial", "verify": {"run": "true"}}],
        }, timeout=60)
        ids.append(view["id"])
    store = open_store(None, home, create=False)
    total = goals * steps
    deadline = time.monotonic() + 600
    while True:
        done = sum(1 for gid in ids for e in store.events(gid) if e["type"] == "step_finished")
        if done >= total:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {total} steps finished in 600 s")
        time.sleep(0.2)  # poll: the store is the source of truth
    first = last = None
    stamps: set[tuple[str, str]] = set()
    for gid in ids:
        for e in store.events(gid):
            at = datetime.fromisoformat(e["at"])
            if e["type"] == "step_queued" and (first is None or at < first):
                first = at
            if e["type"] == "step_finished" and (last is None or at > last):
                last = at
            stamps.add((gid, e["at"]))  # every event of one commit has that commit's time
    # commits in the window: one per stored transition (its events share one timestamp)
    commits = sum(1 for _, at in stamps if first <= datetime.fromisoformat(at) <= last)
    store.close()
    stop.set()
    t.join(30)
    seconds = (last - first).total_seconds()
    return total / seconds, commits / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n, warmup = (300, 50) if args.quick else (3000, 200)
    tasks = 500 if args.quick else 3000
    goals, steps = (4, 25) if args.quick else (8, 50)

    root = tempfile.mkdtemp(prefix="crewctl-bench-")
    workdir = tempfile.mkdtemp(prefix="ws-", dir=root)
    payload = task_bytes(workdir)
    print(f"# crewctl bench/transport.py  {datetime.now().date()}  {platform.python_implementation()} {platform.python_version()}"
          f"  pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}  {os.cpu_count()} cores")
    print(f"# task envelope: {len(payload)} bytes; {n} round trips after {warmup} warm-up\n")

    curve_home = tempfile.mkdtemp(prefix="keys-", dir=root)
    keys.init_server_keys(curve_home)
    rows = [
        ("bare pyzmq DEALER/ROUTER echo", bare_echo(payload, n, warmup)),
        ("same thread hops, no crewctl code", same_hops_floor(payload, n, warmup)),
        ("envelope: broker -> host -> broker", envelope_rtt(workdir, n, warmup)),
        ("envelope, CURVE", envelope_rtt(workdir, n, warmup, curve_home=curve_home)),
        ("dispatch: Enqueue -> StepFinished", dispatch_rtt(workdir, n // 3, warmup)),
    ]
    base = statistics.median(rows[0][1])
    print("round trip                            p50 (us)   p99 (us)   p50 vs echo")
    for name, s in rows:
        print(f"{name:<38}{statistics.median(s) * 1e6:>8.0f}   {pct(s, 99) * 1e6:>8.0f}   {statistics.median(s) / base:>8.2f}x")

    print(f"\nthroughput, tasks/s     broker only ({tasks} tasks)   with store ({goals} goals x {steps} steps; commits/s)")
    for hosts in (1, 4, 16):
        b = broker_only_rate(workdir, hosts, tasks)
        s, c = store_rate(root, hosts, goals, steps)
        print(f"{hosts:>2} local host(s)        {b:>10.0f}                  {s:>7.0f}   ({c:.0f} commits/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
