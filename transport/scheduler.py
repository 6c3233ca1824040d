"""Which agent host runs which task: a pure scheduler (no I/O, no threads, time passed in).

The dispatcher feeds it what happened (a host said hello, sent a heartbeat, returned a
result, said bye; a goal queued a task or withdrew its work) and asks it what to do next
(`assign`, `expire`). Every answer is a plain value; the dispatcher does the sending. Times
are seconds on whatever monotonic clock the caller uses.

The rules:

- **Lanes.** A task with a lane goes only to a host that serves that lane. A task without
  a lane goes to any host. A host started with no lanes therefore serves only lane-less
  tasks, and a host with lanes serves its lanes plus lane-less tasks (a lane is a
  specialisation, not a quarantine). A task whose lane no attached host serves waits.
- **Capacity.** A host runs at most `capacity` tasks at once (`crewctl worker
  --concurrency`). A cancelled task keeps its slot until the host reports it stopped.
- **Affinity.** A goal's next task prefers the host (by name, so it survives a reconnect)
  that last took one of that goal's tasks, when that host serves the lane and has a free
  slot; otherwise the host with the most free slots, then the one idle longest. Affinity
  never makes a task wait.
- **Order.** First queued, first assigned among the tasks that can run now; a task that
  cannot run (backoff, lane) never holds up the ones behind it.
- **Backoff.** A task with `not_before` waits until then (the goal core sets it for a retry).
- **Liveness.** A host not heard from for `liveness * heartbeat` seconds is dead: it is
  removed and its in-flight tasks are returned as `Lost`. They are never requeued here: the
  goal core counts the attempt and dispatches the step again under a new task id.
- **Names belong to keys.** The first key (`owner`: the host's CURVE public key, or
  `IN_PROCESS` for the daemon's own hosts) to say hello with a name holds it for the
  scheduler's life (the daemon's run), attached or not: a restarted worker gets its name
  back, and a hello with that name from any other key is refused. Names `local-N` belong
  to the in-process hosts alone, and in-process hosts take only those. So no host can
  take over another's name, its affinity or its in-flight tasks. At most NAMES_CAP names
  are held; past that, hellos with new names are refused.
- **Instances.** A host name belongs to one process at a time. A hello from a known name
  with a new instance id means the old process is gone: its tasks are `Lost`. A hello from
  the same instance on a new connection is a reconnect: it keeps its tasks.
- **One live task per step.** Queueing a task for a (goal, step) withdraws any older task
  of that step: a queued one is dropped, a running one is cancelled.
- **Results.** A result for a task leased to that host completes it (once). A result for a
  task that is no longer leased to the sender (lost, superseded, finished) is *late*: the
  dispatcher forwards it and the goal core records it as `task_late` and ignores it. A
  result for a task never seen is a protocol error. A result for a task we cancelled only
  frees its slot.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

from ..exceptions import ProtocolError

__all__ = [
    "IN_PROCESS",
    "LIVENESS",
    "NAMES_CAP",
    "Completion",
    "Hello",
    "Host",
    "HostInfo",
    "Lost",
    "Scheduler",
    "Task",
    "in_process_name",
    "name_refusal",
]

LIVENESS = 3  # heartbeats a host may miss before it is dead
RETIRED_CAP = 20_000  # task ids remembered after they leave, to recognise late results
DEPARTED_CAP = 1_000  # connections remembered after their host left, for late results
NAMES_CAP = 10_000  # host names held by their keys
IN_PROCESS = "in-process"  # the owner of the daemon's own hosts (a CURVE key is 40 z85 characters)
IN_PROCESS_PREFIX = "local"
_IN_PROCESS_NAME = re.compile(rf"{IN_PROCESS_PREFIX}-[0-9]+")

# Whatever the dispatcher uses to reach one connection (a Peer: endpoint, identity, key).
Connection = Hashable


def in_process_name(n: int) -> str:
    """The name of the daemon's n-th in-process host."""
    return f"{IN_PROCESS_PREFIX}-{n}"


