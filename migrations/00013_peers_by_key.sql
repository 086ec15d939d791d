-- +goose Up
-- A key policy holds bucketbridge's statements for every bucket it
-- encrypts; the step that rewrites it reads the requests using the key.
CREATE INDEX replications_source_kms_key ON replications (source_kms_key_arn);
CREATE INDEX replications_destination_kms_key ON replications (destination_kms_key_arn);

-- +goose Down
DROP INDEX replications_destination_kms_key;
DROP INDEX replications_source_kms_key;
