//! Domain records as stored. Secrets arrive here already hashed or encrypted by the server.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ward_proto::{
    ConversationId, ConversationKind, DeviceId, DeviceStatus, EnvelopeKind, MessageId, Role,
    UserId, UserStatus, Username,
};

/// Organisation-wide policy, stored as JSON so new keys need no migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgPolicy {
    /// A TOTP second factor is required at login.
    pub mfa_required: bool,
    /// Seconds without a request before a session ends.
    pub idle_timeout_secs: u64,
    /// Seconds after login before a session ends regardless of activity.
    pub absolute_timeout_secs: u64,
    /// Lifetime of an enrollment code in seconds.
    pub enrollment_ttl_secs: u64,
    /// Failed logins before the account locks.
    pub max_failed_logins: u32,
    /// How long a lock lasts, in seconds.
    pub lockout_secs: u64,
    /// Allowed MLS ciphersuites, default first.
    pub ciphersuites: Vec<u16>,
    /// Minimum password length with MFA required; without MFA at least 15 applies
    /// (`ward_proto::min_password_chars`, NIST SP 800-63B-4).
    pub password_min_length: u32,
    /// Server-to-device events carry ids only (no names, labels or content). On by default;
    /// today every event already obeys it, and it is the rule any future mobile push follows.
    pub notification_privacy: bool,
    /// The DLP document (`{"config": …, "policy": …}`) clients enforce before encrypting.
    /// Opaque here: its schema lives with the detectors in `ward_core::dlp`.
    pub dlp: Option<serde_json::Value>,
    /// Retention (ADR 0013): message lifespan, statutory retention, journal archive retention.
    pub retention: RetentionPolicy,
    /// Roles that may open break-glass access to a conversation (ADR 0016). Never admin,
    /// compliance, patient or service (least privilege; the server refuses to store them).
    pub break_glass_roles: Vec<Role>,
    /// Longest break-glass access, in minutes.
    pub break_glass_max_minutes: u32,
    /// Largest attachment ciphertext one upload may announce, in bytes (ADR 0017).
    pub attachment_max_bytes: u64,
    /// Sum of the sizes of all blobs and uploads the organisation may hold, in bytes.
    pub attachment_quota_bytes: u64,
    /// Media types sending clients refuse to attach (they check the content too).
    pub attachment_denied_media_types: Vec<String>,
    /// File extensions sending clients refuse to attach, lowercase without the dot.
    pub attachment_denied_extensions: Vec<String>,
}

/// Default [`OrgPolicy::attachment_max_bytes`]: 2 GiB.
pub const DEFAULT_ATTACHMENT_MAX_BYTES: u64 = 2 << 30;
/// Default [`OrgPolicy::attachment_quota_bytes`]: 100 GiB.
pub const DEFAULT_ATTACHMENT_QUOTA_BYTES: u64 = 100 << 30;

/// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 (draft post-quantum code point).
pub const CIPHERSUITE_XWING: u16 = 0x004D;
/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (RFC 9420).
pub const CIPHERSUITE_X25519: u16 = 0x0001;

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            mfa_required: true,
            idle_timeout_secs: 15 * 60,
            absolute_timeout_secs: 12 * 3600,
            enrollment_ttl_secs: 72 * 3600,
            max_failed_logins: 5,
            lockout_secs: 15 * 60,
            ciphersuites: vec![CIPHERSUITE_XWING, CIPHERSUITE_X25519],
            password_min_length: 12,
            notification_privacy: true,
            dlp: None,
            retention: RetentionPolicy::default(),
            break_glass_roles: vec![Role::Physician, Role::Nurse],
            break_glass_max_minutes: 8 * 60,
            attachment_max_bytes: DEFAULT_ATTACHMENT_MAX_BYTES,
            attachment_quota_bytes: DEFAULT_ATTACHMENT_QUOTA_BYTES,
            attachment_denied_media_types: ward_proto::DEFAULT_DENIED_MEDIA_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            attachment_denied_extensions: ward_proto::DEFAULT_DENIED_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// The organisation running this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Display name.
    pub name: String,
    /// Policy.
    pub policy: OrgPolicy,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Immutable id.
    pub id: UserId,
    /// Unique username.
    pub username: Username,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// State.
    pub status: UserStatus,
    /// Argon2id PHC string, set at enrollment.
    pub password_hash: Option<String>,
    /// TOTP seed encrypted under the server master key.
    pub totp_secret_enc: Option<Vec<u8>>,
    /// Consecutive failed logins.
    pub failed_logins: u32,
    /// Login refused until then.
    pub locked_until: Option<OffsetDateTime>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A one-time enrollment code, stored as a SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentCode {
    /// SHA-256 of the code.
    pub code_hash: [u8; 32],
    /// Expiry.
    pub expires_at: OffsetDateTime,
}

