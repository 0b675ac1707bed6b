"""Prometheus metrics: the instruments every process counts into, and how processes share them.

The instruments are module globals, as prometheus_client wants them, and every one has
labels, so that no value exists before its first use. ``serve`` and ``worker`` call
``share(folder)`` before anything is counted: from then on each process keeps its values
in memory-mapped files of that folder (prometheus_client's multiprocess mode), and a
scrape of any process on the host sums the files of all of them (``exposition``).
Without ``share`` (tests that run the app in-process) values stay in memory.

Label values are closed sets: HTTP route templates (never a raw path), model ids from
the catalog, backends (a renderer's name or a configured provider), statuses and a few
fixed outcome words; see docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.registry import Collector

from reelgate.domain.status import Status
from reelgate.domain.task import Task

CONTENT_TYPE = CONTENT_TYPE_LATEST
FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch
CANCELLED = "CANCELLED"  # the status label of a cancelled task (FAILED/cancelled on the wire)

_SECONDS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_WAIT = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "reelgate_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "reelgate_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)
TASKS_CREATED = Counter(
    "reelgate_tasks_created", "Tasks created, by model and backend.", ["model", "backend"]
)
TASKS_FINISHED = Counter(
    "reelgate_tasks_finished",
    "Tasks that ended, by model, backend and status (SUCCESS, FAILED, ERROR, CANCELLED).",
    ["model", "backend", "status"],
)
QUEUE_WAIT = Histogram(
    "reelgate_queue_wait_seconds",
    "Time from a task's creation to its first claim by a worker or submitter.",
    ["model", "backend"],
    buckets=_WAIT,
)
RENDER_DURATION = Histogram(
    "reelgate_render_duration_seconds",
    "Time a local render took, from the claim to the video stored (successful renders).",
    ["model", "backend"],
    buckets=_SECONDS,
)
UPSTREAM_TASK_DURATION = Histogram(
    "reelgate_upstream_task_duration_seconds",
    "Time from a provider accepting a task to the provider reporting it finished.",
    ["provider", "model"],
    buckets=_SECONDS,
)
UPSTREAM_REQUESTS = Counter(
    "reelgate_upstream_requests",
    "HTTP requests to providers, by provider and answer (2xx, 4xx, 429, 5xx, ...; none).",
    ["provider", "status"],
)
UPSTREAM_ERRORS = Counter(
    "reelgate_upstream_errors",
    "Provider requests that failed (unreachable, no_answer, rate_limited, server_error, "
    "malformed).",
    ["provider", "kind"],
)
UPSTREAM_DURATION = Histogram(
    "reelgate_upstream_request_duration_seconds",
    "Time of one HTTP request to a provider (to the end of the headers), by provider.",
    ["provider"],
    buckets=HTTP_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "reelgate_webhook_deliveries",
    "Webhook delivery attempts, by outcome (delivered, retry, failed).",
    ["outcome"],
)
PROCESSES = Gauge(
    "reelgate_processes",
    "reelgate processes alive on this host that share the metrics folder, by role.",
    ["role"],
    multiprocess_mode="livesum",
)

_backends: dict[str, str] = {}  # model id -> the backend that serves it (for creates)
_PID_FILE = re.compile(r"_(\d+)\.db$")


def set_backends(backends: Mapping[str, str]) -> None:
    """Which backend serves each model: a local renderer's name, or the first provider."""
    _backends.clear()
    _backends.update(backends)


def backend_of(task: Task) -> str:
    """The task's backend: its provider once it has one, else the model's."""
    return task.provider or _backends.get(task.spec.model, "unknown")


def task_created(task: Task) -> None:
    TASKS_CREATED.labels(task.spec.model, backend_of(task)).inc()


def task_finished(task: Task, status: Status | str) -> None:
    """Count ``task`` ended in ``status`` (``CANCELLED`` for a cancel)."""
    TASKS_FINISHED.labels(task.spec.model, backend_of(task), str(status)).inc()


def task_claimed(task: Task, now: float) -> None:
    """Observe the queue wait of a task claimed for the first time (a retry is not a wait)."""
    if task.attempts <= 1:
        QUEUE_WAIT.labels(task.spec.model, backend_of(task)).observe(
            max(0.0, now - task.created_at)
        )


def share(folder: Path) -> None:
    """Keep the values of this process (and of its forks) in ``folder``, shared on the host.

    Call it before anything is counted. Files of processes no longer running are deleted
    first: their counts belong to a previous run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder)
    os.environ[FOLDER_VARIABLE] = str(folder)
    if not _shared():
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call] # imported before the variable was set


def joined(role: str) -> None:
    """Count this process alive under ``role`` (``api`` or ``worker``)."""
    PROCESSES.labels(role).set(1)


def prune(folder: Path) -> None:
    """Delete the files of processes that are not running any more."""
    for path in folder.glob("*.db"):
        match = _PID_FILE.search(path.name)
        if match is not None and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def process_ended(pid: int) -> None:
    """Drop the live gauges of process ``pid`` (it exited); its counters stay summed."""
    folder = os.environ.get(FOLDER_VARIABLE)
    if folder and Path(folder).is_dir():
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


def exposition(*extra: Collector) -> bytes:
    """The text format of every process's values on this host, plus ``extra`` collectors."""
    registry = CollectorRegistry(auto_describe=False)
    folder = os.environ.get(FOLDER_VARIABLE)
    if folder and _shared():
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        for collector in extra:
            registry.register(collector)
        return generate_latest(registry)
    for collector in extra:
        registry.register(collector)
    return generate_latest(REGISTRY) + generate_latest(registry)


def observe_batch(histogram: Histogram, total: float, per_bucket: list[int]) -> None:
    """Record many observations at once: their ``total`` and their count per bucket.

    Exactly the increments that ``observe`` makes one value at a time (the sum, and the
    one bucket whose upper bound first holds the value: prometheus_client stores bucket
    counts per bucket and accumulates them when it collects).
    """
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, per_bucket, strict=True):
        if count:
            bucket.inc(count)


def serve_port(port: int, host: str) -> None:
    """Serve ``/metrics`` on ``host``:``port`` from a thread (a worker has no API port)."""
    folder = os.environ.get(FOLDER_VARIABLE)
    registry = REGISTRY
    if folder and _shared():
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def _shared() -> bool:
    return values.ValueClass is not values.MutexValue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
