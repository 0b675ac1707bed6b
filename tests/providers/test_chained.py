"""CometAPI and OpenAI-style upstreams behind reelgate, in one process each: reelgate in
front of a second, real reelgate (CometAPI's API), a fake OpenAI-style server, and what
a lost submission does where the provider cannot look it up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app
from reelgate.backends.remote.fakes.cometapi import (
    FakeCometFaults,
    FakeCometSettings,
    fake_cometapi_app,
)
from tests.pg import temporary_database
from tests.providers.harness import KEY_ENV, check_history, decode, seed_loop, write_config
from tests.server import LiveServer, start_server
from tests.upstreams import RunningFake, start_fake

MODEL = "doubao-seedance-2-0-fast"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'front.db'}"
    else:
        with temporary_database() as url:
            yield url


def front(
    tmp_path: Path,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    kind: str,
    base_url: str,
    key: str,
    **options: object,
) -> LiveServer:
    """A reelgate whose Seedance 2.0 fast is served by one upstream of ``kind``."""
    monkeypatch.setenv(KEY_ENV, key)
    config = write_config(
        tmp_path / "front.toml",
        {"up": {"kind": kind, "base_url": base_url, **options}},
        {MODEL: ["up"]},
    )
    return start_server(
        tmp_path / "front", database_url=database, config=str(config), poll_interval=0.2
    )


def test_reelgate_in_front_of_reelgate(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    back = start_server(tmp_path / "back", renderer="instant")
    try:
        server = front(tmp_path, database, monkeypatch, kind="cometapi",
                       base_url=back.base_url, key=back.api_key)  # fmt: skip
        try:
            with httpx.Client(base_url=server.base_url, headers=server.headers()) as client:
                created = client.post(
                    "/v1/videos",
                    files={
                        "prompt": (None, "a red fox in fresh snow"),
                        "model": (None, MODEL),
                        "seconds": (None, "5"),
                        "size": (None, "9:16"),
                        "resolution": (None, "480p"),
                    },
                )
                assert created.status_code == 200, created.text
                assert created.json()["status"] == "SUBMITTED"
                seen = seed_loop(client, created.json()["id"], timeout=60)
                check_history(seen)
                done = seen[-1]
                assert done["status"] == "SUCCESS", done
                assert done["video_url"].startswith(server.base_url), "served by the front"
                video = httpx.get(done["video_url"])
                assert video.status_code == 200
                decode(video.content, tmp_path)  # a real MP4, copied from the back server
                refused = client.post(
                    "/v1/videos", data={"prompt": "[[sandbox:fail]] x", "model": MODEL}
                )
                failed = seed_loop(client, refused.json()["id"], timeout=60)[-1]
                assert (failed["status"], failed["error"]["code"]) == ("FAILED", "content_rejected")
        finally:
            server.stop()
    finally:
        back.stop()


def comet(dialect: str = "cometapi", **faults: object) -> RunningFake:
    settings = FakeCometSettings(
        dialect=dialect,  # type: ignore[arg-type]
        api_keys=("k",),
        min_seconds=0.5,
        max_seconds=1.0,
        faults=FakeCometFaults(**faults),  # type: ignore[arg-type]
    )
    return start_fake(fake_cometapi_app(settings))


def test_an_openai_style_upstream(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with comet("openai") as upstream:
        server = front(tmp_path, database, monkeypatch, kind="openai",
                       base_url=upstream.base_url, key="k")  # fmt: skip
        try:
            with httpx.Client(base_url=server.base_url, headers=server.headers()) as client:
                task = client.post("/v1/videos", data={"prompt": "a lake", "model": MODEL})
                seen = seed_loop(client, task.json()["id"], timeout=60)
                check_history(seen)
                assert seen[-1]["status"] == "SUCCESS", seen[-1]
                width, height, frames = decode(httpx.get(seen[-1]["video_url"]).content, tmp_path)
                assert frames == 5 * 24 and width > height
            headers = upstream.stats()["download_headers"]
            assert headers and all(h.get("authorization") == "Bearer k" for h in headers)
        finally:
            server.stop()


@pytest.mark.parametrize("resubmit", [False, True])
def test_a_lost_submission_without_lookup(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch, resubmit: bool
) -> None:
    # The upstream records the task but never answers; CometAPI cannot list tasks.
    with comet(create_hang=1, hang_seconds=30) as upstream:
        server = front(tmp_path, database, monkeypatch, kind="cometapi",
                       base_url=upstream.base_url, key="k", timeout=1,
                       resubmit_lost=resubmit)  # fmt: skip
        try:
            with httpx.Client(base_url=server.base_url, headers=server.headers()) as client:
                task = client.post("/v1/videos", data={"prompt": "a bridge", "model": MODEL})
                done = seed_loop(client, task.json()["id"], timeout=60)[-1]
        finally:
            server.stop()
        creates = upstream.stats()["prompts"]["a bridge"]
    if resubmit:  # the operator accepted a second submission
        assert (done["status"], creates) == ("SUCCESS", 2)
    else:
        assert (done["status"], done["error"]["code"]) == ("ERROR", "upstream_submit_unknown")
        assert creates == 1
        assert "not sent again" in done["error"]["message"]


def test_an_ark_callback_makes_the_poll_come_at_once(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = FakeArkSettings(api_keys=("k",), min_seconds=0.5, max_seconds=1.0)
    with start_fake(fake_ark_app(settings)) as upstream:
        monkeypatch.setenv(KEY_ENV, "k")
        config = write_config(
            tmp_path / "front.toml",
            {"ark": {"kind": "ark", "base_url": upstream.url("/api/v3"), "callback": True}},
            {MODEL: ["ark"]},
            min_interval=120,  # without the callback, the first poll would come in 2 minutes
            max_interval=120,
        )
        server = start_server(
            tmp_path / "front", database_url=database, config=str(config), poll_interval=0.2
        )
        try:
            with httpx.Client(base_url=server.base_url, headers=server.headers()) as client:
                task = client.post("/v1/videos", data={"prompt": "a gull", "model": MODEL})
                done = seed_loop(client, task.json()["id"], timeout=60)[-1]
                assert done["status"] == "SUCCESS", done
                forged = client.post(f"/v1/callbacks/{task.json()['id']}?expires=1&signature=x")
                assert forged.status_code == 403
        finally:
            server.stop()
        assert upstream.stats()["callbacks"] == 1
