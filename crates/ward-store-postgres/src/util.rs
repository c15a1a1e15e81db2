//! Conversions between domain types and column values, and error mapping.

use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};
use ward_proto::{ConversationKind, DeviceStatus, EnvelopeKind, InboxKind, Role, UserStatus};
use ward_store::{ReceiptKind, StoreError, StoreResult};

/// Error mapping for driver results.
pub(crate) trait DbResultExt<T> {
    /// Any driver error is a backend error.
    fn be(self) -> StoreResult<T>;
    /// A unique violation is `Conflict(what)`, a foreign key violation `NotFound(missing)`.
    fn write(self, what: &'static str, missing: &'static str) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn be(self) -> StoreResult<T> {
        self.map_err(StoreError::backend)
    }

    fn write(self, what: &'static str, missing: &'static str) -> StoreResult<T> {
        self.map_err(|e| write_err(e, what, missing))
    }
}

/// A unique violation is `Conflict(what)`, a foreign key violation `NotFound(missing)`, the
/// rest `Backend`.
pub(crate) fn write_err(e: sqlx::Error, what: &'static str, missing: &'static str) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Conflict(what);
        }
        if d.is_foreign_key_violation() {
            return StoreError::NotFound(missing);
        }
    }
    StoreError::backend(e)
}

/// True when `e` is a unique violation of a constraint whose name contains `fragment`.
pub(crate) fn is_unique_on(e: &sqlx::Error, fragment: &str) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() && d.constraint().is_some_and(|c| c.contains(fragment))
        }
        _ => false,
    }
}

/// Read a column, mapping decode failures to `Corrupt`.
pub(crate) fn col<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// A u64 counter as BIGINT. Values beyond i64::MAX saturate (no stored counter gets there).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A BIGINT counter as u64.
pub(crate) fn u64_of(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "unknown {what} {:?}",
        value.chars().take(40).collect::<String>()
    ))
}

pub(crate) fn role_of(s: &str) -> StoreResult<Role> {
    s.parse().map_err(|_| corrupt("role", s))
}

pub(crate) fn user_status_str(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Pending => "pending",
        UserStatus::Active => "active",
        UserStatus::Suspended => "suspended",
    }
}

pub(crate) fn user_status_of(s: &str) -> StoreResult<UserStatus> {
    Ok(match s {
        "pending" => UserStatus::Pending,
        "active" => UserStatus::Active,
        "suspended" => UserStatus::Suspended,
        _ => return Err(corrupt("user status", s)),
    })
}

pub(crate) fn device_status_str(s: DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Active => "active",
        DeviceStatus::Revoked => "revoked",
    }
}

pub(crate) fn device_status_of(s: &str) -> StoreResult<DeviceStatus> {
    Ok(match s {
        "active" => DeviceStatus::Active,
        "revoked" => DeviceStatus::Revoked,
        _ => return Err(corrupt("device status", s)),
    })
}

pub(crate) fn conversation_kind_str(k: ConversationKind) -> &'static str {
    match k {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
    }
}

pub(crate) fn conversation_kind_of(s: &str) -> StoreResult<ConversationKind> {
    Ok(match s {
        "direct" => ConversationKind::Direct,
        "group" => ConversationKind::Group,
        _ => return Err(corrupt("conversation kind", s)),
    })
}

pub(crate) fn envelope_kind_str(k: EnvelopeKind) -> &'static str {
    match k {
        EnvelopeKind::Application => "application",
        EnvelopeKind::Proposal => "proposal",
        EnvelopeKind::Commit => "commit",
    }
}

pub(crate) fn envelope_kind_of(s: &str) -> StoreResult<EnvelopeKind> {
    Ok(match s {
        "application" => EnvelopeKind::Application,
        "proposal" => EnvelopeKind::Proposal,
        "commit" => EnvelopeKind::Commit,
        _ => return Err(corrupt("envelope kind", s)),
    })
}

pub(crate) fn inbox_kind_str(k: InboxKind) -> &'static str {
    match k {
        InboxKind::Welcome => "welcome",
        InboxKind::Removed => "removed",
        InboxKind::Alert => "alert",
    }
}

pub(crate) fn inbox_kind_of(s: &str) -> StoreResult<InboxKind> {
    Ok(match s {
        "welcome" => InboxKind::Welcome,
        "removed" => InboxKind::Removed,
        "alert" => InboxKind::Alert,
        _ => return Err(corrupt("inbox kind", s)),
    })
}

pub(crate) fn receipt_kind_str(k: ReceiptKind) -> &'static str {
    match k {
        ReceiptKind::Delivered => "delivered",
        ReceiptKind::Read => "read",
    }
}

/// A 32-byte hash column.
pub(crate) fn hash32(v: Vec<u8>, what: &str) -> StoreResult<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}
