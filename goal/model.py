"""The goal as data: immutable values the phase machine steps from one to the next.

Everything the supervisor needs to decide what happens next lives in `GoalState`, so a
restarted supervisor rebuilds its whole mind from one stored row (plus criteria and steps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from .vocab import (
    ACTIVE,
    HOLDS,
    TERMINAL,
    CriterionStatus,
    EnvelopeStatus,
    ReflectionStatus,
    Status,
    StepStatus,
)

__all__ = [
    "ACTIVE",
    "CRITERION_STATUSES",
    "ENVELOPE_STATUSES",
    "GOAL_DEFAULTS",
    "REFLECTION_STATUSES",
    "Budget",
    "CheckRun",
    "Envelope",
    "ClarifyRound",
    "Criterion",
    "GoalState",
    "HOLDS",
    "InFlight",
    "Protect",
    "Question",
    "Report",
    "STATUSES",
    "STEP_STATUSES",
    "Spend",
    "Steer",
    "Step",
    "TERMINAL",
    "replace",
]

# The wire texts in the contract's order, as plain strings: click.Choice and other consumers
# treat an Enum member by its name, not its value.
STATUSES = tuple(x.value for x in Status)
CRITERION_STATUSES = tuple(x.value for x in CriterionStatus)
STEP_STATUSES = tuple(x.value for x in StepStatus)
ENVELOPE_STATUSES = tuple(x.value for x in EnvelopeStatus)
REFLECTION_STATUSES = tuple(x.value for x in ReflectionStatus)

# Every per-goal default, in one place: GoalState's fields, phases.GoalSettings, the config's
# [defaults] (which may override each of them) and `goal new` all start from these.
GOAL_DEFAULTS: Mapping[str, Any] = {
    "attempt_cap": 5,
    "max_auto_turns": 20,
    "max_turns": 200,
    "check_timeout": 600.0,
    "replan_budget": 2,
    "step_attempts": 3,
}


@dataclass(frozen=True)
class CheckRun:
    """What one check command did: its exit code (None when it was stopped or never
    started), the tail of its output, and whether its timeout stopped it."""

    exit: int | None = None
    output: str = ""
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit == 0 and not self.timed_out

    @classmethod
    def of(cls, value: "CheckRun | Mapping[str, Any]") -> "CheckRun":
        """A CheckRun from itself or from the plain mapping goal rows stored before it existed."""
        if isinstance(value, CheckRun):
            return value
        return cls(exit=value.get("exit"), output=str(value.get("output", "")), timed_out=bool(value.get("timed_out")))


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str
    verify: str | Mapping[str, str]  # instructions for the verifier, or {"run": command}
    status: str = CriterionStatus.PENDING
    evidence: str | None = None

    @property
    def check(self) -> str | None:
        """The check command crewctl runs itself, if this criterion has one."""
        return self.verify.get("run") if isinstance(self.verify, Mapping) else None

    def same_definition(self, other: "Criterion") -> bool:
        return self.id == other.id and self.text == other.text and _verify_key(self.verify) == _verify_key(other.verify)


def _verify_key(verify: str | Mapping[str, str]) -> tuple:
    return ("run", verify.get("run")) if isinstance(verify, Mapping) else ("text", verify)


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    options: tuple[str, ...] = ()
    multi: bool = False


@dataclass(frozen=True)
class ClarifyRound:
    seq: int
    questions: tuple[Question, ...]
    intro: str | None = None
    answers: Mapping[str, str] | None = None  # None while the round is open


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    plan: int
    detail: str | None = None
    lane: str | None = None
    needs_approval: bool = False
    approved: bool = False
    status: str = StepStatus.PENDING
    attempts: int = 0  # dispatches that ended in failure or a lost host
    task: str | None = None  # id of the task currently carrying this step; results must match it
    dispatches: int = 0
    holder: str | None = None  # the agent host running it
    result: str | None = None  # capped summary of the worker's reply or the failure


@dataclass(frozen=True)
class Steer:
    id: int
    text: str


@dataclass(frozen=True)
class Report:
    """Something that happened while the lead was not looking, for its next turn."""

    kind: str  # "step_completed", "step_failed", "step_rejected", "criteria_updated", "stale_round", "clarify_closed"
    text: str
    step: str | None = None


@dataclass(frozen=True)
class InFlight:
    """The one turn the goal waits on (a lead turn, or the verifier of the current round)."""

    turn: int
    role: str
    kind: str
    round: int | None = None
    prompt: str = ""  # kept so a rerun asks exactly the same thing, and stored in the turn table
    interrupted: bool = False  # paused, cancelled or crashed: rerun it on resume/recovery
    revision: int | None = None  # the goal's revision when the prompt was built (a lead turn)


@dataclass(frozen=True)
class Protect:
    """A goal's protected paths (the rules are in goal/protect.py; the file hashes live in
    GoalState.baseline). The default value is "off": a goal stored before protected paths
    existed has none, and a new goal always gets its settings from `protect.settings`."""

    enabled: bool = False
    patterns: tuple[str, ...] = ()  # pinned patterns
    defaults: bool = False  # `patterns` are the built-in ones, which apply only when a criterion has a check
    forbidden: tuple[str, ...] = ()
    off: str | None = None  # why it is off, when the operator turned it off ("--no-protect")
    baseline_at: str | None = None  # when the baseline in force was recorded
    owed: str | None = None  # "full" or "add": a baseline is due before anything else runs
    error: str | None = None  # why the last baseline could not be recorded
    unmatched: tuple[str, ...] = ()  # operator patterns that matched no file at the last baseline
    findings: tuple[tuple[str, str, str], ...] = ()  # the last round's (path, kind, rule)


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    seconds: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    # Turns that replied but reported no tokens at all (an agent CLI that prints no usage, a
    # server that streams none): a token budget cannot count them, which the operator must
    # be told (`goal show`, `doctor`) rather than find out when the bill comes.
    uncounted_turns: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Envelope:
    """The PR envelope of the passed gate round `round` (docs/contracts.md, "Durable outputs")."""

    round: int
    status: str = EnvelopeStatus.PENDING
    branch: str | None = None  # crewctl/<goal id>
    commit: str | None = None
    base: str | None = None  # the commit it is on: the goal's starting commit
    files: tuple[str, ...] = ()  # changed paths, capped
    pr: str | None = None  # path of pr.md
    patch: str | None = None  # path of pr.patch
    error: str | None = None


@dataclass(frozen=True)
class GoalState:
    id: str
    objective: str
    workspace: str
    created_at: str
    status: str = Status.SCOPING
    resume_to: str | None = None
    reason: str | None = None
    roster: Mapping[str, str] = field(default_factory=dict)  # role -> brain spec

    criteria: tuple[Criterion, ...] = ()
    statement: str | None = None
    revision: int = 0  # bumps whenever what "done" means changes (lock, edits, send-back)
    clarify: tuple[ClarifyRound, ...] = ()

    plan: int = 0
    steps: tuple[Step, ...] = ()
    reports: tuple[Report, ...] = ()
    replans: int = 0
    replan_budget: int = GOAL_DEFAULTS["replan_budget"]
    step_attempts: int = GOAL_DEFAULTS["step_attempts"]

    steers: tuple[Steer, ...] = ()  # queued, not yet delivered
    steers_sent: int = 0  # steer ids are 1, 2, 3... per goal
    notes: str | None = None  # send-back notes for the rework turn

    turn: int = 0  # the last turn number handed out
    in_flight: InFlight | None = None
    retry_at: str | None = None
    errors_in_row: int = 0
    last_error: str | None = None
    resume_at: str | None = None  # blocked on a provider's usage limit: resumes by itself then
    usage_waits: int = 0  # such waits in a row (a turn that succeeds ends the row)

    round: int = 0
    round_revision: int | None = None
    ready_summary: str | None = None
    ready_evidence: tuple[str, ...] = ()
    round_checks: Mapping[str, CheckRun] | None = None
    last_failures: tuple[tuple[str, str], ...] = ()  # (criterion id, evidence) of the last held round
    fingerprints: tuple[str, ...] = ()  # of the last held rounds, newest last

    attempt: int = 0
    attempt_cap: int = GOAL_DEFAULTS["attempt_cap"]
    auto_turns: int = 0  # continuation turns in a row with no marker
    max_auto_turns: int = GOAL_DEFAULTS["max_auto_turns"]
    run_turns: int = 0  # automatic turns this run
    max_turns: int = GOAL_DEFAULTS["max_turns"]
    lead_corrections: int = 0
    verifier_corrections: int = 0
    restarts: tuple[float, ...] = ()  # epoch seconds of recent actor restarts

    budget: Budget = Budget()
    spend: Spend = Spend()
    wind_down: bool = False  # the one wind-down turn for the current limit has been started

    check_timeout: float = GOAL_DEFAULTS["check_timeout"]
    # Where the workspace stood when the goal was created (e.g. {"kind": "git", "commit":
    # sha}), so the report can list the files changed since; None if it could not be told.
    start: Mapping[str, Any] | None = None
    # Sticky: some turn of this goal ran without crewctl's sandbox (`crewctl run --sandbox
    # off`), so its result was not produced under the seal. The timeline says which runs.
    unsandboxed: bool = False

    protect: Protect = Protect()
    baseline: tuple[tuple[str, str, str], ...] = ()  # (rule, path, content hash), sorted; its own table
    # What a finished goal leaves behind (docs/contracts.md, "Durable outputs").
    base_commit: str | None = None  # the workspace's git HEAD when the goal was created
    base_branch: str | None = None  # the branch checked out then, if any
    briefing: str | None = None  # memory and skills for the first lead prompt only
    envelope: Envelope | None = None
    reflection: str | None = None  # REFLECTION_STATUSES; None until sign-off
    reflection_tries: int = 0

    @property
    def open_clarify(self) -> ClarifyRound | None:
        if self.clarify and self.clarify[-1].answers is None:
            return self.clarify[-1]
        return None

    def step_by_id(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def criterion(self, cid: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == cid), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GoalState":
        return _build(cls, data)


# Rebuilding nested frozen dataclasses from JSON: tuples of dataclasses and optional ones.
_NESTED: dict[tuple[type, str], type] = {}
# Mappings of id to a dataclass with its own `of` (which also reads the older plain shape).
_MAPPED: dict[tuple[type, str], Any] = {}


def _build(cls: type, data: Mapping[str, Any]):
    kwargs = {}
    names = {f.name for f in fields(cls)}
    for name, value in data.items():
        if name not in names:
            continue  # written by a newer minor version; schema versions guard real changes
        kwargs[name] = _value(cls, name, value)
    return cls(**kwargs)


def _value(cls: type, name: str, value: Any) -> Any:
    inner = _NESTED.get((cls, name))
    if value is None:
        return None
    if (cls, name) in _MAPPED:
        return {k: _MAPPED[(cls, name)].of(v) for k, v in value.items()}
    if inner is not None:
        if isinstance(value, list):
            return tuple(_build(inner, v) for v in value)
        return _build(inner, value)
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


_NESTED.update(
    {
        (GoalState, "criteria"): Criterion,
        (GoalState, "clarify"): ClarifyRound,
        (GoalState, "steps"): Step,
        (GoalState, "reports"): Report,
        (GoalState, "steers"): Steer,
        (GoalState, "in_flight"): InFlight,
        (GoalState, "budget"): Budget,
        (GoalState, "spend"): Spend,
        (GoalState, "protect"): Protect,
        (GoalState, "envelope"): Envelope,
        (ClarifyRound, "questions"): Question,
    }
)
_MAPPED[(GoalState, "round_checks")] = CheckRun
