"""Mission control at scale: first paint, follow latency, and what a dashboard costs the supervisor.

    .venv/bin/python bench/watch.py [--goals 1000] [--events 100000] [--turns 30] [--window 10]

1. A store with `--goals` goals and `--events` timeline events (plus a finished turn row
   per two events), made through the store's own create_goal and then bulk rows; goals in
   every status, most finished or waiting for the operator, as on a machine that has run
   goals for months.
2. First paint. `crewctl watch` in a real terminal (tmux, 80x24): the clock runs from
   spawning it until the screen shows the first goal's id (capture-pane every 10 ms).
   `crewctl goal list`: from spawning it until it exits with every row printed. Baseline
   in the same run: `crewctl --version` (starting the binary at all). Target: < 1 s each.
3. Follow latency. A real `crewctl run` on that home; a goal whose lead answers every
   0.3 s with no marker (so turns keep coming). `goal logs --follow --json` and, beside it,
   `goal events --follow --json` run at once; each line is stamped when it arrives. The
   latency of a finished turn is its arrival minus the turn_finished event's `at`.
   Target: `goal logs --follow` p50 < 200 ms.
4. The supervisor's CPU (its own user+system time from /proc, not its agents') with four
   such goals working, in alternating windows of `--window` seconds without and with one
   `crewctl watch` open (none, watch, none, watch). Target: with watch within 5% of none.

Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from crewctl.goal import phases
from crewctl.goal.model import Budget, Criterion
from crewctl.store import open_store
from crewctl.testing import Supervisor, crewctl_binary, wait_until, write_agent

STATUS_MIX = ["done"] * 60 + ["cancelled"] * 10 + ["blocked"] * 10 + ["awaiting_signoff"] * 10 + ["budget_limited"] * 5 + ["failed"] * 5


def populate(home: str, goals: int, events: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    store = open_store(None, home)
    now = datetime.now(timezone.utc) - timedelta(days=30)
    ids = []
    settings = phases.GoalSettings(roster={"lead": "exec:true", "verifier": "exec:true"}, budget=Budget(tokens=2_000_000))
    for i in range(goals):
        gid = f"{i:08x}"
        t = phases.new_goal(gid, f"bench goal {i}: make module {i % 37} pass its tests", "/nonexistent", settings,
                            now + timedelta(minutes=i), criteria=(Criterion(id="c1", text="tests pass", verify={"run": "true"}),))
        store.create_goal(t, (now + timedelta(minutes=i)).isoformat())
        ids.append(gid)
    store.close()
    per_goal = max(events // goals, 3)
    conn = sqlite3.connect(os.path.join(home, "crew.db"), isolation_level=None, timeout=30)
    conn.execute("BEGIN")
    ev_rows, turn_rows = [], []
    for i, gid in enumerate(ids):
        base = now + timedelta(minutes=i)
        seq0 = 3  # goal_created, lock, turn_started already there
        for k in range(per_goal - seq0):
            seq = seq0 + k + 1
            turn = k // 2 + 2
            at = (base + timedelta(seconds=seq)).isoformat()
            if k % 2 == 0:
                ev_rows.append((gid, seq, "turn_started", at, json.dumps({"turn": turn, "role": "lead", "kind": "continue"})))
            else:
                usage = {"input_tokens": rng.randint(500, 5000), "output_tokens": rng.randint(100, 900), "seconds": 1.5}
                ev_rows.append((gid, seq, "turn_finished", at, json.dumps({"turn": turn, "role": "lead", "kind": "continue", "usage": usage})))
                turn_rows.append((gid, turn, "lead", "continue", None, "finished", 1, "prompt " * 50, "reply " * 80, 0, 0, 0, 1.5, at, at))
        status = STATUS_MIX[i % len(STATUS_MIX)]
        data = json.loads(conn.execute('SELECT "data" FROM "goal" WHERE "id" = ?', (gid,)).fetchone()[0])
        data.update(status=status, in_flight=None, spend={"input_tokens": 40000 + i, "output_tokens": 9000, "cached_tokens": 0, "cost_usd": 0.0, "seconds": 60.0})
        conn.execute('UPDATE "turn" SET "status" = ?, "finished_at" = ? WHERE "goal" = ? AND "turn" = 1', ("finished", base.isoformat(), gid))
        conn.execute('UPDATE "goal" SET "status" = ?, "data" = ?, "last_seq" = ?, "reason" = ? WHERE "id" = ?',
                     (status, json.dumps(data), per_goal, "bench" if status in ("blocked", "failed") else None, gid))
    conn.executemany('INSERT INTO "event" ("goal", "seq", "type", "at", "payload") VALUES (?, ?, ?, ?, ?)', ev_rows)
    conn.executemany(
        'INSERT OR IGNORE INTO "turn" ("goal", "turn", "role", "kind", "round", "status", "runs", "prompt", "reply", "input_tokens", '
        '"output_tokens", "cached_tokens", "seconds", "started_at", "finished_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        turn_rows,
    )
    conn.execute("COMMIT")
    total = conn.execute('SELECT COUNT(*) FROM "event"').fetchone()[0]
    conn.close()
    print(f"store: {goals} goals, {total} events, {len(turn_rows)} turn rows")
    return ids


def env_for(home: str) -> dict[str, str]:
    env = dict(os.environ, CREWCTL_HOME=home)
    env.pop("NO_COLOR", None)
    return env


def time_process(argv: list[str], env: dict[str, str], runs: int = 5) -> float:
    best = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best.append(time.perf_counter() - t0)
    return statistics.median(best)


TMUX = ["tmux", "-L", f"crewctl-bench-{os.getpid()}"]  # a server of our own: nobody else's sessions


def tmux(*args: str) -> str:
    return subprocess.run([*TMUX, *args], capture_output=True, text=True).stdout


def watch_first_paint(home: str, needle: str, runs: int = 5) -> tuple[float, float]:
    """(wall, CPU) seconds from spawning `crewctl watch` until `needle` is on screen. The
    CPU time is the process's own: what the wall time would be on an idle machine."""
    times, cpus = [], []
    for _ in range(runs):
        session = f"bench-{uuid.uuid4().hex[:6]}"
        cmd = f"exec env CREWCTL_HOME={home} TERM=xterm-256color {crewctl_binary()} watch"  # exec: the pane's pid is watch's
        t0 = time.perf_counter()
        subprocess.run([*TMUX, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True)
        pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip() or 0)
        try:
            while needle not in tmux("capture-pane", "-p", "-t", session):
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("watch never painted the goal list")
                time.sleep(0.01)  # poll the terminal: what a person would see
            times.append(time.perf_counter() - t0)
            cpus.append(cpu_seconds(pid) if pid else float("nan"))
        finally:
            subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
    return statistics.median(times), statistics.median(cpus)


