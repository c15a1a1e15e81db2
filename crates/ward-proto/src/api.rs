//! Request and response bodies of the HTTP API.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Bytes, ConversationId, DeviceId, MessageId, Role, UserId, Username};

/// `GET /v1/health`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` when the server and its database answer.
    pub status: String,
    /// Server version.
    pub version: String,
}

/// `GET /v1/server`: what a client needs to trust the organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    /// Organisation name.
    pub organisation: String,
    /// Ed25519 public key of the organisation CA that signs device credentials.
    pub org_ca_public_key: Bytes,
    /// The server's MLS external-sender signature public key (Ed25519), for the group's
    /// `external_senders` extension so the server can propose removals of revoked devices.
    pub external_sender_public_key: Bytes,
    /// Identity the server uses in its MLS basic credential as external sender.
    pub external_sender_identity: String,
    /// MLS ciphersuites the organisation allows, default first (IANA code points).
    pub ciphersuites: Vec<u16>,
    /// Whether a second factor is required at login.
    pub mfa_required: bool,
    /// Minimum length of a new password in force (policy, raised to 15 without MFA), so a
    /// client can check before sending.
    #[serde(default)]
    pub password_min_length: u32,
}

/// A device as the device itself describes it at registration.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewDevice {
    /// Human label ("iPhone", "ward-5 workstation"), 1 to 64 characters.
    pub name: String,
    /// The device's MLS signature public key (Ed25519, 32 bytes).
    pub signature_key: Bytes,
}

/// `POST /v1/enroll`: first use of an enrollment code.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollRequest {
    /// The account's username.
    pub username: Username,
    /// The one-time enrollment code an administrator handed out.
    pub enrollment_code: String,
    /// The password to set (NIST SP 800-63B-4: at least the policy's minimum length, at most
    /// 256 characters, not a common password, not containing the username).
    pub password: String,
    /// The first device.
    pub device: NewDevice,
}

/// Answer to enrollment.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollResponse {
    /// The account.
    pub user_id: UserId,
    /// The registered device and its credential.
    pub device: DeviceCredential,
    /// Session bound to that device.
    pub session: SessionInfo,
    /// Base32 TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s) for the authenticator app.
    pub totp_secret: String,
    /// `otpauth://` URI of the same secret, for a QR code.
    pub otpauth_uri: String,
}

/// `POST /v1/login`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account's username.
    pub username: Username,
    /// Password.
    pub password: String,
    /// Current TOTP code; required when the organisation requires MFA.
    #[serde(default)]
    pub totp: Option<String>,
    /// Log in on an already registered device of this account.
    #[serde(default)]
    pub device_id: Option<DeviceId>,
    /// Or register a new device with this login.
    #[serde(default)]
    pub new_device: Option<NewDevice>,
}

/// `POST /v1/me/password`: change the caller's password. Ends every other session of the
/// account; the calling session stays.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// The password in use now (re-authentication).
    pub current_password: String,
    /// The new password (same rules as at enrollment, and different from the current one).
    pub new_password: String,
}

impl std::fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangePasswordRequest { .. }")
    }
}

/// Answer to a password change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangePasswordResponse {
    /// How many other sessions of the account were ended.
    pub sessions_ended: u64,
}

/// A session token and its limits.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Opaque bearer token for `Authorization: Bearer …`. Shown once; the server stores a hash.
    pub token: String,
    /// The device the token is bound to.
    pub device_id: DeviceId,
    /// The session ends at this time whatever the activity (absolute timeout).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this many seconds without a request (idle timeout).
    pub idle_timeout_secs: u64,
}

/// Answer to login.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The account.
    pub user_id: UserId,
    /// The account's role.
    pub role: Role,
    /// The device (new or existing) and its credential.
    pub device: DeviceCredential,
    /// The session.
    pub session: SessionInfo,
}

