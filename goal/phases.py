"""The phase machine: `step(state, event, now) -> Transition`. Every rule of the gate lives here.

Its length (about 1,600 lines) is deliberate: every rule that moves a goal is in this one
file, so a reviewer reads the whole gate in one place; the parts that are not the gate's
rules live beside it (goal/turns.py, vocab.py, validate.py, protect.py, reflect.py).

Pure: no I/O, no threads, no clock reads (`now` is passed in). The goal supervisor actor
persists `Transition.state` and `Transition.records` in one transaction, then performs
`Transition.effects`. A command the goal's rules refuse raises `Refused` and changes nothing.

Who may move what (docs/contracts.md, "Goal status"):
- only the verifier's VERIFY for the current round and revision moves `verifying`;
- the lead may CLARIFY, LOCK (scoping), PLAN, READY (running, awaiting_signoff), BLOCKED;
- workers move nothing; the operator answers, edits, steers, pauses, resumes, cancels,
  raises budgets, approves, signs off and sends back; the system limits and blocks.
Ownership is checked before validity: a marker from the wrong role or in the wrong status is
ignored and recorded and costs no correction budget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from ..exceptions import Refused
from . import envelope, reflect
from . import events as ev
from . import markers, prompts, validate
from . import protect as protection
from .effects import (
    BuildEnvelope,
    CancelWork,
    DispatchStep,
    EndRound,
    PrepareReflection,
    Record,
    Release,
    RunLeadTurn,
    RunVerifierTurn,
    StartRound,
    TakeBaseline,
    Transition,
    WakeAt,
)
from .model import (
    GOAL_DEFAULTS,
    Budget,
    CheckRun,
    ClarifyRound,
    Criterion,
    Envelope,
    GoalState,
    Protect,
    Question,
    Report,
    Spend,
    Steer,
    Step,
)
from .turns import start_turn, text_bytes
from .vocab import (
    HOLDS,
    OPERATOR_HOLDS,
    TERMINAL,
    CriterionStatus,
    EnvelopeStatus,
    RecordType as R,
    ReflectionStatus,
    Status,
    StepStatus,
    status_after_hold,
)

__all__ = ["LEAD_KINDS", "GoalSettings", "clean_usage", "new_goal", "new_run", "spend_after", "spent", "step"]

LEAD_KINDS = frozenset({"clarify", "lock", "plan", "ready", "blocked"})
# Where each lead marker may act. PLAN is also allowed in scoping next to a LOCK.
_LEAD_STATUSES = {
    "clarify": frozenset({Status.SCOPING, Status.RUNNING}),
    "lock": frozenset({Status.SCOPING}),
    "plan": frozenset({Status.RUNNING}),
    "ready": frozenset({Status.RUNNING, Status.AWAITING_SIGNOFF}),
    "blocked": frozenset({Status.SCOPING, Status.RUNNING, Status.AWAITING_SIGNOFF}),
}
MAX_TURN_RETRIES = 3  # failed turns in a row before the goal blocks with the error
MAX_USAGE_LIMITED = 5  # provider usage-limit errors in a row before `usage_limited`
MAX_USAGE_WAITS = 5  # waits for a provider's announced reset, in a row, before a person decides
MAX_USAGE_WAIT = 7 * 24 * 3600.0  # a reset further away than this is left to the operator
MAX_MARKER_RECORDS = 20  # marker_ignored/marker_invalid records one reply may write; the rest are counted
RESTART_INTENSITY = 3  # actor restarts ...
RESTART_WINDOW = 60.0  # ... within this many seconds, then `crash_loop`
NO_PROGRESS_ROUNDS = 3
_REASON_CAP = 1000


@dataclass(frozen=True)
class GoalSettings:
    """Creation-time settings of a goal (what `crewctl goal new` passes); the defaults are
    GOAL_DEFAULTS, the one table the config's [defaults] and the CLI also read."""

    roster: Mapping[str, str]
    budget: Budget = Budget()
    attempt_cap: int = GOAL_DEFAULTS["attempt_cap"]
    max_auto_turns: int = GOAL_DEFAULTS["max_auto_turns"]
    max_turns: int = GOAL_DEFAULTS["max_turns"]
    check_timeout: float = GOAL_DEFAULTS["check_timeout"]
    replan_budget: int = GOAL_DEFAULTS["replan_budget"]
    step_attempts: int = GOAL_DEFAULTS["step_attempts"]
    protect: Protect = Protect()  # goal.protect.settings(...); the pure default is off
    briefing: str | None = None  # memory and skills for the first lead prompt (goal.memory, goal.skills)
    base_commit: str | None = None  # the workspace's git HEAD now: the PR envelope's base
    base_branch: str | None = None


# -- the builder every handler uses --------------------------------------------------------


