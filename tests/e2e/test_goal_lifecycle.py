"""A goal's life through the installed `crewctl` binary and a real `crewctl run` process.

Agents are `exec:` brains: small Python scripts written by each test (crewctl.testing.write_agent).
"""

from __future__ import annotations

import json
import os

from crewctl.testing import AGENT_STATE, PASS_EVERY_CRITERION, READY_EVERY_TURN, Supervisor, wait_until, write_agent





def test_happy_path_reaches_done_after_signoff(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            open("ok.txt", "w").write("fixed")
            marker("READY", {"summary": "created ok.txt and documented it"})
    """)
    verifier = write_agent(tmp_path, "verifier", PASS_EVERY_CRITERION)
    goal = sup.new_goal(
        "create ok.txt", "--criterion", "ok.txt exists", "--check", "test -f ok.txt",
        "--criterion", "it is documented", lead=lead, verifier=verifier, workspace=ws,
    )
    view = sup.wait_for_status(goal, "awaiting_signoff")
    assert [c["status"] for c in view["criteria"]] == ["pass", "pass"]
    sup.cli("goal", "signoff", goal)
    assert sup.show(goal)["status"] == "done"
    sup.wait_for_event(goal, "reflection")  # then the goal's durable outputs are made
    events = sup.events(goal)
    types = [e["type"] for e in events]

    def output(e: dict) -> bool:  # the PR envelope and the reflection turn (tests/e2e/test_outputs.py)
        return e["type"] in ("envelope", "reflection") or e["payload"].get("role") == "reflector"

    after_pass = [e["type"] for e in events[types.index("gate_passed") + 1 :] if not output(e)]
    assert after_pass == ["signoff", "done"]
    assert [e["seq"] for e in events] == list(range(1, len(types) + 1))


def test_a_lead_that_emits_verify_itself_never_opens_the_gate(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        marker("VERIFY", {"results": [{"id": "c1", "verdict": "pass", "evidence": "I checked, trust me"}]})
    """)
    goal = sup.new_goal("x", "--criterion", "never true", "--check", "false", lead=lead, workspace=ws,
                        verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION))
    ignored = sup.wait_for_event(goal, "marker_ignored")
    assert ignored["payload"]["kind"] == "verify" and ignored["payload"]["role"] == "lead"
    sup.wait_for_status(goal, "blocked", timeout=90)  # it keeps trying; the turn cap ends it
    types = sup.event_types(goal)
    assert "round_started" not in types and "gate_passed" not in types
    assert sup.show(goal)["criteria"][0]["status"] == "pending"


def test_a_ready_quoted_in_a_fence_starts_no_round(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n == 1:
            say("When I am done I will write:\\n```\\nCREW_READY_BEGIN\\n{\\"summary\\": \\"x\\"}\\nCREW_READY_END\\n```")
        else:
            marker("BLOCKED", {"reason": "stopping the test"})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "blocked")
    assert "round_started" not in sup.event_types(goal)


def test_a_verifier_that_passes_a_criterion_whose_check_fails_holds_the_gate(sup, ws, tmp_path):
    goal = sup.new_goal(
        "x", "--criterion", "the tests pass", "--check", "exit 3", "--criterion", "judged", "--attempt-cap", "1",
        lead=write_agent(tmp_path, "lead", READY_EVERY_TURN), verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION),
        workspace=ws,
    )
    held = sup.wait_for_event(goal, "gate_held")
    assert held["payload"]["failed"] == ["c1"]
    verdict = sup.wait_for_event(goal, "verify")
    c1 = next(r for r in verdict["payload"]["results"] if r["id"] == "c1")
    assert c1["verdict"] == "fail" and c1["source"] == "check" and "exited 3" in c1["evidence"]
    assert "gate_passed" not in sup.event_types(goal)


def test_a_verifier_reply_with_a_failing_and_a_passing_verify_holds_the_gate(sup, ws, tmp_path):
    verifier = write_agent(tmp_path, "v", """
        marker("VERIFY", {"results": [{"id": "c1", "verdict": "fail", "evidence": "no"}]})
        marker("VERIFY", {"results": [{"id": "c1", "verdict": "pass", "evidence": "yes"}]})
    """)
    goal = sup.new_goal("x", "--criterion", "judged", "--attempt-cap", "1",
                        lead=write_agent(tmp_path, "lead", READY_EVERY_TURN), verifier=verifier, workspace=ws)
    held = sup.wait_for_event(goal, "gate_held")
    assert held["payload"]["failed"] == ["c1"]
    assert "gate_passed" not in sup.event_types(goal)


