-- Remote wipe (ADR 0011). Number 0004: 0003 is taken by another change developed in parallel
-- (sqlx allows the gap).
CREATE TABLE wipe_orders (
    device_id     UUID PRIMARY KEY REFERENCES devices (id),
    user_id       UUID NOT NULL REFERENCES users (id),
    nonce         BYTEA NOT NULL,
    ordered_at    TIMESTAMPTZ NOT NULL,
    delivered_at  TIMESTAMPTZ,
    confirmed_at  TIMESTAMPTZ
);
COMMENT ON TABLE wipe_orders IS 'Remote wipe orders; outlive the revocation so the device learns on its next contact that it must erase its profile. nonce binds the signed instruction and the signed confirmation to the order.';

CREATE TABLE wipe_tokens (
    token_hash  BYTEA PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES wipe_orders (device_id)
);
COMMENT ON TABLE wipe_tokens IS 'SHA-256 of the session tokens a device held when its wipe was ordered; a request with such a token gets the wipe instruction.';
