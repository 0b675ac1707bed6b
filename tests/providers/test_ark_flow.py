"""Seedance on a (fake) Ark upstream behind reelgate, end to end, on SQLite and on
PostgreSQL + S3: the seed's polling loop, refusals, fallback, admission control,
re-host retries, kill -9 of a submitter and of a poller, and an upstream outage."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from reelgate.backends.remote.fakes.ark import FakeArkFaults, FakeArkSettings, fake_ark_app
from tests.providers.harness import (
    KEY_ENV,
    Deployment,
    backend_settings,
    check_history,
    decode,
    seed_loop,
    wait_for,
    write_config,
)
from tests.upstreams import RunningFake, start_fake

pytestmark = pytest.mark.slow
KEY = "fake-ark-key"


def ark(min_seconds: float = 0.5, max_seconds: float = 1.5, **faults: object) -> RunningFake:
    settings = FakeArkSettings(
        api_keys=(KEY,),
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        faults=FakeArkFaults(**faults),  # type: ignore[arg-type]
    )
    return start_fake(fake_ark_app(settings))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with backend_settings(request.param, tmp_path) as settings:
        settings = {**settings, KEY_ENV: KEY}
        deployment = Deployment(tmp_path, settings)
        try:
            yield deployment
        finally:
            deployment.stop()


def configure(deployment: Deployment, fakes: dict[str, RunningFake], *,
              caps: dict[str, int] | None = None, max_faults: int = 10,
              max_submit_tries: int = 8, **options: object) -> None:  # fmt: skip
    """Route Seedance 2.0 to ``fakes`` in order (fallback), 1.0 pro to the first."""
    providers = {
        name: {
            "kind": "ark",
            "base_url": fake.url("/api/v3"),
            "max_concurrent": (caps or {}).get(name, 50),
            **options,
        }
        for name, fake in fakes.items()
    }
    routes = {"doubao-seedance-2-0": list(fakes), "doubao-seedance-1-0-pro": [next(iter(fakes))]}
    path = write_config(
        deployment.root / "reelgate.toml",
        providers,
        routes,
        max_faults=max_faults,
        max_submit_tries=max_submit_tries,
    )
    deployment.settings["REELGATE_CONFIG"] = str(path)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_the_seed_loop_gets_a_rehosted_video(deployment: Deployment, tmp_path: Path) -> None:
    with ark() as upstream:
        configure(deployment, {"ark": upstream})
        api = deployment.start_api()
        deployment.start_worker()
        text = deployment.create("a paper boat on a rainy street")
        image = deployment.create(
            "the boat sails away", files={"input_reference": ("boat.png", png(), "image/png")}
        )
        refused = deployment.create("[[fake:refuse]] something", model="doubao-seedance-1-0-pro")
        failed = deployment.create("[[fake:fail]] something else")
        with deployment.client as client:
            for task_id in (text, image):
                seen = seed_loop(client, task_id, timeout=60)
                check_history(seen)
                done = seen[-1]
                assert (done["status"], done["progress"]) == ("SUCCESS", 100), done
                # Our own signed URL (the API, or the S3 bucket), never the upstream's.
                assert not done["video_url"].startswith(upstream.base_url)
                storage = deployment.settings.get("REELGATE_S3_ENDPOINT_URL", api.base_url)
                assert done["video_url"].startswith(storage), done["video_url"]
                video = client.get(done["video_url"])
                assert video.status_code == 200
                width, height, frames = decode(video.content, tmp_path)
                assert frames == 4 * 24 and width > height
                # The same video with the key (S3: a redirect to the bucket), and the
                # thumbnail made when the re-host ended, at the video's size.
                content = f"/v1/videos/{task_id}/content"
                assert client.get(content, follow_redirects=True).content == video.content
                thumbnail = client.get(
                    content, params={"variant": "thumbnail"}, follow_redirects=True
                )
                assert thumbnail.status_code == 200, thumbnail.text
                assert Image.open(io.BytesIO(thumbnail.content)).size == (width, height)
            refusal = seed_loop(client, refused, timeout=30)[-1]
            assert refusal["status"] == "FAILED"
            assert refusal["error"]["code"] == "content_rejected"
            assert "video_url" not in refusal
            failure = seed_loop(client, failed, timeout=30)[-1]
            assert (failure["status"], failure["error"]["code"]) == ("FAILED", "content_rejected")
            models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert models["doubao-seedance-2-0"]["routes"][0]["provider"] == "ark"
        assert models["doubao-seedance-1-5-pro"]["renderer"] == "preview"
        stats = upstream.stats()
        prompts = stats["prompts"]
        assert prompts["a paper boat on a rainy street"] == 1
        assert prompts["the boat sails away"] == 1
        assert all(KEY not in str(h) for h in stats["download_headers"]), "our key leaked"


def test_fallback_admission_and_rehost_retry(deployment: Deployment) -> None:
    # The first route never accepts (429); the second takes at most 2 at once, and its
    # first download is cut midway.
    with ark(create_429=1000) as busy, ark(1.0, 1.5, download_cut=1) as second:
        configure(deployment, {"busy": busy, "second": second}, caps={"second": 2})
        deployment.start_api()
        deployment.start_worker()
        ids = [deployment.create(f"boat number {i}") for i in range(5)]
        with deployment.client as client:
            outcomes = [seed_loop(client, task_id, timeout=90)[-1] for task_id in ids]
        assert [o["status"] for o in outcomes] == ["SUCCESS"] * 5, outcomes
        assert busy.stats()["creates"] == 0
        stats = second.stats()
        assert stats["creates"] == 5 and stats["downloads_cut"] == 1
        # Admission control: never more than 2 tasks at the second provider at once.
        fake = second.app.state.fake  # type: ignore[attr-defined]
        spans = sorted((t.created, t.ended) for t in fake.tasks.values())
        for created, _ in spans:
            running = sum(1 for start, end in spans if start <= created < end)
            assert running <= 2, spans


def test_kill_9_of_a_submitter_mid_request_never_submits_twice(deployment: Deployment) -> None:
    # The upstream records the task, then answers nothing: the submitter dies meanwhile.
    with ark(create_hang=1, hang_seconds=60) as upstream:
        configure(deployment, {"ark": upstream}, timeout=5)
        deployment.start_api()
        victim = deployment.start_worker("victim")
        task_id = deployment.create("a lighthouse at dusk")
        wait_for(lambda: upstream.stats()["creates"] == 1, timeout=30, what="the submission")
        victim.kill()
        deployment.start_worker("rescuer")  # finds the lost submission once the lease ends
        with deployment.client as client:
            done = seed_loop(client, task_id, timeout=120)[-1]
        assert done["status"] == "SUCCESS", done
        assert upstream.stats()["prompts"]["a lighthouse at dusk"] == 1


def test_kill_9_of_a_poller_mid_round_loses_nothing(deployment: Deployment) -> None:
    with ark(3.0, 6.0) as upstream:
        configure(deployment, {"ark": upstream})
        deployment.start_api()
        victim = deployment.start_worker("victim")
        ids = [deployment.create(f"a kite number {i}") for i in range(12)]
        with deployment.client as client:

            def all_watched() -> bool:
                statuses = {client.get(f"/v1/videos/{i}").json()["status"] for i in ids}
                return statuses == {"IN_PROGRESS"}

            wait_for(all_watched, timeout=60, what="every task at the upstream")
            victim.kill()
            rescuer = deployment.start_worker("rescuer")
            outcomes = [seed_loop(client, task_id, timeout=120)[-1] for task_id in ids]
        assert [o["status"] for o in outcomes] == ["SUCCESS"] * len(ids), outcomes
        assert set(upstream.stats()["prompts"].values()) == {1}, "submitted twice"
        assert "watching" in rescuer.output()


def test_a_minute_of_upstream_outage_loses_nothing(deployment: Deployment) -> None:
    with ark(2.0, 4.0) as upstream:
        # Enough tries to ride out a minute: backoff is capped at 4 s (polls) and 10 s
        # (submissions) by this file's max_interval of 1 s.
        configure(deployment, {"ark": upstream}, max_faults=60, max_submit_tries=30)
        deployment.start_api()
        deployment.start_worker()
        first = [deployment.create(f"a train number {i}") for i in range(10)]
        wait_for(lambda: upstream.stats()["creates"] >= 5, timeout=30, what="some submissions")
        upstream.faults(outage=True)  # every API route answers 503 for a minute
        outage = threading.Timer(60.0, upstream.faults, kwargs={"outage": False})
        outage.start()
        try:
            later = [deployment.create(f"a tram number {i}") for i in range(10)]
            with deployment.client as client:
                outcomes = [seed_loop(client, t, timeout=240)[-1] for t in first + later]
        finally:
            outage.cancel()
        assert [o["status"] for o in outcomes] == ["SUCCESS"] * 20, outcomes
        assert set(upstream.stats()["prompts"].values()) == {1}, "submitted twice"
