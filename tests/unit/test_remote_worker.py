"""The submitter and the watcher over the in-memory fakes of their ports, with a
scripted provider: every outcome of a remote task, step by step, without a network."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pytest

from reelgate.backends.remote.fakes.clips import clip
from reelgate.blobs.memory import MemoryBlobs
from reelgate.config import ProviderConfig, WatchConfig
from reelgate.domain.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamGone,
    UpstreamRefused,
    UpstreamUncertain,
)
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask
from reelgate.store.memory import MemoryStore
from reelgate.worker.submit import SubmitConfig, Submitter
from reelgate.worker.watch import Watcher
from tests.fakes import make_task

MODEL = "doubao-seedance-2-0"
Answer = str | UpstreamTask | UpstreamError | bytes | None


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """A provider whose answers are queued per method; an error in the queue is raised."""

    kind = "ark"

    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: dict[str, list[Answer]] = {m: [] for m in ("submit", "get", "download")}
        self.lost: str | None = None
        self.calls: list[str] = []

    def queue(self, method: str, *answers: Answer) -> None:
        self.answers[method].extend(answers)

    def _next(self, method: str) -> Answer:
        self.calls.append(method)
        answer = self.answers[method].pop(0)
        if isinstance(answer, UpstreamError):
            raise answer
        return answer

    async def submit(self, job: UpstreamJob) -> str:
        answer = self._next("submit")
        assert isinstance(answer, str)
        return answer

    async def get(self, upstream_id: str) -> UpstreamTask:
        answer = self._next("get")
        assert isinstance(answer, UpstreamTask)
        return answer

    async def download(
        self, upstream_id: str, task: UpstreamTask, dest: Path, max_bytes: int
    ) -> None:
        answer = self._next("download")
        assert isinstance(answer, bytes)
        dest.write_bytes(answer)

    async def cancel(self, upstream_id: str) -> None:
        return None

    async def find_lost(
        self, job: UpstreamJob, *, since: float, known: Collection[str]
    ) -> str | None:
        self.calls.append("find_lost")
        return self.lost

    async def close(self) -> None:
        return None


class Rig:
    def __init__(self, tmp_path: Path, **watch: float) -> None:
        self.store, self.blobs, self.clock = MemoryStore(), MemoryBlobs(), Clock()
        self.a, self.b = ScriptedProvider("a"), ScriptedProvider("b")
        providers = {"a": self.a, "b": self.b}
        ark = ProviderConfig(kind="ark", base_url="http://x", api_key_env="K")
        self.watch = WatchConfig(**watch)  # type: ignore[arg-type]
        self.config = SubmitConfig(
            routes={MODEL: [("a", "up-a"), ("b", "up-b")]},
            providers={"a": ark, "b": ark},
            watch=self.watch,
        )
        self.watcher = Watcher(
            self.store, self.blobs, providers, self.clock, self.watch, self.config.providers,
            poller="w", scratch_dir=tmp_path,
        )  # fmt: skip
        self.accepted: list[Task] = []
        self.submitter = Submitter(
            self.store, self.blobs, providers, self.clock, self.config, worker="w",
            on_accepted=self.accepted.append, input_url=lambda key: f"http://x/{key}",
        )  # fmt: skip

    async def submit_one(self) -> Task:
        task = make_task(self.clock.now)
        await self.store.create_task(task)
        return await self.resubmit(task.id)

    async def resubmit(self, task_id: str) -> Task:
        claimed = await self.submitter.claim(1)
        assert [c.task.id for c in claimed] == [task_id]
        await self.submitter.submit(claimed[0])
        return await self.get(task_id)

    async def get(self, task_id: str) -> Task:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task

    async def watching(self) -> Task:
        self.a.queue("submit", "up-1")
        await self.store.beat_poller("w", now=self.clock.now, alive_until=self.clock.now + 1e6)
        return await self.submit_one()


async def test_accepted_tasks_are_watched_with_a_learned_expectation(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    task = await rig.watching()
    assert (task.phase, task.status, task.upstream_id, task.watcher) == (
        Phase.WATCHING,
        Status.IN_PROGRESS,
        "up-1",
        "w",
    )
    assert task.expected_seconds == 60.0 and rig.accepted == [task]


async def test_refusal_fails_and_busy_falls_back_then_waits(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_submit_tries=2)
    rig.a.queue("submit", UpstreamRefused("no", code="content_rejected"))
    refused = await rig.submit_one()
    assert (refused.status, refused.error_code, refused.error_message) == (
        Status.FAILED,
        "content_rejected",
        "no",
    )
    rig.a.queue("submit", UpstreamBusy("429"))
    rig.b.queue("submit", "up-b-1")
    fell_back = await rig.submit_one()
    assert (fell_back.provider, fell_back.upstream_model, fell_back.upstream_id) == (
        "b",
        "up-b",
        "up-b-1",
    )
    rig.a.queue("submit", UpstreamBusy("429", retry_after=30))
    rig.b.queue("submit", UpstreamBusy("503", retry_after=40))
    waiting = await rig.submit_one()
    assert (waiting.phase, waiting.status, waiting.provider) == (
        Phase.QUEUED,
        Status.SUBMITTED,
        None,
    )
    assert waiting.next_check_at is not None and waiting.next_check_at >= rig.clock.now + 30
    rig.clock.now = waiting.next_check_at
    rig.a.queue("submit", UpstreamBusy("429"))
    rig.b.queue("submit", UpstreamBusy("503"))
    spent = await rig.resubmit(waiting.id)
    assert (spent.status, spent.error_code) == (Status.ERROR, "upstream_unavailable")


@pytest.mark.parametrize("found", ["up-lost", None])
async def test_an_unanswered_submission_is_looked_for_never_resent(
    tmp_path: Path, found: str | None
) -> None:
    rig = Rig(tmp_path)
    rig.a.queue("submit", UpstreamUncertain("read timeout"))
    rig.a.lost = found
    task = await rig.submit_one()
    assert rig.a.calls == ["submit", "find_lost"]
    if found:
        assert (task.phase, task.upstream_id) == (Phase.WATCHING, "up-lost")
    else:
        assert (task.status, task.error_code) == (Status.ERROR, "upstream_submit_unknown")


async def test_a_poll_round_to_success_stores_the_video(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    task = await rig.watching()
    rig.a.queue("get", UpstreamTask(UpstreamState.RUNNING, progress=40))
    await rig.watcher._visit(task)
    task = await rig.get(task.id)
    assert task.progress == 40
    url = "http://cdn/v.mp4?sig=a%2Fb"
    rig.a.queue("get", UpstreamTask(UpstreamState.SUCCEEDED, video_url=url, usage_tokens=7))
    rig.clock.now += 50
    await rig.watcher._visit(task)
    task = await rig.get(task.id)
    assert (task.phase, task.upstream_url, task.usage_tokens) == (Phase.REHOSTING, url, 7)
    assert await rig.store.expected_duration("a", "up-a", 5, "720p") == 50.0
    rig.a.queue("download", clip(2, "16:9"))
    await rig.watcher._visit(task)
    done = await rig.get(task.id)
    assert (done.status, done.progress, done.output_key) == (Status.SUCCESS, 100, done.output_key)
    assert done.output_key is not None and await rig.blobs.exists(done.output_key)
    assert rig.watcher.held == 0


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (UpstreamTask(UpstreamState.FAILED, error_code="content_rejected"), "content_rejected"),
        (UpstreamTask(UpstreamState.EXPIRED), "upstream_expired"),
        (UpstreamTask(UpstreamState.CANCELLED), "upstream_cancelled"),
        (UpstreamGone("gone", code="upstream_task_missing"), "upstream_task_missing"),
    ],
)
async def test_upstream_endings(tmp_path: Path, answer: Answer, code: str) -> None:
    rig = Rig(tmp_path)
    task = await rig.watching()
    rig.a.queue("get", answer)
    await rig.watcher._visit(task)
    ended = await rig.get(task.id)
    expected = Status.FAILED if code == "content_rejected" else Status.ERROR
    assert (ended.status, ended.error_code) == (expected, code)


async def test_faults_back_off_honour_retry_after_and_end_when_spent(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_faults=2)
    task = await rig.watching()
    rig.a.queue("get", UpstreamBusy("429", retry_after=45))
    await rig.watcher._visit(task)
    task = await rig.get(task.id)
    assert task.faults == 1 and task.next_check_at is not None
    assert task.next_check_at >= rig.clock.now + 45
    rig.a.queue("get", UpstreamTask(UpstreamState.RUNNING))
    await rig.watcher._visit(task)
    task = await rig.get(task.id)
    assert task.faults == 0  # a good answer clears the count
    rig.a.queue("get", UpstreamBusy("503"), UpstreamBusy("503"), UpstreamBusy("503"))
    for _ in range(3):
        await rig.watcher._visit(await rig.get(task.id))
    ended = await rig.get(task.id)
    assert (ended.status, ended.error_code) == (Status.ERROR, "upstream_unavailable")


async def test_downloads_are_retried_until_the_url_expires(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_faults=1)
    task = await rig.watching()
    expires = rig.clock.now + 100
    success = UpstreamTask(
        UpstreamState.SUCCEEDED, video_url="http://cdn/v", video_expires_at=expires
    )
    rig.a.queue("get", success)
    await rig.watcher._visit(task)
    for _ in range(3):  # more faults than max_faults: the URL has not expired yet
        rig.a.queue("download", UpstreamBusy("cut"))
        await rig.watcher._visit(await rig.get(task.id))
        assert (await rig.get(task.id)).phase is Phase.REHOSTING
    rig.clock.now = expires
    rig.a.queue("download", UpstreamBusy("cut"))
    await rig.watcher._visit(await rig.get(task.id))
    ended = await rig.get(task.id)
    assert (ended.status, ended.error_code) == (Status.ERROR, "upstream_video_expired")


async def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    task = await rig.watching()
    rig.a.queue("get", UpstreamTask(UpstreamState.SUCCEEDED, video_url="http://cdn/v"))
    await rig.watcher._visit(task)
    rig.a.queue("download", b"<html>AccessDenied</html>")
    await rig.watcher._visit(await rig.get(task.id))
    ended = await rig.get(task.id)
    assert (ended.status, ended.error_code) == (Status.ERROR, "upstream_bad_video")
    assert not list(tmp_path.iterdir()), "the scratch file is gone"


async def test_a_provider_refusing_our_key_falls_back_then_errors(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.a.queue("submit", UpstreamRefused("bad key", code="upstream_refused"))
    rig.b.queue("submit", "up-b-9")
    served = await rig.submit_one()
    assert (served.provider, served.upstream_id) == ("b", "up-b-9")
    rig.a.queue("submit", UpstreamRefused("bad key", code="upstream_refused"))
    rig.b.queue("submit", UpstreamRefused("model not open", code="upstream_refused"))
    ended = await rig.submit_one()
    assert (ended.status, ended.error_code) == (Status.ERROR, "upstream_refused")
