"""goal.validate: the one set of input rules the CLI and the control RPC share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crewctl.exceptions import UsageError
from crewctl.goal import validate

HUGE = 10**30


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, HUGE, 1e300, 0, -1, True, "5", None])
def test_a_time_budget_that_is_not_a_finite_bounded_positive_number_is_a_usage_error(value):
    args = {"objective": "x", "workspace": "/w", "time_budget": value}
    if value is None:
        assert "time_budget" not in validate.request("goal.new", args)
        return
    with pytest.raises(UsageError, match="--time-budget"):
        validate.request("goal.new", args)


@pytest.mark.parametrize("value", [HUGE, 2**64, validate.MAX_TOKENS + 1, 0, -5, 1.5, math.inf, "100"])
def test_a_token_budget_outside_1_to_the_maximum_is_a_usage_error_naming_the_flag(value):
    with pytest.raises(UsageError, match="--token-budget"):
        validate.request("goal.new", {"objective": "x", "workspace": "/w", "token_budget": value})


def test_a_huge_number_is_named_by_its_size_not_printed_in_full():
    with pytest.raises(UsageError) as err:
        validate.request("goal.budget", {"id": "abcd", "tokens": HUGE})
    assert "31-digit number" in err.value.message and str(HUGE) not in err.value.message


def test_valid_budgets_pass_through_as_numbers():
    args = validate.request("goal.budget", {"id": "abcd", "tokens": 4000, "seconds": 3, "cost": 0.5})
    assert args == {"id": "abcd", "tokens": 4000, "seconds": 3.0, "cost": 0.5}


@pytest.mark.parametrize("field,label", [("objective", "OBJECTIVE"), ("workspace", "--workspace")])
def test_text_that_is_not_utf8_is_a_usage_error(field, label):
    args = {"objective": "x", "workspace": "/w", field: "bad \udcff byte"}
    with pytest.raises(UsageError, match=f"{label} is not valid UTF-8"):
        validate.request("goal.new", args)


def test_a_non_utf8_steer_is_a_usage_error():
    with pytest.raises(UsageError, match="MESSAGE is not valid UTF-8"):
        validate.request("goal.steer", {"id": "abcd", "message": "\udcfe"})


def test_non_finite_numbers_are_refused_anywhere_in_a_request_even_in_fields_no_rule_names():
    for value in (math.nan, [1, {"x": math.inf}], {"deep": [[-math.inf]]}):
        with pytest.raises(UsageError, match="finite"):
            validate.request("goal.new", {"objective": "x", "workspace": "/w", "extra": value})


def test_binary_data_nesting_and_sizes_are_bounded():
    with pytest.raises(UsageError, match="binary"):
        validate.request("goal.steer", {"id": "abcd", "message": "x", "blob": b"\x00"})
    deep: object = 1
    for _ in range(20):
        deep = [deep]
    with pytest.raises(UsageError, match="nests"):
        validate.request("status", {"x": deep})
    with pytest.raises(UsageError, match="more than"):
        validate.request("status", {"x": list(range(5000))})


@pytest.mark.parametrize("op,args", [("goal.steer", {"id": "abcd"}), ("goal.new", {"workspace": "/w"}), ("goal.pause", {})])
def test_a_missing_required_argument_is_a_usage_error(op, args):
    with pytest.raises(UsageError, match="needs"):
        validate.request(op, args)


@pytest.mark.parametrize("op", [None, 7, "x" * 100, b"goal.new"])
def test_an_operation_that_is_not_short_text_is_a_usage_error(op):
    with pytest.raises(UsageError):
        validate.request(op, {})


@pytest.mark.parametrize("args", [None, [], "x", 5])
def test_arguments_that_are_not_a_map_are_a_usage_error(args):
    with pytest.raises(UsageError):
        validate.request("status", args)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:7700", "tcp://*:*", "tcp://0.0.0.0:1", "tcp://[::1]:80", "tcp://box-1.lan:9",
                                      "ipc:///tmp/crew.sock", "inproc://agents"])
def test_endpoints_that_zeromq_can_bind_are_accepted(endpoint):
    assert validate.endpoint(endpoint, "--listen", bind=True) == endpoint


@pytest.mark.parametrize("endpoint", ["garbage", "tcp://", "tcp://host", "tcp://host:-1", "tcp://host:70000", "tcp://:7",
                                      "udp://h:1", "tcp://ho st:1", "ipc://", "tcp://h:port"])
def test_garbage_endpoints_are_named_as_bad_endpoints(endpoint):
    with pytest.raises(UsageError) as err:
        validate.endpoint(endpoint, "--listen", bind=True)
    assert "--listen" in err.value.message
    assert "CURVE" not in err.value.message


def test_a_wildcard_port_or_host_is_for_binding_not_for_connecting():
    for endpoint in ("tcp://*:7700", "tcp://127.0.0.1:*", "tcp://127.0.0.1:0"):
        with pytest.raises(UsageError, match="--connect"):
            validate.endpoint(endpoint, "--connect", bind=False)


@pytest.mark.parametrize("value,expected", [(1.5, 1.5), (3, 3.0), (math.inf, None), (math.nan, None), (-1.0, None), ("1", None),
                                            (True, None), (HUGE, None)])
def test_a_brains_spend_figure_that_is_not_a_sane_number_is_unknown(value, expected):
    assert validate.finite_usage(value, high=validate.MAX_COST_USD) == expected


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(validate.OPERATIONS)) | st.text(max_size=10), args=st.dictionaries(st.text(max_size=12), plain_data, max_size=6) | plain_data)
def test_any_request_is_checked_or_refused_with_a_usage_error_and_nothing_else(op, args):
    try:
        clean = validate.request(op, args)
    except UsageError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert isinstance(clean, dict)


@pytest.mark.parametrize(
    "op, args, words",
    [
        ("goal.steer", {"id": "g1", "message": "  \t "}, "the steer message is empty"),
        ("goal.send_back", {"id": "g1", "notes": "\n"}, "--notes must say what to rework"),
        ("goal.budget", {"id": "g1"}, "give at least one of --tokens, --seconds, --cost"),
    ],
)
def test_the_cli_and_the_control_rpc_share_one_rule_for_empty_operator_input(op, args, words):
    with pytest.raises(UsageError, match=words):
        validate.request(op, args)


def test_a_steer_and_rework_notes_arrive_stripped_as_the_lead_reads_them():
    assert validate.request("goal.steer", {"id": "g1", "message": "  use the stdlib \n"})["message"] == "use the stdlib"
    assert validate.request("goal.send_back", {"id": "g1", "notes": "\tredo docs "})["notes"] == "redo docs"