def test_the_verifier_sees_nothing_of_the_leads_session(tmp_path, ws):
    secret_env = "CREWCTL_E2E_DAEMON_SECRET"
    with Supervisor(tmp_path, env={secret_env: "env-secret-4711"}) as sup:
        lead = write_agent(tmp_path, "lead", """
            n = count()
            with open("notes.txt", "w") as f:
                f.write("work notes")
            say("scratchpad: reply-secret-0815 session " + env["CREWCTL_SESSION"])
            open(os.path.join(state_dir, "session"), "w").write(env["CREWCTL_SESSION"])
            marker("READY", {"summary": "notes written"})
        """)
        probe = tmp_path / AGENT_STATE / "v.state" / "saw.json"  # the one place it may write outside its copy
        verifier = write_agent(tmp_path, "v", f"""
            listing = []
            for root, dirs, files in os.walk("."):
                for name in files:
                    p = os.path.join(root, name)
                    try:
                        listing.append((p, open(p, errors="replace").read()))
                    except OSError:
                        pass
            json.dump({{"cwd": os.getcwd(), "env": env, "stdin": prompt, "files": listing, "ppid": os.getppid()}},
                      open({str(probe)!r}, "w"))
            import re
            ids = re.findall(r"^- (c\\d+):", prompt, re.M)
            marker("VERIFY", {{"results": [{{"id": i, "verdict": "pass", "evidence": "ok"}} for i in ids]}})
        """)
        goal = sup.new_goal("write notes", "--criterion", "notes exist", lead=lead, verifier=verifier, workspace=ws)
        sup.wait_for_status(goal, "awaiting_signoff")
        saw = json.loads(probe.read_text())
        lead_session = (tmp_path / AGENT_STATE / "lead.state" / "session").read_text()
        everything = json.dumps(saw)
        assert "reply-secret-0815" not in everything
        assert "env-secret-4711" not in everything and secret_env not in saw["env"]
        assert lead_session not in everything
        assert not saw["cwd"].startswith(ws)
        assert saw["env"]["HOME"] != os.environ.get("HOME") and saw["env"]["HOME"].startswith(sup.home)
        assert saw["env"]["CREWCTL_ROLE"] == "verifier"
        assert [p for p, _ in saw["files"]] == ["./notes.txt"]  # the snapshot: the work, nothing else
        assert os.path.exists(os.path.join(ws, "notes.txt"))


