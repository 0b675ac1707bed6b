"""SQL text and row mapping of webhooks and idempotency keys, shared by both SQL stores.

The outbox itself is written by a trigger on ``task_events`` (migration 0006); these
statements read and claim it. Claiming pushes ``next_at`` forward by a lease: a
delivery whose worker died is due again when the lease runs out, and the claimed
``next_at`` is the token an attempt's outcome must name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from reelgate.domain.webhooks import Attempt, Delivery, Endpoint, IdempotencyRecord

IDEMPOTENCY_COLUMNS = "owner, key, digest, task_id, created_at, expires_at"
ENDPOINT_COLUMNS = "id, owner, url, secret, created_at, description"
DELIVERY_COLUMNS = (
    "id, owner, endpoint_id, url, task_id, event_seq, status, progress, model, error_code, "
    "error_message, output_key, occurred_at, state, attempts, next_at, created_at, "
    "last_status, last_error, delivered_at"
)

DROP_EXPIRED_KEY = """
DELETE FROM idempotency_keys WHERE owner = :owner AND key = :key AND expires_at <= :now
"""
INSERT_KEY = f"""
INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS})
VALUES (:owner, :key, :digest, :task_id, :created_at, :expires_at)
ON CONFLICT (owner, key) DO NOTHING
RETURNING task_id
"""
SELECT_KEY = f"""
SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys
WHERE owner = :owner AND key = :key AND expires_at > :now
"""
PURGE_KEYS = "DELETE FROM idempotency_keys WHERE expires_at <= :now"
INSERT_CALLBACK = "INSERT INTO task_callbacks (task_id, url) VALUES (:task_id, :url)"

INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS})
VALUES (:id, :owner, :url, :secret, :created_at, :description)
"""
SELECT_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE owner = :owner ORDER BY created_at, id
"""
COUNT_ENDPOINTS = "SELECT COUNT(*) FROM webhook_endpoints WHERE owner = :owner"
DELETE_ENDPOINT = "DELETE FROM webhook_endpoints WHERE owner = :owner AND id = :id RETURNING id"

# Due deliveries, oldest due first. ``{chosen}`` picks ids from ``PICK_DUE``: ``id IN
# (…)`` on SQLite, ``id = ANY(ARRAY(… FOR UPDATE SKIP LOCKED))`` on PostgreSQL (an array
# is evaluated once: a subquery with LIMIT under IN may be re-run and take more rows).
PICK_DUE = """SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_at <= :now
ORDER BY next_at LIMIT :limit"""
CLAIM_DELIVERIES = f"""
UPDATE webhook_deliveries SET next_at = :lease_until
WHERE {{chosen}} AND state = 'pending' AND next_at <= :now
RETURNING {DELIVERY_COLUMNS}
"""
SECRETS = "SELECT id, secret FROM webhook_endpoints WHERE id IN ({ids})"
RECORD_ATTEMPT = """
UPDATE webhook_deliveries SET state = :state, attempts = attempts + 1, next_at = :next_at,
    last_status = :last_status, last_error = :last_error, delivered_at = :delivered_at
WHERE id = :id AND state = 'pending' AND next_at = :claimed
"""
SELECT_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE owner = :owner
ORDER BY created_at DESC, id DESC LIMIT :limit
"""
SELECT_TASK_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE owner = :owner AND task_id = :task_id
ORDER BY created_at DESC, id DESC LIMIT :limit
"""
DELETE_KEY = """
DELETE FROM idempotency_keys WHERE owner = :owner AND key = :key AND task_id = :task_id
"""
DROP_CALLBACK = "DELETE FROM task_callbacks WHERE task_id = :task_id"


def key_params(record: IdempotencyRecord) -> dict[str, Any]:
    """The named parameters of ``INSERT_KEY`` (its columns are the fields)."""
    return asdict(record)


def key_from_row(row: Sequence[Any]) -> IdempotencyRecord:
    """Map a row of ``IDEMPOTENCY_COLUMNS``."""
    return IdempotencyRecord(*row)


def endpoint_params(endpoint: Endpoint) -> dict[str, Any]:
    """The named parameters of ``INSERT_ENDPOINT`` (its columns are the fields)."""
    return asdict(endpoint)


def endpoint_from_row(row: Sequence[Any]) -> Endpoint:
    """Map a row of ``ENDPOINT_COLUMNS``."""
    return Endpoint(*row)


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """Map a row of ``DELIVERY_COLUMNS``."""
    return Delivery(*row)


def attempt_params(delivery: Delivery, attempt: Attempt) -> dict[str, Any]:
    """The named parameters of ``RECORD_ATTEMPT``: ``attempt`` of ``delivery`` as claimed."""
    return {"id": delivery.id, "claimed": delivery.next_at, **asdict(attempt)}
