"""Whether the database and the storage take writes, as ``/readyz`` and workers ask it:
real folders, a real read-only PostgreSQL database, real free-space figures."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from reelgate.blobs.local import LocalBlobs, check_writable, free_bytes, probe_folder
from reelgate.blobs.memory import MemoryBlobs
from reelgate.domain.errors import Unavailable
from reelgate.store import open_store
from tests.pg import temporary_database

HUGE = 2**62  # more free bytes than any disk has


def test_a_folder_that_takes_writes_passes_and_keeps_nothing(tmp_path: Path) -> None:
    probe_folder(tmp_path / "new", 1)
    assert list((tmp_path / "new").iterdir()) == []
    assert free_bytes(tmp_path) > 0


@pytest.mark.parametrize("min_free", [HUGE, None])
def test_a_folder_fails_below_the_minimum_or_when_it_cannot_exist(
    tmp_path: Path, min_free: int | None
) -> None:
    folder = tmp_path
    if min_free is None:
        (tmp_path / "file").write_text("not a folder")
        folder = tmp_path / "file" / "blobs"
    with pytest.raises(Unavailable) as raised:
        probe_folder(folder, min_free or 0)
    assert str(folder) in raised.value.message  # the operator's detail (log only)


async def test_check_writable_probes_local_blobs_and_folders(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "blobs")
    await check_writable(blobs, [tmp_path / "scratch"], min_free_bytes=1)
    await blobs.ping()
    with pytest.raises(Unavailable, match="REELGATE_MIN_FREE_BYTES"):
        await check_writable(blobs, min_free_bytes=HUGE)
    await check_writable(MemoryBlobs(), min_free_bytes=HUGE)  # not a folder: its ping only


async def test_local_blob_reads_of_an_unreadable_blob_are_unavailable(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "blobs")
    (tmp_path / "blobs" / "videos" / "x.mp4").mkdir(parents=True)  # a folder, not a file
    with pytest.raises(Unavailable):
        await blobs.get_bytes("videos/x.mp4")
    assert not await blobs.exists("videos/x.mp4")


async def test_sqlite_takes_writes_unless_its_folder_is_short_of_space(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db' / 'tasks.db'}")
    await store.migrate()
    try:
        await store.check_writes(min_free_bytes=1)
        with pytest.raises(Unavailable, match="REELGATE_MIN_FREE_BYTES"):
            await store.check_writes(min_free_bytes=HUGE)
        assert sorted(p.name for p in (tmp_path / "db").iterdir() if "probe" in p.name) == []
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_takes_writes_unless_read_only() -> None:
    with temporary_database() as url:
        store = open_store(url)
        await store.migrate()
        try:
            await store.check_writes(min_free_bytes=HUGE)  # the server's disk is its own
        finally:
            await store.close()
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        store = open_store(url)
        try:
            with pytest.raises(Unavailable, match="read-only"):
                await store.check_writes()
        finally:
            await store.close()
