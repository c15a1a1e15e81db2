-- Patient index, message templates, do-not-disturb (ADR 0019). Number 0011: 0009 and 0010
-- are taken by changes developed in parallel (sqlx allows the gap).

CREATE TABLE patient_tags (
    index_seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    key_id           TEXT NOT NULL REFERENCES journal_keys (key_id),
    tag              BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX patient_tags_by_conversation ON patient_tags (conversation_id);
COMMENT ON TABLE patient_tags IS 'Blinded patient index: patient identifiers sealed by clients to the journal key (randomised HPKE); opaque to the server.';

CREATE TABLE message_templates (
    name        TEXT PRIMARY KEY,
    text        TEXT NOT NULL,
    priority    TEXT NOT NULL CHECK (priority IN ('routine', 'urgent', 'stat')),
    created_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE message_templates IS 'Organisation message templates (configuration, not PHI).';

CREATE TABLE do_not_disturb (
    user_id        UUID PRIMARY KEY REFERENCES users (id),
    cover_user_id  UUID NOT NULL REFERENCES users (id),
    until_at       TIMESTAMPTZ,
    since          TIMESTAMPTZ NOT NULL,
    CHECK (cover_user_id <> user_id)
);
COMMENT ON TABLE do_not_disturb IS 'Do-not-disturb with the covering colleague; until_at NULL until turned off.';
