-- Retention, legal holds, deletion orders and erasure requests (ADR 0013). The retention
-- policy itself lives in the organisation policy JSON. Holds are never deleted: a released
-- hold keeps `released_at`. `target_type` is `user` or `conversation`.
CREATE TABLE legal_holds (
    id           TEXT    PRIMARY KEY,
    target_type  TEXT    NOT NULL CHECK (target_type IN ('user', 'conversation')),
    target_id    TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    case_ref     TEXT,
    created_by   TEXT,
    created_at   INTEGER NOT NULL,
    released_by  TEXT,
    released_at  INTEGER
);

-- Orders to devices to delete messages the server deleted; `message_ids` is a JSON array.
-- A device routed in the conversation with from_seq < max_seq gets the order until it
-- acknowledges it.
CREATE TABLE deletion_orders (
    id               TEXT    PRIMARY KEY,
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    message_ids      TEXT    NOT NULL,
    max_seq          INTEGER NOT NULL,
    issued_at        INTEGER NOT NULL
);
CREATE INDEX deletion_orders_by_conversation ON deletion_orders (conversation_id);

CREATE TABLE deletion_acks (
    order_id   TEXT    NOT NULL REFERENCES deletion_orders (id),
    device_id  TEXT    NOT NULL REFERENCES devices (id),
    at         INTEGER NOT NULL,
    PRIMARY KEY (order_id, device_id)
) WITHOUT ROWID;

-- Erasure requests (GDPR Art. 17, APPI Art. 35) with their report (JSON: ids and counts).
CREATE TABLE erasure_requests (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    requested_by  TEXT,
    requested_at  INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    report        TEXT    NOT NULL
);

-- The expiry scan reads application envelopes by acceptance time.
CREATE INDEX envelopes_by_sent_at ON envelopes (sent_at, message_id);
CREATE INDEX journal_by_sender ON journal (sender_user_id);