/// A device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Id.
    pub id: DeviceId,
    /// Owner.
    pub user_id: UserId,
    /// Label.
    pub name: String,
    /// MLS signature public key.
    pub signature_key: Vec<u8>,
    /// The organisation-signed credential, JSON of `ward_proto::DeviceCredential`.
    pub credential: Vec<u8>,
    /// State.
    pub status: DeviceStatus,
    /// Registration.
    pub created_at: OffsetDateTime,
    /// Revocation.
    pub revoked_at: Option<OffsetDateTime>,
    /// Last authenticated request.
    pub last_seen_at: Option<OffsetDateTime>,
}

/// An order to wipe a device, kept after the device is revoked so that the device, when it
/// next contacts the server with its old session token or a login, learns that it must erase
/// its profile. Only the hashes of the sessions it held are kept, never tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WipeOrder {
    /// The device to wipe.
    pub device_id: DeviceId,
    /// Its owner.
    pub user_id: UserId,
    /// Random nonce bound into the signed instruction and the device's confirmation, so a
    /// confirmation answers this order and no other.
    pub nonce: [u8; 32],
    /// When the admin ordered the wipe.
    pub ordered_at: OffsetDateTime,
    /// First time the signed instruction was handed to the device.
    pub delivered_at: Option<OffsetDateTime>,
    /// When the device confirmed, with a signature, that it erased its profile.
    pub confirmed_at: Option<OffsetDateTime>,
}

/// A login session; the token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the bearer token.
    pub token_hash: [u8; 32],
    /// User.
    pub user_id: UserId,
    /// Device the token is bound to.
    pub device_id: DeviceId,
    /// Login time.
    pub created_at: OffsetDateTime,
    /// Last use (for the idle timeout).
    pub last_used_at: OffsetDateTime,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
}

/// What completing an enrollment writes, atomically.
#[derive(Clone, Debug)]
pub struct Enrollment {
    /// The user enrolling.
    pub user_id: UserId,
    /// SHA-256 of the presented code; must equal the stored one and be unexpired.
    pub code_hash: [u8; 32],
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Encrypted TOTP seed.
    pub totp_secret_enc: Vec<u8>,
    /// The first device.
    pub device: Device,
    /// The first session.
    pub session: Session,
    /// Now (the code must not be expired at this time).
    pub now: OffsetDateTime,
}

/// A conversation (one MLS group) as the delivery service tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// MLS ciphersuite.
    pub ciphersuite: u16,
    /// Current epoch.
    pub epoch: u64,
    /// Highest assigned seq.
    pub last_seq: u64,
    /// Creator.
    pub created_by: UserId,
    /// For direct conversations: the two user ids sorted and joined, unique.
    pub direct_key: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A new conversation; the creator's user and device become its first members.
#[derive(Clone, Debug)]
pub struct NewConversation {
    /// The conversation; `epoch` and `last_seq` are 0.
    pub conversation: Conversation,
    /// The creator's device (sole MLS member at epoch 0).
    pub creator_device: DeviceId,
}

/// A member user of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// User.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
}

/// A device routed to in a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDevice {
    /// Device.
    pub device_id: DeviceId,
    /// Owner.
    pub user_id: UserId,
}

