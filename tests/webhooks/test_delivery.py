"""Webhooks end to end: a real server, real receivers on loopback, the real verifiers.

Signatures are checked with the ``standardwebhooks`` package and with the ``openai``
SDK's ``webhooks.unwrap``; retries, redirects, address rules and a restart are
observed at the receivers and in the owner's delivery log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from standardwebhooks import Webhook

from tests.pg import temporary_database
from tests.server import LiveServer, start_server
from tests.webhooks.receiver import Received, start_receiver, wait_until

MODEL = "doubao-seedance-1-0-pro"
OPTIONS: dict[str, Any] = {
    "renderer": "instant",
    "webhook_allowed_networks": "127.0.0.1/32",  # the receivers live on loopback
    "webhook_retry_base": 0.2,
    "webhook_timeout": 1.0,
    "webhook_poll_interval": 0.05,
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    folder = Path(tmp_path_factory.mktemp("hooks"))
    if request.param == "sqlite":
        live = start_server(folder, **OPTIONS)
        yield live
        live.stop()
        return
    with temporary_database() as url:
        live = start_server(folder, database_url=url, **OPTIONS)
        yield live
        live.stop()


def create(server: LiveServer, owner: str = "alice", **fields: Any) -> dict[str, Any]:
    body = {"prompt": "a red fox", "model": MODEL, "seconds": 2, "resolution": "480p", **fields}
    response = httpx.post(
        f"{server.base_url}/v1/videos", json=body, headers=server.headers(owner), timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def add_endpoint(server: LiveServer, url: str, owner: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/v1/webhooks", json={"url": url}, headers=server.headers(owner)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def deliveries(server: LiveServer, owner: str, task_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.base_url}/v1/webhooks/deliveries",
        params={"task_id": task_id},
        headers=server.headers(owner),
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def first_delivery(server: LiveServer, owner: str, task_id: str) -> dict[str, Any]:
    """The task's first delivery log, or ``{}`` while none is written yet."""
    found = deliveries(server, owner, task_id)
    return found[0] if found else {}


def verified(secret: str, message: Received) -> dict[str, Any]:
    """The body, verified by both the Standard Webhooks package and the openai SDK."""
    data = Webhook(secret).verify(message.body, message.headers)
    event = openai.OpenAI(api_key="unused", webhook_secret=secret).webhooks.unwrap(
        message.body, message.headers
    )
    assert event.type == data["type"]
    return dict(data)


def test_endpoint_and_callback_signed_and_verified(server: LiveServer) -> None:
    receiver, fake = start_receiver()
    try:
        endpoint = add_endpoint(server, fake.url("/endpoint"), "hook-owner-1")
        assert endpoint["secret"].startswith("whsec_")
        listed = httpx.get(f"{server.base_url}/v1/webhooks", headers=server.headers("hook-owner-1"))
        assert [e["id"] for e in listed.json()["data"]] == [endpoint["id"]]
        assert "secret" not in listed.json()["data"][0]  # shown once, at creation
        task = create(server, "hook-owner-1", callback_url=fake.url("/callback"))
        receiver.wait_for(lambda got: len(got) >= 2)
        by_path = {m.path: m for m in receiver.received}
        secret = httpx.get(
            f"{server.base_url}/v1/webhooks/callback-secret", headers=server.headers("hook-owner-1")
        ).json()["secret"]
        for path, key in (("/endpoint", endpoint["secret"]), ("/callback", secret)):
            data = verified(key, by_path[path])
            assert data["type"] == "video.completed"
            assert data["task_id"] == task["id"] == data["data"]["id"]
            assert data["status"] == "SUCCESS" and data["progress"] == 100
            video = httpx.get(data["result"]["video_url"])  # a signed link that works
            assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        with pytest.raises(Exception):  # noqa: B017 - each secret verifies only its own
            Webhook(secret).verify(by_path["/endpoint"].body, by_path["/endpoint"].headers)
        wait_until(
            lambda: all(
                d["state"] == "delivered" for d in deliveries(server, "hook-owner-1", task["id"])
            ),
            what="the log to say delivered",
        )
        log = deliveries(server, "hook-owner-1", task["id"])
        assert {d["target"] for d in log} == {"endpoint", "callback_url"}
        assert all(d["last_status"] == 200 and d["attempts"] == 1 for d in log)
        assert deliveries(server, "someone-else", task["id"]) == []  # the owner's log only
    finally:
        fake.stop()


def test_retries_after_500s_and_a_timeout_keep_the_webhook_id(server: LiveServer) -> None:
    receiver, fake = start_receiver(plan=[500, 503, ("sleep", 2.0)])
    try:
        endpoint = add_endpoint(server, fake.url("/flaky"), "hook-owner-2")
        task = create(server, "hook-owner-2")
        receiver.wait_for(lambda got: len(got) >= 4)
        ids = {m.headers["webhook-id"] for m in receiver.received}
        assert len(ids) == 1  # the same message on every attempt
        gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
        # The backoff doubles: at least 0.2 s, 0.4 s, then the 1 s timeout and 0.8 s.
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 1.8
        for message in receiver.received:
            assert verified(endpoint["secret"], message)["task_id"] == task["id"]
        wait_until(
            lambda: first_delivery(server, "hook-owner-2", task["id"]).get("state") == "delivered",
            what="delivered",
        )
        [log] = deliveries(server, "hook-owner-2", task["id"])
        assert log["attempts"] == 4 and log["last_status"] == 200 and log["id"] in ids
    finally:
        fake.stop()


