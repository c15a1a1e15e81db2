-- Encrypted attachment blobs (ADR 0015). One row per upload or stored blob; the ciphertext
-- itself is in the object store under the blob id. No key, file name or media type is kept
-- here: those travel inside the MLS message. `received` bytes are stored contiguously from
-- offset 0; `sha256` is the verified ciphertext hash, set at completion.
CREATE TABLE blobs (
    id                  UUID        PRIMARY KEY,
    conversation_id     UUID        NOT NULL REFERENCES conversations (id),
    uploader_user_id    UUID        NOT NULL,
    uploader_device_id  UUID        NOT NULL,
    size                BIGINT      NOT NULL CHECK (size >= 0),
    received            BIGINT      NOT NULL CHECK (received >= 0 AND received <= size),
    sha256              BYTEA,
    state               TEXT        NOT NULL CHECK (state IN ('uploading', 'complete')),
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX blobs_by_conversation ON blobs (conversation_id);
CREATE INDEX blobs_by_state_updated ON blobs (state, updated_at);
-- Serialises quota checks: `create_blob` locks this row, sums and inserts.
CREATE TABLE blob_quota_lock (
    id  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id)
);
INSERT INTO blob_quota_lock (id) VALUES (TRUE);
