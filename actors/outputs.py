"""The durable outputs' shell: the reflection turn, the PR envelope, memory and skills.

A goal's supervisor hands the effects of goal.reflect and goal.envelope to `Outputs`; the
slow work runs in two actors of its own, so the supervisor keeps answering meanwhile:

- `ReflectorActor`: one reflection turn, role `reflector`, a brand-new session (no
  history, no resumed agent session), the workspace as its working directory;
- `EnvelopeActor`: builds (and takes down) the PR envelope, one job at a time, in order,
  so an envelope being superseded can never race the next one.

Both report back as goal events; the supervisor records them like any other.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from ..brains import TurnRequest, resolve
from ..goal import envelope as envelope_rules
from ..goal import events as ev
from ..goal import reflect
from ..goal.effects import BuildEnvelope, PrepareReflection, RunReflection, SaveReflection, SupersedeEnvelope
from ..goal.model import GoalState
from ..goal.skills import Skill
from ..outputs import envelope as envelope_io
from ..outputs import memory, skills
from ..sandbox import Sandbox, brain_kind
from ..store import TurnWrite
from .messages import Deliver

if TYPE_CHECKING:
    from .supervisor import GoalSupervisor

__all__ = ["OUTPUT_EFFECTS", "EnvelopeActor", "Outputs", "ReflectorActor"]

log = logging.getLogger("crewctl.outputs")

OUTPUT_EFFECTS = (PrepareReflection, RunReflection, SaveReflection, BuildEnvelope, SupersedeEnvelope)


@dataclass(frozen=True)
class _Reflect:
    turn: int
    prompt: str
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class _Build:
    round: int
    state: GoalState
    at: str


@dataclass(frozen=True)
class _Supersede:
    round: int
    branch: str | None
    commit: str | None


class Outputs:
    """Carries out a goal's output effects for its supervisor (on the supervisor's thread)."""

    def __init__(self, supervisor: "GoalSupervisor") -> None:
        self.sup = supervisor
        self.reflector: pykka.ActorRef | None = None
        self.reflect_cancel: threading.Event | None = None
        self.envelope: pykka.ActorRef | None = None

    def perform(self, effect: Any) -> None:
        sup = self.sup
        ctx = sup.ctx
        state = sup.state
        assert state is not None
        if isinstance(effect, PrepareReflection):
            prompt = reflect.digest_prompt(state, ctx.store.events(sup.goal_id))
            sup.actor_ref.tell(Deliver(ev.ReflectionStarted(prompt=prompt)))
        elif isinstance(effect, RunReflection):
            self._reflect(state, effect)
        elif isinstance(effect, SaveReflection):
            self._save(effect)
        elif isinstance(effect, BuildEnvelope):
            self._envelope_actor().tell(_Build(round=effect.round, state=state, at=ctx.clock().isoformat()))
        elif isinstance(effect, SupersedeEnvelope):
            self._envelope_actor().tell(_Supersede(round=effect.round, branch=effect.branch, commit=effect.commit))

    def _reflect(self, state: GoalState, effect: RunReflection) -> None:
        spec = state.roster.get("reflector") or state.roster.get("lead")
        self.stop_reflector()
        ctx = self.sup.ctx
        self.reflector = ReflectorActor.start(
            self.sup.actor_ref, state.id, state.workspace, spec, ctx.config, ctx.turn_timeout, ctx.sandbox
        )
        job = _Reflect(turn=effect.turn, prompt=effect.prompt)
        self.reflect_cancel = job.cancel
        self.reflector.tell(job)

    def _save(self, effect: SaveReflection) -> None:
        home = self.sup.ctx.home
        try:
            if effect.memory:
                memory.append(home, effect.workspace, effect.memory, goal_id=effect.goal_id, at=effect.at)
            if effect.skill:
                skill = Skill(effect.skill["name"], effect.skill["description"], effect.skill["body"])
                skills.save(home, skill, provenance=f"written by crewctl's reflection on goal {effect.goal_id}, {effect.at[:10]}")
        except OSError as exc:  # the reflection is in the timeline; only its copy on disk failed
            log.error("goal %s: cannot save the reflection's memory or skill: %s", effect.goal_id, exc)

    def _envelope_actor(self) -> pykka.ActorRef:
        if self.envelope is None or not self.envelope.is_alive():
            ctx = self.sup.ctx
            self.envelope = EnvelopeActor.start(self.sup.actor_ref, ctx.home, ctx.store, self.sup.goal_id)
        return self.envelope

    def stop_reflector(self) -> None:
        if self.reflect_cancel is not None:
            self.reflect_cancel.set()
        if self.reflector is not None:
            self.reflector.stop(block=False)
        self.reflector = self.reflect_cancel = None

    def stop(self) -> None:
        self.stop_reflector()
        if self.envelope is not None:
            self.envelope.stop(block=False)  # after the job in hand: a build is never cut in half
            self.envelope = None


class ReflectorActor(pykka.ThreadingActor):
    """One reflection turn: role `reflector`, a fresh session, read-only workspace."""

    use_daemon_thread = True

    def __init__(
        self, supervisor: pykka.ActorRef, goal_id: str, workspace: str, spec: str | None, config, timeout: float | None, sandbox: Sandbox
    ) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.goal_id = goal_id
        self.workspace = workspace
        self.spec = spec
        self.config = config
        self.timeout = timeout
        self.sandbox = sandbox

    def on_receive(self, message: Any) -> None:
        if isinstance(message, _Reflect):
            self._run(message)

    def _run(self, job: _Reflect) -> None:
        started = time.monotonic()
        try:
            if not self.spec:
                raise RuntimeError("no brain for the reflector (--reflector or --lead)")
            brain = resolve(self.spec, self.config)
            # Sandboxed like a lead turn, but the workspace is read-only for it.
            env, policy = self.sandbox.for_turn(reflect.ROLE, self.workspace, kind=brain_kind(self.spec, self.config))
            request = TurnRequest(
                role=reflect.ROLE,
                goal_id=self.goal_id,
                session_id=str(uuid.uuid4()),  # never the lead's: a fresh session
                turn=job.turn,
                prompt=job.prompt,
                workdir=self.workspace,
                timeout=self.timeout,
                cancel=job.cancel,
                env=env,
                sandbox=policy,
            )
            reply = brain.run(request)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed reflection, recorded
            if not job.cancel.is_set():
                self.supervisor.tell(Deliver(ev.ReflectionFailed(turn=job.turn, error=f"{exc}" or type(exc).__name__)))
            return
        if job.cancel.is_set():
            return
        usage = reply.usage
        self.supervisor.tell(
            Deliver(
                ev.ReflectionFinished(
                    turn=job.turn,
                    text=reply.text,
                    usage=ev.TurnUsage(
                        input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens,
                        cached_tokens=usage.cached_tokens,
                        cost_usd=usage.cost_usd,
                        seconds=time.monotonic() - started,
                    ),
                ),
                turn_writes=(TurnWrite(turn=job.turn, reply=reply.text),),
                before_record=True,
            )
        )


class EnvelopeActor(pykka.ThreadingActor):
    """Builds and takes down a goal's PR envelope, one job at a time."""

    use_daemon_thread = True

    def __init__(self, supervisor: pykka.ActorRef, home: str, store, goal_id: str) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.home = home
        self.store = store
        self.goal_id = goal_id

    def on_receive(self, message: Any) -> None:
        if isinstance(message, _Build):
            self.supervisor.tell(Deliver(self._build(message)))
        elif isinstance(message, _Supersede):
            try:
                envelope_io.supersede(
                    self.home, self.goal_id, self._workspace(), round_no=message.round, branch=message.branch, commit=message.commit
                )
            except OSError as exc:
                log.warning("goal %s: cannot take down the envelope of round %d: %s", self.goal_id, message.round, exc)

    def _workspace(self) -> str:
        state, _ = self.store.load_goal(self.goal_id)
        return state.workspace

    def _build(self, job: _Build) -> ev.EnvelopeBuilt:
        try:
            return self._make(job)
        except Exception as exc:  # noqa: BLE001 - recorded as the envelope's error, never a crash
            log.exception("goal %s: the envelope of round %d failed", self.goal_id, job.round)
            return ev.EnvelopeBuilt(round=job.round, error=f"the envelope could not be made: {exc}")

    def _make(self, job: _Build) -> ev.EnvelopeBuilt:
        state = job.state
        record = envelope_io.read_record(self.home, self.goal_id)
        if record is not None and record.get("round") == job.round and record.get("commit"):  # made before a crash
            files = envelope_io.envelope_files(self.home, self.goal_id)
            return ev.EnvelopeBuilt(
                round=job.round, branch=record["branch"], commit=record["commit"], base=record["base"],
                files=tuple(record.get("files") or ()), pr=files["pr"], patch=files["patch"],
            )
        events = self.store.events(self.goal_id)
        if state.base_commit is None:
            body = envelope_rules.pr_body(state, events, round_no=job.round, branch=None, commit=None, base=None, files=None)
            paths = envelope_io.write_files(self.home, self.goal_id, round_no=job.round, body=body, built=None)
            return ev.EnvelopeBuilt(
                round=job.round, pr=paths["pr"],
                error="the workspace had no git commit when the goal started, so there is no branch or patch; pr.md is written",
            )
        ready = envelope_io.prepared(self.home, self.goal_id, job.round)
        if ready is None:
            return ev.EnvelopeBuilt(round=job.round, error=f"round {job.round}'s snapshot was not kept for the envelope")
        try:
            built = envelope_io.finish(
                state.workspace, ready, branch=envelope_rules.branch_name(self.goal_id),
                message=envelope_rules.commit_message(state, job.round), when=job.at,
            )
        except envelope_io.EnvelopeError as exc:
            return ev.EnvelopeBuilt(round=job.round, error=str(exc))
        body = envelope_rules.pr_body(
            state, events, round_no=job.round, branch=built.branch, commit=built.commit, base=built.base, files=built.files
        )
        paths = envelope_io.write_files(self.home, self.goal_id, round_no=job.round, body=body, built=built)
        return ev.EnvelopeBuilt(
            round=job.round, branch=built.branch, commit=built.commit, base=built.base, files=built.files,
            pr=paths["pr"], patch=paths["patch"],
        )
