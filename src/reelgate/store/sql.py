"""SQL text and row mapping shared by the SQLite and PostgreSQL stores.

Statements use ``:name`` parameters (sqlite3's style); ``for_psycopg`` turns
them into ``%(name)s``. Each status change is one conditional UPDATE that
names the expected status (and the lease owner where one holds the task).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from reelgate.domain.errors import Conflict, InvalidParameter, ReelgateError, Unavailable
from reelgate.domain.listing import Cursor, ListQuery
from reelgate.domain.progress import LEARNING_RATE
from reelgate.domain.quotas import Limits, Role
from reelgate.domain.request import storable_text
from reelgate.domain.routing import Candidate, Pick, Route, first_free
from reelgate.domain.status import (
    CANCELLABLE,
    CANCELLED,
    CANCELLED_MESSAGE,
    CANCELLED_STATUS,
    Phase,
    Status,
)
from reelgate.domain.task import ApiKey, Event, Task, TaskSpec
from reelgate.ports import Move

log = logging.getLogger("reelgate.store")

TASK_COLUMNS = (
    "id, owner, model, prompt, seconds, size, resolution, input_key, status, progress, "
    "created_at, updated_at, completed_at, attempts, lease_owner, lease_until, "
    "output_key, error_code, error_message, phase, provider, upstream_model, upstream_id, "
    "next_check_at, watcher, submitted_at, expected_seconds, upstream_url, "
    "upstream_url_expires, usage_tokens, faults, output_bytes, input_bytes, files_expired_at, "
    "input_expired_at"
)
# The columns a ``Move`` may set; the rest never change after create, or only by the
# statements below.
MOVABLE = frozenset(
    [
        "progress",
        "attempts",
        "lease_owner",
        "lease_until",
        "output_key",
        "error_code",
        "error_message",
        "provider",
        "upstream_model",
        "upstream_id",
        "next_check_at",
        "watcher",
        "submitted_at",
        "expected_seconds",
        "upstream_url",
        "upstream_url_expires",
        "usage_tokens",
        "faults",
        "output_bytes",
    ]
)
KEY_COLUMNS = (
    "id, owner, name, key_hash, prefix, created_at, revoked_at, role, rate_per_minute, "
    "max_active, seconds_per_day"
)

INSERT_TASK = f"""
INSERT INTO tasks ({TASK_COLUMNS}) VALUES (
    :id, :owner, :model, :prompt, :seconds, :size, :resolution, :input_key, :status,
    :progress, :created_at, :updated_at, :completed_at, :attempts, :lease_owner,
    :lease_until, :output_key, :error_code, :error_message, :phase, :provider,
    :upstream_model, :upstream_id, :next_check_at, :watcher, :submitted_at,
    :expected_seconds, :upstream_url, :upstream_url_expires, :usage_tokens, :faults,
    :output_bytes, :input_bytes, :files_expired_at, :input_expired_at)
"""

INSERT_EVENT = """
INSERT INTO task_events (task_id, at, status, progress, detail)
VALUES (:task_id, :at, :status, :progress, :detail)
"""

SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id"

# QUEUED repeats the partial index's condition word for word: SQLite's planner uses the
# index (the work queue) only for a WHERE that contains it, else it scans the whole history.
QUEUED = "status IN ('SUBMITTED', 'IN_PROGRESS')"
WATCHED = "phase IN ('watching', 'rehosting')"  # the same, for the pollers' index

# The statements of local renders below name their phases by hand; a unit test checks
# each against the machine (``MOVES``), as ``move_statement`` does for the rest.
CLAIMABLE = f"""
({QUEUED} AND phase IN ('queued', 'rendering') AND ((status = 'SUBMITTED' AND phase = 'queued')
 OR (phase = 'rendering' AND lease_until < :now AND attempts < :max_attempts)))
