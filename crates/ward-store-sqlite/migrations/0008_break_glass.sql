-- Break-glass emergency access (ADR 0016). A grant gives `user_id` membership of
-- `conversation_id` until `expires_at`; members' clients add her to the MLS group (`added_at`
-- records the first accepted commit) and the server ends the grant (`ended_at`) and her
-- membership when it expires. `reason` is clear text the client checked for PHI; it is also
-- in the audit log. At most one open grant per user and conversation. Number 0008: 0005 to
-- 0007 are taken by changes developed in parallel (sqlx allows the gap).
CREATE TABLE break_glass_grants (
    id               TEXT    PRIMARY KEY,
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    user_id          TEXT    NOT NULL REFERENCES users (id),
    reason           TEXT    NOT NULL,
    granted_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    added_at         INTEGER,
    ended_at         INTEGER
);
CREATE UNIQUE INDEX break_glass_open ON break_glass_grants (conversation_id, user_id)
    WHERE ended_at IS NULL;
CREATE INDEX break_glass_by_expiry ON break_glass_grants (expires_at) WHERE ended_at IS NULL;
CREATE INDEX break_glass_by_conversation ON break_glass_grants (conversation_id, granted_at);
