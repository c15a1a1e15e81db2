-- Retention, legal holds, deletion orders and erasure requests (ADR 0013). The retention
-- policy itself lives in the organisation policy JSON.
CREATE TABLE legal_holds (
    id           UUID PRIMARY KEY,
    target_type  TEXT NOT NULL CHECK (target_type IN ('user', 'conversation')),
    target_id    UUID NOT NULL,
    reason       TEXT NOT NULL,
    case_ref     TEXT,
    created_by   UUID,
    created_at   TIMESTAMPTZ NOT NULL,
    released_by  UUID,
    released_at  TIMESTAMPTZ
);
COMMENT ON TABLE legal_holds IS 'Legal holds on a user or a conversation; never deleted, a release sets released_at.';

CREATE TABLE deletion_orders (
    id               UUID PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    message_ids      TEXT NOT NULL,
    max_seq          BIGINT NOT NULL,
    issued_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX deletion_orders_by_conversation ON deletion_orders (conversation_id);
COMMENT ON TABLE deletion_orders IS 'Orders to devices to delete messages the server deleted (message_ids: JSON array), served signed until each routed device acknowledges.';

CREATE TABLE deletion_acks (
    order_id   UUID NOT NULL REFERENCES deletion_orders (id),
    device_id  UUID NOT NULL REFERENCES devices (id),
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, device_id)
);

CREATE TABLE erasure_requests (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id),
    requested_by  UUID,
    requested_at  TIMESTAMPTZ NOT NULL,
    status        TEXT NOT NULL,
    report        TEXT NOT NULL
);
COMMENT ON TABLE erasure_requests IS 'GDPR/APPI erasure requests with their report (JSON of ids and counts).';

CREATE INDEX envelopes_by_sent_at ON envelopes (sent_at, message_id);
CREATE INDEX journal_by_sender ON journal (sender_user_id);
