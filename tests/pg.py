"""Throwaway PostgreSQL databases for tests, on the local server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN_URL = os.environ.get("REELGATE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create a database with a random name, yield its URL, drop it afterwards."""
    name = "reelgate_test_" + secrets.token_hex(6)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    """Empty every reelgate table of the database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE tasks, task_events, api_keys, pollers, durations, cancels, "
            "idempotency_keys, webhook_endpoints, task_callbacks, webhook_deliveries, "
            "rate_counters, daily_seconds, usage_daily, leases"
        )
