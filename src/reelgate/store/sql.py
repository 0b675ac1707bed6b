"""SQL text and row mapping shared by the SQLite and PostgreSQL stores.

Statements use ``:name`` parameters (sqlite3's style); ``for_psycopg`` turns
them into ``%(name)s``. Each status change is one conditional UPDATE that
names the expected status (and the lease owner where one holds the task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Event, Task, TaskSpec

TASK_COLUMNS = (
    "id, owner, model, prompt, seconds, size, resolution, input_key, status, progress, "
    "created_at, updated_at, completed_at, attempts, lease_owner, lease_until, "
    "output_key, error_code, error_message"
)
KEY_COLUMNS = "id, owner, name, key_hash, prefix, created_at, revoked_at"

INSERT_TASK = f"""
INSERT INTO tasks ({TASK_COLUMNS}) VALUES (
    :id, :owner, :model, :prompt, :seconds, :size, :resolution, :input_key, :status,
    :progress, :created_at, :updated_at, :completed_at, :attempts, :lease_owner,
    :lease_until, :output_key, :error_code, :error_message)
"""

INSERT_EVENT = """
INSERT INTO task_events (task_id, at, status, progress, detail)
VALUES (:task_id, :at, :status, :progress, :detail)
"""

SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id"

# QUEUED repeats the partial index's condition word for word: SQLite's planner uses the
# index (the queue) only for a WHERE that contains it, else it scans the whole history.
QUEUED = "status IN ('SUBMITTED', 'IN_PROGRESS')"

CLAIMABLE = f"""
({QUEUED} AND (status = 'SUBMITTED'
 OR (status = 'IN_PROGRESS' AND lease_until < :now AND attempts < :max_attempts)))
"""

CLAIM = """
UPDATE tasks SET status = 'IN_PROGRESS', lease_owner = :worker, lease_until = :lease_until,
    attempts = attempts + 1, updated_at = :now
WHERE {chosen} AND {claimable}
RETURNING {columns}
"""

HEARTBEAT = f"""
UPDATE tasks SET progress = {{greatest}}(progress, :progress), lease_until = :lease_until,
    updated_at = :now
WHERE id = :id AND status = 'IN_PROGRESS' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

FINISH = f"""
UPDATE tasks SET status = :status,
    progress = CASE WHEN :status = 'SUCCESS' THEN 100 ELSE progress END,
    completed_at = :now, updated_at = :now, lease_owner = NULL, lease_until = NULL,
    output_key = :output_key, error_code = :error_code, error_message = :error_message
WHERE id = :id AND status = 'IN_PROGRESS' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

RELEASE = f"""
UPDATE tasks SET lease_owner = NULL, lease_until = 0, attempts = attempts - 1, updated_at = :now
WHERE id = :id AND status = 'IN_PROGRESS' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

EXPIRE = f"""
UPDATE tasks SET status = 'ERROR', completed_at = :now, updated_at = :now,
    lease_owner = NULL, lease_until = NULL, error_code = 'worker_lost',
    error_message = 'the render was interrupted ' || attempts || ' times; giving up'
WHERE {QUEUED} AND status = 'IN_PROGRESS' AND lease_until < :now
    AND attempts >= :max_attempts
RETURNING {TASK_COLUMNS}
"""

SELECT_EVENTS = """
SELECT task_id, seq, at, status, progress, detail FROM task_events
WHERE task_id = :task_id ORDER BY seq
"""

INSERT_KEY = f"""
INSERT INTO api_keys ({KEY_COLUMNS})
VALUES (:id, :owner, :name, :key_hash, :prefix, :created_at, :revoked_at)
"""
SELECT_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = :key_hash"
SELECT_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at"
REVOKE_KEY = f"""
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, :now) WHERE id = :id
RETURNING {KEY_COLUMNS}
"""

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def for_psycopg(sql: str) -> str:
    """Rewrite ``:name`` parameters as psycopg's ``%(name)s``."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def migrations(dialect: str) -> list[tuple[int, str]]:
    """The numbered migration scripts of ``dialect``, in order: ``(version, sql)``."""
    folder = resources.files("reelgate.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


def task_params(task: Task) -> dict[str, Any]:
    """The named parameters of ``INSERT_TASK`` for ``task``."""
    spec = task.spec
    return {
        "id": task.id,
        "owner": task.owner,
        "model": spec.model,
        "prompt": spec.prompt,
        "seconds": spec.seconds,
        "size": spec.size,
        "resolution": spec.resolution,
        "input_key": spec.input_key,
        "status": task.status.value,
        "progress": task.progress,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "completed_at": task.completed_at,
        "attempts": task.attempts,
        "lease_owner": task.lease_owner,
        "lease_until": task.lease_until,
        "output_key": task.output_key,
        "error_code": task.error_code,
        "error_message": task.error_message,
    }


def lease_params(task_id: str, worker: str, now: float, **extra: object) -> dict[str, Any]:
    """The named parameters of a statement on a task that ``worker`` leases."""
    return {"id": task_id, "worker": worker, "now": now, **extra}


def event_params(task: Task, detail: str | None = None) -> dict[str, Any]:
    """The named parameters of ``INSERT_EVENT`` recording ``task``'s current state."""
    return {
        "task_id": task.id,
        "at": task.updated_at,
        "status": task.status.value,
        "progress": task.progress,
        "detail": detail,
    }


def task_from_row(row: Sequence[Any]) -> Task:
    """Map a row of ``TASK_COLUMNS`` to a ``Task``."""
    (
        id_,
        owner,
        model,
        prompt,
        seconds,
        size,
        resolution,
        input_key,
        status,
        progress,
        created_at,
        updated_at,
        completed_at,
        attempts,
        lease_owner,
        lease_until,
        output_key,
        error_code,
        error_message,
    ) = row
    return Task(
        id=id_,
        owner=owner,
        spec=TaskSpec(model, prompt, seconds, size, resolution, input_key),
        status=Status(status),
        progress=progress,
        created_at=created_at,
        updated_at=updated_at,
        completed_at=completed_at,
        attempts=attempts,
        lease_owner=lease_owner,
        lease_until=lease_until,
        output_key=output_key,
        error_code=error_code,
        error_message=error_message,
    )


def key_from_row(row: Sequence[Any]) -> ApiKey:
    """Map a row of ``KEY_COLUMNS`` to an ``ApiKey``."""
    return ApiKey(*row)


def event_from_row(row: Sequence[Any]) -> Event:
    """Map a row of ``SELECT_EVENTS`` to an ``Event``."""
    task_id, seq, at, status, progress, detail = row
    return Event(task_id, seq, at, Status(status), progress, detail)


def key_params(key: ApiKey) -> Mapping[str, Any]:
    """The named parameters of ``INSERT_KEY``."""
    return {
        "id": key.id,
        "owner": key.owner,
        "name": key.name,
        "key_hash": key.key_hash,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
