-- Clinical workflow (ADR 0014). Number 0006: 0005 is taken by another change developed in
-- parallel (sqlx allows the gap).
CREATE TABLE clinical_roles (
    name         TEXT PRIMARY KEY,
    description  TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE clinical_roles IS 'Organisation-defined clinical roles (duties such as cardiology-on-call that messages can be addressed to); not the account role.';

CREATE TABLE role_assignments (
    role         TEXT NOT NULL REFERENCES clinical_roles (name),
    user_id      UUID NOT NULL REFERENCES users (id),
    on_call      BOOLEAN NOT NULL,
    assigned_at  TIMESTAMPTZ NOT NULL,
    changed_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (role, user_id)
);
COMMENT ON TABLE role_assignments IS 'Standing role assignments; the user holds the role while on_call (opt-out keeps the row).';

CREATE TABLE shifts (
    id           BIGSERIAL PRIMARY KEY,
    role         TEXT NOT NULL REFERENCES clinical_roles (name),
    user_id      UUID NOT NULL REFERENCES users (id),
    starts_at    TIMESTAMPTZ NOT NULL,
    ends_at      TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at),
    time_zone    TEXT NOT NULL
);
COMMENT ON TABLE shifts IS 'Scheduled shifts [starts_at, ends_at); no two of one user in one role overlap (checked under a lock on the clinical_roles row); time_zone is the IANA zone of the imported schedule, for display.';
CREATE INDEX shifts_by_role_time ON shifts (role, starts_at);

CREATE TABLE escalation_policies (
    role                 TEXT PRIMARY KEY REFERENCES clinical_roles (name),
    ack_within_secs      BIGINT NOT NULL,
    renotify_every_secs  BIGINT,
    then_targets         TEXT NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE escalation_policies IS 'Per-role escalation policy; then_targets is a JSON array of {"type": "role"|"user", "id"}.';
