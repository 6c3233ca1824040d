"""Agents for tests: small Python scripts run by the `exec:` brain, as users would write them."""

from __future__ import annotations

import os
import shlex
import sys
import textwrap

__all__ = ["PASS_EVERY_CRITERION", "READY_EVERY_TURN", "write_agent"]

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
    `state_dir` and `say(text)` are predefined. `state_dir` (next to the script) survives
    across turns and supervisor restarts, for agents that count their turns.
    """
    path = os.path.join(str(directory), f"{name}.py")
    state_dir = os.path.join(str(directory), f"{name}.state")
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
