-- Ward PostgreSQL schema, version 1.
--
-- Conventions:
--   * Ids are UUID. Times are TIMESTAMPTZ (microsecond precision; callers truncate to micros
--     so values survive a round trip unchanged).
--   * Enums are TEXT holding their snake_case serde names, guarded by CHECK constraints.
--   * Opaque blobs (MLS messages, KeyPackages, encrypted secrets) are BYTEA. Nothing in this
--     schema is ever plaintext message content: the server only sees MLS ciphertext.
--   * u64 counters (epochs, seqs) are BIGINT and never negative.
--   * No table name is schema-qualified, so the whole schema can live in any schema chosen
--     through search_path (tests run each store in its own schema).

-- The one organisation this server runs for. At most one row (id is always TRUE).
CREATE TABLE organisation (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    name        TEXT NOT NULL,
    policy      JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE organisation IS 'The single organisation row and its policy (JSON so new policy keys need no migration).';

-- Server secrets, already encrypted by the caller under the master key.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       BYTEA NOT NULL
);
COMMENT ON TABLE secrets IS 'Named server secrets, encrypted by the server before storage; first writer wins (put_secret_if_absent).';

CREATE TABLE users (
    id               UUID PRIMARY KEY,
    username         TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'physician', 'nurse', 'pharmacist', 'compliance', 'patient', 'service')),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'active', 'suspended')),
    password_hash    TEXT,
    totp_secret_enc  BYTEA,
    failed_logins    INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE users IS 'User accounts. password_hash is an Argon2id PHC string; totp_secret_enc is encrypted under the master key.';

