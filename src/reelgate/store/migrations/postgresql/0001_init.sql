-- Tasks, their events, and API keys.
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    model         TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    seconds       INTEGER NOT NULL,
    size          TEXT NOT NULL,
    resolution    TEXT NOT NULL,
    input_key     TEXT,
    status        TEXT NOT NULL,
    progress      INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    completed_at  DOUBLE PRECISION,
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   DOUBLE PRECISION,
    output_key    TEXT,
    error_code    TEXT,
    error_message TEXT
);
CREATE INDEX tasks_queue ON tasks (created_at) WHERE status IN ('SUBMITTED', 'IN_PROGRESS');
CREATE INDEX tasks_owner ON tasks (owner, created_at);

CREATE TABLE task_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at       DOUBLE PRECISION NOT NULL,
    status   TEXT NOT NULL,
    progress INTEGER NOT NULL,
    detail   TEXT
);
CREATE INDEX task_events_task ON task_events (task_id, seq);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
