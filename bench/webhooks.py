"""#13: webhook deliveries per second, from the outbox to a fast loopback receiver.

``--deliveries`` tasks end SUCCESS in a fresh SQLite store whose owner has one
endpoint: the store's trigger writes one delivery each into the outbox, as it does
in production. The figure is the delivery loop (``reelgate.worker.webhooks``, the
code worker processes run) draining that outbox in burst mode: claims, the address
check, the signature, the POST, and each attempt's record.

The baseline is the receiver's own rate under a plain loop of ``httpx`` POSTs of
the same signed body with the same concurrency, measured in the same run: the
ceiling. The receiver is a bare ASGI app under uvicorn in its own process, so it
loads neither side. Rounds alternate figure and baseline; the best of each counts.
No target: the ratio says how close the outbox comes to the wire.

Run alone: ``python -m bench.webhooks [--quick] [--deliveries N] [--concurrency N]``
(``--quick``: 200 deliveries, one round).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench import options
from bench.report import Row
from bench.servers import free_port

DELIVERIES, QUICK_DELIVERIES = 5000, 200
TARGET = "reported (the outbox against the receiver's own rate)"
OWNER = "bench"
RECEIVER_URL = "http://127.0.0.1:{port}/hook"


async def _receiver_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The receiver: reads the body, answers 204 (``GET /count``: how many arrived)."""
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        body = str(_COUNT[0]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    _COUNT[0] += 1
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


_COUNT = [0]


def serve_receiver(port: int) -> None:
    """Run the receiver on ``port`` until killed (the child process's whole life)."""
    import uvicorn

    uvicorn.run(_receiver_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_receiver() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.webhooks", "--receiver", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(RECEIVER_URL.format(port=port).replace("/hook", "/count"), timeout=1)
            return child, port
        except httpx.HTTPError:
            time.sleep(0.05)
    child.kill()
    raise RuntimeError("the receiver did not start")


async def seed(db: Path, deliveries: int, url: str) -> None:
    """A fresh store with one endpoint and ``deliveries`` tasks that ended SUCCESS."""
    import sqlite3

    from reelgate.domain.webhooks import Endpoint, new_secret
    from reelgate.store.sqlite import SqliteStore

    store = SqliteStore(db)
    await store.migrate()
    now = time.time()
    await store.add_endpoint(Endpoint("wh_bench", OWNER, url, new_secret(), now))
    await store.close()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO tasks (id, owner, model, prompt, seconds, size, resolution, status, "
            "progress, created_at, updated_at, completed_at, output_key, phase) VALUES "
            "(?, ?, 'doubao-seedance-1-0-pro', 'p', 5, '16:9', '720p', 'SUCCESS', 100, ?, ?, ?,"
            " ?, 'done')",
            [
                (f"task_{n}", OWNER, now, now, now, f"videos/task_{n}.1.mp4")
                for n in range(deliveries)
            ],
        )
        conn.executemany(  # the terminal events: the trigger writes the outbox
            "INSERT INTO task_events (task_id, at, status, progress) VALUES (?, ?, 'SUCCESS', 100)",
            [(f"task_{n}", now) for n in range(deliveries)],
        )


async def outbox_run(db: Path, deliveries: int, concurrency: int) -> float:
    """Seconds for the delivery loop to drain the outbox of ``db``."""
    from reelgate.services.addresses import AddressGuard, parse_networks
    from reelgate.services.signing import Signer
    from reelgate.services.webhooks import WebhookService
    from reelgate.store.sqlite import SqliteStore
    from reelgate.worker.webhooks import Deliverer, DeliveryConfig

    store = SqliteStore(db)
    guard = AddressGuard(parse_networks("127.0.0.1/32"))
    signer = Signer(b"bench-webhooks-signing-secret-0123456789")
    webhooks = WebhookService(store, time.time, guard, signer)
    config = DeliveryConfig(batch=2 * concurrency, concurrency=concurrency)
    deliverer = Deliverer(
        store,
        guard,
        time.time,
        video_url=lambda key: signer.sign("http://127.0.0.1:8000", "/files/" + key, 2**31),
        callback_secret=webhooks.callback_secret,
        config=config,
    )
    started = time.perf_counter()
    done = await deliverer.burst()
    took = time.perf_counter() - started
    await deliverer.close()
    log = await store.list_deliveries(OWNER, limit=1)
    await store.close()
    if done != deliveries or log[0].state != "delivered":
        raise RuntimeError(f"the outbox run attempted {done} of {deliveries}")
    return took


async def baseline_run(url: str, deliveries: int, concurrency: int) -> float:
    """Seconds for a plain httpx loop to POST ``deliveries`` signed bodies."""
    from reelgate.domain.webhooks import Delivery, new_secret, payload, sign

    secret = new_secret()
    now = time.time()
    sample = Delivery(
        "msg_0" * 8, OWNER, "wh_bench", url, "task_0", 1, "SUCCESS", 100,
        "doubao-seedance-1-0-pro", None, None, "videos/task_0.1.mp4", now, "pending", 0, now, now,
    )  # fmt: skip
    body = payload(sample, "http://127.0.0.1:8000/files/videos/task_0.1.mp4?x=1", int(now))
    queue = iter(range(deliveries))

    async def loop(client: httpx.AsyncClient) -> None:
        for n in queue:
            stamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": f"msg_{n}",
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(secret, f"msg_{n}", stamp, body),
            }
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=5, limits=limits, trust_env=False) as client:
        started = time.perf_counter()
        await asyncio.gather(*(loop(client) for _ in range(concurrency)))
        return time.perf_counter() - started


