"""The pure scheduler: lanes, affinity, capacity, backoff, liveness, instances, late results."""

from __future__ import annotations

import pytest

from crewctl.exceptions import ProtocolError
from crewctl.transport.scheduler import IN_PROCESS, NAMES_CAP, Scheduler, Task, in_process_name

HB = 1.0  # heartbeat; a host is dead after 3 silent seconds
KEY = "A" * 40  # a host's CURVE public key, as the broker passes it on (z85)
OTHER_KEY = "B" * 40


def sched() -> Scheduler:
    return Scheduler(heartbeat=HB, liveness=3)


def task(tid: str, goal: str = "g", step: str | None = None, lane: str | None = None, not_before: float | None = None) -> Task:
    return Task(id=tid, goal=goal, step=step or tid, lane=lane, not_before=not_before)


def assigned(s: Scheduler, now: float = 0.0) -> dict[str, str]:
    return {t.id: h.name for t, h in s.assign(now)}


def test_a_step_with_a_lane_goes_only_to_a_host_serving_that_lane():
    s = sched()
    s.hello(b"a", "plain", "i1", [], 4, now=0, owner=KEY)
    s.hello(b"b", "gpu-box", "i2", ["gpu"], 4, now=0, owner=KEY)
    s.enqueue(task("t1", lane="gpu"))
    assert assigned(s) == {"t1": "gpu-box"}


def test_a_host_without_lanes_serves_only_lane_less_steps_and_a_laned_host_serves_both():
    s = sched()
    s.hello(b"a", "plain", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1", lane="gpu"))
    assert assigned(s) == {}
    s.enqueue(task("t2"))
    assert assigned(s) == {"t2": "plain"}
    s.hello(b"b", "gpu-box", "i2", ["gpu"], 2, now=0, owner=KEY)
    s.enqueue(task("t3"))
    assert assigned(s) == {"t1": "gpu-box", "t3": "gpu-box"}


def test_a_step_whose_lane_nobody_serves_waits_without_holding_up_the_queue():
    s = sched()
    s.hello(b"a", "plain", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1", lane="arm64"))
    s.enqueue(task("t2"))
    assert assigned(s) == {"t2": "plain"}
    assert [t.id for t in s.queue] == ["t1"]


def test_a_goals_tasks_prefer_the_host_that_last_served_the_goal():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 4, now=0, owner=KEY)
    s.hello(b"b", "beta", "i2", [], 4, now=0, owner=KEY)
    s.enqueue(task("g1-t1", goal="g1"))
    first = assigned(s)["g1-t1"]
    s.complete(b"a" if first == "alpha" else b"b", "g1-t1")
    s.enqueue(task("g1-t2", goal="g1"))
    assert assigned(s, 1.0) == {"g1-t2": first}


def test_affinity_never_makes_a_task_wait_for_a_busy_host():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1", goal="g1"))
    assert assigned(s) == {"t1": "alpha"}
    s.hello(b"b", "beta", "i2", [], 1, now=0, owner=KEY)
    s.enqueue(task("t2", goal="g1"))
    assert assigned(s) == {"t2": "beta"}


def test_without_affinity_the_host_with_most_free_slots_wins():
    s = sched()
    s.hello(b"a", "small", "i1", [], 1, now=0, owner=KEY)
    s.hello(b"b", "big", "i2", [], 3, now=0, owner=KEY)
    s.enqueue(task("t1", goal="g1"))
    s.enqueue(task("t2", goal="g2"))
    s.enqueue(task("t3", goal="g3"))
    assert sorted(assigned(s).values()) == ["big", "big", "small"]


def test_a_host_never_runs_more_tasks_than_its_capacity():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 2, now=0, owner=KEY)
    for i in range(5):
        s.enqueue(task(f"t{i}"))
    assert list(assigned(s)) == ["t0", "t1"]
    assert assigned(s) == {}
    s.complete(b"a", "t0")
    assert list(assigned(s)) == ["t2"]
    assert s.in_flight() == 2 and s.queued() == 2


