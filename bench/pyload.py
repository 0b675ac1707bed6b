"""The fallback load generator: asyncio, HTTP/1.1 keep-alive, in a child process.

Used only when ``wrk`` is missing in quick mode (the smoke tests on a clean machine),
so that every benchmark still runs end to end. It is no match for wrk: on a small
machine it is itself the bottleneck, so its figures are not comparable.

It also drives #5, whose creates must come from a client that is not the bottleneck:
with ``count`` in the config it sends that many requests in all, then stops.

Run as ``python -m bench.pyload CONFIG_JSON``; prints the fields of ``LoadResult``
(without ``tool``) as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class _Budget:
    """Until when, or how many more, requests may start."""

    def __init__(self, seconds: float | None, count: int | None) -> None:
        self._until = time.perf_counter() + seconds if seconds is not None else float("inf")
        self._left = count if count is not None else -1

    def take(self) -> bool:
        if self._left == 0 or time.perf_counter() >= self._until:
            return False
        self._left -= 1
        return True


async def _connection(
    host: str, port: int, requests: list[bytes], budget: _Budget, latencies: list[float]
) -> int:
    """Send requests on one connection while ``budget`` allows; return how many failed."""
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while budget.take():
            start = time.perf_counter()
            writer.write(random.choice(requests))
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1e3)
            parts = status_line.split()
            if len(parts) < 2 or int(parts[1]) >= 400:
                errors += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors += 1
    finally:
        writer.close()
    return errors


def _requests(config: dict[str, Any], host: str) -> list[bytes]:
    body = Path(config["body_file"]).read_bytes() if config["body_file"] else b""
    headers = {"Host": host, **config["headers"]}
    if body:
        headers["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    out = []
    for path in Path(config["paths_file"]).read_text().split():
        out.append(f"{config['method']} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    return out


async def _run(config: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(config["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = _requests(config, f"{host}:{port}")
    latencies: list[float] = []
    start = time.perf_counter()
    budget = _Budget(config.get("seconds"), config.get("count"))
    connections = range(config["connections"])
    errors = await asyncio.gather(
        *(_connection(host, port, requests, budget, latencies) for _ in connections)
    )
    seconds = time.perf_counter() - start
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] if latencies else 0

    return {
        "requests": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(0.50),
        "p90_ms": percentile(0.90),
        "p99_ms": percentile(0.99),
        "errors": sum(errors),
    }


def main() -> None:
    """Read the JSON config from the command line, run the load, print the result."""
    print(json.dumps(asyncio.run(_run(json.loads(sys.argv[1])))))


if __name__ == "__main__":
    main()
