"""The daemon: `crewctl run`. One per $CREWCTL_HOME.

Its length (about 680 lines) is one start-up and shutdown sequence read top to bottom: the
order of lock, store, sockets, sandbox, resume and drain is the contract, and splitting it
would hide that order across files.

It makes the home private (0700), holds the home's lock, opens the store, binds three
ROUTERs, starts one supervisor per live goal (each resumes from the store), answers the
CLI, and on SIGTERM/SIGINT drains: no new turns, in-flight turns get a grace period,
everything is flushed, the lock and endpoint file are released.

The three endpoints, and what each one proves about who is talking (transport/broker.py):
- control: the operator's. ipc:// in the home's private run directory by default, or
  `--control tcp://...`; every request carries the token of daemon.json, checked before
  its payload is decoded; frames capped at 64 KiB (transport/control.py);
- agents (`--listen`): `crewctl worker` hosts, always CURVE, loopback included: only keys
  in $CREWCTL_HOME/keys/allowed get in, and each host name is bound to its key. The
  server's key pair is made in the home on the first start;
- local: inproc://, for the `--local-workers` hosts inside this process.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pykka

from .. import brains
from ..config import ROLES, Config, ConfigWatch
from ..exceptions import AlreadyRunning, ConfigError, CrewError, ProtocolError, Refused, StoreError, UsageError
from ..goal import events as ev
from ..goal import phases, validate
from ..goal import protect as protection
from ..goal.criteria import parse_criteria
from ..goal.model import GOAL_DEFAULTS, TERMINAL, Budget
from ..home import private_dir
from ..sandbox import Sandbox
from ..store import Store, open_store
from ..transport import control, keys
from ..transport.broker import Broker, Endpoint
from ..transport.codec import message
from ..transport.control import new_token, read_daemon_info, remove_daemon_info, write_daemon_info, pid_alive
from .messages import Abort, Busy, ControlRequest, Deliver, Perform, Shutdown, SupervisorStopped
from .roles import VerifierSettings
from .snapshot import SnapshotLimits
from .runtime import arm_crash_points, utcnow
from .starting_point import record_start
from .supervisor import Context, GoalSupervisor

__all__ = ["DaemonOptions", "run_daemon", "is_loopback"]

log = logging.getLogger("crewctl.daemon")

SUPERVISOR_RESTARTS = 5  # per goal, within ...
SUPERVISOR_WINDOW = 60.0


@dataclass(frozen=True)
class HookReport:
    goal_id: str
    event: ev.HookFailed


@dataclass
class DaemonOptions:
    home: str
    db_url: str | None = None
    listen: str = "tcp://127.0.0.1:*"
    local_workers: int = 1
    config: Config | None = None
    grace: float = 10.0
    turn_timeout: float | None = None
    heartbeat: float = 1.0
    control: str | None = None  # the control endpoint (`crewctl run --control`); None: ipc:// in the home
    sandbox: str | None = None  # "on" | "off" (`crewctl run --sandbox`); None: the config's [sandbox] mode


def is_loopback(endpoint: str) -> bool:
    if endpoint.startswith(("inproc://", "ipc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class _HomeLock:
    """flock on $CREWCTL_HOME/daemon.lock: a second `crewctl run` on the same home is refused."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, "daemon.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            info = read_daemon_info(home)
            pid = f" (pid {info['pid']})" if info and pid_alive(info.get("pid")) else ""
            raise AlreadyRunning(f"a supervisor is already running for {home}{pid}") from None

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        except OSError:
            pass


