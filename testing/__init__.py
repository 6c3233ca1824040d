"""Test helpers shipped as a real module (like structlog.testing), not copied across tests.

    with Supervisor(tmp_path) as sup:                 # a real `crewctl run` process
        goal = sup.new_goal("fix it", "--criterion", "ok", "--check", "true", lead=agent)
        sup.wait_for_status(goal, "awaiting_signoff")
        sup.cli("goal", "signoff", goal)

Everything runs the installed `crewctl` binary as a subprocess, and waits on conditions
with deadlines, never on fixed sleeps.
"""

from .agents import AGENT_STATE, PASS_EVERY_CRITERION, READY_EVERY_TURN, agent_state_dir, lock_is_held, write_agent
from .process import CliResult, Supervisor, crewctl_binary, run_cli, wait_until

__all__ = [
    "AGENT_STATE",
    "CliResult",
    "PASS_EVERY_CRITERION",
    "READY_EVERY_TURN",
    "Supervisor",
    "agent_state_dir",
    "lock_is_held",
    "crewctl_binary",
    "run_cli",
    "wait_until",
    "write_agent",
]
