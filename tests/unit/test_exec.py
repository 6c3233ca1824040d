"""brains/exec.py: the one place an agent process starts, bounded in time and output.

Real subprocesses throughout: what is asserted is what a real process group does.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from crewctl.brains.base import TurnRequest
from crewctl.brains.exec import run_process
from crewctl.exceptions import BrainError


def request(tmp_path, timeout: float) -> TurnRequest:
    return TurnRequest(role="lead", goal_id="g1", session_id=str(uuid.uuid4()), turn=1, prompt="hello",
                       workdir=str(tmp_path), env={"PATH": os.environ["PATH"]}, timeout=timeout)


def test_a_timed_out_tool_is_reported_with_its_last_words_not_only_the_timeout(tmp_path):
    # gemini 0.61 without network: retries with backoff on stderr, a JS stack under each.
    script = (
        "import sys, time\n"
        "print('Attempt 1 failed. Retrying with backoff... Error: fetch failed sending request', file=sys.stderr)\n"
        "print('    at async retryWithBackoff (file:///x/chunk.js:1:2)', file=sys.stderr)\n"
        "sys.stderr.flush()\n"
        "time.sleep(60)\n"  # the tool hangs: the turn's timeout is what ends it
    )
    with pytest.raises(BrainError) as caught:
        run_process([sys.executable, "-c", script], request(tmp_path, timeout=2.0))
    message = str(caught.value)
    assert "timed out after 2s" in message
    assert "its last words: Attempt 1 failed. Retrying with backoff... Error: fetch failed sending request" in message
    assert "retryWithBackoff" not in message  # stack frames are noise, not words


def test_a_timed_out_tool_that_wrote_only_stdout_is_quoted_from_stdout_on_one_capped_line(tmp_path):
    # The tool hangs after its last words: the turn's timeout is what ends it.
    script = "import sys, time\nprint('x' * 5000 + '\\nReconnecting... waiting for network', flush=True)\ntime.sleep(60)\n"
    with pytest.raises(BrainError) as caught:
        run_process([sys.executable, "-c", script], request(tmp_path, timeout=2.0))
    message = str(caught.value)
    said = message.split("its last words: ", 1)[1]
    assert said.endswith("Reconnecting... waiting for network")
    assert "\n" not in message and len(said) <= 300


def test_a_silent_timed_out_tool_says_only_that_it_timed_out(tmp_path):
    with pytest.raises(BrainError) as caught:
        # a silent tool that hangs until the turn's timeout ends it
        run_process([sys.executable, "-c", "import time; time.sleep(60)"], request(tmp_path, timeout=1.0))
    assert str(caught.value).endswith("timed out after 1s")
