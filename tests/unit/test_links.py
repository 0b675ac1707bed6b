"""Video links: signed once per step, the same URL for every read within it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reelgate.blobs.local import LocalBlobs
from reelgate.domain.catalog import Catalog
from reelgate.domain.status import Phase, Status
from reelgate.services.signing import Signer
from reelgate.services.tasks import FILES_PREFIX, LINK_STEP, TaskService
from reelgate.store.memory import MemoryStore
from tests.fakes import make_task

SECRET = b"s" * 32


def service(clock: list[float], root: Path) -> TaskService:
    return TaskService(
        MemoryStore(),
        LocalBlobs(root),
        Catalog(),
        lambda: clock[0],
        Signer(SECRET),
        public_url="http://x",
        url_ttl=60,
    )


def test_reads_within_a_step_share_one_valid_url(tmp_path: Path) -> None:
    clock = [1_000_001.0]
    tasks = service(clock, tmp_path)
    done = dataclasses.replace(
        make_task(), status=Status.SUCCESS, phase=Phase.DONE, output_key="videos/a.mp4"
    )
    first = tasks.link(done)
    assert first is not None and first.expires_at % LINK_STEP == 0
    assert 60 <= first.expires_at - clock[0] < 60 + LINK_STEP
    clock[0] += 1
    assert tasks.link(done) == first  # the same URL, signed once
    path = FILES_PREFIX + "videos/a.mp4"
    signature = first.url.split("signature=")[1]
    Signer(SECRET).verify(path, str(first.expires_at), signature, now=clock[0])
    clock[0] += LINK_STEP
    later = tasks.link(done)
    assert later is not None and later.expires_at == first.expires_at + LINK_STEP
    assert later.url != first.url
    assert tasks.link(make_task()) is None  # no link before SUCCESS
