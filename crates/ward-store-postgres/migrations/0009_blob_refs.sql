-- Which messages reference which attachment blobs (ADR 0017). A blob lives while a message
-- references it: retention, legal hold and erasure decide about messages, and a blob whose
-- last referencing message is deleted goes with it. No foreign key to envelopes: the purge
-- releases references explicitly (`release_blob_refs`), in its own transaction.
CREATE TABLE blob_refs (
    blob_id         UUID NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    message_id      UUID NOT NULL,
    conversation_id UUID NOT NULL,
    PRIMARY KEY (blob_id, message_id)
);
CREATE INDEX blob_refs_by_message ON blob_refs (message_id);
