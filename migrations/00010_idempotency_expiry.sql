-- +goose Up
-- Idempotency-Keys are remembered for BB_IDEMPOTENCY_TTL after their first
-- use; each replica's janitor deletes the expired ones oldest first, in
-- small batches, through this index.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created;
