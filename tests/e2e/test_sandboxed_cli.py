"""A real agent CLI as lead inside the sandbox: `llm` (from PyPI) against the local model.

The preset's command line, the tool's own state (its logs database, where it keeps the
conversation it resumes) and its provider configuration must all work inside the sandbox
a default `crewctl run` puts every turn in. Needs the local OpenAI-compatible server
(`shared/tools/local-llm start`, which .ci/run starts): the `llm` marker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from crewctl.testing import Supervisor, wait_until
from crewctl.testing.llm import MODEL_TEST_DEADLINE

pytestmark = pytest.mark.llm


def test_the_real_llm_cli_runs_as_lead_inside_the_sandbox_and_resumes_its_conversation(llm_model, tmp_path):
    url, model = llm_model
    bin_dir = os.path.dirname(sys.executable)
    if shutil.which("llm", path=bin_dir) is None:
        pytest.fail("the llm CLI is a test dependency (pip install -e '.[test]') and is not installed")
    llm_home = tmp_path / "llm-home"  # LLM_USER_PATH: the tool's config and its logs.db
    llm_home.mkdir()
    (llm_home / "extra-openai-models.yaml").write_text(
        f"- model_id: local\n  model_name: {json.dumps(model)}\n  api_base: {json.dumps(url)}\n"
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {
        "LLM_USER_PATH": str(llm_home),
        "OPENAI_API_KEY": "not-needed-locally",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
    }
    with Supervisor(tmp_path, env=env) as sup:
        # `--check false`: a READY from the model holds the gate and the lead works again, so
        # there is always a second lead turn, whatever the tiny model answers.
        goal = sup.new_goal("say hello", "--criterion", "it said hello", "--check", "false",
                            "--max-auto-turns", "1", "--token-budget", "200000",
                            lead="llm:local", workspace=str(ws))

        def lead_turns():
            return [e for e in sup.events(goal) if e["type"] == "turn_finished" and e["payload"]["role"] == "lead"]

        def failed():
            return [e for e in sup.events(goal) if e["type"] == "turn_failed"]

        resumed = []

        def second_turn():
            if len(lead_turns()) >= 2 or failed():
                return True
            view = sup.show(goal)
            if view["status"] == "blocked" and view["in_flight"] is None:
                sup.cli("goal", "resume", goal)  # the model said BLOCKED, or the turn cap: go on
                resumed.append(True)
            return False

        wait_until(second_turn, timeout=MODEL_TEST_DEADLINE, interval=0.5, message="two lead turns of the llm CLI")
        events = sup.events(goal)
        assert not [e for e in events if e["type"] == "turn_failed"], json.dumps(events, indent=1)[-3000:]
        assert "unsandboxed" not in [e["type"] for e in events]
        finished = [e for e in events if e["type"] == "turn_finished" and e["payload"]["role"] == "lead"]
        assert len(finished) >= 2 and all(e["payload"]["usage"]["input_tokens"] > 0 for e in finished)
        # The second turn resumed the tool's own conversation: llm logged both in one.
        logged = subprocess.run([os.path.join(bin_dir, "llm"), "logs", "list", "-n", "20", "--json"],
                                capture_output=True, text=True, timeout=60, env=dict(os.environ, **env), check=True)
        conversations = [row["conversation_id"] for row in json.loads(logged.stdout)]
        assert len(conversations) >= 2, conversations
        if not resumed:  # one run, one session: the second turn continued the tool's conversation
            assert len(set(conversations)) == 1, conversations