/// Membership changes a commit carries; applied with the commit or not at all.
#[derive(Clone, Debug, Default)]
pub struct CommitChanges {
    /// SHA-256 of the commit message, for the commit log.
    pub commit_hash: [u8; 32],
    /// Users joining.
    pub add_users: Vec<UserId>,
    /// Users leaving (all their devices stop receiving after this commit).
    pub remove_users: Vec<UserId>,
    /// Devices leaving.
    pub remove_devices: Vec<DeviceId>,
    /// The Welcome and the devices it is for.
    pub welcome: Option<(Vec<u8>, Vec<DeviceId>)>,
}

/// An envelope to append.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Fresh server id.
    pub message_id: MessageId,
    /// Sender.
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// Idempotency id, unique per sending device and conversation.
    pub client_message_id: uuid::Uuid,
    /// Kind.
    pub kind: EnvelopeKind,
    /// Epoch claimed by the sender.
    pub epoch: u64,
    /// MLS message.
    pub payload: Vec<u8>,
    /// Acceptance time.
    pub sent_at: OffsetDateTime,
    /// For commits.
    pub commit: Option<CommitChanges>,
    /// The audit record of the send, written in the same transaction when the envelope is
    /// accepted (never for a duplicate), so an acknowledged message always has its record and
    /// a send costs one durable write. The store sets `target` to the message id and adds the
    /// assigned `seq` to `details` (which must be a JSON object).
    pub audit: Option<AuditEvent>,
    /// For application messages while a journal key is installed: the compliance journal
    /// copy, written to the journal archive in the same transaction as the envelope.
    pub journal: Option<ward_proto::JournalCopy>,
}

/// Told of every append a store instance accepted, once its commit is durable and before its
/// caller is answered, in commit order: per conversation, in seq order for the appends of that
/// instance (ADR 0020). Always called with [`AppendOutcome::Accepted`]. It runs on the store's
/// writer, so it must return at once (queue the work elsewhere) and must not panic.
pub type AppendListener = std::sync::Arc<dyn Fn(&AppendOutcome) + Send + Sync>;

/// Where a backend keeps its [`AppendListener`]: registered at most once.
#[derive(Default)]
pub struct AppendListenerSlot(std::sync::OnceLock<AppendListener>);

impl AppendListenerSlot {
    /// Register `listener`; `false` if one is registered already.
    pub fn set(&self, listener: AppendListener) -> bool {
        self.0.set(listener).is_ok()
    }

    /// The registered listener, if any.
    pub fn get(&self) -> Option<AppendListener> {
        self.0.get().cloned()
    }
}

impl std::fmt::Debug for AppendListenerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "registered"
        } else {
            "none"
        })
    }
}

/// An appended (or found) envelope.
#[allow(
    clippy::large_enum_variant,
    reason = "Accepted is the common outcome; boxing it would allocate on every send"
)]
#[derive(Clone, Debug)]
pub enum AppendOutcome {
    /// Newly stored; durable.
    Accepted {
        /// The stored envelope.
        envelope: ward_proto::Envelope,
        /// Epoch after the append.
        epoch: u64,
        /// Device-addressed items created (Welcomes, removal notices).
        inbox: Vec<(DeviceId, ward_proto::InboxItem)>,
        /// Devices the envelope is routed to (active in the conversation, sender excluded).
        recipients: Vec<DeviceId>,
        /// Sequence number of the audit record written with it, if one was requested.
        audit_seq: Option<u64>,
    },
    /// The same client message id was accepted before; nothing stored now.
    Duplicate {
        /// Its id.
        message_id: MessageId,
        /// Its seq.
        seq: u64,
        /// The conversation's current epoch.
        epoch: u64,
    },
}

/// A batch for one device's sync.
#[derive(Clone, Debug, Default)]
pub struct SyncBatch {
    /// Device-addressed items.
    pub inbox: Vec<ward_proto::InboxItem>,
    /// Conversation envelopes.
    pub envelopes: Vec<ward_proto::Envelope>,
    /// The limit cut the batch.
    pub more: bool,
}

/// Kind of receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Device stored the message.
    Delivered,
    /// User read it on that device.
    Read,
}