/// A device credential: the organisation CA's signature binding user, device and key.
///
/// The signed bytes are [`DeviceCredential::signed_bytes`]; clients verify the signature with
/// [`ServerInfo::org_ca_public_key`] before accepting the device into a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceCredential {
    /// The device.
    pub device_id: DeviceId,
    /// Its owner.
    pub user_id: UserId,
    /// The owner's username at issue time.
    pub username: Username,
    /// The device's MLS signature public key.
    pub signature_key: Bytes,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Ed25519 signature of the organisation CA over `signed_bytes()`.
    pub signature: Bytes,
}

impl DeviceCredential {
    /// Domain separation label of the credential signature.
    pub const LABEL: &'static [u8] = b"ward device credential v1";

    /// The exact bytes the organisation CA signs: a length-prefixed encoding, so no two
    /// different credentials share a signed form.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let mut field = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        field(Self::LABEL);
        field(self.device_id.0.as_bytes());
        field(self.user_id.0.as_bytes());
        field(self.username.as_str().as_bytes());
        field(self.signature_key.as_slice());
        field(&self.issued_at.to_be_bytes());
        out
    }
}

/// Lifecycle state of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// In use.
    Active,
    /// Revoked: its sessions are gone and it may not log in or send.
    Revoked,
}

/// One device in a listing.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    /// Device.
    pub device_id: DeviceId,
    /// Owner.
    pub user_id: UserId,
    /// Label given at registration.
    pub name: String,
    /// State.
    pub status: DeviceStatus,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last authenticated request, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// The credential (absent for revoked devices).
    pub credential: Option<DeviceCredential>,
}

/// Lifecycle state of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Created; waiting for the enrollment code to be used.
    Pending,
    /// Enrolled.
    Active,
    /// Suspended by an administrator: every session revoked, login refused.
    Suspended,
}

/// An account as administrators see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// Immutable id.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// State.
    pub status: UserStatus,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /v1/users/{username}`: the directory entry other members need to add a user.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DirectoryEntry {
    /// Immutable id.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Credentials of the user's active devices.
    pub devices: Vec<DeviceCredential>,
    /// The user's do-not-disturb, when on: messages to them also go to the covering colleague.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_disturb: Option<crate::DndInfo>,
}

/// `GET /v1/me`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MeResponse {
    /// The account.
    pub user: UserInfo,
    /// The device of this session.
    pub device_id: DeviceId,
}

/// `POST /v1/admin/users`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    /// Username.
    pub username: Username,
    /// Role.
    pub role: Role,
    /// Display name (defaults to the username), at most 128 characters.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A freshly issued enrollment code.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentCodeResponse {
    /// The account.
    pub user: UserInfo,
    /// One-time code, shown once.
    pub enrollment_code: String,
    /// Expiry of the code.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/devices/me/key-packages`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadKeyPackagesRequest {
    /// One-time MLS KeyPackages (TLS-serialised `MlsMessage`s).
    #[serde(default)]
    pub key_packages: Vec<Bytes>,
    /// Replaces the device's last-resort KeyPackage, handed out when one-time ones run out.
    #[serde(default)]
    pub last_resort: Option<Bytes>,
}

/// Stock of a device's KeyPackages.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPackageStock {
    /// One-time KeyPackages left.
    pub remaining: u64,
    /// Whether a last-resort KeyPackage is stored.
    pub has_last_resort: bool,
    /// True when the device should upload more.
    pub low: bool,
}

/// One claimed KeyPackage.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimedKeyPackage {
    /// The device it belongs to.
    pub device_id: DeviceId,
    /// That device's credential.
    pub credential: DeviceCredential,
    /// The KeyPackage.
    pub key_package: Bytes,
    /// True when it was the last-resort package (reused, not consumed).
    pub last_resort: bool,
}

/// Body of `POST /v1/users/{username}/key-packages/claim`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimKeyPackagesRequest {
    /// Only these devices of the user (default: every active device).
    #[serde(default)]
    pub devices: Vec<DeviceId>,
}