def test_a_task_waits_for_its_not_before_then_runs():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 2, now=0, owner=KEY)
    s.enqueue(task("later", not_before=10.0))
    s.enqueue(task("now"))
    assert assigned(s, 5.0) == {"now": "alpha"}
    assert s.next_due(5.0) == 10.0
    assert assigned(s, 9.9) == {}
    assert assigned(s, 10.0) == {"later": "alpha"}
    assert s.next_due(10.0) is None


def test_a_silent_host_expires_and_its_tasks_are_reported_lost_not_requeued():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 2, now=0, owner=KEY)
    s.hello(b"b", "beta", "i2", [], 2, now=0, owner=KEY)
    s.enqueue(task("t1", goal="g1"))
    s.enqueue(task("t2", goal="g2"))
    placed = assigned(s)
    s.seen(b"b", 2.5)
    assert s.expire(3.0) == []  # exactly liveness * heartbeat of silence is still alive
    lost = s.expire(3.1)
    assert [(x.task.id, x.host) for x in lost] == [(t, "alpha") for t, h in placed.items() if h == "alpha"]
    assert "silent" in lost[0].reason
    assert [h.name for h in s.host_infos()] == ["beta"]
    assert s.queued() == 0  # the goal core decides the retry, under a new task id


def test_any_traffic_keeps_a_host_alive():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    for t in (2.0, 4.0, 6.0):
        s.seen(b"a", t)
        assert s.expire(t + 2.9) == []
    assert s.attached(b"a")


def test_a_hello_from_a_known_name_with_a_new_instance_means_the_old_one_died():
    s = sched()
    s.hello(b"old", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1"))
    assigned(s)
    outcome = s.hello(b"new", "alpha", "i2", [], 1, now=1, owner=KEY)
    assert outcome.replaced == b"old" and not outcome.reconnect
    assert [x.task.id for x in outcome.lost] == ["t1"]
    assert "new instance" in outcome.lost[0].reason
    assert [h.instance for h in s.host_infos()] == ["i2"]
    with pytest.raises(ProtocolError):
        s.seen(b"old", 2)


def test_a_hello_from_the_same_instance_on_a_new_connection_keeps_its_tasks():
    s = sched()
    s.hello(b"c1", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1"))
    assigned(s)
    outcome = s.hello(b"c2", "alpha", "i1", [], 1, now=1, owner=KEY)
    assert outcome.reconnect and outcome.lost == ()
    done = s.complete(b"c2", "t1")
    assert not done.late and done.host == "alpha"


def test_a_result_from_a_host_that_no_longer_holds_the_task_is_late():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("g/s1/1", goal="g", step="s1"))
    assigned(s)
    s.expire(10.0)  # alpha died; its task is lost
    late = s.complete(b"a", "g/s1/1")  # ... then its result arrives anyway
    assert late.late and (late.goal, late.step, late.host) == ("g", "s1", "alpha")


def test_a_task_is_completed_once_and_a_second_result_is_late():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1"))
    assigned(s)
    assert not s.complete(b"a", "t1").late
    assert s.complete(b"a", "t1").late


def test_a_result_for_an_unknown_task_or_from_a_stranger_is_a_protocol_error():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    with pytest.raises(ProtocolError, match="unknown task"):
        s.complete(b"a", "never-queued")
    s.enqueue(task("t1"))
    assigned(s)
    with pytest.raises(ProtocolError, match="hello"):
        s.complete(b"stranger", "t1")
    with pytest.raises(ProtocolError, match="hello"):
        s.seen(b"stranger", 1.0)


def test_cancel_goal_drops_its_queued_tasks_and_cancels_its_running_ones():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("g1-a", goal="g1"))
    s.enqueue(task("g1-b", goal="g1"))
    s.enqueue(task("g2-a", goal="g2"))
    assert assigned(s) == {"g1-a": "alpha"}
    assert s.cancel_goal("g1") == [(b"a", "g1-a")]
    assert [t.id for t in s.queue] == ["g2-a"]
    assert assigned(s) == {}  # the cancelled task holds its slot until the host reports
    done = s.complete(b"a", "g1-a")
    assert done.cancelled
    assert assigned(s) == {"g2-a": "alpha"}


