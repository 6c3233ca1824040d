"""`crewctl brains check` and the verifier's fresh HOME, with the real `llm` CLI against the
real local model (the `llm` marker: .ci/run starts shared/tools/local-llm).

The verifier's HOME is fresh, so that no session history reaches it; it must still hold the
operator's choice of provider and model, or the verifier cannot run at all (llm: "Unknown
model") or, worse, runs against a default the operator never chose.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from crewctl.sandbox import Sandbox
from crewctl.testing import Supervisor, run_cli, wait_until
from crewctl.testing.llm import MODEL_TEST_DEADLINE

BIN = os.path.dirname(sys.executable)


def operator_llm_home(tmp_path, url: str, model: str, *, history: bool = False):
    """An operator's HOME where llm is set up for the local server (and, with `history`, a
    stand-in logs.db: only its presence matters where nothing runs llm)."""
    home = tmp_path / "operator-home"
    state = home / ".config" / "io.datasette.llm"
    state.mkdir(parents=True)
    (state / "extra-openai-models.yaml").write_text(
        f"- model_id: local\n  model_name: {json.dumps(model)}\n  api_base: {json.dumps(url)}\n")
    (state / "keys.json").write_text('{"openai": "sk-local"}\n')
    (state / "default_model.txt").write_text("local\n")
    if history:
        (state / "logs.db").write_bytes(b"the lead's conversations would be here")
    return home


def env_for(home, tmp_path) -> dict[str, str]:
    return {"HOME": str(home), "CREWCTL_HOME": str(tmp_path / "crew"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}


def test_a_verifiers_fresh_home_gets_the_provider_files_and_never_the_history(tmp_path, monkeypatch):
    home = operator_llm_home(tmp_path, "http://127.0.0.1:9/v1", "m", history=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LLM_USER_PATH", str(home / ".config" / "io.datasette.llm"))
    fresh, work, tmp = tmp_path / "fresh", tmp_path / "work", tmp_path / "tmp"
    for d in (fresh, work, tmp):
        d.mkdir()
    sandbox = Sandbox(mode="off", home=str(tmp_path / "crew"))
    env, _policy = sandbox.for_verifier(str(work), kind="llm", own_home=str(fresh), tmpdir=str(tmp))
    got = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    assert got == [".config/io.datasette.llm/default_model.txt", ".config/io.datasette.llm/extra-openai-models.yaml",
                   ".config/io.datasette.llm/keys.json"]
    assert env["HOME"] == str(fresh)
    assert "LLM_USER_PATH" not in env  # it would point the verifier's llm at the operator's logs.db


def test_a_config_named_brain_as_verifier_gets_the_credentials_of_what_it_names(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-not-for-this-brain")
    config_file = tmp_path / "config.toml"
    config_file.write_text('[brains.local]\nspec = "openai:some-model@http://127.0.0.1:9/v1"\n')
    from crewctl.config import load_config
    from crewctl.sandbox import brain_kind

    config = load_config(str(config_file))
    fresh, work, tmp = tmp_path / "fresh", tmp_path / "work", tmp_path / "tmp"
    for d in (fresh, work, tmp):
        d.mkdir()
    sandbox = Sandbox(mode="off", home=str(tmp_path / "crew"))
    env, _ = sandbox.for_verifier(str(work), kind=brain_kind("local", config), own_home=str(fresh), tmpdir=str(tmp))
    assert env.get("OPENAI_API_KEY") == "sk-operator"
    assert "ANTHROPIC_API_KEY" not in env


def test_brains_check_refuses_a_name_that_is_no_brain_with_one_line_and_exit_2(tmp_path):
    done = run_cli(str(tmp_path / "crew"), "brains", "check", "no-such-brain")
    assert done.code == 2, done
    assert done.stderr.count("\n") == 1 and "unknown brain 'no-such-brain'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "crew" / "crew.db").exists()


@pytest.mark.llm
def test_brains_check_runs_one_real_turn_per_role_and_says_each_works(llm_model, tmp_path):
    url, model = llm_model
    home = operator_llm_home(tmp_path, url, model)
    done = run_cli(str(tmp_path / "crew"), "brains", "check", "llm:local", "--json", env=env_for(home, tmp_path), timeout=MODEL_TEST_DEADLINE)
    assert done.code == 0, done
    report = json.loads(done.stdout)
    assert report["ok"] and report["sandboxed"]
    assert [r["role"] for r in report["roles"]] == ["lead", "verifier"]
    for r in report["roles"]:
        assert r["ok"] and r["reply"] and r["input_tokens"] > 0 and r["output_tokens"] > 0, r


@pytest.mark.llm
def test_brains_check_names_the_role_that_fails_in_the_tools_own_words(llm_model, tmp_path):
    url, model = llm_model
    home = operator_llm_home(tmp_path, url, model)
    done = run_cli(str(tmp_path / "crew"), "brains", "check", "llm:not-configured", "--role", "verifier",
                   env=env_for(home, tmp_path), timeout=MODEL_TEST_DEADLINE)
    assert done.code == 1, done
    assert done.stdout.startswith("verifier: FAILED (sandboxed, ") and "Unknown model: not-configured" in done.stdout


@pytest.mark.llm
def test_the_real_llm_cli_as_verifier_of_a_real_goal_reaches_the_configured_model(llm_model, tmp_path):
    url, model = llm_model
    if shutil.which("llm", path=BIN) is None:
        pytest.fail("the llm CLI is a test dependency (pip install -e '.[test]') and is not installed")
    home = operator_llm_home(tmp_path, url, model)
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"lead": ["Done.\nCREW_READY_BEGIN\n{\"summary\": \"wrote hello.txt\"}\nCREW_READY_END\n"]}))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hello\n")
    env = {"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    with Supervisor(tmp_path, env=env) as sup:
        goal = sup.new_goal("write hello.txt", "--criterion", "hello.txt says hello", "--attempt-cap", "1",
                            lead=f"scripted:{lead}", verifier="llm:local", workspace=str(ws))

        def verifier_turns():
            return [e for e in sup.events(goal) if e["type"] in ("turn_finished", "turn_failed")
                    and e["payload"].get("role") == "verifier"]

        wait_until(verifier_turns, timeout=MODEL_TEST_DEADLINE, interval=0.5, message="the llm verifier's turn")
        events = sup.events(goal)
        [first, *_] = verifier_turns()
        assert first["type"] == "turn_finished", json.dumps(events, indent=1)[-3000:]
        assert first["payload"]["usage"]["input_tokens"] > 0
        assert "unsandboxed" not in [e["type"] for e in events]
        # The snapshot it judged is untouched in the workspace, whatever the model said.
        assert (ws / "hello.txt").read_text() == "hello\n"


def test_opencodes_verifier_home_gets_its_provider_and_login_and_never_its_mcp_servers_or_sessions(tmp_path):
    from crewctl.sandbox._env import seed_home

    operator = tmp_path / "operator"
    config = operator / ".config" / "opencode"
    config.mkdir(parents=True)
    (config / "opencode.jsonc").write_text(
        '{\n  // the operator\'s own server\n  "provider": {"local": {"options": {"baseURL": "http://127.0.0.1:9//v1"}}},\n'
        '  "model": "local/smol",\n  "mcp": {"writer": {"type": "local", "command": ["touch", "/tmp/pwned"]}},\n'
        '  "plugin": ["opencode-something"]\n}\n')
    share = operator / ".local" / "share" / "opencode"
    (share / "storage" / "session").mkdir(parents=True)
    (share / "auth.json").write_text('{"local": {"type": "api", "key": "sk"}}')
    (share / "storage" / "session" / "ses_1.json").write_text("the lead's conversation")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    seeded = seed_home("opencode", str(operator), str(fresh))
    assert sorted(seeded) == [".config/opencode/opencode.json", ".local/share/opencode/auth.json"]
    carried = json.loads((fresh / ".config" / "opencode" / "opencode.json").read_text())
    assert carried == {"provider": {"local": {"options": {"baseURL": "http://127.0.0.1:9//v1"}}}, "model": "local/smol"}
    assert not (fresh / ".local" / "share" / "opencode" / "storage").exists()
