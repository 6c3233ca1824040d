"""`crewctl run` and `crewctl status`."""

from __future__ import annotations

import logging
import sys

import click

from ..transport import control
from ._common import db_option, echo_json, json_option, resolve_home

__all__ = ["run_command", "status_command"]


@click.command("run")
@click.option("--listen", default="tcp://127.0.0.1:*", show_default=True, metavar="ENDPOINT",
              help="Where agent hosts (`crewctl worker`) connect. Always CURVE, loopback too: only keys allowed "
                   "with `crewctl keys allow` get in (the server's keys are made in $CREWCTL_HOME/keys on first start).")
@click.option("--control", "control_endpoint", metavar="ENDPOINT", default=None,
              help="Where the CLI reaches this supervisor. Default: a unix socket in $CREWCTL_HOME/run (0700). "
                   "tcp://HOST:PORT listens on TCP instead (PORT 0: any); every request must carry the token "
                   "in daemon.json, checked before anything else is read.")
@click.option("--local-workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker hosts run inside this process (over inproc://, named local-1, local-2, ...).")
@db_option
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long running turns may finish before they are stopped (they rerun next start).")
@click.option("--turn-timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Give up on a brain turn after this long (default: the brain's own, 1 hour for exec).")
@click.option("--heartbeat", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
              help="Heartbeat interval with agent hosts; a host silent for 3 intervals is dead.")
@click.option("--curve", is_flag=True,
              help="Accepted for old scripts: the agents endpoint is always CURVE now.")
@click.option("--sandbox", type=click.Choice(["on", "off"]), default=None,
              help="Run every agent turn and check command in crewctl's sandbox (default: on, or [sandbox] mode "
                   "in the config). `off` is recorded in every goal's timeline as `unsandboxed`.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def run_command(listen, control_endpoint, local_workers, db, grace, turn_timeout, heartbeat, curve, sandbox, quiet):
    """Start the supervisor in the foreground; it resumes every live goal.

    \b
    One supervisor per $CREWCTL_HOME. Stop it with Ctrl-C or SIGTERM: running turns get
    --grace seconds, then everything is stored and the next `crewctl run` picks up.

    \b
    Only the operator holds power over it: $CREWCTL_HOME is made 0700 (the database and
    secrets in it 0600), the control socket lives in a 0700 directory no agent's sandbox
    shows, and a worker attaches only with a CURVE key you allowed:
      crewctl keys new box1 --allow          # on this machine: box1.key + box1.key_secret
      crewctl worker --name box1 --key box1.key_secret
    """
    from ..actors.daemon import DaemonOptions, run_daemon

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    code = run_daemon(
        DaemonOptions(
            home=resolve_home(),
            db_url=db,
            listen=listen,
            local_workers=local_workers,
            grace=grace,
            turn_timeout=turn_timeout,
            heartbeat=heartbeat,
            control=control_endpoint,
            sandbox=sandbox,
        )
    )
    sys.exit(code)


@click.command("status")
@json_option
def status_command(as_json):
    """The running supervisor: pid, endpoints, attached agent hosts, dropped frames."""
    status = control.call(resolve_home(), "status", {})
    if as_json:
        echo_json(status)
        return
    d = status["daemon"]
    click.echo(f"supervisor pid {d['pid']}  home {d['home']}")
    click.echo(f"  store:    {d['db']}")
    click.echo(f"  control:  {d['control']}")
    click.echo(f"  agents:   {d['listen']}")
    click.echo(f"  goals:    {d['goals']} live")
    if d.get("sandbox"):
        click.echo(f"  sandbox:  {d['sandbox']}")
    hosts = status.get("hosts") or []
    click.echo(f"  hosts:    {len(hosts)}")
    for h in hosts:
        lanes = ",".join(h.get("lanes") or []) or "lane-less steps"
        click.echo(f"    {h['name']:<20} {lanes:<20} last seen {h.get('last_seen')}  in flight {h.get('in_flight')}")
    dropped = status.get("dropped_frames") or {}
    click.echo("  dropped frames: " + (", ".join(f"{k} {v}" for k, v in dropped.items()) or "none"))
