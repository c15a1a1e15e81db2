-- Encrypted attachment blobs (ADR 0015). One row per upload or stored blob; the ciphertext
-- itself is in the object store under the blob id. No key, file name or media type is kept
-- here: those travel inside the MLS message. `received` bytes are stored contiguously from
-- offset 0; `sha256` is the verified ciphertext hash, set at completion.
CREATE TABLE blobs (
    id                  TEXT    PRIMARY KEY,
    conversation_id     TEXT    NOT NULL REFERENCES conversations (id),
    uploader_user_id    TEXT    NOT NULL,
    uploader_device_id  TEXT    NOT NULL,
    size                INTEGER NOT NULL CHECK (size >= 0),
    received            INTEGER NOT NULL CHECK (received >= 0 AND received <= size),
    sha256              BLOB,
    state               TEXT    NOT NULL CHECK (state IN ('uploading', 'complete')),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX blobs_by_conversation ON blobs (conversation_id);
CREATE INDEX blobs_by_state_updated ON blobs (state, updated_at);
