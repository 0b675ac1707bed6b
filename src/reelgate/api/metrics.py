"""The HTTP side of the metrics: per-request counts and latency, and ``GET /metrics``.

``HttpMetrics`` wraps the whole application (outside FastAPI and outside the fast path
of the retrieve route), so every request counts, by the route's template: FastAPI
leaves the matched route in the scope, the fast path names its own
(``scope["route_path"]``), and anything unmatched is ``<unmatched>``; a raw path never
becomes a label. A request only adds to plain dictionaries of this process; they are
added to the shared instruments at most ``FLUSH_SECONDS`` later (and before this
process answers a scrape), so the shared-memory writes are paid once per label set
and second, not per request.

``/metrics`` answers the text format of every process on the host (``metrics.exposition``)
plus what the database says now (``StoreGauges``: queue depth and stored files, read at
most every few seconds, so that any number of scrapers costs one query). With
``REELGATE_METRICS_TOKEN`` set, it wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import logging
import time
from collections.abc import Callable, Iterable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelgate import metrics
from reelgate.domain.errors import AuthenticationError
from reelgate.domain.retention import StorageUsage
from reelgate.domain.status import Phase
from reelgate.ports import TaskStore

log = logging.getLogger("reelgate.api")

router = APIRouter()

PATH = "/metrics"
RETRIEVE_ROUTE = "/v1/videos/{task_id}"  # the template of the retrieve route's fast path
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACTIVE_PHASES = [phase for phase in Phase if phase is not Phase.DONE]
FLUSH_SECONDS = 1.0
_BOUNDS = [*metrics.HTTP_BUCKETS, float("inf")]  # the upper bounds of the latency buckets


def route_of(scope: Scope) -> str:
    """The template of the route that answered (never the raw path)."""
    named: str | None = scope.get("route_path")
    if named is not None:
        return named
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpMetrics:
    """Count and time every HTTP request that passes through to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counts: dict[tuple[str, str, int], int] = {}
        # (method, route) -> [sum of seconds, then the count of each bucket]
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._pending = False  # a flush is scheduled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if nothing else was sent

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        if method not in METHODS:
            method = "other"
        route = route_of(scope)
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        cell = self._latency.get((method, route))
        if cell is None:
            cell = self._latency[(method, route)] = [0.0] * (len(_BOUNDS) + 1)
        cell[0] += seconds
        cell[bisect.bisect_left(_BOUNDS, seconds) + 1] += 1
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Add what this process counted since the last flush to the shared instruments."""
        self._pending = False
        counts, self._counts = self._counts, {}
        latency, self._latency = self._latency, {}
        for (method, route, status), count in counts.items():
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc(count)
        for (method, route), cell in latency.items():
            child = metrics.HTTP_DURATION.labels(method, route)
            metrics.observe_batch(child, cell[0], [int(count) for count in cell[1:]])


class StoreGauges:
    """Queue depth and stored files as the database has them, cached ``ttl`` seconds.

    A collector of prometheus_client: ``refresh`` (async, before a scrape) reads the
    store, ``collect`` yields what the last read found.
    """

    def __init__(self, store: TaskStore, ttl: float = 5.0) -> None:
        self._store = store
        self._ttl = ttl
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()
        self._depth: dict[Phase, int] | None = None
        self._usage: StorageUsage | None = None

    async def refresh(self) -> None:
        if time.monotonic() < self._fresh_until:
            return
        async with self._lock:
            if time.monotonic() < self._fresh_until:
                return
            try:
                self._depth = await self._store.queue_depth()
            except Exception as exc:  # the scrape still answers, without these gauges
                log.warning("metrics: reading the queue depth failed: %s", exc)
                self._depth = None
            try:
                self._usage = await self._store.storage_usage()
            except Exception as exc:
                log.warning("metrics: reading the storage usage failed: %s", exc)
                self._usage = None
            self._fresh_until = time.monotonic() + self._ttl

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if self._depth is not None:
            depth = GaugeMetricFamily(
                "reelgate_queue_depth",
                "Tasks not finished, by wire status and phase (read from the database).",
                labels=["status", "phase"],
            )
            for phase in ACTIVE_PHASES:
                status = phase.status
                assert status is not None
                depth.add_metric([status.value, phase.value], self._depth.get(phase, 0))
            yield depth
        usage = self._usage
        if usage is not None:
            stored = GaugeMetricFamily(
                "reelgate_stored_bytes",
                "Bytes of the files kept in storage, by kind (videos with thumbnails, inputs).",
                labels=["kind"],
            )
            stored.add_metric(["videos"], usage.video_bytes)
            stored.add_metric(["inputs"], usage.input_bytes)
            yield stored
            files = GaugeMetricFamily(
                "reelgate_stored_files",
                "Files kept in storage, by kind (a video counts with its thumbnail).",
                labels=["kind"],
            )
            files.add_metric(["videos"], usage.videos)
            files.add_metric(["inputs"], usage.inputs)
            yield files


class Scrape:
    """What ``GET /metrics`` needs: the store's gauges and the token (empty: none asked)."""

    def __init__(
        self, gauges: StoreGauges, token: str, flush: Callable[[], None] = lambda: None
    ) -> None:
        self.gauges = gauges
        self.flush = flush  # this process's HTTP counts, before a scrape reads them
        self._token = f"Bearer {token}".encode() if token else b""

    def allowed(self, authorization: str | None) -> bool:
        if not self._token:
            return True
        return hmac.compare_digest((authorization or "").encode("latin-1"), self._token)


@router.get(PATH, include_in_schema=False)
async def scrape(request: Request) -> Response:
    """Every metric of the host's processes and the database, in Prometheus's text format."""
    config: Scrape = request.app.state.metrics
    if not config.allowed(request.headers.get("authorization")):
        raise AuthenticationError("GET /metrics needs the metrics token (Bearer)")
    await config.gauges.refresh()
    config.flush()
    body = await asyncio.to_thread(metrics.exposition, config.gauges)
    return Response(body, media_type=metrics.CONTENT_TYPE)