/// `POST /v1/users/{username}/key-packages/claim`: one KeyPackage per active device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimKeyPackagesResponse {
    /// The user.
    pub user_id: UserId,
    /// One per active device that had a package.
    pub key_packages: Vec<ClaimedKeyPackage>,
    /// Active devices that had none (they cannot be added now).
    pub devices_without_key_package: Vec<DeviceId>,
}

/// Kind of conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two users; at most one per pair.
    Direct,
    /// Any number of users.
    Group,
}

/// `POST /v1/conversations`: registers a conversation whose MLS group the creator made.
///
/// The creator's device is the only MLS member at epoch 0; it adds the others with its first
/// commit (with `add_users`) and Welcome.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateConversationRequest {
    /// Direct or group.
    pub kind: ConversationKind,
    /// MLS ciphersuite code point; must be allowed by the organisation.
    pub ciphersuite: u16,
    /// For direct conversations, the other user.
    #[serde(default)]
    pub peer: Option<Username>,
}

/// A conversation as a member sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationInfo {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// MLS ciphersuite.
    pub ciphersuite: u16,
    /// Current MLS epoch as the delivery service has ordered it.
    pub epoch: u64,
    /// Highest sequence number assigned so far.
    pub last_seq: u64,
    /// Current member users.
    pub members: Vec<MemberInfo>,
    /// Devices currently in the MLS group, as the server routes to them.
    pub devices: Vec<DeviceId>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One member user.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberInfo {
    /// User.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
}

/// Kind of MLS message in an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeKind {
    /// An MLS application message (PrivateMessage).
    Application,
    /// An MLS proposal.
    Proposal,
    /// An MLS commit; at most one is accepted per epoch.
    Commit,
}

/// A Welcome for devices added by a commit.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WelcomeDelivery {
    /// The MLS Welcome message.
    pub payload: Bytes,
    /// The devices the Welcome is for (every device the commit adds).
    pub devices: Vec<DeviceId>,
}

/// `POST /v1/conversations/{id}/envelopes`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SendEnvelopeRequest {
    /// Client-chosen id; a retry with the same id returns the first answer (idempotency).
    pub client_message_id: uuid::Uuid,
    /// Kind of MLS message.
    pub kind: EnvelopeKind,
    /// The MLS epoch the message belongs to; must be the conversation's current epoch.
    pub epoch: u64,
    /// The MLS message.
    pub payload: Bytes,
    /// With a commit that adds devices: their Welcome.
    #[serde(default)]
    pub welcome: Option<WelcomeDelivery>,
    /// With a commit: users that join the conversation.
    #[serde(default)]
    pub add_users: Vec<UserId>,
    /// With a commit: users that leave the conversation.
    #[serde(default)]
    pub remove_users: Vec<UserId>,
    /// With a commit: devices the commit removes from the MLS group.
    #[serde(default)]
    pub remove_devices: Vec<DeviceId>,
    /// PHI labels the sender's DLP check attached (detector names such as `us_ssn`); recorded
    /// in the audit log. At most 16, each `[a-z0-9_]{1,32}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// With an application message: its compliance journal copy. Required for application
    /// messages while the organisation has a journal key, sealed to the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<crate::JournalCopy>,
    /// With a commit that fulfils a break-glass grant (ADR 0016): the grant. The grantee
    /// must be in `add_users`, and the grant must still be active when the commit arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_grant: Option<uuid::Uuid>,
    /// With an application message: the attachment blobs it references (complete blobs of
    /// this conversation, at most [`crate::MAX_BLOBS_PER_MESSAGE`]). The server ties each
    /// blob's retention to the messages that reference it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<uuid::Uuid>,
    /// With an application message: it is addressed to a clinical role (ADR 0018). The server
    /// notifies the role's holders and, for urgent and STAT, escalates until acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_role: Option<crate::RoleAddress>,
}

