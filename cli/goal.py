"""`crewctl goal ...`: create, inspect and steer goals.

Mutations go to the running supervisor over the control RPC (exit 4 when none answers);
`list`, `show` and `events` read the store directly and work with no supervisor.
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

from ..config import config_path
from ..exceptions import UsageError
from ..goal.vocab import Status
from ..goal import protect as protection
from ..goal.criteria import check_command_problem, parse_criteria, parse_criteria_json
from ..goal import validate
from ..goal.model import STATUSES, TERMINAL
from ..goal.reflect import outputs_settled
from ..transport import control
from . import mission
from ._common import db_option, echo_json, format_event, json_line, json_option, read_store, resolve_home

__all__ = ["goal_group"]


@click.group("goal")
def goal_group() -> None:
    """Create, inspect and steer goals.

    \b
    A goal moves scoping -> running -> verifying -> awaiting_signoff -> done; only the
    verifier's verdict (or crewctl's own check commands) moves it past verifying, and
    only you sign it off. `crewctl goal show ID` tells where a goal stands and why.
    """


class _CriteriaCommand(click.Command):
    """Remembers the order of --criterion and --check so each check pairs with its criterion."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta["option_order"] = [p.name for p in order if p.name in ("criterion", "check")]
        return super().parse_args(ctx, args)


