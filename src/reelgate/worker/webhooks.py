"""The delivery loop: signed webhooks from the outbox, retried with backoff for 24 hours.

It runs in every worker process; any number of them share the outbox (claims are
leases: SKIP LOCKED on PostgreSQL, the writer lock on SQLite). Each attempt re-checks
where the URL's host points, connects only to a checked address, follows no
redirect and gives up after ``timeout`` seconds. Delivery is at least once: the
``webhook-id`` is the same on every attempt, so receivers can drop repeats.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from reelgate import __version__, metrics
from reelgate.domain.errors import HostUnresolvable, InvalidParameter, ReelgateError
from reelgate.domain.webhooks import (
    CALLBACK,
    RETRY_WINDOW,
    Attempt,
    Delivery,
    DeliveryState,
    next_delay,
    payload,
    sign,
)
from reelgate.ports import Clock, HookStore
from reelgate.services.addresses import AddressGuard, Target

log = logging.getLogger("reelgate.webhooks")
# An attempt's outcome as the metrics name it: a pending delivery is retried later.
_OUTCOMES = {
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.PENDING: "retry",
    DeliveryState.FAILED: "failed",
}
PURGE_EVERY = 600.0  # seconds between sweeps of expired idempotency keys


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How deliveries are attempted (``REELGATE_WEBHOOK_*`` settings)."""

    timeout: float = 5.0  # per attempt: connect, send and answer
    retry_base: float = 5.0  # the first retry's wait; it doubles per attempt (capped)
    window: float = RETRY_WINDOW  # retried for this long after the change, then failed
    batch: int = 64  # deliveries claimed at once
    concurrency: int = 32  # attempts in flight per process
    lease_seconds: float = 30.0  # a claimed delivery is due again after this (a dead worker)
    poll_interval: float = 1.0  # an idle loop looks for due deliveries this often


class Deliverer:
    """Claims due deliveries, signs and posts them, and records each attempt."""

    def __init__(
        self,
        store: HookStore,
        guard: AddressGuard,
        clock: Clock,
        *,
        video_url: Callable[[str], str],
        callback_secret: Callable[[str], str],
        config: DeliveryConfig = DeliveryConfig(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.guard = guard
        self.config = config
        self._clock = clock
        self._video_url = video_url
        self._callback_secret = callback_secret
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=config.timeout,
            trust_env=False,
            transport=transport,
            headers={"user-agent": f"reelgate-webhooks/{__version__}"},
        )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now (a task of this process just ended)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then close the HTTP client."""
        purged = 0.0
        try:
            while not stop.is_set():
                try:
                    done = await self.run_once()
                    if self._clock() - purged > PURGE_EVERY:
                        purged = self._clock()
                        await self.store.purge_keys(now=purged)
                except ReelgateError as exc:  # the database is away: try again shortly
                    log.warning("webhook deliveries: %s", exc)
                    done = 0
                except Exception:  # a bug must not end deliveries for the process's life
                    log.exception("webhook deliveries: unexpected error; continuing")
                    done = 0
                if done == 0:
                    await self._idle(stop)
        finally:
            await self._client.aclose()

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(
                waits, timeout=self.config.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()

    async def burst(self) -> int:
        """Attempt every delivery due now (burst mode, for tests and tools); how many."""
        total = 0
        while done := await self.run_once():
            total += done
        return total

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt each; how many were attempted."""
        claimed = await self.store.claim_deliveries(
            now=self._clock(), lease_seconds=self.config.lease_seconds, limit=self.config.batch
        )
        if claimed:
            await asyncio.gather(*(self._attempt(d, secret) for d, secret in claimed))
        return len(claimed)

    async def close(self) -> None:
        await self._client.aclose()

    async def _attempt(self, delivery: Delivery, secret: str | None) -> None:
        async with self._slots:
            attempt = await self._send(delivery, secret)
        metrics.WEBHOOK_DELIVERIES.labels(_OUTCOMES.get(attempt.state, attempt.state)).inc()
        if not await self.store.record_attempt(delivery, attempt):
            log.info("webhook %s: the claim was lost; another worker retries it", delivery.id)

    async def _send(self, delivery: Delivery, secret: str | None) -> Attempt:
        if delivery.endpoint_id == CALLBACK:
            secret = self._callback_secret(delivery.owner)
        if secret is None:
            return self._failed("the endpoint was deleted", None)
        try:
            target = await self.guard.check(delivery.url, param="url")
        except HostUnresolvable as exc:
            return self._retry(delivery, exc.message, None)
        except InvalidParameter as exc:  # points at a private address now: never sent
            return self._failed(f"refused: {exc.message}", None)
        sent_at = int(self._clock())
        url = None
        if delivery.status == "SUCCESS" and delivery.output_key is not None:
            url = self._video_url(delivery.output_key)
        body = payload(delivery, url, sent_at)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(sent_at),
            "webhook-signature": sign(secret, delivery.id, sent_at, body),
        }
        try:
            response = await self._post(target, body, headers)
        except httpx.TimeoutException:
            return self._retry(delivery, f"no answer within {self.config.timeout:g} s", None)
        except httpx.HTTPError as exc:
            return self._retry(delivery, f"could not connect: {type(exc).__name__}", None)
        status = response.status_code
        if 200 <= status < 300:
            now = self._clock()
            return Attempt(DeliveryState.DELIVERED, now, status, None, now)
        if response.is_redirect:
            return self._retry(delivery, f"HTTP {status}: redirects are not followed", status)
        return self._retry(delivery, f"HTTP {status}", status)

    async def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to one of ``target``'s checked addresses (the Host and TLS name unchanged)."""
        url = httpx.URL(target.url)
        address = target.addresses[0]
        netloc = url.netloc.decode("ascii")
        extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
        request = self._client.build_request(
            "POST",
            url.copy_with(host=address),
            content=body,
            headers={**headers, "host": netloc},
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)  # the body is never read
        await response.aclose()
        return response

    def _retry(self, delivery: Delivery, error: str, status: int | None) -> Attempt:
        now = self._clock()
        delay = next_delay(
            delivery.attempts + 1, base=self.config.retry_base, jitter=random.random()
        )
        if now + delay > delivery.created_at + self.config.window:
            attempts = delivery.attempts + 1
            return self._failed(f"{error}; gave up after {attempts} attempts", status)
        return Attempt(DeliveryState.PENDING, now + delay, status, error)

    def _failed(self, error: str, status: int | None) -> Attempt:
        return Attempt(DeliveryState.FAILED, self._clock(), status, error)
