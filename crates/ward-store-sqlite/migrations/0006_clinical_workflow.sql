-- Clinical workflow (ADR 0014): clinical roles (duties messages can be addressed to, not the
-- account role), their holders by assignment or scheduled shift, and escalation policies.
-- Number 0006: 0005 is taken by another change developed in parallel (sqlx allows the gap).

-- An organisation-defined clinical role, e.g. `cardiology-on-call`.
CREATE TABLE clinical_roles (
    name         TEXT    PRIMARY KEY,
    description  TEXT,
    created_at   INTEGER NOT NULL
);

-- Standing assignments; the user holds the role while on_call = 1 (opt-out keeps the row).
CREATE TABLE role_assignments (
    role         TEXT    NOT NULL REFERENCES clinical_roles (name),
    user_id      TEXT    NOT NULL REFERENCES users (id),
    on_call      INTEGER NOT NULL,
    assigned_at  INTEGER NOT NULL,
    changed_at   INTEGER NOT NULL,
    PRIMARY KEY (role, user_id)
);

-- Scheduled shifts [starts_at, ends_at) in Unix microseconds; time_zone is the IANA zone of
-- the imported schedule (display only). No two shifts of one user in one role overlap
-- (checked in the inserting transaction).
CREATE TABLE shifts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    role         TEXT    NOT NULL REFERENCES clinical_roles (name),
    user_id      TEXT    NOT NULL REFERENCES users (id),
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL CHECK (ends_at > starts_at),
    time_zone    TEXT    NOT NULL
);
CREATE INDEX shifts_by_role_time ON shifts (role, starts_at);

-- One escalation policy per role; then_targets is a JSON array of {"type": "role"|"user", "id"}.
CREATE TABLE escalation_policies (
    role                 TEXT    PRIMARY KEY REFERENCES clinical_roles (name),
    ack_within_secs      INTEGER NOT NULL,
    renotify_every_secs  INTEGER,
    then_targets         TEXT    NOT NULL,
    updated_at           INTEGER NOT NULL
);