/// Answer to a send: the message is durable when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SendEnvelopeResponse {
    /// Server id of the message.
    pub message_id: MessageId,
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// The conversation's epoch after this message.
    pub epoch: u64,
    /// True when this answers a retry of an already accepted message.
    pub duplicate: bool,
    /// For a message sent to a role: whom the server notified, and whether anybody held the
    /// role (the sender is told at once when nobody did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_role: Option<crate::RoleSendOutcome>,
}

/// One message as delivered to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Envelope {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Sequence number in the conversation (gap-free per conversation).
    pub seq: u64,
    /// Server id.
    pub message_id: MessageId,
    /// Kind.
    pub kind: EnvelopeKind,
    /// Epoch it was sent in.
    pub epoch: u64,
    /// Sending user.
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// Client's idempotency id.
    pub client_message_id: uuid::Uuid,
    /// When the server accepted it.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The MLS message.
    pub payload: Bytes,
    /// The journal copy the sender attached (application messages while a journal key is
    /// installed); the recipient recomputes it from the message and refuses a mismatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<crate::JournalCopy>,
}

/// Kind of a device-addressed inbox item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// An MLS Welcome into a conversation.
    Welcome,
    /// The device was removed from a conversation.
    Removed,
    /// An alert about a message sent to a clinical role (ADR 0018): `commit_seq` is the
    /// message's seq and `payload` a [`crate::MessageAlert`] as JSON.
    Alert,
}

