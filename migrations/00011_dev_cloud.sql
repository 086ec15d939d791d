-- +goose Up
-- Dev mode's in-memory AWS, kept beside the requests that changed it, so
-- that a restarted server finds the roles, policies, keys and objects its
-- requests' records speak of. One row: the world as a JSON snapshot,
-- replaced whole by every save.
CREATE TABLE dev_cloud (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    snapshot jsonb NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE dev_cloud;
