-- Remote wipe (ADR 0011). A wipe order outlives the device's revocation so the device learns
-- on its next contact that it must erase its profile; `nonce` binds the signed instruction
-- and the device's signed confirmation to this order. Number 0004: 0003 is taken by another
-- change developed in parallel (sqlx allows the gap).
CREATE TABLE wipe_orders (
    device_id     TEXT    PRIMARY KEY REFERENCES devices (id),
    user_id       TEXT    NOT NULL REFERENCES users (id),
    nonce         BLOB    NOT NULL,
    ordered_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    confirmed_at  INTEGER
);

-- SHA-256 of the session tokens the device held when the wipe was ordered (the sessions
-- themselves are deleted), so a request with such a token is answered with the instruction.
CREATE TABLE wipe_tokens (
    token_hash  BLOB PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES wipe_orders (device_id)
);
