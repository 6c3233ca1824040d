"""`crewctl doctor`: is this machine ready to run goals, and if not, what to fix.

Each check says what it found and, when it is not well, why and what to do. Exit 0 when
every check is well, 1 otherwise, so `crewctl doctor && crewctl run` is a safe start.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from typing import Any

import click

from ..exceptions import CrewError
from ..store import SCHEMA_VERSION, open_store
from ._common import echo_json, json_option, resolve_home

__all__ = ["doctor_command", "run_checks"]

VERSION_TIMEOUT = 5.0  # seconds for `CLI --version`; a CLI that hangs is reported, not waited on


def _sandbox(config) -> dict[str, Any]:
    try:
        from ..sandbox import probe  # built on main; absent in older trees
    except ImportError:
        return {"ok": False, "how": "none", "why": "this crewctl has no sandbox module (crewctl.sandbox)"}
    try:
        p = probe(config)
    except Exception as exc:  # a probe that breaks is a finding, not a crash
        return {"ok": False, "how": "unknown", "why": f"the sandbox probe failed: {exc}"}
    return {"ok": bool(p.ok), "how": p.how, "why": p.why}


def _version(path: str) -> str | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip()[:120] if text else None


def _brains(config) -> list[dict[str, Any]]:
    from ..brains.presets import PRESETS, find_executable, preset_settings

    out = []
    for name, preset in PRESETS.items():
        try:
            command = list(preset_settings(name, config).command or preset.command)
        except CrewError as exc:
            out.append({"name": name, "found": False, "version": None, "path": None, "why": exc.message})
            continue
        path = find_executable(command[0])
        out.append({"name": name, "found": path is not None, "version": _version(path) if path else None, "path": path})
    return out


def _mode(path: str) -> str | None:
    try:
        return oct(stat.S_IMODE(os.stat(path).st_mode))
    except OSError:
        return None


def _private(path: str, *, directory: bool) -> dict[str, Any]:
    """Exists, and neither group nor others may read or enter it."""
    mode = _mode(path)
    entry: dict[str, Any] = {"path": path, "mode": mode, "exists": mode is not None}
    if mode is None:
        entry["ok"] = True
        entry["why"] = "not created yet (`crewctl run` creates it " + ("0700)" if directory else "0600)")
        return entry
    loose = int(mode, 8) & 0o077
    entry["ok"] = not loose
    if loose:
        entry["why"] = f"readable by others (mode {mode}): chmod {'700' if directory else '600'} {path}"
    return entry


def _store(db_url: str | None, home: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": None, "kind": "postgres" if db_url and db_url.startswith("postgres") else "sqlite", "schema": None, "expected_schema": SCHEMA_VERSION}
    try:
        store = open_store(db_url, home, create=False)
    except CrewError as exc:
        return {**entry, "ok": False, "reachable": False, "why": exc.message}
    try:
        entry["url"] = store.describe
        if store.db is None:
            return {**entry, "ok": True, "reachable": True, "why": "no database yet (`crewctl run` creates it)"}
        entry["reachable"] = True
        version = store._schema_version()
        entry["schema"] = version
        if version is None:
            return {**entry, "ok": True, "why": "empty: `crewctl run` creates the tables"}
        if version > SCHEMA_VERSION:
            return {**entry, "ok": False, "why": f"written by a newer crewctl (schema v{version}; this one knows v{SCHEMA_VERSION}): upgrade crewctl"}
        return {**entry, "ok": True}
    except CrewError as exc:
        return {**entry, "ok": False, "reachable": False, "why": exc.message}
    except Exception as exc:  # a driver error: unreachable server, bad credentials
        return {**entry, "ok": False, "reachable": False, "why": " ".join(str(exc).split())[:300]}
    finally:
        store.close()


def _budgets(db_url: str | None, home: str) -> dict[str, Any]:
    """Goals still going whose token budget cannot trip: their brains reported no tokens."""
    from ..goal.vocab import TERMINAL

    try:
        store = open_store(db_url, home, create=False)
    except CrewError:
        return {"ok": True, "uncounted": []}  # the database check says what is wrong with it
    try:
        goals = store.list_goals() if store.db is not None and store._schema_version() is not None else []
    except Exception:  # an unreachable or older database: the database check reports it
        goals = []
    finally:
        store.close()
    uncounted = [
        {"goal": g["id"], "turns": g["usage"].get("uncounted_turns") or 0, "token_budget": g["budget"].get("tokens")}
        for g in goals
        if g["status"] not in TERMINAL and g["budget"].get("tokens") and g["usage"].get("uncounted_turns")
    ]
    entry: dict[str, Any] = {"ok": not uncounted, "uncounted": uncounted}
    if uncounted:
        entry["why"] = "; ".join(
            f"goal {u['goal']}: {u['turns']} turn{'s' * (u['turns'] != 1)} reported no token usage, so its "
            f"token budget ({u['token_budget']}) cannot trip: `crewctl goal budget {u['goal']} --seconds N` bounds it"
            for u in uncounted)
    return entry


def run_checks(home: str, db_url: str | None) -> dict[str, Any]:
    from ..config import config_path, load_config

    path = config_path()
    report: dict[str, Any] = {}
    try:
        config = load_config()
        report["config"] = {"path": path, "exists": os.path.exists(path), "ok": True}
    except CrewError as exc:
        config = None
        report["config"] = {"path": path, "exists": os.path.exists(path), "ok": False, "why": exc.message}
    if config is None:
        from ..config import Config

        config = Config()
    report["sandbox"] = _sandbox(config)
    report["brains"] = _brains(config)
    report["home"] = _private(home, directory=True)
    db_url = db_url or os.environ.get("CREWCTL_DB") or None
    report["database"] = _store(db_url, home)
    if not db_url:
        file = _private(os.path.join(home, "crew.db"), directory=False)
        report["database"]["mode"] = file["mode"]
        if not file["ok"]:
            report["database"].update(ok=False, why=file["why"])
    roster = [spec.partition(":")[0] for spec in config.roster.values()]
    missing = [b["name"] for b in report["brains"] if b["name"] in roster and not b["found"]]
    report["roster"] = {"ok": not missing, "missing": missing, **({"why": f"the roster names {', '.join(missing)}, not found on PATH"} if missing else {})}
    report["budgets"] = _budgets(db_url, home)
    report["ok"] = all(report[k]["ok"] for k in ("config", "sandbox", "home", "database", "roster", "budgets"))
    return report


def _line(ok: bool, what: str, detail: str) -> str:
    mark = click.style("ok ", fg="green") if ok else click.style("NO ", fg="red", bold=True)
    return f"{mark} {what:<10} {detail}"


@click.command("doctor")
@click.option("--db", metavar="URL", envvar="CREWCTL_DB", default=None, help="The database to check (default: SQLite in $CREWCTL_HOME; env CREWCTL_DB).")
@json_option
def doctor_command(db, as_json):
    """Check that this machine can run goals: sandbox, agent CLIs, config, home, database.

    \b
    Exit 0 when everything is well, 1 otherwise; each problem says how to fix it.
    --json: {"ok", "sandbox": {"ok", "how", "why"}, "config": {"path", ...},
    "brains": [{"name", "found", "version", "path"}], "home": {"path", "mode", ...},
    "database": {"url", "schema", "reachable", ...}, "roster": {...},
    "budgets": {"ok", "uncounted": [{"goal", "turns", "token_budget"}]}}
    """
    report = run_checks(resolve_home(), db)
    if as_json:
        echo_json(report)
    else:
        s = report["sandbox"]
        click.echo(_line(s["ok"], "sandbox", s["how"] + (f": {s['why']}" if s.get("why") else "")))
        c = report["config"]
        click.echo(_line(c["ok"], "config", c["path"] + ("" if c["exists"] else " (none: defaults apply)") + (f": {c['why']}" if c.get("why") else "")))
        h = report["home"]
        click.echo(_line(h["ok"], "home", f"{h['path']} mode {h['mode'] or '-'}" + (f": {h['why']}" if h.get("why") else "")))
        d = report["database"]
        schema = f"schema v{d['schema']}" if d.get("schema") is not None else "no schema yet"
        click.echo(_line(d["ok"], "database", f"{d.get('url') or '-'} ({d['kind']}, {schema})" + (f": {d['why']}" if d.get("why") else "")))
        found = [b for b in report["brains"] if b["found"]]
        click.echo(_line(report["roster"]["ok"], "agents", ", ".join(f"{b['name']} ({b['version'] or 'version unknown'})" for b in found) or "no agent CLI found on PATH (exec:, openai:, anthropic: brains still work)"))
        if report["roster"].get("why"):
            click.echo(f"    {report['roster']['why']}")
        b = report["budgets"]
        click.echo(_line(b["ok"], "budgets", "every token budget counts its goal's turns" if b["ok"] else b["why"]))
        click.echo("all well" if report["ok"] else "something needs fixing (see NO above)")
    sys.exit(0 if report["ok"] else 1)
