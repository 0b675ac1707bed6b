-- Server-sent events across processes: nothing to change. SQLite has no NOTIFY; API
-- processes read task_events after a cursor (its primary key, in commit order because
-- writers are serialised), one short poll per process.
SELECT 1;
