"""The operator's criteria (`goal new --criterion/--check`, `goal criteria --file`): goal/criteria.py."""

from __future__ import annotations

import json

import pytest

from crewctl.exceptions import UsageError
from crewctl.goal import markers
from crewctl.goal.criteria import MAX_CRITERIA, check_command_problem, parse_criteria, parse_criteria_json
from crewctl.goal.vocab import CriterionStatus
from crewctl.testing.phases import block


def test_criteria_without_ids_get_the_first_free_c_numbers():
    got = parse_criteria([{"text": "a"}, {"id": "c1", "text": "b"}, {"text": "c"}])
    assert [c.id for c in got] == ["c2", "c1", "c3"]


def test_a_criterion_without_verify_is_judged_from_its_text_and_starts_pending():
    (c,) = parse_criteria([{"text": "the tests pass"}])
    assert c.verify == "the tests pass"
    assert c.check is None
    assert c.status == CriterionStatus.PENDING and c.evidence is None


def test_a_run_verify_becomes_a_check_command():
    (c,) = parse_criteria([{"text": "t", "verify": {"run": "pytest -q"}}])
    assert c.check == "pytest -q"


def test_status_and_evidence_in_the_input_are_ignored():
    (c,) = parse_criteria([{"text": "t", "status": "pass", "evidence": "trust me"}])
    assert c.status == CriterionStatus.PENDING and c.evidence is None


@pytest.mark.parametrize(
    "rows, words",
    [
        ([], "at least one criterion"),
        ("nope", "at least one criterion"),
        ([{"text": str(n)} for n in range(MAX_CRITERIA + 1)], f"at most {MAX_CRITERIA} criteria"),
        (["text"], "must be an object"),
        ([{"text": "  "}], "non-empty \"text\""),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "appears twice"),
        ([{"id": "bad id", "text": "x"}], "must be 1-32 letters"),
        ([{"text": "x", "verify": {"run": "a", "timeout": 3}}], "verify must be a string or"),
        ([{"text": "x", "verify": 7}], "verify must be a string or"),
        ([{"text": "x", "verify": {"run": "a\nb"}}], "one line without control characters"),
    ],
)
def test_malformed_criteria_raise_one_usage_error_line(rows, words):
    with pytest.raises(UsageError) as info:
        parse_criteria(rows)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", ["echo \x9b31m red", "echo \x1b[31m red", "a\x00b", "a\u2028b", "a\rb", "x" * 1001, " \t"])
def test_a_check_command_refused_from_a_lock_is_refused_from_the_operator_too(command):
    lock = markers.extract(block("lock", {"criteria": [{"text": "t", "verify": {"run": command}}]}))
    assert lock.markers == () and lock.errors, "the LOCK parser accepted it"
    assert check_command_problem(command) is not None
    with pytest.raises(UsageError):
        parse_criteria([{"text": "t", "verify": {"run": command}}])


def test_a_one_line_command_of_1000_characters_is_accepted():
    assert check_command_problem("x" * 1000) is None
    assert parse_criteria([{"text": "t", "verify": {"run": "x" * 1000}}])[0].check == "x" * 1000


def test_a_criteria_file_takes_the_goal_show_json_shape():
    shown = {"criteria": [{"id": "c1", "text": "a", "verify": {"run": "true"}, "status": "fail", "evidence": "e"}]}
    (c,) = parse_criteria_json(json.dumps(shown), "crit.json")
    assert (c.id, c.text, c.check, c.status) == ("c1", "a", "true", CriterionStatus.PENDING)


@pytest.mark.parametrize("raw, words", [("{not json", "crit.json is not valid JSON"), ('{"a": 1}', "must hold a JSON list")])
def test_a_criteria_file_that_is_not_a_list_of_criteria_is_a_usage_error(raw, words):
    with pytest.raises(UsageError) as info:
        parse_criteria_json(raw, "crit.json")
    assert words in str(info.value)