/// A message addressed to one device rather than a whole conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// Per-device sequence number.
    pub inbox_seq: u64,
    /// Kind.
    pub kind: InboxKind,
    /// Conversation concerned.
    pub conversation_id: ConversationId,
    /// For a Welcome: the seq of the commit that added the device. The device reads the
    /// conversation's envelopes after this seq.
    pub commit_seq: u64,
    /// The MLS Welcome (empty for `removed`).
    pub payload: Bytes,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /v1/sync`: everything not yet acknowledged by this device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncResponse {
    /// Device-addressed items, in `inbox_seq` order. Process these first.
    pub inbox: Vec<InboxItem>,
    /// Conversation messages, in `seq` order within each conversation.
    pub envelopes: Vec<Envelope>,
    /// True when the limit cut the answer short: sync again after acknowledging.
    pub more: bool,
    /// The device's KeyPackage stock (upload more when `low`).
    pub key_packages: KeyPackageStock,
}

/// A per-conversation cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationCursor {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Everything up to and including this seq.
    pub seq: u64,
}

/// `POST /v1/sync/ack`: the device has durably received everything up to these points.
/// Doubles as the delivery receipt.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct AckRequest {
    /// Conversation cursors.
    #[serde(default)]
    pub conversations: Vec<ConversationCursor>,
    /// Inbox items up to and including this seq.
    #[serde(default)]
    pub inbox_seq: Option<u64>,
}

/// `POST /v1/receipts/read`: the user has read up to these points on this device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadReceiptRequest {
    /// Conversation cursors.
    pub conversations: Vec<ConversationCursor>,
}

/// Receipt state of one message for one recipient device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceReceipt {
    /// Recipient user.
    pub user_id: UserId,
    /// Recipient device.
    pub device_id: DeviceId,
    /// When the device acknowledged receipt.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// When the device reported it read.
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
}

/// `GET /v1/conversations/{id}/messages/{seq}/status`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageStatus {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Message.
    pub seq: u64,
    /// Server id.
    pub message_id: MessageId,
    /// One entry per recipient device (the sending device excluded).
    pub recipients: Vec<DeviceReceipt>,
}

/// One accepted commit in the append-only commit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitLogEntry {
    /// The epoch the commit was made in (the group moves to `epoch + 1`).
    pub epoch: u64,
    /// Its seq.
    pub seq: u64,
    /// SHA-256 of the commit's MLS message, hex.
    pub commit_hash: String,
}

/// One audit record, as exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Time of the event.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Acting user, if any.
    pub actor_user_id: Option<UserId>,
    /// Acting device, if any.
    pub actor_device_id: Option<DeviceId>,
    /// What happened (`login.success`, `message.send`, …).
    pub action: String,
    /// What it happened to (an id; never content).
    pub target: Option<String>,
    /// Structured details (ids, sizes, reasons; never content).
    pub details: serde_json::Value,
    /// Hash of the previous record, hex (`00…` for the first).
    pub prev_hash: String,
    /// SHA-256 over this record's canonical form and `prev_hash`, hex.
    pub hash: String,
}

/// `GET /v1/admin/audit`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Records in chain order.
    pub records: Vec<AuditRecord>,
    /// Pass as `after` to get the next page, when there is one.
    pub next_after: Option<u64>,
}

/// Outcome of verifying the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerifyReport {
    /// True when every record and checkpoint checks out.
    pub ok: bool,
    /// Records examined.
    pub records: u64,
    /// Signed checkpoints examined.
    pub checkpoints: u64,
    /// The first bad record's seq, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

/// The organisation's session and security policy (`GET /v1/admin/policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyInfo {
    /// A TOTP second factor is required at login.
    pub mfa_required: bool,
    /// Seconds without a request before a session ends (automatic logoff).
    pub idle_timeout_secs: u64,
    /// Seconds after login before a session ends regardless of activity.
    pub absolute_timeout_secs: u64,
    /// Lifetime of enrollment codes, seconds.
    pub enrollment_ttl_secs: u64,
    /// Failed logins before the account locks.
    pub max_failed_logins: u32,
    /// How long a lock lasts, seconds.
    pub lockout_secs: u64,
    /// Allowed MLS ciphersuites, default first.
    pub ciphersuites: Vec<u16>,
    /// Minimum password length when MFA is required (without MFA, at least 15 applies).
    pub password_min_length: u32,
    /// Server-to-device events carry ids only: no names, labels or content.
    pub notification_privacy: bool,
    /// Roles that may open break-glass access (ADR 0016); default physician and nurse.
    #[serde(default)]
    pub break_glass_roles: Vec<Role>,
    /// Longest break-glass access in minutes (default 480).
    #[serde(default)]
    pub break_glass_max_minutes: u32,
    /// Largest attachment ciphertext one upload may announce, bytes (default 2 GiB).
    #[serde(default)]
    pub attachment_max_bytes: u64,
    /// Organisation quota: the sizes of all stored blobs and uploads together, bytes (default
    /// 100 GiB).
    #[serde(default)]
    pub attachment_quota_bytes: u64,
    /// Media types sending clients refuse to attach (default: executables and scripts).
    #[serde(default)]
    pub attachment_denied_media_types: Vec<String>,
    /// File extensions sending clients refuse to attach, lowercase without the dot.
    #[serde(default)]
    pub attachment_denied_extensions: Vec<String>,
}

