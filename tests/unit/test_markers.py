"""The marker grammar (docs/contracts.md, "Markers"), rule by rule, each with a case
that is live and one that is not, then the payload schemas, then properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crewctl.goal.markers import (
    BODY_LIMIT,
    KINDS,
    Extraction,
    Marker,
    MarkerError,
    collapse,
    extract,
    quote,
)

READY = '{"summary": "done"}'


def block(kind: str = "ready", body: str = READY, eol: str = "\n") -> str:
    tag = kind.upper()
    return f"CREW_{tag}_BEGIN{eol}{body}{eol}CREW_{tag}_END{eol}"


def kinds_of(text: str) -> list[str]:
    return [marker.kind for marker in extract(text).markers]


def only_error(text: str) -> MarkerError:
    result = extract(text)
    assert result.markers == ()
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def payload(kind: str, body: object) -> dict:
    result = extract(block(kind, json.dumps(body)))
    assert result.errors == (), result.errors
    assert len(result.markers) == 1
    return result.markers[0].payload


def reason(kind: str, body: object) -> str:
    return only_error(block(kind, json.dumps(body))).reason


# --- the public surface ---------------------------------------------------------------


def test_module_exports_exactly_the_public_api():
    from crewctl.goal import markers

    assert sorted(markers.__all__) == sorted(
        ["BODY_LIMIT", "KINDS", "MEMORY_KINDS", "SKILL_BODY_LIMIT", "SKILL_NAME", "Extraction", "Marker", "MarkerError",
         "check_command_problem", "collapse", "extract", "quote", "quoted_section"]
    )
    assert KINDS == ("clarify", "lock", "plan", "ready", "blocked", "verify", "reflect")
    assert BODY_LIMIT == 64 * 1024


def test_results_are_frozen():
    result = extract(block())
    with pytest.raises(AttributeError):
        result.text = ""  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.markers[0].kind = "lock"  # type: ignore[misc]


def test_the_contract_example_is_a_lock_marker():
    text = 'CREW_LOCK_BEGIN\n{"criteria": [{"text": "pytest passes", "verify": {"run": "pytest -q"}}]}\nCREW_LOCK_END\n'
    assert extract(text).markers == (
        Marker(
            "lock",
            {"statement": None, "criteria": [{"id": "c1", "text": "pytest passes", "verify": {"run": "pytest -q"}}]},
            1,
        ),
    )


def test_text_without_markers_is_returned_unchanged():
    text = "Just prose.\r\nWith CRLF\rand a lone CR\u2028and a line separator.\n"
    assert extract(text) == Extraction((), (), text)


def test_empty_text_has_nothing():
    assert extract("") == Extraction((), (), "")


# --- tags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, body",
    [
        ("clarify", '{"questions": [{"text": "Which?"}]}'),
        ("lock", '{"criteria": [{"text": "t", "verify": "look"}]}'),
        ("plan", '{"steps": [{"title": "do"}]}'),
        ("ready", READY),
        ("blocked", '{"reason": "stuck"}'),
        ("verify", '{"results": [{"id": "c1", "verdict": "pass", "evidence": ""}]}'),
    ],
)
def test_every_kind_is_recognised_and_reported_lower_case(kind, body):
    assert kinds_of(block(kind, body)) == [kind]


def test_tag_at_column_zero_is_a_tag():
    assert kinds_of("prose\n" + block()) == ["ready"]


@pytest.mark.parametrize("indent", [" ", "  ", "   ", "    ", "\t"])
def test_tag_indented_by_any_whitespace_is_not_a_tag(indent):
    text = f"{indent}CREW_READY_BEGIN\n{READY}\n{indent}CREW_READY_END\n"
    assert extract(text) == Extraction((), (), text)


def test_tag_indented_by_one_space_is_not_a_tag():
    text = f" CREW_READY_BEGIN\n{READY}\nCREW_READY_END\n"
    assert kinds_of(text) == []


def test_indented_closing_tag_does_not_close_the_block():
    text = f"CREW_READY_BEGIN\n{READY}\n CREW_READY_END\n"
    assert only_error(text).reason == "block is never closed"


@pytest.mark.parametrize("prefix", ["> ", ">", "- ", "text ", "`", "#"])
def test_tag_with_anything_before_it_is_not_a_tag(prefix):
    text = f"{prefix}CREW_READY_BEGIN\n{READY}\n{prefix}CREW_READY_END\n"
    assert extract(text) == Extraction((), (), text)


def test_blockquoted_tag_is_not_a_tag():
    text = f"> CREW_READY_BEGIN\n> {READY}\n> CREW_READY_END\n"
    assert kinds_of(text) == []


@pytest.mark.parametrize("suffix", [" x", "x", "`", ":", "\u00a0", "\x0b", "\x85"])
def test_tag_with_text_after_it_on_its_line_is_not_a_tag(suffix):
    text = f"CREW_READY_BEGIN{suffix}\n{READY}\nCREW_READY_END{suffix}\n"
    assert extract(text) == Extraction((), (), text)


def test_closing_tag_with_text_after_it_does_not_close_the_block():
    text = f"CREW_READY_BEGIN\n{READY}\nCREW_READY_END now\n"
    assert only_error(text).reason == "block is never closed"


@pytest.mark.parametrize("trailer", [" ", "\t", " \t  ", "\t\t"])
def test_spaces_and_tabs_after_a_tag_are_allowed(trailer):
    text = f"CREW_READY_BEGIN{trailer}\n{READY}\nCREW_READY_END{trailer}\n"
    assert kinds_of(text) == ["ready"]
    assert extract(text).text == ""


@pytest.mark.parametrize("tag", ["CREW_ready_BEGIN", "crew_ready_begin", "CREW_Ready_BEGIN", "CREW_READY_begin"])
def test_tag_not_in_upper_case_is_plain_text(tag):
    text = f"{tag}\n{READY}\n{tag.replace('BEGIN', 'END').replace('begin', 'end')}\n"
    assert extract(text) == Extraction((), (), text)


@pytest.mark.parametrize("kind", ["DONE", "READYX", "X", "", "LOCK_LOCK"])
def test_unknown_kind_is_plain_text(kind):
    text = f"CREW_{kind}_BEGIN\n{READY}\nCREW_{kind}_END\n"
    assert extract(text) == Extraction((), (), text)


def test_crlf_line_ends_are_accepted():
    text = block(eol="\r\n")
    assert kinds_of(text) == ["ready"]
    assert extract(text).text == ""


def test_crlf_with_trailing_spaces_after_the_tag_is_accepted():
    assert kinds_of(f"CREW_READY_BEGIN \t\r\n{READY}\r\nCREW_READY_END  \r\n") == ["ready"]


def test_a_lone_cr_does_not_end_a_line():
    text = f"CREW_READY_BEGIN\r{READY}\rCREW_READY_END\r"
    assert extract(text) == Extraction((), (), text)


def test_a_tag_after_a_lone_cr_is_not_at_column_zero():
    text = f"prose\r{block()}"
    assert kinds_of(text) == []


def test_a_lone_cr_after_a_tag_makes_it_not_a_tag():
    text = f"CREW_READY_BEGIN\r\r\n{READY}\nCREW_READY_END\n"
    assert kinds_of(text) == []


def test_a_closing_tag_then_a_lone_cr_at_the_end_does_not_close():
    assert only_error(f"CREW_READY_BEGIN\n{READY}\nCREW_READY_END\r").reason == "block is never closed"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_unicode_line_separators_do_not_end_a_line(separator):
    text = f"prose{separator}CREW_READY_BEGIN\n{READY}\nCREW_READY_END\n"
    assert kinds_of(text) == []
    assert kinds_of(f"prose{separator}\n{block()}") == ["ready"]


def test_a_closing_tag_on_the_last_line_without_a_newline_closes_the_block():
    text = f"CREW_READY_BEGIN\n{READY}\nCREW_READY_END"
    assert kinds_of(text) == ["ready"]
    assert extract(text).text == ""


def test_an_opening_tag_on_the_last_line_is_never_closed():
    assert only_error("prose\nCREW_READY_BEGIN").reason == "block is never closed"
    assert only_error("prose\nCREW_READY_BEGIN\n").reason == "block is never closed"


# --- blocks ---------------------------------------------------------------------------


def test_a_block_of_another_kind_inside_a_body_is_body_text():
    text = f"CREW_LOCK_BEGIN\n{block('ready')}CREW_LOCK_END\n"
    error = only_error(text)
    assert (error.kind, error.line) == ("lock", 1)
    assert error.reason.startswith("body is not valid JSON")
    assert extract(text).text == ""


def test_a_block_of_the_same_kind_inside_a_body_never_runs():
    text = f"CREW_READY_BEGIN\nCREW_READY_BEGIN\n{READY}\nCREW_READY_END\nCREW_READY_END\n"
    result = extract(text)
    assert result.markers == ()
    assert [(e.kind, e.line) for e in result.errors] == [("ready", 1)]
    # the second closing tag is stray: plain text
    assert result.text == "CREW_READY_END\n"


def test_interleaved_blocks_never_run():
    text = (
        "CREW_LOCK_BEGIN\nCREW_READY_BEGIN\n"
        '{"criteria": [{"text": "t", "verify": "v"}]}\n'
        f"CREW_LOCK_END\n{READY}\nCREW_READY_END\n"
    )
    result = extract(text)
    assert result.markers == ()
    assert [(e.kind, e.line) for e in result.errors] == [("lock", 1)]
    assert result.text == f"{READY}\nCREW_READY_END\n"


def test_a_closing_tag_of_another_kind_does_not_close_a_block():
    text = f"CREW_READY_BEGIN\n{READY}\nCREW_LOCK_END\n"
    error = only_error(text)
    assert (error.kind, error.reason) == ("ready", "block is never closed")


def test_a_closing_tag_of_the_same_kind_closes_the_block():
    assert kinds_of(f"CREW_READY_BEGIN\n{READY}\nCREW_READY_END\n") == ["ready"]


def test_a_stray_closing_tag_is_plain_text():
    text = f"CREW_READY_END\nprose\n{block()}CREW_LOCK_END\n"
    result = extract(text)
    assert [m.line for m in result.markers] == [3]
    assert result.errors == ()
    assert result.text == "CREW_READY_END\nprose\nCREW_LOCK_END\n"


def test_an_unterminated_block_is_an_error():
    error = only_error(f"prose\nCREW_PLAN_BEGIN\n{READY}\n")
    assert error == MarkerError("plan", 2, "block is never closed")


def test_an_unterminated_block_swallows_everything_after_it():
    text = f"before\nCREW_PLAN_BEGIN\n{{\n{block()}after\n"
    result = extract(text)
    assert result.markers == ()
    assert result.errors == (MarkerError("plan", 2, "block is never closed"),)
    assert result.text == "before\n"


def test_a_block_before_an_unterminated_one_still_runs():
    result = extract(f"{block()}CREW_PLAN_BEGIN\n")
    assert [m.kind for m in result.markers] == ["ready"]
    assert [e.kind for e in result.errors] == ["plan"]


def test_multiple_markers_come_in_order_with_their_lines():
    text = (
        "intro\n"
        + block("blocked", '{"reason": "r"}')
        + "middle\r\nline\r\n"
        + block("ready")
        + "x\n"
        + block("plan", '{"steps": [{"title": "t"}]}')
    )
    result = extract(text)
    assert [(m.kind, m.line) for m in result.markers] == [("blocked", 2), ("ready", 7), ("plan", 11)]
    assert result.text == "intro\nmiddle\r\nline\r\nx\n"


def test_markers_and_errors_are_reported_separately_each_in_order():
    text = block("ready", "{") + block("blocked", '{"reason": "r"}') + block("plan", "[]") + block()
    result = extract(text)
    assert [(m.kind, m.line) for m in result.markers] == [("blocked", 4), ("ready", 10)]
    assert [(e.kind, e.line) for e in result.errors] == [("ready", 1), ("plan", 7)]


def test_line_is_the_opening_tag_line_counting_only_lf_and_crlf():
    text = "one\r\ntwo\rstill two\u2028still two\nthree\n" + block()
    assert extract(text).markers[0].line == 4


def test_line_of_a_block_on_the_first_line_is_one():
    assert extract(block()).markers[0].line == 1


# --- bodies ---------------------------------------------------------------------------


def test_a_multi_line_body_is_accepted():
    body = json.dumps({"summary": "done", "evidence": ["a", "b"]}, indent=2)
    assert payload("ready", json.loads(body)) == {"summary": "done", "evidence": ["a", "b"]}
    assert kinds_of(block("ready", body, eol="\r\n")) == ["ready"]


def test_a_lone_cr_inside_a_body_is_body_text():
    result = extract(block("ready", '{"summary":\r"done"}'))
    assert result.markers[0].payload["summary"] == "done"


def sized_body(size: int, filler: str = " ") -> str:
    """A READY body of exactly `size` UTF-8 bytes, padded with JSON whitespace."""
    head = '{"summary": "done"}'
    return head + filler * (size - len(head.encode()))


def test_a_body_of_exactly_64_kib_is_accepted():
    assert kinds_of(block("ready", sized_body(BODY_LIMIT))) == ["ready"]


def test_a_body_one_byte_over_64_kib_is_an_error():
    error = only_error(block("ready", sized_body(BODY_LIMIT + 1)))
    assert error == MarkerError("ready", 1, "body exceeds 64 KiB")


def test_the_body_limit_counts_utf8_bytes_not_characters():
    summary = "é" * (BODY_LIMIT // 2 + 20)  # two bytes each
    body = json.dumps({"summary": summary}, ensure_ascii=False)
    assert len(body) < BODY_LIMIT < len(body.encode())
    assert only_error(block("ready", body)).reason == "body exceeds 64 KiB"


def test_the_cr_of_crlf_does_not_count_toward_the_body_limit():
    lines = ['{"summary": "done"'] + [" "] * 1000 + ["}"]
    joined = "\n".join(lines)
    padded = joined[:-1] + " " * (BODY_LIMIT - len(joined)) + "}"
    assert len(padded) == BODY_LIMIT
    assert kinds_of(block("ready", padded.replace("\n", "\r\n"), eol="\r\n")) == ["ready"]


def test_a_huge_body_is_an_error_and_the_scan_goes_on():
    text = block("ready", sized_body(8 * BODY_LIMIT)) + block("blocked", '{"reason": "r"}')
    result = extract(text)
    assert [(e.kind, e.reason) for e in result.errors] == [("ready", "body exceeds 64 KiB")]
    assert [(m.kind, m.line) for m in result.markers] == [("blocked", 4)]
    assert result.text == ""


def test_an_empty_body_is_invalid_json():
    assert only_error("CREW_READY_BEGIN\nCREW_READY_END\n").reason.startswith("body is not valid JSON")
    assert only_error("CREW_READY_BEGIN\n\nCREW_READY_END\n").reason.startswith("body is not valid JSON")


def test_invalid_json_is_an_error_that_points_at_the_reply_line():
    error = only_error("prose\nCREW_READY_BEGIN\n{\n  \"summary\": oops\n}\nCREW_READY_END\n")
    assert (error.kind, error.line) == ("ready", 2)
    assert error.reason.startswith("body is not valid JSON: Expecting value at line 4, column")


def test_valid_json_is_not_an_error():
    assert only_error(block("ready", '{"summary": "done",}')).reason.startswith("body is not valid JSON")
    assert kinds_of(block("ready", '{"summary": "done"}')) == ["ready"]


@pytest.mark.parametrize("body", ["[]", '"text"', "1", "null", "true", '[{"summary": "done"}]'])
def test_a_body_that_is_not_an_object_is_an_error(body):
    assert only_error(block("ready", body)).reason == "body must be one JSON object"


def test_two_json_objects_in_one_body_are_an_error():
    assert only_error(block("ready", READY + "\n" + READY)).reason.startswith("body is not valid JSON")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(constant):
    error = only_error(block("ready", f'{{"summary": "done", "x": {constant}}}'))
    assert error.reason.startswith("body is not valid JSON")


def test_deeply_nested_json_is_an_error_not_an_exception():
    body = '{"summary": "done", "x": ' + "[" * 30000 + "]" * 30000 + "}"
    assert only_error(block("ready", body)).reason == "body nests too deeply"


def test_a_huge_number_is_an_error_not_an_exception():
    error = only_error(block("ready", '{"summary": "done", "x": 1' + "0" * 5000 + "}"))
    assert error.reason.startswith("body is not valid JSON")
    assert len(error.reason) <= 200


def test_reasons_are_one_short_line():
    for text in [
        block("ready", "{\n\n\n"),
        block("clarify", json.dumps({"questions": [{"text": "q", "options": ["a"]}]})),
        block("ready", "[\n1,\n2\n]"),
    ]:
        error = only_error(text)
        assert "\n" not in error.reason and "\r" not in error.reason
        assert 0 < len(error.reason) <= 200


# --- fences ---------------------------------------------------------------------------


@pytest.mark.parametrize("fence", ["```", "~~~", "````", "~~~~~~"])
def test_a_block_inside_a_fence_is_inert(fence):
    text = f"{fence}\n{block()}{fence}\n"
    assert extract(text) == Extraction((), (), text)


@pytest.mark.parametrize("fence", ["```", "~~~"])
def test_a_block_after_a_closed_fence_is_live(fence):
    text = f"{fence}\ncode\n{fence}\n{block()}"
    assert extract(text).markers[0].line == 4


@pytest.mark.parametrize("info", ["json", " json", "python {.x}", "a~b"])
def test_a_backtick_fence_with_an_info_string_is_a_fence(info):
    assert kinds_of(f"```{info}\n{block()}```\n") == []


@pytest.mark.parametrize("info", ["js`", " `", "a ` b", "x``"])
def test_a_backtick_in_a_backtick_fence_info_string_makes_it_not_a_fence(info):
    assert kinds_of(f"```{info}\n{block()}```\n") == ["ready"]


@pytest.mark.parametrize("info", ["a`b", "`", "~", "anything at all ```"])
def test_a_tilde_fence_info_string_may_contain_anything(info):
    assert kinds_of(f"~~~{info}\n{block()}~~~\n") == []


@pytest.mark.parametrize("fence", ["``", "~~", "`", "~"])
def test_fewer_than_three_fence_characters_is_not_a_fence(fence):
    assert kinds_of(f"{fence}\n{block()}{fence}\n") == ["ready"]


@pytest.mark.parametrize("opening, closing", [("````", "```"), ("~~~~~", "~~~~"), ("``````", "`````")])
def test_a_fence_is_not_closed_by_a_shorter_one(opening, closing):
    assert kinds_of(f"{opening}\n{closing}\n{block()}{opening}\n") == []


@pytest.mark.parametrize("opening, closing", [("````", "````"), ("````", "`````"), ("~~~", "~~~~~~~")])
def test_a_fence_is_closed_by_an_equal_or_longer_one(opening, closing):
    assert kinds_of(f"{opening}\ncode\n{closing}\n{block()}") == ["ready"]


@pytest.mark.parametrize("opening, closing", [("```", "~~~"), ("~~~", "```"), ("````", "~~~~~~")])
def test_a_fence_is_not_closed_by_the_other_character(opening, closing):
    assert kinds_of(f"{opening}\n{closing}\n{block()}") == []


@pytest.mark.parametrize("closing", ["``` x", "```json", "``` `", "~~~ x"])
def test_a_closing_fence_with_text_after_it_does_not_close(closing):
    fence = closing[:3]
    assert kinds_of(f"{fence}\n{closing}\n{block()}") == []


@pytest.mark.parametrize("trailer", [" ", "\t", "  \t", "\r"])
def test_a_closing_fence_followed_by_spaces_tabs_or_crlf_closes(trailer):
    assert kinds_of(f"```\ncode\n```{trailer}\n{block()}") == ["ready"]


def test_a_closing_fence_followed_by_a_lone_cr_at_the_end_does_not_close():
    # nothing follows it, so this only shows the fence never closed: no error either
    assert extract("```\ncode\n```\r") == Extraction((), (), "```\ncode\n```\r")


@pytest.mark.parametrize("fence", ["```", "~~~", "```python"])
def test_an_unclosed_fence_runs_to_the_end(fence):
    text = f"prose\n{fence}\ncode\n{block()}\nmore\n{block('blocked', '{}')}"
    assert extract(text) == Extraction((), (), text)


@pytest.mark.parametrize("indent", ["", " ", "  ", "   "])
def test_a_fence_indented_up_to_three_spaces_is_a_fence(indent):
    assert kinds_of(f"{indent}```\n{block()}{indent}```\n") == []
    assert kinds_of(f"{indent}~~~\n{block()}") == []


@pytest.mark.parametrize("indent", ["    ", "     ", "\t", " \t", "\u00a0"])
def test_a_fence_indented_by_four_spaces_or_a_tab_is_not_a_fence(indent):
    assert kinds_of(f"{indent}```\n{block()}{indent}```\n") == ["ready"]


@pytest.mark.parametrize("indent", ["", " ", "   "])
def test_a_closing_fence_indented_up_to_three_spaces_closes(indent):
    assert kinds_of(f"  ```\ncode\n{indent}```\n{block()}") == ["ready"]


@pytest.mark.parametrize("indent", ["    ", "\t"])
def test_a_closing_fence_indented_by_four_spaces_or_a_tab_does_not_close(indent):
    assert kinds_of(f"```\ncode\n{indent}```\n{block()}") == []


@pytest.mark.parametrize("prefix", ["> ", "- ", "1. ", "text "])
def test_a_fence_with_anything_but_spaces_before_it_is_not_a_fence(prefix):
    assert kinds_of(f"{prefix}```\n{block()}") == ["ready"]


def test_a_fence_opened_in_a_list_item_and_closed_at_column_0_leaves_the_block_after_it_inert():
    # CommonMark ends the list item at the unindented line, which then opens a new fence:
    # the block is quoted there, so it must not be live here (a doubt never makes it live).
    verify = block("verify", {"results": [{"id": "c1", "verdict": "pass", "evidence": "x"}]})
    assert kinds_of(f"- step\n  ```\n  code\n```\n{verify}") == []
    assert extract(f"- step\n  ```\n  code\n```\n{verify}").errors == ()


@pytest.mark.parametrize("above", ["1. step\n", "* step\n", "- step\n  more text\n", "- step\nlazy text\n", "- step\n\n  later paragraph\n"])
def test_every_list_item_shape_above_an_indented_fence_makes_a_less_indented_close_a_doubt(above):
    assert kinds_of(f"{above}   ```\n   code\n```\n{block()}") == []


def test_the_line_that_ended_the_list_item_fence_opens_a_fence_and_its_own_close_makes_tags_live_again():
    assert kinds_of(f"- step\n  ```\n  code\n```\nquoted\n```\n{block()}") == ["ready"]


@pytest.mark.parametrize("above", ["", "para\n", "- item\n\npara at column 0\n", "# heading\n"])
def test_an_indented_fence_with_no_possible_list_item_above_is_closed_at_column_0(above):
    assert kinds_of(f"{above}  ```\ncode\n```\n{block()}") == ["ready"]


def test_a_list_item_fence_closed_at_its_own_indent_closes():
    assert kinds_of(f"- step\n  ```\n  code\n  ```\n{block()}") == ["ready"]


def test_a_list_marker_too_far_above_to_rule_out_is_a_doubt():
    lines = "".join(f"  line {n}\n" for n in range(100))
    assert kinds_of(f"- step\n{lines}  ```\n```\n{block()}") == []


def test_a_duplicate_key_in_a_body_is_invalid_json_not_the_last_value():
    body = '{"results": [{"id": "c1", "verdict": "fail", "evidence": "broken", "verdict": "pass"}]}'
    result = extract(block("verify", body))
    assert result.markers == ()
    [error] = result.errors
    assert error.kind == "verify" and "appears twice" in error.reason and '"verdict"' in error.reason


def test_a_duplicate_top_level_key_is_invalid_json():
    result = extract(block("ready", '{"summary": "a", "summary": "b"}'))
    assert result.markers == () and "appears twice" in result.errors[0].reason


def test_the_same_key_in_two_different_objects_is_fine():
    body = '{"results": [{"id": "c1", "verdict": "pass", "evidence": "a"}, {"id": "c2", "verdict": "pass", "evidence": "b"}]}'
    assert kinds_of(block("verify", body)) == ["verify"]


def test_fence_lines_inside_a_body_are_body_text():
    text = "CREW_READY_BEGIN\n```\nCREW_READY_END\n" + block("blocked", '{"reason": "r"}')
    result = extract(text)
    assert [(e.kind, e.line) for e in result.errors] == [("ready", 1)]
    assert [(m.kind, m.line) for m in result.markers] == [("blocked", 4)]


def test_a_fence_inside_a_body_does_not_hide_the_closing_tag():
    body = '{"summary": "done"}\n```'
    assert only_error(block("ready", body)).reason.startswith("body is not valid JSON")


def test_several_fences_in_a_row_each_close():
    text = "```\na\n```\n~~~~\nb\n~~~~\n````\n```\n````\n" + block()
    assert extract(text).markers[0].line == 10


def test_fences_stay_in_the_text():
    text = f"```\n{block()}```\n"
    assert extract(text + block()).text == text


# --- .text ----------------------------------------------------------------------------


def test_text_keeps_everything_but_live_blocks_byte_for_byte():
    before = "Hello\r\n  indented\rlone CR \u2028 sep\n"
    after = "\tbye\r\n\x00\n"
    assert extract(before + block(eol="\r\n") + after).text == before + after


def test_invalid_blocks_are_removed_from_the_text():
    assert extract("a\n" + block("ready", "nope") + "b\n").text == "a\nb\n"


def test_inert_blocks_stay_in_the_text():
    text = f"> CREW_READY_BEGIN\n> {READY}\n> CREW_READY_END\n"
    assert extract(text).text == text


def test_a_block_on_the_last_line_without_a_newline_is_removed():
    assert extract(f"a\nCREW_READY_BEGIN\n{READY}\nCREW_READY_END \t").text == "a\n"


def test_text_before_a_block_without_a_trailing_newline_is_not_joined():
    assert extract(f"a\n{block()}b").text == "a\nb"


# --- CLARIFY --------------------------------------------------------------------------


def question(n: int = 1, **extra) -> dict:
    return {"text": f"question {n}?", **extra}


def test_clarify_is_normalised():
    assert payload("clarify", {"questions": [{"text": "Which db?"}]}) == {
        "intro": None,
        "questions": [{"id": "q1", "text": "Which db?", "options": [], "multi": False}],
    }


def test_clarify_ids_are_renumbered_by_position():
    body = {"questions": [question(1, id="zeta"), question(2), question(3, id="q1")]}
    assert [q["id"] for q in payload("clarify", body)["questions"]] == ["q1", "q2", "q3"]


@pytest.mark.parametrize("count", [1, 10])
def test_clarify_accepts_1_to_10_questions(count):
    assert len(payload("clarify", {"questions": [question(n) for n in range(count)]})["questions"]) == count


@pytest.mark.parametrize("count", [0, 11])
def test_clarify_rejects_0_or_more_than_10_questions(count):
    assert reason("clarify", {"questions": [question(n) for n in range(count)]}) == "questions must have 1–10 items"


@pytest.mark.parametrize("questions", [None, "which?", {"text": "q"}])
def test_clarify_questions_must_be_a_list(questions):
    body = {} if questions is None else {"questions": questions}
    assert reason("clarify", body).startswith("questions ")


@pytest.mark.parametrize("count", [0, 2, 8])
def test_clarify_accepts_0_or_2_to_8_options(count):
    options = [f"option {n}" for n in range(count)]
    assert payload("clarify", {"questions": [question(options=options)]})["questions"][0]["options"] == options


@pytest.mark.parametrize("count", [1, 9])
def test_clarify_rejects_1_or_more_than_8_options(count):
    body = {"questions": [question(1), question(2, options=[f"o{n}" for n in range(count)])]}
    assert reason("clarify", body) == "questions[2].options must have 0 or 2–8 items"


@pytest.mark.parametrize("options", ["a, b", [1, 2], ["a", None], ["a", ""], ["a", " \n "]])
def test_clarify_options_must_be_non_empty_strings(options):
    assert reason("clarify", {"questions": [question(options=options)]}).startswith("questions[1].options")


@pytest.mark.parametrize("text", ["", "  ", "\n\t\r", None, 7, ["q"]])
def test_clarify_question_text_must_be_a_non_empty_string(text):
    assert reason("clarify", {"questions": [{"text": text}]}).startswith("questions[1].text must")


def test_clarify_question_text_is_required():
    assert reason("clarify", {"questions": [{"options": ["a", "b"]}]}) == "questions[1].text must be a string"


@pytest.mark.parametrize("multi", ["yes", 1, 0, [], "true"])
def test_clarify_multi_must_be_a_boolean(multi):
    body = {"questions": [question(multi=multi)]}
    assert reason("clarify", body) == "questions[1].multi must be true or false"


@pytest.mark.parametrize("multi", [True, False])
def test_clarify_multi_keeps_a_boolean(multi):
    assert payload("clarify", {"questions": [question(multi=multi)]})["questions"][0]["multi"] is multi


def test_clarify_question_must_be_an_object():
    assert reason("clarify", {"questions": ["Which db?"]}) == "questions[1] must be an object"


def test_clarify_fields_are_collapsed_and_capped():
    body = {
        "intro": "Hi\nthere\r\n\x00" + "i" * 2000,
        "questions": [{"text": "Which\n\n db?" + "t" * 1000, "options": ["o\u2028k" + "o" * 500, "b"]}],
    }
    result = payload("clarify", body)
    assert result["intro"].startswith("Hi there ") and len(result["intro"]) == 1000
    q = result["questions"][0]
    assert q["text"].startswith("Which db?") and len(q["text"]) == 500 and q["text"].endswith("…")
    assert q["options"][0].startswith("o k") and len(q["options"][0]) == 200


def test_clarify_fields_at_their_cap_are_not_cut():
    body = {"intro": "i" * 1000, "questions": [{"text": "t" * 500, "options": ["o" * 200, "b"]}]}
    result = payload("clarify", body)
    assert result["intro"] == "i" * 1000
    assert result["questions"][0]["text"] == "t" * 500
    assert result["questions"][0]["options"][0] == "o" * 200


def test_clarify_drops_unknown_keys():
    body = {"questions": [question(extra=1)], "other": True}
    result = payload("clarify", body)
    assert set(result) == {"intro", "questions"}
    assert set(result["questions"][0]) == {"id", "text", "options", "multi"}


def test_clarify_optional_fields_may_be_null():
    result = payload("clarify", {"intro": None, "questions": [question(options=None, multi=None, id=None)]})
    assert result["intro"] is None
    assert result["questions"][0]["options"] == [] and result["questions"][0]["multi"] is False


def test_clarify_intro_must_be_a_string():
    assert reason("clarify", {"intro": 3, "questions": [question()]}) == "intro must be a string"


# --- LOCK -----------------------------------------------------------------------------


def criterion(n: int = 1, **extra) -> dict:
    return {"text": f"criterion {n}", "verify": "inspect it", **extra}


def test_lock_is_normalised_with_ids_renumbered():
    body = {"statement": "Ship\nit", "criteria": [criterion(1, id="x"), criterion(2, id="c9")]}
    assert payload("lock", body) == {
        "statement": "Ship it",
        "criteria": [
            {"id": "c1", "text": "criterion 1", "verify": "inspect it"},
            {"id": "c2", "text": "criterion 2", "verify": "inspect it"},
        ],
    }


@pytest.mark.parametrize("count", [1, 20])
def test_lock_accepts_1_to_20_criteria(count):
    assert len(payload("lock", {"criteria": [criterion(n) for n in range(count)]})["criteria"]) == count


@pytest.mark.parametrize("count", [0, 21])
def test_lock_rejects_0_or_more_than_20_criteria(count):
    assert reason("lock", {"criteria": [criterion(n) for n in range(count)]}) == "criteria must have 1–20 items"


def test_lock_text_and_statement_are_capped():
    body = {"statement": "s" * 3000, "criteria": [criterion(text="t" * 1001)]}
    result = payload("lock", body)
    assert len(result["statement"]) == 2000 and len(result["criteria"][0]["text"]) == 1000


def test_lock_text_is_required():
    assert reason("lock", {"criteria": [{"verify": "v"}]}) == "criteria[1].text must be a string"
    assert reason("lock", {"criteria": [{"text": "\n", "verify": "v"}]}) == "criteria[1].text must not be empty"


def test_lock_verify_text_is_collapsed_and_capped():
    result = payload("lock", {"criteria": [criterion(verify="read\nthe\x00docs " + "v" * 3000)]})
    verify = result["criteria"][0]["verify"]
    assert verify.startswith("read the docs v") and len(verify) == 2000


@pytest.mark.parametrize("verify", ["", " \n ", None, 3, ["pytest"], True])
def test_lock_verify_must_be_non_empty_text_or_a_run(verify):
    assert reason("lock", {"criteria": [criterion(verify=verify)]}).startswith("criteria[1].verify must")


def test_lock_run_command_is_kept_verbatim():
    command = "  pytest -q\t-k 'a  b'  && echo ok  "
    result = payload("lock", {"criteria": [criterion(verify={"run": command, "timeout": 9})]})
    assert result["criteria"][0]["verify"] == {"run": command}


@pytest.mark.parametrize("bad", ["\n", "\r", "\r\n", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\x0b"])
def test_lock_run_command_with_a_control_character_is_rejected(bad):
    result = reason("lock", {"criteria": [criterion(verify={"run": f"pytest{bad}rm -rf ~"})]})
    assert result == "criteria[1].verify.run must be one line without control characters"


@pytest.mark.parametrize("command", ["", " ", "\t ", None, 7, ["pytest"]])
def test_lock_run_command_must_be_non_empty_text(command):
    result = reason("lock", {"criteria": [criterion(verify={"run": command})]})
    assert result == "criteria[1].verify.run must be a non-empty command"


def test_lock_run_command_needs_run():
    result = reason("lock", {"criteria": [criterion(verify={"cmd": "pytest"})]})
    assert result == "criteria[1].verify.run must be a non-empty command"


def test_lock_run_command_of_1000_characters_is_accepted_and_1001_is_not():
    assert payload("lock", {"criteria": [criterion(verify={"run": "x" * 1000})]})["criteria"][0]["verify"]
    result = reason("lock", {"criteria": [criterion(verify={"run": "x" * 1001})]})
    assert result == "criteria[1].verify.run must be at most 1000 characters"


# --- PLAN -----------------------------------------------------------------------------


def test_plan_is_normalised():
    steps = [{"id": "z", "title": "Do"}, {"title": "Then", "lane": "GPU_1", "detail": "d\ne", "needs_approval": True}]
    assert payload("plan", {"steps": steps}) == {
        "steps": [
            {"id": "s1", "title": "Do", "detail": None, "lane": None, "needs_approval": False},
            {"id": "s2", "title": "Then", "detail": "d e", "lane": "gpu_1", "needs_approval": True},
        ]
    }


@pytest.mark.parametrize("count", [1, 50])
def test_plan_accepts_1_to_50_steps(count):
    assert len(payload("plan", {"steps": [{"title": f"s{n}"} for n in range(count)]})["steps"]) == count


@pytest.mark.parametrize("count", [0, 51])
def test_plan_rejects_0_or_more_than_50_steps(count):
    assert reason("plan", {"steps": [{"title": f"s{n}"} for n in range(count)]}) == "steps must have 1–50 items"


def test_plan_title_and_detail_are_capped():
    step = payload("plan", {"steps": [{"title": "t" * 300, "detail": "d" * 3000}]})["steps"][0]
    assert len(step["title"]) == 200 and len(step["detail"]) == 2000


@pytest.mark.parametrize("title", [None, "", "\n", 5])
def test_plan_title_is_required(title):
    assert reason("plan", {"steps": [{"title": title}]}).startswith("steps[1].title must")


@pytest.mark.parametrize("lane", ["a", "0", "gpu-1", "a_b", "a" * 32, "Linux"])
def test_plan_lane_is_accepted_lower_cased(lane):
    assert payload("plan", {"steps": [{"title": "t", "lane": lane}]})["steps"][0]["lane"] == lane.lower()


@pytest.mark.parametrize("lane", ["", "-a", "_a", "a" * 33, "gpu lane", "é", "a\n", " a", 3, True])
def test_plan_lane_that_does_not_match_is_rejected(lane):
    result = reason("plan", {"steps": [{"title": "t", "lane": lane}]})
    assert result == "steps[1].lane must match ^[a-z0-9][a-z0-9_-]{0,31}$"


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_plan_needs_approval_must_be_a_boolean(value):
    result = reason("plan", {"steps": [{"title": "t", "needs_approval": value}]})
    assert result == "steps[1].needs_approval must be true or false"


# --- READY ----------------------------------------------------------------------------


def test_ready_is_normalised():
    assert payload("ready", {"summary": "All\ngreen", "evidence": ["log\r\nok"], "x": 1}) == {
        "summary": "All green",
        "evidence": ["log ok"],
    }


@pytest.mark.parametrize("summary", [None, "", "\t", 4])
def test_ready_summary_is_required(summary):
    assert reason("ready", {"summary": summary}).startswith("summary must")


def test_ready_summary_and_evidence_are_capped():
    result = payload("ready", {"summary": "s" * 5000, "evidence": ["e" * 1500]})
    assert len(result["summary"]) == 4000 and len(result["evidence"][0]) == 1000


def test_ready_accepts_up_to_20_evidence_items():
    assert len(payload("ready", {"summary": "s", "evidence": ["e"] * 20})["evidence"]) == 20
    assert reason("ready", {"summary": "s", "evidence": ["e"] * 21}) == "evidence must have 0–20 items"


@pytest.mark.parametrize("evidence", ["one", [1], ["a", None]])
def test_ready_evidence_must_be_a_list_of_strings(evidence):
    assert reason("ready", {"summary": "s", "evidence": evidence}).startswith("evidence")


# --- BLOCKED --------------------------------------------------------------------------


def test_blocked_is_normalised():
    assert payload("blocked", {"reason": "no\ncreds"}) == {"reason": "no creds", "needs": None}
    assert payload("blocked", {"reason": "r", "needs": "a key"}) == {"reason": "r", "needs": "a key"}


@pytest.mark.parametrize("value", [None, "", " ", ["r"]])
def test_blocked_reason_is_required(value):
    assert reason("blocked", {"reason": value}).startswith("reason must")


def test_blocked_fields_are_capped():
    result = payload("blocked", {"reason": "r" * 2000, "needs": "n" * 2000})
    assert len(result["reason"]) == 1000 and len(result["needs"]) == 1000


def test_blocked_needs_must_be_a_string():
    assert reason("blocked", {"reason": "r", "needs": 1}) == "needs must be a string"


# --- VERIFY ---------------------------------------------------------------------------


def result(n: int = 1, **extra) -> dict:
    return {"id": f"c{n}", "verdict": "pass", "evidence": "ok", **extra}


def test_verify_is_normalised_and_keeps_duplicates_and_unknown_ids_in_order():
    body = {"results": [result(1), result(9, verdict="FAIL"), result(1, verdict="Fail", evidence="")]}
    assert payload("verify", body) == {
        "results": [
            {"id": "c1", "verdict": "pass", "evidence": "ok"},
            {"id": "c9", "verdict": "fail", "evidence": "ok"},
            {"id": "c1", "verdict": "fail", "evidence": ""},
        ]
    }


@pytest.mark.parametrize("count", [1, 100])
def test_verify_accepts_1_to_100_results(count):
    assert len(payload("verify", {"results": [result(n) for n in range(count)]})["results"]) == count


@pytest.mark.parametrize("count", [0, 101])
def test_verify_rejects_0_or_more_than_100_results(count):
    assert reason("verify", {"results": [result(n) for n in range(count)]}) == "results must have 1–100 items"


@pytest.mark.parametrize("verdict", ["maybe", " pass", "passed", "", None, True, 1, "ＰＡＳＳ"])
def test_verify_verdict_must_be_pass_or_fail(verdict):
    assert reason("verify", {"results": [result(verdict=verdict)]}) == 'results[1].verdict must be "pass" or "fail"'


def test_verify_evidence_is_required_but_may_be_empty():
    assert payload("verify", {"results": [result(evidence="")]})["results"][0]["evidence"] == ""
    body = {"results": [{"id": "c1", "verdict": "pass"}]}
    assert reason("verify", body) == "results[1].evidence must be a string"


def test_verify_id_is_collapsed_capped_and_required():
    assert payload("verify", {"results": [result(id=" c\n1 " + "x" * 100)]})["results"][0]["id"].startswith("c 1 x")
    assert len(payload("verify", {"results": [result(id="x" * 100)]})["results"][0]["id"]) == 64
    assert reason("verify", {"results": [result(id="")]}) == "results[1].id must not be empty"
    assert reason("verify", {"results": [result(id=1)]}) == "results[1].id must be a string"


def test_verify_evidence_is_collapsed_and_capped():
    evidence = payload("verify", {"results": [result(evidence="a\n\nb" + "e" * 3000)]})["results"][0]["evidence"]
    assert evidence.startswith("a be") and len(evidence) == 2000


# --- collapse and quote ---------------------------------------------------------------


@pytest.mark.parametrize(
    "run", ["\n", "\r", "\r\n", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", " \n\t \x00 "]
)
def test_collapse_turns_every_run_of_whitespace_and_controls_into_one_space(run):
    assert collapse(f"a{run}b{run}{run}c", 100) == "a b c"


def test_collapse_turns_runs_of_plain_spaces_into_one():
    assert collapse("a  b     c", 100) == "a b c"


def test_collapse_strips_both_ends():
    assert collapse("\n\t  x  \r\n", 10) == "x"


def test_collapse_keeps_other_text():
    assert collapse("naïve → 漢字 🎉 `code`", 100) == "naïve → 漢字 🎉 `code`"


def test_collapse_caps_with_an_ellipsis_only_when_cut():
    assert collapse("abcde", 5) == "abcde"
    assert collapse("abcdef", 5) == "abcd…"
    assert collapse("abc   def", 5) == "abc…"


@given(st.text(), st.integers(min_value=1, max_value=50))
@settings(max_examples=200, deadline=None)
def test_collapse_always_gives_one_capped_line(text, cap):
    out = collapse(text, cap)
    assert len(out) <= cap
    assert out == out.strip()
    assert not any(c in out for c in "\n\r\t\x00\x0b\x0c\x85\u2028\u2029\x7f")
    assert "  " not in out


def test_quote_uses_at_least_three_backticks():
    assert quote("plain") == "```\nplain\n```"


def test_quote_fence_is_longer_than_the_longest_backtick_run():
    assert quote("a ````` b\n```\n").split("\n")[0] == "``````"


def test_quote_keeps_a_trailing_newline_without_doubling_it():
    assert quote("x\n") == "```\nx\n```"


def test_quote_makes_a_marker_that_would_close_a_shorter_fence_inert():
    text = f"```\n{block()}```\n{block()}"
    assert kinds_of(text) == ["ready"]
    assert extract(quote(text)).markers == ()
    assert extract(quote(text)).errors == ()


# --- properties -----------------------------------------------------------------------

_TAGS = [f"CREW_{k.upper()}_{edge}" for k in KINDS for edge in ("BEGIN", "END")] + ["CREW_NOPE_BEGIN"]

fragments = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\n", "\r\n", "\r", "\u2028", " ", "\t", "> ", "   ", "    "]),
    st.sampled_from(_TAGS),
    st.builds(lambda tag, tail: tag + tail, st.sampled_from(_TAGS), st.sampled_from(["", " ", "\t", "\r", "x"])),
    st.builds(
        lambda ch, n, info: ch * n + info,
        st.sampled_from("`~"),
        st.integers(1, 6),
        st.sampled_from(["", "json", "`", " x"]),
    ),
    st.sampled_from(
        [
            READY,
            '{"questions": [{"text": "q", "options": ["a", "b"]}]}',
            '{"criteria": [{"text": "t", "verify": {"run": "true"}}]}',
            '{"steps": [{"title": "t", "lane": "a"}]}',
            '{"reason": "r"}',
            '{"results": [{"id": "c1", "verdict": "pass", "evidence": ""}]}',
            "{",
            "[]",
            "NaN",
            "[[[[",
        ]
    ),
)
replies = st.one_of(st.text(), st.lists(fragments, max_size=40).map("".join))


@given(replies)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_string_gives_a_well_formed_extraction(text):
    result = extract(text)
    assert isinstance(result, Extraction)
    assert isinstance(result.text, str) and len(result.text) <= len(text)
    for marker in result.markers:
        assert isinstance(marker, Marker) and marker.kind in KINDS
        assert isinstance(marker.payload, dict) and isinstance(marker.line, int) and marker.line >= 1
    for error in result.errors:
        assert isinstance(error, MarkerError) and error.kind in KINDS and error.line >= 1
        assert isinstance(error.reason, str) and 0 < len(error.reason) <= 200 and "\n" not in error.reason
        assert "internal error" not in error.reason
    lines = [item.line for item in result.markers + result.errors]
    assert len(set(lines)) == len(lines)
    if not result.markers and not result.errors:
        assert result.text == text


@given(replies)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_remaining_text_has_nothing_live_left(text):
    rest = extract(text).text
    assert extract(rest) == Extraction((), (), rest)


def _nonblank(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=max_size).filter(lambda s: collapse(s, 10) != "")


_option_lists = st.one_of(st.just([]), st.lists(_nonblank(), min_size=2, max_size=8))
_questions = st.fixed_dictionaries(
    {"text": _nonblank()}, optional={"options": _option_lists, "multi": st.booleans()}
)
_commands = st.from_regex(r"[a-z][a-z -]{0,20}", fullmatch=True).map(lambda c: {"run": c})
_criteria = st.fixed_dictionaries({"text": _nonblank(), "verify": st.one_of(_nonblank(), _commands)})
_steps = st.fixed_dictionaries(
    {"title": _nonblank()},
    optional={
        "detail": st.text(max_size=30),
        "lane": st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True),
        "needs_approval": st.booleans(),
    },
)
_results = st.fixed_dictionaries(
    {
        "id": _nonblank(10),
        "verdict": st.sampled_from(["pass", "fail", "PASS", "Fail"]),
        "evidence": st.text(max_size=20),
    }
)
_payloads = st.one_of(
    st.tuples(
        st.just("clarify"),
        st.fixed_dictionaries(
            {"questions": st.lists(_questions, min_size=1, max_size=10)}, optional={"intro": st.text(max_size=30)}
        ),
    ),
    st.tuples(st.just("lock"), st.fixed_dictionaries({"criteria": st.lists(_criteria, min_size=1, max_size=20)})),
    st.tuples(st.just("plan"), st.fixed_dictionaries({"steps": st.lists(_steps, min_size=1, max_size=50)})),
    st.tuples(
        st.just("ready"),
        st.fixed_dictionaries(
            {"summary": _nonblank()}, optional={"evidence": st.lists(st.text(max_size=20), max_size=20)}
        ),
    ),
    st.tuples(
        st.just("blocked"), st.fixed_dictionaries({"reason": _nonblank()}, optional={"needs": st.text(max_size=20)})
    ),
    st.tuples(st.just("verify"), st.fixed_dictionaries({"results": st.lists(_results, min_size=1, max_size=100)})),
)
valid_blocks = st.builds(
    lambda kind_body, indent, ascii_only, eol, trailer: block(
        kind_body[0], json.dumps(kind_body[1], indent=indent, ensure_ascii=ascii_only).replace("\n", eol), eol
    ).replace(f"_BEGIN{eol}", f"_BEGIN{trailer}{eol}"),
    _payloads,
    st.sampled_from([None, 2, 4]),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(["", " ", "\t "]),
)


@st.composite
def fences(draw) -> tuple[str, str]:
    char = draw(st.sampled_from("`~"))
    length = draw(st.integers(3, 8))
    indent = " " * draw(st.integers(0, 3))
    info = draw(st.text(alphabet=st.characters(blacklist_characters="\n`" if char == "`" else "\n"), max_size=10))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    opening = f"{indent}{char * length}{info}{eol}"
    closing = draw(
        st.one_of(
            st.just(""),
            st.builds(
                lambda extra, ind, trailer: f"{' ' * ind}{char * (length + extra)}{trailer}\n",
                st.integers(0, 3),
                st.integers(0, 3),
                st.sampled_from(["", " ", "\t", "\r"]),
            ),
        )
    )
    return opening, closing


# A line of prose before the block, with nothing in it that could open a fence.
_prose = st.text(alphabet=st.characters(blacklist_characters="`~\n"), max_size=20).map(lambda s: s + "\n")


@given(valid_blocks, fences(), _prose)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_block_is_live_bare_and_inert_inside_any_fence(text, fence, before):
    bare = extract(before + text)
    assert len(bare.markers) == 1 and bare.errors == (), bare.errors
    opening, closing = fence
    wrapped = before + opening + text + closing
    assert extract(wrapped).markers == ()
    assert extract(wrapped).errors == ()


@given(replies)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_quoted_text_is_inert(text):
    quoted = extract(quote(text))
    assert quoted.markers == () and quoted.errors == ()
    assert extract("intro\n" + quote(text) + "\nafter\n").markers == ()


@given(valid_blocks, st.integers(0, 6))
@settings(max_examples=100, deadline=None)
def test_quoting_a_reply_full_of_backticks_keeps_it_inert(text, run):
    reply = "`" * run + "\n" + text + "`" * (run + 3) + "\n" + text
    assert extract(quote(reply)).markers == ()