class _T:
    """Accumulates one transition: state changes, timeline records, effects."""

    def __init__(self, state: GoalState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.records: list[Record] = []
        self.effects: list[Any] = []
        self.marks = 0  # marker records written by this transition
        self.unrecorded: dict[str, int] = {}  # ... and those only counted, by type
        self.mark_role: str | None = None  # whose reply they came from

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def emit(self, type_: str, **payload: Any) -> None:
        self.records.append(Record(type_, payload))

    def do(self, effect: Any) -> None:
        self.effects.append(effect)

    def mark(self, type_: str, **payload: Any) -> None:
        """A marker_ignored or marker_invalid record, at most MAX_MARKER_RECORDS per reply:
        a reply of 200,000 stray blocks writes twenty records and one count, not 200,000."""
        if self.marks < MAX_MARKER_RECORDS:
            self.marks += 1
            self.emit(type_, **payload)
            self.mark_role = payload.get("role")
        else:
            self.unrecorded[type_] = self.unrecorded.get(type_, 0) + 1

    def done(self) -> Transition:
        if self.unrecorded:
            self.emit(
                R.MARKERS_CAPPED,
                role=self.mark_role,
                recorded=self.marks,
                ignored=self.unrecorded.get("marker_ignored", 0),
                invalid=self.unrecorded.get("marker_invalid", 0),
            )
            self.unrecorded = {}
        return Transition(self.state, tuple(self.records), tuple(self.effects))


def _iso(now: datetime) -> str:
    return now.isoformat()


def _epoch(now: datetime) -> float:
    return now.timestamp()


# -- creation -------------------------------------------------------------------------------


def new_goal(
    goal_id: str,
    objective: str,
    workspace: str,
    settings: GoalSettings,
    now: datetime,
    criteria: tuple[Criterion, ...] = (),
    start: dict[str, Any] | None = None,
) -> Transition:
    """A new goal: scoping (the lead's scope turn), or running at once if criteria are given."""
    if not objective.strip():
        raise Refused("the objective is empty")
    state = GoalState(
        id=goal_id,
        objective=objective,
        workspace=workspace,
        created_at=_iso(now),
        roster=dict(settings.roster),
        budget=settings.budget,
        attempt_cap=settings.attempt_cap,
        max_auto_turns=settings.max_auto_turns,
        max_turns=settings.max_turns,
        check_timeout=settings.check_timeout,
        replan_budget=settings.replan_budget,
        step_attempts=settings.step_attempts,
        protect=settings.protect,
        start=start,
        briefing=settings.briefing or None,
        base_commit=settings.base_commit,
        base_branch=settings.base_branch,
    )
    t = _T(state, now)
    t.emit(
        R.GOAL_CREATED,
        objective=objective,
        workspace=workspace,
        roster=dict(settings.roster),
        budget=_budget_dict(settings.budget),
        attempt_cap=settings.attempt_cap,
        **({"start": start} if start else {}),
    )
    if settings.protect.off:
        t.emit(R.PROTECT_OFF, reason=settings.protect.off)
    if criteria:
        _lock(t, criteria, statement=None, by="operator")
        _lead_turn(t, "work", automatic=False)
    else:
        _lead_turn(t, "scope", automatic=False)
    t.set(briefing=None)  # it is in the first turn's prompt (kept for a rerun) and nowhere else
    return t.done()


# -- the step function ----------------------------------------------------------------------


def step(state: GoalState, event: ev.Event, now: datetime) -> Transition:
    """Apply one event. Raises Refused (and changes nothing) when the goal's rules say no."""
    if type(event) in reflect.EVENTS or (type(event) is ev.Recover and state.status == Status.DONE):
        return reflect.step(state, event, now)  # durable outputs go on after sign-off
    if type(event) is ev.EnvelopeBuilt:
        return envelope.on_built(state, event)
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a goal event: {event!r}")
    if state.status in TERMINAL and type(event) not in _EVEN_WHEN_TERMINAL:
        if type(event) in _OPERATOR:
            raise Refused(f"goal {state.id} is {state.status}")
        return Transition(state, (), ())  # late results for a finished goal change nothing
    t = _T(state, now)
    handler(t, event)
    return envelope.settle(state, t.done())


# -- lead turns -----------------------------------------------------------------------------


def _lead_turn(t: _T, kind: str, *, automatic: bool) -> None:
    """Start the lead's next turn, unless a rule says the goal must stop first.

    Queued steers ride along with whatever turn starts; budgets stop every turn but the
    wind-down, and the per-run limit stops automatic ones.
    """
    s = t.state
    if which := spent(s):
        _budget_limited(t, which)
        return
    if automatic and s.run_turns >= s.max_turns:
        _block(t, "max_turns", f"{s.max_turns} automatic turns this run")
        return
    delivered = s.steers[: prompts.MAX_STEERS_PER_TURN]
    prompt = prompts.lead_prompt(s, kind)
    turn = start_turn(
        t,
        role="lead",
        kind=kind,
        prompt=prompt,
        revision=s.revision,
        delivering=delivered,
        # What the prompt delivered is spent with it:
        steers=s.steers[len(delivered) :],
        reports=(),
        notes=None if kind == "rework" else s.notes,
        run_turns=s.run_turns + (1 if automatic else 0),
        retry_at=None,
    )
    t.do(RunLeadTurn(turn=turn, kind=kind, prompt=prompt, time_left=_time_left(t.state, kind)))


def _time_left(s: GoalState, kind: str) -> float | None:
    """How long a lead turn may run: what is left of the time budget. The wind-down turn
    is the one turn past a spent budget; it is bounded only by the turn timeout."""
    if s.budget.seconds is None or kind == "wind_down":
        return None
    return max(s.budget.seconds - s.spend.seconds, 0.0)


def _continue(t: _T) -> None:
    """A lead turn ended with no marker: continue, at most max_auto_turns in a row.

    A queued steer suppresses the automatic continuation: the next turn is the steer's.
    """
    s = t.state
    if s.steers:
        t.set(auto_turns=0)
        _lead_turn(t, "steer", automatic=False)
        return
    if s.auto_turns >= s.max_auto_turns:
        _block(t, "turn_cap", f"{s.max_auto_turns} turns in a row without a marker")
        return
    t.set(auto_turns=s.auto_turns + 1)
    _lead_turn(t, "continue", automatic=True)


def _on_turn_finished(t: _T, e: ev.TurnFinished) -> None:
    s = t.state
    f = s.in_flight
    if f is None or f.role != "lead" or f.turn != e.turn or f.interrupted:
        return  # a stale or cancelled turn's reply changes nothing
    if s.status not in (Status.SCOPING, Status.RUNNING, Status.AWAITING_SIGNOFF, Status.BUDGET_LIMITED):
        return
    _account(t, e.usage)
    t.emit(R.TURN_FINISHED, turn=e.turn, role="lead", kind=f.kind, usage=_usage_dict(e.usage), reply_bytes=text_bytes(e.text))
    t.set(in_flight=None, errors_in_row=0, last_error=None, retry_at=None, usage_waits=0)
    extraction = markers.extract(e.text)

    if f.kind == "wind_down":
        for m in extraction.markers:
            t.mark("marker_ignored", kind=m.kind, line=m.line, role="lead", reason="wind-down turn")
        t.emit(R.WIND_DOWN, turn=e.turn, report=markers.collapse(extraction.text, 4000))
        return

    status = t.state.status
    has_lock = any(m.kind == "lock" for m in extraction.markers) and status == Status.SCOPING

    def allowed(kind: str) -> str | None:
        """None if the lead may use this kind now, else why not."""
        if kind not in LEAD_KINDS:
            return f"the lead may not send {kind.upper()}"
        if kind in ("plan", "ready") and status == Status.SCOPING and has_lock:
            return None  # judged together with the LOCK below
        if status not in _LEAD_STATUSES[kind]:
            return f"{kind.upper()} is not accepted while the goal is {status}"
        return None

    live: list[markers.Marker] = []
    for m in extraction.markers:
        why = allowed(m.kind)
        if why:
            t.mark("marker_ignored", kind=m.kind, line=m.line, role="lead", reason=why)
        else:
            live.append(m)
    bad: list[markers.MarkerError] = []
    for err in extraction.errors:
        why = allowed(err.kind)
        if why:
            t.mark("marker_ignored", kind=err.kind, line=err.line, role="lead", reason=why)
        else:
            bad.append(err)

    if bad:
        for err in bad:
            t.mark("marker_invalid", kind=err.kind, line=err.line, role="lead", reason=err.reason)
        if t.state.lead_corrections < 1:
            t.set(lead_corrections=1)
            _corrective_lead_turn(t, [(err.kind, err.line, err.reason) for err in bad])
        else:
            _block(t, "malformed_marker", f"{bad[0].kind.upper()} block invalid after a corrective turn: {bad[0].reason}")
        return
    t.set(lead_corrections=0)

    if not live:
        if status == Status.AWAITING_SIGNOFF:
            return  # a steer turn after the gate passed; the operator decides next
        _continue(t)
        return
    t.set(auto_turns=0)

    def first(kind: str) -> markers.Marker | None:
        return next((m for m in live if m.kind == kind), None)

    def ignore_rest(chosen: list[markers.Marker], reason: str) -> None:
        for m in live:
            if all(m is not c for c in chosen):
                t.mark("marker_ignored", kind=m.kind, line=m.line, role="lead", reason=reason)

    if blocked := first("blocked"):
        ignore_rest([blocked], "superseded by BLOCKED in the same reply")
        reason = blocked.payload["reason"]
        if blocked.payload.get("needs"):
            reason += f" (needs: {blocked.payload['needs']})"
        _block(t, "lead", reason)
        return
    if clarify := first("clarify"):
        ignore_rest([clarify], "superseded by CLARIFY in the same reply")
        _open_clarify(t, clarify.payload)
        return

    lock, plan, ready = first("lock"), first("plan"), first("ready")
    chosen = [m for m in (lock, plan, ready) if m is not None]
    duplicates = [m for m in live if all(m is not c for c in chosen)]
    for m in duplicates:
        t.mark("marker_ignored", kind=m.kind, line=m.line, role="lead", reason=f"only the first {m.kind.upper()} counts")
    if lock:
        criteria = tuple(
            Criterion(id=c["id"], text=c["text"], verify=c["verify"]) for c in lock.payload["criteria"]
        )
        _lock(t, criteria, statement=lock.payload.get("statement"), by="lead")
    if ready and (lock or plan):
        t.mark(
            "marker_ignored",
            kind="ready",
            line=ready.line,
            role="lead",
            reason=f"READY in the same reply as {'LOCK' if lock else 'PLAN'}",
        )
        ready = None
    if plan:
        _plan(t, plan.payload["steps"])
        if _dispatching(t.state):
            return
    if ready:
        _ready(t, ready.payload)
        return
    if lock or plan:
        _lead_turn(t, "work", automatic=True)


def _corrective_lead_turn(t: _T, errors: list[tuple[str, int, str]]) -> None:
    s = t.state
    if which := spent(s):
        _budget_limited(t, which)
        return
    prompt = prompts.corrective_lead_prompt(s, errors[:MAX_MARKER_RECORDS])
    turn = start_turn(t, role="lead", kind="corrective", prompt=prompt, revision=s.revision, run_turns=s.run_turns + 1)
    t.do(RunLeadTurn(turn=turn, kind="corrective", prompt=prompt, time_left=_time_left(t.state, "corrective")))


# -- scoping --------------------------------------------------------------------------------


def _open_clarify(t: _T, payload: dict) -> None:
    s = t.state
    seq = len(s.clarify) + 1
    questions = tuple(
        Question(id=q["id"], text=q["text"], options=tuple(q.get("options") or ()), multi=bool(q.get("multi")))
        for q in payload["questions"]
    )
    t.set(clarify=s.clarify + (ClarifyRound(seq=seq, questions=questions, intro=payload.get("intro")),))
    t.emit(
        R.CLARIFY,
        seq=seq,
        intro=payload.get("intro"),
        questions=[{"id": q.id, "text": q.text, "options": list(q.options), "multi": q.multi} for q in questions],
    )
    if s.status == Status.RUNNING:
        t.set(status=Status.AWAITING_INPUT, resume_to=Status.RUNNING)


def _on_answer(t: _T, e: ev.Answer) -> None:
    s = t.state
    open_round = s.open_clarify
    if open_round is None or s.status not in (Status.SCOPING, Status.AWAITING_INPUT):
        raise Refused(f"goal {s.id} has no open question (status {s.status})")
    if e.seq is not None and e.seq != open_round.seq:
        raise Refused(f"stale answer: questions round {e.seq} is closed; the open round is {open_round.seq}")
    if not e.answers:
        raise Refused("no answers given; use QID=ANSWER")
    known = {q.id: q for q in open_round.questions}
    answers: dict[str, str] = {}
    for qid, answer in e.answers.items():
        q = known.get(qid)
        if q is None:
            raise Refused(f"no question {qid!r} in round {open_round.seq} (questions: {', '.join(known)})")
        answers[qid] = _check_option(q, answer)
    rounds = s.clarify[:-1] + (replace(open_round, answers=answers),)
    t.set(clarify=rounds)
    t.emit(R.ANSWER, seq=open_round.seq, answers=answers)
    if s.status == Status.AWAITING_INPUT:
        t.set(status=status_after_hold(s.resume_to), resume_to=None)
    _lead_turn(t, "answer", automatic=False)


def _check_option(q: Question, answer: str) -> str:
    answer = answer.strip()
    if not q.options:
        if not answer:
            raise Refused(f"the answer to {q.id} is empty")
        return answer
    picks = [a.strip() for a in answer.split(",")] if q.multi else [answer]
    chosen = []
    for pick in picks:
        if pick.isdigit() and 1 <= int(pick) <= len(q.options):
            chosen.append(q.options[int(pick) - 1])
        elif pick in q.options:
            chosen.append(pick)
        else:
            options = "; ".join(f"{i}={o}" for i, o in enumerate(q.options, 1))
            raise Refused(f"{q.id} takes one of its options ({options}), not {pick!r}")
    return ", ".join(chosen)


def _lock(t: _T, criteria: tuple[Criterion, ...], *, statement: str | None, by: str) -> None:
    s = t.state
    t.set(
        criteria=tuple(replace(c, status=CriterionStatus.PENDING, evidence=None) for c in criteria),
        statement=statement,
        revision=s.revision + 1,
        status=Status.RUNNING,
        resume_to=None,
    )
    t.emit(R.LOCK, by=by, revision=s.revision + 1, criteria=[_criterion_dict(c) for c in t.state.criteria], statement=statement)
    _owe_baseline(t, protection.FULL, "lock")


# -- plans and steps -------------------------------------------------------------------------


def _plan(t: _T, steps: list[dict]) -> None:
    s = t.state
    plan_no = s.plan + 1
    kept = tuple(
        replace(st, status=StepStatus.SKIPPED) if st.status in (StepStatus.PENDING, StepStatus.IN_PROGRESS) else st for st in s.steps
    )
    base = len(s.steps)
    new = tuple(
        Step(
            id=f"s{base + i}",
            title=raw["title"],
            detail=raw.get("detail"),
            lane=raw.get("lane"),
            needs_approval=bool(raw.get("needs_approval")),
            plan=plan_no,
        )
        for i, raw in enumerate(steps, 1)
    )
    t.set(plan=plan_no, steps=kept + new)
    t.emit(
        R.PLAN,
        plan=plan_no,
        steps=[{"id": st.id, "title": st.title, "lane": st.lane, "needs_approval": st.needs_approval} for st in new],
    )
    for st in new:
        if st.needs_approval:
            t.emit(R.APPROVAL_NEEDED, step=st.id, title=st.title)
    _dispatch_runnable(t)


def _dispatching(s: GoalState) -> bool:
    """Steps of the current plan still running or waiting for approval."""
    return any(st.plan == s.plan and st.status in (StepStatus.PENDING, StepStatus.IN_PROGRESS) for st in s.steps)


def _dispatch_runnable(t: _T) -> None:
    """Queue every pending step of the current plan; steps needing approval wait for it.

    A spent budget queues nothing: the steps stay pending and the goal winds down; a raise
    dispatches them."""
    s = t.state
    if s.status in (Status.RUNNING, Status.AWAITING_APPROVAL, Status.SCOPING) and (which := spent(s)):
        if any(st.plan == s.plan and st.status == StepStatus.PENDING for st in s.steps):
            _budget_limited(t, which)
            return
    waiting = False
    steps = list(s.steps)
    for i, st in enumerate(steps):
        if st.plan != s.plan or st.status != StepStatus.PENDING:
            continue
        if st.needs_approval and not st.approved:
            waiting = True
            continue
        steps[i] = _dispatch(t, st)
    t.set(steps=tuple(steps))
    if waiting and t.state.status == Status.RUNNING:
        t.set(status=Status.AWAITING_APPROVAL, resume_to=Status.RUNNING)


def _dispatch(t: _T, st: Step, delay: float = 0.0) -> Step:
    dispatches = st.dispatches + 1
    task = f"{t.state.id}/{st.id}/{dispatches}"
    not_before = _iso(t.now + timedelta(seconds=delay)) if delay else None
    t.do(
        DispatchStep(
            step=st.id,
            task=task,
            prompt=prompts.worker_prompt(t.state, st),
            lane=st.lane,
            not_before=not_before,
        )
    )
    t.emit(R.STEP_QUEUED, step=st.id, task=task, lane=st.lane, not_before=not_before)
    return replace(st, status=StepStatus.IN_PROGRESS, task=task, dispatches=dispatches, holder=None)


def _replace_step(t: _T, new: Step) -> None:
    t.set(steps=tuple(new if st.id == new.id else st for st in t.state.steps))


def _current_task(t: _T, step_id: str, task: str, host: str | None) -> Step | None:
    st = t.state.step_by_id(step_id)
    if st is None or st.status != StepStatus.IN_PROGRESS or st.task != task:
        t.emit(R.TASK_LATE, step=step_id, task=task, host=host)
        return None
    return st


def _on_step_assigned(t: _T, e: ev.StepAssigned) -> None:
    st = t.state.step_by_id(e.step)
    if st is None or st.task != e.task or st.status != StepStatus.IN_PROGRESS:
        return
    _replace_step(t, replace(st, holder=e.host))
    t.emit(R.STEP_STARTED, step=e.step, task=e.task, host=e.host)


def _on_step_finished(t: _T, e: ev.StepFinished) -> None:
    st = _current_task(t, e.step, e.task, e.host)
    if st is None:
        return
    _account(t, e.usage)
    result = e.text[: prompts.REPORT_CAP]  # quoted whenever it reaches a prompt
    ignored = markers.extract(e.text).markers
    for m in ignored:
        t.mark("marker_ignored", kind=m.kind, line=m.line, role="worker", reason="workers move nothing")
    _replace_step(t, replace(st, status=StepStatus.COMPLETED, holder=e.host, result=result))
    t.emit(
        R.STEP_FINISHED,
        step=e.step,
        task=e.task,
        host=e.host,
        usage=_usage_dict(e.usage),
        changed_files=list(e.changed_files[:100]),
    )
    report = result
    if e.changed_files:
        report += "\n\nchanged files: " + ", ".join(e.changed_files[:50])
    t.set(reports=t.state.reports + (Report(kind="step_completed", text=report, step=e.step),))
    _after_steps(t)


def _on_step_failed(t: _T, e: ev.StepFailed) -> None:
    st = _current_task(t, e.step, e.task, e.host)
    if st is None:
        return
    attempts = st.attempts + 1
    error = markers.collapse(e.error, 1000)
    if attempts < t.state.step_attempts and t.state.status not in (Status.PAUSED,):
        t.emit(R.STEP_RETRY, step=e.step, task=e.task, host=e.host, attempt=attempts, error=error, lost=e.lost)
        if which := spent(t.state):
            # No new worker turn on a spent budget: the step waits, pending, for a raise.
            _replace_step(t, replace(st, status=StepStatus.PENDING, attempts=attempts, task=None, holder=None))
            if t.state.status in (Status.RUNNING, Status.AWAITING_APPROVAL):
                _budget_limited(t, which)
            return
        delay = min(2.0**attempts, 60.0)
        _replace_step(t, _dispatch(t, replace(st, attempts=attempts), delay=delay))
        return
    _replace_step(t, replace(st, status=StepStatus.FAILED, attempts=attempts, holder=None, result=error))
    t.emit(R.STEP_FAILED, step=e.step, task=e.task, host=e.host, attempts=attempts, error=error)
    t.set(reports=t.state.reports + (Report(kind="step_failed", text=error, step=e.step),))
    _after_steps(t)


def _after_steps(t: _T) -> None:
    """When the current plan settles, the lead gets the reports (or a replan turn)."""
    s = t.state
    if _dispatching(s) or s.status not in (Status.RUNNING, Status.AWAITING_APPROVAL):
        return
    if s.status == Status.AWAITING_APPROVAL:
        t.set(status=status_after_hold(s.resume_to), resume_to=None)
    failed = any(st.plan == s.plan and st.status == StepStatus.FAILED for st in s.steps)
    if failed:
        replans = s.replans + 1
        t.set(replans=replans)
        if replans > s.replan_budget:
            _block(t, "replan_budget", f"steps kept failing after {s.replan_budget} replans")
            return
        _lead_turn(t, "replan", automatic=True)
        return
    _lead_turn(t, "reports", automatic=True)


def _on_approve(t: _T, e: ev.Approve) -> None:
    s = t.state
    st = s.step_by_id(e.step)
    if st is None:
        raise Refused(f"goal {s.id} has no step {e.step!r}")
    if not st.needs_approval or st.approved or st.status != StepStatus.PENDING:
        raise Refused(f"step {e.step} is not waiting for approval (it is {st.status})")
    if s.status in OPERATOR_HOLDS:
        raise Refused(f"goal {s.id} is {s.status}; resume it first")
    if e.reject:
        _replace_step(t, replace(st, status=StepStatus.SKIPPED))
        t.emit(R.REJECTED, step=e.step)
        t.set(reports=t.state.reports + (Report(kind="step_rejected", text=st.title, step=e.step),))
    else:
        t.emit(R.APPROVED, step=e.step)
        _replace_step(t, _dispatch(t, replace(st, approved=True)))
    still_waiting = any(
        x.plan == t.state.plan and x.status == StepStatus.PENDING and x.needs_approval and not x.approved for x in t.state.steps
    )
    if not still_waiting and t.state.status == Status.AWAITING_APPROVAL:
        t.set(status=status_after_hold(t.state.resume_to), resume_to=None)
    _after_steps(t)


# -- the gate ---------------------------------------------------------------------------------


def _ready(t: _T, payload: dict) -> None:
    s = t.state
    round_no = s.round + 1
    turn = s.turn + 1
    t.set(
        status=Status.VERIFYING,
        round=round_no,
        round_revision=s.revision,
        ready_summary=payload["summary"],
        ready_evidence=tuple(payload.get("evidence") or ()),
        round_checks=None,
        verifier_corrections=0,
    )
    t.emit(R.READY, round=round_no, summary=payload["summary"], evidence=list(payload.get("evidence") or ()))
    t.emit(R.ROUND_STARTED, round=round_no, revision=s.revision)
    _start_round(t, turn, rerun=False)


def _start_round(t: _T, turn: int, *, rerun: bool) -> None:
    s = t.state
    if which := spent(s):
        # No turn starts on a spent budget, a verifier's included: the round waits (status
        # verifying is where the goal resumes) and the lead winds down.
        _budget_limited(t, which)
        return
    checks = tuple((c.id, c.check) for c in s.criteria if c.check is not None)
    model_needed = any(c.check is None for c in s.criteria)
    prompt = prompts.verifier_prompt(s)
    # The prompt rides in InFlight so the turn table stores it (`goal logs --prompts`); a
    # round where only check commands run sends no prompt to anyone, so none is stored.
    start_turn(t, role="verifier", kind="verify", prompt=prompt if model_needed else "", turn=turn, round=s.round, rerun=rerun)
    t.do(
        StartRound(
            round=s.round,
            turn=turn,
            prompt=prompt,
            checks=checks,
            model_needed=model_needed,
            timeout=s.check_timeout,
            rerun=rerun,
            protect=protection.round_plan(s.protect, s.baseline, s.id),
        )
    )


def _on_round_finished(t: _T, e: ev.RoundFinished) -> None:
    s = t.state
    f = s.in_flight
    if (
        s.status != Status.VERIFYING
        or f is None
        or f.role != "verifier"
        or f.turn != e.turn
        or e.round != s.round
        or f.interrupted
    ):
        return  # a verdict for another round, or from a verifier we stopped, moves nothing
    _account(t, e.usage)
    t.emit(R.TURN_FINISHED, turn=e.turn, role="verifier", round=e.round, usage=_usage_dict(e.usage), host_pid=e.host_pid)
    t.set(in_flight=None, errors_in_row=0, last_error=None, retry_at=None, usage_waits=0)
    checks = {cid: CheckRun.of(run) for cid, run in (e.checks if e.checks is not None else (s.round_checks or {})).items()}
    t.set(round_checks=checks)
    if _held_before_checks(t, e):
        return

    model_verdicts: dict[str, tuple[str, str]] = {}
    if e.text is not None:
        extraction = markers.extract(e.text)
        for m in extraction.markers:
            if m.kind != "verify":
                t.mark("marker_ignored", kind=m.kind, line=m.line, role="verifier", reason=f"the verifier may not send {m.kind.upper()}")
        foreign_errors = [x for x in extraction.errors if x.kind != "verify"]
        for x in foreign_errors:
            t.mark("marker_ignored", kind=x.kind, line=x.line, role="verifier", reason=f"the verifier may not send {x.kind.upper()}")
        verifies = [m for m in extraction.markers if m.kind == "verify"]
        verify_errors = [x for x in extraction.errors if x.kind == "verify"]
        blocks = len(verifies) + len(verify_errors)
        if blocks > 1:
            # Protocol error, never a pass: every criterion the model judges fails this round.
            # Valid and malformed blocks alike count; the record points at the second one.
            second = sorted([m.line for m in verifies] + [x.line for x in verify_errors])[1]
            t.mark("marker_invalid", kind="verify", line=second, role="verifier",
                   reason=f"{blocks} VERIFY blocks in one reply")
            model_verdicts = {
                c.id: ("fail", f"protocol error: the verifier sent {blocks} VERIFY blocks in one reply")
                for c in s.criteria
            }
        elif blocks == 0 or verify_errors:
            reason = verify_errors[0].reason if verify_errors else "no VERIFY block"
            if verify_errors:
                t.mark("marker_invalid", kind="verify", line=verify_errors[0].line, role="verifier", reason=reason)
            if s.verifier_corrections < 1 and (which := spent(t.state)):
                _budget_limited(t, which)
                return
            if s.verifier_corrections < 1:
                prompt = prompts.corrective_verifier_prompt(t.state, reason)
                turn = start_turn(t, role="verifier", kind="corrective", prompt=prompt, round=s.round, verifier_corrections=1)
                t.do(RunVerifierTurn(round=s.round, turn=turn, prompt=prompt))
                return
            model_verdicts = {c.id: ("fail", f"the verifier gave no valid verdict ({reason})") for c in s.criteria}
        else:
            model_verdicts = _merge_verdicts(verifies[0].payload["results"], {c.id for c in s.criteria}, t)

    _decide(t, model_verdicts, checks, e.host_pid)


def _merge_verdicts(results: list[dict], known: set[str], t: _T) -> dict[str, tuple[str, str]]:
    """Unknown ids dropped; duplicates merge fail-closed (any fail fails)."""
    merged: dict[str, tuple[str, str]] = {}
    for r in results:
        cid = r["id"]
        if cid not in known:
            t.emit(R.VERDICT_DROPPED, id=cid, reason="no such criterion")
            continue
        verdict, evidence = r["verdict"], r.get("evidence", "")
        if cid in merged:
            old_verdict, old_evidence = merged[cid]
            verdict = "fail" if "fail" in (old_verdict, verdict) else "pass"
            evidence = markers.collapse(f"{old_evidence} | {evidence}", 2000)
        merged[cid] = (verdict, evidence)
    return merged


def _decide(t: _T, model: dict[str, tuple[str, str]], checks: Mapping[str, CheckRun], host_pid: int | None) -> None:
    s = t.state
    results = []
    for c in s.criteria:
        if c.check is not None:
            run = checks.get(c.id)
            if run is None:
                verdict, evidence = "fail", "the check command did not run"
            else:
                verdict = "pass" if run.passed else "fail"
                evidence = _check_evidence(c.check, run)
            source = "check"
        elif c.id in model:
            verdict, evidence = model[c.id]
            source = "verifier"
        else:
            verdict, evidence, source = "fail", "no verdict from the verifier", "verifier"
        results.append({"id": c.id, "verdict": verdict, "evidence": evidence, "source": source})

    stale = s.revision != s.round_revision
    t.emit(R.VERIFY, round=s.round, revision=s.round_revision, results=results, stale=stale, host_pid=host_pid)
    if stale:
        # What "done" means changed while the verifier worked: the verdict binds to the old
        # criteria, so it cannot open the gate. The lead sees why; no attempt is charged.
        t.emit(R.GATE_HELD, round=s.round, failed=[], reason="criteria changed during verification")
        t.do(EndRound(round=s.round, keep_snapshot=False))
        t.set(status=Status.RUNNING, reports=s.reports + (Report(kind="stale_round", text="verdict discarded"),))
        _lead_turn(t, "held", automatic=True)
        return

    by_id = {r["id"]: r for r in results}
    criteria = tuple(replace(c, status=by_id[c.id]["verdict"], evidence=by_id[c.id]["evidence"]) for c in s.criteria)
    failed = [(r["id"], r["evidence"]) for r in results if r["verdict"] != "pass"]
    t.set(criteria=criteria)
    if not failed:
        t.emit(R.GATE_PASSED, round=s.round)
        # The PR envelope is made from this round's snapshot, so before the round ends.
        t.set(envelope=Envelope(round=s.round))
        t.do(BuildEnvelope(round=s.round))
        t.do(EndRound(round=s.round, keep_snapshot=False))
        t.set(status=Status.AWAITING_SIGNOFF, last_failures=())
        if t.state.steers:
            _lead_turn(t, "steer", automatic=False)
        return

    t.emit(R.GATE_HELD, round=s.round, failed=[cid for cid, _ in failed])
    t.do(EndRound(round=s.round, keep_snapshot=True))
    fingerprint = hashlib.sha256(json.dumps(failed, sort_keys=True).encode()).hexdigest()[:16]
    fingerprints = (s.fingerprints + (fingerprint,))[-NO_PROGRESS_ROUNDS:]
    attempt = s.attempt + 1
    t.set(status=Status.RUNNING, last_failures=tuple(failed), fingerprints=fingerprints, attempt=attempt)
    # The operator's own cap first; no_progress is the heuristic that may stop earlier.
    if attempt > s.attempt_cap:
        _block(t, "attempt_cap", f"the gate held {attempt} times (attempt cap {s.attempt_cap})")
        return
    if len(fingerprints) == NO_PROGRESS_ROUNDS and len(set(fingerprints)) == 1:
        _block(t, "no_progress", f"the same criteria failed with the same evidence {NO_PROGRESS_ROUNDS} rounds running")
        return
    _lead_turn(t, "held", automatic=True)


def _check_evidence(command: str, run: CheckRun) -> str:
    output = markers.collapse(run.output, 1500)
    if run.timed_out:
        head = f"check `{markers.collapse(command, 200)}` timed out"
    elif run.exit is None:
        head = f"check `{markers.collapse(command, 200)}` could not run"
    else:
        head = f"check `{markers.collapse(command, 200)}` exited {run.exit}"
    return f"{head}: {output}" if output else head


# -- failures, retries, supervision ----------------------------------------------------------


def _on_turn_failed(t: _T, e: ev.TurnFailed) -> None:
    s = t.state
    f = s.in_flight
    if f is None or f.turn != e.turn or f.interrupted:
        return
    error = markers.collapse(e.error, _REASON_CAP)
    if e.kind == "time_budget":
        # The turn ran into the time budget and was stopped: its time is spent, its reply
        # lost, and the lead winds down (a raise continues the work with a fresh turn).
        _account(t, ev.TurnUsage(seconds=e.seconds), replied=False)
        t.set(in_flight=None)
        t.emit(R.TURN_FAILED, turn=e.turn, role=f.role, error=error, kind=e.kind, seconds=round(_finite(e.seconds), 3))
        _budget_limited(t, spent(t.state) or "time")
        return
    errors = s.errors_in_row + 1
    t.set(errors_in_row=errors, last_error=error)
    if e.kind == "usage_limited" and (resume_at := _usage_reset(e.resume_at, t.now)) is not None:
        _usage_wait(t, f.role, e.turn, error, resume_at)
        return
    if e.kind == "config":
        t.emit(R.TURN_FAILED, turn=e.turn, role=f.role, error=error, kind=e.kind)
        _block(t, "brain_error", error)
        return
    if e.kind == "usage_limited":
        if errors > MAX_USAGE_LIMITED:
            t.emit(R.TURN_FAILED, turn=e.turn, role=f.role, error=error, kind=e.kind)
            _block(t, "usage_limited", error)
            return
        delay = min(60.0 * 2 ** (errors - 1), 3600.0)
    else:
        if errors > MAX_TURN_RETRIES:
            t.emit(R.TURN_FAILED, turn=e.turn, role=f.role, error=error, kind=e.kind)
            _block(t, "brain_error", error)
            return
        delay = min(2.0 ** errors, 60.0)
    retry_at = _iso(t.now + timedelta(seconds=delay))
    t.set(retry_at=retry_at)
    t.emit(R.TURN_FAILED, turn=e.turn, role=f.role, error=error, kind=e.kind, retry_at=retry_at)
    t.do(WakeAt(at=retry_at))


def _usage_reset(resume_at: str | None, now: datetime) -> datetime | None:
    """The provider's announced reset, if it is one a goal can wait for."""
    if not resume_at:
        return None
    try:
        at = datetime.fromisoformat(resume_at)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        return None
    return at


def _usage_wait(t: _T, role: str, turn: int, error: str, resume_at: datetime) -> None:
    """The provider said when the account's usage limit resets: wait for it and go on by
    itself then, up to MAX_USAGE_WAITS times in a row; `goal resume` goes on at once."""
    s = t.state
    waits = s.usage_waits + 1
    far = (resume_at - t.now).total_seconds() > MAX_USAGE_WAIT
    at = _iso(max(resume_at, t.now + timedelta(seconds=1)))
    t.emit(R.TURN_FAILED, turn=turn, role=role, error=error, kind="usage_limited", resume_at=at)
    if waits > MAX_USAGE_WAITS or far:
        why = (f"the limit resets at {at}, more than {MAX_USAGE_WAIT / 86400:g} days away" if far
               else f"waited for the usage limit to reset {MAX_USAGE_WAITS} times in a row")
        _block(t, "usage_limited", f"{error} ({why}; resume with `crewctl goal resume {s.id}`)")
        return
    t.set(usage_waits=waits, resume_at=at, retry_at=None)
    t.emit(R.BLOCKED, reason="usage_limited", detail=error, resume_at=at, wait=waits)
    t.set(status=Status.BLOCKED, resume_to=_resume_target(s), reason=f"usage_limited: {error} (resumes by itself at {at})")
    t.do(WakeAt(at=at))


def _on_wake(t: _T, e: ev.Wake) -> None:
    s = t.state
    if s.status == Status.BLOCKED and s.resume_at is not None:
        if datetime.fromisoformat(s.resume_at) > t.now:
            t.do(WakeAt(at=s.resume_at))  # woke early: wait on
            return
        # The usage limit has reset: go on by itself, in the same run (the waits count on).
        target = status_after_hold(s.resume_to)
        t.set(status=target, resume_to=None, reason=None, resume_at=None)
        t.emit(R.RESUMED, status=target, was=Status.BLOCKED, automatic=True, reason="usage_limited")
        _restart_work(t, automatic=True, refresh=True)
        return
    if s.retry_at is None or s.status in (Status.PAUSED, Status.BLOCKED) or (s.status == Status.BUDGET_LIMITED and not _winding_down(s)):
        return
    if datetime.fromisoformat(s.retry_at) > t.now:
        t.do(WakeAt(at=s.retry_at))  # woke early (a restarted timer): wait on
        return
    t.set(retry_at=None)
    _rerun_in_flight(t, refresh=True)


def _rerun_in_flight(t: _T, *, new_session: bool = False, refresh: bool = False) -> None:
    """Run the in-flight turn again: same turn number, same prompt (at-least-once turns).

    With `refresh` (the operator resumed it, or it waited out a backoff or a usage limit),
    whatever reached the goal since its prompt was written is added to that prompt: steers,
    criteria edits, reports. Operator input never waits for a later turn. A crash rerun
    (recovery, a restarted actor) asks exactly what it asked before.
    """
    s = t.state
    f = s.in_flight
    if f is None:
        return
    t.set(in_flight=replace(f, interrupted=False))
    if f.role == "verifier":
        # A verifier session never survives its process: the round starts again from its
        # snapshot, with a brand-new verifier.
        t.set(verifier_corrections=0)
        _start_round(t, f.turn, rerun=True)
        return
    extra: dict[str, Any] = {"new_session": True} if new_session else {}
    delivered: tuple[Steer, ...] = ()
    if refresh and f.kind != "wind_down":
        criteria_changed = f.revision is not None and f.revision != s.revision
        delivered = s.steers[: prompts.MAX_STEERS_PER_TURN]
        if delivered or s.reports or criteria_changed:
            prompt = f.prompt + prompts.since_prompt(s, delivered, criteria_changed=criteria_changed)
            t.set(
                in_flight=replace(f, interrupted=False, prompt=prompt, revision=s.revision),
                steers=s.steers[len(delivered) :],
                reports=(),
            )
            extra.update(refreshed=True, prompt_bytes=text_bytes(prompt))
    f = t.state.in_flight
    assert f is not None
    t.emit(R.TURN_STARTED, turn=f.turn, role="lead", kind=f.kind, rerun=True, **extra)
    for steer in delivered:
        t.emit(R.STEER_DELIVERED, steer=steer.id, turn=f.turn)
    t.do(RunLeadTurn(
        turn=f.turn, kind=f.kind, prompt=f.prompt, new_session=new_session, rerun=True, time_left=_time_left(t.state, f.kind)
    ))


def _on_actor_crashed(t: _T, e: ev.ActorCrashed) -> None:
    """One-for-one restart with a fresh session; too many restarts in the window block the goal."""
    s = t.state
    now = _epoch(t.now)
    restarts = tuple(x for x in s.restarts if now - x < RESTART_WINDOW) + (now,)
    error = markers.collapse(e.error, _REASON_CAP)
    t.set(restarts=restarts)
    if len(restarts) > RESTART_INTENSITY:
        if s.in_flight is not None:
            t.set(in_flight=replace(s.in_flight, interrupted=True))
        t.emit(
            R.BLOCKED,
            reason="crash_loop",
            actor=e.role,
            error=error,
            detail=f"{len(restarts)} restarts in {RESTART_WINDOW:g}s",
        )
        t.set(status=Status.BLOCKED, resume_to=_resume_target(s), reason=f"crash_loop: the {e.role} actor keeps crashing: {error}")
        t.do(CancelWork(reason="crash_loop"))
        return
    t.emit(R.ACTOR_RESTARTED, actor=e.role, error=error, restarts=len(restarts))
    f = s.in_flight
    if f is not None and f.role == e.role and (e.turn is None or e.turn == f.turn) and not f.interrupted:
        _rerun_in_flight(t, new_session=True)


def _on_unsandboxed(t: _T, e: ev.Unsandboxed) -> None:
    t.set(unsandboxed=True)
    t.emit(R.UNSANDBOXED, why=markers.collapse(e.why, _REASON_CAP))


def _on_recover(t: _T, e: ev.Recover) -> None:
    """The supervisor (re)started with this goal: pick up whatever was in flight."""
    if t.state.protect.owed:
        _owe_baseline(t, t.state.protect.owed, "recover")  # first: nothing may run without it
    s = t.state
    if s.envelope is not None and s.envelope.status == EnvelopeStatus.PENDING:
        t.do(BuildEnvelope(round=s.envelope.round))  # the passed round's snapshot is still on disk
    if s.status == Status.BLOCKED and s.resume_at is not None:
        t.do(WakeAt(at=s.resume_at))  # still waiting for a usage limit to reset
        return
    if s.status == Status.BUDGET_LIMITED and _winding_down(s) and s.retry_at is None:
        _rerun_in_flight(t)  # the one wind-down turn still owes its report
        return
    if s.status not in (Status.SCOPING, Status.RUNNING, Status.VERIFYING, Status.AWAITING_SIGNOFF, Status.AWAITING_APPROVAL, Status.BUDGET_LIMITED):
        return  # waiting for the operator; nothing runs
    if s.status == Status.BUDGET_LIMITED and not (_winding_down(s) and s.retry_at is not None):
        return
    if s.retry_at is not None:
        t.do(WakeAt(at=s.retry_at))
        return
    # Tasks in flight died with the old supervisor: queue them again (not an attempt).
    t.set(steps=tuple(
        replace(st, status=StepStatus.PENDING, task=None, holder=None) if st.status == StepStatus.IN_PROGRESS else st for st in s.steps
    ))
    _restart_work(t, automatic=True)


def _winding_down(s: GoalState) -> bool:
    return s.in_flight is not None and s.in_flight.kind == "wind_down" and not s.in_flight.interrupted


def _on_fault(t: _T, e: ev.Fault) -> None:
    """Blocked with the error, whatever the goal was doing: nothing of it runs on."""
    s = t.state
    error = markers.collapse(e.error, _REASON_CAP) or "no detail"
    reason = e.reason if e.reason in ("internal_error", "crash_loop") else "internal_error"
    if s.in_flight is not None:
        t.set(in_flight=replace(s.in_flight, interrupted=True))
    t.set(retry_at=None, resume_at=None)
    t.emit(R.BLOCKED, reason=reason, error=error)
    t.set(status=Status.BLOCKED, resume_to=_resume_target(s), reason=f"{reason}: {error}")
    t.do(CancelWork(reason=reason))


def _on_hook_failed(t: _T, e: ev.HookFailed) -> None:
    """Recorded, nothing else: a broken notification never moves a goal (done ones included)."""
    t.emit(R.HOOK_FAILED, hook=e.hook, status=e.status, error=markers.collapse(e.error, _REASON_CAP))


def _on_fail(t: _T, e: ev.Fail) -> None:
    reason = markers.collapse(e.reason, _REASON_CAP)
    t.set(status=Status.FAILED, reason=reason, resume_to=None)
    t.emit(R.FAILED, reason=reason)
    t.do(CancelWork(reason="failed"))
    t.do(Release())


# -- operator ---------------------------------------------------------------------------------


def _on_edit_criteria(t: _T, e: ev.EditCriteria) -> None:
    s = t.state
    if not e.criteria:
        raise Refused("a goal needs at least one criterion")
    old = {c.id: c for c in s.criteria}
    merged = []
    for c in e.criteria:
        prev = old.get(c.id)
        if prev is not None and prev.same_definition(c):
            merged.append(replace(c, status=prev.status, evidence=prev.evidence))
        else:
            merged.append(replace(c, status=CriterionStatus.PENDING, evidence=None))
    merged_t = tuple(merged)
    if s.status == Status.SCOPING:
        open_round = s.open_clarify
        if open_round is not None:
            # The operator wrote down what "done" means instead of answering: that settles
            # the questions. The round is closed on the record (never silently dropped) and
            # the lead is told. Closing, not refusing: the operator who locks the goal has
            # answered the one question every clarify round is about.
            rounds = s.clarify[:-1] + (replace(open_round, answers={}),)
            closed = Report(kind="clarify_closed", text="the operator set the criteria instead of answering", step=str(open_round.seq))
            t.set(clarify=rounds, reports=s.reports + (closed,))
            t.emit(R.CLARIFY_CLOSED, seq=open_round.seq, reason="the operator set the criteria instead of answering")
        _lock(t, merged_t, statement=s.statement, by="operator")
        if s.in_flight is None:
            _lead_turn(t, "work", automatic=False)
        return
    t.set(criteria=merged_t, revision=s.revision + 1)
    t.emit(R.CRITERIA_UPDATED, revision=s.revision + 1, criteria=[_criterion_dict(c) for c in merged_t])
    _owe_baseline(t, protection.ADD, "criteria")  # a new check command may name a new file
    reopened = any(c.status != CriterionStatus.PASS for c in merged_t)
    if s.status == Status.AWAITING_SIGNOFF and reopened:
        t.set(status=Status.RUNNING)
        if s.in_flight is None:
            _lead_turn(t, "criteria", automatic=False)
            return
    elif s.status in (Status.RUNNING,) and s.in_flight is None and not _dispatching(s) and s.retry_at is None:
        _lead_turn(t, "criteria", automatic=False)
        return
    elif s.status in HOLDS and s.resume_to == Status.AWAITING_SIGNOFF and reopened:
        t.set(resume_to=Status.RUNNING)  # a passed gate re-opens: resuming means work, not sign-off
    # No turn starts now: the lead's next prompt (a rerun included) says the criteria changed.
    t.set(reports=t.state.reports + (Report(kind="criteria_updated", text="see the criteria"),))


def _on_steer(t: _T, e: ev.Steer) -> None:
    s = t.state
    text = validate.steer_message(e.text, error=Refused)
    steer_id = s.steers_sent + 1
    t.set(steers=s.steers + (Steer(id=steer_id, text=text),), steers_sent=steer_id)
    t.emit(R.STEER, steer=steer_id, text=markers.collapse(text, 2000))
    if _idle(t.state) and s.status in (Status.RUNNING, Status.AWAITING_SIGNOFF, Status.SCOPING):
        _lead_turn(t, "steer", automatic=False)


def _idle(s: GoalState) -> bool:
    return s.in_flight is None and s.retry_at is None and not _dispatching(s) and s.open_clarify is None


def _on_pause(t: _T, e: ev.Pause) -> None:
    s = t.state
    if s.status in OPERATOR_HOLDS:
        raise Refused(f"goal {s.id} is {s.status}; nothing runs to pause")
    t.set(status=Status.PAUSED, resume_to=s.status, reason="paused by the operator")
    _interrupt(t)
    t.emit(R.PAUSED, resume_to=s.status)
    t.do(CancelWork(reason="paused"))


def _interrupt(t: _T) -> None:
    """Whatever runs is stopped; it reruns on resume, with the same turn number and prompt."""
    s = t.state
    if s.in_flight is not None:
        t.set(in_flight=replace(s.in_flight, interrupted=True))
    steps = tuple(
        replace(st, status=StepStatus.PENDING, task=None, holder=None) if st.status == StepStatus.IN_PROGRESS else st for st in s.steps
    )
    t.set(steps=steps, retry_at=None)


def _on_resume(t: _T, e: ev.Resume) -> None:
    s = t.state
    if s.status not in OPERATOR_HOLDS:
        raise Refused(f"goal {s.id} is {s.status}, not paused, blocked or budget-limited")
    if s.status == Status.BUDGET_LIMITED and (which := spent(s)):
        raise Refused(f"the {which} budget is still spent; raise it with `crewctl goal budget {s.id} --{_flag(which)} N`")
    target = status_after_hold(s.resume_to)
    was = s.status
    t.set(status=target, resume_to=None, reason=None)
    if was in (Status.BLOCKED, Status.BUDGET_LIMITED):
        t.state = new_run(t.state)
    t.emit(R.RESUMED, status=target, was=was)
    _restart_work(t, automatic=False, refresh=True)


def new_run(s: GoalState) -> GoalState:
    """The one rule for a new run: the operator looked at why the goal stopped (blocked,
    budget spent, a gate they sent back) and chose to go on, so every per-run cap starts
    again. Resume, a budget raise and send-back all use it; nothing else resets these."""
    return replace(
        s,
        attempt=0,
        auto_turns=0,
        run_turns=0,
        lead_corrections=0,
        errors_in_row=0,
        restarts=(),
        fingerprints=(),
        wind_down=False,
        usage_waits=0,
        resume_at=None,
    )


def _restart_work(t: _T, *, automatic: bool, refresh: bool = False) -> None:
    """Start again whatever the goal was doing when it stopped (resume, recovery)."""
    s = t.state
    if s.in_flight is not None and s.in_flight.kind == "wind_down":
        # The goal runs again (budget raised): a progress report for the operator is moot,
        # and its reply would end with no turn in flight. Drop it; a fresh turn continues.
        t.set(in_flight=None, retry_at=None)
        t.do(CancelWork(reason="wind-down superseded"))
        s = t.state
    if s.in_flight is not None:
        _rerun_in_flight(t, refresh=refresh)
        return
    if s.status == Status.VERIFYING:
        _start_round(t, s.turn + 1, rerun=False)
        return
    if any(st.plan == s.plan and st.status == StepStatus.PENDING for st in s.steps):
        _dispatch_runnable(t)
    if _dispatching(t.state):
        return
    if s.status == Status.SCOPING and s.open_clarify is not None:
        return
    if s.status in (Status.RUNNING, Status.SCOPING):
        _lead_turn(t, "resume", automatic=automatic)
    elif s.status == Status.AWAITING_SIGNOFF and s.steers:
        _lead_turn(t, "steer", automatic=False)


def _on_cancel(t: _T, e: ev.Cancel) -> None:
    s = t.state
    t.set(status=Status.CANCELLED, resume_to=None, reason="cancelled by the operator", retry_at=None)
    if s.in_flight is not None:
        t.set(in_flight=replace(s.in_flight, interrupted=True))
    t.emit(R.CANCELLED, was=s.status)
    t.do(CancelWork(reason="cancelled"))
    t.do(Release())


def _on_raise_budget(t: _T, e: ev.RaiseBudget) -> None:
    s = t.state
    validate.budget_raise(e.tokens, e.seconds, e.cost_usd, error=Refused)
    budget = Budget(
        tokens=e.tokens if e.tokens is not None else s.budget.tokens,
        seconds=e.seconds if e.seconds is not None else s.budget.seconds,
        cost_usd=e.cost_usd if e.cost_usd is not None else s.budget.cost_usd,
    )
    t.set(budget=budget)
    still = spent(t.state)
    t.emit(R.BUDGET_RAISED, budget=_budget_dict(budget), **({"still_spent": still} if still else {}))
    if s.status == Status.BUDGET_LIMITED and still:
        t.set(reason=f"{still} budget spent")  # raising one budget may leave another spent
    elif s.status == Status.BUDGET_LIMITED:
        target = status_after_hold(s.resume_to)
        t.state = new_run(t.state)
        t.set(status=target, resume_to=None, reason=None)
        t.emit(R.RESUMED, status=target, was=Status.BUDGET_LIMITED)
        _restart_work(t, automatic=False, refresh=True)


def _on_signoff(t: _T, e: ev.Signoff) -> None:
    s = t.state
    if s.status != Status.AWAITING_SIGNOFF:
        raise Refused(f"goal {s.id} is {s.status}; sign-off needs awaiting_signoff (a passed gate)")
    if s.in_flight is not None:
        t.set(in_flight=replace(s.in_flight, interrupted=True))
        t.do(CancelWork(reason="signed off"))
    t.set(status=Status.DONE, reason=None, reflection=ReflectionStatus.DUE)
    t.emit(R.SIGNOFF, round=s.round)
    t.emit(R.DONE, round=s.round, usage=_spend_dict(s.spend))
    # Done is final; then one reflection turn (goal.reflect), which releases the goal.
    t.do(PrepareReflection())


def _on_send_back(t: _T, e: ev.SendBack) -> None:
    s = t.state
    if s.status != Status.AWAITING_SIGNOFF:
        raise Refused(f"goal {s.id} is {s.status}; send-back needs awaiting_signoff")
    notes = validate.rework_notes(e.notes, error=Refused)
    if s.in_flight is not None:
        t.set(in_flight=replace(s.in_flight, interrupted=True))
        t.do(CancelWork(reason="sent back"))
        t.set(in_flight=None)
    t.state = new_run(t.state)
    t.set(
        criteria=tuple(replace(c, status=CriterionStatus.PENDING, evidence=None) for c in s.criteria),
        revision=s.revision + 1,
        status=Status.RUNNING,
        notes=notes,
    )
    t.emit(R.SEND_BACK, notes=notes, revision=s.revision + 1)
    _lead_turn(t, "rework", automatic=False)


# -- limits -----------------------------------------------------------------------------------


def spent(s: GoalState) -> str | None:
    """Which budget is used up ("tokens", "time", "cost"), or None."""
    if s.budget.tokens is not None and s.spend.tokens >= s.budget.tokens:
        return "tokens"
    if s.budget.seconds is not None and s.spend.seconds >= s.budget.seconds:
        return "time"
    if s.budget.cost_usd is not None and s.spend.cost_usd >= s.budget.cost_usd:
        return "cost"
    return None


def _flag(which: str) -> str:
    return {"tokens": "tokens", "time": "seconds", "cost": "cost"}[which]


def _budget_limited(t: _T, which: str) -> None:
    s = t.state
    resume_to = s.status if s.status not in (Status.BUDGET_LIMITED,) else s.resume_to
    t.set(status=Status.BUDGET_LIMITED, resume_to=resume_to, reason=f"{which} budget spent")
    t.emit(R.BUDGET_LIMITED, budget=which, spend=_spend_dict(s.spend), limit=_budget_dict(s.budget))
    if not s.wind_down:
        # Exactly one wind-down turn: the lead reports progress, then nothing starts.
        t.set(wind_down=True)
        prompt = prompts.lead_prompt(t.state, "wind_down")
        turn = start_turn(t, role="lead", kind="wind_down", prompt=prompt, revision=s.revision)
        t.do(RunLeadTurn(turn=turn, kind="wind_down", prompt=prompt))


def _block(t: _T, reason: str, detail: str) -> None:
    s = t.state
    detail = markers.collapse(detail, _REASON_CAP)
    t.set(status=Status.BLOCKED, resume_to=_resume_target(s), reason=f"{reason}: {detail}" if reason != "lead" else detail)
    t.emit(R.BLOCKED, reason=reason, detail=detail)


def _resume_target(s: GoalState) -> str:
    if s.status in (Status.SCOPING,):
        return Status.SCOPING
    if s.status in (Status.AWAITING_SIGNOFF,):
        return Status.AWAITING_SIGNOFF
    if s.status in OPERATOR_HOLDS and s.resume_to:
        return s.resume_to
    return Status.RUNNING


def clean_usage(u: ev.TurnUsage) -> ev.TurnUsage:
    """A turn's usage as the goal counts it: whole token counts and finite seconds and cost,
    each bounded. Brains report what they like (a usage file may say Infinity); a figure
    that is not a sane number is dropped here, where it enters, so every total and every
    timeline record stays plain JSON."""
    def tokens(n: Any) -> int:
        return n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= validate.MAX_TOKENS else 0

    return ev.TurnUsage(
        input_tokens=tokens(u.input_tokens),
        output_tokens=tokens(u.output_tokens),
        cached_tokens=tokens(u.cached_tokens),
        cost_usd=validate.finite_usage(u.cost_usd, high=validate.MAX_COST_USD),
        seconds=_finite(u.seconds),
    )


def _finite(seconds: Any) -> float:
    return validate.finite_usage(seconds, high=validate.MAX_SECONDS) or 0.0


def _account(t: _T, usage: ev.TurnUsage, *, replied: bool = True) -> None:
    t.set(spend=spend_after(t.state.spend, usage, replied=replied))


def spend_after(sp: Spend, usage: ev.TurnUsage, *, replied: bool = True) -> Spend:
    """The goal's spend with one turn's usage added (sane, finite figures only). A turn that
    `replied` with no tokens at all is counted as uncounted: its brain reports no usage."""
    usage = clean_usage(usage)
    uncounted = replied and usage.input_tokens == 0 and usage.output_tokens == 0
    return Spend(
        uncounted_turns=sp.uncounted_turns + uncounted,
        input_tokens=sp.input_tokens + usage.input_tokens,
        output_tokens=sp.output_tokens + usage.output_tokens,
        cached_tokens=sp.cached_tokens + usage.cached_tokens,
        cost_usd=sp.cost_usd + (usage.cost_usd or 0.0),
        seconds=sp.seconds + usage.seconds,
    )


# -- serialisation helpers for records --------------------------------------------------------


def _criterion_dict(c: Criterion) -> dict:
    return {"id": c.id, "text": c.text, "verify": dict(c.verify) if not isinstance(c.verify, str) else c.verify}


def _usage_dict(u: ev.TurnUsage) -> dict:
    u = clean_usage(u)
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cached_tokens": u.cached_tokens,
        "cost_usd": u.cost_usd,
        "seconds": round(u.seconds, 3),
    }