def name_refusal(name: str, owner: str, holder: str | None, held: int) -> str | None:
    """Why `owner` may not say hello as `name` (held by `holder`, None if free, with `held`
    names held in all), or None if it may."""
    if (_IN_PROCESS_NAME.fullmatch(name) is not None) != (owner == IN_PROCESS):
        if owner == IN_PROCESS:
            return f"in-process hosts are named {IN_PROCESS_PREFIX}-N, not {name!r}"
        return f"host name {name!r} is reserved for the supervisor's in-process hosts; pick another --name"
    if holder is not None and holder != owner:
        return f"host name {name!r} belongs to another host's key in this supervisor's run; pick another --name"
    if holder is None and held >= NAMES_CAP:
        return f"this supervisor already holds {NAMES_CAP} host names; restart it to forget them"
    return None


@dataclass
class Task:
    id: str
    goal: str
    step: str
    lane: str | None = None
    not_before: float | None = None
    payload: Any = None  # what the dispatcher sends with it (prompt, workspace, spec, ...)
    seq: int = 0  # arrival order, set by the scheduler
    cancelled: bool = False  # withdrawn while a host runs it: only its slot is still held


@dataclass
class Host:
    name: str
    identity: Connection
    instance: str
    lanes: frozenset[str]
    capacity: int
    last_seen: float
    connected_at: float
    pid: int | None = None
    tasks: dict[str, Task] = field(default_factory=dict)  # in flight, by task id
    last_assigned: float = float("-inf")

    def serves(self, lane: str | None) -> bool:
        return lane is None or lane in self.lanes

    @property
    def free(self) -> int:
        return self.capacity - len(self.tasks)


@dataclass(frozen=True)
class HostInfo:
    """A host as `crewctl status` shows it."""

    name: str
    lanes: tuple[str, ...]
    capacity: int
    in_flight: int
    last_seen: float
    connected_at: float
    instance: str
    pid: int | None


@dataclass(frozen=True)
class Lost:
    """A task whose host died (or left) with it. The goal core decides what happens next."""

    task: Task
    host: str
    reason: str


@dataclass(frozen=True)
class Completion:
    """What a result means: forward it (late or not), or swallow it (we cancelled the task)."""

    task_id: str
    goal: str
    step: str
    host: str
    late: bool = False
    cancelled: bool = False


@dataclass(frozen=True)
class Hello:
    lost: tuple[Lost, ...] = ()
    refused: str | None = None  # why the hello was turned away (nothing changed)
    replaced: Connection | None = None  # the connection this hello takes over from, if any
    reconnect: bool = False  # same instance, new connection: its tasks moved over
    again: bool = False  # a repeated hello on the same connection (nothing changed but lanes/capacity)


