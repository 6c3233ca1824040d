"""`crewctl goal report`: the dossier of a goal, to read or to hand to a colleague.

Everything comes from the store (the timeline, the turn table, steers, steps) plus the
workspace compared with the goal's recorded starting point. One `dossier()` dict is the
JSON format and the source of the Markdown and HTML renderings, so the three agree. The
HTML is one self-contained file: inline CSS, no script, no link to anything.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from typing import Any

import click

from ..actors.starting_point import changed_files
from ..exceptions import UsageError
from ..store import Store
from ..goal.vocab import RecordType as R
from ._common import db_option, duration, human_time, read_store, resolve_home
from .goal import goal_group

__all__ = ["dossier", "goal_report", "render_html", "render_markdown"]

REPLY_EXCERPT = 4000  # characters of a verifier's reply shown in md/html (JSON has it whole)


def dossier(store: Store, home: str, gid: str) -> dict[str, Any]:
    view = store.view(gid)
    events = store.events(gid)
    turns = store.turns(gid, prompts=False)
    rounds: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    ready: dict[int, dict[str, Any]] = {}
    send_backs, reflection, hooks_failed = [], None, []
    current: int | None = None
    for e in events:
        p, t = e["payload"], e["type"]
        if t == "ready":
            ready[p.get("round")] = {"summary": p.get("summary"), "evidence": p.get("evidence") or [], "at": e["at"]}
        elif t == "round_started":
            n = p.get("round")
            current = n
            if n not in rounds:
                order.append(n)
            rounds[n] = {
                "round": n,
                "revision": p.get("revision"),
                "started_at": e["at"],
                "ready": ready.get(n),
                "protected": None,
                "results": [],
                "stale": False,
                "outcome": "open",
                "failed": [],
                "reason": None,
                "verifier_reply": None,
            }
        elif t == "protected_changed":
            n = p.get("round", current)
            if n in rounds:
                rounds[n]["protected"] = p
        elif t == "verify" and p.get("round") in rounds:
            r = rounds[p["round"]]
            r.update(results=p.get("results") or [], stale=bool(p.get("stale")), verified_at=e["at"])
        elif t in ("gate_held", "gate_passed") and p.get("round") in rounds:
            r = rounds[p["round"]]
            r.update(outcome="passed" if t == "gate_passed" else "held", failed=p.get("failed") or [], reason=p.get("reason"), ended_at=e["at"])
        elif t == "send_back":
            send_backs.append({"at": e["at"], "notes": p.get("notes"), "revision": p.get("revision")})
        elif t == "reflection":
            reflection = {"at": e["at"], **p}
        elif t == "hook_failed":
            hooks_failed.append({"at": e["at"], **p})
    for turn in turns:
        if turn["role"] == "verifier" and turn["round"] in rounds and turn["reply"] is not None:
            rounds[turn["round"]]["verifier_reply"] = turn["reply"]  # the round's last verifier reply
    state_steps = view.get("steps") or []
    return {
        "format": "crewctl-report/1",
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "goal": {k: view.get(k) for k in ("id", "objective", "status", "reason", "workspace", "created_at", "statement", "roster", "round", "attempt", "attempt_cap", "revision")},
        "criteria": view["criteria"],
        "rounds": [rounds[n] for n in order],
        "steps": state_steps,
        "steers": store.steers(gid),
        "send_backs": send_backs,
        "clarify": _clarify(events),
        "spend": {"usage": view["usage"], "budget": view["budget"], "budget_use": view.get("budget_use") or [], "turns": len(turns)},
        "changed_files": changed_files(home, gid, view["workspace"], view.get("start")),
        "hooks_failed": hooks_failed,
        "reflection": reflection,
        "protect": view.get("protect"),
        "envelope": view.get("envelope"),
    }


def _clarify(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rounds: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["type"] == R.CLARIFY:
            rounds[e["payload"].get("seq")] = {"seq": e["payload"].get("seq"), "questions": e["payload"].get("questions") or [], "answers": None}
        elif e["type"] == R.ANSWER and e["payload"].get("seq") in rounds:
            rounds[e["payload"]["seq"]]["answers"] = e["payload"].get("answers")
    return list(rounds.values())


# -- Markdown ---------------------------------------------------------------------------------


def _verify_text(verify: Any) -> str:
    return f"check `{verify['run']}`" if isinstance(verify, dict) else f"judged by the verifier: {verify}"


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def _spend_text(spend: dict[str, Any]) -> list[str]:
    u = spend["usage"]
    lines = [f"{u['input_tokens']} input / {u['output_tokens']} output tokens, {duration(u['seconds'])} of agent time"
             + (f", ${u['cost_usd']:.4f}" if u.get("cost_usd") else "") + f", {spend['turns']} turns"]
    for use in spend["budget_use"]:
        lines.append(f"{use['budget']}: {use['used']} of {use['limit']} ({use['percent']}%)")
    return lines


def render_markdown(d: dict[str, Any]) -> str:
    g = d["goal"]
    out = [f"# Goal {g['id']}: {_one_line(g['objective'])[:200]}", ""]
    out += [f"- **Status:** {g['status']}" + (f" ({_one_line(g['reason'])})" if g.get("reason") else ""),
            f"- **Workspace:** `{g['workspace']}`",
            f"- **Created:** {human_time(g['created_at'])}",
            f"- **Gate rounds:** {len(d['rounds'])}; held this run {g['attempt']} of cap {g['attempt_cap']}",
            f"- **Report generated:** {human_time(d['generated_at'])}", ""]
    out += ["## Objective", "", g["objective"].strip(), ""]
    if g.get("statement"):
        out += ["Scope statement: " + g["statement"], ""]
    out += ["## Criteria (final verdicts)", ""]
    if not d["criteria"]:
        out += ["Not locked yet.", ""]
    for c in d["criteria"]:
        out.append(f"- **{c['id']}** [{c['status'].upper()}] {c['text']}  ")
        out.append(f"  {_verify_text(c['verify'])}  ")
        out.append(f"  evidence: {_one_line(c['evidence']) or '(none yet)'}")
    out.append("")
    out += ["## Gate rounds", ""]
    if not d["rounds"]:
        out += ["No round yet.", ""]
    for r in d["rounds"]:
        head = f"### Round {r['round']}: {r['outcome'].upper()}"
        if r.get("stale"):
            head += " (stale verdict: the criteria changed during verification)"
        out += [head, ""]
        out.append(f"- started {human_time(r['started_at'])} at revision {r['revision']}")
        if r.get("ready"):
            out.append(f"- the lead's READY summary (a claim): {_one_line(r['ready']['summary'])}")
            for ev_ in r["ready"].get("evidence") or []:
                out.append(f"  - cited: {_one_line(ev_)}")
        if r.get("protected"):
            p = r["protected"]
            out.append(f"- **protected paths changed:** {', '.join(p.get('paths') or []) or _one_line(json.dumps(p))}")
        if r.get("failed"):
            out.append(f"- failed: {', '.join(r['failed'])}" + (f" ({r['reason']})" if r.get("reason") else ""))
        elif r.get("reason"):
            out.append(f"- {r['reason']}")
        for res in r["results"]:
            out.append(f"- {res['id']} **{res['verdict'].upper()}** ({res.get('source', '?')}): {_one_line(res.get('evidence'))}")
        if r.get("verifier_reply"):
            reply = r["verifier_reply"]
            cut = len(reply) > REPLY_EXCERPT
            out += ["", "Verifier's reply" + (f" (first {REPLY_EXCERPT} characters; the JSON report has it whole)" if cut else "") + ":", "",
                    "~~~~text", reply[:REPLY_EXCERPT].rstrip(), "~~~~"]
        out.append("")
    steps = d["steps"]
    out += ["## Plan steps", ""]
    out += [f"- {s['id']} [{s['status']}] {s['title']}" + (f" (on {s['holder']})" if s.get("holder") else "") + f"  (plan {s['plan']})" for s in steps] or ["No plan."]
    out.append("")
    out += ["## Steers", ""]
    out += [f"- #{s['id']} {human_time(s['created_at'])}: {_one_line(s['text'])}" + (f" (delivered in turn {s['delivered_turn']})" if s.get("delivered_turn") else " (not delivered yet)") for s in d["steers"]] or ["None."]
    out.append("")
    out += ["## Send-backs", ""]
    out += [f"- {human_time(s['at'])}: {_one_line(s['notes'])}" for s in d["send_backs"]] or ["None."]
    out.append("")
    if d["clarify"]:
        out += ["## Questions and answers", ""]
        for c in d["clarify"]:
            for q in c["questions"]:
                answer = (c["answers"] or {}).get(q["id"]) if c["answers"] is not None else None
                out.append(f"- round {c['seq']} {q['id']}: {_one_line(q['text'])} -> {answer if answer is not None else '(unanswered)'}")
        out.append("")
    out += ["## Spend", ""] + [f"- {line}" for line in _spend_text(d["spend"])] + [""]
    cf = d["changed_files"]
    out += ["## Changed files", ""]
    out.append(_against(cf))
    out.append("")
    out += [f"- {f['change']}: `{f['path']}`" + (" (already changed at the start)" if f.get("dirty_at_start") else "") for f in cf["files"]] or ["No file changed."]
    if cf.get("note"):
        out += ["", cf["note"]]
    out.append("")
    if d.get("envelope"):
        out += ["## Pull request envelope", ""] + [f"- {k}: {_one_line(v)}" for k, v in d["envelope"].items() if v not in (None, "", [])] + [""]
    if d.get("reflection"):
        out += ["## Reflection", ""] + _reflection_lines(d["reflection"]) + [""]
    if d["hooks_failed"]:
        out += ["## Failed hooks", ""] + [f"- {human_time(h['at'])} {h.get('hook')}: {_one_line(h.get('error'))}" for h in d["hooks_failed"]] + [""]
    return "\n".join(out).rstrip() + "\n"


def _against(cf: dict[str, Any]) -> str:
    a = cf.get("against")
    if not a:
        return "No starting point was recorded."
    if a.get("kind") == "git":
        return f"Against commit `{(a.get('commit') or 'none (no commits yet)')[:12]}`, the workspace's HEAD when the goal was created ({human_time(a.get('at'))})."
    return f"Against the workspace's files when the goal was created ({human_time(a.get('at'))})."


def _reflection_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    if r.get("summary"):
        lines.append(str(r["summary"]))
    for lesson in r.get("lessons") or []:
        lines.append(f"- lesson: {_one_line(lesson)}")
    for m in r.get("memory") or []:
        lines.append(f"- memory ({m.get('kind') if isinstance(m, dict) else ''}): {_one_line(m.get('text') if isinstance(m, dict) else m)}")
    if r.get("error"):
        lines.append(f"(reflection failed: {_one_line(r['error'])})")
    if not lines:
        lines.append(_one_line(json.dumps({k: v for k, v in r.items() if k != "at"}, default=str)))
    return lines


# -- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2430;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;border-bottom:1px solid #d8dee6;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f5f7fa;border:1px solid #e3e8ee;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e3e8ee;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f7fa;font-weight:600}.meta td:first-child{width:10rem;color:#5a6472}
.pass{color:#116329;font-weight:600}.fail{color:#a40e26;font-weight:600}.pending{color:#7d5b00;font-weight:600}
.passed{border-left:4px solid #2da44e}.held{border-left:4px solid #cf222e}.open{border-left:4px solid #bf8700}
section.round{padding:.1rem .8rem;margin:.8rem 0;background:#fbfcfd}.note{color:#5a6472}
@media (prefers-color-scheme: dark){body{background:#0d1117;color:#d7dde5}pre,th,section.round{background:#161b22;border-color:#30363d}td{border-color:#30363d}}
"""


