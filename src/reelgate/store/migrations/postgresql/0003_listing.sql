-- Listing an owner's tasks (GET /v1/videos): a keyset over (created_at, id) per owner,
-- read forwards or backwards. It supersedes tasks_owner (owner, created_at).
CREATE INDEX tasks_owner_listing ON tasks (owner, created_at, id);
DROP INDEX tasks_owner;
