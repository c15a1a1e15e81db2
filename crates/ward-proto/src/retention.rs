//! Retention, legal holds, erasure requests and deletion orders to devices (ADR 0013).
//!
//! This module defines the wire types and the one duration syntax every retention setting
//! uses ([`RetentionDuration`]), and the exact bytes the organisation CA signs for a
//! [`DeletionOrder`], length-prefixed and labelled like the wipe instruction, so an order can
//! never be replayed as a wipe or a credential. Deciding what to delete lives in the server;
//! verifying an order lives in `ward-core`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Bytes, ConversationId, MessageId, UserId};

/// The longest retention period accepted: 100 years.
pub const MAX_RETENTION_SECS: u64 = 100 * YEAR_SECS;
/// One year as retention counts it: 365 days (a statutory "7 years" is then a few days short
/// of seven calendar years; set `2562d` for a strict bound).
pub const YEAR_SECS: u64 = 365 * DAY_SECS;
const DAY_SECS: u64 = 86_400;
/// Message ids in one deletion order at most (one purge batch per conversation).
pub const MAX_DELETION_ORDER_IDS: usize = 1_000;

/// A positive retention period, written as a whole number and a unit: `90m`, `12h`, `30d`,
/// `6w`, `7y` (a year is 365 days). Zero, negatives, fractions, missing or unknown units and
/// values over 100 years are refused with an error naming the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetentionDuration(u64);

impl RetentionDuration {
    /// Parse `30d`, `7y`, …
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("a duration is required, e.g. 30d or 7y".to_owned());
        }
        if t.starts_with('-') {
            return Err(format!("duration {s:?} is negative; it must be positive"));
        }
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {s:?} has no unit: use m, h, d, w or y (e.g. 30d)"))?;
        let (digits, unit) = t.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "duration {s:?} must start with a whole number, e.g. 30d or 7y"
            ));
        }
        let per = match unit {
            "m" => 60,
            "h" => 3_600,
            "d" => DAY_SECS,
            "w" => 7 * DAY_SECS,
            "y" => YEAR_SECS,
            _ => {
                return Err(format!(
                    "duration {s:?} has an unknown unit {unit:?}: use m, h, d, w or y"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("duration {s:?} is too long (at most 100y)"))?;
        if n == 0 {
            return Err(format!("duration {s:?} is zero; it must be positive"));
        }
        let secs = n
            .checked_mul(per)
            .filter(|v| *v <= MAX_RETENTION_SECS)
            .ok_or_else(|| format!("duration {s:?} is too long (at most 100y)"))?;
        Ok(Self(secs))
    }

    /// From seconds (as stored); `None` for 0 or over the maximum.
    pub fn from_secs(secs: u64) -> Option<Self> {
        (secs > 0 && secs <= MAX_RETENTION_SECS).then_some(Self(secs))
    }

    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }

    /// As a `time::Duration`.
    pub fn duration(self) -> time::Duration {
        // At most 100 years of seconds: far below i64::MAX.
        time::Duration::seconds(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for RetentionDuration {
    /// The largest unit that divides exactly: `2y`, `30d`, `90m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (per, unit) in [
            (YEAR_SECS, "y"),
            (7 * DAY_SECS, "w"),
            (DAY_SECS, "d"),
            (3_600, "h"),
            (60, "m"),
        ] {
            if self.0.is_multiple_of(per) {
                return write!(f, "{}{unit}", self.0 / per);
            }
        }
        write!(f, "{}s", self.0)
    }
}

/// The retention rules for one conversation kind (or the organisation default). Durations as
/// [`RetentionDuration`] text; `null` means "no rule" (for a kind: use the default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetentionRulesInfo {
    /// Messages are deleted (server and devices) this long after the server accepted them.
    pub message_lifespan: Option<String>,
    /// Nothing is deleted, by lifespan or erasure, before this long after acceptance.
    pub statutory_retention: Option<String>,
}

/// `GET /v1/admin/retention`, `ward admin retention show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetentionPolicyInfo {
    /// Organisation default.
    pub default: RetentionRulesInfo,
    /// Per conversation kind (its wire name), overriding the default field by field.
    pub per_kind: std::collections::BTreeMap<String, RetentionRulesInfo>,
    /// Compliance journal archive entries are purged this long after acceptance (`null`:
    /// kept until their own `retain_until`, if any).
    pub journal_retention: Option<String>,
    /// Seconds between two automatic purge runs of `ward serve`.
    pub purge_interval_secs: u64,
}

/// `PUT /v1/admin/retention`: change some rules. Each value is a duration (`30d`, `7y`) or
/// `"none"` to clear the rule; absent fields are unchanged.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetentionRequest {
    /// A conversation kind (`direct`, `group`, …) to change; absent: the default.
    pub kind: Option<String>,
    /// Message lifespan.
    pub message_lifespan: Option<String>,
    /// Statutory retention minimum.
    pub statutory_retention: Option<String>,
    /// Journal archive retention (organisation-wide only; refused with `kind`).
    pub journal_retention: Option<String>,
    /// Seconds between automatic purge runs, 60 to 86,400 (organisation-wide only).
    pub purge_interval_secs: Option<u64>,
}

/// What a purge run did (`POST /v1/admin/retention/run`, `ward admin retention run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PurgeReport {
    /// Envelopes deleted because their lifespan ended.
    pub envelopes_deleted: u64,
    /// Expired envelopes kept by a legal hold.
    pub envelopes_kept_hold: u64,
    /// Expired envelopes kept by statutory retention.
    pub envelopes_kept_statutory: u64,
    /// Journal archive entries deleted because their retention ended.
    pub journal_deleted: u64,
    /// Due journal archive entries kept by a legal hold.
    pub journal_kept_hold: u64,
    /// Due journal archive entries kept by statutory retention.
    pub journal_kept_statutory: u64,
    /// Deletion orders issued to devices (one per conversation and batch).
    pub deletion_orders: u64,
}

