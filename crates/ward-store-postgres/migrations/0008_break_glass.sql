-- Break-glass emergency access (ADR 0016). Number 0008: 0005 to 0007 are taken by changes
-- developed in parallel (sqlx allows the gap).
CREATE TABLE break_glass_grants (
    id               UUID PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id),
    user_id          UUID NOT NULL REFERENCES users (id),
    reason           TEXT NOT NULL,
    granted_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    added_at         TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ
);
COMMENT ON TABLE break_glass_grants IS 'Break-glass grants (ADR 0016): time-limited membership of a conversation for user_id. Members'' clients add her to the MLS group (added_at: first accepted commit); the server ends the grant and her membership at expires_at (ended_at). reason is clear text the client checked for PHI; it is also in the audit log.';
CREATE UNIQUE INDEX break_glass_open ON break_glass_grants (conversation_id, user_id)
    WHERE ended_at IS NULL;
CREATE INDEX break_glass_by_expiry ON break_glass_grants (expires_at) WHERE ended_at IS NULL;
CREATE INDEX break_glass_by_conversation ON break_glass_grants (conversation_id, granted_at);