"""

CLAIM = """
UPDATE tasks SET status = 'IN_PROGRESS', phase = 'rendering', lease_owner = :worker,
    lease_until = :lease_until, attempts = attempts + 1, updated_at = :now
WHERE {chosen} AND {claimable}
RETURNING {columns}
"""

HEARTBEAT = f"""
UPDATE tasks SET progress = {{greatest}}(progress, :progress), lease_until = :lease_until,
    updated_at = :now
WHERE id = :id AND phase = 'rendering' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

FINISH = f"""
UPDATE tasks SET status = :status, phase = 'done',
    progress = CASE WHEN :status = 'SUCCESS' THEN 100 ELSE progress END,
    completed_at = :now, updated_at = :now, lease_owner = NULL, lease_until = NULL,
    output_key = :output_key, error_code = :error_code, error_message = :error_message,
    output_bytes = :output_bytes
WHERE id = :id AND phase = 'rendering' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

RELEASE = f"""
UPDATE tasks SET lease_owner = NULL, lease_until = 0, attempts = attempts - 1, updated_at = :now
WHERE id = :id AND phase = 'rendering' AND lease_owner = :worker
RETURNING {TASK_COLUMNS}
"""

EXPIRE = f"""
UPDATE tasks SET status = 'ERROR', phase = 'done', completed_at = :now, updated_at = :now,
    lease_owner = NULL, lease_until = NULL, error_code = 'worker_lost',
    error_message = 'the render was interrupted ' || attempts || ' times; giving up'
WHERE {QUEUED} AND phase = 'rendering' AND lease_until < :now
    AND attempts >= :max_attempts
RETURNING {TASK_COLUMNS}
"""

# Remote tasks ------------------------------------------------------------------------

# Submission candidates: queued tasks of routed models that are due, and submissions
# whose submitter died (their lease expired) with the request maybe sent.
SUBMIT_CANDIDATES = f"""
SELECT id, model, phase, provider, upstream_model, submitted_at, attempts FROM tasks
WHERE {QUEUED} AND phase IN ('queued', 'submitting') AND status = 'SUBMITTED' AND (
    (phase = 'queued' AND model IN ({{models}})
     AND (next_check_at IS NULL OR next_check_at <= :now))
    OR (phase = 'submitting' AND lease_until < :now))
ORDER BY created_at LIMIT :limit
"""

# Upstream tasks in flight, per provider: what admission control counts.
IN_FLIGHT = f"""
SELECT provider, COUNT(*) FROM tasks
WHERE {QUEUED} AND phase IN ('submitting', 'watching') GROUP BY provider
"""

CLAIM_WATCH = f"""
UPDATE tasks SET watcher = :poller
WHERE id IN (
    SELECT id FROM tasks WHERE {WATCHED}
    AND (watcher IS NULL OR watcher NOT IN (SELECT id FROM pollers WHERE alive_until >= :now))
    ORDER BY next_check_at LIMIT :limit{{lock}})
AND {WATCHED}
RETURNING {TASK_COLUMNS}
"""

BEAT_POLLER = """
INSERT INTO pollers (id, alive_until) VALUES (:poller, :alive_until)
ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until
"""
RELEASE_WATCHED = f"UPDATE tasks SET watcher = NULL WHERE {WATCHED} AND watcher = :poller"
DROP_POLLER = "DELETE FROM pollers WHERE id = :poller OR alive_until < :forgotten"
SELECT_POLLERS = "SELECT id, alive_until FROM pollers ORDER BY id"

UPSTREAM_IDS = """
SELECT upstream_id FROM tasks
WHERE provider IS NOT NULL AND provider = :provider AND submitted_at >= :since
    AND upstream_id IS NOT NULL
"""

SELECT_DURATION = """
SELECT mean FROM durations
WHERE provider = :provider AND model = :model AND seconds = :seconds AND resolution = :resolution
"""
LEARN_DURATION = """
INSERT INTO durations (provider, model, seconds, resolution, mean, samples)
VALUES (:provider, :model, :seconds, :resolution, :took, 1)
ON CONFLICT (provider, model, seconds, resolution) DO UPDATE SET
    mean = durations.mean + :rate * (:took - durations.mean), samples = durations.samples + 1
