"""Storage faults on a real small disk (a 2 MiB tmpfs holds the blob storage).

- Full: the renders in flight cannot store their videos; their tasks go back to the
  queue with backoff (not ERROR, the attempt given back), the worker claims nothing
  more, ``/readyz`` answers 503 in the envelope, also while free space stays below
  ``REELGATE_MIN_FREE_BYTES``; once space is freed every task succeeds.
- Read-only: the same, with the disk remounted read-only and then writable again.

No message a client can see carries a server path or an errno.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.common import (
    Db,
    client,
    create,
    fill,
    remount,
    small_disk,
    start_server,
    videos,
)
from tests.procs import Api, Proc, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
MIN_FREE = 1024 * 1024  # of the 2 MiB disk
WAITING = {"SUBMITTED", "IN_PROGRESS"}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "2m") as path:
        yield path


def serve(tmp_path: Path, database: str, disk: Path, delay: str, renderer: str) -> Api:
    return start_server(
        tmp_path / "server",
        database,
        workers=2,
        REELGATE_STORAGE_URL=f"file://{disk}",
        REELGATE_MIN_FREE_BYTES=str(MIN_FREE),
        REELGATE_RENDERER=renderer,
        REELGATE_PREVIEW_DELAY=f"*={delay}",
        REELGATE_LEASE_SECONDS="30",
    )


def readiness(http: httpx.Client) -> httpx.Response:
    return http.get("/readyz")


def unready(http: httpx.Client) -> bool:
    response = readiness(http)
    if response.status_code == 200:
        return False
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("service_unavailable", "service_unavailable")
    assert response.headers["retry-after"]
    return True


def waiting(http: httpx.Client, ids: list[str], api: Api) -> dict[str, dict[str, object]]:
    seen = videos(http, ids)
    statuses = {str(video["status"]) for video in seen.values()}
    assert statuses <= WAITING, (seen, api.output()[-3000:])
    return seen


def check_clean(api: Api, http: httpx.Client, ids: list[str], db: Db, *secrets: str) -> None:
    """Every task SUCCESS, and nothing a client sees carries a path or an errno."""
    shown = [http.get(f"/v1/videos/{task_id}").text for task_id in ids]
    shown += [str(detail) for task_id in ids for detail in db.details(task_id)]
    for text in shown:
        assert "Errno" not in text, text
        for secret in secrets:
            assert secret not in text, text
    assert " ERROR (" not in api.output()


def test_a_full_disk_makes_tasks_wait_not_fail(
    disk: Path, database: str, tmp_path: Path, procs: list[Proc]
) -> None:
    api = serve(tmp_path, database, disk, "1.5", "preview")
    procs.append(api)
    db = Db(database)
    with client(api) as http:
        ids = [create(http, n) for n in range(4)]

        def two_in_flight() -> list[str] | None:
            seen = waiting(http, ids, api)
            busy = [t for t, v in seen.items() if v["status"] == "IN_PROGRESS" and v["progress"]]
            return busy if len(busy) == 2 else None

        in_flight = wait_until(two_in_flight, timeout=30, what="two renders under way")
        filler = fill(disk)
        full_at = time.monotonic()
        wait_until(lambda: unready(http), timeout=10, what="/readyz to say 503")

        def put_back() -> bool:  # both renders ended, could not be stored, and wait again
            waiting(http, ids, api)
            faults, owners = db.column("faults"), db.column("lease_owner")
            return all(faults[task_id] >= 1 and owners[task_id] is None for task_id in in_flight)

        wait_until(put_back, timeout=30, what=f"the renders to be put back\n{api.output()}")
        queued = {t for t, v in waiting(http, ids, api).items() if v["status"] == "SUBMITTED"}
        assert queued == set(ids) - set(in_flight), "a task was claimed on a full disk"
        assert "storage cannot take writes" in api.output()

        # Some space again, but less than REELGATE_MIN_FREE_BYTES: still not ready.
        os.truncate(filler, filler.stat().st_size - MIN_FREE // 2)
        assert unready(http)
        waiting(http, ids, api)

        filler.unlink()
        freed_at = time.monotonic()
        wait_until(lambda: not unready(http), timeout=10, what="/readyz to say 200")

        def all_done() -> bool:
            return {v["status"] for v in waiting_or_done(http, ids, api).values()} == {"SUCCESS"}

        wait_until(all_done, timeout=45, what=f"every task to succeed\n{api.output()[-3000:]}")
        took = time.monotonic() - freed_at
        check_clean(api, http, ids, db, str(tmp_path), str(disk))
    attempts = db.column("attempts")
    assert all(attempts[task_id] == 1 for task_id in ids), attempts  # faults are not attempts
    log = api.output()
    for task_id in in_flight:
        assert f"task {task_id}: storage could not take writes" in log
        assert "No space left on device" in log  # the detail is kept in the log
    assert "storage takes writes again" in log
    print(f"full disk for {freed_at - full_at:.1f}s: every task done {took:.1f}s after")


def waiting_or_done(http: httpx.Client, ids: list[str], api: Api) -> dict[str, dict[str, object]]:
    seen = videos(http, ids)
    statuses = {str(video["status"]) for video in seen.values()}
    assert statuses <= WAITING | {"SUCCESS"}, (seen, api.output()[-3000:])
    return seen


def test_a_read_only_disk_makes_tasks_wait_not_fail(
    disk: Path, database: str, tmp_path: Path, procs: list[Proc]
) -> None:
    api = serve(tmp_path, database, disk, "0.5", "instant")
    procs.append(api)
    db = Db(database)
    remount(disk, "ro")
    try:
        with client(api) as http:
            wait_until(lambda: unready(http), timeout=10, what="/readyz to say 503")
            ids = [create(http, n) for n in range(2)]

            def held_back() -> bool:  # queued, or claimed (a good probe is trusted a few
                # seconds), failed to store and put back; either way the worker stopped
                seen, faults, owners = (
                    waiting(http, ids, api),
                    db.column("faults"),
                    db.column("lease_owner"),
                )
                return "storage cannot take writes" in api.output() and all(
                    seen[t]["status"] == "SUBMITTED" or (faults[t] and owners[t] is None)
                    for t in ids
                )

            wait_until(held_back, timeout=20, what=f"the tasks to wait\n{api.output()}")
            assert "Read-only file system" in api.output()
    finally:
        remount(disk, "rw")
    with client(api) as http:

        def all_done() -> bool:
            return {v["status"] for v in waiting_or_done(http, ids, api).values()} == {"SUCCESS"}

        wait_until(all_done, timeout=30, what=f"every task to succeed\n{api.output()[-3000:]}")
        assert not unready(http)
        check_clean(api, http, ids, db, str(tmp_path), str(disk))
