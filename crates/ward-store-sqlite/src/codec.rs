//! Conversions between domain values and SQLite columns, and error mapping.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_proto::{ConversationKind, DeviceStatus, EnvelopeKind, InboxKind, Role, UserStatus};
use ward_store::{StoreError, StoreResult};

/// Wrap a driver error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

/// Map a unique violation to `Conflict(what)`, anything else to `Backend`.
pub(crate) fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::backend(e),
    }
}

/// Unix microseconds.
pub(crate) fn us(t: OffsetDateTime) -> i64 {
    ward_store::audit::micros(t)
}

/// Back from Unix microseconds.
pub(crate) fn from_us(v: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000)
        .map_err(|_| StoreError::Corrupt(format!("time out of range: {v}")))
}

/// A sequence number or counter as SQLite's signed integer (saturating: values that large
/// never occur and are only ever compared).
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored integer that must not be negative.
pub(crate) fn uint(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter: {v}")))
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Constant-time equality of two byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A 32-byte hash column.
pub(crate) fn hash32(v: Vec<u8>) -> StoreResult<[u8; 32]> {
    v.try_into()
        .map_err(|v: Vec<u8>| StoreError::Corrupt(format!("hash of {} bytes", v.len())))
}

/// Text names of the wire enums (their serde snake_case names).
pub(crate) trait Named: Sized + Copy + PartialEq + 'static {
    /// Every value with its name.
    const NAMES: &'static [(Self, &'static str)];
    /// Kind for error messages.
    const WHAT: &'static str;

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, n)| n)
    }

    fn parse(s: &str) -> StoreResult<Self> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown {} {s:?}", Self::WHAT)))
    }
}

impl Named for Role {
    const NAMES: &'static [(Self, &'static str)] = &[
        (Role::Admin, "admin"),
        (Role::Physician, "physician"),
        (Role::Nurse, "nurse"),
        (Role::Pharmacist, "pharmacist"),
        (Role::Compliance, "compliance"),
        (Role::Patient, "patient"),
        (Role::Service, "service"),
    ];
    const WHAT: &'static str = "role";
}

impl Named for UserStatus {
    const NAMES: &'static [(Self, &'static str)] = &[
        (UserStatus::Pending, "pending"),
        (UserStatus::Active, "active"),
        (UserStatus::Suspended, "suspended"),
    ];
    const WHAT: &'static str = "user status";
}

impl Named for DeviceStatus {
    const NAMES: &'static [(Self, &'static str)] = &[
        (DeviceStatus::Active, "active"),
        (DeviceStatus::Revoked, "revoked"),
    ];
    const WHAT: &'static str = "device status";
}

impl Named for ConversationKind {
    const NAMES: &'static [(Self, &'static str)] = &[
        (ConversationKind::Direct, "direct"),
        (ConversationKind::Group, "group"),
    ];
    const WHAT: &'static str = "conversation kind";
}

impl Named for EnvelopeKind {
    const NAMES: &'static [(Self, &'static str)] = &[
        (EnvelopeKind::Application, "application"),
        (EnvelopeKind::Proposal, "proposal"),
        (EnvelopeKind::Commit, "commit"),
    ];
    const WHAT: &'static str = "envelope kind";
}

impl Named for InboxKind {
    const NAMES: &'static [(Self, &'static str)] = &[
        (InboxKind::Welcome, "welcome"),
        (InboxKind::Removed, "removed"),
        (InboxKind::Alert, "alert"),
    ];
    const WHAT: &'static str = "inbox kind";
}

/// Typed column access with errors mapped to [`StoreError`].
pub(crate) struct Cols<'r>(pub(crate) &'r SqliteRow);

impl Cols<'_> {
    fn get<'a, T>(&'a self, col: &str) -> StoreResult<T>
    where
        T: sqlx::Decode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.0.try_get(col).map_err(db)
    }
    pub(crate) fn text(&self, col: &str) -> StoreResult<String> {
        self.get(col)
    }
    pub(crate) fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.get(col)
    }
    pub(crate) fn blob(&self, col: &str) -> StoreResult<Vec<u8>> {
        self.get(col)
    }
    pub(crate) fn opt_blob(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        self.get(col)
    }
    pub(crate) fn i64(&self, col: &str) -> StoreResult<i64> {
        self.get(col)
    }
    pub(crate) fn u64(&self, col: &str) -> StoreResult<u64> {
        uint(self.i64(col)?)
    }
    pub(crate) fn opt_u64(&self, col: &str) -> StoreResult<Option<u64>> {
        self.get::<Option<i64>>(col)?.map(uint).transpose()
    }
    pub(crate) fn time(&self, col: &str) -> StoreResult<OffsetDateTime> {
        from_us(self.i64(col)?)
    }
    pub(crate) fn opt_time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>> {
        self.get::<Option<i64>>(col)?.map(from_us).transpose()
    }
    pub(crate) fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        parse_uuid(&self.text(col)?)
    }
    pub(crate) fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.opt_text(col)?.as_deref().map(parse_uuid).transpose()
    }
    pub(crate) fn named<T: Named>(&self, col: &str) -> StoreResult<T> {
        T::parse(&self.text(col)?)
    }
}

/// Parse a stored UUID.
pub(crate) fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad uuid {s:?}")))
}

/// A UUID as stored.
pub(crate) fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}
