"""The remote half of the TaskStore contract (submit claims, moves, watch take-overs),
over the fake, SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reelgate.domain.errors import IllegalTransition
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import Move, TaskStore
from tests.fakes import make_task

ROUTES = {"doubao-seedance-2-0": [("ark-a", "seedance-a"), ("ark-b", "seedance-b")]}
CAPS = {"ark-a": 1, "ark-b": 1}
LEASE = 60.0


async def claim(store: TaskStore, now: float, limit: int = 10, worker: str = "w1") -> list:
    return await store.claim_submits(
        worker=worker, now=now, lease_seconds=LEASE, routes=ROUTES, caps=CAPS, limit=limit
    )


def accepted(task: Task, now: float, upstream_id: str, worker: str = "w1") -> Move:
    return Move(
        task.id,
        frozenset({Phase.SUBMITTING}),
        Phase.WATCHING,
        now,
        holder=("lease_owner", worker),
        fields={
            "upstream_id": upstream_id,
            "submitted_at": now,
            "lease_owner": None,
            "lease_until": None,
            "next_check_at": now + 5,
        },
        detail="accepted",
    )


async def test_submit_claim_records_the_intent_and_holds_the_caps(store: TaskStore) -> None:
    tasks = [make_task(1000.0 + i) for i in range(3)]
    for task in tasks:
        await store.create_task(task)
    await store.create_task(make_task(999.0, model="doubao-seedance-1-5-pro"))  # not routed
    claimed = await claim(store, 2000.0)
    assert [(c.task.id, c.lost) for c in claimed] == [(tasks[0].id, False), (tasks[1].id, False)]
    first, second = (c.task for c in claimed)
    assert (first.phase, first.status, first.provider, first.upstream_model) == (
        Phase.SUBMITTING,
        Status.SUBMITTED,
        "ark-a",
        "seedance-a",
    )
    assert (second.provider, second.upstream_model) == ("ark-b", "seedance-b")
    assert (first.lease_owner, first.lease_until, first.submitted_at, first.attempts) == (
        "w1",
        2060.0,
        2000.0,
        1,
    )
    assert [e.detail for e in await store.list_events(first.id)] == [
        "created",
        "submitting to ark-a",
    ]
    # Both providers are at their cap: the third task waits, SUBMITTED.
    assert await claim(store, 2001.0) == []
    waiting = await store.get_task(tasks[2].id)
    assert waiting is not None and waiting.phase is Phase.QUEUED


async def test_a_lost_submission_comes_back_with_its_route(store: TaskStore) -> None:
    task = make_task()
    await store.create_task(task)
    [first] = await claim(store, 2000.0)
    assert await claim(store, 2030.0, worker="w2") == []  # the lease still holds
    [again] = await claim(store, 2061.0, worker="w2")
    assert again.lost and again.task.id == task.id
    assert (again.task.provider, again.task.submitted_at) == ("ark-a", 2000.0)
    assert (again.task.lease_owner, again.task.attempts) == ("w2", 2)
    with pytest.raises(IllegalTransition):  # the first submitter no longer holds it
        await store.move(accepted(first.task, 2062.0, "cgt-1"))
    watching = await store.move(accepted(again.task, 2062.0, "cgt-1", worker="w2"))
    assert (watching.phase, watching.status, watching.upstream_id) == (
        Phase.WATCHING,
        Status.IN_PROGRESS,
        "cgt-1",
    )
    assert watching.lease_owner is None
    assert await store.upstream_ids("ark-a", since=1000.0) == {"cgt-1"}
    assert await store.upstream_ids("ark-b", since=1000.0) == set()


async def test_reroute_and_back_to_the_queue(store: TaskStore) -> None:
    task = make_task()
    await store.create_task(task)
    [claimed] = await claim(store, 2000.0)
    moved = await store.reroute_submit(
        task.id, worker="w1", now=2001.0, routes=ROUTES["doubao-seedance-2-0"],
        tried=["ark-a"], caps=CAPS,
    )  # fmt: skip
    assert moved is not None and (moved.provider, moved.upstream_model) == ("ark-b", "seedance-b")
    none_left = await store.reroute_submit(
        task.id, worker="w1", now=2002.0, routes=ROUTES["doubao-seedance-2-0"],
        tried=["ark-a", "ark-b"], caps=CAPS,
    )  # fmt: skip
    assert none_left is None
    back = await store.move(
        Move(
            task.id,
            frozenset({Phase.SUBMITTING}),
            Phase.QUEUED,
            2003.0,
            holder=("lease_owner", "w1"),
            fields={"lease_owner": None, "lease_until": None, "next_check_at": 2100.0},
        )
    )
    assert (back.phase, back.status) == (Phase.QUEUED, Status.SUBMITTED)
    assert await claim(store, 2050.0) == []  # not due yet
    [due] = await claim(store, 2100.0)
    assert (
        due.task.id == task.id and not due.lost and due.task.attempts == claimed.task.attempts + 1
    )


async def test_moves_are_checked_against_the_machine(store: TaskStore) -> None:
    task = make_task()
    await store.create_task(task)
    [claimed] = await claim(store, 2000.0)
    watching = await store.move(accepted(claimed.task, 2001.0, "cgt-9"))
    with pytest.raises(IllegalTransition):  # no video yet: SUCCESS only after re-hosting
        Move(task.id, frozenset({Phase.WATCHING}), Phase.DONE, 2002.0, Status.SUCCESS).status()
    with pytest.raises(IllegalTransition):  # not in that phase any more
        await store.move(accepted(claimed.task, 2002.0, "cgt-9"))
    step = Move(
        task.id, frozenset({Phase.WATCHING}), Phase.WATCHING, 2003.0, fields={"progress": 40}
    )
    assert (await store.move(step)).progress == 40
    lower = replace(step, fields={"progress": 10})
    assert (await store.move(lower)).progress == 40  # progress never goes down
    rehosting = await store.move(
        Move(task.id, frozenset({Phase.WATCHING}), Phase.REHOSTING, 2004.0,
             fields={"upstream_url": "http://x/v.mp4?a=%2F"})
    )  # fmt: skip
    assert rehosting.upstream_url == "http://x/v.mp4?a=%2F"
    done = await store.move(
        Move(task.id, frozenset({Phase.REHOSTING}), Phase.DONE, 2005.0, Status.SUCCESS,
             fields={"output_key": "videos/x.1.mp4"})
    )  # fmt: skip
    assert (done.status, done.progress, done.completed_at, done.watcher) == (
        Status.SUCCESS,
        100,
        2005.0,
        None,
    )
    assert watching.status is Status.IN_PROGRESS
    with pytest.raises(IllegalTransition):  # terminal: nothing moves again
        await store.move(Move(task.id, frozenset({Phase.DONE}), Phase.DONE, 2006.0, Status.ERROR))


async def test_pollers_take_over_only_what_no_live_poller_holds(store: TaskStore) -> None:
    ids = []
    for i in range(3):
        task = make_task(1000.0 + i)
        await store.create_task(task)
        ids.append(task.id)
    for claimed in await store.claim_submits(
        worker="w1", now=2000.0, lease_seconds=LEASE, routes=ROUTES,
        caps={"ark-a": 10}, limit=10,
    ):  # fmt: skip
        await store.move(accepted(claimed.task, 2001.0, f"up-{claimed.task.id}"))
    await store.beat_poller("p1", now=2001.0, alive_until=2031.0)
    taken = await store.claim_watch(poller="p1", now=2001.0, limit=2)
    assert len(taken) == 2 and all(t.watcher == "p1" for t in taken)
    await store.beat_poller("p2", now=2002.0, alive_until=2032.0)
    rest = await store.claim_watch(poller="p2", now=2002.0, limit=10)
    assert [t.id for t in rest] == [i for i in ids if i not in {t.id for t in taken}]
    assert await store.claim_watch(poller="p2", now=2010.0, limit=10) == []  # p1 is alive
    # p1 stops beating: p2 takes its tasks; p1's writes then fail.
    await store.beat_poller("p2", now=2040.0, alive_until=2070.0)
    took_over = await store.claim_watch(poller="p2", now=2040.0, limit=10)
    assert sorted(t.id for t in took_over) == sorted(t.id for t in taken)
    stale = Move(taken[0].id, frozenset({Phase.WATCHING}), Phase.WATCHING, 2041.0,
                 holder=("watcher", "p1"), fields={"faults": 1}, record=False)  # fmt: skip
    with pytest.raises(IllegalTransition):
        await store.move(stale)
    await store.drop_poller("p2", now=2042.0)  # p2 stops: hands everything back at once
    await store.beat_poller("p3", now=2043.0, alive_until=2073.0)
    assert len(await store.claim_watch(poller="p3", now=2043.0, limit=10)) == 3


async def test_pollers_are_listed_with_their_last_beat(store: TaskStore) -> None:
    assert await store.list_pollers() == []
    await store.beat_poller("p2", now=2000.0, alive_until=2030.0)
    await store.beat_poller("p1", now=2000.0, alive_until=2030.0)
    await store.beat_poller("p1", now=2010.0, alive_until=2040.0)
    assert await store.list_pollers() == [("p1", 2040.0), ("p2", 2030.0)]
    await store.drop_poller("p2", now=2011.0)
    assert await store.list_pollers() == [("p1", 2040.0)]


async def test_learned_durations(store: TaskStore) -> None:
    assert await store.expected_duration("ark-a", "m", 5, "720p") is None
    await store.learn_duration("ark-a", "m", 5, "720p", 100.0)
    await store.learn_duration("ark-a", "m", 5, "720p", 50.0)
    assert await store.expected_duration("ark-a", "m", 5, "720p") == pytest.approx(90.0)
    assert await store.expected_duration("ark-a", "m", 10, "720p") is None


async def test_a_full_provider_never_holds_back_another_model(store: TaskStore) -> None:
    routes = {"doubao-seedance-2-0": [("full", "a")], "doubao-seedance-1-0-pro": [("free", "b")]}
    caps = {"full": 1, "free": 5}
    for i in range(40):  # older tasks of the model whose provider fills up at once
        await store.create_task(make_task(1000.0 + i))
    newer = make_task(5000.0, model="doubao-seedance-1-0-pro")
    await store.create_task(newer)
    first = await store.claim_submits(
        worker="w", now=6000.0, lease_seconds=LEASE, routes=routes, caps=caps, limit=1
    )
    assert [c.task.provider for c in first] == ["full"]
    second = await store.claim_submits(
        worker="w", now=6001.0, lease_seconds=LEASE, routes=routes, caps=caps, limit=1
    )
    assert [c.task.id for c in second] == [newer.id]
