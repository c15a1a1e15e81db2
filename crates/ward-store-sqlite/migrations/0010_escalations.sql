-- Messages sent to a clinical role (ADR 0018): the escalation of each urgent or STAT message
-- and per-device delivery events. Ids, the role name, the priority and response kinds only:
-- never content. `tiers` (the chain fixed at send time) and `declined` are JSON arrays of
-- user ids. A step rewrites the row only at the `version` it was computed from. Number 0010:
-- 0009 is taken by a change developed in parallel (sqlx allows the gap). Device alerts use
-- the existing `inbox` table with kind 'alert'.
CREATE TABLE escalations (
    message_id           TEXT    PRIMARY KEY,
    conversation_id      TEXT    NOT NULL REFERENCES conversations (id),
    seq                  INTEGER NOT NULL,
    sender_user_id       TEXT    NOT NULL REFERENCES users (id),
    sender_device_id     TEXT    NOT NULL,
    role                 TEXT    NOT NULL,
    priority             TEXT    NOT NULL CHECK (priority IN ('routine', 'urgent', 'stat')),
    tiers                TEXT    NOT NULL,
    renotify_every_secs  INTEGER,
    tier                 INTEGER NOT NULL,
    tier_started_at      INTEGER NOT NULL,
    notified_at          INTEGER NOT NULL,
    due_at               INTEGER,
    outcome              TEXT    NOT NULL
        CHECK (outcome IN ('pending', 'acknowledged', 'no_response')),
    declined             TEXT    NOT NULL,
    acked_by             TEXT,
    acked_device         TEXT,
    response             TEXT,
    acked_at             INTEGER,
    created_at           INTEGER NOT NULL,
    version              INTEGER NOT NULL
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE outcome = 'pending';

CREATE TABLE delivery_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'read',
                    'acknowledged', 'failed', 'expired', 'escalated')),
    at          INTEGER NOT NULL,
    tier        INTEGER,
    response    TEXT
);
CREATE INDEX delivery_events_by_message ON delivery_events (message_id, at, id);