def _e(text: Any) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def render_html(d: dict[str, Any]) -> str:
    g = d["goal"]
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>crewctl goal {_e(g['id'])}</title><style>{_CSS}</style></head><body>",
        f'<h1>Goal <code>{_e(g["id"])}</code></h1>',
        '<table class="meta">',
        f'<tr><td>Status</td><td class="status">{_e(g["status"])}{(" — " + _e(g["reason"])) if g.get("reason") else ""}</td></tr>',
        f"<tr><td>Workspace</td><td><code>{_e(g['workspace'])}</code></td></tr>",
        f"<tr><td>Created</td><td>{_e(human_time(g['created_at']))}</td></tr>",
        f"<tr><td>Gate rounds</td><td>{len(d['rounds'])} (held {_e(g['attempt'])} of cap {_e(g['attempt_cap'])} this run)</td></tr>",
        f"<tr><td>Generated</td><td>{_e(human_time(d['generated_at']))}</td></tr>",
        "</table>",
        '<h2>Objective</h2>',
        f'<pre class="objective">{_e(g["objective"].strip())}</pre>',
    ]
    if g.get("statement"):
        h.append(f"<p>Scope statement: {_e(g['statement'])}</p>")
    h.append("<h2>Criteria (final verdicts)</h2>")
    if d["criteria"]:
        h.append('<table class="criteria"><tr><th>id</th><th>verdict</th><th>criterion</th><th>evidence</th></tr>')
        for c in d["criteria"]:
            h.append(
                f'<tr class="criterion" data-id="{_e(c["id"])}" data-status="{_e(c["status"])}">'
                f'<td><code>{_e(c["id"])}</code></td><td class="{_e(c["status"])}">{_e(c["status"].upper())}</td>'
                f'<td>{_e(c["text"])}<br><span class="note">{_e(_verify_text(c["verify"]))}</span></td>'
                f'<td class="evidence">{_e(c["evidence"] or "(none yet)")}</td></tr>'
            )
        h.append("</table>")
    else:
        h.append("<p>Not locked yet.</p>")
    h.append("<h2>Gate rounds</h2>")
    if not d["rounds"]:
        h.append("<p>No round yet.</p>")
    for r in d["rounds"]:
        h.append(f'<section class="round {_e(r["outcome"])}" data-round="{_e(r["round"])}" data-outcome="{_e(r["outcome"])}">')
        h.append(f"<h3>Round {_e(r['round'])}: {_e(r['outcome'].upper())}{' (stale verdict)' if r.get('stale') else ''}</h3>")
        h.append(f'<p class="note">started {_e(human_time(r["started_at"]))} at revision {_e(r["revision"])}'
                 + (f"; failed: {_e(', '.join(r['failed']))}" if r.get("failed") else "") + (f" ({_e(r['reason'])})" if r.get("reason") else "") + "</p>")
        if r.get("ready"):
            h.append(f"<p>The lead's READY summary (a claim): {_e(r['ready']['summary'])}</p>")
        if r.get("protected"):
            p = r["protected"]
            h.append(f'<p class="protected fail">Protected paths changed: {_e(", ".join(p.get("paths") or []) or json.dumps(p))}</p>')
        if r["results"]:
            h.append('<table class="verdicts"><tr><th>criterion</th><th>verdict</th><th>by</th><th>evidence</th></tr>')
            for res in r["results"]:
                h.append(
                    f'<tr class="verdict" data-id="{_e(res["id"])}" data-verdict="{_e(res["verdict"])}"><td><code>{_e(res["id"])}</code></td>'
                    f'<td class="{_e(res["verdict"])}">{_e(res["verdict"].upper())}</td><td>{_e(res.get("source", ""))}</td>'
                    f'<td class="evidence">{_e(res.get("evidence"))}</td></tr>'
                )
            h.append("</table>")
        if r.get("verifier_reply"):
            reply = r["verifier_reply"]
            h.append(f"<details><summary>The verifier's reply{' (first %d characters)' % REPLY_EXCERPT if len(reply) > REPLY_EXCERPT else ''}</summary>"
                     f'<pre class="reply">{_e(reply[:REPLY_EXCERPT])}</pre></details>')
        h.append("</section>")
    h.append("<h2>Plan steps</h2>")
    if d["steps"]:
        h.append('<table class="steps"><tr><th>step</th><th>status</th><th>title</th><th>plan</th></tr>')
        for s in d["steps"]:
            h.append(f'<tr class="step" data-id="{_e(s["id"])}"><td><code>{_e(s["id"])}</code></td><td>{_e(s["status"])}</td><td>{_e(s["title"])}</td><td>{_e(s["plan"])}</td></tr>')
        h.append("</table>")
    else:
        h.append("<p>No plan.</p>")
    h.append("<h2>Steers</h2>")
    h.append("<ul>" + "".join(
        f'<li class="steer">#{_e(s["id"])} {_e(human_time(s["created_at"]))}: {_e(s["text"])}'
        + (f" (delivered in turn {_e(s['delivered_turn'])})" if s.get("delivered_turn") else " (not delivered yet)") + "</li>"
        for s in d["steers"]) + "</ul>" if d["steers"] else "<p>None.</p>")
    h.append("<h2>Send-backs</h2>")
    h.append("<ul>" + "".join(f'<li class="send-back">{_e(human_time(s["at"]))}: {_e(s["notes"])}</li>' for s in d["send_backs"]) + "</ul>" if d["send_backs"] else "<p>None.</p>")
    h.append("<h2>Spend</h2><ul>" + "".join(f"<li>{_e(line)}</li>" for line in _spend_text(d["spend"])) + "</ul>")
    cf = d["changed_files"]
    h.append(f"<h2>Changed files</h2><p class='note'>{_e(_against(cf))}</p>")
    if cf["files"]:
        h.append('<table class="changed"><tr><th>change</th><th>path</th></tr>' + "".join(
            f'<tr class="changed-file" data-change="{_e(f["change"])}"><td>{_e(f["change"])}</td><td><code>{_e(f["path"])}</code>'
            + (" <span class='note'>(already changed at the start)</span>" if f.get("dirty_at_start") else "") + "</td></tr>" for f in cf["files"]) + "</table>")
    else:
        h.append("<p>No file changed.</p>")
    if cf.get("note"):
        h.append(f"<p class='note'>{_e(cf['note'])}</p>")
    if d.get("envelope"):
        h.append("<h2>Pull request envelope</h2><ul>" + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in d["envelope"].items() if v not in (None, "", [])) + "</ul>")
    if d.get("reflection"):
        h.append("<h2>Reflection</h2>" + "".join(f"<p>{_e(line)}</p>" for line in _reflection_lines(d["reflection"])))
    if d["hooks_failed"]:
        h.append("<h2>Failed hooks</h2><ul>" + "".join(f"<li>{_e(human_time(x['at']))} {_e(x.get('hook'))}: {_e(x.get('error'))}</li>" for x in d["hooks_failed"]) + "</ul>")
    h.append("</body></html>")
    return "\n".join(h) + "\n"


@goal_group.command("report")
@click.argument("goal_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True, help="Markdown, one self-contained HTML file, or JSON.")
@click.option("-o", "--output", "output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@db_option
def goal_report(goal_id, fmt, output, db):
    """The dossier of a goal: to read, keep, or hand to a colleague.

    \b
    Objective; each criterion with its final verdict and evidence; every gate round (the
    lead's claim, check-command output, the verifier's verdicts and reply, protected-path
    findings); plan steps; steers; send-backs; spend; the files changed since the goal
    started; the reflection, once there is one. Reads the store; no supervisor needed.
      crewctl goal report ID --format html -o report.html
    """
    store = read_store(db)
    gid = store.resolve_id(goal_id)
    d = dossier(store, resolve_home(), gid)
    text = json.dumps(d, indent=2, default=str) + "\n" if fmt == "json" else render_html(d) if fmt == "html" else render_markdown(d)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        tmp = output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output}", err=True)
