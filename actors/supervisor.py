"""The goal supervisor: one actor per goal, the only writer of its goal.

For every event: `phases.step` decides; the new state and its records are committed in one
transaction; only then are the effects performed. Effects are derived from durable state,
so an effect lost to a crash is derived again by `Recover` when the goal is picked up.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import pykka

from ..brains import Message
from ..config import Config
from ..exceptions import Refused, StoreError
from ..goal import events as ev
from ..goal import phases
from ..goal.attention import hook_due
from ..goal.effects import (
    CancelWork,
    DispatchStep,
    EndRound,
    PrepareReflection,
    Release,
    RunLeadTurn,
    RunReflection,
    RunVerifierTurn,
    StartRound,
    TakeBaseline,
    Transition,
    WakeAt,
)
from ..goal.model import GoalState
from ..goal.vocab import RecordType as R
from ..sandbox import Sandbox
from ..store import SessionWrite, Store
from .messages import Abort, Busy, Deliver, Perform, RoleCrashed, RunTurn, Shutdown, SupervisorStopped
from .outputs import OUTPUT_EFFECTS, Outputs
from .roles import Interrupt, LeadActor, RoundActor, VerifierSettings
from .runtime import crash_point
from .snapshot import SnapshotError, observe

__all__ = ["Context", "GoalSupervisor"]

log = logging.getLogger("crewctl.supervisor")


@dataclass
class Context:
    """What every supervisor of one daemon shares."""

    home: str
    store: Store
    config: Config
    clock: Callable[[], datetime]
    verifier: VerifierSettings = field(default_factory=VerifierSettings)
    sandbox: Sandbox | None = None  # None: Sandbox.off(home), for tests that build a Context by hand
    turn_timeout: float | None = None
    dispatcher: pykka.ActorRef | None = None
    daemon: pykka.ActorRef | None = None
    hooks: Any = None  # actors.hooks.HookRunner when the config has [hooks]

    def __post_init__(self) -> None:
        if self.sandbox is None:
            self.sandbox = Sandbox.off(self.home)


class GoalSupervisor(pykka.ThreadingActor):
    def __init__(self, ctx: Context, goal_id: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.goal_id = goal_id
        self.state: GoalState | None = None
        self.version = 0
        self.lead: pykka.ActorRef | None = None
        self.lead_cancel: threading.Event | None = None
        self.round: pykka.ActorRef | None = None
        self.round_interrupt: Interrupt | None = None
        self.timer: threading.Timer | None = None
        self.draining = False
        self.released = False
        self.running: int | None = None  # the turn whose result we wait for, if any
        self.outputs = Outputs(self)  # reflection, PR envelope, memory, skills

    # -- lifecycle ---------------------------------------------------------------------------

    def on_start(self) -> None:
        self.state, self.version = self.ctx.store.load_goal(self.goal_id)

    def on_stop(self) -> None:
        self._stop_children(cancel=True)
        self.outputs.stop()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._stop_children(cancel=True)
        self.outputs.stop()
        if self.ctx.daemon is not None:
            self.ctx.daemon.tell(SupervisorStopped(self.goal_id, crashed=f"{exception_type.__name__}: {exception_value}"))

    # -- messages ----------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self._apply(message)
        elif isinstance(message, RoleCrashed):
            self.running = None
            if message.role == "lead":
                self.lead = None
            self._apply(Deliver(ev.ActorCrashed(role=message.role, error=message.error, turn=message.turn)))
        elif isinstance(message, Perform):
            for effect in message.effects:
                self._perform(effect)
        elif isinstance(message, Shutdown):
            self.draining = True
        elif isinstance(message, Busy):
            return self.running is not None
        elif isinstance(message, Abort):
            self.running = None
            self._stop_children(cancel=True)
            self.outputs.stop_reflector()
        return None

    def _apply(self, msg: Deliver) -> None:
        assert self.state is not None
        if self.running is not None and getattr(msg.event, "turn", None) == self.running and isinstance(
            msg.event, (ev.TurnFinished, ev.TurnFailed, ev.RoundFinished, ev.ReflectionFinished, ev.ReflectionFailed)
        ):
            self.running = None
        now = self.ctx.clock()
        try:
            t = phases.step(self.state, msg.event, now)
        except Refused as exc:
            _answer(msg.reply, False, (exc.code, exc.message))
            return
        except Exception as exc:  # a bug met this event: it must not take the goal's supervisor down
            what = type(msg.event).__name__
            log.exception("goal %s: handling %s failed", self.goal_id, what)
            error = f"{type(exc).__name__} while handling {what}: {exc}"
            if type(msg.event) in phases.OPERATOR_EVENTS:
                # The operator's request changed nothing (step is pure): say so, and let the
                # goal go on as it was.
                _answer(msg.reply, False, ("error", f"internal error: {error}; the goal is unchanged (see the supervisor log)"))
                return
            # A turn's result or a timer that cannot be applied would leave the goal waiting
            # for something that already happened: block it with the error instead. If even
            # that fails, the actor crashes and supervision takes over (crash_loop).
            t = phases.step(self.state, ev.Fault(reason="internal_error", error=error), now)
            msg = Deliver(ev.Fault(reason="internal_error", error=error), reply=msg.reply)
        if msg.before_record and t.records:
            crash_point("after_reply_before_record")
        if t.records or t.state != self.state:
            try:
                self.version = self.ctx.store.commit(
                    self.state,
                    self.version,
                    t,
                    now.isoformat(),
                    turn_writes=msg.turn_writes,
                    session_writes=msg.session_writes,
                )
            except StoreError as exc:
                _answer(msg.reply, False, (exc.code, exc.message))
                raise  # the daemon restarts this supervisor from the store
        old, self.state = self.state, t.state
        self._crash_points(t)
        _answer(msg.reply, True, self.state)
        if self.ctx.hooks is not None and (hook := hook_due(old, self.state)):
            self.ctx.hooks.fire(hook, self.state)  # returns at once: hooks never hold a goal up
        self._perform_all(t)

    def _crash_points(self, t: Transition) -> None:
        types = {r.type for r in t.records}
        if R.READY in types:
            crash_point("after_ready_persisted")
        if R.VERIFY in types:
            crash_point("after_verify_persisted")
        if R.STEER in types:
            crash_point("after_steer_persisted")

    def _perform_all(self, t: Transition) -> None:
        dispatches = [e for e in t.effects if isinstance(e, DispatchStep)]
        half = len(dispatches) // 2 if len(dispatches) > 1 else None
        sent = 0
        for effect in t.effects:
            if isinstance(effect, DispatchStep):
                if half is not None and sent == half:
                    crash_point("mid_dispatch")
                sent += 1
            self._perform(effect)

    # -- effects -----------------------------------------------------------------------------

    def _perform(self, effect: Any) -> None:
        if self.released:
            return
        if self.draining and isinstance(effect, (RunLeadTurn, StartRound, RunVerifierTurn, DispatchStep, WakeAt, PrepareReflection, RunReflection, TakeBaseline)):
            return  # shutting down: the stored state says what to restart next time
        if isinstance(effect, (RunLeadTurn, StartRound, RunVerifierTurn, RunReflection)):
            self.running = effect.turn
        if isinstance(effect, OUTPUT_EFFECTS):
            self.outputs.perform(effect)
            return
        if isinstance(effect, TakeBaseline):
            self._take_baseline(effect)
        elif isinstance(effect, RunLeadTurn):
            self._run_lead_turn(effect)
        elif isinstance(effect, StartRound):
            self._start_round(effect)
        elif isinstance(effect, RunVerifierTurn):
            if self.round is not None:
                self.round.tell(effect)
            else:
                self.actor_ref.tell(Deliver(ev.TurnFailed(turn=effect.turn, error="the verifier is gone", kind="crashed")))
        elif isinstance(effect, EndRound):
            if self.round is not None:
                self.round.tell(effect)
                self.round = self.round_interrupt = None
        elif isinstance(effect, DispatchStep):
            if self.ctx.dispatcher is not None:
                from .dispatcher import Enqueue

                spec = self.state.roster.get("worker") or self.state.roster.get("lead")
                self.ctx.dispatcher.tell(
                    Enqueue(goal_id=self.goal_id, effect=effect, workspace=self.state.workspace, spec=spec, reply_to=self.actor_ref)
                )
        elif isinstance(effect, CancelWork):
            self.running = None
            self._stop_children(cancel=True)
            if self.ctx.dispatcher is not None:
                from .dispatcher import CancelGoal

                self.ctx.dispatcher.tell(CancelGoal(self.goal_id))
        elif isinstance(effect, WakeAt):
            self._wake_at(effect.at)
        elif isinstance(effect, Release):
            self.released = True
            self._stop_children(cancel=True)
            self.outputs.stop()
            if self.ctx.daemon is not None:
                self.ctx.daemon.tell(SupervisorStopped(self.goal_id))
            self.actor_ref.stop(block=False)

    def _take_baseline(self, effect: TakeBaseline) -> None:
        """Hash the protected files here, in the supervisor (no agent runs now: the effects
        that start agents come after this one), and commit the result before returning."""
        assert self.state is not None
        try:
            observed = observe(self.state.workspace, effect.scope, exclude=(self.ctx.home,))
            event = ev.BaselineTaken(mode=effect.mode, reason=effect.reason, observed=observed)
        except (SnapshotError, OSError) as exc:
            event = ev.BaselineTaken(mode=effect.mode, reason=effect.reason, error=f"cannot read the workspace: {exc}")
        self._apply(Deliver(event))

    def _run_lead_turn(self, effect: RunLeadTurn) -> None:
        assert self.state is not None
        spec = self.state.roster.get("lead")
        if not spec:
            self.actor_ref.tell(Deliver(ev.TurnFailed(turn=effect.turn, error="no lead brain configured (--lead)", kind="config")))
            return
        session = self.ctx.store.session(self.goal_id, "lead")
        at = self.ctx.clock().isoformat()
        if session is None or effect.new_session:
            session_id = str(uuid.uuid4())
            self.ctx.store.add_session_messages(self.goal_id, SessionWrite(role="lead", session_id=session_id, reset=True), at)
            history: tuple[Message, ...] = ()
            resume_ref = None
        else:
            session_id = session.session_id
            history = tuple(Message(m["role"], m["content"]) for m in json.loads(session.messages))
            resume_ref = session.resume_ref
        if self.lead is None or effect.new_session or not self.lead.is_alive():
            if self.lead is not None:
                self.lead.stop(block=False)
            self.lead = LeadActor.start(
                self.actor_ref, self.goal_id, self.state.workspace, spec, self.ctx.config, self.ctx.turn_timeout, self.ctx.sandbox
            )
        cancel = threading.Event()
        self.lead_cancel = cancel
        self.lead.tell(
            RunTurn(
                turn=effect.turn,
                kind=effect.kind,
                prompt=effect.prompt,
                session_id=session_id,
                history=history,
                resume_ref=resume_ref,
                cancel=cancel,
                time_left=effect.time_left,
            )
        )

    def _start_round(self, effect: StartRound) -> None:
        assert self.state is not None
        if self.round is not None:
            self.round_interrupt.set()
            self.round.stop(block=False)
        self.round_interrupt = Interrupt()
        self.round = RoundActor.start(
            self.actor_ref,
            home=self.ctx.home,
            goal_id=self.goal_id,
            workspace=self.state.workspace,
            spec=self.state.roster.get("verifier"),
            config=self.ctx.config,
            settings=self.ctx.verifier,
            timeout=self.ctx.turn_timeout,
            interrupt=self.round_interrupt,
            sandbox=self.ctx.sandbox,
            envelope_base=self.state.base_commit,
        )
        self.round.tell(effect)

    def _stop_children(self, *, cancel: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lead_cancel is not None and cancel:
            self.lead_cancel.set()
        if self.lead is not None:
            self.lead.stop(block=False)
            self.lead = None
        if self.round is not None:
            self.round_interrupt.set()
            self.round.stop(block=False)
            self.round = self.round_interrupt = None

    def _wake_at(self, at: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        delay = max((datetime.fromisoformat(at) - self.ctx.clock()).total_seconds(), 0.0)
        ref = self.actor_ref
        self.timer = threading.Timer(delay, lambda: ref.tell(Deliver(ev.Wake())))
        self.timer.daemon = True
        self.timer.start()


def _answer(reply, ok: bool, payload: Any) -> None:
    if reply is not None:
        try:
            reply(ok, payload)
        except Exception:  # a reply channel that broke must not break the goal
            log.exception("replying failed")