class Daemon(pykka.ThreadingActor):
    def __init__(
        self,
        ctx: Context,
        send_control: Callable[[bytes, dict], None],
        status: Callable[[], dict],
        config_watch: ConfigWatch | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.config_watch = config_watch or ConfigWatch(ctx.config, ctx.config.path, fixed=True)
        self.send_control = send_control  # only requests that carried the token reach this actor
        self.status = status
        self.goals: dict[str, pykka.ActorRef] = {}
        self.restarts: dict[str, list[float]] = {}
        self.draining = False

    def on_start(self) -> None:
        self.ctx.daemon = self.actor_ref

    def on_receive(self, msg: Any) -> Any:
        if msg == "resume":
            try:
                return self._resume_all()
            except CrewError as exc:  # at start: returned, for the caller to report in one line
                return exc
        try:
            if isinstance(msg, ControlRequest):
                self._control(msg)
            elif isinstance(msg, SupervisorStopped):
                self._supervisor_stopped(msg)
            elif isinstance(msg, HookReport):
                self._hook_failed(msg)
            elif isinstance(msg, Shutdown):
                self.draining = True
                for ref in self.goals.values():
                    ref.tell(msg)
                return list(self.goals.values())
        except Exception:  # the daemon answers every later request, whatever this one did
            log.exception("the daemon could not handle %s", type(msg).__name__)
        return None

    # -- supervisors ---------------------------------------------------------------------

    def _resume_all(self) -> int:
        ids = self.ctx.store.live_goal_ids() + self.ctx.store.outputs_due_ids()
        for goal_id in ids:
            self._start_supervisor(goal_id, recover=True)
        return len(ids)

    def _start_supervisor(self, goal_id: str, *, recover: bool) -> pykka.ActorRef:
        ref = GoalSupervisor.start(self.ctx, goal_id)
        self.goals[goal_id] = ref
        assert self.ctx.sandbox is not None
        if not self.ctx.sandbox.enabled:
            ref.tell(Deliver(ev.Unsandboxed(why="crewctl run --sandbox off ([sandbox] mode = \"off\")")))
        if recover:
            ref.tell(Deliver(ev.Recover()))
        return ref

    def _supervisor_stopped(self, msg: SupervisorStopped) -> None:
        self.goals.pop(msg.goal_id, None)
        if msg.crashed is None or self.draining:
            return
        now = time.monotonic()
        recent = [t for t in self.restarts.get(msg.goal_id, []) if now - t < SUPERVISOR_WINDOW] + [now]
        self.restarts[msg.goal_id] = recent
        if len(recent) > SUPERVISOR_RESTARTS:
            log.error("goal %s: supervisor keeps crashing (%s); not restarting it", msg.goal_id, msg.crashed)
            self._block_crash_loop(msg.goal_id, f"its supervisor crashed {len(recent)} times in {SUPERVISOR_WINDOW:g}s: {msg.crashed}")
            return
        log.warning("goal %s: supervisor crashed (%s); restarting from the store", msg.goal_id, msg.crashed)
        self._start_supervisor(msg.goal_id, recover=True)

    def _block_crash_loop(self, goal_id: str, error: str) -> None:
        """Record why the goal stopped: blocked, crash_loop, with the error. Written here,
        not by the goal's own supervisor, which is the thing that keeps failing."""
        try:
            state, version = self.ctx.store.load_goal(goal_id)
            now = self.ctx.clock()
            t = phases.step(state, ev.Fault(reason="crash_loop", error=error), now)
            if t.records:
                self.ctx.store.commit(state, version, t, now.isoformat())
        except Exception:
            log.exception("goal %s: could not record crash_loop", goal_id)

    def _hook_failed(self, msg: "HookReport") -> None:
        """Record a failed hook in the goal's timeline: through its supervisor while it has
        one (the goal's only writer), directly once that is gone (on_done runs at the end)."""
        ref = self.goals.get(msg.goal_id)
        if ref is not None and ref.is_alive():
            # Still its goal's writer (a done goal's supervisor lives on while its reflection
            # and envelope are made): it records the event, whatever the status.
            try:
                ref.tell(Deliver(msg.event))
                return
            except pykka.ActorDeadError:
                pass  # it stopped just now: nobody writes the goal any more
        try:
            state, version = self.ctx.store.load_goal(msg.goal_id)
            now = self.ctx.clock()
            transition = phases.step(state, msg.event, now)
            self.ctx.store.commit(state, version, transition, now.isoformat())
        except (CrewError, pykka.ActorDeadError) as exc:
            log.warning("goal %s: could not record hook_failed: %s", msg.goal_id, exc)

    # -- the control RPC -------------------------------------------------------------------

    def _control(self, req: ControlRequest) -> None:
        msg = req.message
        request_id = msg.get("id")
        if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
            request_id = None  # echoed back: plain data only
        op = msg.get("op")

        def reply(ok: bool, payload: Any) -> None:
            try:
                if ok:
                    # A goal prints as `goal show --json` does (with when its turn started, since when it waits).
                    result = self.ctx.store.view_of(payload) if hasattr(payload, "criteria") else payload
                    frame = message("reply", id=request_id, ok=True, result=result)
                else:
                    code, text = payload
                    frame = message("reply", id=request_id, ok=False, error={"code": code, "message": text})
                self.send_control(req.identity, frame)
            except Exception as exc:  # a reply that cannot be encoded is a bug, told as one
                log.exception("cannot send the reply to %r", op)
                self.send_control(req.identity, message(
                    "reply", id=request_id, ok=False,
                    error={"code": "error", "message": f"internal error: the reply could not be sent ({type(exc).__name__})"},
                ))

        try:
            if msg.get("type") != "request":
                raise ProtocolError("expected a request")
            # Every request's input, checked by the same rules the CLI applied before sending:
            # a bad request is a usage error here, and nothing after this line guesses.
            args = validate.request(op, msg.get("args"))
            if self.draining and op != "status":
                raise Refused("the supervisor is shutting down")
            handler = _OPS.get(op)
            if handler is None:
                raise UsageError(f"unknown operation {op!r}")
            handler(self, args, reply)
        except CrewError as exc:
            reply(False, (exc.code, exc.message))
        except Exception as exc:  # a bug: logged with its traceback, answered as an error (not usage)
            log.exception("control request %r failed", op)
            reply(False, ("error", f"internal error in {op}: {type(exc).__name__}: {exc} (see the supervisor log)"))

    def _route(self, args: dict, event: ev.Event, reply) -> None:
        goal_id = self.ctx.store.resolve_id(args["id"])
        ref = self.goals.get(goal_id)
        if ref is None or not ref.is_alive():
            state, _ = self.ctx.store.load_goal(goal_id)
            if state.status in TERMINAL:
                raise Refused(f"goal {goal_id} is {state.status}")
            self.restarts.pop(goal_id, None)  # the operator asks again: supervision starts afresh
            ref = self._start_supervisor(goal_id, recover=True)
        ref.tell(Deliver(event, reply=reply))

    def op_new(self, args: dict, reply) -> None:
        config = self._config(args.get("config_path"))
        objective = args["objective"].strip()
        workspace = args["workspace"]
        if not os.path.isabs(workspace) or not os.path.isdir(workspace):
            raise UsageError(f"workspace {workspace} is not a directory")
        criteria = parse_criteria(args["criteria"]) if args.get("criteria") else ()
        roster = config.roster_for({role: args.get(role) for role in ROLES})
        for role, spec in roster.items():
            try:
                brains.check_runnable(spec, config)  # a brain that cannot run here fails now, not hours later
            except ConfigError as exc:
                given = "--" + role if args.get(role) else f"[roster] {role} in {config.path}"
                raise UsageError(f"{given} {spec!r}: {exc.message}") from None
        if "lead" not in roster:
            where = config.path or self.config_watch.path or "the config file"
            raise UsageError(f"no lead brain: pass --lead SPEC or set [roster] lead in {where}")
        if "verifier" not in roster and (not criteria or any(c.check is None for c in criteria)):
            raise UsageError(
                "criteria without a check command need a verifier: pass --verifier SPEC "
                "(or give every criterion a --check)"
            )
        defaults = config.defaults

        def pick(key: str) -> Any:
            """`goal new`'s value, else the config's [defaults], else the goal's own default."""
            for value in (args.get(key), defaults.get(key), GOAL_DEFAULTS.get(key)):
                if value is not None:
                    return value
            return None

        settings = phases.GoalSettings(
            roster=roster,
            budget=Budget(
                tokens=pick("token_budget"),
                seconds=_float(pick("time_budget")),
                cost_usd=_float(pick("cost_budget")),
            ),
            attempt_cap=pick("attempt_cap"),
            max_auto_turns=pick("max_auto_turns"),
            max_turns=pick("max_turns"),
            check_timeout=float(pick("check_timeout")),
            step_attempts=pick("step_attempts"),
            replan_budget=pick("replan_budget"),
            protect=_protect_settings(args),
            **_outputs_settings(self.ctx.home, workspace),
        )
        now = self.ctx.clock()
        goal_id = secrets.token_hex(4)
        start = record_start(self.ctx.home, goal_id, workspace, now.isoformat())  # for the report's changed files
        transition = phases.new_goal(goal_id, objective, workspace, settings, now, criteria=criteria, start=start)
        self.ctx.store.create_goal(transition, now.isoformat())
        ref = self._start_supervisor(goal_id, recover=False)
        ref.tell(Perform(transition.effects))
        reply(True, transition.state)

    def _config(self, client_path: Any) -> Config:
        """The one config, as it is on disk now. A CLI that reads another file than this
        supervisor would see one roster and get another: that is refused, naming both."""
        watch = self.config_watch
        if isinstance(client_path, str) and watch.path is not None and not watch.fixed:
            mine, theirs = os.path.abspath(watch.path), os.path.abspath(client_path)
            if mine != theirs and (os.path.exists(mine) or os.path.exists(theirs)):
                raise UsageError(
                    f"this crewctl reads its config from {theirs} but the supervisor reads {mine}; "
                    "run both with the same CREWCTL_CONFIG (or neither), then try again"
                )
        try:
            config = watch.current()
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (the supervisor keeps its last good config for running goals)") from None
        if config is not self.ctx.config:
            log.info("config %s read again: it changed", watch.path)
            self.ctx.config = config
        return config

    def op_status(self, args: dict, reply) -> None:
        reply(True, self.status())


def _outputs_settings(home: str, workspace: str) -> dict[str, Any]:
    """What earlier goals left for this one (memory, skills) and where the workspace's git
    history stands now (the PR envelope's base)."""
    from ..outputs import briefing_for
    from ..outputs.envelope import base_of

    base = base_of(workspace)
    return {"briefing": briefing_for(home, workspace), "base_commit": base.commit, "base_branch": base.branch}


def _simple(event_factory: Callable[[dict], ev.Event]) -> Callable:
    """An operation that turns its arguments into one goal event for the goal's supervisor."""

    def op(self: Daemon, args: dict, reply) -> None:
        self._route(args, event_factory(args), reply)

    return op



# Each operation's arguments arrive checked by goal.validate.request (types, bounds, UTF-8).
_OPS: dict[str, Callable] = {
    "goal.new": Daemon.op_new,
    "goal.answer": _simple(lambda a: ev.Answer(answers=a["answers"], seq=a.get("seq"))),
    "goal.criteria": _simple(lambda a: ev.EditCriteria(criteria=parse_criteria(a["criteria"]))),
    "goal.steer": _simple(lambda a: ev.Steer(text=a["message"])),
    "goal.pause": _simple(lambda a: ev.Pause()),
    "goal.resume": _simple(lambda a: ev.Resume()),
    "goal.cancel": _simple(lambda a: ev.Cancel()),
    "goal.approve": _simple(lambda a: ev.Approve(step=a["step"], reject=a.get("reject", False))),
    "goal.budget": _simple(lambda a: ev.RaiseBudget(tokens=a.get("tokens"), seconds=a.get("seconds"), cost_usd=a.get("cost"))),
    "goal.signoff": _simple(lambda a: ev.Signoff()),
    "goal.send_back": _simple(lambda a: ev.SendBack(notes=a["notes"])),
    "goal.protect": _simple(
        lambda a: ev.EditProtect(add=_globs(a, "add"), remove=_globs(a, "remove"), rebaseline=bool(a.get("rebaseline")))
    ),
    "status": Daemon.op_status,
}


def _globs(args: dict, key: str) -> tuple[str, ...]:
    value = args.get(key) or []
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise UsageError(f"{key} must be a list of glob patterns")
    if len(value) > protection.MAX_PATTERNS:
        raise UsageError(f"at most {protection.MAX_PATTERNS} {key} patterns")
    for glob in value:
        if problem := protection.pattern_problem(glob):
            raise UsageError(f"protect pattern {glob!r} {problem}")
    return tuple(dict.fromkeys(value))


def _protect_settings(args: dict):
    patterns = _globs(args, "protect")
    if args.get("no_protect"):
        if patterns:
            raise UsageError("--protect and --no-protect contradict each other; give one")
        return protection.settings(enabled=False, off="--no-protect")
    return protection.settings(patterns)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- the process ---------------------------------------------------------------------------


def run_daemon(opts: DaemonOptions, *, stop: threading.Event | None = None, on_ready: Callable[[dict], None] | None = None) -> int:
    """Run a supervisor in the foreground until `stop` is set or SIGTERM/SIGINT arrives."""
    from ..config import config_source, load_config

    if opts.config is not None:
        config, watch = opts.config, ConfigWatch(opts.config, opts.config.path, fixed=True)
    else:
        path, named = config_source()
        config = load_config(path, required=named)
        watch = ConfigWatch(config, path)
    validate.endpoint(opts.listen, "--listen", bind=True)
    _prepare_home(opts.home)
    lock = _HomeLock(opts.home)
    try:
        arm_crash_points(os.environ.get("CREWCTL_CRASH_AT"))
        if opts.listen.startswith("inproc://"):
            raise UsageError(f"--listen {opts.listen}: inproc:// reaches nothing outside this process; use tcp://HOST:PORT")
        control_endpoint = control.check_control_endpoint(opts.control) if opts.control else None
        sandbox = _hiding_control(Sandbox.from_config(config, opts.home, opts.sandbox), opts.home, control_endpoint)
        # Whatever a killed run left (an agent, a check, a verifier's brain) ends before
        # any goal resumes: never two copies of one turn at work.
        left = sandbox.ledger.reap()
        if left:
            log.warning("ended %d process(es) a previous run left behind: %s", len(left), ", ".join(map(str, left)))
        store = open_store(opts.db_url, opts.home)
        try:
            _preflight(store)
            _server_keys(opts.home)  # after the store: a bad --db is the one line a user sees
        except BaseException:
            store.close()
            raise
        if watch.path is not None and not watch.fixed:
            log.info("config %s%s", watch.path, "" if config.path else " (no such file: the empty config; read when it appears)")
        log.info("agents run in: %s", sandbox.describe())
        return _serve(opts, config, store, sandbox, stop or threading.Event(), on_ready, control_endpoint, watch)
    finally:
        lock.release()


def _prepare_home(home: str) -> None:
    """$CREWCTL_HOME as a directory this process can write, or one line saying why not."""
    if os.path.exists(home) and not os.path.isdir(home):
        raise CrewError(f"CREWCTL_HOME {home} is a file, not a directory; point CREWCTL_HOME (or --home) at a directory")
    try:
        private_dir(home)
        probe = os.path.join(home, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:  # private_dir's own refusals (another user's directory) are UsageErrors
        raise CrewError(f"cannot use CREWCTL_HOME {home}: {exc.strerror or exc}; it must be a directory this user can write") from None


def _preflight(store: Store) -> None:
    """Read every live goal before any actor starts: a damaged store is one clear line at
    start, not a supervisor that dies on its first goal."""
    try:
        for goal_id in store.live_goal_ids():
            try:
                store.load_goal(goal_id)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # One goal's row that does not decode is that goal's trouble: the others
                # are served, and its supervisor's failures are logged.
                log.error("goal %s cannot be read (%s: %s); the other goals are served", goal_id, type(exc).__name__, exc)
    except StoreError as exc:
        raise StoreError(f"{exc.message}; the store may be damaged: restore it from a backup or move it aside") from None


def _hiding_control(sandbox: Sandbox, home: str, control_endpoint: str | None) -> Sandbox:
    """The sandbox with the control socket's directory masked too, where it is not already
    (the masked home holds it, unless its path was too long and it moved under /tmp)."""
    if control_endpoint is not None:
        return sandbox
    run = control.run_dir(home)
    if os.path.commonpath([os.path.realpath(run), sandbox.home]) == sandbox.home:
        return sandbox
    return dataclasses.replace(sandbox, masked=(*sandbox.masked, run))


def _server_keys(home: str) -> tuple[bytes, bytes]:
    """The agents endpoint's CURVE pair, made in the home on the first start."""
    if not keys.has_server_keys(home):
        public, _ = keys.init_server_keys(home, force=True)
        log.info("made this supervisor's CURVE keys; a worker on another machine needs %s (`crewctl worker --server-key`)", public)
    keys.secure_keys_dir(home)
    return keys.server_keys(home)


def _serve(
    opts: DaemonOptions, config: Config, store: Store, sandbox: Sandbox, stop: threading.Event, on_ready, control_endpoint: str | None,
    watch: ConfigWatch | None = None,
) -> int:
    token = new_token()
    started_at = utcnow().isoformat()
    ctx = Context(
        home=opts.home,
        store=store,
        config=config,
        clock=utcnow,
        verifier=_verifier_settings(config),
        turn_timeout=opts.turn_timeout,
        sandbox=sandbox,
    )
    holder: dict[str, Any] = {}

    def on_control(peer, msg: dict) -> None:
        holder["daemon"].tell(ControlRequest(peer.identity, msg))

    def on_agent(peer, msg: dict) -> None:
        dispatcher = holder.get("dispatcher")
        if dispatcher is None:
            raise ProtocolError("no agent hosts are served here")
        dispatcher.on_agent_message(peer, msg)

    if control_endpoint and control_endpoint.startswith("tcp://") and not is_loopback(control_endpoint):
        log.warning("control on %s: the token travels unencrypted; reach it through a tunnel you trust", control_endpoint)
    control_ep = Endpoint(
        "control",
        control_endpoint or control.default_control_endpoint(opts.home),
        on_control,
        max_frame=control.CONTROL_MAX_FRAME,
        token=token.encode(),
    )
    agent_endpoint = Endpoint("agents", opts.listen, on_agent)
    agent_endpoint.curve_public, agent_endpoint.curve_secret = keys.server_keys(opts.home)
    local_endpoint = Endpoint("local", f"inproc://crewctl-local-{secrets.token_hex(8)}", on_agent, in_process=True)
    broker = Broker([control_ep, agent_endpoint, local_endpoint])

    def status() -> dict:
        hosts = holder["dispatcher"].hosts() if holder.get("dispatcher") else []
        return {
            "daemon": {
                "pid": os.getpid(),
                "listen": agent_endpoint.bound,
                "control": control_ep.bound,
                "home": opts.home,
                "db": store.describe,
                "started_at": started_at,
                "goals": len(store.live_goal_ids()),
                "sandbox": sandbox.describe(),
                "config": watch.path if watch is not None else config.path,
            },
            "hosts": hosts,
            "dropped_frames": broker.dropped(),
            "dropped_reasons": broker.drop_reasons(),
        }

    daemon = Daemon.start(ctx, lambda ident, msg: broker.send("control", ident, msg), status, watch)
    holder["daemon"] = daemon
    if config.hooks.get("on_attention") or config.hooks.get("on_done"):
        from .hooks import HookRunner

        ctx.hooks = HookRunner(config.hooks, store, lambda goal_id, event: daemon.tell(HookReport(goal_id, event)))
    authenticator = None
    try:
        authenticator = keys.start_authenticator(opts.home, broker.context)
        broker.start()
        broker.ready.wait()
        if broker.failed is not None:
            raise UsageError(f"cannot listen: {broker.failed}")
        from .dispatcher import start_dispatcher

        holder["dispatcher"] = start_dispatcher(ctx, broker, opts)
        ctx.dispatcher = holder["dispatcher"].ref if holder["dispatcher"] else None
        info = {
            "pid": os.getpid(),
            "control": control_ep.bound,
            "listen": agent_endpoint.bound,
            "token": token,
            "home": opts.home,
            "db": store.describe,
            "started_at": started_at,
        }
        write_daemon_info(opts.home, info)
        resumed = daemon.ask("resume")
        if isinstance(resumed, BaseException):
            raise resumed
        log.info(
            "supervisor %d serving %s; %d live goal(s) resumed; control on %s; agents (CURVE) on %s",
            os.getpid(), opts.home, resumed, control_ep.bound, agent_endpoint.bound,
        )
        if on_ready:
            on_ready(info)
        _wait_for_stop(stop)
        log.info("shutting down: no new turns; in-flight turns get %gs", opts.grace)
        _drain(daemon, opts.grace)
        return 0
    finally:
        if holder.get("dispatcher"):
            holder["dispatcher"].stop()
        if ctx.hooks is not None:
            ctx.hooks.close()
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        broker.stop()
        broker.join(timeout=5)
        if authenticator is not None:
            authenticator.stop()
        remove_daemon_info(opts.home, os.getpid())
        if control_endpoint is None:
            control.remove_run_dir(opts.home)
        store.close()


def _verifier_settings(config: Config) -> VerifierSettings:
    section = getattr(config, "verifier", None) or {}
    snapshot = getattr(config, "snapshot", None) or {}
    return VerifierSettings(
        inherit_home=section.get("home") == "inherit",
        snapshot_limits=SnapshotLimits(
            max_bytes=snapshot.get("quota", SnapshotLimits.max_bytes),
            max_files=snapshot.get("max_files", SnapshotLimits.max_files),
        ),
    )


def _wait_for_stop(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        previous = {}

        def handler(signum, frame):
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        try:
            while not stop.wait(0.5):  # poll: signal handlers run between waits on the main thread
                pass
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
    else:
        stop.wait()


def _drain(daemon: pykka.ActorRef, grace: float) -> None:
    """No new turns; wait up to `grace` for the turns in flight to be recorded."""
    try:
        supervisors = daemon.ask(Shutdown(grace), timeout=5)
    except pykka.Timeout:
        return
    deadline = time.monotonic() + grace
    for ref in supervisors:
        while time.monotonic() < deadline:
            try:
                if not ref.ask(Busy(), timeout=max(deadline - time.monotonic(), 0.01)):
                    break
            except (pykka.ActorDeadError, pykka.Timeout):
                break
            time.sleep(0.1)  # poll: a turn's result arrives as a message to the supervisor
    # Past the grace period: stop what still runs. Its turn is in the store as started,
    # so the next `crewctl run` runs it again.
    for ref in supervisors:
        try:
            ref.ask(Abort(), timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
