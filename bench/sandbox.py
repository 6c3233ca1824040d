"""Benchmark: what the sandbox costs a turn.

    .venv/bin/python bench/sandbox.py [--turns 200]

The same `exec:` turn (the agent is `cat`: the prompt in, the reply out, so what is timed
is crewctl starting, feeding, collecting and ending a process) through
`brains.exec.run_process` 200 times unsandboxed and 200 times in a lead's sandbox as
`crewctl run` builds it (bwrap, masked home and config, PID namespace, the ledger entry,
the turn's scratch and TMPDIR), interleaved so that machine noise falls on both alike. A
second pair does the same with a Python agent (`python -c`), whose own start-up dwarfs
both. Reported: p50 and p99 of process start to reply, and what the sandbox adds at p50.
Target: under 15 ms at p50. Exit status 1 if it is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from crewctl.brains.base import TurnRequest  # noqa: E402
from crewctl.brains.exec import ExecBrain  # noqa: E402
from crewctl.config import Config  # noqa: E402
from crewctl.sandbox import Sandbox  # noqa: E402

TARGET_MS = 15.0
PROMPT = "Make the failing test pass.\n" + "context line\n" * 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crewctl-bench-sandbox-") as root:
        home = os.path.join(root, "home")
        ws = os.path.join(root, "ws")
        os.makedirs(home)
        os.makedirs(ws)
        box = Sandbox.from_config(Config(), home)
        env, policy = box.for_turn("lead", ws, kind="exec")
        agents = {
            "cat": ExecBrain("cat"),
            "python": ExecBrain(f"{shlex.quote(sys.executable)} -c 'import sys; sys.stdout.write(sys.stdin.read())'"),
        }
        print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {box.describe()}")
        print(f"{args.turns} turns each, interleaved; ms from process start to reply")
        print(f"{'agent':<8} {'mode':<12} {'p50':>8} {'p99':>8}")
        worst = 0.0
        for name, brain in agents.items():
            times: dict[str, list[float]] = {"unsandboxed": [], "sandboxed": []}
            for turn in range(args.turns):
                for mode, sandbox in (("unsandboxed", None), ("sandboxed", policy)):
                    request = TurnRequest(role="lead", goal_id="bench", session_id="s", turn=turn, prompt=PROMPT,
                                          workdir=ws, env=env, timeout=60, sandbox=sandbox)
                    started = time.perf_counter()
                    reply = brain.run(request)
                    times[mode].append((time.perf_counter() - started) * 1000)
                    assert reply.text == PROMPT
            for mode, values in times.items():
                print(f"{name:<8} {mode:<12} {percentile(values, 0.5):8.2f} {percentile(values, 0.99):8.2f}")
            added = statistics.median(times["sandboxed"]) - statistics.median(times["unsandboxed"])
            print(f"{name:<8} {'added':<12} {added:8.2f}")
            worst = max(worst, added)
        met = worst < TARGET_MS
        print(f"the sandbox adds at most {worst:.1f} ms a turn at p50 (target < {TARGET_MS:g} ms): {'met' if met else 'MISSED'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
