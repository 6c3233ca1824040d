"""Peewee models. One schema for SQLite and PostgreSQL.

The goal row carries the phase machine's scalars (as columns where people query them, and
all of them in `data`); criteria, steps, clarify rounds and steers have their own tables;
`event` is the append-only timeline, numbered per goal without gaps; `turn` records every
prompt and reply; `session` keeps API brains' conversations so a restarted lead goes on.
"""

from __future__ import annotations

import peewee as pw

__all__ = [
    "ALL_MODELS",
    "ClarifyRoundRow",
    "CriterionRow",
    "EventRow",
    "GoalRow",
    "MetaRow",
    "ProtectedFileRow",
    "SCHEMA_VERSION",
    "SessionRow",
    "SteerRow",
    "StepRow",
    "TurnRow",
    "database",
]

# Schema versions. A newer database refuses an older crewctl; an older one is migrated when
# a writer opens it (`Store._check_schema`), and reads as it is until then.
#   1: the first schema
#   2: `protected_file`, the protected-path baseline of each goal (goal/protect.py)
SCHEMA_VERSION = 2

database = pw.DatabaseProxy()


class _Base(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class MetaRow(_Base):
    key = pw.CharField(primary_key=True, max_length=64)
    value = pw.TextField()

    class Meta:
        table_name = "meta"


class GoalRow(_Base):
    id = pw.CharField(primary_key=True, max_length=32)
    objective = pw.TextField()
    workspace = pw.TextField()
    status = pw.CharField(max_length=32, index=True)
    reason = pw.TextField(null=True)
    created_at = pw.CharField(max_length=40)
    updated_at = pw.CharField(max_length=40)
    version = pw.IntegerField(default=0)  # optimistic concurrency: every write bumps it
    last_seq = pw.IntegerField(default=0)  # the newest event's seq
    data = pw.TextField()  # the rest of GoalState, as JSON

    class Meta:
        table_name = "goal"


class CriterionRow(_Base):
    goal = pw.CharField(max_length=32)
    id = pw.CharField(max_length=32)
    position = pw.IntegerField()
    text = pw.TextField()
    verify = pw.TextField()  # JSON: a string or {"run": command}
    status = pw.CharField(max_length=16)
    evidence = pw.TextField(null=True)

    class Meta:
        table_name = "criterion"
        primary_key = pw.CompositeKey("goal", "id")


class ClarifyRoundRow(_Base):
    goal = pw.CharField(max_length=32)
    seq = pw.IntegerField()
    intro = pw.TextField(null=True)
    questions = pw.TextField()  # JSON
    answers = pw.TextField(null=True)  # JSON; null while open

    class Meta:
        table_name = "clarify_round"
        primary_key = pw.CompositeKey("goal", "seq")


class StepRow(_Base):
    goal = pw.CharField(max_length=32)
    id = pw.CharField(max_length=16)
    plan = pw.IntegerField()
    position = pw.IntegerField()
    title = pw.TextField()
    detail = pw.TextField(null=True)
    lane = pw.CharField(max_length=32, null=True)
    needs_approval = pw.BooleanField(default=False)
    approved = pw.BooleanField(default=False)
    status = pw.CharField(max_length=16)
    attempts = pw.IntegerField(default=0)
    task = pw.CharField(max_length=96, null=True)
    dispatches = pw.IntegerField(default=0)
    holder = pw.CharField(max_length=128, null=True)
    result = pw.TextField(null=True)

    class Meta:
        table_name = "step"
        primary_key = pw.CompositeKey("goal", "id")


class SteerRow(_Base):
    goal = pw.CharField(max_length=32)
    id = pw.IntegerField()
    text = pw.TextField()
    created_at = pw.CharField(max_length=40)
    delivered_turn = pw.IntegerField(null=True)

    class Meta:
        table_name = "steer"
        primary_key = pw.CompositeKey("goal", "id")


class TurnRow(_Base):
    goal = pw.CharField(max_length=32)
    turn = pw.IntegerField()
    role = pw.CharField(max_length=16)
    kind = pw.CharField(max_length=16)
    round = pw.IntegerField(null=True)
    status = pw.CharField(max_length=16)  # running, finished, failed
    runs = pw.IntegerField(default=1)  # >1: rerun after a crash, pause or restart
    prompt = pw.TextField(null=True)
    reply = pw.TextField(null=True)
    error = pw.TextField(null=True)
    input_tokens = pw.IntegerField(default=0)
    output_tokens = pw.IntegerField(default=0)
    cached_tokens = pw.IntegerField(default=0)
    cost_usd = pw.DoubleField(null=True)  # DOUBLE PRECISION on PostgreSQL (FloatField is a 4-byte REAL there)
    seconds = pw.DoubleField(default=0.0)
    started_at = pw.CharField(max_length=40)
    finished_at = pw.CharField(max_length=40, null=True)

    class Meta:
        table_name = "turn"
        primary_key = pw.CompositeKey("goal", "turn")


class SessionRow(_Base):
    goal = pw.CharField(max_length=32)
    role = pw.CharField(max_length=16)
    session_id = pw.CharField(max_length=64)
    resume_ref = pw.TextField(null=True)  # the brain's own session id (agent CLIs)
    messages = pw.TextField(default="[]")  # JSON [{role, content}] for API brains, bounded
    created_at = pw.CharField(max_length=40)

    class Meta:
        table_name = "session"
        primary_key = pw.CompositeKey("goal", "role")


class EventRow(_Base):
    goal = pw.CharField(max_length=32)
    seq = pw.IntegerField()
    type = pw.CharField(max_length=32)
    at = pw.CharField(max_length=40)
    payload = pw.TextField()

    class Meta:
        table_name = "event"
        primary_key = pw.CompositeKey("goal", "seq")


class ProtectedFileRow(_Base):
    """One file of a goal's protected-path baseline: written when the baseline changes only."""

    goal = pw.CharField(max_length=32)
    rule = pw.CharField(max_length=16)  # pinned, named or forbidden
    path = pw.TextField()
    hash = pw.CharField(max_length=64)  # sha256 of the content, hex

    class Meta:
        table_name = "protected_file"
        primary_key = pw.CompositeKey("goal", "rule", "path")


ALL_MODELS = [MetaRow, GoalRow, CriterionRow, ClarifyRoundRow, StepRow, SteerRow, TurnRow, SessionRow, EventRow, ProtectedFileRow]
