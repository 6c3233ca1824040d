"""Rows <-> state: a GoalState as the goal row, its child tables, the timeline and turn rows."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Mapping, NoReturn

from ..exceptions import NotFound
from ..goal.effects import Record, Transition
from ..goal.model import Criterion, GoalState, Step
from ..goal.vocab import RecordType as R, TurnStatus
from ._records import MAX_SESSION_MESSAGES, SessionWrite, StaleWrite, _TABLE_FIELDS, TurnWrite
from ._sql import _BASELINE_DELETE, _BASELINE_INSERT, _CLARIFY_INSERT, _CLARIFY_UPDATE, _CRIT_DELETE, _CRIT_INSERT, _CRIT_UPDATE, _GOAL_BUMP_SQL, _q, _SELECT_SESSION, _SESSION_KEEP, _SESSION_SET, _STEER_DELIVERED, _STEER_INSERT, _STEP_INSERT, _STEP_UPDATE, _Stmt, _TURN_FAIL, _TURN_FINISH, _TURN_INSERT, _TURN_RERUN, _TURN_RERUN_PROMPT, _Tx


# -- row <-> state --------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """What json cannot encode itself: our frozen dataclasses (as dataclasses.asdict would
    give them, without its deep copies) and read-only mappings. Tuples and dicts it does."""
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return vars(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} in goal.data")


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_ENCODE_PAYLOAD = json.JSONEncoder(separators=(",", ":"), default=str).encode
_DATA_FIELDS = tuple(f.name for f in fields(GoalState) if f.name not in _TABLE_FIELDS)
_PLAIN_STATE = not hasattr(GoalState, "__slots__")  # its fields are its __dict__


def _data_json(state: GoalState) -> str:
    if _PLAIN_STATE:
        data = dict(vars(state))
        for name in _TABLE_FIELDS:
            del data[name]
    else:  # pragma: no cover - if GoalState ever gets slots
        data = {n: getattr(state, n) for n in _DATA_FIELDS}
    return _ENCODE(data)


_CHILD_COLS = {
    "criterion": ("position", "id", "text", "verify", "status", "evidence"),
    "step": ("position", "id", "title", "plan", "detail", "lane", "needs_approval", "approved", "status",
             "attempts", "task", "dispatches", "holder", "result"),
    "clarify_round": ("seq", "intro", "questions", "answers"),
    "steer": ("id", "text"),
    "protected_file": ("rule", "path", "hash"),
}
_CHILD_WHERE = {"steer": ' AND "delivered_turn" IS NULL'}  # the state holds the steers still waiting


def _load_sql(pg: bool, baseline: bool = True) -> str:
    """The goal row and all its child rows in one statement: one round trip, one snapshot.
    Each child table comes back as a JSON array of row arrays (sorted in Python). A schema
    older than v2 has no protected_file table: its goals read with an empty baseline."""

    def agg(table: str) -> str:
        cols = ", ".join(_q(c) for c in _CHILD_COLS[table])
        where = f'"goal" = g."id"{_CHILD_WHERE.get(table, "")}'
        if pg:
            return f"(SELECT COALESCE(json_agg(json_build_array({cols}))::text, '[]') FROM {_q(table)} WHERE {where})"
        return f"(SELECT json_group_array(json_array({cols})) FROM {_q(table)} WHERE {where})"

    children = ", ".join(agg(t) if baseline or t != "protected_file" else "'[]'" for t in _CHILD_COLS)
    return f'SELECT g."version", g."last_seq", g."data", {children} FROM "goal" g WHERE g."id" = ?'


_LOAD_SQL = {(pg, baseline): _load_sql(pg, baseline) for pg in (False, True) for baseline in (False, True)}


def _state_from_json(data_json: str, criteria: str, steps: str, clarify: str, steers: str, baseline: str = "[]") -> GoalState:
    data = json.loads(data_json)
    data["baseline"] = sorted(tuple(r) for r in json.loads(baseline))
    data["criteria"] = [
        {"id": cid, "text": text, "verify": json.loads(verify), "status": status, "evidence": evidence}
        for _, cid, text, verify, status, evidence in sorted(json.loads(criteria), key=lambda r: r[0])
    ]
    names = _CHILD_COLS["step"][1:]
    steps_out = []
    for row in sorted(json.loads(steps), key=lambda r: r[0]):
        st = dict(zip(names, row[1:]))
        st["needs_approval"] = bool(st["needs_approval"])  # SQLite keeps booleans as 0/1
        st["approved"] = bool(st["approved"])
        steps_out.append(st)
    data["steps"] = steps_out
    data["clarify"] = [
        {"seq": seq, "intro": intro, "questions": json.loads(questions), "answers": json.loads(answers) if answers is not None else None}
        for seq, intro, questions, answers in sorted(json.loads(clarify), key=lambda r: r[0])
    ]
    data["steers"] = [{"id": sid, "text": text} for sid, text in sorted(json.loads(steers), key=lambda r: r[0])]
    return GoalState.from_dict(data)


def _bump_goal(tx: _Tx, head: tuple) -> int:
    """The optimistic check, for a writer that does not know last_seq: returns the new one."""
    gid, version = head[-2], head[-1]
    if tx.d.returning:
        row = tx.one(_GOAL_BUMP_SQL + ' RETURNING "last_seq"', head)
    else:  # SQLite before 3.35: our write lock is the whole database, so read it back
        row = tx.one('SELECT "last_seq" FROM "goal" WHERE "id" = ?', (gid,)) if tx.run(_GOAL_BUMP_SQL, head) == 1 else None
    if row is None:
        _refuse(tx, gid, version)  # raises
    assert row is not None
    return row[0]


def _row_writes(old: GoalState | None, new: GoalState, transition: Transition, at: str, turn_writes: tuple[TurnWrite, ...]) -> list[tuple[_Stmt, tuple]]:
    """Every row a transition writes besides the goal row and its events, in a safe order:
    deletes, then inserts, then updates (an update may touch a row inserted just before)."""
    ops = _table_rows(old, new, transition.records, at) + _turn_rows(new.id, transition, at, turn_writes)
    ops.sort(key=lambda op: op[0].order)
    return ops


def _events(records: tuple[Record, ...], at: str) -> list[tuple]:
    return [(r.type, at, _ENCODE_PAYLOAD(dict(r.payload))) for r in records]


def _table_rows(old: GoalState | None, new: GoalState, records: tuple[Record, ...], at: str) -> list[tuple[_Stmt, tuple]]:
    gid = new.id
    out: list[tuple[_Stmt, tuple]] = []
    if old is not None and old.criteria != new.criteria and [c.id for c in old.criteria] == [c.id for c in new.criteria]:
        # The same list with new verdicts (every gate round): only the changed rows.
        for i, (was, c) in enumerate(zip(old.criteria, new.criteria)):
            if was != c:
                out.append((_CRIT_UPDATE, (i, c.text, _verify_json(c), c.status, c.evidence, gid, c.id)))
    elif old is None or old.criteria != new.criteria:
        if old is not None and old.criteria:
            out.append((_CRIT_DELETE, (gid,)))
        for i, c in enumerate(new.criteria):
            out.append((_CRIT_INSERT, (gid, c.id, i, c.text, _verify_json(c), c.status, c.evidence)))
    if old is None or old.steps != new.steps:
        old_steps = {s.id: s for s in old.steps} if old else {}
        for i, st in enumerate(new.steps):
            prev = old_steps.get(st.id)
            if prev == st:
                continue
            values = _step_values(gid, i, st)
            if prev is not None:
                out.append((_STEP_UPDATE, values[2:] + values[:2]))
            else:
                out.append((_STEP_INSERT, values))
    if old is None or old.clarify != new.clarify:
        old_rounds = {r.seq: r for r in old.clarify} if old else {}
        for r in new.clarify:
            prev_round = old_rounds.get(r.seq)
            if prev_round == r:
                continue
            questions = json.dumps([{"id": q.id, "text": q.text, "options": list(q.options), "multi": q.multi} for q in r.questions])
            answers = json.dumps(dict(r.answers)) if r.answers is not None else None
            if prev_round is not None:
                out.append((_CLARIFY_UPDATE, (r.intro, questions, answers, gid, r.seq)))
            else:
                out.append((_CLARIFY_INSERT, (gid, r.seq, r.intro, questions, answers)))
    # Steers: new pending ones come from the state (full text); one that the very transition
    # queuing it also delivered is in the state no more, only in its `steer` record.
    old_pending = {s.id for s in old.steers} if old else set()
    delivered = {r.payload["steer"]: r.payload["turn"] for r in records if r.type == R.STEER_DELIVERED}
    new_steers = {s.id: s.text for s in new.steers if s.id not in old_pending}
    for rec in records:
        if rec.type == R.STEER and rec.payload["steer"] not in new_steers and rec.payload["steer"] not in old_pending:
            new_steers[rec.payload["steer"]] = rec.payload.get("text", "")
    for sid, text in sorted(new_steers.items()):
        out.append((_STEER_INSERT, (gid, sid, text, at, delivered.pop(sid, None))))
    for sid, turn in delivered.items():
        out.append((_STEER_DELIVERED, (turn, gid, sid)))
    if old is None or (old.baseline is not new.baseline and old.baseline != new.baseline):
        # Replaced whole, and only when it changes (a lock, `goal protect`): rarely, and
        # every other transition of the goal writes nothing here.
        if old is not None and old.baseline:
            out.append((_BASELINE_DELETE, (gid,)))
        for rule, path, digest in new.baseline:
            out.append((_BASELINE_INSERT, (gid, rule, path, digest)))
    return out


def _verify_json(c: Criterion) -> str:
    return json.dumps(c.verify if isinstance(c.verify, str) else dict(c.verify))


def _step_values(gid: str, position: int, st: Step) -> tuple:
    return (
        gid, st.id, st.plan, position, st.title, st.detail, st.lane, bool(st.needs_approval), bool(st.approved),
        st.status, st.attempts, st.task, st.dispatches, st.holder, st.result,
    )


def _turn_rows(gid: str, transition: Transition, at: str, writes: tuple[TurnWrite, ...]) -> list[tuple[_Stmt, tuple]]:
    by_turn = {w.turn: w for w in writes}
    new = transition.state
    out: list[tuple[_Stmt, tuple]] = []
    for r in transition.records:
        p = r.payload
        if r.type == R.TURN_STARTED:
            if p.get("rerun"):
                if p.get("refreshed") and new.in_flight is not None and new.in_flight.turn == p["turn"]:
                    out.append((_TURN_RERUN_PROMPT, (TurnStatus.RUNNING, at, new.in_flight.prompt, gid, p["turn"])))
                else:
                    out.append((_TURN_RERUN, (TurnStatus.RUNNING, at, gid, p["turn"])))
                continue
            prompt = None
            if new.in_flight is not None and new.in_flight.turn == p["turn"]:
                prompt = new.in_flight.prompt or None
            out.append((_TURN_INSERT, (gid, p["turn"], p["role"], p["kind"], p.get("round"), TurnStatus.RUNNING, 1, prompt, 0, 0, 0, 0.0, at)))
        elif r.type == R.TURN_FINISHED:
            u = p.get("usage") or {}
            w = by_turn.get(p["turn"])
            out.append((
                _TURN_FINISH,
                (
                    TurnStatus.FINISHED, w.reply if w else None, u.get("input_tokens", 0), u.get("output_tokens", 0),
                    u.get("cached_tokens", 0), u.get("cost_usd"), u.get("seconds", 0.0), at, gid, p["turn"],
                ),
            ))
        elif r.type == R.TURN_FAILED:
            out.append((_TURN_FAIL, (TurnStatus.FAILED, p.get("error"), at, gid, p["turn"])))
    return out


def _write_session(tx: _Tx, gid: str, sw: SessionWrite, at: str) -> None:
    if not sw.messages and not sw.reset:
        tx.run(_SESSION_KEEP.one, (gid, sw.role, sw.session_id, sw.resume_ref, "[]", at))
        return
    row = None if sw.reset else tx.one(_SELECT_SESSION, (gid, sw.role))
    kept = row if row is not None and row[0] == sw.session_id else None  # the same session's row
    messages = json.loads(kept[2]) if kept else []
    messages.extend({"role": role, "content": content} for role, content in sw.messages)
    resume_ref = sw.resume_ref if sw.resume_ref is not None else (kept[1] if kept else None)
    created_at = kept[3] if kept else at
    tx.run(_SESSION_SET, (gid, sw.role, sw.session_id, resume_ref, json.dumps(messages[-MAX_SESSION_MESSAGES:]), created_at))

def _refuse(tx: _Tx, gid: str, version: int) -> NoReturn:
    current = tx.one('SELECT "version" FROM "goal" WHERE "id" = ?', (gid,))
    if current is None:
        raise NotFound(f"no goal {gid}")
    raise StaleWrite(f"goal {gid} changed under this writer (version {current[0]}, expected {version})")
