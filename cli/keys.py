"""`crewctl keys`: CURVE keys for agent hosts (`crewctl worker`), here or on other machines."""

from __future__ import annotations

import os

import click

from ._common import echo_json, json_option, resolve_home

__all__ = ["keys_group"]


@click.group("keys")
def keys_group() -> None:
    """CURVE keys: who may attach to this supervisor as an agent host.

    \b
    Every `crewctl worker` needs an allowed key, on loopback too (the supervisor's own
    --local-workers need none). `crewctl run` makes the supervisor's pair on its first start.
    On the supervisor's machine:
      crewctl keys new box1 --allow        # box1.key + box1.key_secret, allowed here
      crewctl worker --name box1 --key box1.key_secret
    From another machine:
      crewctl keys new box2                # there: box2.key + box2.key_secret
      crewctl keys allow box2.key          # here, with box2.key copied over (no restart needed)
      crewctl worker --connect tcp://HOST:PORT --key box2.key_secret --server-key server.key
    """


@keys_group.command("init")
@click.option("--force", is_flag=True, help="Replace existing keys (every worker then needs the new server.key).")
def keys_init(force):
    """Make the supervisor's key pair in $CREWCTL_HOME/keys (`crewctl run` does it on first start)."""
    from ..transport import keys

    home = resolve_home()
    public, _secret = keys.init_server_keys(home, force=force)
    click.echo(f"supervisor keys written to {keys.keys_dir(home)}")
    click.echo(f"  give workers the public key: {public}")
    click.echo("  allow each worker with: crewctl keys allow WORKER.key")


@keys_group.command("new")
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write NAME.key (public) and NAME.key_secret (secret).")
@click.option("--force", is_flag=True, help="Replace an existing pair of that name.")
@click.option("--allow", "allow_here", is_flag=True,
              help="Also allow it on this machine's supervisor ($CREWCTL_HOME): for a worker beside it.")
def keys_new(name, out_dir, force, allow_here):
    """Make a worker's key pair: NAME.key (public, to allow) and NAME.key_secret (stays here)."""
    from ..transport import keys

    public, secret = keys.new_key_pair(name, os.path.abspath(out_dir), force=force)
    if allow_here:
        click.echo(f"public key: {public}  (allowed: {keys.allow(resolve_home(), public)})")
    else:
        click.echo(f"public key: {public}  (allow it on the supervisor: crewctl keys allow {os.path.basename(public)})")
    click.echo(f"secret key: {secret}  (keep it here: crewctl worker --key {secret})")


@keys_group.command("allow")
@click.argument("public_key_file", metavar="PUBLIC_KEY_FILE", type=click.Path(dir_okay=False, exists=True))
def keys_allow(public_key_file):
    """Authorise the worker whose public key file this is (a running supervisor honours it at once)."""
    from ..transport import keys

    target = keys.allow(resolve_home(), public_key_file)
    click.echo(f"allowed: {target}")


@keys_group.command("list")
@json_option
def keys_list(as_json):
    """The supervisor's key and the allowed worker keys."""
    from ..transport import keys

    home = resolve_home()
    rows = []
    directory = keys.allowed_dir(home)
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if entry.endswith(".key"):
            try:
                rows.append({"file": os.path.join(directory, entry), "public_key": keys.load_public(os.path.join(directory, entry)).decode()})
            except Exception as exc:  # a broken file is shown, not fatal
                rows.append({"file": os.path.join(directory, entry), "error": str(exc)})
    server = os.path.join(keys.keys_dir(home), "server.key") if keys.has_server_keys(home) else None
    if as_json:
        echo_json({"server": server, "allowed": rows})
        return
    click.echo(f"supervisor key: {server or 'none (run `crewctl keys init`)'}")
    click.echo(f"allowed workers: {len(rows)}")
    for row in rows:
        click.echo(f"  {row['file']}  {row.get('public_key') or row.get('error')}")
