-- Ward's SQLite schema.
--
-- Conventions: ids are TEXT UUIDs (hyphenated, lowercase); times are INTEGER Unix
-- microseconds (the precision the audit chain hashes, so every value round-trips exactly);
-- enums are TEXT holding their snake_case wire names; opaque bytes are BLOBs. Sequence
-- numbers are INTEGER and start at 1.

-- The organisation running this server: at most one row (id = 1). `policy` is the JSON of
-- OrgPolicy, so new policy keys need no migration.
CREATE TABLE organisation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    name        TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Server secrets (CA key, audit key, ...), encrypted by the server before they get here.
-- The first value written under a name wins.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);

-- User accounts. Only hashes and encrypted secrets are stored (Argon2id PHC string,
-- TOTP seed encrypted under the master key). `locked_until` is set when `failed_logins`
-- reaches the policy maximum.
CREATE TABLE users (
    id               TEXT    PRIMARY KEY,
    username         TEXT    NOT NULL UNIQUE,
    display_name     TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    password_hash    TEXT,
    totp_secret_enc  BLOB,
    failed_logins    INTEGER NOT NULL DEFAULT 0,
    locked_until     INTEGER,
    created_at       INTEGER NOT NULL
);

-- The pending one-time enrollment code of a user (SHA-256 of the code only). Deleted in
-- the transaction that consumes it.
CREATE TABLE enrollment_codes (
    user_id     TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB    NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Devices of users. Never deleted: a revoked device keeps its row (status 'revoked') so
-- the revocation list and old envelopes stay meaningful. `inbox_seq` is the last
-- per-device inbox sequence number handed out (see `inbox`).
CREATE TABLE devices (
    id             TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id),
    name           TEXT    NOT NULL,
    signature_key  BLOB    NOT NULL,
    credential     BLOB    NOT NULL,
    status         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    last_seen_at   INTEGER,
    inbox_seq      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices (user_id, created_at);
CREATE INDEX devices_by_created ON devices (created_at);

-- Login sessions, keyed by the SHA-256 of the bearer token (the token is never stored).
CREATE TABLE sessions (
    token_hash    BLOB    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_device ON sessions (device_id);

-- One-time MLS KeyPackages; each is handed out once (deleted when claimed), oldest first.
CREATE TABLE key_packages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    data        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX key_packages_by_device ON key_packages (device_id, id);

-- The last-resort KeyPackage of a device: handed out when no one-time package is left,
-- and kept. Replaced on upload.
CREATE TABLE last_resort_key_packages (
    device_id   TEXT    PRIMARY KEY REFERENCES devices (id),
    data        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Conversations (one MLS group each). `epoch` and `last_seq` are bumped only inside the
-- append transaction; `direct_key` (sorted user ids) makes direct conversations unique.
CREATE TABLE conversations (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    ciphersuite  INTEGER NOT NULL,
    epoch        INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    created_by   TEXT    NOT NULL REFERENCES users (id),
    direct_key   TEXT    UNIQUE,
    created_at   INTEGER NOT NULL
);

-- Current member users of a conversation (rows are deleted when a commit removes a user).
-- `joined_seq` is the seq of the commit that added the user (0 for the creator).
CREATE TABLE conversation_members (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    user_id          TEXT    NOT NULL REFERENCES users (id),
    joined_seq       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

-- Per-device routing: device `device_id` receives the envelopes of the conversation with
-- from_seq < seq <= until_seq (until_seq NULL: still routed). A device added by a commit
-- starts after that commit; a device removed by a commit (or revoked) still receives up
-- to that point. `delivered_seq` and `read_seq` are the device's acknowledged cursors;
-- sync returns envelopes after `delivered_seq`.
CREATE TABLE routes (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    from_seq         INTEGER NOT NULL,
    until_seq        INTEGER,
    delivered_seq    INTEGER NOT NULL,
    read_seq         INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, device_id)
) WITHOUT ROWID;
CREATE INDEX routes_by_device ON routes (device_id, conversation_id);

-- Envelopes: the ordered, gap-free message log of each conversation. Payloads are opaque
-- MLS messages and are never logged. (sender_device_id, client_message_id) per
-- conversation makes retries idempotent.
CREATE TABLE envelopes (
    conversation_id    TEXT    NOT NULL REFERENCES conversations (id),
    seq                INTEGER NOT NULL,
    message_id         TEXT    NOT NULL UNIQUE,
    kind               TEXT    NOT NULL,
    epoch              INTEGER NOT NULL,
    sender_user_id     TEXT    NOT NULL,
    sender_device_id   TEXT    NOT NULL,
    client_message_id  TEXT    NOT NULL,
    sent_at            INTEGER NOT NULL,
    payload            BLOB    NOT NULL
);
CREATE UNIQUE INDEX envelopes_by_seq ON envelopes (conversation_id, seq);
CREATE UNIQUE INDEX envelopes_idempotency
    ON envelopes (conversation_id, sender_device_id, client_message_id);

-- Receipt history: one row each time a device's delivered or read cursor advances. The
-- receipt time of envelope `seq` for a device is the earliest row with up_to_seq >= seq.
CREATE TABLE receipts (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    kind             TEXT    NOT NULL CHECK (kind IN ('delivered', 'read')),
    up_to_seq        INTEGER NOT NULL,
    at               INTEGER NOT NULL
);
CREATE INDEX receipts_lookup ON receipts (conversation_id, device_id, kind, up_to_seq);

-- Device-addressed items (Welcomes, removal notices), numbered per device by `inbox_seq`.
-- Deleted when the device acknowledges them.
CREATE TABLE inbox (
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    inbox_seq        INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    commit_seq       INTEGER NOT NULL,
    payload          BLOB    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (device_id, inbox_seq)
);

-- The accepted commits: at most one per (conversation, epoch); `commit_hash` is the
-- SHA-256 of the commit message.
CREATE TABLE commit_log (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    epoch            INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    commit_hash      BLOB    NOT NULL,
    PRIMARY KEY (conversation_id, epoch)
) WITHOUT ROWID;

-- The append-only, hash-chained audit log (see ward_store::audit). `details` holds the
-- canonical JSON that was hashed; hashes are hex. Rows are never updated or deleted.
CREATE TABLE audit_log (
    seq              INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    actor_user_id    TEXT,
    actor_device_id  TEXT,
    action           TEXT    NOT NULL,
    target           TEXT,
    details          TEXT    NOT NULL,
    prev_hash        TEXT    NOT NULL,
    hash             TEXT    NOT NULL
);

-- Signed checkpoints of the audit chain head, so truncating the log is detectable.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       TEXT    NOT NULL,
    signature  BLOB    NOT NULL,
    at         INTEGER NOT NULL
);