def _spend_dict(s: Spend) -> dict:
    return {
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "cached_tokens": s.cached_tokens,
        "cost_usd": round(s.cost_usd, 6),
        "seconds": round(s.seconds, 3),
    }


def _budget_dict(b: Budget) -> dict:
    return {"tokens": b.tokens, "seconds": b.seconds, "cost_usd": b.cost_usd}


# -- protected paths ----------------------------------------------------------------------------


def _owe_baseline(t: _T, mode: str, reason: str) -> None:
    """Ask for a baseline now. The supervisor applies it before the effects after this one."""
    s = t.state
    if not s.protect.enabled or not s.criteria:
        return
    if mode == protection.ADD and s.protect.baseline_at is None and s.protect.owed is None:
        return  # no baseline to add to (it failed): only the operator's --rebaseline makes one
    owed = protection.FULL if protection.FULL in (mode, s.protect.owed) else mode
    t.set(protect=replace(s.protect, owed=owed))
    t.do(TakeBaseline(mode=owed, reason=reason, scope=protection.scope(s.protect, _checks(s))))


def _checks(s: GoalState) -> tuple[str, ...]:
    return tuple(c.check for c in s.criteria if c.check is not None)


def _on_baseline_taken(t: _T, e: ev.BaselineTaken) -> None:
    s = t.state
    p = s.protect
    if not p.enabled or p.owed is None:
        return  # superseded (protection edited) or already recorded
    if e.error is not None:
        error = markers.collapse(e.error, _REASON_CAP)
        # Fail-closed: the old baseline (if any) stays in force; with none, every round holds.
        t.set(protect=replace(p, owed=None, error=error))
        t.emit(R.PROTECT_BASELINE, mode=e.mode, reason=e.reason, error=error)
        return
    sc = protection.scope(p, _checks(s))
    entries, unmatched = protection.build_baseline(sc, e.observed, s.baseline, e.mode)
    unmatched = () if p.defaults else unmatched  # built-in patterns need not match anything
    t.set(baseline=entries, protect=replace(p, owed=None, error=None, baseline_at=_iso(t.now), unmatched=unmatched))
    t.emit(
        R.PROTECT_BASELINE,
        mode=e.mode,
        reason=e.reason,
        pinned=len(protection.pinned_files(entries)),
        forbidden_present=protection.forbidden_present(entries)[:50],
        unmatched=list(unmatched),
    )