"""

# Cancel and delete ---------------------------------------------------------------------

# The log of cancellations that worker processes read (``cancelled_since``), kept a day.
INSERT_CANCEL = "INSERT INTO cancels (task_id, at) VALUES (:m_id, :m_now)"
PRUNE_CANCELS = "DELETE FROM cancels WHERE at < :forgotten"
SELECT_CANCELS = "SELECT task_id FROM cancels WHERE at >= :since ORDER BY seq"
CANCEL_LOG_SECONDS = 86400.0
DELETE_EVENTS = "DELETE FROM task_events WHERE task_id = :id"
# What else names a deleted task: a replayed Idempotency-Key must not find it, nor a
# callback URL outlive it (its deliveries stay: the owner's log of what was sent).
DELETE_TASK_KEYS = "DELETE FROM idempotency_keys WHERE task_id = :id"
DELETE_TASK_CALLBACK = "DELETE FROM task_callbacks WHERE task_id = :id"
DELETE_TASK = "DELETE FROM tasks WHERE id = :id RETURNING id"


def cancel_move(task_id: str, now: float) -> Move:
    """The one conditional move that cancels a task: any phase but DONE -> DONE, FAILED."""
    return Move(
        task_id,
        CANCELLABLE,
        Phase.DONE,
        now,
        outcome=CANCELLED_STATUS,
        fields={"error_code": CANCELLED, "error_message": CANCELLED_MESSAGE},
        detail=CANCELLED,
    )


def move_statement(move: Move, *, greatest: str) -> tuple[str, dict[str, Any]]:
    """The conditional UPDATE of ``move`` (RETURNING the task), generated from the machine.

    The WHERE names the task, the phases it may be in and its holder; zero rows
    updated means the task is not where the caller thought (the caller raises).
    """
    status = move.status()
    sets: dict[str, str] = {
        "status": ":m_status",
        "phase": ":m_phase",
        "updated_at": ":m_now",
    }
    if move.target is Phase.DONE:
        sets.update(
            completed_at=":m_now",
            lease_owner="NULL",
            lease_until="NULL",
            watcher="NULL",
            next_check_at="NULL",
        )
        if status is Status.SUCCESS:
            sets["progress"] = "100"
    params: dict[str, Any] = {
        "m_status": status.value,
        "m_phase": move.target.value,
        "m_now": move.now,
        "m_id": move.task_id,
        "m_detail": move.detail,
    }
    for column, value in move.fields.items():
        if column not in MOVABLE:
            raise ValueError(f"a move cannot set column {column!r}")
        if column == "progress" and "progress" not in sets:
            sets[column] = f"{greatest}(progress, :f_progress)"
        elif column != "progress":
            sets[column] = f":f_{column}"
        params[f"f_{column}"] = value
    phases = ", ".join(f"'{phase.value}'" for phase in sorted(move.source))
    where = f"id = :m_id AND phase IN ({phases})"
    if move.holder is not None:
        column, holder = move.holder
        if column not in ("lease_owner", "watcher"):
            raise ValueError(f"a task is held by lease_owner or watcher, not {column!r}")
        where += f" AND {column} = :m_holder"
        params["m_holder"] = holder
    assignments = ", ".join(f"{column} = {value}" for column, value in sets.items())
    return f"UPDATE tasks SET {assignments} WHERE {where} RETURNING {TASK_COLUMNS}", params


def list_statement(
    owner: str, query: ListQuery, cursor: Cursor | None
) -> tuple[str, dict[str, Any]]:
    """The keyset read of one page of ``owner``'s tasks (one row more than the page).

    Backed by the index ``tasks_owner_listing (owner, created_at, id)``: the owner is
    its equality prefix, the cursor a row-value range on the rest, and the ORDER BY its
    order (or its reverse), so a page reads ``limit + 1`` index entries from the cursor
    on, however deep. The filters are checked on the rows the scan meets.
    """
    direction, beyond = ("DESC", "<") if query.descending else ("ASC", ">")
    where = ["owner = :owner"]
    params: dict[str, Any] = {"owner": owner, "limit": query.limit + 1}
    if cursor is not None:
        where.append(f"(created_at, id) {beyond} (:cursor_at, :cursor_id)")
        params.update(cursor_at=cursor[0], cursor_id=cursor[1])
    if query.status is not None:
        where.append("status = :status")
        params["status"] = query.status.value
    if query.model is not None:
        where.append("model = :model")
        params["model"] = query.model
    if query.created_after is not None:
        where.append("created_at >= :created_after")
        params["created_after"] = query.created_after
    if query.created_before is not None:
        where.append("created_at < :created_before")
        params["created_before"] = query.created_before
    statement = (
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(where)} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT :limit"
    )
    return statement, params


SELECT_EVENTS = """
SELECT task_id, seq, at, status, progress, detail FROM task_events
WHERE task_id = :task_id ORDER BY seq
"""

# A task's events after a cursor (the ``seq`` of the last one seen), for streams.
SELECT_EVENTS_AFTER = """
SELECT task_id, seq, at, status, progress, detail FROM task_events
WHERE task_id = :task_id AND seq > :after ORDER BY seq LIMIT :limit
"""
# Every task's events after a global cursor: (seq, task_id), what changed since. In
# commit order where writes are serialised (SQLite); PostgreSQL readers use NOTIFY.
SELECT_EVENT_FEED = """
SELECT seq, task_id FROM task_events WHERE seq > :after ORDER BY seq LIMIT :limit
"""
SELECT_LAST_EVENT = "SELECT COALESCE(MAX(seq), 0) FROM task_events"
# The tasks not finished, by phase: the partial index tasks_work holds exactly these.
QUEUE_DEPTH = """
SELECT phase, COUNT(*) FROM tasks WHERE status IN ('SUBMITTED', 'IN_PROGRESS') GROUP BY phase
"""

INSERT_KEY = f"""
INSERT INTO api_keys ({KEY_COLUMNS})
VALUES (:id, :owner, :name, :key_hash, :prefix, :created_at, :revoked_at, :role,
    :rate_per_minute, :max_active, :seconds_per_day)
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
        "phase": task.phase.value,
        "provider": task.provider,
        "upstream_model": task.upstream_model,
        "upstream_id": task.upstream_id,
        "next_check_at": task.next_check_at,
        "watcher": task.watcher,
        "submitted_at": task.submitted_at,
        "expected_seconds": task.expected_seconds,
        "upstream_url": task.upstream_url,
        "upstream_url_expires": task.upstream_url_expires,
        "usage_tokens": task.usage_tokens,
        "faults": task.faults,
        "output_bytes": task.output_bytes,
        "input_bytes": task.input_bytes,
        "files_expired_at": task.files_expired_at,
        "input_expired_at": task.input_expired_at,
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
    """Map a row of ``TASK_COLUMNS`` to a ``Task`` (on every status read: kept lean)."""
    spec = TaskSpec(row[2], row[3], row[4], row[5], row[6], row[7])
    values = (row[0], row[1], spec, _STATUSES[row[8]], *row[9:19], _PHASES[row[19]], *row[20:])
    return Task(*values)