/// An event to add to the audit chain.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// Time.
    pub at: OffsetDateTime,
    /// Acting user.
    pub actor_user_id: Option<UserId>,
    /// Acting device.
    pub actor_device_id: Option<DeviceId>,
    /// Action name (`login.success`).
    pub action: String,
    /// Target id.
    pub target: Option<String>,
    /// Details (ids, sizes, reasons; never content).
    pub details: serde_json::Value,
}

/// A signed checkpoint of the audit chain head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditCheckpoint {
    /// Seq of the record the checkpoint covers.
    pub seq: u64,
    /// That record's hash, hex.
    pub hash: String,
    /// Ed25519 signature by the server's audit key over `audit::checkpoint_message`.
    pub signature: Vec<u8>,
    /// Time.
    pub at: OffsetDateTime,
}

/// An organisation journal public key, as installed (`ward admin org set-journal-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalKey {
    /// Hex of the first 16 bytes of SHA-256(public key).
    pub key_id: String,
    /// The X-Wing public key.
    pub public_key: Vec<u8>,
    /// When it was installed; the newest key is the current one.
    pub created_at: OffsetDateTime,
}

/// One journal copy in the archive. The archive is apart from the envelope log: deleting
/// messages never deletes it; it has its own retention (`retain_until`, not yet enforced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the archive (ascending in insertion order), for paging.
    pub archive_seq: u64,
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its seq.
    pub seq: u64,
    /// Sending user (as the server authenticated it).
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// When the server accepted the message.
    pub sent_at: OffsetDateTime,
    /// The copy.
    pub copy: ward_proto::JournalCopy,
}

/// Which archive entries to read; every filter is optional, results ascend by
/// [`JournalEntry::archive_seq`].
#[derive(Clone, Debug, Default)]
pub struct JournalQuery {
    /// Entries with `archive_seq` greater than this.
    pub after: u64,
    /// At most this many (callers bound it).
    pub limit: usize,
    /// Only this conversation.
    pub conversation_id: Option<ConversationId>,
    /// Only messages sent by this user.
    pub sender_user_id: Option<UserId>,
    /// Only messages accepted at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only messages accepted before this time.
    pub until: Option<OffsetDateTime>,
}

/// Retention rules for one conversation kind or the organisation default; each `None` means
/// "no rule here" (for a kind: fall back to the default). Seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionRules {
    /// Messages are deleted this long after acceptance (server and devices).
    pub message_lifespan_secs: Option<u64>,
    /// Nothing is deleted before this long after acceptance (ADR 0013 precedence).
    pub statutory_retention_secs: Option<u64>,
}

/// The retention policy (ADR 0013), part of [`OrgPolicy`] so it needs no table. Per-kind
/// rules are keyed by the kind's wire name, so a new `ConversationKind` variant needs no
/// change here: without its own entry it follows the default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionPolicy {
    /// Organisation default.
    pub default: RetentionRules,
    /// Overrides per conversation kind (`direct`, `group`, …), field by field.
    pub per_kind: std::collections::BTreeMap<String, RetentionRules>,
    /// Journal archive entries are purged this long after acceptance (their own
    /// `retain_until`, when set, wins).
    pub journal_retention_secs: Option<u64>,
    /// Seconds between two automatic purge runs (60 s to 1 day; default 1 hour).
    pub purge_interval_secs: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            default: RetentionRules::default(),
            per_kind: std::collections::BTreeMap::new(),
            journal_retention_secs: None,
            purge_interval_secs: 3600,
        }
    }
}

impl RetentionPolicy {
    /// The effective rules for a kind: its own fields, else the default's.
    pub fn rules_for(&self, kind: ConversationKind) -> RetentionRules {
        let name = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let own = self.per_kind.get(&name).cloned().unwrap_or_default();
        RetentionRules {
            message_lifespan_secs: own
                .message_lifespan_secs
                .or(self.default.message_lifespan_secs),
            statutory_retention_secs: own
                .statutory_retention_secs
                .or(self.default.statutory_retention_secs),
        }
    }
}

