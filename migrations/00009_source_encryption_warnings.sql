-- +goose Up
-- A request may ask for its source bucket's default encryption to become
-- SSE-KMS with its source key; and steps report what a caller should know
-- although the request goes on (objects that would replicate as SSE-S3, a
-- rule of someone else's that the request's rule outranks, a canary left
-- under Object Lock). Each warning names the phase and step that found
-- it; a step's warnings are replaced each time it ends.
ALTER TABLE replications
    ADD COLUMN set_source_default_encryption boolean NOT NULL DEFAULT false,
    ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT replications_warnings_is_array CHECK (jsonb_typeof(warnings) = 'array');

-- +goose Down
ALTER TABLE replications
    DROP CONSTRAINT replications_warnings_is_array,
    DROP COLUMN warnings,
    DROP COLUMN set_source_default_encryption;
