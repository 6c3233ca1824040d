"""Protected paths: what checking them adds to a gate round, beside the same round without.

    .venv/bin/python bench/protect.py [--files 5000] [--tests 500] [--rounds 15]

A git repository of `--files` files (a `--tests` of them under tests/, so pinned by the
default patterns; the rest 1-4 KiB sources in 50 packages; one commit, 200 files modified
and 100 untracked after it) in a temp dir. Each gate round is the real one: a
`RoundActor` (actors/roles.py) is started for a `StartRound` and the clock runs from the
`tell` until its `RoundFinished` reaches a stand-in supervisor actor: the snapshot (git
listing, sparse-aware copies), then, when protected, the protected-path check (hashing the
baseline's files and every forbidden match in the snapshot, then `protect.compare`), then
one check command (`true`) on its own copy of the snapshot, in the sandbox (bubblewrap)
like every check. No verifier model: a verifier
process would add a fixed ~0.2 s start-up to both sides and make the difference look
smaller than it is.

Everything lives on tmpfs (/dev/shm) unless `--dir` says otherwise: on a disk shared with
other jobs, creating a file took anywhere from 0.08 to 3 ms from one second to the next,
which drowned the difference being measured; in memory the round itself is as fast as it
gets, so protection's share of it is as large as it gets.

The baseline is taken once, as at LOCK (`snapshot.observe` + `protect.build_baseline`),
and its time is printed too. Rounds alternate with and without protection, so both see
the same machine load; medians and p90 of `--rounds` each. Target: protection adds under
10% to the median round. Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pykka

from crewctl.actors.messages import Deliver
from crewctl.actors.roles import Interrupt, RoundActor, VerifierSettings
from crewctl.actors.snapshot import check_protected, observe, snapshot_workspace
from crewctl.config import Config
from crewctl.goal import protect
from crewctl.goal.effects import StartRound
from crewctl.sandbox import Sandbox

TARGET = 0.10


class Collector(pykka.ThreadingActor):
    """Stands in for the goal supervisor: hands each RoundFinished to whoever waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, tuple[threading.Event, list]] = {}
        self.lock = threading.Lock()

    def expect(self, round_no: int) -> tuple[threading.Event, list]:
        slot = (threading.Event(), [])
        with self.lock:
            self.waiting[round_no] = slot
        return slot

    def on_receive(self, message):
        if isinstance(message, Deliver):
            with self.lock:
                done, box = self.waiting.pop(getattr(message.event, "round", -1), (None, None))
            if done is not None:
                box.append(message.event)
                done.set()