def test_redirects_are_not_followed(server: LiveServer) -> None:
    elsewhere, other = start_receiver()
    receiver, fake = start_receiver(default=302)
    receiver.plan.extend([("redirect", other.url("/stolen"))] * 100)
    try:
        add_endpoint(server, fake.url("/moved"), "hook-owner-3")
        task = create(server, "hook-owner-3")
        receiver.wait_for(lambda got: len(got) >= 2)
        log = deliveries(server, "hook-owner-3", task["id"])
        wait_until(
            lambda: first_delivery(server, "hook-owner-3", task["id"]).get("attempts", 0) >= 1
        )
        log = deliveries(server, "hook-owner-3", task["id"])
        assert log[0]["last_status"] == 302 and "redirect" in log[0]["last_error"]
        assert log[0]["state"] == "pending"  # retried later, never sent elsewhere
        assert elsewhere.received == []
    finally:
        fake.stop()
        other.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://[fe80::1]/hook",
        "http://127.0.0.2/hook",  # loopback, but outside the allowed 127.0.0.1/32
        "http://0.0.0.0/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "ftp://example.com/hook",
        "http://user:pw@127.0.0.1/hook",
        "not a url",
    ],
)
def test_refused_urls_at_create(server: LiveServer, url: str) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/webhooks", json={"url": url}, headers=server.headers()
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidParameter" and error["param"] == "url"
    body = {"prompt": "x", "model": MODEL, "seconds": 2, "callback_url": url}
    response = httpx.post(f"{server.base_url}/v1/videos", json=body, headers=server.headers())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "callback_url"


def test_refused_at_delivery_when_no_longer_allowed(server: LiveServer) -> None:
    receiver, fake = start_receiver()
    guard = server.components.webhooks.guard
    try:
        add_endpoint(server, fake.url("/late"), "hook-owner-4")
        allowed, guard.allowed = guard.allowed, []  # the operator's rule changed since
        try:
            task = create(server, "hook-owner-4")
            wait_until(
                lambda: first_delivery(server, "hook-owner-4", task["id"]).get("state") == "failed",
                what="the refusal",
            )
        finally:
            guard.allowed = allowed
        [log] = deliveries(server, "hook-owner-4", task["id"])
        assert "refused" in log["last_error"] and log["last_status"] is None
        assert receiver.received == []
    finally:
        fake.stop()


def test_endpoint_routes_refuse_bad_input(server: LiveServer) -> None:
    url, headers = f"{server.base_url}/v1/webhooks", server.headers()
    assert httpx.post(url, content=b"url=x", headers=headers).status_code == 415
    for body in (b"[]", b"{", b'{"url": 5}', b'{"url": "http://127.0.0.1/", "x": 1}'):
        response = httpx.post(
            url, content=body, headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == 400, body
        assert "error" in response.json()
    response = httpx.delete(f"{url}/wh_unknown", headers=headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    for limit in ("0", "101", "x"):
        response = httpx.get(f"{url}/deliveries", params={"limit": limit}, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == "limit"
    created = httpx.post(url, json={"url": "http://127.0.0.1:9/x"}, headers=headers).json()
    other = server.headers("hook-owner-5")
    assert httpx.delete(f"{url}/{created['id']}", headers=other).status_code == 404
    gone = httpx.delete(f"{url}/{created['id']}", headers=headers)
    assert gone.json() == {
        "id": created["id"],
        "object": "webhook_endpoint.deleted",
        "deleted": True,
    }


def test_delivery_survives_a_restart(tmp_path: Path) -> None:
    """Pending deliveries are in the database: the next process delivers them, same id."""
    receiver, fake = start_receiver(default=500)
    try:
        first = start_server(tmp_path, **OPTIONS)
        try:
            secret = add_endpoint(first, fake.url("/durable"), "hook-owner-6")["secret"]
            task = create(first, "hook-owner-6")
            receiver.wait_for(lambda got: len(got) >= 1)
        finally:
            first.stop()
        message_id = receiver.received[0].headers["webhook-id"]
        seen = len(receiver.received)
        receiver.default = 200  # the receiver recovers while no worker runs
        second = start_server(tmp_path, **OPTIONS)
        try:
            receiver.wait_for(lambda got: len(got) > seen)
            message = receiver.received[-1]
            assert message.headers["webhook-id"] == message_id
            assert verified(secret, message)["task_id"] == task["id"]
            wait_until(
                lambda: (
                    first_delivery(second, "hook-owner-6", task["id"]).get("state") == "delivered"
                )
            )
        finally:
            second.stop()
    finally:
        fake.stop()


def test_payload_shape(server: LiveServer) -> None:
    receiver, fake = start_receiver()
    try:
        task = create(server, "hook-owner-7", callback_url=fake.url("/shape"))
        receiver.wait_for(lambda got: len(got) >= 1)
        body = json.loads(receiver.received[0].body)
        assert set(body) >= {"task_id", "status", "progress", "result", "type", "data", "id"}
        assert body["result"]["video_url"].startswith(server.base_url + "/files/videos/")
        assert receiver.received[0].headers["content-type"] == "application/json"
        assert body["id"] == receiver.received[0].headers["webhook-id"]
        assert body["task_id"] == task["id"]
    finally:
        fake.stop()
