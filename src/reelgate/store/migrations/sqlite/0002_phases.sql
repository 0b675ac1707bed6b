-- Phases (one status machine for local renders and remote providers), the columns of
-- remote tasks, the pollers' heartbeats and the learned run times.
ALTER TABLE tasks ADD COLUMN phase TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE tasks ADD COLUMN provider TEXT;
ALTER TABLE tasks ADD COLUMN upstream_model TEXT;
ALTER TABLE tasks ADD COLUMN upstream_id TEXT;
ALTER TABLE tasks ADD COLUMN next_check_at REAL;
ALTER TABLE tasks ADD COLUMN watcher TEXT;
ALTER TABLE tasks ADD COLUMN submitted_at REAL;
ALTER TABLE tasks ADD COLUMN expected_seconds REAL;
ALTER TABLE tasks ADD COLUMN upstream_url TEXT;
ALTER TABLE tasks ADD COLUMN upstream_url_expires REAL;
ALTER TABLE tasks ADD COLUMN usage_tokens BIGINT;
ALTER TABLE tasks ADD COLUMN faults INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET phase = 'rendering' WHERE status = 'IN_PROGRESS';
UPDATE tasks SET phase = 'done' WHERE status IN ('SUCCESS', 'FAILED', 'ERROR');
-- The work queue: what local workers and submitters claim, by phase and age.
DROP INDEX tasks_queue;
CREATE INDEX tasks_work ON tasks (phase, created_at) WHERE status IN ('SUBMITTED', 'IN_PROGRESS');
-- What pollers take over: tasks at an upstream, by their next check.
CREATE INDEX tasks_watch ON tasks (next_check_at) WHERE phase IN ('watching', 'rehosting');
-- Upstream ids already recorded, to reconcile a lost submission without adopting another's.
CREATE INDEX tasks_upstream ON tasks (provider, submitted_at) WHERE provider IS NOT NULL;

CREATE TABLE pollers (
    id          TEXT PRIMARY KEY,
    alive_until REAL NOT NULL
);

CREATE TABLE durations (
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    seconds    INTEGER NOT NULL,
    resolution TEXT NOT NULL,
    mean       REAL NOT NULL,
    samples    INTEGER NOT NULL,
    PRIMARY KEY (provider, model, seconds, resolution)
);
