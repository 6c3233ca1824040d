"""Agents for tests: small Python scripts run by the `exec:` brain, as users would write them."""

from __future__ import annotations

import os
import shlex
import sys
import textwrap

__all__ = ["AGENT_STATE", "PASS_EVERY_CRITERION", "READY_EVERY_TURN", "agent_state_dir", "lock_is_held", "write_agent"]

# Agents run sandboxed, where nothing but their working directory is writable; the one
# place a test agent may keep state across turns is below this folder of the test's
# directory, which crewctl.testing.Supervisor makes writable through `[sandbox] writable`.
AGENT_STATE = "agent-state"


def lock_is_held(path: str) -> bool:
    """True while a live process holds an flock on `path` (an agent's `hold(name)`)."""
    import fcntl

    try:
        fd = os.open(str(path), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def agent_state_dir(directory: str, name: str) -> str:
    """Where the agent `name` written by write_agent(directory, ...) keeps its state."""
    return os.path.join(str(directory), AGENT_STATE, f"{name}.state")


# Agent bodies many tests need. A verifier that passes every criterion id in its prompt:
PASS_EVERY_CRITERION = r"""
import re
ids = re.findall(r"^- (c\d+):", prompt, re.M)
marker("VERIFY", {"results": [{"id": i, "verdict": "pass", "evidence": "checked"} for i in ids]})
"""
# A lead that claims READY on every turn:
READY_EVERY_TURN = """
say("done, I think")
marker("READY", {"summary": "all done"})
"""


def write_agent(directory: str, name: str, body: str) -> str:
    """Write a Python agent script and return the `exec:` spec that runs it.

    The script gets the exec contract: the prompt on stdin, CREWCTL_* in the environment;
    whatever it prints is the reply. `body` is dedented; `prompt`, `env`, `turn`, `role`,
    `state_dir` and `say(text)` are predefined. `state_dir` (agent_state_dir) survives
    across turns and supervisor restarts, for agents that count their turns; it is the
    only place outside its working directory a sandboxed agent can write.
    """
    path = os.path.join(str(directory), f"{name}.py")
    state_dir = agent_state_dir(directory, name)
    os.makedirs(state_dir, exist_ok=True)
    prelude = textwrap.dedent(
        f"""\
        import json, os, sys, time
        prompt = sys.stdin.read()
        env = dict(os.environ)
        turn = int(env.get("CREWCTL_TURN", "0"))
        role = env.get("CREWCTL_ROLE", "")
        state_dir = {state_dir!r}

        def say(text):
            sys.stdout.write(text if text.endswith("\\n") else text + "\\n")

        def marker(kind, payload):
            say("CREW_%s_BEGIN\\n%s\\nCREW_%s_END" % (kind, json.dumps(payload), kind))

        def hold(name):
            # An flock on state_dir/name for as long as this process lives: pids inside the
            # sandbox are the sandbox's own, so a test asks the lock (lock_is_held) instead.
            import fcntl
            fd = os.open(os.path.join(state_dir, name), os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd

        def count(name="turns"):
            path = os.path.join(state_dir, name)
            n = int(open(path).read()) + 1 if os.path.exists(path) else 1
            with open(path, "w") as f:
                f.write(str(n))
            return n
        """
    )
    with open(path, "w") as f:
        f.write(prelude + "\n" + textwrap.dedent(body))
    return f"exec:{shlex.quote(sys.executable)} {shlex.quote(path)}"
