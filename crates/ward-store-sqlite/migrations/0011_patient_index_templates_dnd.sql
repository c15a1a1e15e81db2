-- Patient index, message templates, do-not-disturb (ADR 0019). Number 0011: 0009 and 0010
-- are taken by changes developed in parallel (sqlx allows the gap).

-- The blinded patient index: per conversation, the patient identifier sealed by a client to
-- the organisation's journal key (randomised HPKE). Opaque here; never an MRN or a name.
CREATE TABLE patient_tags (
    index_seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    key_id           TEXT    NOT NULL REFERENCES journal_keys (key_id),
    tag              BLOB    NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX patient_tags_by_conversation ON patient_tags (conversation_id);

-- Organisation message templates ("Code Blue, room {room}"): configuration, not PHI.
CREATE TABLE message_templates (
    name        TEXT    PRIMARY KEY,
    text        TEXT    NOT NULL,
    priority    TEXT    NOT NULL CHECK (priority IN ('routine', 'urgent', 'stat')),
    created_at  INTEGER NOT NULL
);

-- Do-not-disturb with the covering colleague; until_at NULL: until turned off.
CREATE TABLE do_not_disturb (
    user_id        TEXT    PRIMARY KEY REFERENCES users (id),
    cover_user_id  TEXT    NOT NULL REFERENCES users (id),
    until_at       INTEGER,
    since          INTEGER NOT NULL,
    CHECK (cover_user_id <> user_id)
);
