-- Cancellations, as a log that worker processes read by time (``cancelled_since``): a
-- process that renders, submits or watches a cancelled task stops it within one check
-- interval, even when the task's rows were deleted meanwhile. Kept for a day.
CREATE TABLE cancels (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX cancels_at ON cancels (at);
