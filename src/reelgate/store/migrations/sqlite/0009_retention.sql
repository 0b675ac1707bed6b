-- Retention (docs/operations.md, "Retention"): the sizes of a task's files, recorded as
-- they are stored, and when the janitor expired (deleted) its outputs and its input.
ALTER TABLE tasks ADD COLUMN output_bytes INTEGER;
ALTER TABLE tasks ADD COLUMN input_bytes INTEGER;
ALTER TABLE tasks ADD COLUMN files_expired_at REAL;
ALTER TABLE tasks ADD COLUMN input_expired_at REAL;
-- The finished tasks whose outputs are kept, oldest first: the janitor reads a batch from
-- the start of it, and storage_usage sums output_bytes from it alone (index-only: SQLite
-- needs the columns of the condition in the index too, to read nothing else).
CREATE INDEX tasks_outputs_kept ON tasks (completed_at, output_bytes, phase, files_expired_at)
    WHERE phase = 'done' AND files_expired_at IS NULL;
-- The same for input images (kept while the task runs: completed_at is NULL then).
CREATE INDEX tasks_inputs_kept ON tasks (completed_at, input_bytes, input_key, input_expired_at)
    WHERE input_key IS NOT NULL AND input_expired_at IS NULL;
-- Named leases: the retention janitor runs in one process at a time.
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    expires REAL NOT NULL
);
