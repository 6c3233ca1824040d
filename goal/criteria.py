"""Acceptance criteria the operator writes: `goal new --criterion/--check` and `goal criteria --file`.

The file takes the same shape `goal show --json` prints, so an operator can edit that output
and send it back: a JSON list of {"id"?, "text", "verify"?} (or {"criteria": [...]});
status and evidence in it are ignored. A criterion without "verify" is judged by the verifier
from its text; {"run": CMD} makes it a check command crewctl runs itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..exceptions import UsageError
from .markers import check_command_problem, collapse
from .model import Criterion

__all__ = ["MAX_CRITERIA", "parse_criteria", "parse_criteria_json", "check_command_problem"]

MAX_CRITERIA = 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def parse_criteria(rows: list[dict[str, Any]]) -> tuple[Criterion, ...]:
    """Validate and normalise operator criteria. Raises UsageError with one line."""
    if not isinstance(rows, list) or not rows:
        raise UsageError("give at least one criterion")
    if len(rows) > MAX_CRITERIA:
        raise UsageError(f"at most {MAX_CRITERIA} criteria, got {len(rows)}")
    used: set[str] = set()
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UsageError(f"criterion {n} must be an object with \"text\"")
        cid = row.get("id")
        if cid is not None:
            if not isinstance(cid, str) or not _ID.match(cid):
                raise UsageError(f"criterion {n}: id {cid!r} must be 1-32 letters, digits, '_', '.' or '-'")
            if cid in used:
                raise UsageError(f"criterion id {cid!r} appears twice")
            used.add(cid)
    out: list[Criterion] = []
    next_free = 1
    for n, row in enumerate(rows, 1):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"criterion {n} needs a non-empty \"text\"")
        text = collapse(text, 1000)
        verify = row.get("verify", text)
        if isinstance(verify, dict):
            run = verify.get("run")
            if set(verify) != {"run"} or not isinstance(run, str):
                raise UsageError(f"criterion {n}: verify must be a string or {{\"run\": \"COMMAND\"}}")
            if problem := check_command_problem(run):
                raise UsageError(f"criterion {n}: check command {problem}")
            verify = {"run": run}
        elif isinstance(verify, str) and verify.strip():
            verify = collapse(verify, 2000)
        else:
            raise UsageError(f"criterion {n}: verify must be a string or {{\"run\": \"COMMAND\"}}")
        cid = row.get("id")
        if cid is None:
            while f"c{next_free}" in used:
                next_free += 1
            cid = f"c{next_free}"
            used.add(cid)
        out.append(Criterion(id=cid, text=text, verify=verify))
    return tuple(out)


def parse_criteria_json(raw: str, source: str) -> tuple[Criterion, ...]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "criteria" in data:
        data = data["criteria"]
    if not isinstance(data, list):
        raise UsageError(f"{source} must hold a JSON list of criteria (or {{\"criteria\": [...]}})")
    return parse_criteria(data)