/// A legal hold on a user or a conversation. Released holds are kept (the record of the hold
/// is itself evidence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegalHold {
    /// Id.
    pub id: uuid::Uuid,
    /// What it holds.
    pub target: ward_proto::HoldTarget,
    /// Why (no patient data).
    pub reason: String,
    /// Case or matter reference.
    pub case_ref: Option<String>,
    /// Who placed it (`None`: the local CLI).
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: OffsetDateTime,
    /// Who released it.
    pub released_by: Option<UserId>,
    /// When it was released; `None` while in force.
    pub released_at: Option<OffsetDateTime>,
}

/// The metadata of one application envelope, for retention decisions (never the payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeMeta {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Its kind.
    pub kind: ConversationKind,
    /// Seq.
    pub seq: u64,
    /// Message id.
    pub message_id: MessageId,
    /// Sender.
    pub sender_user_id: UserId,
    /// Acceptance time.
    pub sent_at: OffsetDateTime,
}

/// Which application envelopes to list, ascending by (`sent_at`, `message_id`).
#[derive(Clone, Debug)]
pub struct EnvelopeMetaQuery {
    /// Only envelopes accepted before this time.
    pub sent_before: Option<OffsetDateTime>,
    /// Only envelopes sent by this user.
    pub sender_user_id: Option<UserId>,
    /// Keyset paging: only envelopes after this (`sent_at`, `message_id`).
    pub after: Option<(OffsetDateTime, MessageId)>,
    /// At most this many.
    pub limit: usize,
}

/// The metadata of one journal archive entry, for retention decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveMeta {
    /// Position in the archive.
    pub archive_seq: u64,
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Sender.
    pub sender_user_id: UserId,
    /// Acceptance time.
    pub sent_at: OffsetDateTime,
    /// The entry's own retention, when set.
    pub retain_until: Option<OffsetDateTime>,
}

/// Which archive entries to list, ascending by `archive_seq`.
#[derive(Clone, Debug)]
pub struct ArchiveMetaQuery {
    /// Only entries due at this time: `retain_until <= now`, or (without `retain_until`)
    /// accepted before `due.1` when given. `None`: every entry.
    pub due: Option<(OffsetDateTime, Option<OffsetDateTime>)>,
    /// Only entries of messages sent by this user.
    pub sender_user_id: Option<UserId>,
    /// Entries with `archive_seq` greater than this.
    pub after: u64,
    /// At most this many.
    pub limit: usize,
}

/// A deletion order for devices, stored with the deletion of its envelopes and served,
/// signed, to the devices routed in the conversation until each acknowledges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeletionOrder {
    /// Id.
    pub id: uuid::Uuid,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The deleted messages.
    pub message_ids: Vec<MessageId>,
    /// Highest seq among them (devices routed only after it get no order).
    pub max_seq: u64,
    /// When.
    pub issued_at: OffsetDateTime,
}

/// An erasure request and its report (JSON of `ward_proto::ErasureReport`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// Data subject.
    pub user_id: UserId,
    /// Who asked (`None`: the local CLI).
    pub requested_by: Option<UserId>,
    /// When.
    pub requested_at: OffsetDateTime,
    /// `completed`, `partial` or `refused`.
    pub status: String,
    /// The report, JSON (ids and counts only).
    pub report: String,
}

/// A break-glass grant (ADR 0016): time-limited membership of a conversation for a user who
/// was not in it. Members' clients add her to the MLS group; the server ends the grant and
/// her server-side membership when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlassRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// The conversation opened.
    pub conversation_id: ConversationId,
    /// The grantee.
    pub user_id: UserId,
    /// Her reason, in clear (the client refuses PHI in it; the audit log holds it too).
    pub reason: String,
    /// Grant time.
    pub granted_at: OffsetDateTime,
    /// End of access.
    pub expires_at: OffsetDateTime,
    /// When a member's commit adding her was accepted (the first one).
    pub added_at: Option<OffsetDateTime>,
    /// When the server ended the grant.
    pub ended_at: Option<OffsetDateTime>,
}

/// What ending a break-glass grant did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlassEnd {
    /// The grant after the call (`ended_at` set).
    pub grant: BreakGlassRecord,
    /// True when this call set `ended_at` (false: it had ended before).
    pub ended_now: bool,
    /// The grantee's devices whose routing in the conversation this call closed.
    pub devices: Vec<DeviceId>,
}