def cpu_of_run(argv: list[str], env: dict[str, str], runs: int = 5) -> float:
    """CPU seconds (user + system) of a command that runs to its end, median of `runs`."""
    out = []
    for _ in range(runs):
        before = os.times()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        after = os.times()
        out.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    return statistics.median(out)


class Stamped:
    """Lines of a follower, each with the wall-clock time it arrived."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: list[tuple[float, dict]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.append((time.time(), json.loads(line)))
            except ValueError:
                pass

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--goals", type=int, default=1000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--turns", type=int, default=30, help="finished turns to measure follow latency on")
    ap.add_argument("--window", type=float, default=10.0, help="seconds per CPU window")
    ap.add_argument("--pairs", type=int, default=3, help="(none, watch) window pairs")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        print("bench/watch.py needs tmux (apt-get install tmux)", file=sys.stderr)
        return 1
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    root = tempfile.mkdtemp(prefix="crewctl-bench-watch-")
    missed = []
    # A session that outlives the measured ones: a tmux server whose last session ends
    # exits, and a new session started at that moment fails ("server exited unexpectedly").
    subprocess.run([*TMUX, "new-session", "-d", "-s", "keeper", "sleep 3600"], check=True)
    try:
        home = os.path.join(root, "home")
        os.makedirs(home, mode=0o700)
        populate(home, args.goals, args.events)
        env = env_for(home)

        floor = time_process([crewctl_binary(), "--version"], env)
        listing = time_process([crewctl_binary(), "goal", "list"], env)
        # The list puts what needs the operator first: the first attention goal is on screen.
        first = next(g["id"] for g in sorted(json.loads(subprocess.run([crewctl_binary(), "goal", "list", "--attention", "--json"], env=env, capture_output=True, text=True).stdout), key=lambda g: g["attention"]["since"]))
        paint, paint_cpu = watch_first_paint(home, first)
        floor_cpu = cpu_of_run([crewctl_binary(), "--version"], env)
        listing_cpu = cpu_of_run([crewctl_binary(), "goal", "list"], env)
        print(f"\nfirst paint (median of 5; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print("                                    wall       CPU")
        print(f"  crewctl --version (baseline)   {floor * 1000:7.0f} ms {floor_cpu * 1000:7.0f} ms")
        print(f"  crewctl goal list              {listing * 1000:7.0f} ms {listing_cpu * 1000:7.0f} ms   target < 1000 ms: {'met' if listing < 1 else 'MISSED'}")
        print(f"  crewctl watch                  {paint * 1000:7.0f} ms {paint_cpu * 1000:7.0f} ms   target < 1000 ms: {'met' if paint < 1 else 'MISSED'}")
        print("  (CPU: the process's own time until then, i.e. the wall time on an idle machine)")
        missed += [name for name, value in (("goal list first paint", listing), ("watch first paint", paint)) if value >= 1]

        ws = os.path.join(root, "ws")
        os.makedirs(ws)
        with Supervisor(root, home=home, config="[defaults]\nmax_turns = 100000\nmax_auto_turns = 100000\n") as sup:
            config = sup.env["CREWCTL_CONFIG"]
            lead = write_agent(root, "lead", 'time.sleep(0.3)  # a turn that takes a moment, then no marker: another follows\nsay("turn %d done" % turn)\n')
            goal = sup.new_goal("follow me", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws)
            logs = Stamped([crewctl_binary(), "goal", "logs", goal, "--follow", "--json", "--role", "lead"], dict(env, CREWCTL_CONFIG=config))
            events = Stamped([crewctl_binary(), "goal", "events", goal, "--follow", "--json"], dict(env, CREWCTL_CONFIG=config))
            wait_until(lambda: sum(1 for _, o in logs.lines if o.get("status") == "finished") >= args.turns + 2, timeout=args.turns * 2 + 60)
            logs.stop()
            events.stop()
            finished_at = {e["payload"]["turn"]: datetime.fromisoformat(e["at"]).timestamp() for e in sup.events(goal) if e["type"] == "turn_finished"}
            logs_lat = [t - finished_at[o["turn"]] for t, o in logs.lines if o.get("status") == "finished" and o["turn"] in finished_at][2:]
            events_lat = [t - finished_at[o["payload"]["turn"]] for t, o in events.lines if o.get("type") == "turn_finished"][2:]
            print(f"\nfollow latency, turn finished -> line printed ({len(logs_lat)} turns; the first two, printed from history, left out)")
            for name, lat in (("goal logs --follow", logs_lat), ("goal events --follow (beside it)", events_lat)):
                print(f"  {name:<34} p50 {statistics.median(lat) * 1000:6.0f} ms   p90 {percentile(lat, 90) * 1000:6.0f} ms   max {max(lat) * 1000:6.0f} ms")
            p50 = statistics.median(logs_lat)
            print(f"  target p50 < 200 ms: {'met' if p50 < 0.2 else 'MISSED'}")
            if p50 >= 0.2:
                missed.append("follow latency")
            sup.cli("goal", "cancel", goal)

            busy = [sup.new_goal(f"busy {i}", "--criterion", "ok", "--check", "true", lead=lead, workspace=ws) for i in range(4)]
            wait_until(lambda: all(sup.show(g)["turn"] >= 3 for g in busy), timeout=60)
            rates: dict[str, list[float]] = {"none": [], "watch": []}
            watch_cpu: list[float] = []
            for mode in ("none", "watch") * args.pairs:
                session = None
                if mode == "watch":
                    session = f"bench-{uuid.uuid4().hex[:6]}"
                    subprocess.run([*TMUX, "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                                    f"exec env CREWCTL_HOME={home} TERM=xterm-256color {crewctl_binary()} watch"], check=True)
                    wait_until(lambda: "busy" in tmux("capture-pane", "-p", "-t", session) or first in tmux("capture-pane", "-p", "-t", session), timeout=30)  # noqa: B023 (called at once)
                    watch_pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
                    w0 = cpu_seconds(watch_pid)
                c0, t0 = cpu_seconds(sup.pid), time.monotonic()
                time.sleep(args.window)  # the measurement window itself
                elapsed = time.monotonic() - t0
                rates[mode].append((cpu_seconds(sup.pid) - c0) / elapsed)
                if session:
                    watch_cpu.append((cpu_seconds(watch_pid) - w0) / elapsed)
                    subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
            none, watch = statistics.mean(rates["none"]), statistics.mean(rates["watch"])
            change = (watch - none) / none * 100 if none else 0.0
            spread = (max(rates["none"]) - min(rates["none"])) / none * 100 if none else 0.0
            print(f"\nsupervisor CPU with 4 goals working ({args.window:g} s windows, alternating none and watch, {args.pairs} of each)")
            print(f"  no watch open   {none * 100:6.2f}% of a core   (windows: {', '.join(f'{r * 100:.2f}' for r in rates['none'])})")
            print(f"  one watch open  {watch * 100:6.2f}% of a core   (windows: {', '.join(f'{r * 100:.2f}' for r in rates['watch'])})")
            # The target is a cost: a watch may not add more than 5%. The spread of the
            # no-watch windows among themselves says how much of a difference is noise.
            print(f"  change {change:+.1f}% (no-watch windows alone spread {spread:.1f}%)   target at most +5%: {'met' if change <= 5 else 'MISSED'}")
            print(f"  (the watch process itself: {statistics.mean(watch_cpu) * 100:.2f}% of a core)")
            if change > 5:
                missed.append("supervisor CPU")
            for g in busy:
                sup.cli("goal", "cancel", g)
    finally:
        subprocess.run([*TMUX, "kill-server"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    if missed:
        print(f"\nmissed: {', '.join(missed)}")
        return 1
    print("\nevery target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
