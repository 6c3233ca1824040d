"""`crewctl worker`: attach an agent host to a supervisor and serve worker turns."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click

from ..exceptions import NoSupervisor, UsageError
from ._common import resolve_home

__all__ = ["worker_command"]


@click.command("worker")
@click.option("--connect", "endpoint", metavar="ENDPOINT",
              help="The supervisor's agents endpoint, e.g. tcp://10.0.0.5:7700 (default: the running "
                   "supervisor of $CREWCTL_HOME, read from its daemon.json at every reconnect).")
@click.option("--name", metavar="NAME", help="This host's name (default: the machine's hostname). A restarted "
                                              "worker with the same name and key takes over from the old one.")
@click.option("--lanes", default="", metavar="A,B", help="Lanes this host serves, comma-separated. Steps with a lane go "
                                                         "only to hosts serving it; every host takes lane-less steps.")
@click.option("--worker", "spec", metavar="SPEC", help="The brain for worker turns here (default: the goal's worker brain).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True, help="Tasks run at once.")
@click.option("--key", "key_file", metavar="FILE",
              help="This host's secret key file (NAME.key_secret from `crewctl keys new`), allowed on the supervisor "
                   "with `crewctl keys allow NAME.key`. Required: the supervisor lets no host in without one.")
@click.option("--server-key", "server_key_file", metavar="FILE",
              help="The supervisor's public key file (its server.key; default: $CREWCTL_HOME/keys/server.key, "
                   "right for a supervisor on this machine).")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True), default=".", show_default=True,
              help="Where worker turns run on this machine.")
@click.option("--heartbeat", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
              help="Heartbeat interval (the supervisor's, if shorter, wins); 3 silent intervals mean it is gone.")
@click.option("--sandbox", type=click.Choice(["on", "off"]), default=None,
              help="Run worker turns in crewctl's sandbox (default: on, or [sandbox] mode in this machine's config).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def worker_command(endpoint, name, lanes, spec, concurrency, key_file, server_key_file, workdir, heartbeat, sandbox, quiet):
    """Attach an agent host that serves worker turns (foreground; Ctrl-C or SIGTERM leaves).

    \b
    Every host needs a CURVE key the supervisor allows, on loopback too. A host name is
    bound to the first key that uses it: another key saying hello with it is refused, and
    so is a reserved name (local-1, local-2, ... are the supervisor's in-process hosts).
    A refused worker exits 1 with the reason.

    \b
    On the supervisor's machine (same $CREWCTL_HOME):
      crewctl keys new box1 --allow               # box1.key, box1.key_secret, allowed here
      crewctl worker --name box1 --lanes gpu --key box1.key_secret
    From another machine:
      crewctl keys new box2                       # here: box2.key, box2.key_secret
      crewctl keys allow box2.key                 # on the supervisor's machine
      crewctl worker --connect tcp://10.0.0.5:7700 --name box2 \\
          --key box2.key_secret --server-key server.key --workdir ~/checkout
    """
    from ..config import load_config
    from ..transport import keys, protocol
    from ..transport.control import read_daemon_info
    from ..actors.agent_host import AgentHost, HostSettings, dial_endpoint

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from ..goal import validate

    if endpoint is not None:
        endpoint = validate.endpoint(endpoint, "--connect", bind=False)
    validate.number(heartbeat, "--heartbeat", high=validate.MAX_SECONDS)
    home = resolve_home()
    config = load_config()
    if spec:
        from .. import brains

        spec = brains.validate_spec(spec, config)
    lane_list = [x.strip() for x in lanes.split(",") if x.strip()]
    for lane in lane_list:
        if len(lane) > protocol.MAX_LANE:
            raise UsageError(f"lane {lane!r} is longer than {protocol.MAX_LANE} characters")
    if len(lane_list) > protocol.MAX_LANES:
        raise UsageError(f"at most {protocol.MAX_LANES} lanes")
    settings = HostSettings(endpoint="", name=name or "", lanes=tuple(lane_list), concurrency=concurrency, spec=spec,
                            workdir=os.path.abspath(workdir), heartbeat=heartbeat, config=config,
                            stop_when_refused=True)  # a refused key is the operator's to fix: say so and stop
    if not protocol.NAME_RE.match(settings.name) or len(settings.name) > protocol.MAX_NAME:
        raise UsageError(f"a host name is letters, digits and . _ @ : + - (at most {protocol.MAX_NAME}), not {settings.name!r}")
    from ..sandbox import Sandbox

    # This machine's sandbox: its own config, its home masked, and a ledger of its own, so
    # that it only ever ends what an earlier run of this worker left.
    settings.sandbox = Sandbox.from_config(config, home, sandbox, owner=f"worker-{settings.name}")
    settings.sandbox.ledger.reap()
    if not settings.sandbox.enabled:
        logging.getLogger("crewctl.worker").warning("worker turns run UNSANDBOXED (--sandbox off / [sandbox] mode = \"off\")")

    if endpoint:
        settings.endpoint = endpoint
    else:
        info = read_daemon_info(home)
        if info is None or not info.get("listen"):
            raise NoSupervisor(f"no --connect given and no supervisor is running for {home}; start one with `crewctl run`")
        last = [dial_endpoint(info["listen"])]

        def current() -> str:  # a restarted supervisor may listen elsewhere: read it again
            fresh = read_daemon_info(home)
            if fresh and fresh.get("listen"):
                last[0] = dial_endpoint(fresh["listen"])
            return last[0]

        settings.endpoint = current
        endpoint = last[0]

    if not key_file:
        raise UsageError(
            f"the supervisor at {endpoint} lets no host in without a CURVE key: make one with "
            "`crewctl keys new NAME` (add --allow on the supervisor's machine; elsewhere allow NAME.key there "
            "with `crewctl keys allow`), then pass --key NAME.key_secret"
        )
    settings.client_keys = keys.load_secret(key_file)
    if server_key_file is None:
        server_key_file = keys.server_key_path(home)
        if not os.path.isfile(server_key_file):
            raise UsageError(
                f"no supervisor key in {keys.keys_dir(home)}: pass --server-key FILE (the supervisor's server.key; "
                "a supervisor makes it on its first start)"
            )
    settings.server_key = keys.load_public(server_key_file)

    host = AgentHost(settings)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        host.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    click.echo(
        f"crewctl worker {settings.name} (pid {os.getpid()}): {', '.join(lane_list) or 'lane-less steps'}, "
        f"concurrency {concurrency}, connecting to {endpoint}",
        err=True,
    )
    host.start()
    while not host.wait(0.5):  # poll: signal handlers run between waits on the main thread
        pass
    _flush()
    if host.refused is not None:
        click.echo(f"crewctl: the supervisor refused this worker: {host.refused}", err=True)
    sys.exit(host.exit_code)


def _flush() -> None:
    """Let a last `bye` leave before the process exits (bounded: sockets linger 200 ms)."""
    import zmq

    t = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    t.start()
    t.join(1.0)