/// What a legal hold covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum HoldTarget {
    /// Every message the user sent, and every message of the conversations the user is a
    /// member of.
    User(UserId),
    /// Every message of the conversation.
    Conversation(ConversationId),
}

/// `POST /v1/admin/holds`. Exactly one of `user` (a username) or `conversation`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddHoldRequest {
    /// Username of the held user.
    pub user: Option<String>,
    /// Id of the held conversation.
    pub conversation: Option<ConversationId>,
    /// Why (1–500 characters; no patient data).
    pub reason: String,
    /// The case or matter reference (at most 100 characters).
    pub case_ref: Option<String>,
}

/// A legal hold as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HoldInfo {
    /// Id.
    pub id: uuid::Uuid,
    /// What it holds.
    pub target: HoldTarget,
    /// Why.
    pub reason: String,
    /// Case reference.
    pub case_ref: Option<String>,
    /// Who placed it (`null`: the local CLI).
    pub created_by: Option<UserId>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who released it.
    pub released_by: Option<UserId>,
    /// When it was released; `null` while in force.
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
}

/// `GET /v1/admin/holds`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HoldList {
    /// Every hold, oldest first, released ones included.
    pub holds: Vec<HoldInfo>,
}

/// `POST /v1/admin/erasure-requests`: a GDPR Art. 17 / APPI Art. 35 erasure request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequestBody {
    /// Username of the data subject.
    pub user: String,
}

/// One group of items the erasure kept, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErasureKept {
    /// `envelopes`, `journal_entries` or `account`.
    pub what: String,
    /// How many.
    pub count: u64,
    /// `legal_hold`, `statutory_retention` or `audit_integrity`.
    pub rule: String,
    /// The hold id, the date statutory retention ends, or an explanation.
    pub detail: String,
}

/// The report of an erasure request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErasureReport {
    /// Request id.
    pub id: uuid::Uuid,
    /// Data subject.
    pub user_id: UserId,
    /// `completed` (everything in scope erased), `partial` (some kept) or `refused`
    /// (nothing erased: everything is kept by a hold or statutory retention).
    pub status: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// Envelopes the user sent that were deleted (server; devices get deletion orders).
    pub envelopes_erased: u64,
    /// Journal archive entries of the user's messages that were deleted.
    pub journal_entries_erased: u64,
    /// What was kept and why.
    pub kept: Vec<ErasureKept>,
}

/// An order to a device to delete messages from its local history, issued when the server
/// deleted them (lifespan or erasure). Signed by the organisation CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletionOrder {
    /// Id (the device acknowledges it).
    pub order_id: uuid::Uuid,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The messages to delete (at most [`MAX_DELETION_ORDER_IDS`]).
    pub message_ids: Vec<MessageId>,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// Ed25519 signature of the organisation CA over [`DeletionOrder::signed_bytes`].
    pub signature: Bytes,
}

impl DeletionOrder {
    /// Domain separation label of the order signature.
    pub const LABEL: &'static [u8] = b"ward deletion order v1";

    /// The exact bytes the organisation CA signs.
    pub fn signed_bytes(
        order_id: uuid::Uuid,
        conversation_id: ConversationId,
        message_ids: &[MessageId],
        issued_at: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 20 * message_ids.len());
        push_field(&mut out, Self::LABEL);
        push_field(&mut out, order_id.as_bytes());
        push_field(&mut out, conversation_id.0.as_bytes());
        push_field(&mut out, &issued_at.to_be_bytes());
        push_field(&mut out, &(message_ids.len() as u64).to_be_bytes());
        for m in message_ids {
            push_field(&mut out, m.0.as_bytes());
        }
        out
    }
}

/// `GET /v1/deletion-orders`: the orders this device has not acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletionOrderList {
    /// Oldest first, at most 100.
    pub orders: Vec<DeletionOrder>,
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (s, secs, shown) in [
            ("30d", 30 * 86_400, "30d"),
            ("7y", 7 * YEAR_SECS, "7y"),
            ("90m", 5_400, "90m"),
            ("12h", 43_200, "12h"),
            ("2w", 14 * 86_400, "2w"),
            (" 14d ", 14 * 86_400, "2w"),
            ("100y", MAX_RETENTION_SECS, "100y"),
        ] {
            let d = RetentionDuration::parse(s).expect(s);
            assert_eq!(d.secs(), secs, "{s}");
            assert_eq!(d.to_string(), shown, "{s}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_the_reason() {
        for (s, why) in [
            ("0d", "zero"),
            ("-5d", "negative"),
            ("30", "no unit"),
            ("d", "whole number"),
            ("1.5d", "unknown unit"),
            ("30x", "unknown unit"),
            ("forever", "whole number"),
            ("101y", "too long"),
            ("99999999999999999999999d", "too long"),
            ("18446744073709551615y", "too long"),
            ("", "required"),
        ] {
            let e = RetentionDuration::parse(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn signed_bytes_bind_every_field() {
        let o = uuid::Uuid::from_u128(1);
        let c = ConversationId(uuid::Uuid::from_u128(2));
        let m = [MessageId(uuid::Uuid::from_u128(3))];
        let base = DeletionOrder::signed_bytes(o, c, &m, 5);
        assert_ne!(base, DeletionOrder::signed_bytes(o, c, &m, 6));
        assert_ne!(base, DeletionOrder::signed_bytes(o, c, &[], 5));
        assert_ne!(
            base,
            DeletionOrder::signed_bytes(uuid::Uuid::from_u128(9), c, &m, 5)
        );
        assert!(base.starts_with(&[0, 0, 0, 22]));
    }
}
