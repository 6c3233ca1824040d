"""What people read: times with a date unless today, short durations, and NO_COLOR."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from crewctl.cli import _register, cli
from crewctl.cli._common import duration, human_time

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (people see local time; the test needs a known one)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_time_from_today_shows_the_clock_only(utc):
    assert human_time("2026-03-10T09:15:02+00:00", NOW) == "09:15:02"


def test_a_time_from_another_day_carries_its_date(utc):
    assert human_time("2026-03-09T23:59:59+00:00", NOW) == "2026-03-09 23:59:59"
    assert human_time(None, NOW) == "-"


def test_durations_are_short_and_keep_their_unit():
    assert [duration(s) for s in (3.21, 42, 252, 3720, 200000)] == ["3.2s", "42s", "4m12s", "1h02m", "2d07h"]


def test_no_color_strips_every_style_from_a_commands_output(tmp_path):
    _register()
    runner = CliRunner()
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    coloured = runner.invoke(cli, ["--home", str(home), "doctor"], color=True, env={"NO_COLOR": ""})
    assert "\x1b[" in coloured.output  # the marks are styled on a terminal ...
    plain = runner.invoke(cli, ["--home", str(home), "doctor"], color=True, env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain.output and "home" in plain.output  # ... and plain under NO_COLOR
