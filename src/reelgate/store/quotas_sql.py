"""SQL of keys' limits and of usage, shared by the SQLite and PostgreSQL stores.

A create under limits runs in one transaction (serialised per owner): it counts what
the limits name, refuses with ``RateLimited`` (the transaction rolls back: no row, no
counter), else counts the create and inserts the task. Usage is written by the
triggers of migration 0008.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reelgate.domain.quotas import MINUTE, Limits, UsageLine, day_of
from reelgate.domain.task import ApiKey, Task
from reelgate.store.sql import KEY_COLUMNS

# The conditions repeat the partial indexes' word for word (SQLite's planner needs it).
COUNT_ACTIVE = (
    "SELECT COUNT(*) FROM tasks WHERE owner = :owner AND status IN ('SUBMITTED', 'IN_PROGRESS')"
)
COUNT_QUEUED = "SELECT COUNT(*) FROM tasks WHERE status IN ('SUBMITTED', 'IN_PROGRESS')"
SELECT_DAILY = "SELECT SUM(seconds) FROM daily_seconds WHERE owner = :owner AND day = :day"

# One more create this minute, unless the count reached the limit (then no row returns;
# a limit of 0 admits not even the minute's first create).
COUNT_RATE = """
INSERT INTO rate_counters (owner, minute, count) SELECT :owner, :minute, 1 WHERE :rate > 0
ON CONFLICT (owner, minute) DO UPDATE SET count = rate_counters.count + 1
WHERE rate_counters.count < :rate
RETURNING count
"""
PRUNE_RATE = "DELETE FROM rate_counters WHERE owner = :owner AND minute < :minute"
ADD_DAILY = """
INSERT INTO daily_seconds (task_id, owner, day, seconds) VALUES (:task_id, :owner, :day, :seconds)
"""
PRUNE_DAILY = "DELETE FROM daily_seconds WHERE owner = :owner AND day < :day - 1"

SELECT_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = :id"
UPDATE_KEY = f"""
UPDATE api_keys SET name = :name, role = :role, rate_per_minute = :rate_per_minute,
    max_active = :max_active, seconds_per_day = :seconds_per_day
WHERE id = :id
RETURNING {KEY_COLUMNS}
"""


def usage_statement(
    start_day: int, end_day: int, owner: str | None, model: str | None
) -> tuple[str, dict[str, Any]]:
    """The sum of ``usage_daily`` over days ``start_day..end_day`` per owner and model."""
    where = ["day >= :start AND day <= :end"]
    params: dict[str, Any] = {"start": start_day, "end": end_day}
    if owner is not None:
        where.append("owner = :owner")
        params["owner"] = owner
    if model is not None:
        where.append("model = :model")
        params["model"] = model
    statement = (
        "SELECT owner, model, SUM(tasks), SUM(seconds), SUM(tokens) FROM usage_daily "
        f"WHERE {' AND '.join(where)} GROUP BY owner, model ORDER BY owner, model"
    )
    return statement, params


def usage_from_rows(rows: Sequence[Sequence[Any]]) -> list[UsageLine]:
    """Map the rows of ``usage_statement`` to usage lines (no cost yet)."""
    return [
        UsageLine(owner, model, int(tasks), int(seconds), int(tokens))
        for owner, model, tasks, seconds, tokens in rows
    ]


def quota_params(task: Task, limits: Limits) -> dict[str, Any]:
    """The named parameters of the statements above for a create of ``task``."""
    return {
        "task_id": task.id,
        "owner": task.owner,
        "minute": int(task.created_at // MINUTE),
        "day": day_of(task.created_at),
        "seconds": task.spec.seconds,
        "rate": limits.rate_per_minute,
    }


def counts_needed(limits: Limits) -> tuple[bool, bool, bool]:
    """Which counts ``limits`` needs: (active, daily seconds, queued)."""
    return (
        limits.max_active is not None,
        limits.seconds_per_day is not None,
        limits.max_queued is not None,
    )


def key_update_params(key: ApiKey) -> dict[str, Any]:
    """The named parameters of ``UPDATE_KEY``."""
    return {"id": key.id, "name": key.name, "role": key.role.value, **key.limits.as_dict()}
