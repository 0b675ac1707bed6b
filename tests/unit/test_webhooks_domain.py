"""Webhook rules without I/O: signatures, the retry schedule, keys, URLs, addresses."""

from __future__ import annotations

import datetime
import ipaddress
import time

import pytest
from standardwebhooks import Webhook

from reelgate.domain.errors import HostUnresolvable, InvalidParameter
from reelgate.domain.webhooks import (
    RETRY_CAP,
    RETRY_WINDOW,
    check_idempotency_key,
    check_webhook_url,
    new_secret,
    next_delay,
    request_digest,
    sign,
)
from reelgate.services.addresses import AddressGuard, parse_networks


def test_signature_is_standard_webhooks() -> None:
    secret, now = new_secret(), int(time.time())
    body = b'{"task_id":"task_1","status":"SUCCESS"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_1", now, body),
    }
    assert Webhook(secret).verify(body, headers)["status"] == "SUCCESS"
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    assert headers["webhook-signature"] == Webhook(secret).sign("msg_1", stamp, body.decode())


def test_the_retry_schedule_doubles_is_capped_and_spans_a_day() -> None:
    delays = [next_delay(n, base=5) for n in range(1, 20)]
    assert delays[:4] == [5, 10, 20, 40]
    assert max(delays) == RETRY_CAP
    elapsed, attempts = 0.0, 1
    while elapsed + next_delay(attempts, base=5) <= RETRY_WINDOW:
        elapsed += next_delay(attempts, base=5)
        attempts += 1
    assert attempts == 17  # the first attempt and 16 retries (docs/webhooks.md)
    assert next_delay(1, base=5, jitter=1.0) == pytest.approx(5.5)


@pytest.mark.parametrize(
    "key", ["a", "order-42", "x" * 255, "550e8400-e29b-41d4-a716-446655440000"]
)
def test_good_keys(key: str) -> None:
    assert check_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "a b", "caf\u00e9", "tab\t", "nul\x00"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(InvalidParameter):
        check_idempotency_key(key)


def test_digest_covers_fields_and_image() -> None:
    fields: dict[str, object] = {"prompt": "p", "seconds": 5}
    assert request_digest(fields, None) == request_digest(dict(reversed(fields.items())), None)
    assert request_digest(fields, None) != request_digest({**fields, "seconds": 6}, None)
    assert request_digest(fields, b"a") != request_digest(fields, b"b")
    assert request_digest(fields, b"") != request_digest(fields, None)


@pytest.mark.parametrize(
    "url",
    ["", 5, "ftp://x/y", "http://", "http://u:p@host/", "http://host:99999/", "http://h/\u00e9",
     "http://h/a b", "https://" + "a" * 2050 + ".com/"],
)  # fmt: skip
def test_bad_urls(url: object) -> None:
    with pytest.raises(InvalidParameter):
        check_webhook_url(url, "url")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared (CGNAT)
        ("127.0.0.1", False),
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
    ],
)
def test_public_addresses_only(address: str, allowed: bool) -> None:
    assert AddressGuard().permitted(ipaddress.ip_address(address)) is allowed


def test_allowed_networks() -> None:
    guard = AddressGuard(parse_networks("127.0.0.1/32, 10.0.0.0/8"))
    assert guard.permitted(ipaddress.ip_address("127.0.0.1"))
    assert guard.permitted(ipaddress.ip_address("10.9.9.9"))
    assert not guard.permitted(ipaddress.ip_address("127.0.0.2"))
    with pytest.raises(ValueError):
        parse_networks("not-a-network")


async def test_every_resolved_address_is_checked() -> None:
    # "localhost" resolves to loopback only: refused unless loopback is allowed.
    with pytest.raises(InvalidParameter, match="private, loopback"):
        await AddressGuard().check("http://localhost:8080/hook")
    with pytest.raises(HostUnresolvable):
        await AddressGuard().check("http://no-such-host.invalid/hook")
    target = await AddressGuard(parse_networks("127.0.0.0/8, ::1")).check("http://localhost/x")
    assert target.host == "localhost" and target.port == 80 and target.addresses
