"""`crewctl templates list|show`, and what `goal new --template NAME --set KEY=VALUE` does."""

from __future__ import annotations

from typing import Any

import click

from ..exceptions import UsageError
from ..goal.templates import Template
from ..outputs.templates import all_templates, find, templates_dir
from ._common import echo_json, json_option

__all__ = ["apply_template", "templates_group"]


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, not {item!r}")
        if key in values:
            raise UsageError(f"--set {key} is given twice")
        values[key] = value
    return values


def apply_template(name: str, sets: tuple[str, ...], args: dict[str, Any], *, protect_given: bool) -> dict[str, Any]:
    """`goal new` arguments with the template filled in wherever no flag says otherwise:
    OBJECTIVE replaces its objective, any --criterion its whole criteria list, each budget
    flag its budget, --protect its protect patterns."""
    template = find(name)
    rendered = template.render(_parse_sets(sets))
    out = dict(args)
    if not out.get("objective"):
        out["objective"] = rendered.objective
    if not out.get("criteria"):
        out["criteria"] = [dict(c) for c in rendered.criteria]
    for flag, key in (("token_budget", "tokens"), ("time_budget", "seconds"), ("cost_budget", "cost_usd")):
        if out.get(flag) is None and key in rendered.budget:
            out[flag] = rendered.budget[key]
    if not protect_given and rendered.protect is not None:
        out["protect"] = list(rendered.protect)
    out["template"] = {"name": template.name, "values": dict(rendered.values)}
    return out


@click.group("templates")
def templates_group() -> None:
    """Goal templates: an objective, criteria with checks, protect patterns and a budget.

    \b
    Start a goal from one:
      crewctl goal new --template fix-failing-tests --set tests=tests/test_dates.py
    Flags given beside a template override it (OBJECTIVE, --criterion, budgets, --protect).
    Your own templates are TOML files in the templates directory (`crewctl templates list`
    prints where); `crewctl templates show NAME` prints one to copy from.
    """


@templates_group.command("list")
@json_option
def templates_list(as_json):
    """List the templates: built-in ones and yours."""
    rows = []
    for name, template, error in all_templates():
        rows.append({
            "name": name,
            "source": template.source if template else None,
            "description": template.description if template else None,
            "keys": [_key(k) for k in template.keys] if template else [],
            "error": error,
        })
    if as_json:
        echo_json({"directory": templates_dir(), "templates": rows})
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["error"]:
            click.echo(f"{r['name']:<{width}}  (broken) {r['error']}")
            continue
        needs = [k["name"] for k in r["keys"] if k["default"] is None]
        source = "" if r["source"] == "built-in" else f"  [{r['source']}]"
        click.echo(f"{r['name']:<{width}}  {r['description']}" + (f"  (--set {', '.join(needs)})" if needs else "") + source)
    click.echo(f"\nyour templates: {templates_dir()}/NAME.toml (a file named like a built-in is used instead of it)")


@templates_group.command("show")
@click.argument("name")
@json_option
def templates_show(name, as_json):
    """Print a template: its TOML (to copy and adapt), or with --json its fields."""
    template = find(name)
    if as_json:
        echo_json(_as_json(template))
        return
    where = "built-in" if template.source == "built-in" else f"from {template.source}"
    click.echo(f"# template {template.name} ({where}); to make your own, save a copy as {templates_dir()}/NAME.toml")
    click.echo(template.text.rstrip())


def _key(k) -> dict[str, Any]:
    return {"name": k.name, "default": k.default, "help": k.help}


def _as_json(t: Template) -> dict[str, Any]:
    return {
        "name": t.name,
        "source": t.source,
        "description": t.description,
        "objective": t.objective,
        "criteria": [{"text": text, "check": check} for text, check in t.criteria],
        "protect": list(t.protect) if t.protect is not None else None,
        "budget": dict(t.budget),
        "keys": [_key(k) for k in t.keys],
    }
