"""The protected-path baseline in the store, on SQLite and PostgreSQL: its own table, schema v2."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone


from crewctl.goal import events as ev
from crewctl.goal import phases, protect
from crewctl.goal.model import Criterion
from crewctl.store import open_store
from crewctl.testing.store import raw_sql
from crewctl.store.models import SCHEMA_VERSION

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CRITERIA = (Criterion(id="c1", text="the tests pass", verify={"run": "pytest -q"}),)




class Goal:
    def __init__(self, store, goal_id: str) -> None:
        self.store = store
        self.now = T0
        settings = phases.GoalSettings(roster={"lead": "exec:lead"}, protect=protect.settings())
        t = phases.new_goal(goal_id, "objective", "/ws", settings, self.now, criteria=CRITERIA)
        store.create_goal(t, self.now.isoformat())
        self.state, self.version = t.state, 1

    def step(self, event):
        self.now += timedelta(seconds=1)
        t = phases.step(self.state, event, self.now)
        self.version = self.store.commit(self.state, self.version, t, self.now.isoformat())
        self.state = t.state
        return t


def rows(db_url, home, goal_id: str) -> int:
    return raw_sql(db_url, home, 'SELECT COUNT(*) FROM "protected_file" WHERE "goal" = ?', (goal_id,))[0][0]


def test_a_baseline_round_trips_through_its_own_table_and_is_written_only_when_it_changes(store, db_url, home):
    g = Goal(store, "g-base")
    observed = {f"tests/test_{i:04d}.py": f"{i:064x}" for i in range(600)} | {"conftest.py": "f" * 64, "ünï/tëst_x.py": "e" * 64}
    g.step(ev.BaselineTaken(mode="full", reason="lock", observed=observed))
    assert len(g.state.baseline) == 601 and rows(db_url, home, g.state.id) == 601
    loaded, _ = store.load_goal(g.state.id)
    assert loaded == g.state
    other = open_store(db_url, home=home)
    assert other.load_goal(g.state.id)[0].baseline == g.state.baseline
    other.close()
    assert '"baseline"' not in raw_sql(db_url, home, 'SELECT "data" FROM "goal"')[0][0]  # not in every goal write

    g.step(ev.Steer(text="carry on"))  # an ordinary transition touches no baseline row
    raw_sql(db_url, home, 'UPDATE "protected_file" SET "hash" = ? WHERE "path" = ?', ("0" * 64, "conftest.py"))
    g.step(ev.Steer(text="and on"))
    assert raw_sql(db_url, home, 'SELECT "hash" FROM "protected_file" WHERE "path" = ?', ("conftest.py",)) == [("0" * 64,)]

    g.step(ev.EditProtect(rebaseline=True))
    g.step(ev.BaselineTaken(mode="full", reason="protect", observed={"tests/test_0001.py": "a" * 64}))
    assert rows(db_url, home, g.state.id) == 1
    assert store.load_goal(g.state.id)[0].baseline == (("pinned", "tests/test_0001.py", "a" * 64),)


def test_a_v1_store_reads_as_it_is_and_migrates_when_a_writer_opens_it(store, db_url, home):
    g = Goal(store, "g-old")
    g.step(ev.BaselineTaken(mode="full", reason="lock", observed={"tests/t.py": "a" * 64}))
    store.close()
    # Make it a v1 database: no protected_file table, goals stored without protection.
    raw_sql(db_url, home, 'DROP TABLE "protected_file"')
    raw_sql(db_url, home, 'UPDATE "meta" SET "value" = ? WHERE "key" = ?', ("1", "schema_version"))
    data = json.loads(raw_sql(db_url, home, 'SELECT "data" FROM "goal"')[0][0])
    del data["protect"]
    raw_sql(db_url, home, 'UPDATE "goal" SET "data" = ?', (json.dumps(data),))

    reader = open_store(db_url, home=home, create=False)
    old, _ = reader.load_goal("g-old")
    assert old.baseline == () and old.protect.enabled is False and old.protect.off is None
    reader.close()
    assert raw_sql(db_url, home, 'SELECT "value" FROM "meta" WHERE "key" = ?', ("schema_version",)) == [("1",)]

    writer = open_store(db_url, home=home)
    assert raw_sql(db_url, home, 'SELECT "value" FROM "meta" WHERE "key" = ?', ("schema_version",)) == [(str(SCHEMA_VERSION),)]
    assert rows(db_url, home, "g-old") == 0
    state, version = writer.load_goal("g-old")
    assert state.protect.enabled is False and state.criteria == g.state.criteria
    writer.close()