/// `PUT /v1/admin/policy`: change some fields; absent fields keep their value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicyRequest {
    /// See [`PolicyInfo::mfa_required`].
    #[serde(default)]
    pub mfa_required: Option<bool>,
    /// 60 to 14,400 (1 minute to 4 hours).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// 900 to 604,800 (15 minutes to 7 days), at least the idle timeout.
    #[serde(default)]
    pub absolute_timeout_secs: Option<u64>,
    /// 3,600 to 2,592,000 (1 hour to 30 days).
    #[serde(default)]
    pub enrollment_ttl_secs: Option<u64>,
    /// 1 to 100.
    #[serde(default)]
    pub max_failed_logins: Option<u32>,
    /// 60 to 86,400.
    #[serde(default)]
    pub lockout_secs: Option<u64>,
    /// Non-empty, each 0x004D (77) or 0x0001 (1), default first.
    #[serde(default)]
    pub ciphersuites: Option<Vec<u16>>,
    /// 8 to 64 characters.
    #[serde(default)]
    pub password_min_length: Option<u32>,
    /// Must stay true while the server has no channel that could carry more than ids; the
    /// key exists so the choice is explicit and audited.
    #[serde(default)]
    pub notification_privacy: Option<bool>,
    /// See [`PolicyInfo::break_glass_roles`]: clinical roles only (physician, nurse,
    /// pharmacist); an empty list turns break-glass off.
    #[serde(default)]
    pub break_glass_roles: Option<Vec<Role>>,
    /// See [`PolicyInfo::break_glass_max_minutes`]: 5 to 1440.
    #[serde(default)]
    pub break_glass_max_minutes: Option<u32>,
    /// See [`PolicyInfo::attachment_max_bytes`]: 1 KiB to 1 TiB, at most the quota.
    #[serde(default)]
    pub attachment_max_bytes: Option<u64>,
    /// See [`PolicyInfo::attachment_quota_bytes`]: 1 MiB to 1 PiB.
    #[serde(default)]
    pub attachment_quota_bytes: Option<u64>,
    /// Replaces [`PolicyInfo::attachment_denied_media_types`] (at most 200; empty allows
    /// every type).
    #[serde(default)]
    pub attachment_denied_media_types: Option<Vec<String>>,
    /// Replaces [`PolicyInfo::attachment_denied_extensions`] (at most 200).
    #[serde(default)]
    pub attachment_denied_extensions: Option<Vec<String>>,
}

/// `GET /v1/dlp-policy`: the organisation's DLP document, signed by the organisation CA so a
/// client can check it came from the organisation unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedDlpPolicy {
    /// The document as JSON text (`{}` when none is set: allow everything).
    pub document: String,
    /// Ed25519 signature of the organisation CA over [`SignedDlpPolicy::signed_bytes`].
    pub signature: Bytes,
}

impl SignedDlpPolicy {
    /// Domain separation label of the signature.
    pub const LABEL: &'static [u8] = b"ward dlp policy v1";

    /// The bytes the organisation CA signs.
    pub fn signed_bytes(document: &str) -> Vec<u8> {
        let mut out = Self::LABEL.to_vec();
        out.extend_from_slice(document.as_bytes());
        out
    }
}

/// A page of user listings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    /// Users, by username.
    pub users: Vec<UserInfo>,
}

/// A page of device listings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    /// Devices.
    pub devices: Vec<DeviceInfo>,
}

/// Conversations the caller belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    /// Conversations.
    pub conversations: Vec<ConversationInfo>,
}

/// Revoked device ids: clients refuse these in any group.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevocationList {
    /// Revoked devices.
    pub revoked_devices: Vec<DeviceId>,
}

macro_rules! redacted_debug {
    ($t:ty, [$($shown:ident),*]) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($shown), &self.$shown))*
                    .finish_non_exhaustive()
            }
        }
    };
}

// Passwords, codes, tokens and TOTP secrets never reach a log through `Debug`.
redacted_debug!(EnrollRequest, [username, device]);
redacted_debug!(LoginRequest, [username, device_id, new_device]);
redacted_debug!(SessionInfo, [device_id, expires_at, idle_timeout_secs]);
redacted_debug!(EnrollResponse, [user_id, device]);
redacted_debug!(EnrollmentCodeResponse, [user, expires_at]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let req: LoginRequest = serde_json::from_value(serde_json::json!({
            "username": "alice", "password": "hunter2-hunter2", "totp": "123456"
        }))
        .unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("123456"), "{dbg}");
        let s = SessionInfo {
            token: "wt_secret".into(),
            device_id: DeviceId::random(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
            idle_timeout_secs: 1,
        };
        assert!(!format!("{s:?}").contains("wt_secret"));
    }
}
