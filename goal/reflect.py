"""The reflection after sign-off: its digest, its one REFLECT block, and its rules.

When the operator signs a goal off, the goal is `done` and stays done whatever happens
here. Then (docs/contracts.md, "Durable outputs"):

1. `PrepareReflection`: the shell reads the goal's timeline and calls `digest_prompt`,
   a bounded summary of the run, and reports it back as `ReflectionStarted`;
2. that fixes the turn: role `reflector`, a new turn number, the prompt kept in the
   in-flight turn so a rerun after a crash asks exactly the same thing; `RunReflection`;
3. the reply is judged by `judge`: exactly one valid REFLECT block, or it failed. A REFLECT
   counts only here; any other marker in this reply is ignored and recorded (and a REFLECT
   anywhere else is ignored by the phase machine, like every marker from the wrong role).
4. `reflection` is recorded (payload `ok`, and `error` when it failed or was malformed);
   a good one becomes `SaveReflection` (memory and skill on disk). A failed turn or a
   malformed reply is tried once more; the second failure is recorded and that is all.

Pure: no I/O, no clock reads. `step` is what `phases.step` hands these events to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from . import events as ev
from . import markers
from .effects import BuildEnvelope, PrepareReflection, Record, Release, RunReflection, SaveReflection, Transition
from .markers import collapse, quote
from .model import GoalState, InFlight
from .prompts import reflector as templates
from .turns import start_turn
from .vocab import EnvelopeStatus, RecordType as R, ReflectionStatus, Status

__all__ = [
    "EVENTS",
    "Judgement",
    "MAX_TRIES",
    "ROLE",
    "digest_prompt",
    "judge",
    "outputs_settled",
    "step",
]

ROLE = "reflector"
KIND = "reflect"  # the turn kind, as in turn_started / goal logs
MAX_TRIES = 2  # a failed reflection is retried at most once
EVENTS = frozenset({ev.ReflectionStarted, ev.ReflectionFinished, ev.ReflectionFailed})

# Bounds of the digest: it is a prompt, so it may not grow with the length of the run.
_MAX_ROUNDS = 20  # the newest held rounds
_MAX_FAILED_PER_ROUND = 10
_MAX_STEERS = 20
_MAX_SEND_BACKS = 10
_EVIDENCE_CAP = 400
_TEXT_CAP = 600


# -- the digest ------------------------------------------------------------------------------


def digest_prompt(state: GoalState, events: Iterable[Mapping[str, Any]]) -> str:
    """The reflector's whole prompt: objective, criteria, each held round's failures,
    steers, send-back notes and spend, each section bounded."""
    timeline = list(events)
    parts = [
        templates.PREAMBLE,
        "## Objective\n" + quote(state.objective[:4000]),
        _criteria(state),
        _held_rounds(timeline),
        _steers(timeline),
        _send_backs(timeline),
        _spend(state),
        templates.INSTRUCTIONS,
    ]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def _criteria(state: GoalState) -> str:
    lines = ["## Acceptance criteria, as signed off"]
    for c in state.criteria:
        how = f"check `{collapse(c.check, 300)}`" if c.check is not None else "judged by the verifier"
        lines.append(f"- {c.id} ({how}): {collapse(c.text, 500)}")
        if c.evidence:
            lines.append(f"  evidence: {collapse(c.evidence, _EVIDENCE_CAP)}")
    return "\n".join(lines)


def _held_rounds(timeline: list[Mapping[str, Any]]) -> str:
    verdicts: dict[int, dict[str, str]] = {}
    held: list[tuple[int, list[str], str | None]] = []
    for e in timeline:
        p = e.get("payload") or {}
        if e.get("type") == "verify":
            verdicts[p.get("round", 0)] = {
                r.get("id"): r.get("evidence", "") for r in p.get("results", []) if r.get("verdict") != "pass"
            }
        elif e.get("type") == "gate_held":
            held.append((p.get("round", 0), list(p.get("failed") or []), p.get("reason")))
    if not held:
        return "## Held gate rounds\nNone: the first READY passed."
    lines = [f"## Held gate rounds ({len(held)})"]
    if len(held) > _MAX_ROUNDS:
        lines.append(f"(the {_MAX_ROUNDS} newest of {len(held)})")
    for round_no, failed, reason in held[-_MAX_ROUNDS:]:
        if reason:
            lines.append(f"- round {round_no}: held ({collapse(reason, 200)})")
            continue
        lines.append(f"- round {round_no}: failed " + (", ".join(failed[:_MAX_FAILED_PER_ROUND]) or "-"))
        evidence = verdicts.get(round_no, {})
        for cid in failed[:_MAX_FAILED_PER_ROUND]:
            if evidence.get(cid):
                lines.append(f"  {cid}: {collapse(str(evidence[cid]), _EVIDENCE_CAP)}")
    return "\n".join(lines)


def _steers(timeline: list[Mapping[str, Any]]) -> str:
    steers = [(e.get("payload") or {}).get("text", "") for e in timeline if e.get("type") == "steer"]
    if not steers:
        return ""
    shown = steers[-_MAX_STEERS:]
    return f"## The operator's steers ({len(steers)})\n" + "\n".join(f"- {collapse(str(s), _TEXT_CAP)}" for s in shown)


def _send_backs(timeline: list[Mapping[str, Any]]) -> str:
    notes = [(e.get("payload") or {}).get("notes", "") for e in timeline if e.get("type") == "send_back"]
    if not notes:
        return ""
    shown = notes[-_MAX_SEND_BACKS:]
    return f"## Sent back by the operator ({len(notes)})\n" + "\n".join(f"- {collapse(str(n), _TEXT_CAP)}" for n in shown)


def _spend(state: GoalState) -> str:
    sp = state.spend
    cost = f", ${sp.cost_usd:.4f}" if sp.cost_usd else ""
    return (
        "## Spend\n"
        f"{sp.input_tokens} input / {sp.output_tokens} output tokens, {sp.seconds:.0f}s of agent time{cost}; "
        f"{state.turn} turns, {state.round} gate round(s)."
    )


# -- the one REFLECT block -------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """What a reflection reply amounts to: its REFLECT payload, or why it has none."""

    payload: dict[str, Any] | None
    error: str | None
    line: int | None  # of the offending block, when there is one
    ignored: tuple[tuple[str, int], ...]  # (kind, line) of markers this turn may not send


def judge(text: str) -> Judgement:
    extraction = markers.extract(text)
    ignored = tuple((m.kind, m.line) for m in extraction.markers if m.kind != "reflect") + tuple(
        (x.kind, x.line) for x in extraction.errors if x.kind != "reflect"
    )
    good = [m for m in extraction.markers if m.kind == "reflect"]
    bad = [x for x in extraction.errors if x.kind == "reflect"]
    blocks = len(good) + len(bad)
    if blocks == 0:
        return Judgement(None, "no REFLECT block", None, ignored)
    if blocks > 1:
        line = sorted([m.line for m in good] + [x.line for x in bad])[1]
        return Judgement(None, f"{blocks} REFLECT blocks in one reply", line, ignored)
    if bad:
        return Judgement(None, bad[0].reason, bad[0].line, ignored)
    return Judgement(good[0].payload, None, good[0].line, ignored)


# -- the rules -------------------------------------------------------------------------------


def outputs_settled(state: GoalState) -> bool:
    """Nothing of the goal's durable outputs is still being made: its supervisor may go."""
    reflecting = state.reflection == ReflectionStatus.DUE
    building = state.envelope is not None and state.envelope.status == EnvelopeStatus.PENDING
    return not reflecting and not building