class Scheduler:
    def __init__(self, *, heartbeat: float, liveness: int = LIVENESS) -> None:
        if heartbeat <= 0 or liveness < 1:
            raise ValueError("heartbeat must be positive and liveness at least 1")
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.hosts: dict[Connection, Host] = {}  # by connection
        self._by_name: dict[str, Connection] = {}
        self._owners: dict[str, str] = {}  # host name -> the key that holds it
        self.queue: list[Task] = []  # waiting, in arrival order
        self.affinity: dict[str, str] = {}  # goal -> name of the host that last took its task
        self._retired: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task id -> (goal, step)
        self._departed: OrderedDict[Connection, str] = OrderedDict()  # connection -> host name
        self._seq = 0

    # -- hosts ------------------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        """Silence after which a host is dead."""
        return self.heartbeat * self.liveness

    def hello(
        self,
        identity: Connection,
        name: str,
        instance: str,
        lanes: Iterable[str],
        capacity: int,
        now: float,
        pid: int | None = None,
        *,
        owner: str,
    ) -> Hello:
        """A host attaches (or re-attaches). See the module rules on names, keys and instances."""
        if capacity < 1:
            raise ProtocolError("a host needs a concurrency of at least 1")
        lanes = frozenset(lanes)
        current = self.hosts.get(identity)
        if current is not None:
            if current.name != name or current.instance != instance:
                raise ProtocolError("a connection cannot change its host name or instance")
            current.lanes, current.capacity, current.last_seen, current.pid = lanes, capacity, now, pid
            return Hello(again=True)
        refusal = name_refusal(name, owner, self._owners.get(name), len(self._owners))
        if refusal is not None:
            return Hello(refused=refusal)
        self._owners[name] = owner
        self._departed.pop(identity, None)
        host = Host(name=name, identity=identity, instance=instance, lanes=lanes, capacity=capacity, last_seen=now, connected_at=now, pid=pid)
        result = Hello()
        old_identity = self._by_name.get(name)
        if old_identity is not None:
            old = self.hosts.pop(old_identity)
            self._depart(old_identity, old.name)
            if old.instance == instance:
                host.tasks = old.tasks  # the same process on a new connection keeps its work
                host.connected_at = old.connected_at
                result = Hello(replaced=old_identity, reconnect=True)
            else:
                result = Hello(lost=tuple(self._release(old, f"host {name} restarted (new instance)")), replaced=old_identity)
        self.hosts[identity] = host
        self._by_name[name] = identity
        return result

    def seen(self, identity: Connection, now: float) -> Host:
        """Any traffic from a host proves it alive. Raises ProtocolError for a stranger."""
        host = self.hosts.get(identity)
        if host is None:
            raise ProtocolError("message from a host that has not said hello")
        host.last_seen = now
        return host

    def attached(self, identity: Connection) -> bool:
        return identity in self.hosts

    def departed(self, identity: Connection) -> str | None:
        """The name of the host that used this connection before it died or left, if recent."""
        return self._departed.get(identity)

    def bye(self, identity: Connection) -> list[Lost]:
        host = self.hosts.get(identity)
        if host is None:
            raise ProtocolError("bye from a host that has not said hello")
        self._remove(host)
        return self._release(host, f"host {host.name} left")

    def expire(self, now: float) -> list[Lost]:
        """Remove every host silent for longer than the liveness timeout; return its tasks."""
        lost: list[Lost] = []
        for host in [h for h in self.hosts.values() if now - h.last_seen > self.timeout]:
            self._remove(host)
            lost += self._release(host, f"host {host.name} went silent for {now - host.last_seen:.1f}s")
        return lost

    def host_infos(self) -> list[HostInfo]:
        return [
            HostInfo(
                name=h.name,
                lanes=tuple(sorted(h.lanes)),
                capacity=h.capacity,
                in_flight=len(h.tasks),
                last_seen=h.last_seen,
                connected_at=h.connected_at,
                instance=h.instance,
                pid=h.pid,
            )
            for h in sorted(self.hosts.values(), key=lambda h: h.name)
        ]

    def _remove(self, host: Host) -> None:
        self.hosts.pop(host.identity, None)
        if self._by_name.get(host.name) == host.identity:
            del self._by_name[host.name]
        self._depart(host.identity, host.name)

    def _depart(self, identity: Connection, name: str) -> None:
        self._departed[identity] = name
        while len(self._departed) > DEPARTED_CAP:
            self._departed.popitem(last=False)

    def _release(self, host: Host, reason: str) -> list[Lost]:
        lost = []
        for task in host.tasks.values():
            self._retire(task)
            if not task.cancelled:
                lost.append(Lost(task=task, host=host.name, reason=reason))
        host.tasks = {}
        return lost

    def _retire(self, task: Task) -> None:
        self._retired[task.id] = (task.goal, task.step)
        self._retired.move_to_end(task.id)
        while len(self._retired) > RETIRED_CAP:
            self._retired.popitem(last=False)

    # -- tasks ------------------------------------------------------------------------------

    def enqueue(self, task: Task) -> list[tuple[Connection, str]]:
        """Queue a task. Returns (identity, task id) of older tasks of the same step to cancel."""
        if self._known(task.id):
            raise ValueError(f"task {task.id} was queued before")
        cancels: list[tuple[Connection, str]] = []
        for old in [t for t in self.queue if t.goal == task.goal and t.step == task.step]:
            self.queue.remove(old)
            self._retire(old)
        for host in self.hosts.values():
            for old in host.tasks.values():
                if old.goal == task.goal and old.step == task.step and not old.cancelled:
                    old.cancelled = True
                    cancels.append((host.identity, old.id))
        self._seq += 1
        task.seq = self._seq
        self.queue.append(task)
        return cancels

    def cancel_goal(self, goal: str) -> list[tuple[Connection, str]]:
        """Withdraw a goal's work: queued tasks go, running ones are to be cancelled."""
        for task in [t for t in self.queue if t.goal == goal]:
            self.queue.remove(task)
            self._retire(task)
        cancels = []
        for host in self.hosts.values():
            for task in host.tasks.values():
                if task.goal == goal and not task.cancelled:
                    task.cancelled = True
                    cancels.append((host.identity, task.id))
        self.affinity.pop(goal, None)
        return cancels

    def assign(self, now: float) -> list[tuple[Task, Host]]:
        """Lease every task that can run now to a host, by the module's rules."""
        free = sum(max(h.free, 0) for h in self.hosts.values())
        if free <= 0 or not self.queue:
            return []
        leased: list[tuple[Task, Host]] = []
        waiting: list[Task] = []
        for task in self.queue:
            if free <= 0 or (task.not_before is not None and task.not_before > now):
                waiting.append(task)
                continue
            host = self._pick(task)
            if host is None:
                waiting.append(task)
                continue
            host.tasks[task.id] = task
            host.last_assigned = now
            self.affinity[task.goal] = host.name
            free -= 1
            leased.append((task, host))
        self.queue = waiting
        return leased

    def _pick(self, task: Task) -> Host | None:
        preferred = self._by_name.get(self.affinity.get(task.goal, ""))
        if preferred is not None:
            host = self.hosts[preferred]
            if host.free > 0 and host.serves(task.lane):
                return host
        best: Host | None = None
        for host in self.hosts.values():
            if host.free <= 0 or not host.serves(task.lane):
                continue
            if best is None or (host.free, -host.last_assigned, host.name) > (best.free, -best.last_assigned, best.name):
                best = host
        return best

    def next_due(self, now: float) -> float | None:
        """The earliest future `not_before` among queued tasks (when to try assigning again)."""
        due = [t.not_before for t in self.queue if t.not_before is not None and t.not_before > now]
        return min(due) if due else None

    def complete(self, identity: Connection, task_id: str) -> Completion:
        """A host returned a result for `task_id`. Raises ProtocolError if it makes no sense."""
        host = self.hosts.get(identity)
        name = host.name if host is not None else self._departed.get(identity)
        if name is None:
            raise ProtocolError("result from a host that has not said hello")
        if host is not None and task_id in host.tasks:
            task = host.tasks.pop(task_id)
            self._retire(task)
            return Completion(task_id, task.goal, task.step, host.name, cancelled=task.cancelled)
        where = self._where(task_id)
        if where is None:
            raise ProtocolError("result for an unknown task")
        goal, step = where
        return Completion(task_id, goal, step, name, late=True)

    def _known(self, task_id: str) -> bool:
        return self._where(task_id) is not None

    def _where(self, task_id: str) -> tuple[str, str] | None:
        if task_id in self._retired:
            return self._retired[task_id]
        for task in self.queue:
            if task.id == task_id:
                return task.goal, task.step
        for host in self.hosts.values():
            task = host.tasks.get(task_id)
            if task is not None:
                return task.goal, task.step
        return None

    def queued(self) -> int:
        return len(self.queue)

    def in_flight(self) -> int:
        return sum(len(h.tasks) for h in self.hosts.values())
