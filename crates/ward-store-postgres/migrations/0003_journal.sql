-- The compliance journal (ADR 0010): the organisation's journal public keys (newest current)
-- and the archive of journal copies, one HPKE ciphertext per application message sealed to a
-- key kept offline. Apart from the envelope log: no foreign key to envelopes or
-- conversations, so deleting messages never deletes the archive. `retain_until` is its own
-- retention (NULL: keep; not yet enforced by a job).
CREATE TABLE journal_keys (
    key_id      TEXT PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE journal_keys IS 'Organisation journal public keys (X-Wing); the newest is current.';

CREATE TABLE journal (
    archive_seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        UUID NOT NULL UNIQUE,
    conversation_id   UUID NOT NULL,
    seq               BIGINT NOT NULL,
    sender_user_id    UUID NOT NULL,
    sender_device_id  UUID NOT NULL,
    key_id            TEXT NOT NULL REFERENCES journal_keys (key_id),
    ciphertext        BYTEA NOT NULL,
    sent_at           TIMESTAMPTZ NOT NULL,
    retain_until      TIMESTAMPTZ
);
CREATE INDEX journal_by_conversation ON journal (conversation_id, seq);
CREATE INDEX journal_by_sent_at ON journal (sent_at);
COMMENT ON TABLE journal IS 'Compliance journal archive: HPKE copies of application messages, kept apart from envelopes under their own retention.';