def step(state: GoalState, event: ev.Event, now: datetime) -> Transition:
    """A reflection event, or the recovery of a done goal."""
    b = _Builder(state)
    if isinstance(event, ev.Recover):
        _recover(b)
    elif state.status != Status.DONE or state.reflection != ReflectionStatus.DUE:
        pass  # late news for a reflection that is over changes nothing
    elif isinstance(event, ev.ReflectionStarted):
        _started(b, event)
    elif isinstance(event, ev.ReflectionFinished):
        _finished(b, event, now)
    elif isinstance(event, ev.ReflectionFailed):
        _failed(b, event)
    return b.done()


class _Builder:
    def __init__(self, state: GoalState) -> None:
        self.state = state
        self.records: list[Record] = []
        self.effects: list[Any] = []

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def emit(self, type_: str, **payload: Any) -> None:
        self.records.append(Record(type_, payload))

    def done(self) -> Transition:
        return Transition(self.state, tuple(self.records), tuple(self.effects))


def _recover(b: _Builder) -> None:
    s = b.state
    if s.envelope is not None and s.envelope.status == EnvelopeStatus.PENDING:
        b.effects.append(BuildEnvelope(round=s.envelope.round))
    if s.status != Status.DONE or s.reflection != ReflectionStatus.DUE:
        if outputs_settled(s):
            b.effects.append(Release())
        return
    f = s.in_flight
    if f is not None and f.role == ROLE:
        # Same turn, same prompt: the reply of the interrupted run was never recorded.
        b.set(in_flight=replace(f, interrupted=False))
        b.emit(R.TURN_STARTED, turn=f.turn, role=ROLE, kind=KIND, rerun=True)
        b.effects.append(RunReflection(turn=f.turn, prompt=f.prompt, rerun=True))
    else:
        b.effects.append(PrepareReflection())