def test_a_cancelled_task_is_not_reported_lost_when_its_host_dies():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 2, now=0, owner=KEY)
    s.enqueue(task("t1", goal="g1"))
    s.enqueue(task("t2", goal="g2"))
    assigned(s)
    s.cancel_goal("g1")
    assert [x.task.id for x in s.expire(10.0)] == ["t2"]


def test_queueing_a_new_task_for_a_step_withdraws_the_older_one():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("g/s1/1", goal="g", step="s1"))
    s.enqueue(task("g/s2/1", goal="g", step="s2"))
    assert assigned(s) == {"g/s1/1": "alpha"}
    assert s.enqueue(task("g/s2/2", goal="g", step="s2")) == []  # the queued one just goes
    assert [t.id for t in s.queue] == ["g/s2/2"]
    assert s.enqueue(task("g/s1/2", goal="g", step="s1")) == [(b"a", "g/s1/1")]


def test_bye_reports_the_hosts_tasks_lost_at_once():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1"))
    assigned(s)
    assert [x.task.id for x in s.bye(b"a")] == ["t1"]
    assert s.host_infos() == []


def test_a_task_id_is_queued_at_most_once():
    s = sched()
    s.enqueue(task("t1"))
    with pytest.raises(ValueError):
        s.enqueue(task("t1"))


def test_queue_order_is_first_come_first_served():
    s = sched()
    for i in range(3):
        s.enqueue(task(f"t{i}", goal=f"g{i}"))
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    assert list(assigned(s)) == ["t0"]


# -- names belong to keys ----------------------------------------------------------------------


def test_a_name_held_by_one_key_is_refused_to_another_and_nothing_changes():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.enqueue(task("t1"))
    assert assigned(s) == {"t1": "alpha"}
    outcome = s.hello(b"x", "alpha", "i9", [], 1, now=1, owner=OTHER_KEY)
    assert outcome.refused and "belongs to another" in outcome.refused
    assert (outcome.lost, outcome.replaced) == ((), None)
    assert [(h.name, h.instance, h.in_flight) for h in s.host_infos()] == [("alpha", "i1", 1)]
    assert not s.attached(b"x")


def test_a_name_stays_with_its_key_after_the_host_leaves_and_comes_back_to_that_key():
    s = sched()
    s.hello(b"a", "alpha", "i1", [], 1, now=0, owner=KEY)
    s.bye(b"a")
    assert s.hello(b"x", "alpha", "i9", [], 1, now=1, owner=OTHER_KEY).refused
    assert s.hello(b"b", "alpha", "i2", [], 1, now=2, owner=KEY).refused is None
    assert [h.instance for h in s.host_infos()] == ["i2"]


def test_in_process_names_are_only_for_in_process_hosts_and_they_take_no_other():
    s = sched()
    refused = s.hello(b"x", in_process_name(1), "i9", [], 1, now=0, owner=KEY).refused
    assert refused and "reserved" in refused
    assert s.hello(b"l", in_process_name(1), "i1", [], 1, now=0, owner=IN_PROCESS).refused is None
    assert s.hello(b"m", "alpha", "i2", [], 1, now=0, owner=IN_PROCESS).refused
    assert s.hello(b"y", "local-gpu", "i3", [], 1, now=0, owner=KEY).refused is None  # only local-N is reserved
    assert [h.name for h in s.host_infos()] == ["local-1", "local-gpu"]


def test_the_names_a_scheduler_holds_are_capped():
    s = sched()
    for i in range(NAMES_CAP):
        assert s.hello(f"c{i}".encode(), f"h{i}", "i", [], 1, now=0, owner=KEY).refused is None
    assert "holds" in s.hello(b"one-more", "late", "i", [], 1, now=0, owner=KEY).refused
    assert s.hello(b"again", "h0", "i2", [], 1, now=0, owner=KEY).refused is None  # a held name still works
