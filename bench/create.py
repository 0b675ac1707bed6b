"""#3: ``POST /v1/videos`` as multipart, each acknowledged after a durable commit.

wrk posts the same multipart body (a 5 s 720p text-to-video task, as curl ``-F``
sends it) over keep-alive connections to a server on SQLite that runs the API only
(``REELGATE_WORKERS=0``, so that nothing renders meanwhile). The baseline is the
route of #1 (``GET /bench/videos/{id}``) on the same server. Target: at least 500
creates per second on SQLite; the ratio to the baseline is reported. Afterwards the
tasks in the database are counted: every acknowledged create must be there.

Run alone: ``python -m bench.create [--quick]``.
"""

from __future__ import annotations

import argparse

import httpx

from bench import forms, options
from bench.load import Load, alternate, fastest
from bench.report import Row
from bench.seed import migrate_sqlite, query
from bench.servers import create_key, running_server
from reelgate.domain.task import new_task_id

PATH = "`POST /v1/videos` multipart, SQLite"
TARGET = "≥ 500 creates/s"


def measure(args: argparse.Namespace) -> list[Row]:
    """Start an API-only server and alternate creates with the baseline route."""
    seconds, rounds = options.seconds(args), options.rounds(args)
    with options.workdir() as work:
        data = work / "data"
        db = data / "reelgate.db"
        migrate_sqlite(db)
        key = create_key(data)
        generator = options.load_generator(args, work)
        body, content_type = forms.multipart(forms.fields())
        headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
        loads = {
            "baseline": Load("GET", [f"/bench/videos/{new_task_id()}" for _ in range(1000)]),
            "create": Load("POST", ["/v1/videos"], headers, body),
        }
        with running_server(data, {"REELGATE_WORKERS": "0"}) as server:
            _check(server.url, headers, body)
            options.warm_up(args, generator, server.url, loads)
            with options.profiled(args, server.pid, "create"):
                runs = alternate(generator, server.url, loads, seconds, rounds)
        stored = query(db, "SELECT count(*) FROM tasks")[0][0]
    acknowledged = sum(run.requests for run in runs["create"])
    best, base = fastest(runs["create"]), fastest(runs["baseline"])
    detail = (
        f"API only (no worker), SQLite WAL with synchronous=FULL; {generator.tool} with "
        f"{generator.connections} connections, {rounds} x {seconds} s alternating, best of "
        f"each. Create {best.summary()}; baseline {base.summary()}. {stored:,} tasks "
        f"stored for {acknowledged:,} creates acknowledged in the measured runs (plus the "
        "warm-up and the check)."
    )
    return [
        Row(
            "3",
            PATH,
            f"{best.rps:,.0f} creates/s, p99 {best.p99_ms:.1f} ms",
            f"{base.rps:,.0f} req/s (bench route)",
            best.rps / base.rps,
            TARGET,
            best.rps >= 500,
            detail,
            {"rps": best.rps, "baseline_rps": base.rps, "p99_ms": best.p99_ms},
        )
    ]


def _check(base_url: str, headers: dict[str, str], body: bytes) -> None:
    """The body wrk sends is a valid create."""
    response = httpx.post(f"{base_url}/v1/videos", headers=headers, content=body, timeout=10)
    if response.status_code != 200 or response.json().get("status") != "SUBMITTED":
        raise RuntimeError(f"the create body is refused: {response.status_code} {response.text}")


def main() -> None:
    """Run #3 and report it."""
    options.main(__doc__, measure)


if __name__ == "__main__":
    main()
