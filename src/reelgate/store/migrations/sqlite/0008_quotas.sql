-- Keys with roles and limits, the counters the limits are checked against, and usage.
--
-- A key is an admin's or a user's. Upgrading: the key that `reelgate serve` made itself
-- on an empty database (owner 'default', name 'first key', kept in data/first-api-key
-- where only the operator reads it) becomes an admin key, as on a new install; every
-- other key stays a user key.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
    CHECK (role IN ('admin', 'user'));
ALTER TABLE api_keys ADD COLUMN rate_per_minute INTEGER;
ALTER TABLE api_keys ADD COLUMN max_active INTEGER;
ALTER TABLE api_keys ADD COLUMN seconds_per_day INTEGER;
UPDATE api_keys SET role = 'admin' WHERE owner = 'default' AND name = 'first key';

-- An owner's unfinished tasks (max_active), and every owner's (the global queue cap).
CREATE INDEX tasks_owner_active ON tasks (owner) WHERE status IN ('SUBMITTED', 'IN_PROGRESS');

-- Creates per owner and UTC minute (rate_per_minute); rows older than the minute are
-- deleted by the next create of the owner.
CREATE TABLE rate_counters (
    owner  TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (owner, minute)
);

-- Seconds of video asked for by the creates counted under a daily limit
-- (seconds_per_day): a row per counted task, summed per owner and UTC day of creation.
-- A counted task that ends FAILED or ERROR (cancelled included) gives its seconds back:
-- its row goes; a task never counted gives nothing. Deleting a task gives nothing back.
-- Rows older than yesterday are deleted by the owner's next counted create.
CREATE TABLE daily_seconds (
    task_id TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    day     INTEGER NOT NULL,
    seconds INTEGER NOT NULL
);
CREATE INDEX daily_seconds_owner ON daily_seconds (owner, day);
CREATE TRIGGER tasks_refund_seconds AFTER UPDATE OF status ON tasks
WHEN NEW.status IN ('FAILED', 'ERROR') AND OLD.status IN ('SUBMITTED', 'IN_PROGRESS')
BEGIN
    DELETE FROM daily_seconds WHERE task_id = NEW.id;
END;

-- Usage: what SUCCESS tasks made, per UTC day of completion, owner and model. Written
-- in the transaction that ends a task SUCCESS; kept when the task is deleted. Failed,
-- errored and cancelled tasks are never charged.
CREATE TABLE usage_daily (
    day     INTEGER NOT NULL,
    owner   TEXT NOT NULL,
    model   TEXT NOT NULL,
    tasks   INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
    tokens  INTEGER NOT NULL,
    PRIMARY KEY (day, owner, model)
);
CREATE INDEX usage_daily_owner ON usage_daily (owner, day);
CREATE TRIGGER tasks_usage AFTER UPDATE OF status ON tasks
WHEN NEW.status = 'SUCCESS' AND OLD.status <> 'SUCCESS'
BEGIN
    INSERT INTO usage_daily (day, owner, model, tasks, seconds, tokens)
    VALUES (CAST(COALESCE(NEW.completed_at, NEW.updated_at) / 86400 AS INTEGER), NEW.owner,
        NEW.model, 1, NEW.seconds, COALESCE(NEW.usage_tokens, 0))
    ON CONFLICT (day, owner, model) DO UPDATE SET tasks = tasks + 1,
        seconds = seconds + excluded.seconds, tokens = tokens + excluded.tokens;
END;
INSERT INTO usage_daily (day, owner, model, tasks, seconds, tokens)
SELECT CAST(COALESCE(completed_at, updated_at) / 86400 AS INTEGER), owner, model, COUNT(*),
    SUM(seconds), COALESCE(SUM(usage_tokens), 0)
FROM tasks WHERE status = 'SUCCESS' GROUP BY 1, 2, 3;