def make_workspace(root: str, files: int, tests: int) -> str:
    rng = random.Random(7)
    ws = os.path.join(root, "ws")
    os.makedirs(ws)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=ws, check=True)
    with open(os.path.join(ws, "pyproject.toml"), "w") as f:
        f.write('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    paths = []
    for i in range(tests):
        paths.append(f"tests/unit/test_mod{i:04d}.py")
    for i in range(files - tests - 1):
        paths.append(f"src/pkg{i % 50:02d}/mod{i:04d}.py")
    for rel in paths:
        full = os.path.join(ws, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write("# generated\n" + "x = 1\n" * rng.randint(170, 700))
    subprocess.run([*git, "add", "-A"], cwd=ws, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=ws, check=True)
    sources = [p for p in paths if p.startswith("src/")]
    for rel in rng.sample(sources, 200):  # the lead's work: modified and new files
        with open(os.path.join(ws, rel), "a") as f:
            f.write("y = 2\n")
    for i in range(100):
        with open(os.path.join(ws, "src", f"new{i:03d}.py"), "w") as f:
            f.write("z = 3\n" * 300)
    return ws


def run_round(home: str, ws: str, collector: pykka.ActorRef, round_no: int, plan, sandbox: Sandbox) -> tuple[float, object]:
    done, box = collector.proxy().expect(round_no).get()
    actor = RoundActor.start(
        collector, home=home, goal_id="bench", workspace=ws, spec=None, config=Config(),
        settings=VerifierSettings(), timeout=None, interrupt=Interrupt(), sandbox=sandbox,
    )
    effect = StartRound(round=round_no, turn=round_no, prompt="", checks=(("c1", "true"),), model_needed=False,
                        timeout=60.0, protect=plan)
    started = time.perf_counter()
    actor.tell(effect)
    if not done.wait(120):
        raise SystemExit(f"round {round_no} did not finish")
    seconds = time.perf_counter() - started
    actor.stop()
    shutil.rmtree(os.path.join(home, "goals", "bench", "rounds", str(round_no)), ignore_errors=True)
    return seconds, box[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the workspace and the home live (default: tmpfs, see above)")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="crewctl-bench-protect-", dir=args.dir)
    collector = Collector.start()
    try:
        ws = make_workspace(root, args.files, args.tests)
        home = os.path.join(root, "home")
        os.makedirs(home)
        checks = ("python -m pytest -q",)
        p = protect.settings()
        sc = protect.scope(p, checks)
        started = time.perf_counter()
        observed = observe(ws, sc, exclude=(home,))
        entries, _ = protect.build_baseline(sc, observed, (), protect.FULL)
        baseline_s = time.perf_counter() - started
        plan = protect.RoundPlan(entries=entries, forbidden=sc.forbidden)
        sandbox = Sandbox.from_config(Config(), home)  # the check runs sandboxed, as in a real round

        times: dict[str, list[float]] = {"without": [], "with": []}
        round_no = 0
        for _ in range(2):  # warm-up: page cache, imports
            round_no += 1
            run_round(home, ws, collector, round_no, plan, sandbox)
        for i in range(args.rounds):
            order = ("without", "with") if i % 2 == 0 else ("with", "without")
            for kind in order:
                round_no += 1
                seconds, event = run_round(home, ws, collector, round_no, plan if kind == "with" else None, sandbox)
                if kind == "with" and event.protected != ():
                    raise SystemExit(f"a protected round found something: {event.protected!r} {event.refused!r}")
                if event.checks.get("c1", {}).get("exit") != 0:
                    raise SystemExit(f"the check failed: {event.checks!r}")
                times[kind].append(seconds)
        snap_files = event.snapshot["files"]
        # The check by itself, on one snapshot: hashing, matching, comparing.
        snap = snapshot_workspace(ws, os.path.join(root, "alone"), exclude=(home,))
        alone = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            assert check_protected(snap, plan, ws) == ()
            alone.append(time.perf_counter() - started)

        def p90(xs):
            return sorted(xs)[max(0, int(round(0.9 * len(xs))) - 1)]

        base = statistics.median(times["without"])
        prot = statistics.median(times["with"])
        added = (prot - base) / base
        print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; sandbox {sandbox.mode}; "
              f"{snap_files} files in the snapshot, {len(protect.pinned_files(entries))} pinned, "
              f"{args.rounds} rounds each, alternating")
        print()
        print(f"{'gate round (snapshot, check on its own copy)':<48} {'median ms':>10} {'p90 ms':>8}")
        print(f"{'  without protected-path checking':<48} {base * 1000:>10.1f} {p90(times['without']) * 1000:>8.1f}")
        print(f"{'  with protected-path checking':<48} {prot * 1000:>10.1f} {p90(times['with']) * 1000:>8.1f}")
        print()
        print(f"{'  the protected-path check alone':<48} {statistics.median(alone) * 1000:>10.1f} {p90(alone) * 1000:>8.1f}")
        print()
        print(f"protected-path checking adds {(prot - base) * 1000:.1f} ms ({added:+.1%}) to a round; "
              f"the baseline at lock took {baseline_s * 1000:.1f} ms once")
        met = added < TARGET
        print(f"target: under {TARGET:.0%}: {'met' if met else 'MISSED'}")
        return 0 if met else 1
    finally:
        collector.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
