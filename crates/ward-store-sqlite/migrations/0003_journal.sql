-- The compliance journal (ADR 0010). The organisation's journal public keys, newest current,
-- and the archive of journal copies: one HPKE ciphertext per application message, sealed to
-- a journal key kept offline. The archive is apart from the envelope log (no foreign key to
-- envelopes or conversations), so deleting messages never deletes it; `retain_until` is its
-- own retention (NULL: keep; not yet enforced by a job).
CREATE TABLE journal_keys (
    key_id      TEXT    PRIMARY KEY,
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE journal (
    archive_seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id        TEXT    NOT NULL UNIQUE,
    conversation_id   TEXT    NOT NULL,
    seq               INTEGER NOT NULL,
    sender_user_id    TEXT    NOT NULL,
    sender_device_id  TEXT    NOT NULL,
    key_id            TEXT    NOT NULL REFERENCES journal_keys (key_id),
    ciphertext        BLOB    NOT NULL,
    sent_at           INTEGER NOT NULL,
    retain_until      INTEGER
);
CREATE INDEX journal_by_conversation ON journal (conversation_id, seq);
CREATE INDEX journal_by_sent_at ON journal (sent_at);