def _pair_criteria(order: list[str], texts: tuple[str, ...], checks: tuple[str, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ti = ci = 0
    for name in order:
        if name == "criterion":
            rows.append({"text": texts[ti]})
            ti += 1
        else:
            command = checks[ci]
            ci += 1
            if not rows:
                raise UsageError("--check must follow the --criterion it checks")
            if "verify" in rows[-1]:
                raise UsageError(f"criterion {rows[-1]['text']!r} has two --check commands")
            if problem := check_command_problem(command):
                raise UsageError(f"--check {problem}")
            rows[-1]["verify"] = {"run": command}
    return rows


def _call(op: str, args: dict[str, Any]) -> Any:
    # The same checks the supervisor makes, before anything is encoded or sent: a value the
    # wire cannot carry (10**30, a lone surrogate) is a usage error here, not a traceback.
    return control.call(resolve_home(), op, validate.request(op, args))


def _print_goal(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(view)
        return
    click.echo(_render_goal(view))


def _render_goal(g: dict[str, Any]) -> str:
    lines = [f"goal {g['id']}  {g['status']}" + (f" (then {g['resume_to']})" if g.get("resume_to") else "")]
    lines.append(f"  objective: {g['objective']}")
    if g.get("reason"):
        lines.append(f"  reason:    {g['reason']}")
    lines += mission.now_lines(g)
    if g.get("unsandboxed"):
        lines.append("  sandbox:   off: this goal's agents ran unsandboxed (`crewctl run --sandbox off`); see `goal events`")
    lines.append(f"  gate:      round {g['round']}, held {g['attempt']} time(s) this run (cap {g['attempt_cap']})")
    if g["criteria"]:
        lines.append("  criteria:")
        for c in g["criteria"]:
            how = f"check: {c['verify']['run']}" if isinstance(c["verify"], dict) else "verifier judges"
            lines.append(f"    [{c['status']:<7}] {c['id']}: {c['text']}  ({how})")
            if c.get("evidence"):
                lines.append(f"              evidence: {' '.join(str(c['evidence']).split())[:300]}")
    else:
        lines.append("  criteria:  not locked yet")
    if g.get("questions"):
        q = g["questions"]
        lines.append(f"  questions (round {q['seq']}; answer with `crewctl goal answer {g['id']} --seq {q['seq']} QID=ANSWER`):")
        for item in q["questions"]:
            opts = f"  options: {', '.join(f'{i}={o}' for i, o in enumerate(item['options'], 1))}" if item["options"] else ""
            lines.append(f"    {item['id']}: {item['text']}{opts}")
    if g.get("steps"):
        lines.append(f"  steps (plan {g['plan']}):")
        for s in g["steps"]:
            if s["plan"] != g["plan"]:
                continue
            holder = f" on {s['holder']}" if s.get("holder") else ""
            approval = " (needs approval)" if s["needs_approval"] and not s["approved"] and s["status"] == "pending" else ""
            lines.append(f"    [{s['status']:<11}] {s['id']}: {s['title']}{holder}{approval}")
    lines += mission.spend_lines(g)[:1] + mission.uncounted_lines(g)  # the spend; then one line per budget, with its bar
    for name, line in zip(g.get("budget_left") or {}, _budget_lines(g.get("budget_left") or {})):
        fraction = (g["budget_left"][name]["percent"] or 0) / 100
        lines.append(f"  budget:    {line}  {mission.bar(fraction)}")
    if g.get("resume_at"):
        lines.append(f"  resumes:   by itself at {g['resume_at']} (the provider's usage limit resets then); "
                     f"`crewctl goal resume {g['id']}` goes on now")
    lines.extend(_render_protect(g.get("protect") or {}))
    if g.get("pending_steers"):
        lines.append(f"  steers:    {g['pending_steers']} waiting for the lead's next turn")
    if g.get("last_error"):
        lines.append(f"  last error: {g['last_error']}")
    lines += _render_outputs(g)
    return "\n".join(lines)


def _render_protect(p: dict[str, Any]) -> list[str]:
    if not p.get("enabled"):
        why = p.get("off") or "the goal predates protected paths"
        return [f"  protect:   off ({why})"]
    patterns = ", ".join(p.get("patterns") or []) or "none"
    if p.get("default_patterns"):
        patterns += " (defaults)"
    if p.get("baseline_at"):
        line = f"  protect:   {len(p.get('pinned_files') or [])} pinned file(s) ({patterns}), " \
               f"{len(p.get('forbidden') or [])} forbidden patterns; baseline {str(p['baseline_at'])[:19]}"
    elif p.get("baseline_error"):
        line = f"  protect:   NO BASELINE ({p['baseline_error']}); every round holds until `crewctl goal protect ID --rebaseline`"
    else:
        line = f"  protect:   {patterns}; baseline at lock"
    lines = [line]
    if p.get("unmatched"):
        lines.append(f"             warning: {', '.join(p['unmatched'])} matched no file")
    if p.get("findings"):
        shown = ", ".join(f"{f['path']} ({f['kind']})" for f in p["findings"][:5])
        more = f" and {len(p['findings']) - 5} more" if len(p["findings"]) > 5 else ""
        lines.append(f"             last round held: {shown}{more}")
    return lines


def _check_globs(option: str, globs: tuple[str, ...]) -> None:
    if len(globs) > protection.MAX_PATTERNS:
        raise UsageError(f"at most {protection.MAX_PATTERNS} {option} patterns")
    for glob in globs:
        if problem := protection.pattern_problem(glob):
            raise UsageError(f"{option} {glob!r} {problem}")


def _unmatched(workspace: str, globs: tuple[str, ...]) -> list[str]:
    """The patterns that match no file the snapshot would take from the workspace."""
    from ..actors.snapshot import SnapshotError, list_workspace

    try:
        listing = list_workspace(workspace)
    except (SnapshotError, OSError):
        return []  # the supervisor says so when it records the baseline
    return [g for g in globs if not any(protection.matches(g, f) for f in listing.files)]

_BUDGET_FORMAT = {"tokens": "{} tokens".format, "seconds": "{:.1f}s".format, "cost_usd": "${:.4f}".format}


def _budget_lines(report: dict[str, Any]) -> list[str]:
    """One line per budget that is set: spent of the limit, the percent, what is left."""
    out = []
    for name, r in report.items():
        show = _BUDGET_FORMAT[name]
        out.append(f"{show(r['spent'])} of {show(r['limit'])} spent ({r['percent']:g}%), {show(r['left'])} left")
    return out


def _render_outputs(g: dict[str, Any]) -> list[str]:
    """The PR envelope and the reflection, where a goal has them."""
    lines = []
    e = g.get("envelope")
    if e:
        if e["status"] == "ready":
            lines.append(f"  envelope:  branch {e['branch']} (commit {e['commit'][:12]}, {len(e['files'])} file(s) changed); "
                         f"crewctl goal pr {g['id']} [--push REMOTE] [--open]")
            lines.append(f"             body {e['pr']}, patch {e['patch']}")
        elif e["status"] == "pending":
            lines.append(f"  envelope:  being made from round {e['round']}'s snapshot")
        elif e["status"] == "failed":
            lines.append(f"  envelope:  could not be made: {e['error']}" + (f" (body {e['pr']})" if e.get("pr") else ""))
        else:
            lines.append(f"  envelope:  superseded (round {e['round']}'s passed gate no longer stands)")
    r = g.get("reflection")
    if r:
        what = {"due": "running", "ok": "recorded", "failed": "failed (see `crewctl goal events`)"}.get(r["status"], r["status"])
        lines.append(f"  reflection: {what}")
    return lines


@goal_group.command("new", cls=_CriteriaCommand)
@click.argument("objective", required=False)
@click.option("--criterion", "criterion", multiple=True, metavar="TEXT", help="An acceptance criterion (repeatable). Giving any locks them at once.")
@click.option("--check", "check", multiple=True, metavar="CMD", help="A check command for the --criterion before it: crewctl runs it; exit 0 passes.")
@click.option("--workspace", type=click.Path(file_okay=False), default=".", show_default=True, help="The directory the lead works in.")
@click.option("--lead", metavar="SPEC", help="The lead's brain (exec:CMD, scripted:FILE, openai:MODEL, claude, ...).")
@click.option("--worker", metavar="SPEC", help="The workers' brain (default: the lead's).")
@click.option("--verifier", metavar="SPEC", help="The verifier's brain (needed unless every criterion has a --check).")
@click.option("--token-budget", type=click.IntRange(min=1), help="Stop (budget_limited) after this many tokens.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Stop after this much agent time.")
@click.option("--cost-budget", type=click.FloatRange(min=0, min_open=True), metavar="USD", help="Stop after this cost, where brains report it.")
@click.option("--attempt-cap", type=click.IntRange(min=1), help="Held gates the lead may continue from this run (default 5); the next one blocks.")
@click.option("--max-auto-turns", type=click.IntRange(min=1), help="Turns in a row without a marker before blocking (default 20).")
@click.option("--check-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Timeout of each check command (default 600).")
@click.option("--step-attempts", type=click.IntRange(min=1), help="Tries of a plan step before it fails back to the lead (default 3).")
@click.option("--replan-budget", type=click.IntRange(min=0), help="Replans after failed steps before the goal blocks (default 2).")
@click.option("--protect", "protect", multiple=True, metavar="GLOB", help="Pin the files matching GLOB at lock (repeatable); replaces the default test patterns.")
@click.option("--no-protect", is_flag=True, help="No protected paths for this goal (recorded in its timeline).")
@click.option("--template", "template", metavar="NAME", help="Fill objective, criteria, protect patterns and budgets from a template (`crewctl templates list`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A value for the template's {KEY} (repeatable).")
@click.option("--reflector", metavar="SPEC", help="The brain of the one reflection turn after sign-off (default: the lead's).")
@json_option
def goal_new(objective, criterion, check, workspace, lead, worker, verifier, token_budget, time_budget, cost_budget, attempt_cap, max_auto_turns, check_timeout, step_attempts, replan_budget, protect, no_protect, template, sets, reflector, as_json):
    """Start a goal with OBJECTIVE.

    \b
    With criteria, the goal is locked at once and the lead starts working:
      crewctl goal new "fix the failing test" \\
          --criterion "the tests pass" --check "python -m pytest -q" \\
          --criterion "no new dependencies" \\
          --lead claude --verifier codex
    Without criteria, the lead scopes it first (questions, then a LOCK you can edit
    with `crewctl goal criteria`). From a template (flags beside it override it):
      crewctl goal new --template fix-failing-tests --set tests=tests/test_dates.py --lead claude

    \b
    Protected paths: at lock crewctl records the tests (tests/, test/, test_*.py,
    *_test.py, when a criterion has a check) and every file a check names; a round in
    which one changed, vanished, or a conftest.py / pytest.ini / sitecustomize.py / .pth
    appeared is held before any check runs. --protect GLOB pins your own set instead;
    `crewctl goal protect ID` changes it later.
    """
    ctx = click.get_current_context()
    rows = _pair_criteria(ctx.meta.get("option_order", []), criterion, check)
    if rows:
        parse_criteria(rows)  # bad input fails here, before anything is sent
    if protect and no_protect:
        raise UsageError("--protect and --no-protect contradict each other; give one")
    _check_globs("--protect", protect)
    if sets and not template:
        raise UsageError("--set fills a template's keys: give --template NAME")
    if not template and not (objective or "").strip():
        raise UsageError("give an OBJECTIVE (or --template NAME; see `crewctl templates list`)")
    workspace = os.path.abspath(workspace)
    if not os.path.isdir(workspace):
        raise UsageError(f"workspace {workspace} is not a directory")
    args = {
        "objective": objective,
        "criteria": rows,
        "workspace": workspace,
        "lead": lead,
        "worker": worker,
        "verifier": verifier,
        "token_budget": token_budget,
        "time_budget": time_budget,
        "cost_budget": cost_budget,
        "attempt_cap": attempt_cap,
        "max_auto_turns": max_auto_turns,
        "check_timeout": check_timeout,
        "step_attempts": step_attempts,
        "replan_budget": replan_budget,
        "protect": list(protect) or None,
        "no_protect": True if no_protect else None,
        # The supervisor reads the config; it checks that it is the file this CLI reads.
        "config_path": config_path(),
        "reflector": reflector,
    }
    if template:
        from .templates import apply_template

        args = apply_template(template, sets, args, protect_given=bool(protect) or no_protect)
        parse_criteria(args["criteria"])
        _check_globs("the template's protect", tuple(args.get("protect") or ()))
    view = _call("goal.new", {k: v for k, v in args.items() if v is not None})
    for glob in _unmatched(workspace, tuple(args.get("protect") or ())):
        click.echo(f"crewctl: warning: --protect {glob!r} matches no file in {workspace}; it pins nothing", err=True)
    if as_json:
        echo_json(view)
    else:
        click.echo(f"goal {view['id']} {view['status']}")
        click.echo(f"  follow it: crewctl goal events {view['id']} --follow")


@goal_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), metavar="STATUS", help="Only goals in this status (repeatable).")
@click.option("--attention", is_flag=True, help="Only goals that wait for you (awaiting_*, blocked, budget_limited, failed).")
@db_option
@json_option
def goal_list(statuses, attention, db, as_json):
    """List goals: id, status, age, spend, and what each waits for.

    Reads the store; no supervisor needed. `--status blocked --status failed` shows
    either; `--attention` only the goals that need you.
    """
    goals = mission.filter_goals(read_store(db).list_goals(), statuses, attention)
    if as_json:
        echo_json(goals)
        return
    if not goals:
        click.echo("no goals match" if statuses or attention else "no goals yet; start one with `crewctl goal new OBJECTIVE`")
        return
    for line in mission.list_table(goals):
        click.echo(line)


@goal_group.command("show")
@click.argument("goal_id", metavar="ID")
@db_option
@json_option
def goal_show(goal_id, db, as_json):
    """Show a goal: status, what runs now, criteria with evidence, steps, spend against budget."""
    store = read_store(db)
    _print_goal(store.view(store.resolve_id(validate.goal_id(goal_id))), as_json)


@goal_group.command("events")
@click.argument("goal_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the goal is done (and its reflection recorded), cancelled or failed.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only events after this seq.")
@db_option
@json_option
def goal_events(goal_id, follow, after, db, as_json):
    """Print a goal's timeline (with --json: a JSON array; with --follow --json: one JSON object per line)."""
    store = read_store(db)
    gid = store.resolve_id(validate.goal_id(goal_id))
    last = after
    if not follow:
        events = store.events(gid, after=last)
        if as_json:
            echo_json(events)
        else:
            for e in events:
                click.echo(format_event(e))
        return

    while True:
        for e in store.events(gid, after=last):
            click.echo(json_line(e) if as_json else format_event(e))
            last = e["seq"]
        state, _ = store.load_goal(gid)
        # A done goal's timeline ends with its reflection (and its PR envelope, if still being made).
        if state.status in TERMINAL and outputs_settled(state) and not store.events(gid, after=last, limit=1):
            return
        time.sleep(0.2)  # poll: the store is the source of truth, and it may be another process's


def _goal_op(name: str, op: str, doc: str):
    @goal_group.command(name, help=doc)
    @click.argument("goal_id", metavar="ID")
    @json_option
    def command(goal_id, as_json):
        _print_goal(_call(op, {"id": goal_id}), as_json)

    return command


_goal_op("pause", "goal.pause", "Pause a goal: the running turn is stopped and reruns on resume.")
_goal_op("resume", "goal.resume", "Resume a paused, blocked or budget-limited goal (a new run: caps start again).")
_goal_op("cancel", "goal.cancel", "Cancel a goal for good.")
_goal_op("signoff", "goal.signoff", "Sign off a goal whose gate passed (awaiting_signoff): it is done.")


@goal_group.command("answer")
@click.argument("goal_id", metavar="ID")
@click.argument("answers", nargs=-1, required=True, metavar="QID=ANSWER...")
@click.option("--seq", type=click.IntRange(min=1), help="The questions round these answers bind to (refused if stale).")
@json_option
def goal_answer(goal_id, answers, seq, as_json):
    """Answer the lead's questions: crewctl goal answer ID --seq 1 q1=yes q2="Python 3.12"."""
    parsed = {}
    for pair in answers:
        qid, sep, answer = pair.partition("=")
        if not sep or not qid.strip():
            raise UsageError(f"answers look like QID=ANSWER, not {pair!r}")
        parsed[qid.strip()] = answer
    args: dict[str, Any] = {"id": goal_id, "answers": parsed}
    if seq is not None:
        args["seq"] = seq
    _print_goal(_call("goal.answer", args), as_json)


@goal_group.command("criteria")
@click.argument("goal_id", metavar="ID")
@click.option("--file", "path", required=True, metavar="FILE", help="JSON list of {id?, text, verify?} (the shape `goal show --json` prints).")
@json_option
def goal_criteria(goal_id, path, as_json):
    """Replace a goal's criteria with the list in FILE.

    A criterion keeps its status only if its id, text and verify are unchanged; anything
    else is pending again, and a passed gate re-opens.
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read criteria file {path}: {reason}") from None
    criteria = parse_criteria_json(raw, path)
    rows = [{"id": c.id, "text": c.text, "verify": c.verify if isinstance(c.verify, str) else dict(c.verify)} for c in criteria]
    _print_goal(_call("goal.criteria", {"id": goal_id, "criteria": rows}), as_json)


@goal_group.command("steer")
@click.argument("goal_id", metavar="ID")
@click.argument("message")
@json_option
def goal_steer(goal_id, message, as_json):
    """Tell the lead something: delivered in its next turn, exactly once."""
    _print_goal(_call("goal.steer", {"id": goal_id, "message": message}), as_json)


@goal_group.command("approve")
@click.argument("goal_id", metavar="ID")
@click.argument("step", metavar="STEP")
@click.option("--reject", is_flag=True, help="Reject the step instead: it is skipped and the lead is told.")
@json_option
def goal_approve(goal_id, step, reject, as_json):
    """Approve (or --reject) a plan step that waits for approval."""
    _print_goal(_call("goal.approve", {"id": goal_id, "step": step, "reject": reject}), as_json)


@goal_group.command("budget")
@click.argument("goal_id", metavar="ID")
@click.option("--tokens", type=click.IntRange(min=1), help="New token budget (total for the goal).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), help="New time budget in seconds of agent work.")
@click.option("--cost", type=click.FloatRange(min=0, min_open=True), metavar="USD", help="New cost budget.")
@json_option
def goal_budget(goal_id, tokens, seconds, cost, as_json):
    """Raise a goal's budget; a budget-limited goal resumes when it is no longer spent."""
    args = {"id": goal_id, "tokens": tokens, "seconds": seconds, "cost": cost}
    view = _call("goal.budget", {k: v for k, v in args.items() if v is not None})
    _print_goal(view, as_json)
    # A raise that leaves a budget at or below what is spent changes the limit but not the
    # goal's fate: say so, with the figure to beat (on stderr: --json output stays JSON).
    for name, r in (view.get("budget_left") or {}).items():
        if r["left"] <= 0:
            flag = _BUDGET_FLAG[name]
            show = _BUDGET_FORMAT[name]
            state = "stays budget_limited" if view["status"] == Status.BUDGET_LIMITED else "stops at its next turn"
            click.echo(
                f"crewctl: the {name.replace('_usd', '')} budget of {show(r['limit'])} is still not more than what is "
                f"spent ({show(r['spent'])}): the goal {state}; give {flag} more than that",
                err=True,
            )


_BUDGET_FLAG = {"tokens": "--tokens", "seconds": "--seconds", "cost_usd": "--cost"}


@goal_group.command("protect")
@click.argument("goal_id", metavar="ID")
@click.option("--add", "add", multiple=True, metavar="GLOB", help="Pin the files matching GLOB too, as they are now (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="GLOB", help="Drop a pinned or forbidden pattern and the files only it covered (repeatable).")
@click.option("--rebaseline", is_flag=True, help="Accept the workspace as it is now: record every protected file again.")
@db_option
@json_option
def goal_protect(goal_id, add, remove, rebaseline, db, as_json):
    """Change a goal's protected paths; applies from the next gate round.

    \b
    The way to accept a legitimate change to a pinned file (a test that had to change):
      crewctl goal show ID                      # which paths, and the last held round
      crewctl goal protect ID --rebaseline      # the files as they are now are the baseline
      crewctl goal protect ID --add 'fixtures/**' --remove '**/test_*.py'
    Works in any live status; a round already running keeps the baseline it started with.
    """
    if not (add or remove or rebaseline):
        raise UsageError("give --add GLOB, --remove GLOB or --rebaseline (see the current ones with `crewctl goal show ID`)")
    _check_globs("--add", add)
    _check_globs("--remove", remove)
    if add:
        store = read_store(db)
        state, _ = store.load_goal(store.resolve_id(goal_id))
        unmatched = _unmatched(state.workspace, add)
        if unmatched:
            raise UsageError(f"--add {unmatched[0]!r} matches no file in {state.workspace}; nothing changed")
    view = _call("goal.protect", {"id": goal_id, "add": list(add), "remove": list(remove), "rebaseline": rebaseline})
    if as_json:
        echo_json(view)
        return
    click.echo(f"goal {view['id']}  {view['status']}")
    click.echo("\n".join(_render_protect(view.get("protect") or {})))
    click.echo("  applies from the next gate round")


@goal_group.command("send-back")
@click.argument("goal_id", metavar="ID")
@click.option("--notes", required=True, help="What to rework: the lead's rework turn sees these notes.")
@json_option
def goal_send_back(goal_id, notes, as_json):
    """Send a passed goal back for rework: criteria reset, the lead gets your notes."""
    _print_goal(_call("goal.send_back", {"id": goal_id, "notes": notes}), as_json)
