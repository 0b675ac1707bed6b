"""What every HTTP provider adapter shares: the client, the rate limit, error mapping.

``HttpProvider.call`` converts every httpx failure and every refusal-to-answer
status into the domain tree, so that no foreign error leaves an adapter:

===============================================  ==================  ==================
what happened                                    at submit           elsewhere
===============================================  ==================  ==================
connect error, connect/pool timeout              ``UpstreamBusy``    ``UpstreamBusy``
read/write timeout, cut connection, bad JSON     ``UpstreamUncertain``  ``UpstreamBusy``
429, 5xx (``Retry-After`` kept)                  ``UpstreamBusy``    ``UpstreamBusy``
===============================================  ==================  ==================

A 4xx other than 429 is the adapter's to read (a refusal, an unknown task).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import httpx

from reelgate import metrics
from reelgate.config import ProviderConfig
from reelgate.domain.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamGone,
    UpstreamRefused,
    UpstreamUncertain,
)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
CHUNK = 1024 * 1024


class RateLimiter:
    """At most ``per_minute`` calls a minute, spread evenly (a token bucket of one minute)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 60.0 / per_minute
        self._capacity = float(per_minute)
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._updated) / self._interval
                )
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) * self._interval)


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpProvider:
    """Base of the HTTP adapters: one ``httpx.AsyncClient`` per provider.

    ``transport`` replaces the network (tests pass a transport or point ``base_url``
    at a fake upstream on loopback). Redirects are never followed.
    """

    kind = ""

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.config = config
        timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        tls = _tls()
        self._client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            verify=tls,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )
        # Video URLs point at other hosts (object stores): never send them our key.
        self._downloads = httpx.AsyncClient(
            verify=tls, timeout=timeout, limits=limits, transport=transport, follow_redirects=False
        )
        self._limiter = RateLimiter(config.requests_per_minute)
        self._timer = metrics.UPSTREAM_DURATION.labels(name)

    def _count(self, status: int | None, failure: str | None = None) -> None:
        """Count one request by its answer's class (``none``: no answer) and its failure."""
        if status is None:
            answer = "none"
        elif status == 429:
            answer, failure = "429", "rate_limited"
        else:
            answer = f"{status // 100}xx"
            if status >= 500:
                failure = "server_error"
        metrics.UPSTREAM_REQUESTS.labels(self.name, answer).inc()
        if failure is not None:
            metrics.UPSTREAM_ERRORS.labels(self.name, failure).inc()

    async def close(self) -> None:
        await self._client.aclose()
        await self._downloads.aclose()

    async def call(
        self, method: str, path: str, *, submit: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request to the provider's API; raise the domain error for a failure."""
        await self._limiter.acquire()
        started = time.perf_counter()
        try:
            response = await self._client.request(method, path, **kwargs)
        except _NOT_SENT as exc:
            self._count(None, "unreachable")
            raise UpstreamBusy(
                f"{self.name}: cannot reach the provider ({type(exc).__name__})",
                provider=self.name,
            ) from exc
        except httpx.HTTPError as exc:
            self._count(None, "no_answer")
            cls = UpstreamUncertain if submit else UpstreamBusy
            raise cls(
                f"{self.name}: no answer from the provider ({type(exc).__name__})",
                provider=self.name,
            ) from exc
        self._timer.observe(time.perf_counter() - started)
        self._count(response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            raise UpstreamBusy(
                f"{self.name}: the provider answered {response.status_code}",
                provider=self.name,
                retry_after=retry_after(response),
            )
        return response

    def body(self, response: httpx.Response, *, submit: bool = False) -> dict[str, Any]:
        """The response's JSON object; a malformed body is a transient fault."""
        try:
            data = response.json()
        except ValueError as exc:
            metrics.UPSTREAM_ERRORS.labels(self.name, "malformed").inc()
            cls = UpstreamUncertain if submit else UpstreamBusy
            raise cls(f"{self.name}: the provider sent malformed JSON", provider=self.name) from exc
        if not isinstance(data, dict):
            cls = UpstreamUncertain if submit else UpstreamBusy
            raise cls(
                f"{self.name}: the provider sent a JSON {type(data).__name__}", provider=self.name
            )
        return data

    async def stream(
        self, url: str, dest: Path, max_bytes: int, *, authorized: bool = False
    ) -> None:
        """Stream ``url`` (used exactly as given) into ``dest``; at most ``max_bytes``.

        ``authorized`` sends the provider's key (for its own API's content route);
        otherwise the request carries no credentials of ours.
        """
        client = self._client if authorized else self._downloads
        await self._limiter.acquire()
        try:
            async with client.stream("GET", url) as response:
                self._count(response.status_code)
                if response.status_code in (401, 403, 404, 410):
                    raise UpstreamGone(
                        f"{self.name}: the video is no longer available ({response.status_code})",
                        code="upstream_video_expired",
                        provider=self.name,
                    )
                if response.status_code == 429 or response.status_code >= 500:
                    raise UpstreamBusy(
                        f"{self.name}: the video download answered {response.status_code}",
                        provider=self.name,
                        retry_after=retry_after(response),
                    )
                if response.status_code != 200:
                    raise UpstreamGone(
                        f"{self.name}: the video download answered {response.status_code}",
                        code="upstream_video_unavailable",
                        provider=self.name,
                    )
                declared = int(response.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise _too_large(self.name, max_bytes)
                written = 0
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise _too_large(self.name, max_bytes)
                        await asyncio.to_thread(out.write, chunk)
                if declared and written != declared:
                    raise UpstreamBusy(
                        f"{self.name}: the download ended after {written} of {declared} bytes",
                        provider=self.name,
                    )
        except UpstreamError:
            dest.unlink(missing_ok=True)
            raise
        except httpx.HTTPError as exc:
            dest.unlink(missing_ok=True)
            self._count(None, "no_answer")
            raise UpstreamBusy(
                f"{self.name}: the video download failed ({type(exc).__name__})",
                provider=self.name,
            ) from exc


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle is the slow part of a client."""
    return ssl.create_default_context(cafile=certifi.where())


def _too_large(name: str, max_bytes: int) -> UpstreamRefused:
    return UpstreamRefused(
        f"the generated video is larger than this server accepts ({max_bytes} bytes)",
        code="upstream_video_too_large",
        provider=name,
    )