def _on_edit_protect(t: _T, e: ev.EditProtect) -> None:
    s = t.state
    p = s.protect
    if not p.enabled:
        why = f"it was created with {p.off}" if p.off else "it was created before crewctl protected paths"
        raise Refused(f"goal {s.id} has no protected paths ({why})")
    if not (e.add or e.remove or e.rebaseline):
        raise Refused("nothing to change: give --add, --remove or --rebaseline")
    for glob in e.add + e.remove:
        if problem := protection.pattern_problem(glob):
            raise Refused(f"protect pattern {glob!r} {problem}")
    unknown = [g for g in e.remove if g not in p.patterns and g not in p.forbidden]
    if unknown:
        raise Refused(
            f"{unknown[0]!r} is not a protect pattern of goal {s.id} "
            f"(pinned: {', '.join(p.patterns) or 'none'}; forbidden: {', '.join(p.forbidden) or 'none'})"
        )
    new = protection.edited(p, e.add, e.remove)
    sc = protection.scope(new, _checks(s))
    t.set(protect=new, baseline=protection.prune(s.baseline, sc))
    t.emit(
        R.PROTECT_UPDATED,
        added=list(e.add),
        removed=list(e.remove),
        rebaseline=e.rebaseline,
        patterns=list(new.patterns),
        forbidden=list(new.forbidden),
    )
    if e.rebaseline or e.add:
        _owe_baseline(t, protection.FULL if e.rebaseline else protection.ADD, "protect")