# The columns follow ``Task``'s fields in order after the spec's six (checked by the tests).
_STATUSES = {status.value: status for status in Status}
_PHASES = {phase.value: phase for phase in Phase}


def key_from_row(row: Sequence[Any]) -> ApiKey:
    """Map a row of ``KEY_COLUMNS`` to an ``ApiKey``."""
    id_, owner, name, key_hash, prefix, created_at, revoked_at, role, rate, active, daily = row
    return ApiKey(
        id_,
        owner,
        name,
        key_hash,
        prefix,
        created_at,
        revoked_at,
        role=Role(role),
        limits=Limits(rate, active, daily),
    )


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
        "role": key.role.value,
        **key.limits.as_dict(),
    }


def candidate_from_row(row: Sequence[Any]) -> Candidate:
    """Map a row of ``SUBMIT_CANDIDATES`` to a ``Candidate``."""
    id_, model, phase, provider, upstream_model, submitted_at, attempts = row
    return Candidate(id_, model, Phase(phase), provider, upstream_model, submitted_at, attempts)


def intent_move(pick: Pick, *, worker: str, now: float, lease_seconds: float) -> Move:
    """The move that records a submission's intent (before the request is sent)."""
    candidate = pick.candidate
    return Move(
        candidate.id,
        frozenset({candidate.phase}),
        Phase.SUBMITTING,
        now,
        fields={
            "provider": pick.provider,
            "upstream_model": pick.upstream_model,
            # A lost submission keeps the time its request may have gone out.
            "submitted_at": candidate.submitted_at if pick.lost else now,
            "lease_owner": worker,
            "lease_until": now + lease_seconds,
            "attempts": candidate.attempts + 1,
        },
        detail=f"{'lost submission to' if pick.lost else 'submitting to'} {pick.provider}",
    )


