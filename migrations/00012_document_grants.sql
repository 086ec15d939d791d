-- +goose Up
-- The roles bucketbridge last wrote into its statements of a shared
-- document (a destination bucket policy, a key policy's statement for one
-- bucket), written under the document's lock right after the write. A
-- request whose role is already there records that shared write instead of
-- writing the document again: many requests into one destination cost one
-- write, not one each.
CREATE TABLE document_grants (
    document   text PRIMARY KEY,
    roles      text[] NOT NULL,
    written_by uuid NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE document_grants;