def _held_before_checks(t: _T, e: ev.RoundFinished) -> bool:
    """Snapshot, then protected paths, then checks: a round whose snapshot was refused or
    whose protected paths changed is held here, with no check having run."""
    s = t.state
    if e.checks is None:
        return False  # a corrective verifier turn: the round's start was judged already
    if e.snapshot:
        t.emit(R.SNAPSHOT, round=s.round, **dict(e.snapshot))
    refused = e.refused
    findings = tuple(protection.Finding(*f) for f in (e.protected or ()) if len(f) == 3)
    if s.protect.enabled and e.protected is None and refused is None:
        refused = "the protected-path check did not run"  # never a pass by omission
    if refused is None and not findings:
        if s.protect.findings:
            t.set(protect=replace(s.protect, findings=()))
        return False
    if findings:
        t.set(protect=replace(s.protect, findings=protection.capped(findings)))
        t.emit(
            R.PROTECTED_CHANGED,
            round=s.round,
            paths=[f.path for f in findings[: protection.MAX_FINDINGS]],
            findings=[list(f) for f in findings[: protection.MAX_FINDINGS]],
            count=len(findings),
        )
        why = "protected paths changed: " + protection.describe(findings)
    else:
        assert refused is not None  # no findings: the early return above left only a refusal
        t.emit(R.SNAPSHOT_REFUSED, round=s.round, reason=markers.collapse(refused, _REASON_CAP))
        why = markers.collapse(refused, _REASON_CAP)
    evidence = markers.collapse(f"held before any check ran: {why}", 1500)
    checks = {c.id: CheckRun(exit=None, output=evidence) for c in s.criteria if c.check is not None}
    model = {c.id: ("fail", evidence) for c in s.criteria if c.check is None}
    _decide(t, model, checks, None)
    return True


