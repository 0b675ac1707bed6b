-- Webhooks: the owners' endpoints, the tasks' callback URLs, and the outbox of deliveries.
-- A trigger writes the outbox in the transaction that records a terminal event, so that
-- no status change (finish, expire, cancel, a provider's answer) can miss its deliveries.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner, created_at);

CREATE TABLE task_callbacks (
    task_id TEXT PRIMARY KEY,
    url     TEXT NOT NULL
);

-- endpoint_id is 'callback' for a task's own callback_url.
CREATE TABLE webhook_deliveries (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL,
    url           TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    event_seq     BIGINT NOT NULL,
    status        TEXT NOT NULL,
    progress      INTEGER NOT NULL,
    model         TEXT NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    output_key    TEXT,
    occurred_at   DOUBLE PRECISION NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       DOUBLE PRECISION NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    last_status   INTEGER,
    last_error    TEXT,
    delivered_at  DOUBLE PRECISION
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (task_id, endpoint_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_owner ON webhook_deliveries (owner, created_at);

CREATE FUNCTION reelgate_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, owner, endpoint_id, url, task_id, event_seq,
        status, progress, model, error_code, error_message, output_key, occurred_at, state,
        attempts, next_at, created_at)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), t.owner, e.id, e.url, t.id,
        NEW.seq, NEW.status, NEW.progress, t.model, t.error_code, t.error_message,
        t.output_key, NEW.at, 'pending', 0, NEW.at, NEW.at
    FROM tasks t JOIN webhook_endpoints e ON e.owner = t.owner WHERE t.id = NEW.task_id
    UNION ALL
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), t.owner, 'callback', c.url,
        t.id, NEW.seq, NEW.status, NEW.progress, t.model, t.error_code, t.error_message,
        t.output_key, NEW.at, 'pending', 0, NEW.at, NEW.at
    FROM tasks t JOIN task_callbacks c ON c.task_id = t.id WHERE t.id = NEW.task_id
    ON CONFLICT (task_id, endpoint_id) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER task_events_webhooks AFTER INSERT ON task_events
FOR EACH ROW WHEN (NEW.status IN ('SUCCESS', 'FAILED', 'ERROR'))
EXECUTE FUNCTION reelgate_webhook_outbox();