CREATE TABLE enrollment_codes (
    user_id     UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BYTEA NOT NULL CHECK (length(code_hash) = 32),
    expires_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE enrollment_codes IS 'The pending one-time enrollment code of a user (SHA-256 only); deleted when consumed.';

CREATE TABLE devices (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id),
    name            TEXT NOT NULL,
    signature_key   BYTEA NOT NULL,
    credential      BYTEA NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    last_seen_at    TIMESTAMPTZ,
    -- Insertion order, the tie-break for "oldest first" listings.
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    -- Highest inbox_seq handed out for this device (see device_inbox).
    inbox_last_seq  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_user_idx ON devices (user_id, created_at, ord);
COMMENT ON TABLE devices IS 'Enrolled devices. The row is locked (FOR NO KEY UPDATE) when inbox items are added for the device, which serialises its inbox_last_seq counter and orders against revocation.';

CREATE TABLE sessions (
    token_hash    BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id       UUID NOT NULL REFERENCES users (id),
    device_id     UUID NOT NULL REFERENCES devices (id),
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_device_idx ON sessions (device_id);
COMMENT ON TABLE sessions IS 'Login sessions, keyed by the SHA-256 of the bearer token (the token itself is never stored).';

CREATE TABLE key_packages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES devices (id),
    data        BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX key_packages_device_idx ON key_packages (device_id, id);
COMMENT ON TABLE key_packages IS 'One-time MLS KeyPackages; a claim deletes one (oldest first, FOR UPDATE SKIP LOCKED) so none is handed out twice.';

CREATE TABLE last_resort_key_packages (
    device_id   UUID PRIMARY KEY REFERENCES devices (id),
    data        BYTEA NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE last_resort_key_packages IS 'The reusable last-resort KeyPackage of a device, handed out (and kept) when no one-time package is left.';

CREATE TABLE conversations (
    id           UUID PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    ciphersuite  INTEGER NOT NULL CHECK (ciphersuite BETWEEN 0 AND 65535),
    epoch        BIGINT NOT NULL CHECK (epoch >= 0),
    last_seq     BIGINT NOT NULL CHECK (last_seq >= 0),
    created_by   UUID NOT NULL REFERENCES users (id),
    -- Direct conversations only: the two user ids sorted and joined. NULLs are distinct, so
    -- any number of group conversations have none.
    direct_key   TEXT UNIQUE NULLS DISTINCT,
    created_at   TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE conversations IS 'One row per MLS group. append locks the row FOR NO KEY UPDATE: that serialises appends per conversation, so seqs are gap-free and exactly one commit per epoch wins.';

CREATE TABLE conversation_members (
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    user_id          UUID NOT NULL REFERENCES users (id),
    -- Seq of the commit that (last) added the user; 0 for the creator.
    added_seq        BIGINT NOT NULL,
    -- Seq of the commit that removed the user; NULL while a member.
    removed_seq      BIGINT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user_idx ON conversation_members (user_id);
COMMENT ON TABLE conversation_members IS 'Member users of each conversation; a current member has removed_seq NULL. Re-adding reuses the row.';

CREATE TABLE conversation_devices (
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    device_id        UUID NOT NULL REFERENCES devices (id),
    user_id          UUID NOT NULL REFERENCES users (id),
    -- The device receives envelopes with from_seq < seq <= coalesce(until_seq, infinity).
    from_seq         BIGINT NOT NULL,
    until_seq        BIGINT,
    -- Cursors: everything up to and including these seqs was delivered / read.
    delivered_seq    BIGINT NOT NULL,
    read_seq         BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, device_id),
    CHECK (delivered_seq >= from_seq)
);
CREATE INDEX conversation_devices_device_idx ON conversation_devices (device_id);
COMMENT ON TABLE conversation_devices IS 'Routing: which devices receive which seq range of a conversation, and their delivered/read cursors. A Welcome (re)opens the range at the commit seq; a removal or revocation closes it (until_seq).';

CREATE TABLE envelopes (
    conversation_id    UUID NOT NULL REFERENCES conversations (id),
    seq                BIGINT NOT NULL CHECK (seq > 0),
    message_id         UUID NOT NULL UNIQUE,
    kind               TEXT NOT NULL CHECK (kind IN ('application', 'proposal', 'commit')),
    epoch              BIGINT NOT NULL,
    sender_user_id     UUID NOT NULL REFERENCES users (id),
    sender_device_id   UUID NOT NULL REFERENCES devices (id),
    client_message_id  UUID NOT NULL,
    sent_at            TIMESTAMPTZ NOT NULL,
    payload            BYTEA NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_device_id, client_message_id)
);
COMMENT ON TABLE envelopes IS 'Accepted MLS messages per conversation, seq gap-free from 1. (conversation, sender device, client_message_id) is the idempotency key.';

CREATE TABLE commit_log (
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    epoch            BIGINT NOT NULL,
    seq              BIGINT NOT NULL,
    commit_hash      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, epoch)
);
COMMENT ON TABLE commit_log IS 'Append-only log of accepted commits: one per epoch (the epoch it was made in), with its seq and SHA-256 (hex).';

CREATE TABLE device_inbox (
    device_id        UUID NOT NULL REFERENCES devices (id),
    inbox_seq        BIGINT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('welcome', 'removed')),
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    commit_seq       BIGINT NOT NULL,
    payload          BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, inbox_seq)
);
COMMENT ON TABLE device_inbox IS 'Device-addressed items (Welcomes, removal notices) with a per-device increasing inbox_seq; dropped when the device acknowledges delivery.';

CREATE TABLE receipts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id        UUID NOT NULL REFERENCES devices (id),
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    kind             TEXT NOT NULL CHECK (kind IN ('delivered', 'read')),
    up_to_seq        BIGINT NOT NULL,
    at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX receipts_lookup_idx ON receipts (conversation_id, device_id, kind, up_to_seq);
COMMENT ON TABLE receipts IS 'One row per cursor advance. The receipt time of seq s for a device is the earliest row of that kind with up_to_seq >= s.';

CREATE TABLE audit (
    seq              BIGINT PRIMARY KEY CHECK (seq > 0),
    at               TIMESTAMPTZ NOT NULL,
    actor_user_id    UUID,
    actor_device_id  UUID,
    action           TEXT NOT NULL,
    target           TEXT,
    -- Exactly ward_store::audit::canonical_details(details): TEXT, not JSONB, because JSONB
    -- would normalise the text and break the hash chain.
    details          TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL
);
COMMENT ON TABLE audit IS 'Append-only, hash-chained audit log (see ward_store::audit). Appends are serialised by locking audit_head.';

CREATE TABLE audit_head (
    id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (TRUE, 0, '0000000000000000000000000000000000000000000000000000000000000000');
COMMENT ON TABLE audit_head IS 'One row: seq and hash of the newest audit record. Locked FOR UPDATE by every append so the chain never forks, even across server nodes.';

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    signature  BYTEA NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE audit_checkpoints IS 'Signed checkpoints of the audit chain head, so truncation of the tail is detectable.';