def _started(b: _Builder, e: ev.ReflectionStarted) -> None:
    s = b.state
    if s.in_flight is not None:
        return  # a duplicate: the turn is already fixed
    _new_turn(b, e.prompt)


def _new_turn(b: _Builder, prompt: str) -> None:
    turn = start_turn(b, role=ROLE, kind=KIND, prompt=prompt)
    b.effects.append(RunReflection(turn=turn, prompt=prompt))


def _current(s: GoalState, turn: int) -> InFlight | None:
    f = s.in_flight
    if f is None or f.role != ROLE or f.turn != turn or f.interrupted:
        return None
    return f


def _finished(b: _Builder, e: ev.ReflectionFinished, now: datetime) -> None:
    from .phases import MAX_MARKER_RECORDS, _usage_dict, clean_usage, spend_after  # one shape of usage, one cap on records

    s = b.state
    f = _current(s, e.turn)
    if f is None:
        return
    usage = clean_usage(e.usage)  # sane, finite figures only, as for every other turn
    b.set(in_flight=None, spend=spend_after(s.spend, e.usage))
    b.emit(R.TURN_FINISHED, turn=e.turn, role=ROLE, kind=KIND, usage=_usage_dict(usage), reply_bytes=len(e.text.encode("utf-8", "surrogatepass")))
    verdict = judge(e.text)
    for kind, line in verdict.ignored[:MAX_MARKER_RECORDS]:
        b.emit(R.MARKER_IGNORED, kind=kind, line=line, role=ROLE, reason="the reflector may only send REFLECT")
    if len(verdict.ignored) > MAX_MARKER_RECORDS:
        b.emit(R.MARKERS_CAPPED, role=ROLE, recorded=MAX_MARKER_RECORDS, ignored=len(verdict.ignored) - MAX_MARKER_RECORDS, invalid=0)
    tries = s.reflection_tries + 1
    b.set(reflection_tries=tries)
    if verdict.payload is None:
        b.emit(R.MARKER_INVALID, kind="reflect", line=verdict.line, role=ROLE, reason=verdict.error)
        if tries < MAX_TRIES:
            _new_turn(b, f.prompt + "\n" + templates.CORRECTIVE.format(reason=collapse(verdict.error or "", 300)) + "\n")
            return
        _give_up(b, verdict.error or "malformed reflection")
        return
    p = verdict.payload
    skill = p.get("skill")
    b.set(reflection=ReflectionStatus.OK)
    b.emit(
        R.REFLECTION,
        ok=True,
        turn=e.turn,
        tries=tries,
        summary=p["summary"],
        lessons=list(p["lessons"]),
        memory=[dict(m) for m in p["memory"]],
        skill=dict(skill) if skill else None,
    )
    b.effects.append(
        SaveReflection(
            workspace=s.workspace,
            goal_id=s.id,
            at=now.isoformat(),
            memory=tuple((m["kind"], m["text"]) for m in p["memory"]),
            skill=dict(skill) if skill else None,
        )
    )
    _release_if_settled(b)


def _failed(b: _Builder, e: ev.ReflectionFailed) -> None:
    s = b.state
    f = _current(s, e.turn)
    if f is None:
        return
    error = collapse(e.error, 1000)
    tries = s.reflection_tries + 1
    b.set(reflection_tries=tries)
    b.emit(R.TURN_FAILED, turn=e.turn, role=ROLE, error=error, kind="error")
    b.set(in_flight=None)
    if tries < MAX_TRIES:
        _new_turn(b, f.prompt)  # the retry is a turn of its own, with the same prompt
        return
    _give_up(b, error)


def _give_up(b: _Builder, error: str) -> None:
    b.set(reflection=ReflectionStatus.FAILED)
    b.emit(R.REFLECTION, ok=False, error=collapse(error, 1000), tries=b.state.reflection_tries)
    _release_if_settled(b)


def _release_if_settled(b: _Builder) -> None:
    if outputs_settled(b.state):
        b.effects.append(Release())
