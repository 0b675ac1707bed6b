-- Server-sent events across processes: every recorded event NOTIFYs its task id on
-- the channel reelgate_events (delivered at commit), so that API processes wake only
-- the streams of that task. One trigger covers every statement that records events.
CREATE FUNCTION reelgate_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('reelgate_events', NEW.task_id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER task_events_notify AFTER INSERT ON task_events
    FOR EACH ROW EXECUTE FUNCTION reelgate_event_notify();
