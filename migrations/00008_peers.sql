-- +goose Up
-- Steps read the requests sharing a bucket's documents, under the
-- document's lock, to decide whose grants it must hold.
CREATE INDEX replications_source_bucket ON replications (source_bucket);
CREATE INDEX replications_destination_bucket ON replications (destination_bucket);

-- +goose Down
DROP INDEX replications_destination_bucket;
DROP INDEX replications_source_bucket;
