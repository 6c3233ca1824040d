"""One config, found the same way by every command and by the supervisor, which says which
file it read and reads it again when it changes."""

from __future__ import annotations

import json

from crewctl.testing import Supervisor, run_cli, write_agent

READY = 'marker("READY", {"summary": "done"})'


def write_config(path, lead: str, verifier: str | None = None, extra: str = "") -> str:
    roster = f'[roster]\nlead = "{lead}"\n' + (f'verifier = "{verifier}"\n' if verifier else "")
    path.write_text(roster.replace("\\", "\\\\") + extra)
    return str(path)


def one_line(result, code: int, *words: str) -> None:
    assert result.code == code, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, str(result)
    for word in words:
        assert word in result.stderr, str(result)


def roster(lead: str) -> str:
    return f"[roster]\nlead = {json.dumps(lead)}\n"


def test_goal_new_without_lead_uses_the_roster_brains_list_shows(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", READY)
    with Supervisor(tmp_path, config=roster(lead)) as sup:
        config = sup.env["CREWCTL_CONFIG"]
        listed = sup.cli("brains", "list", "--json").json()
        assert listed["config"] == config and listed["roster"]["lead"] == lead
        goal = sup.new_goal("from the roster", "--criterion", "c", "--check", "true", workspace=ws)
        view = sup.wait_for_status(goal, "awaiting_signoff")
        assert view["roster"]["lead"] == lead
        assert f"config {config}" in sup.log()  # the supervisor says which file it read
        assert sup.cli("status", "--json").json()["daemon"]["config"] == config


def test_a_config_edited_after_the_supervisor_started_is_what_the_next_goal_uses(tmp_path, ws):
    with Supervisor(tmp_path) as sup:
        config = sup.env["CREWCTL_CONFIG"]
        missing = sup.cli("goal", "new", "x", "--workspace", ws, "--criterion", "c", "--check", "true", check=False)
        one_line(missing, 2, "no lead brain", config)
        lead = write_agent(tmp_path, "lead", READY)
        sup.write_config(roster(lead))  # the same file, now with a roster
        assert sup.cli("config", "show", "--json").json()["roster"] == {"lead": lead}
        goal = sup.new_goal("after the edit", "--criterion", "c", "--check", "true", workspace=ws)
        assert sup.wait_for_status(goal, "awaiting_signoff")["roster"]["lead"] == lead
        assert f"config {config} read again" in sup.log()


def test_a_cli_that_reads_another_config_than_the_supervisor_is_refused_naming_both(tmp_path, ws):
    lead = write_agent(tmp_path, "lead", READY)
    mine = tmp_path / "mine.toml"
    mine.write_text(roster(lead))
    with Supervisor(tmp_path, config=roster(lead)) as sup:
        theirs = sup.env["CREWCTL_CONFIG"]
        before = sup.cli("goal", "list", "--json").json()
        result = sup.cli("goal", "new", "x", "--workspace", ws, "--criterion", "c", "--check", "true", env={"CREWCTL_CONFIG": str(mine)}, check=False)
        one_line(result, 2, str(mine), theirs, "same CREWCTL_CONFIG")
        assert sup.cli("goal", "list", "--json").json() == before
        path = sup.cli("config", "path", env={"CREWCTL_CONFIG": str(mine)})
        assert path.stdout.strip() == str(mine) and theirs in path.stderr


def test_a_crewctl_config_that_names_no_file_is_an_error_everywhere_it_is_read(tmp_path):
    home = str(tmp_path / "home")
    env = {"CREWCTL_CONFIG": str(tmp_path / "typo.toml")}
    for args in (["run"], ["brains", "list"], ["config", "show"], ["worker", "--connect", "tcp://127.0.0.1:9"]):
        one_line(run_cli(home, *args, env=env, timeout=30), 1, "typo.toml does not exist", "CREWCTL_CONFIG")
    path = run_cli(home, "config", "path", "--json", env=env)
    assert path.code == 0 and path.json()["exists"] is False and path.json()["source"] == "CREWCTL_CONFIG"


def test_config_show_prints_what_the_config_resolves_to_with_secrets_hidden(tmp_path):
    config = write_config(
        tmp_path / "crewctl.toml", "claude", "codex",
        extra='\n[defaults]\ntoken_budget = 500000\n\n[brains.local]\nspec = "openai:qwen@http://127.0.0.1:11434/v1"\n'
              '\n[openai]\napi_key = "sk-very-secret"\n',
    )
    env = {"CREWCTL_CONFIG": config}
    shown = run_cli(str(tmp_path / "home"), "config", "show", "--json", env=env)
    assert shown.code == 0, str(shown)
    data = shown.json()
    assert data["path"] == config and data["source"] == "CREWCTL_CONFIG" and data["exists"] is True
    assert data["roster"] == {"lead": "claude", "verifier": "codex"}
    assert data["defaults"]["token_budget"] == 500000 and data["defaults"]["attempt_cap"] == 5
    assert data["brains"]["local"]["spec"].startswith("openai:qwen@")
    assert data["providers"]["openai"]["api_key"] == "***"
    assert "sk-very-secret" not in shown.stdout
    text = run_cli(str(tmp_path / "home"), "config", "show", env=env)
    assert text.code == 0 and f"config: {config}" in text.stdout and "sk-very-secret" not in text.stdout
    assert json.loads(run_cli(str(tmp_path / "home"), "config", "path", "--json", env=env).stdout)["path"] == config


def test_a_default_budget_that_is_not_finite_in_the_config_is_a_config_error(tmp_path):
    config = tmp_path / "crewctl.toml"
    config.write_text("[defaults]\ntime_budget = inf\n")
    one_line(run_cli(str(tmp_path / "home"), "config", "show", env={"CREWCTL_CONFIG": str(config)}), 1, "defaults.time_budget")


def test_the_config_defaults_for_check_timeout_step_attempts_and_replan_budget_reach_a_new_goal(tmp_path, ws):
    from crewctl.store import open_store

    lead = write_agent(tmp_path, "lead", READY)
    extra = "[defaults]\ncheck_timeout = 42.5\nstep_attempts = 7\nreplan_budget = 0\n"
    with Supervisor(tmp_path, config=roster(lead) + extra) as sup:
        goal = sup.new_goal("with config defaults", "--criterion", "c", "--check", "true", workspace=ws)
        sup.wait_for_status(goal, "awaiting_signoff")
        overridden = sup.new_goal("flags win", "--criterion", "c", "--check", "true", "--step-attempts", "2", workspace=ws)
        sup.wait_for_status(overridden, "awaiting_signoff")
        store = open_store(home=sup.home, create=False)
        try:
            state, _ = store.load_goal(goal)
            flagged, _ = store.load_goal(overridden)
        finally:
            store.close()
    assert (state.check_timeout, state.step_attempts, state.replan_budget) == (42.5, 7, 0)
    assert (flagged.check_timeout, flagged.step_attempts, flagged.replan_budget) == (42.5, 2, 0)