def measure(args: argparse.Namespace) -> list[Row]:
    """Rounds of the outbox run and the baseline; one row with the best of each."""
    deliveries = args.deliveries or (QUICK_DELIVERIES if args.quick else DELIVERIES)
    rounds = options.rounds(args)
    receiver, port = start_receiver()
    url = RECEIVER_URL.format(port=port)
    outbox: list[float] = []
    plain: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="reelgate-bench-webhooks-") as folder:
            for n in range(rounds):
                db = Path(folder) / f"round{n}.db"
                asyncio.run(seed(db, deliveries, url))
                outbox.append(
                    deliveries / asyncio.run(outbox_run(db, deliveries, args.concurrency))
                )
                plain.append(
                    deliveries / asyncio.run(baseline_run(url, deliveries, args.concurrency))
                )
    finally:
        receiver.kill()
        receiver.wait()
    rate, ceiling = max(outbox), max(plain)
    runs = "one run" if rounds == 1 else f"{rounds} rounds, best of each"
    notes = (
        f"{deliveries:,} SUCCESS deliveries to one endpoint from a SQLite outbox, "
        f"{args.concurrency} attempts in flight (claims of {2 * args.concurrency}), each "
        f"address-checked, signed and recorded: {', '.join(f'{r:,.0f}' for r in outbox)}/s; "
        f"a plain httpx loop of the same signed body, same concurrency: "
        f"{', '.join(f'{r:,.0f}' for r in plain)}/s; {runs}. Receiver: a bare ASGI app under "
        "uvicorn in its own process."
    )
    return [
        Row(
            "13",
            "webhook deliveries from the outbox",
            f"{rate:,.0f} deliveries/s",
            f"{ceiling:,.0f} POSTs/s (plain httpx loop)",
            rate / ceiling,
            TARGET,
            None,
            notes,
            {"rate": rate, "baseline_rate": ceiling, "deliveries": float(deliveries)},
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--deliveries", type=int, default=None, help="deliveries per run [5000]")
    parser.add_argument("--concurrency", type=int, default=32, help="POSTs in flight [32]")
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run #13, print its row, write it where ``--json`` says."""
    parser = options.parser(__doc__, prog="python -m bench.webhooks")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.receiver is not None:
        serve_receiver(args.receiver)
        return 0
    options.finish(args, measure(args))
    return 0


if __name__ == "__main__":
    os.environ.pop("REELGATE_WEBHOOK_ALLOWED_NETWORKS", None)
    sys.exit(main())
