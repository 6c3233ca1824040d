"""The `crewctl` command line. Thin: parse, call the control RPC or read the store, print.

Every deliberate error becomes one line on stderr and the exit code its class names
(see crewctl.exceptions); nothing else reaches a user as a traceback.
"""

from __future__ import annotations

import os
import sys

import click

from ..exceptions import CrewError
from ._common import home_option, no_color

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="crewctl")
@home_option
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Run long, verifiable goals with a crew of AI agents.

    \b
    Start a supervisor, then give it a goal:
      crewctl run &
      crewctl goal new "make the tests pass" --criterion "tests pass" --check "pytest -q"
      crewctl watch                  # every goal, live; or goal logs ID --follow

    Only an anonymous verifier (or crewctl's own check commands) can pass a goal's gate;
    the operator signs off. `crewctl demo` shows the whole loop in a minute.

    \b
    Exit codes: 0 ok, 1 error, 2 usage, 3 refused by the goal's rules (wrong status,
    stale answer), 4 no supervisor reachable, 5 `goal wait` timed out.
    """
    ctx.obj = {"home": home}
    if no_color():
        ctx.color = False  # every command below inherits it: click strips styles from all output


def _register() -> None:
    from .brains import brains_group
    from .config import config_group
    from .demo import demo_command
    from .goal import goal_group
    from .keys import keys_group
    from . import logs, report, wait  # noqa: F401  (they add `goal logs`, `goal report`, `goal wait`)
    from .memory import memory_group
    from .pr import pr_command
    from .run import run_command, status_command
    from .skills import skills_group
    from .templates import templates_group
    from .worker import worker_command

    from .completion import attach_goal_ids, completion_command
    from .doctor import doctor_command
    from .watch import watch_command

    goal_group.add_command(pr_command)
    for command in (
        brains_group, completion_command, config_group, demo_command, doctor_command, goal_group, keys_group, memory_group,
        run_command, skills_group, status_command, templates_group, watch_command, worker_command,
    ):
        cli.add_command(command)
    attach_goal_ids(cli)


def _one_line(text: str) -> str:
    # A message may quote the operator's input, undecodable bytes included: print them escaped.
    return " ".join(text.encode("utf-8", "backslashreplace").decode("utf-8").split())


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        # NO_COLOR: click then strips styles from everything it prints, terminal or not.
        color = False if no_color() else None
        code = cli.main(args=argv, prog_name="crewctl", standalone_mode=False, color=color)
    except click.exceptions.Abort:
        click.echo("crewctl: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:  # one line, as for every other bad input; exit 2
        where = exc.ctx.command_path if exc.ctx is not None else "crewctl"
        click.echo(f"Error: {_one_line(exc.format_message())} (see `{where} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except CrewError as exc:
        click.echo(f"crewctl: {_one_line(exc.message)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `crewctl goal events ID | head`
        sys.exit(0)
    except Exception as exc:  # a bug: still one line (CREWCTL_DEBUG=1 shows the traceback)
        if os.environ.get("CREWCTL_DEBUG"):
            raise
        click.echo(f"crewctl: internal error: {type(exc).__name__}: {_one_line(str(exc))[:500]} "
                   "(set CREWCTL_DEBUG=1 for the traceback, and please report it)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
