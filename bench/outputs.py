"""Durable outputs: what memory and skills add to a lead's first prompt, and what the PR
envelope costs.

    .venv/bin/python bench/outputs.py [--entries 500] [--skills 200] [--files 5000] [--runs 5]

1. Prompt bytes. A home with `--entries` memory entries for one workspace (appended the
   way reflections append them, 40-160 characters each, some with backtick runs) and
   `--skills` skills (SKILL.md files as reflections write them, descriptions of 60-900
   characters). The first lead prompt of a goal with 5 realistic criteria, built by the
   phase machine with the briefing the daemon reads from that home, beside the same
   prompt from an empty home. Target: it adds at most 2 KiB + 1 KiB (memory's and
   skills' caps). Also the time to read the home and build the briefing (best of runs).
2. The envelope. A git repository with `--files` files (a source tree of small Python
   files), committed; then a lead's change: 10 files modified, 5 added, 2 deleted. Its
   snapshot is taken as a gate round takes it. Timed (best of runs, each on a fresh
   branch name): `prepare` (every round: the tree of the snapshot in a temporary index),
   `finish` (the passed round: commit, ref, patch), both together, beside `git diff
   --stat` of the same change in the workspace (what a person runs to look at it).

Exit status 1 if the prompt target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from crewctl.actors.snapshot import snapshot_workspace
from crewctl.goal import phases
from crewctl.goal.briefing import MAX_BYTES
from crewctl.goal.model import Budget, Criterion
from crewctl.goal.skills import Skill
from crewctl.outputs import briefing_for
from crewctl.outputs import envelope as envelope_io
from crewctl.outputs import memory, skills

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CRITERIA = (
    Criterion("c1", "the previously failing tests pass: tests/test_dates.py tests/test_zones.py",
              {"run": "python -m pytest -q tests/test_dates.py tests/test_zones.py"}),
    Criterion("c2", "the whole test suite passes", {"run": "python -m pytest -q"}),
    Criterion("c3", "no new dependencies in pyproject.toml", {"run": "git diff --quiet HEAD -- pyproject.toml"}),
    Criterion("c4", "the fix is in the code under test and addresses the root cause", "read the diff"),
    Criterion("c5", "the changelog says what was fixed, for users", "read CHANGELOG.md"),
)
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}


def first_prompt(briefing: str) -> str:
    settings = phases.GoalSettings(roster={"lead": "exec:lead", "verifier": "exec:v"}, budget=Budget(tokens=2_000_000),
                                   briefing=briefing)
    t = phases.new_goal("g1", "Fix the date parsing: dates before 1970 crash parse().", "/ws", settings, T0, criteria=CRITERIA)
    return t.state.in_flight.prompt


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def prompt_bench(root: str, entries: int, n_skills: int, runs: int) -> bool:
    rng = random.Random(7)
    home, empty, ws = (os.path.join(root, d) for d in ("home", "empty", "ws"))
    os.makedirs(ws)
    os.makedirs(empty)
    words = "parser test fixture date zone cache build wheel lint mypy flag option module import config retry".split()
    for batch in range(0, entries, 10):  # a reflection adds at most 10 entries
        new = []
        for n in range(batch, min(batch + 10, entries)):
            text = f"#{n}: " + " ".join(rng.choice(words) for _ in range(rng.randint(6, 25)))
            if n % 17 == 0:
                text += " (run `pytest -q -k slow` last)"
            new.append((rng.choice(["fact", "preference", "strategy"]), text))
        memory.append(home, ws, new, goal_id=f"g{batch:04d}", at="2026-11-21T09:00:00")
    for n in range(n_skills):
        description = " ".join(rng.choice(words) for _ in range(rng.randint(8, 120)))
        skills.save(home, Skill(f"skill-{n:03d}", description, "# Steps\n\n1. do it\n" * 20))
    assert len(memory.read(home, ws).splitlines()) >= entries

    none = first_prompt(briefing_for(empty, ws))
    full_briefing = briefing_for(home, ws)
    full = first_prompt(full_briefing)
    took = best(lambda: briefing_for(home, ws), runs)
    added = len(full.encode()) - len(none.encode())
    shown = sum(1 for line in full_briefing.splitlines() if line.startswith("- ["))
    listed = sum(1 for line in full_briefing.splitlines() if line.startswith("- skill-"))
    print(f"first lead prompt, 5 criteria:          {len(none.encode()):>6} bytes with nothing on disk")
    print(f"  with {entries} memory entries, {n_skills} skills: {len(full.encode()):>6} bytes (+{added}: "
          f"{shown} newest entries, {listed} skills listed)")
    print(f"  target: at most +{MAX_BYTES} (2 KiB memory + 1 KiB skills): {'met' if added <= MAX_BYTES else 'MISSED'}")
    print(f"  reading the home and building the briefing: {took * 1000:.1f} ms (best of {runs})")
    return added <= MAX_BYTES


def git(cwd: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def envelope_bench(root: str, files: int, runs: int) -> None:
    ws = os.path.join(root, "repo")
    os.makedirs(ws)
    git(ws, "init", "-q", "-b", "main")
    paths = []
    for n in range(files):
        rel = os.path.join("src", f"pkg{n // 100:02d}", f"mod{n % 100:02d}.py")
        os.makedirs(os.path.join(ws, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(ws, rel), "w") as f:
            f.write(f'"""Module {n}."""\n\n\ndef f{n}(x):\n    return x + {n}\n' * 8)
        paths.append(rel)
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")
    base = git(ws, "rev-parse", "HEAD").strip()
    for rel in paths[:10]:
        with open(os.path.join(ws, rel), "a") as f:
            f.write("\n\ndef added():\n    return 1\n")
    for n in range(5):
        with open(os.path.join(ws, "src", f"new{n}.py"), "w") as f:
            f.write("NEW = 1\n")
    for rel in paths[-2:]:
        os.remove(os.path.join(ws, rel))
    snap = os.path.join(root, "snapshot")
    started = time.perf_counter()
    report = snapshot_workspace(ws, snap)
    snap_s = time.perf_counter() - started

    home = os.path.join(root, "envhome")
    counter = iter(range(10**6))
    prepared_round = {}

    def prepare() -> None:
        n = next(counter)
        prepared_round["r"] = envelope_io.prepare(home, "g1", n, workspace=ws, snapshot=snap, base=base)

    def finish() -> None:
        envelope_io.finish(ws, prepared_round["r"], branch=f"crewctl/bench-{next(counter)}", message="bench\n")

    def both() -> None:
        envelope_io.build(ws, snap, base=base, branch=f"crewctl/bench-{next(counter)}", message="bench\n")

    prepare_s = best(prepare, runs)
    assert not prepared_round["r"].get("error"), prepared_round["r"]
    changed = len(prepared_round["r"]["files"])
    finish_s = best(finish, runs)
    both_s = best(both, runs)
    diff_s = best(lambda: git(ws, "diff", "--stat"), runs)
    untracked_s = best(lambda: git(ws, "status", "--porcelain"), runs)
    print(f"\nPR envelope, {files} files in git, {changed} changed (10 modified, 5 added, 2 deleted); best of {runs}:")
    print(f"  snapshot of the workspace (a gate round does it anyway): {snap_s * 1000:8.1f} ms ({report['files']} files, once)")
    print(f"  prepare (every round: the snapshot's tree)             {prepare_s * 1000:8.1f} ms")
    print(f"  finish (the passed round: commit, ref, patch)          {finish_s * 1000:8.1f} ms")
    print(f"  prepare + finish                                       {both_s * 1000:8.1f} ms")
    print(f"  baseline: git diff --stat of the same change           {diff_s * 1000:8.1f} ms   "
          f"(envelope {both_s / diff_s:.1f}x)")
    print(f"  for scale: git status --porcelain                      {untracked_s * 1000:8.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--skills", type=int, default=200)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, {git_version}\n")
    root = tempfile.mkdtemp(prefix="crewctl-bench-outputs-")
    try:
        ok = prompt_bench(root, args.entries, args.skills, args.runs)
        envelope_bench(root, args.files, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