_HANDLERS: dict[type, Callable[[_T, Any], None]] = {
    ev.TurnFinished: _on_turn_finished,
    ev.RoundFinished: _on_round_finished,
    ev.TurnFailed: _on_turn_failed,
    ev.ActorCrashed: _on_actor_crashed,
    ev.StepAssigned: _on_step_assigned,
    ev.StepFinished: _on_step_finished,
    ev.StepFailed: _on_step_failed,
    ev.Wake: _on_wake,
    ev.Recover: _on_recover,
    ev.Unsandboxed: _on_unsandboxed,
    ev.Fail: _on_fail,
    ev.Fault: _on_fault,
    ev.HookFailed: _on_hook_failed,
    ev.Answer: _on_answer,
    ev.EditCriteria: _on_edit_criteria,
    ev.Steer: _on_steer,
    ev.Pause: _on_pause,
    ev.Resume: _on_resume,
    ev.Cancel: _on_cancel,
    ev.RaiseBudget: _on_raise_budget,
    ev.Approve: _on_approve,
    ev.Signoff: _on_signoff,
    ev.SendBack: _on_send_back,
    ev.EditProtect: _on_edit_protect,
    ev.BaselineTaken: _on_baseline_taken,
}
_OPERATOR = frozenset(
    {ev.Answer, ev.EditCriteria, ev.Steer, ev.Pause, ev.Resume, ev.Cancel, ev.RaiseBudget, ev.Approve, ev.Signoff, ev.SendBack}
    | {ev.EditProtect}
)
OPERATOR_EVENTS = _OPERATOR  # what the operator sends (the rest comes from actors and timers)
# Recorded whatever the status: the on_done hook runs after the goal is done.
_EVEN_WHEN_TERMINAL = frozenset({ev.HookFailed})
