"""#12: server-sent events: 1,000 open streams on one API process, against polling.

One ``reelgate serve`` (SQLite, no worker: ``REELGATE_WORKERS=0``) over 1,000 queued
tasks, each watched by one stream (``GET /v1/videos/{id}/events``, raw HTTP/1.1 over
asyncio in this process, so that the clients cost little). A writer in this process,
like a worker process on the same database, then changes tasks one at a time (a claim,
then a 5 percent progress step), 10 ms apart, and notes when each write committed.

- memory per stream: the server's ``VmRSS`` with every stream open (and each one's
  first event received) minus its RSS before any stream, over the number of streams;
- delay from a change to its event at the client: median and p99;
- baseline, in the same run and on the same server: clients polling
  ``GET /v1/videos/{id}`` once a second (far faster than CometAPI's advice of 10 to 20
  seconds), each on its own task, with the same writes; the delay from a change to the
  first poll that shows it.

Target: at most 100 KB per stream and a p99 delay of at most 0.5 s (the server reads
the events table every 0.1 s, ``REELGATE_EVENTS_POLL_INTERVAL``). Run alone:
``python -m bench.events [--quick] [--streams N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import options
from bench.report import Row
from bench.seed import insert_tasks, migrate_sqlite, submitted_task
from bench.servers import Server, create_key, running_server
from reelgate.domain.status import Phase
from reelgate.ports import Move
from reelgate.store.sqlite import SqliteStore

STREAMS, QUICK_STREAMS = 1_000, 50
POLLERS, QUICK_POLLERS = 200, 20
CHANGES, QUICK_CHANGES = 600, 40
POLL_EVERY = 1.0
GAP = 0.01  # between two writes
SETTLE = 2.0
PATH = "SSE: 1,000 open streams on one API process"
TARGET = "≤ 100 KB/stream, p99 delay ≤ 0.5 s"
KB = 1e3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--streams", type=int, default=None, help=f"open streams [{STREAMS:,}]")


@dataclass
class Watched:
    """One task under watch: when each change was written, and when a client saw it."""

    task_id: str
    written: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)

    def delays(self) -> list[float]:
        return [seen - written for written, seen in zip(self.written, self.seen, strict=False)]


def measure(args: argparse.Namespace) -> list[Row]:
    """Seed, start the server, measure streams, then pollers, on the same server."""
    streams = args.streams or (QUICK_STREAMS if args.quick else STREAMS)
    pollers = QUICK_POLLERS if args.quick else POLLERS
    changes = QUICK_CHANGES if args.quick else CHANGES
    with options.workdir() as work:
        data = work / "data"
        db = data / "reelgate.db"
        migrate_sqlite(db)
        now = time.time()
        tasks = [submitted_task(now) for _ in range(streams + pollers)]
        insert_tasks(db, tasks)
        key = create_key(data)
        ids = [task.id for task in tasks]
        settings = {"REELGATE_WORKERS": "0", "REELGATE_SSE_HEARTBEAT": "15"}
        with running_server(data, settings) as server:
            result = asyncio.run(_run(server, db, key, ids[:streams], ids[streams:], changes))
    return [_row(result, streams, pollers)]


@dataclass
class Result:
    idle_rss: int
    streams_rss: int
    sse: list[float]
    polled: list[float]
    polls: int
    seconds: float


async def _run(
    server: Server, db: Path, key: str, streamed: list[str], polled: list[str], changes: int
) -> Result:
    store = SqliteStore(db)
    try:
        await asyncio.sleep(SETTLE)
        idle = server.rss_bytes()
        host, port = server.url.removeprefix("http://").split(":")
        watched = {task_id: Watched(task_id) for task_id in streamed}
        opened = [asyncio.Event() for _ in streamed]
        readers = [
            asyncio.create_task(_stream(host, int(port), key, w, ready))
            for w, ready in zip(watched.values(), opened, strict=True)
        ]
        async with asyncio.timeout(120):
            await asyncio.gather(*(ready.wait() for ready in opened))
        await asyncio.sleep(SETTLE)
        with_streams = server.rss_bytes()
        await _write(store, list(watched.values()), changes)
        await _settled(watched.values())
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

        polls = {task_id: Watched(task_id) for task_id in polled}
        started = time.monotonic()
        counted = [0]
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=len(polled)),
            timeout=30,
        ) as client:
            stop = asyncio.Event()
            pollers = [asyncio.create_task(_poll(client, w, stop, counted)) for w in polls.values()]
            await asyncio.sleep(POLL_EVERY)
            await _write(store, list(polls.values()), min(changes, 2 * len(polled)))
            await _settled(polls.values(), timeout=10 * POLL_EVERY)
            stop.set()
            await asyncio.gather(*pollers)
        seconds = time.monotonic() - started
        sse = [d for w in watched.values() for d in w.delays()]
        by_poll = [d for w in polls.values() for d in w.delays()]
        return Result(idle, with_streams, sse, by_poll, counted[0], seconds)
    finally:
        await store.close()


async def _write(store: SqliteStore, watched: list[Watched], changes: int) -> None:
    """``changes`` writes, one at a time: a claim of a task, then a progress step."""
    order = [w for _ in range(2) for w in random.sample(watched, len(watched))]
    for w in order[:changes]:
        now = time.time()
        if not w.written:
            move = Move(
                w.task_id,
                frozenset({Phase.QUEUED}),
                Phase.RENDERING,
                now,
                fields={"lease_owner": "bench", "lease_until": now + 600, "attempts": 1},
                detail="attempt 1",
            )
            await store.move(move)
        else:
            await store.heartbeat(w.task_id, worker="bench", now=now, lease_seconds=600, progress=5)
        w.written.append(time.monotonic())
        await asyncio.sleep(GAP)


async def _settled(watched: Iterable[Watched], timeout: float = 10.0) -> None:
    """Wait until every written change was seen (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    items = list(watched)
    while time.monotonic() < deadline:
        if all(len(w.seen) >= len(w.written) for w in items):
            return
        await asyncio.sleep(0.05)


async def _stream(host: str, port: int, key: str, watched: Watched, ready: asyncio.Event) -> None:
    """One stream over raw HTTP/1.1: notes the arrival of each event after the first."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET /v1/videos/{watched.task_id}/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the stream answered {head[:200]!r}")
        buffer = b""
        first = True
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)  # chunked encoding
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if frame.startswith(b":"):
                    continue
                if first:
                    first = False
                    ready.set()
                else:
                    watched.seen.append(time.monotonic())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _poll(
    client: httpx.AsyncClient, watched: Watched, stop: asyncio.Event, counted: list[int]
) -> None:
    """Poll once a second (from a random phase); note when each change first shows."""
    await asyncio.sleep(random.random() * POLL_EVERY)
    while not stop.is_set():
        body = (await client.get(f"/v1/videos/{watched.task_id}")).json()
        counted[0] += 1
        # Changes shown: 1 once claimed (IN_PROGRESS), 2 once its progress rose.
        shown = (body["status"] == "IN_PROGRESS") + (body["progress"] > 0)
        while len(watched.seen) < shown:
            watched.seen.append(time.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_EVERY):
                await stop.wait()


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        value = values[0] if values else float("nan")
        return value, value
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


def _row(result: Result, streams: int, pollers: int) -> Row:
    per_stream = (result.streams_rss - result.idle_rss) / streams
    median, p99 = _quantiles(result.sse)
    poll_median, poll_p99 = _quantiles(result.polled)
    ratio = median / poll_median if poll_median else None
    notes = (
        f"SQLite, no worker; {streams:,} streams over raw HTTP/1.1 from one asyncio process; "
        f"RSS idle {result.idle_rss / 1e6:.1f} MB, with the streams "
        f"{result.streams_rss / 1e6:.1f} MB. {len(result.sse)} changes written 10 ms apart "
        f"(a claim, then a 5% progress step) by another process's store, each timed from its "
        f"commit to its event at the client. Baseline: {pollers} clients polling GET once a "
        f"second on their own tasks, same writes ({len(result.polled)} changes, "
        f"{result.polls / result.seconds:,.0f} req/s of polling); "
        f"the server reads the events table every 0.1 s."
    )
    return Row(
        "12",
        PATH if streams == STREAMS else f"SSE: {streams:,} open streams on one API process",
        f"{per_stream / KB:.1f} KB/stream; delay median {median * 1e3:.0f} ms, "
        f"p99 {p99 * 1e3:.0f} ms",
        f"polling GET every 1 s: median {poll_median * 1e3:.0f} ms, p99 {poll_p99 * 1e3:.0f} ms",
        ratio,
        TARGET,
        per_stream <= 100 * KB and p99 <= 0.5,
        notes,
        {
            "bytes_per_stream": per_stream,
            "median_s": median,
            "p99_s": p99,
            "poll_median_s": poll_median,
            "poll_p99_s": poll_p99,
        },
    )


def main() -> None:
    """Run #12 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
