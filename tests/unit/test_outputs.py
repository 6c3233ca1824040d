"""The pure rules of a goal's durable outputs: REFLECT, reflection, memory, skills,
templates, the PR envelope. No threads, files or clocks."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from crewctl.exceptions import UsageError
from crewctl.goal import briefing, envelope, markers, memory, reflect, skills, templates
from crewctl.goal import events as ev
from crewctl.goal import phases, prompts
from crewctl.goal.effects import BuildEnvelope, PrepareReflection, Release, RunReflection, SaveReflection, SupersedeEnvelope
from crewctl.goal.model import Criterion
from crewctl.testing.phases import Drive, block, ready, verify

CHECK = [("c1", "tests pass", {"run": "pytest -q"})]


def passed() -> Drive:
    g = Drive.new(CHECK)
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 0}})
    assert g.status == "awaiting_signoff"
    return g


def signed_off(built: bool = True) -> Drive:
    g = passed()
    if built:
        g.envelope_built()
    g.step(ev.Signoff())
    return g


def good_reflect(**fields) -> dict:
    return {"summary": "fixed the parser", "lessons": ["read the failing test first"],
            "memory": [{"kind": "fact", "text": "tests live in tests/unit"}], **fields}


# -- REFLECT in the grammar ------------------------------------------------------------------------


def test_a_reflect_block_is_a_marker_with_its_payload_normalised():
    [m] = markers.extract(block("reflect", good_reflect(skill={"name": "parse-dates", "description": "d", "body": "a\r\nb"}))).markers
    assert m.kind == "reflect"
    assert m.payload == {
        "summary": "fixed the parser",
        "lessons": ["read the failing test first"],
        "memory": [{"kind": "fact", "text": "tests live in tests/unit"}],
        "skill": {"name": "parse-dates", "description": "d", "body": "a\nb\n"},
    }


def test_reflect_lists_may_be_absent_and_skill_may_be_null():
    [m] = markers.extract(block("reflect", {"summary": "s", "skill": None})).markers
    assert m.payload == {"summary": "s", "lessons": [], "memory": [], "skill": None}


@pytest.mark.parametrize("body, reason", [
    ({"lessons": []}, "summary must be a string"),
    (good_reflect(memory=[{"kind": "fact", "text": "x"}] * 11), "memory must have 0–10 items"),
    (good_reflect(lessons=["x"] * 11), "lessons must have 0–10 items"),
    (good_reflect(memory=[{"kind": "gossip", "text": "x"}]), 'memory[1].kind must be "fact", "preference" or "strategy"'),
    (good_reflect(memory=[{"kind": "fact", "text": "  "}]), "memory[1].text must not be empty"),
    (good_reflect(skill={"name": "Has Caps", "description": "d", "body": "b"}), "skill.name must match"),
    (good_reflect(skill={"name": "x" * 65, "description": "d", "body": "b"}), "skill.name must match"),
    (good_reflect(skill={"name": "ok", "description": "d", "body": "é" * 8193}), "skill.body exceeds 16 KiB"),
    (good_reflect(skill={"name": "ok", "description": "d", "body": "\n\n"}), "skill.body must not be empty"),
    (good_reflect(skill={"name": "ok", "body": "b"}), "skill.description must be a string"),
])
def test_a_reflect_block_outside_its_schema_is_an_error_saying_why(body, reason):
    extraction = markers.extract(block("reflect", body))
    assert not extraction.markers
    [error] = extraction.errors
    assert error.kind == "reflect" and reason in error.reason


def test_a_skill_body_keeps_its_lines_and_loses_control_characters_and_lone_surrogates():
    raw = '{"summary": "s", "skill": {"name": "n", "description": "d\\ud800", "body": "# T\\u0007itle\\n\\n\\tcode\\u001b[0m\\n"}}'
    [m] = markers.extract(f"CREW_REFLECT_BEGIN\n{raw}\nCREW_REFLECT_END\n").markers
    assert m.payload["skill"]["body"] == "# Title\n\n\tcode[0m\n"
    assert m.payload["skill"]["description"] == "d\ufffd"
    m.payload["skill"]["description"].encode("utf-8")  # writable to a file


# -- judging a reflection ----------------------------------------------------------------------------


def test_judge_takes_exactly_one_valid_reflect_and_names_what_else_it_ignored():
    v = reflect.judge(ready() + block("reflect", good_reflect()))
    assert v.payload["summary"] == "fixed the parser" and v.error is None and v.ignored == (("ready", 1),)
    assert reflect.judge("no block at all").error == "no REFLECT block"
    two = reflect.judge(block("reflect", good_reflect()) + block("reflect", good_reflect()))
    assert two.payload is None and two.error == "2 REFLECT blocks in one reply"
    quoted = reflect.judge("```\n" + block("reflect", good_reflect()) + "```\n")
    assert quoted.error == "no REFLECT block"  # a quoted block is a quote


# -- the reflection's rules --------------------------------------------------------------------------


def test_signoff_starts_one_reflection_turn_in_a_fresh_session_as_the_reflector():
    g = signed_off()
    assert g.status == "done" and g.state.reflection == "due"
    assert g.effects(PrepareReflection) and not g.effects(Release)
    t = g.step(ev.ReflectionStarted(prompt="the digest"))
    [run] = g.effects(RunReflection, t)
    assert run.prompt == "the digest" and run.turn == g.state.turn and not run.rerun
    assert g.state.in_flight.role == "reflector" and g.state.in_flight.prompt == "the digest"
    assert g.types(t) == ["turn_started"] and t.records[0].payload["role"] == "reflector"


def test_a_good_reflection_is_recorded_saved_and_releases_the_goal():
    g = signed_off()
    t = g.reflector(block("reflect", good_reflect(skill={"name": "s", "description": "d", "body": "b"})),
                    usage=ev.TurnUsage(input_tokens=100, output_tokens=20))
    assert g.status == "done" and g.state.reflection == "ok"
    record = g.record("reflection").payload
    assert record["ok"] is True and record["tries"] == 1 and record["memory"] == [{"kind": "fact", "text": "tests live in tests/unit"}]
    [save] = g.effects(SaveReflection, t)
    assert save.memory == (("fact", "tests live in tests/unit"),) and save.skill["body"] == "b\n" and save.workspace == "/ws"
    assert g.effects(Release, t)
    assert g.state.spend.input_tokens == 100  # the reflection's usage is spend like any turn's


def test_a_malformed_reflection_is_tried_once_more_then_recorded_as_failed_and_done_stays():
    g = signed_off()
    g.reflector("CREW_REFLECT_BEGIN\n{\"summary\": 3}\nCREW_REFLECT_END\n")
    assert g.state.reflection == "due" and g.types()[-2:] == ["marker_invalid", "turn_started"]
    [retry] = g.effects(RunReflection)
    assert "no valid REFLECT block (summary must be a string)" in retry.prompt
    t = g.reflector("nothing useful")
    assert g.status == "done" and g.state.reflection == "failed"
    record = g.record("reflection").payload
    assert record == {"ok": False, "error": "no REFLECT block", "tries": 2}
    assert not g.effects(SaveReflection, t) and g.effects(Release, t)


def test_a_failed_reflection_turn_is_retried_once_as_a_new_turn_then_given_up():
    g = signed_off()
    g.step(ev.ReflectionStarted(prompt="p"))
    first = g.state.in_flight.turn
    t = g.step(ev.ReflectionFailed(turn=first, error="exit 3"))
    [retry] = g.effects(RunReflection, t)
    assert retry.turn == first + 1 and retry.prompt == "p"
    t = g.step(ev.ReflectionFailed(turn=first + 1, error="exit 3 again"))
    assert g.state.reflection == "failed" and g.record("reflection").payload["error"] == "exit 3 again"
    assert g.effects(Release, t) and g.status == "done"


def test_a_reflect_from_the_lead_a_worker_or_the_verifier_moves_nothing():
    g = Drive.new(CHECK)
    g.lead(block("reflect", good_reflect()) + ready())
    ignored = g.record("marker_ignored").payload
    assert ignored["kind"] == "reflect" and ignored["role"] == "lead"
    g.verifier(block("reflect", good_reflect()) + verify(("c1", "pass", "ok")), checks={"c1": {"exit": 0}})
    assert g.record("marker_ignored").payload["role"] == "verifier"
    assert "reflection" not in g.all_types() and g.state.reflection is None


def test_the_reflection_waits_for_the_envelope_before_it_releases_the_goal():
    g = signed_off(built=False)
    t = g.reflector(block("reflect", good_reflect()))
    assert not g.effects(Release, t)  # the envelope is still being made
    t = g.envelope_built()
    assert g.effects(Release, t) and g.state.envelope.status == "ready"


def test_recovering_a_done_goal_reruns_its_reflection_turn_with_the_same_prompt():
    g = signed_off()
    g.step(ev.ReflectionStarted(prompt="the digest"))
    turn = g.state.in_flight.turn
    t = g.step(ev.Recover())
    [run] = g.effects(RunReflection, t)
    assert run.turn == turn and run.prompt == "the digest" and run.rerun
    fresh = signed_off()
    assert fresh.effects(PrepareReflection, fresh.step(ev.Recover()))
    g.reflector(block("reflect", good_reflect()))
    assert g.effects(Release, g.step(ev.Recover()))  # nothing left to do: it lets go


def test_operator_commands_on_a_done_goal_are_still_refused_while_it_reflects():
    from crewctl.exceptions import Refused

    g = signed_off()
    with pytest.raises(Refused):
        g.step(ev.Steer(text="one more thing"))


def test_the_digest_holds_each_held_rounds_failures_steers_notes_and_spend_and_is_bounded():
    g = Drive.new(CHECK)
    for n in range(30):
        g.step(ev.Steer(text=f"steer number {n} " + "x" * 2000))
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 1, "output": "AssertionError: 2 != 3"}})
    events = [{"type": r.type, "payload": dict(r.payload)} for r in g.records]
    events.append({"type": "send_back", "payload": {"notes": "rename the flag"}})
    prompt = reflect.digest_prompt(g.state, events)
    assert "- round 1: failed c1\n  c1: check `pytest -q` exited 1: AssertionError: 2 != 3" in prompt
    assert "steer number 29" in prompt and "steer number 0 " not in prompt  # the newest, capped
    assert "rename the flag" in prompt and "## Spend" in prompt
    events += [{"type": "gate_held", "payload": {"round": n, "failed": ["c1"]}} for n in range(2, 60)]
    many = reflect.digest_prompt(g.state, events)
    assert "(the 20 newest of 59)" in many and "- round 59: failed c1" in many and "- round 1: failed" not in many
    assert len(many.encode()) < 32 * 1024


# -- the PR envelope's rules ---------------------------------------------------------------------------


def test_a_passed_gate_asks_for_its_envelope_before_the_round_ends():
    g = Drive.new(CHECK)
    g.lead(ready())
    t = g.verifier(checks={"c1": {"exit": 0}})
    kinds = [type(e).__name__ for e in t.effects]
    assert kinds.index("BuildEnvelope") < kinds.index("EndRound")
    assert g.state.envelope.status == "pending" and g.state.envelope.round == 1


def test_a_built_envelope_is_recorded_and_a_failed_one_says_why():
    g = passed()
    g.envelope_built(files=("a.py",))
    e = g.record("envelope").payload
    assert e["ok"] is True and e["branch"] == "crewctl/g1" and e["files"] == 1
    assert g.state.envelope.status == "ready" and g.state.envelope.files == ("a.py",)
    h = passed()
    h.envelope_built(error="not a git repository")
    assert h.state.envelope.status == "failed" and h.record("envelope").payload == {"round": 1, "ok": False, "error": "not a git repository", "pr": None}


def test_the_envelope_is_superseded_when_the_passed_gate_falls_but_not_when_it_only_waits():
    g = passed()
    g.envelope_built()
    g.step(ev.Pause())
    g.step(ev.Resume())
    assert g.state.envelope.status == "ready"  # paused and resumed at awaiting_signoff: still stands
    t = g.step(ev.SendBack(notes="again"))
    [down] = g.effects(SupersedeEnvelope, t)
    assert down.branch == "crewctl/g1" and down.commit == "c" * 40
    assert g.state.envelope.status == "superseded" and "envelope_superseded" in g.types(t)

    h = passed()
    h.envelope_built()
    h.step(ev.EditCriteria(criteria=(Criterion("c1", "tests pass", {"run": "pytest -q -x"}),)))
    assert h.state.envelope.status == "superseded"
    i = passed()
    i.envelope_built()
    i.step(ev.Steer(text="one more"))
    i.lead(ready())  # a READY after the pass re-arms the gate
    assert i.state.envelope.status == "superseded" and i.status == "verifying"


def test_an_envelope_finished_after_it_was_superseded_is_taken_down():
    g = passed()
    g.step(ev.SendBack(notes="again"))
    t = g.step(ev.EnvelopeBuilt(round=1, branch="crewctl/g1", commit="d" * 40, base="b" * 40))
    [down] = g.effects(SupersedeEnvelope, t)
    assert down.commit == "d" * 40 and not t.records


def test_recovering_a_goal_with_an_envelope_in_the_making_asks_for_it_again():
    g = passed()
    [again] = g.effects(BuildEnvelope, g.step(ev.Recover()))
    assert again.round == 1


def test_the_pr_body_names_objective_criteria_with_evidence_rounds_changes_and_spend():
    g = Drive.new(CHECK)
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 1, "output": "1 failed"}})
    g.lead(ready())
    g.verifier(checks={"c1": {"exit": 0, "output": "3 passed"}})
    events = [{"type": r.type, "payload": dict(r.payload)} for r in g.records]
    body = envelope.pr_body(g.state, events, round_no=2, branch="crewctl/g1", commit="c" * 40, base="b" * 40, files=["src/a.py"])
    assert body.startswith("# make the tests pass\n")
    assert "- [x] **c1** tests pass (check `pytest -q`)" in body and "3 passed" in body
    assert "- round 1: held; failed c1" in body and "- round 2: passed" in body
    assert "- `src/a.py`" in body and "## Spend" in body
    unknown = envelope.pr_body(g.state, events, round_no=2, branch=None, commit=None, base=None, files=None)
    assert "no git commit when the goal started" in unknown


# -- memory ------------------------------------------------------------------------------------------


def test_memory_appends_what_is_new_and_keeps_what_a_person_wrote():
    text, added = memory.append(None, "/ws", [("fact", "Tests need PYTHONPATH=src."), ("fact", "tests need  pythonpath=src")],
                                goal_id="g1", date="2026-11-21T10:00:00")
    assert [e.text for e in added] == ["Tests need PYTHONPATH=src."]
    text += "A paragraph a person wrote.\n* [preference] no tabs\n- an untagged line\n"
    text, added = memory.append(text, "/ws", [("strategy", "run unit tests first"), ("preference", "No tabs.")], goal_id="g2",
                                date="2026-11-22T10:00:00")
    assert [e.text for e in added] == ["run unit tests first"]
    assert "A paragraph a person wrote." in text
    assert [(e.kind, e.text) for e in memory.entries(text)] == [
        ("fact", "Tests need PYTHONPATH=src."), ("preference", "no tabs"), (None, "an untagged line"), ("strategy", "run unit tests first"),
    ]
    assert "- [strategy] run unit tests first (goal g2, 2026-11-22)" in text


def test_the_memory_section_is_newest_first_and_never_over_its_cap():
    text = None
    for n in range(500):
        text, _ = memory.append(text, "/ws", [("fact", f"entry {n:03d} " + "`" * (n % 7) + " word" * 20)], goal_id="g", date="2026-01-01")
    section = memory.prompt_section(text)
    assert len(section.encode()) <= memory.PROMPT_CAP
    assert section.index("entry 499") < section.index("entry 498")
    assert "entry 000" not in section
    assert memory.prompt_section(None) == "" and memory.prompt_section(memory.new_file("/ws")) == ""


# -- skills ------------------------------------------------------------------------------------------

_TRICKY = ['plain', 'true', '2024-01-01', 'a: b # c', '"quoted" and \\back\\slash', "it's", "- leading dash", "ünï ✓ 🙂",
           "nul\x00 and bell\x07 and \ufffe and \x85", "[not, a, list]", "{not: a map}", "&anchor *alias !tag %", "@ at `tick`"]


@pytest.mark.parametrize("description", _TRICKY)
def test_a_skill_md_front_matter_is_yaml_that_reads_back_as_written(description):
    skill = skills.Skill(name="12-34", description=description, body="# Steps\n\n1. one\n")
    text = skills.render(skill, provenance="goal g1 -- twice --")
    front = text[4:].split("\n---\n", 1)[0]
    expected = markers.collapse(description, skills.DESCRIPTION_CAP)
    assert yaml.safe_load(front) == {"name": "12-34", "description": expected}
    assert skills.parse(text) == skills.Skill("12-34", expected, "# Steps\n\n1. one\n\n<!-- goal g1 - - twice - - -->\n")


def test_a_hand_written_skill_md_parses_in_the_shapes_people_write():
    text = "---\nname: my-skill\ndescription: >\n  Folded over\n  two lines\nlicense: 'MIT'\nmetadata:\n  owner: me\n---\nBody\n"
    assert skills.parse(text) == skills.Skill("my-skill", "Folded over two lines", "Body\n")
    for bad, why in [("no front matter\n", "no YAML front matter"), ("---\nname: x\n", "never closed"),
                     ("---\ndescription: d\n---\n", "no name"), ('---\nname: "x\n---\n', "unclosed double quote")]:
        with pytest.raises(skills.SkillFormatError, match=why):
            skills.parse(bad)


def test_the_skills_section_lists_names_and_descriptions_within_its_cap():
    listed = [(f"skill-{n:03d}", "does a thing " * 30) for n in range(200)]
    section = skills.prompt_section(listed)
    assert len(section.encode()) <= skills.LIST_CAP and "- skill-000: does a thing" in section
    assert skills.prompt_section([]) == ""


def test_the_briefing_adds_at_most_both_caps_to_a_prompt():
    text = None
    for n in range(500):
        text, _ = memory.append(text, "/ws", [("fact", f"fact {n} " + "y" * 300)], goal_id="g", date="2026-01-01")
    b = briefing.briefing(text, [(f"s{n}", "z" * 1000) for n in range(200)])
    assert len(("\n\n" + b).encode()) <= briefing.MAX_BYTES


def test_only_the_first_lead_prompt_carries_the_briefing_and_no_verifier_ever_does():
    settings = phases.GoalSettings(roster={"lead": "exec:l", "verifier": "exec:v"}, briefing="## Memory\nBRIEFING-MARK")
    t = phases.new_goal("g1", "obj", "/ws", settings, Drive.new().now, criteria=(Criterion("c1", "judged", "look"),))
    g = Drive(t)
    assert "BRIEFING-MARK" in g.state.in_flight.prompt and g.state.briefing is None
    g.lead("no marker yet")
    assert "BRIEFING-MARK" not in g.state.in_flight.prompt
    g.lead(ready())
    assert "BRIEFING-MARK" not in prompts.verifier_prompt(g.state)
    assert "BRIEFING-MARK" not in json.dumps([dict(r.payload) for r in g.records if r.type != "turn_started"])


# -- templates ----------------------------------------------------------------------------------------


def _template(text: str):
    return templates.parse_template("t", text, "test")


def test_every_built_in_template_parses_and_renders():
    for name, text in templates.BUILTIN.items():
        t = templates.parse_template(name, text, "built-in")
        r = t.render({k: "VALUE" for k in t.required})
        assert r.criteria and any("verify" in c for c in r.criteria), name
        assert "{" not in r.objective.replace("${", ""), name


def test_a_template_fills_placeholders_and_leaves_other_braces_alone():
    t = _template('objective = "fix {what} in ${HOME} {{literally}}"\nkeys = ["what", {name = "cmd", default = "pytest"}]\n'
                  'protect = ["{what}"]\n[[criteria]]\ntext = "ok"\ncheck = "{cmd} && awk \'{print $1}\' f"\n')
    r = t.render({"what": "a.py b.py"})
    assert r.objective == "fix a.py b.py in ${HOME} {literally}"
    assert r.criteria == ({"text": "ok", "verify": {"run": "pytest && awk '{print $1}' f"}},)
    assert r.protect == ("a.py", "b.py")


@pytest.mark.parametrize("given, message", [
    ({}, "needs --set what=VALUE"),
    ({"what": "x", "wat": "y"}, "has no key 'wat'"),
    ({"what": "two\nlines"}, "one line"),
])
def test_a_template_refuses_a_missing_unknown_or_multi_line_value_naming_it(given, message):
    t = _template('objective = "fix {what}"\nkeys = ["what"]\n[[criteria]]\ntext = "t"\n')
    with pytest.raises(UsageError, match=message):
        t.render(given)


@pytest.mark.parametrize("text, message", [
    ('objective = "x"\n', "at least one [[criteria]]"),
    ('objective = "x {y}"\n[[criteria]]\ntext = "t"\n', "placeholder {y} is not one of its keys"),
    ('objective = "x"\nkeys = ["y"]\n[[criteria]]\ntext = "t"\n', "key 'y' is used by no placeholder"),
    ('objective = "x"\ncriterion = 1\n[[criteria]]\ntext = "t"\n', "unknown field 'criterion'"),
    ('objective = "x"\n[budget]\ntokens = 1.5\n[[criteria]]\ntext = "t"\n', "budget.tokens must be a positive whole number"),
    ('objective = "x"\n[budget]\nseconds = inf\n[[criteria]]\ntext = "t"\n', "budget.seconds must be a positive number"),
    ('objective = "x"\n[[criteria]]\ntext = "t"\ncheck = "a\\nb"\n', "check must be one line"),
    ("objective = [", "not valid TOML"),
])
def test_a_broken_template_is_a_usage_error_saying_what_is_wrong(text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        _template(text).render({})
