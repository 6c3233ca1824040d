"""The dispatcher: turns queued plan steps into tasks for agent hosts.

Interface used by the goal supervisors and the daemon:
    Enqueue(goal_id, effect, workspace, spec, reply_to)   queue a step's task (tell .ref)
    CancelGoal(goal_id)                                    withdraw a goal's queued and running tasks
    .on_agent_message(peer, msg)                           a frame from a host (broker thread)
    .hosts()                                               attached hosts, for `crewctl status`
    .stop()
Results go back to the goal's supervisor as Deliver(StepAssigned | StepFinished | StepFailed).

Who decides what: the pure `transport.scheduler.Scheduler` picks hosts (lanes, affinity,
capacity, backoff, liveness); the goal core (`goal.phases`) decides attempts, retries and
replans. Nothing here retries anything: a task whose host died is reported as
`StepFailed(lost=True)` and the core dispatches the step again under a new task id.

Who a host is comes from the broker's Peer, never from the hello: its CURVE key (agents
endpoint) or IN_PROCESS (the inproc:// endpoint of the hosts inside the daemon). A frame
with neither is dropped; the scheduler binds each host name to the key that first used it.

Threads: the scheduler is shared by three threads under one lock, and every operation on
it is short and never blocks (sends are queued to the broker, goal events are actor tells):
- the broker thread calls `on_agent_message`; doing the work right there (rather than
  forwarding it to the actor) lets a result for an unknown task, or anything from a
  connection that never said hello, raise ProtocolError so the broker counts the frame;
- the pykka actor (`.ref`) takes Enqueue and CancelGoal from the goal supervisors;
- a ticker thread sends heartbeats, expires silent hosts every heartbeat interval, and
  wakes when a backed-off task becomes due.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pykka

from ..exceptions import ProtocolError
from ..goal import events as ev
from ..goal.effects import DispatchStep
from ..transport import protocol
from ..transport.broker import Peer
from ..transport.codec import message
from ..transport.scheduler import LIVENESS, Lost, Scheduler, Task, in_process_name
from .messages import Deliver

__all__ = ["CancelGoal", "Dispatcher", "Enqueue", "start_dispatcher"]

log = logging.getLogger("crewctl.dispatcher")


@dataclass(frozen=True)
class Enqueue:
    goal_id: str
    effect: DispatchStep
    workspace: str
    spec: str | None
    reply_to: pykka.ActorRef


@dataclass(frozen=True)
class CancelGoal:
    goal_id: str


@dataclass(frozen=True)
class _Payload:
    prompt: str
    workspace: str
    spec: str | None
    attempt: int


class _Core:
    """The scheduler plus what it takes to act on its answers; every method takes the lock."""

    def __init__(self, send, clock, heartbeat: float, turn_timeout: float | None, liveness: int = LIVENESS) -> None:
        self._send = send  # (peer, msg) -> None, thread-safe
        self._clock = clock  # wall clock (aware datetime), for not_before and last_seen
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.turn_timeout = turn_timeout
        self.lock = threading.Lock()
        self.sched = Scheduler(heartbeat=heartbeat, liveness=liveness)
        self.goals: dict[str, pykka.ActorRef] = {}
        self.closing = False
        self.next_due: float | None = None
        self.kick = threading.Event()  # wakes the ticker when a task becomes due sooner
        self.delivered = 0

    # -- from the goal supervisors (actor thread) ----------------------------------------------

    def enqueue(self, msg: Enqueue) -> None:
        e = msg.effect
        now = time.monotonic()
        not_before = None
        if e.not_before:
            try:
                due = datetime.fromisoformat(e.not_before)
                not_before = now + max((due - self._clock()).total_seconds(), 0.0)
            except ValueError:
                log.warning("goal %s: bad not_before %r; dispatching now", msg.goal_id, e.not_before)
        task = Task(
            id=e.task,
            goal=msg.goal_id,
            step=e.step,
            lane=e.lane,
            not_before=not_before,
            payload=_Payload(prompt=e.prompt, workspace=msg.workspace, spec=msg.spec, attempt=_attempt(e.task)),
        )
        with self.lock:
            if self.closing:
                return
            self.goals[msg.goal_id] = msg.reply_to
            try:
                cancels = self.sched.enqueue(task)
            except ValueError as exc:
                log.warning("goal %s: %s; ignored", msg.goal_id, exc)
                return
            for identity, task_id in cancels:
                self._send(identity, message("cancel", task=task_id))
            self._pump(now)

    def cancel_goal(self, goal_id: str) -> None:
        with self.lock:
            for identity, task_id in self.sched.cancel_goal(goal_id):
                self._send(identity, message("cancel", task=task_id))
            self._pump(time.monotonic())

    # -- from hosts (broker thread) --------------------------------------------------------------

    def on_agent(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.key is None:
            raise ProtocolError("an agent host must present a CURVE key")
        kind = protocol.check_host_message(msg)
        now = time.monotonic()
        with self.lock:
            if kind == "hello":
                self._hello(peer, msg, now)
            elif kind == "heartbeat":
                self.sched.seen(peer, now)
            elif kind == "result":
                self._result(peer, msg, now)
            elif kind == "bye":
                host = self.sched.seen(peer, now)
                log.info("host %s left", host.name)
                self._report_lost(self.sched.bye(peer))
            self._pump(now)

    def _hello(self, peer: Peer, msg: dict, now: float) -> None:
        outcome = self.sched.hello(
            peer,
            name=msg["name"],
            instance=msg["instance"],
            lanes=msg["lanes"],
            capacity=msg["concurrency"],
            now=now,
            pid=msg.get("pid"),
            owner=peer.key,
        )
        if outcome.refused is not None:
            log.warning("refused a hello as %s (key %s): %s", msg["name"], peer.key, outcome.refused)
            self._send(peer, message("refused", reason=outcome.refused))
            return
        if outcome.replaced is not None and not outcome.reconnect:
            # Two processes may not share a name: the newer one wins, the older one stops.
            self._send(outcome.replaced, message("refused", reason=f"replaced by a newer instance of host {msg['name']}"))
            log.warning("host %s restarted (new instance); its old connection is refused", msg["name"])
        self._send(peer, message("welcome", heartbeat=self.heartbeat, liveness=self.liveness))
        if outcome.again:
            return
        lanes = ",".join(msg["lanes"]) or "lane-less steps"
        verb = "reconnected" if outcome.reconnect else "attached"
        log.info("host %s %s (%s, concurrency %d, pid %s)", msg["name"], verb, lanes, msg["concurrency"], msg.get("pid"))
        self._report_lost(list(outcome.lost))

    def _result(self, peer: Peer, msg: dict, now: float) -> None:
        if self.sched.attached(peer):
            self.sched.seen(peer, now)
        done = self.sched.complete(peer, msg["task"])
        if done.cancelled:
            return  # we withdrew it; the goal moved on
        if done.late:
            log.info("late result for %s from %s: forwarded, the goal ignores it", done.task_id, done.host)
        usage = msg["usage"]
        if msg["ok"]:
            event: ev.Event = ev.StepFinished(
                step=done.step,
                task=done.task_id,
                host=done.host,
                text=msg["text"],
                usage=ev.TurnUsage(
                    input_tokens=usage.get("input_tokens") or 0,
                    output_tokens=usage.get("output_tokens") or 0,
                    cached_tokens=usage.get("cached_tokens") or 0,
                    cost_usd=usage.get("cost_usd"),
                    seconds=float(msg["seconds"]),
                ),
                changed_files=tuple(msg["changed_files"]),
            )
        else:
            error = msg.get("error") or "the worker failed"
            if msg.get("kind"):
                error = f"{error} ({msg['kind']})"
            event = ev.StepFailed(step=done.step, task=done.task_id, host=done.host, error=error, lost=False)
        self._deliver(done.goal, event)

    # -- ticker ------------------------------------------------------------------------------------

    def tick(self, beat: bool) -> None:
        now = time.monotonic()
        with self.lock:
            if beat:
                lost = self.sched.expire(now)
                if lost:
                    self._report_lost(lost)
                for host in list(self.sched.hosts.values()):
                    self._send(host.identity, message("heartbeat"))
            self._pump(now)

    # -- shared --------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        for task, host in self.sched.assign(now):
            p: _Payload = task.payload
            self._deliver(task.goal, ev.StepAssigned(step=task.step, task=task.id, host=host.name))
            self._send(host.identity, protocol.task(task.id, task.goal, task.step, p.prompt, p.workspace, p.spec, self.turn_timeout, p.attempt))
        due = self.sched.next_due(now)
        if due != self.next_due:
            self.next_due = due
            if due is not None:
                self.kick.set()  # the ticker recomputes when to wake

    def _report_lost(self, lost: list[Lost]) -> None:
        for item in lost:
            log.warning("task %s lost: %s", item.task.id, item.reason)
            self._deliver(item.task.goal, ev.StepFailed(step=item.task.step, task=item.task.id, host=item.host, error=item.reason, lost=True))

    def _deliver(self, goal_id: str, event: ev.Event) -> None:
        if self.closing:
            return  # shutting down: the store says what ran; Recover requeues it next start
        ref = self.goals.get(goal_id)
        if ref is None:
            return
        try:
            ref.tell(Deliver(event))
            self.delivered += 1
        except pykka.ActorDeadError:
            pass  # the goal finished; anything for it now is late anyway

    def hosts(self) -> list[dict[str, Any]]:
        mono, wall = time.monotonic(), self._clock()
        with self.lock:
            infos = self.sched.host_infos()
        return [
            {
                "name": h.name,
                "lanes": list(h.lanes),
                "last_seen": (wall - timedelta(seconds=mono - h.last_seen)).isoformat(timespec="milliseconds"),
                "in_flight": h.in_flight,
                "capacity": h.capacity,
                "connected_at": (wall - timedelta(seconds=mono - h.connected_at)).isoformat(timespec="seconds"),
                "pid": h.pid,
                "instance": h.instance,
            }
            for h in infos
        ]


def _attempt(task_id: str) -> int:
    tail = task_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 1


class _DispatcherActor(pykka.ThreadingActor):
    def __init__(self, core: _Core) -> None:
        super().__init__()
        self.core = core

    def on_receive(self, msg: Any) -> Any:
        if isinstance(msg, Enqueue):
            self.core.enqueue(msg)
        elif isinstance(msg, CancelGoal):
            self.core.cancel_goal(msg.goal_id)
        elif msg == "hosts":
            return self.core.hosts()
        return None


class Dispatcher:
    """What `start_dispatcher` returns to the daemon."""

    def __init__(self, core: _Core, local_hosts: list | None = None) -> None:
        self.core = core
        self.ref = _DispatcherActor.start(core)
        self.local_hosts = list(local_hosts or ())
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="crewctl-dispatch-ticker", daemon=True)
        self._ticker.start()

    def on_agent_message(self, peer: Peer, msg: dict[str, Any]) -> None:
        self.core.on_agent(peer, msg)

    def hosts(self) -> list[dict[str, Any]]:
        return self.core.hosts()

    def stop(self) -> None:
        with self.core.lock:
            self.core.closing = True
        self._stopping.set()
        self.core.kick.set()
        for host in self.local_hosts:
            host.request_stop()
        for host in self.local_hosts:
            host.stop(timeout=5)
        self._ticker.join(timeout=5)
        try:
            self.ref.stop(block=True, timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass

    def _tick_loop(self) -> None:
        beat_every = self.core.heartbeat
        next_beat = time.monotonic() + beat_every
        while not self._stopping.is_set():
            now = time.monotonic()
            wake = next_beat
            due = self.core.next_due
            if due is not None and due < wake:
                wake = due
            self.core.kick.wait(max(wake - now, 0.0))
            self.core.kick.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = now + beat_every
            try:
                self.core.tick(beat)
            except Exception:  # the ticker must outlive any bug in one tick
                log.exception("dispatcher tick failed")


def start_dispatcher(ctx, broker, opts) -> Dispatcher:
    """Start the dispatcher and `opts.local_workers` in-process agent hosts.

    The in-process hosts connect to the broker's `local` endpoint (inproc://, in the
    broker's own ZeroMQ context): nothing outside this process can reach it, so they need
    no key, and no other host can pass for them."""
    from .agent_host import AgentHost, HostSettings

    core = _Core(
        send=lambda peer, msg: broker.send(peer.endpoint, peer.identity, msg),
        clock=ctx.clock,
        heartbeat=opts.heartbeat,
        turn_timeout=opts.turn_timeout,
    )
    hosts = []
    count = max(opts.local_workers, 0)
    local = broker.endpoints.get("local")
    if count and (local is None or not local.in_process):
        raise ValueError("in-process hosts need the broker's in-process `local` endpoint")
    for i in range(1, count + 1):
        settings = HostSettings(
            endpoint=local.bound,
            name=in_process_name(i),
            concurrency=1,
            heartbeat=opts.heartbeat,
            config=ctx.config,
            sandbox=ctx.sandbox,
        )
        hosts.append(AgentHost(settings, context=broker.context))
    dispatcher = Dispatcher(core, hosts)
    # Take the agent endpoints' frames directly, before any host can say hello: the caller
    # only learns of the dispatcher when this returns, and a local host is quicker than that.
    for endpoint in broker.endpoints.values():
        if endpoint.name in ("agents", "local"):
            endpoint.handler = dispatcher.on_agent_message
    for host in hosts:
        host.start()
    return dispatcher
