//! The storage traits, one per aggregate, and [`Store`] which combines them.

use async_trait::async_trait;
use time::OffsetDateTime;
use ward_proto::{
    AuditRecord, CommitLogEntry, ConversationCursor, ConversationId, DeviceId, DeviceReceipt,
    Envelope, MessageId, UserId, UserStatus, Username,
};

use crate::{
    AppendError, AppendListener, AppendOutcome, AppendRequest, AuditCheckpoint, AuditEvent,
    BreakGlassEnd, BreakGlassRecord, Conversation, Device, Enrollment, EnrollmentCode,
    JournalEntry, JournalKey, JournalQuery, Member, MemberDevice, NewConversation, OrgPolicy,
    Organisation, ReceiptKind, Session, StoreResult, SyncBatch, User, WipeOrder,
};
use crate::{
    ArchiveMeta, ArchiveMetaQuery, EnvelopeMeta, EnvelopeMetaQuery, ErasureRecord, LegalHold,
    StoredDeletionOrder,
};

/// The organisation and the server's encrypted secrets.
#[async_trait]
pub trait OrgStore {
    /// The organisation, if initialised.
    async fn organisation(&self) -> StoreResult<Option<Organisation>>;
    /// Create the organisation unless one exists; returns the one that is stored either way.
    async fn init_organisation(&self, org: &Organisation) -> StoreResult<Organisation>;
    /// Replace the policy.
    async fn set_policy(&self, policy: &OrgPolicy) -> StoreResult<()>;
    /// A secret blob (already encrypted by the caller).
    async fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Store `value` under `name` unless a value exists; returns the stored value, so
    /// concurrent first starts of several nodes agree on one secret.
    async fn put_secret_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
}

/// User accounts and enrollment.
#[async_trait]
pub trait UserStore {
    /// Create a pending user with an enrollment code. `Conflict("user")` if the name is taken.
    async fn create_user(&self, user: &User, code: &EnrollmentCode) -> StoreResult<()>;
    /// By id.
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// By username.
    async fn user_by_name(&self, username: &Username) -> StoreResult<Option<User>>;
    /// All users ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// The pending enrollment code of a user.
    async fn enrollment_code(&self, user: UserId) -> StoreResult<Option<EnrollmentCode>>;
    /// Replace the enrollment code (re-issue).
    async fn set_enrollment_code(&self, user: UserId, code: &EnrollmentCode) -> StoreResult<()>;
    /// Atomically: consume the code (must match and be unexpired, else `AlreadyConsumed`),
    /// set password and TOTP seed, activate the user, register the device, open the session.
    async fn complete_enrollment(&self, e: &Enrollment) -> StoreResult<()>;
    /// Set the status; suspending also deletes every session of the user in the same
    /// transaction. Returns the number of sessions deleted.
    async fn set_user_status(&self, user: UserId, status: UserStatus) -> StoreResult<u64>;
    /// Count a failed login; locks the account until `lock_until` when the count reaches
    /// `max_failures`. Returns the new count.
    async fn record_login_failure(
        &self,
        user: UserId,
        max_failures: u32,
        lock_until: OffsetDateTime,
    ) -> StoreResult<u32>;
    /// Reset the failure count and lock after a successful login.
    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()>;
    /// Record use of a TOTP time step. Returns false, changing nothing, when this step or a
    /// later one was already used: a one-time code must not be accepted twice
    /// (RFC 6238 §5.2).
    async fn use_totp_step(&self, user: UserId, step: u64) -> StoreResult<bool>;
    /// Replace the password hash, reset the failure count, and end every session of the user
    /// except `keep` (the session that made the change), atomically. Returns the number of
    /// sessions ended. `NotFound("user")` for an unknown user.
    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: &[u8; 32],
    ) -> StoreResult<u64>;
}