def test_a_steer_sent_while_the_lead_works_reaches_its_next_prompt_exactly_once(sup, ws, tmp_path):
    go = tmp_path / "go"
    lead = write_agent(tmp_path, "lead", f"""
        n = count()
        open(os.path.join(state_dir, "prompt%d" % n), "w").write(prompt)
        if n == 1:
            open(os.path.join(state_dir, "started"), "w").write("1")
            deadline = time.time() + 60
            while not os.path.exists({str(go)!r}) and time.time() < deadline:
                time.sleep(0.02)  # poll: the agent waits for the test's go-ahead, with a deadline
            say("still working")
        elif n < 4:
            say("working more")
        else:
            marker("BLOCKED", {{"reason": "end of test"}})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    wait_until(lambda: (tmp_path / AGENT_STATE / "lead.state" / "started").exists(), message="the lead's first turn")
    sup.cli("goal", "steer", goal, "use only the standard library")
    go.write_text("go")
    sup.wait_for_status(goal, "blocked")
    prompts = [(tmp_path / AGENT_STATE / "lead.state" / f"prompt{n}").read_text() for n in (1, 2, 3, 4)]
    assert ["use only the standard library" in p for p in prompts] == [False, True, False, False]
    delivered = [e for e in sup.events(goal) if e["type"] == "steer_delivered"]
    assert len(delivered) == 1


def test_the_attempt_cap_blocks_the_goal(sup, ws, tmp_path):
    goal = sup.new_goal("x", "--criterion", "never", "--check", "false", "--attempt-cap", "2",
                        lead=write_agent(tmp_path, "lead", """
                            marker("READY", {"summary": "attempt %d" % count()})
                        """), workspace=ws)
    view = sup.wait_for_status(goal, "blocked")
    assert view["reason"].startswith("attempt_cap")
    assert sup.event_types(goal).count("gate_held") == 3


def test_send_back_starts_a_rework_turn_that_sees_the_notes(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        open(os.path.join(state_dir, "prompt%d" % n), "w").write(prompt)
        marker("READY", {"summary": "attempt %d" % n})
    """)
    goal = sup.new_goal("x", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    sup.cli("goal", "send-back", goal, "--notes", "rename the flag to --json")
    sup.wait_for_event(goal, "send_back")
    wait_until(lambda: (tmp_path / AGENT_STATE / "lead.state" / "prompt2").exists())
    assert "rename the flag to --json" in (tmp_path / AGENT_STATE / "lead.state" / "prompt2").read_text()
    sup.wait_for_status(goal, "awaiting_signoff")
    assert sup.show(goal)["round"] == 2


def test_a_stale_clarify_seq_is_refused_with_exit_3_and_changes_nothing(sup, ws, tmp_path):
    lead = write_agent(tmp_path, "lead", """
        n = count()
        if n <= 2:
            marker("CLARIFY", {"questions": [{"text": "question %d?" % n}]})
        else:
            marker("BLOCKED", {"reason": "done asking"})
    """)
    goal = sup.new_goal("x", lead=lead, verifier=write_agent(tmp_path, "v", PASS_EVERY_CRITERION), workspace=ws)
    wait_until(lambda: (sup.show(goal).get("questions") or {}).get("seq") == 1)
    sup.cli("goal", "answer", goal, "--seq", "1", "q1=yes")
    wait_until(lambda: (sup.show(goal).get("questions") or {}).get("seq") == 2)
    before = sup.events(goal)
    stale = sup.cli("goal", "answer", goal, "--seq", "1", "q1=again", check=False)
    assert stale.code == 3
    assert stale.stdout == "" and len(stale.stderr.strip().splitlines()) == 1
    assert "stale" in stale.stderr and "Traceback" not in stale.stderr
    assert sup.events(goal) == before


def test_every_verifier_round_runs_in_a_new_process_apart_from_the_daemon(sup, ws, tmp_path):
    namespaces = tmp_path / AGENT_STATE / "v.state" / "namespaces"
    verifier = write_agent(tmp_path, "v", f"""
        with open({str(namespaces)!r}, "a") as f:
            f.write(os.readlink("/proc/self/ns/pid") + "\\n")
        import re
        ids = re.findall(r"^- (c\\d+):", prompt, re.M)
        verdict = "pass" if int(env["CREWCTL_ROUND"]) >= 3 else "fail"
        marker("VERIFY", {{"results": [{{"id": i, "verdict": verdict, "evidence": "round " + env["CREWCTL_ROUND"]}} for i in ids]}})
    """)
    lead = write_agent(tmp_path, "lead", """
        marker("READY", {"summary": "try %d" % count()})
    """)
    goal = sup.new_goal("x", "--criterion", "judged", lead=lead, verifier=verifier, workspace=ws)
    sup.wait_for_status(goal, "awaiting_signoff")
    host_pids = [e["payload"]["host_pid"] for e in sup.events(goal) if e["type"] == "verify"]
    assert len(host_pids) == 3 and len(set(host_pids)) == 3
    assert sup.pid not in host_pids
    seen = namespaces.read_text().split()  # each round's verifier in a sandbox of its own
    assert len(set(seen)) == 3 and os.readlink(f"/proc/{sup.pid}/ns/pid") not in seen


def test_a_supervisor_killed_during_a_verifier_turn_finishes_the_goal_after_restart(tmp_path, ws):
    release = tmp_path / "release"
    verifier = write_agent(tmp_path, "v", f"""
        n = count()
        open(os.path.join(state_dir, "running"), "w").write(str(n))
        deadline = time.time() + 60
        while n == 1 and not os.path.exists({str(release)!r}) and time.time() < deadline:
            time.sleep(0.02)  # poll: the agent waits for the test's go-ahead, with a deadline
        import re
        ids = re.findall(r"^- (c\\d+):", prompt, re.M)
        marker("VERIFY", {{"results": [{{"id": i, "verdict": "pass", "evidence": "ok"}} for i in ids]}})
    """)
    lead = write_agent(tmp_path, "lead", READY_EVERY_TURN)
    with Supervisor(tmp_path) as sup:
        goal = sup.new_goal("x", "--criterion", "judged", lead=lead, verifier=verifier, workspace=ws)
        wait_until(lambda: (tmp_path / AGENT_STATE / "v.state" / "running").exists(), message="the verifier to be running")
        sup.kill()
        sup.start()
        view = sup.wait_for_status(goal, "awaiting_signoff")
        assert view["criteria"][0]["status"] == "pass"
        events = sup.events(goal)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    for once in ("goal_created", "lock", "ready", "round_started", "verify", "gate_passed"):
        assert types.count(once) == 1, (once, types)
    reruns = [e for e in events if e["type"] == "turn_started" and e["payload"].get("rerun")]
    assert len(reruns) == 1 and reruns[0]["payload"]["role"] == "verifier"