def reroute_move(task_id: str, route: Route, *, worker: str, now: float) -> Move:
    """The move that records a fallback route as the submission's new intent."""
    return Move(
        task_id,
        frozenset({Phase.SUBMITTING}),
        Phase.SUBMITTING,
        now,
        holder=("lease_owner", worker),
        fields={"provider": route[0], "upstream_model": route[1], "submitted_at": now},
        detail=f"falling back to {route[0]}",
    )


def open_models(
    routes: Mapping[str, Sequence[Route]], in_flight: Mapping[str, int], caps: Mapping[str, int]
) -> list[str]:
    """The models with a route that has room: only their queued tasks are candidates, so
    that a model whose providers are full never holds back the others (head of line)."""
    return [model for model, options in routes.items() if first_free(options, in_flight, caps)]


def in_flight_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """Map the rows of ``IN_FLIGHT`` to provider -> count."""
    return {provider: count for provider, count in rows if provider is not None}


def learn_params(
    provider: str, model: str, seconds: int, resolution: str, took: float
) -> dict[str, Any]:
    """The named parameters of ``LEARN_DURATION``."""
    return {
        "provider": provider,
        "model": model,
        "seconds": seconds,
        "resolution": resolution,
        "took": took,
        "rate": LEARNING_RATE,
    }


# How a foreign error shows to clients, by the domain error it converts to.
_CONVERTED: dict[type[ReelgateError], str] = {
    Unavailable: "the database is unavailable",
    Conflict: "the record conflicts with a stored one",
    InvalidParameter: "a value cannot be stored",
}


def convert(
    errors: Mapping[type[Exception], type[ReelgateError]], dialect: str, exc: Exception
) -> ReelgateError | None:
    """The domain error for ``exc`` by a store's table ``errors`` (None: not in it).

    The detail goes to the log; the domain error's message names only the class.
    """
    target = next((errors[cls] for cls in type(exc).__mro__ if cls in errors), None)
    if target is None:
        return None
    level = logging.WARNING if target is Unavailable else logging.INFO
    log.log(level, "%s: %s: %s", dialect, type(exc).__name__, exc)
    message = _CONVERTED[target]
    if target is Unavailable:
        message = f"{dialect}: {message}"
    return target(f"{message} ({type(exc).__name__})")


def storable(params: Mapping[str, Any]) -> bool:
    """Whether every text in ``params`` is one a store can hold (else no row matches it)."""
    return all(storable_text(value) for value in params.values() if isinstance(value, str))