/// Devices.
#[async_trait]
pub trait DeviceStore {
    /// Register a device, optionally opening a session for it in the same transaction.
    async fn create_device(&self, device: &Device, session: Option<&Session>) -> StoreResult<()>;
    /// By id.
    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>>;
    /// A user's devices, oldest first.
    async fn devices_of_user(&self, user: UserId) -> StoreResult<Vec<Device>>;
    /// All devices, oldest first.
    async fn list_devices(&self) -> StoreResult<Vec<Device>>;
    /// Revoke atomically: mark revoked, delete its sessions and KeyPackages, and stop routing
    /// to it in every conversation. Returns false if it was not active.
    async fn revoke_device(&self, id: DeviceId, now: OffsetDateTime) -> StoreResult<bool>;
    /// Ids of revoked devices.
    async fn revoked_devices(&self) -> StoreResult<Vec<DeviceId>>;
    /// Order a wipe, atomically: keep the hashes of the device's open sessions with the
    /// order (so its old token still identifies it), revoke it as [`Self::revoke_device`]
    /// does if it is still active, and store `order` (its `delivered_at`/`confirmed_at` are
    /// ignored). Returns true if this call revoked the device, false if it was revoked
    /// before. `NotFound("device")` for an unknown device, `Conflict("wipe order")` if the
    /// device already has one.
    async fn order_wipe(&self, order: &WipeOrder) -> StoreResult<bool>;
    /// The wipe order of a device.
    async fn wipe_order(&self, device: DeviceId) -> StoreResult<Option<WipeOrder>>;
    /// The wipe order of the device that held the session with this token hash when the
    /// wipe was ordered.
    async fn wipe_order_by_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<WipeOrder>>;
    /// Record that the instruction was handed out; only the first time is kept.
    async fn mark_wipe_delivered(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<()>;
    /// Record the device's confirmation. Returns false, changing nothing, if there is no
    /// order or it was already confirmed.
    async fn mark_wipe_confirmed(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<bool>;
}

/// Login sessions.
#[async_trait]
pub trait SessionStore {
    /// Open a session.
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// By token hash.
    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Session>>;
    /// Record use of the session and of its device.
    async fn touch_session(&self, token_hash: &[u8; 32], now: OffsetDateTime) -> StoreResult<()>;
    /// End one session. Returns false if there was none.
    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool>;
    /// Delete sessions idle since before `idle_before` or expired before `now`.
    async fn purge_sessions(
        &self,
        idle_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;
}

/// The KeyPackage directory.
#[async_trait]
pub trait KeyPackageStore {
    /// Add one-time packages and optionally replace the last-resort one.
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Atomically take one one-time package (deleted), or else return the last-resort one
    /// (kept). The bool is true for last resort.
    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<(Vec<u8>, bool)>>;
    /// One-time packages left and whether a last-resort one exists.
    async fn key_package_stock(&self, device: DeviceId) -> StoreResult<(u64, bool)>;
}

/// Conversations and the delivery queues.
#[async_trait]
pub trait ConversationStore {
    /// Create a conversation with its creator as the only member.
    /// `Conflict("direct conversation")` when a direct conversation with the same
    /// `direct_key` exists.
    async fn create_conversation(&self, c: &NewConversation) -> StoreResult<()>;
    /// By id.
    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>>;
    /// The direct conversation with this key, if any.
    async fn direct_conversation(&self, direct_key: &str) -> StoreResult<Option<Conversation>>;
    /// Conversations where the device is routed to now.
    async fn conversations_of_device(&self, device: DeviceId) -> StoreResult<Vec<Conversation>>;
    /// Current member users.
    async fn members(&self, id: ConversationId) -> StoreResult<Vec<Member>>;
    /// Devices routed to now.
    async fn member_devices(&self, id: ConversationId) -> StoreResult<Vec<MemberDevice>>;
    /// Append an envelope atomically: idempotency, membership, epoch check, seq assignment,
    /// for commits the epoch bump, commit log, membership changes and Welcomes, and the
    /// journal copy into the archive. Nothing is written unless everything is. Envelopes
    /// read back (sync, `envelope`) carry their journal copy.
    async fn append(&self, req: &AppendRequest) -> Result<AppendOutcome, AppendError>;
    /// Register the listener told of every accepted append of this store instance, in commit
    /// order (see [`AppendListener`]). One per instance: `false` if one is registered already
    /// (the caller must then publish by itself).
    fn set_append_listener(&self, listener: AppendListener) -> bool;
    /// Undelivered items for a device: inbox items first, then envelopes after the device's
    /// cursor (its own messages excluded), at most `limit` in all.
    async fn sync(&self, device: DeviceId, limit: usize) -> StoreResult<SyncBatch>;
    /// Advance delivered or read cursors (never backwards, never past the last seq) and
    /// record the receipt; for `Delivered` also drop inbox items up to `inbox_seq`.
    async fn record_receipts(
        &self,
        device: DeviceId,
        kind: ReceiptKind,
        cursors: &[ConversationCursor],
        inbox_seq: Option<u64>,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// One envelope.
    async fn envelope(&self, id: ConversationId, seq: u64) -> StoreResult<Option<Envelope>>;
    /// Receipts of one envelope per recipient device (sender's device excluded).
    async fn receipts(&self, id: ConversationId, seq: u64) -> StoreResult<Vec<DeviceReceipt>>;
    /// The accepted commits, by epoch.
    async fn commit_log(&self, id: ConversationId) -> StoreResult<Vec<CommitLogEntry>>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore {
    /// Append a record, chaining it to the head in the same transaction
    /// (see [`crate::audit::record_hash`]).
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<AuditRecord>;
    /// Records with seq > `after`, ascending, at most `limit`.
    async fn audit_records(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    /// Seq and hash of the newest record.
    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>>;
    /// Store a signed checkpoint.
    async fn add_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<()>;
    /// All checkpoints by seq.
    async fn checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>>;
}

/// The compliance journal: the organisation's journal keys and the archive of journal copies
/// (written by [`ConversationStore::append`] with their envelopes).
#[async_trait]
pub trait JournalStore {
    /// Install a journal key; it becomes the current one (the newest). `Conflict("journal
    /// key")` when a key with this id exists.
    async fn add_journal_key(&self, key: &JournalKey) -> StoreResult<()>;
    /// Every installed key, oldest first.
    async fn journal_keys(&self) -> StoreResult<Vec<JournalKey>>;
    /// Archive entries matching `query`, ascending by archive seq.
    async fn journal_entries(&self, query: &JournalQuery) -> StoreResult<Vec<JournalEntry>>;
}

/// Break-glass grants (ADR 0016).
#[async_trait]
pub trait BreakGlassStore {
    /// Store a new grant, atomically checking that the conversation exists
    /// (`NotFound("conversation")`), that the grantee is not a member of it now
    /// (`Conflict("conversation member")`) and has no open grant for it
    /// (`Conflict("break-glass grant")`).
    async fn create_break_glass(&self, grant: &BreakGlassRecord) -> StoreResult<()>;
    /// By id.
    async fn break_glass(&self, id: uuid::Uuid) -> StoreResult<Option<BreakGlassRecord>>;
    /// Grants, newest first, at most `limit`: of one conversation, or of all.
    async fn break_glass_grants(
        &self,
        conversation: Option<ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<BreakGlassRecord>>;
    /// Open grants whose `expires_at` is at or before `now`, oldest expiry first.
    async fn expired_break_glass(&self, now: OffsetDateTime) -> StoreResult<Vec<BreakGlassRecord>>;
    /// Record that a commit adding the grantee was accepted: sets `added_at` unless set.
    /// Returns false, changing nothing, when the grant has ended (the caller must then end
    /// the membership the commit created). `NotFound("break-glass grant")` if unknown.
    async fn mark_break_glass_added(&self, id: uuid::Uuid, at: OffsetDateTime)
    -> StoreResult<bool>;
    /// End a grant in one transaction: set `ended_at` (unless set), remove the grantee from
    /// the conversation's members and close her devices' routing at the conversation's
    /// current last seq (she keeps what was sent before). Safe to repeat: a later call
    /// removes a membership a late commit re-created. `NotFound("break-glass grant")`.
    async fn end_break_glass(
        &self,
        id: uuid::Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<BreakGlassEnd>;
}

/// Everything the server needs from storage.
#[async_trait]
pub trait Store:
    OrgStore
    + UserStore
    + DeviceStore
    + SessionStore
    + KeyPackageStore
    + ConversationStore
    + AuditStore
    + JournalStore
    + RetentionStore
    + BreakGlassStore
    + crate::WorkflowStore
    + crate::EscalationStore
    + crate::BlobStore
    + crate::ClinicalContextStore
    + Send
    + Sync
    + 'static
{
    /// Short backend name for logs and metrics (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Check the database answers.
    async fn ping(&self) -> StoreResult<()>;
}

/// Retention (ADR 0013): legal holds, the expiry scan and deletion of envelopes and journal
/// archive entries, deletion orders to devices, erasure requests. Deciding what to delete is
/// the server's (`ward_server::service::retention`); the store only lists and deletes.
#[async_trait]
pub trait RetentionStore {
    /// Store a hold.
    async fn add_hold(&self, hold: &LegalHold) -> StoreResult<()>;
    /// Every hold, released ones included, oldest first.
    async fn holds(&self) -> StoreResult<Vec<LegalHold>>;
    /// Release a hold. `NotFound("hold")` if there is none; `Ok(false)` if already released.
    async fn release_hold(
        &self,
        id: uuid::Uuid,
        by: Option<UserId>,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Conversations the user is a member of now.
    async fn conversations_of_user(&self, user: UserId) -> StoreResult<Vec<ConversationId>>;
    /// Application envelopes (never commits or proposals) matching `q`.
    async fn envelope_metas(&self, q: &EnvelopeMetaQuery) -> StoreResult<Vec<EnvelopeMeta>>;
    /// Delete these application envelopes of one conversation and, in the same transaction,
    /// store the deletion order for its devices (only if something was deleted). Returns how
    /// many envelopes were deleted.
    async fn delete_envelopes(
        &self,
        conversation: ConversationId,
        message_ids: &[MessageId],
        order: Option<&StoredDeletionOrder>,
    ) -> StoreResult<u64>;
    /// Journal archive entries matching `q`.
    async fn archive_metas(&self, q: &ArchiveMetaQuery) -> StoreResult<Vec<ArchiveMeta>>;
    /// Delete archive entries; returns how many.
    async fn delete_archive_entries(&self, archive_seqs: &[u64]) -> StoreResult<u64>;
    /// Deletion orders for conversations the device is (or was) routed in, covering seqs
    /// it could have received, that it has not acknowledged; oldest first, at most `limit`.
    async fn pending_deletion_orders(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> StoreResult<Vec<StoredDeletionOrder>>;
    /// Record the device's acknowledgement. `NotFound("deletion order")` for an unknown
    /// order; `Ok(false)` if it was acknowledged before.
    async fn ack_deletion_order(
        &self,
        order: uuid::Uuid,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Store an erasure request with its report.
    async fn add_erasure(&self, e: &ErasureRecord) -> StoreResult<()>;
    /// Every erasure request, oldest first.
    async fn erasures(&self) -> StoreResult<Vec<ErasureRecord>>;
}
