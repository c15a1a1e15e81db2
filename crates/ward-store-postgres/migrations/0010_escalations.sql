-- Messages sent to a clinical role (ADR 0018). Number 0010: 0009 is taken by a change
-- developed in parallel (sqlx allows the gap). Device alerts use device_inbox, kind 'alert'.
ALTER TABLE device_inbox DROP CONSTRAINT device_inbox_kind_check;
ALTER TABLE device_inbox ADD CONSTRAINT device_inbox_kind_check
    CHECK (kind IN ('welcome', 'removed', 'alert'));

CREATE TABLE escalations (
    message_id           UUID        PRIMARY KEY,
    conversation_id      UUID        NOT NULL REFERENCES conversations (id),
    seq                  BIGINT      NOT NULL,
    sender_user_id       UUID        NOT NULL REFERENCES users (id),
    sender_device_id     UUID        NOT NULL,
    role                 TEXT        NOT NULL,
    priority             TEXT        NOT NULL CHECK (priority IN ('routine', 'urgent', 'stat')),
    tiers                TEXT        NOT NULL,
    renotify_every_secs  BIGINT,
    tier                 BIGINT      NOT NULL,
    tier_started_at      TIMESTAMPTZ NOT NULL,
    notified_at          TIMESTAMPTZ NOT NULL,
    due_at               TIMESTAMPTZ,
    outcome              TEXT        NOT NULL
        CHECK (outcome IN ('pending', 'acknowledged', 'no_response')),
    declined             TEXT        NOT NULL,
    acked_by             UUID,
    acked_device         UUID,
    response             TEXT,
    acked_at             TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    version              BIGINT      NOT NULL
);
COMMENT ON TABLE escalations IS 'Escalation of urgent/STAT messages sent to a clinical role (ADR 0018): the chain fixed at send time (tiers: JSON), the current tier, the next due step, the outcome. Ids, role, priority and response kinds only; never content. Steps are claimed with FOR UPDATE SKIP LOCKED and written only at the version they were computed from.';
CREATE INDEX escalations_due ON escalations (due_at) WHERE outcome = 'pending';

CREATE TABLE delivery_events (
    id          BIGSERIAL   PRIMARY KEY,
    message_id  UUID        NOT NULL,
    device_id   UUID        NOT NULL,
    user_id     UUID        NOT NULL,
    state       TEXT        NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'read',
                    'acknowledged', 'failed', 'expired', 'escalated')),
    at          TIMESTAMPTZ NOT NULL,
    tier        BIGINT,
    response    TEXT
);
COMMENT ON TABLE delivery_events IS 'Per-device delivery state changes of messages sent to a role (ADR 0018); delivered/read come from receipts.';
CREATE INDEX delivery_events_by_message ON delivery_events (message_id, at, id);
