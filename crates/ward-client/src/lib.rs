//! Ward client SDK: [`ward_core`] driven over HTTPS and WebSocket, with an encrypted profile.
//!
//! [`WardClient`] is one enrolled device. Every operation follows the same discipline so a
//! crash at any point loses nothing the server acknowledged and duplicates nothing:
//! - writes go through an outbox saved (encrypted) before they are sent, and are retried with
//!   the same client message id, which the server deduplicates;
//! - received envelopes are processed, the profile is saved, and only then acknowledged; a
//!   redelivered envelope at or below the conversation's processed seq is skipped;
//! - a commit that loses its epoch is discarded, the winner processed, and the commit rebuilt.
//!
//! What it does NOT do: render anything (the CLI does), or keep plaintext outside the
//! encrypted profile.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attachments;
mod breakglass;
mod clinical;
mod error;
mod journal;
mod profile;
mod retention;
mod role;
mod transfer;
mod transport;
mod wipe;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use time::OffsetDateTime;
use ward_core::{
    Body, Client as Core, CoreError, Identity, MessageContent, PendingCommit, Priority, Processed,
    TrustAnchor,
};
use ward_proto::{
    AckRequest, ChangePasswordRequest, ChangePasswordResponse, ClaimKeyPackagesRequest,
    ClaimKeyPackagesResponse, ClaimedKeyPackage, ConversationCursor, ConversationId,
    ConversationInfo, ConversationKind, CreateConversationRequest, DeviceId, DirectoryEntry,
    EnrollRequest, EnrollResponse, EnvelopeKind, ErrorCode, InboxKind, KeyPackageStock,
    LoginRequest, LoginResponse, MessageId, MessageStatus, NewDevice, ReadReceiptRequest,
    RevocationList, SendEnvelopeRequest, SendEnvelopeResponse, ServerEvent, ServerInfo,
    SyncResponse, UploadKeyPackagesRequest, UserId, Username, WelcomeDelivery,
};

pub use clinical::{BIND_FIELD, CoveredSend, PatientSearch, match_patient_tags};
pub use error::WardError;
pub use journal::{
    JOURNAL_PASSPHRASE_MIN, read_journal_key_file, seal_journal_key, write_journal_key_file,
};
pub use profile::{AttachmentInfo, ConversationState, PROFILE_FILE, StoredMessage, ThumbnailInfo};
use profile::{OutboxItem, Profile, ProfileData, StoredSession};
pub use role::{AckChoice, RoleSent};
pub use transfer::{
    Direction, MAX_PART_BYTES, Progress, ProgressFn, SavedAttachment, decrypt_stream_to_dir,
};
use transport::Api;
pub use transport::{ca_fingerprint, tls_config};

/// One-time KeyPackages kept in stock on the server.
const KEY_PACKAGE_BATCH: usize = 30;
/// Commits retried this often when other members win the epoch.
const COMMIT_ATTEMPTS: usize = 6;
/// Largest sync page.
const SYNC_PAGE: usize = 500;

/// Where a message goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// The direct conversation with this user (created on first use).
    User(Username),
    /// An existing conversation.
    Conversation(ConversationId),
}

/// A message the server accepted.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sent {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Server id.
    pub message_id: MessageId,
    /// Sequence number in the conversation.
    pub seq: u64,
    /// For a message sent to a role: whom the server notified, and whether anybody held the
    /// role (ADR 0018).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_role: Option<ward_proto::RoleSendOutcome>,
    /// The attachments it carries (without their keys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentInfo>,
}

/// What enrollment returns to show the user once. `Debug` omits the TOTP secret.
#[derive(Clone, serde::Serialize)]
pub struct Enrolled {
    /// The account.
    pub user_id: UserId,
    /// This device.
    pub device_id: DeviceId,
    /// Base32 TOTP secret for the authenticator app.
    pub totp_secret: String,
    /// The same as an `otpauth://` URI.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// Result of a sync.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Newly received messages, in order per conversation.
    pub messages: Vec<StoredMessage>,
    /// Problems (undecryptable or refused messages), also kept in the profile.
    pub warnings: Vec<String>,
    /// Messages refused because their compliance journal copy does not match what was read
    /// (not shown, reported to the server's audit log).
    pub journal_mismatches: Vec<ward_proto::JournalMismatchReport>,
    /// Messages deleted from the local history by the organisation's signed deletion orders
    /// (their lifespan ended or an erasure request covered them; ADR 0013).
    pub deleted_by_retention: usize,
    /// Break-glass access active now in this device's conversations (or its user's own):
    /// every member is shown who opened the conversation, why and until when (ADR 0016).
    pub break_glass: Vec<ward_proto::BreakGlassGrant>,
    /// Alerts about messages sent to a clinical role (ADR 0018): notifications,
    /// re-notifications, escalations, acknowledgements, "no response".
    pub alerts: Vec<ward_proto::MessageAlert>,
}

/// What [`WardClient::follow_events`] reports.
#[derive(Clone, Copy, Debug)]
pub enum FollowEvent<'a> {
    /// A new message.
    Message(&'a StoredMessage),
    /// An alert about a message sent to a role.
    Alert(&'a ward_proto::MessageAlert),
}

/// One conversation as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConversationSummary {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Group name, when known.
    pub name: Option<String>,
    /// Member usernames.
    pub members: Vec<Username>,
    /// Current epoch.
    pub epoch: u64,
    /// Highest seq.
    pub last_seq: u64,
    /// The patient the conversation is bound to (shown as a banner), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<ward_core::PatientContext>,
}

/// The organisation's DLP document (`GET /v1/dlp-policy`), parsed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DlpDocument {
    #[serde(default)]
    config: Option<ward_core::dlp::DlpConfigSpec>,
    #[serde(default)]
    policy: Option<ward_core::dlp::DlpPolicy>,
}

/// One enrolled device.
pub struct WardClient {
    profile: Profile,
    core: Core,
    api: Api,
    journal: journal::JournalKeys,
    /// Alerts received by syncs whose report is not returned (inside a send's conflict
    /// retry), handed out by the next [`WardClient::sync`].
    pending_alerts: Vec<ward_proto::MessageAlert>,
    /// Set by [`WardClient::set_attachment_policy`]; otherwise the organisation's policy is
    /// read from the server before each file is prepared.
    attachment_policy: Option<ward_core::attachment::AttachmentPolicy>,
    /// Time inside the MLS calls, collected only after [`WardClient::measure_crypto`].
    crypto_timings: Option<CryptoTimings>,
}

/// Time this client spent inside MLS (the sans-I/O core's calls only: no network, no profile
/// writes), collected after [`WardClient::measure_crypto`] for benchmarks.
#[derive(Clone, Debug, Default)]
pub struct CryptoTimings {
    /// One per application message encrypted.
    pub encrypt: Vec<std::time::Duration>,
    /// One per application message decrypted (with the sender's credential checks).
    pub decrypt: Vec<std::time::Duration>,
    /// Commits built: (devices added, time), for example when adding members.
    pub commits: Vec<(usize, std::time::Duration)>,
    /// Commits of others processed (merged) on receipt.
    pub commits_processed: Vec<std::time::Duration>,
}

/// The live event socket of [`WardClient::event_socket`].
pub type EventSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Enrollment inputs.
pub struct EnrollParams<'a> {
    /// Profile directory to create.
    pub profile_dir: &'a std::path::Path,
    /// Passphrase protecting the profile.
    pub passphrase: &'a str,
    /// Server URL.
    pub server_url: &'a str,
    /// PEM of the server's CA.
    pub ca_pem: &'a str,
    /// Username.
    pub username: Username,
    /// One-time enrollment code.
    pub enrollment_code: &'a str,
    /// Password to set.
    pub password: &'a str,
    /// Device label.
    pub device_name: &'a str,
}

impl WardClient {
    /// Enroll this device: create the signature key, use the enrollment code, verify the
    /// credential the organisation CA issued, upload KeyPackages, save the profile.
    ///
    /// The new password is checked against the organisation's rules (minimum length from
    /// `GET /v1/server`, common passwords, the username) before anything is sent; the server
    /// checks again.
    pub async fn enroll(p: EnrollParams<'_>) -> Result<(WardClient, Enrolled), WardError> {
        let (api, info, identity) = Self::prepare(&p).await?;
        // An older server sends no minimum (0): the server's own check still applies.
        ward_proto::check_password(
            p.password,
            p.username.as_str(),
            info.password_min_length
                .max(ward_proto::MIN_PASSWORD_CHARS_FLOOR),
        )
        .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let resp: EnrollResponse = api
            .post(
                "/v1/enroll",
                &EnrollRequest {
                    username: p.username.clone(),
                    enrollment_code: p.enrollment_code.to_owned(),
                    password: p.password.to_owned(),
                    device: NewDevice {
                        name: p.device_name.to_owned(),
                        signature_key: identity.signature_public_key().to_vec().into(),
                    },
                },
            )
            .await?;
        let enrolled = Enrolled {
            user_id: resp.user_id,
            device_id: resp.device.device_id,
            totp_secret: resp.totp_secret.clone(),
            otpauth_uri: resp.otpauth_uri.clone(),
        };
        let client = Self::finish_registration(
            p,
            api,
            &info,
            identity,
            resp.user_id,
            resp.device,
            resp.session,
        )
        .await?;
        Ok((client, enrolled))
    }

    /// Register an additional device of an enrolled user (password and TOTP), in a new
    /// profile. Members add it to shared conversations the next time they sync.
    pub async fn register_device(
        p: EnrollParams<'_>,
        totp: Option<String>,
    ) -> Result<WardClient, WardError> {
        let (api, info, identity) = Self::prepare(&p).await?;
        let resp: LoginResponse = api
            .post(
                "/v1/login",
                &LoginRequest {
                    username: p.username.clone(),
                    password: p.password.to_owned(),
                    totp,
                    device_id: None,
                    new_device: Some(NewDevice {
                        name: p.device_name.to_owned(),
                        signature_key: identity.signature_public_key().to_vec().into(),
                    }),
                },
            )
            .await?;
        Self::finish_registration(
            p,
            api,
            &info,
            identity,
            resp.user_id,
            resp.device,
            resp.session,
        )
        .await
    }

    /// Before anything irreversible: check the profile location, reach the server, make the
    /// device key.
    async fn prepare(p: &EnrollParams<'_>) -> Result<(Api, ServerInfo, Identity), WardError> {
        Profile::preflight(p.profile_dir, p.passphrase)?;
        let api = Api::new(p.server_url, p.ca_pem)?;
        let info: ServerInfo = api.get("/v1/server").await?;
        Ok((api, info, Identity::generate()?))
    }

    /// After the server registered the device: verify its credential against the
    /// organisation CA, save the new profile, upload KeyPackages.
    async fn finish_registration(
        p: EnrollParams<'_>,
        mut api: Api,
        info: &ServerInfo,
        identity: Identity,
        user_id: UserId,
        credential: ward_proto::DeviceCredential,
        session: ward_proto::SessionInfo,
    ) -> Result<WardClient, WardError> {
        let org_ca: [u8; 32] =
            info.org_ca_public_key.as_slice().try_into().map_err(|_| {
                WardError::Transport("server sent a malformed organisation key".into())
            })?;
        let trust = TrustAnchor {
            org_ca_public_key: org_ca,
            external_sender_public_key: Some(info.external_sender_public_key.0.clone()),
            external_sender_identity: Some(info.external_sender_identity.clone()),
        };
        let device_id = credential.device_id;
        let core = Core::new(identity, credential, trust)?;
        let mut data = ProfileData::new(
            api.base().to_owned(),
            p.ca_pem.to_owned(),
            p.username,
            user_id,
            device_id,
            info.ciphersuites.first().copied().unwrap_or(0x004D),
        );
        data.session = Some(StoredSession {
            token: session.token.clone(),
            expires_at: session.expires_at,
        });
        data.core = core.to_bytes()?.to_vec().into();
        let profile = Profile::create(p.profile_dir, p.passphrase, data)?;
        api.set_token(Some(session.token.clone()));
        let mut client = WardClient {
            profile,
            core,
            api,
            journal: journal::JournalKeys::default(),
            pending_alerts: Vec::new(),
            attachment_policy: None,
            crypto_timings: None,
        };
        client.top_up_key_packages(None).await?;
        Ok(client)
    }

    /// Open an existing profile.
    pub fn open(profile_dir: &std::path::Path, passphrase: &str) -> Result<WardClient, WardError> {
        let profile = Profile::open(profile_dir, passphrase)?;
        let core = Core::from_bytes(profile.data.core.as_slice())?;
        let mut api = Api::new(&profile.data.server_url, &profile.data.ca_pem)?;
        api.set_token(profile.data.session.as_ref().map(|s| s.token.clone()));
        Ok(WardClient {
            profile,
            core,
            api,
            journal: journal::JournalKeys::default(),
            pending_alerts: Vec::new(),
            attachment_policy: None,
            crypto_timings: None,
        })
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.profile.data.device_id
    }

    /// The server this profile belongs to.
    pub fn server_url(&self) -> &str {
        &self.profile.data.server_url
    }

    /// This account.
    pub fn username(&self) -> &Username {
        &self.profile.data.username
    }

    /// The organisation CA key this device trusts.
    pub fn org_ca_public_key(&self) -> [u8; 32] {
        self.core.trust_anchor().org_ca_public_key
    }

    /// The devices in this device's MLS group of a conversation: the cryptographic roster
    /// (who can decrypt what is sent next), not the server's routing.
    pub fn group_devices(&self, conversation: ConversationId) -> Vec<DeviceId> {
        self.core
            .members(conversation)
            .iter()
            .map(|c| c.device_id)
            .collect()
    }

    /// The local message history.
    pub fn history(&self) -> &[StoredMessage] {
        &self.profile.data.messages
    }

    /// Log in again on this device.
    /// A wiped device gets [`WardError::Wiped`] after erasing its profile (see [`Self::sync`]).
    pub async fn login(&mut self, password: &str, totp: Option<String>) -> Result<(), WardError> {
        let r = self.login_inner(password, totp).await;
        self.obey_wipe(r).await
    }

    async fn login_inner(&mut self, password: &str, totp: Option<String>) -> Result<(), WardError> {
        self.api.set_token(None);
        let resp: LoginResponse = self
            .api
            .post(
                "/v1/login",
                &LoginRequest {
                    username: self.profile.data.username.clone(),
                    password: password.to_owned(),
                    totp,
                    device_id: Some(self.profile.data.device_id),
                    new_device: None,
                },
            )
            .await?;
        self.api.set_token(Some(resp.session.token.clone()));
        self.profile.data.session = Some(StoredSession {
            token: resp.session.token.clone(),
            expires_at: resp.session.expires_at,
        });
        self.save()
    }

    /// Change the account's password; the server ends every other session of the account.
    /// Returns how many it ended. The new password is checked by the server against the
    /// organisation's rules (the error names the rule it breaks).
    pub async fn change_password(&mut self, current: &str, new: &str) -> Result<u64, WardError> {
        if new.is_empty() {
            return Err(WardError::InvalidInput("the new password is empty".into()));
        }
        let resp: ChangePasswordResponse = self
            .api
            .post(
                "/v1/me/password",
                &ChangePasswordRequest {
                    current_password: current.to_owned(),
                    new_password: new.to_owned(),
                },
            )
            .await?;
        Ok(resp.sessions_ended)
    }

    /// Start collecting the time spent inside MLS calls (for benchmarks); see
    /// [`WardClient::take_crypto_timings`].
    pub fn measure_crypto(&mut self) {
        self.crypto_timings
            .get_or_insert_with(CryptoTimings::default);
    }

    /// What was collected since the last call (empty unless [`WardClient::measure_crypto`]).
    pub fn take_crypto_timings(&mut self) -> CryptoTimings {
        match &mut self.crypto_timings {
            Some(t) => std::mem::take(t),
            None => CryptoTimings::default(),
        }
    }

    /// Open the live event WebSocket without processing it: for callers that run their own
    /// loop and call [`WardClient::sync`] when an event arrives ([`WardClient::follow`] does
    /// both).
    pub async fn event_socket(&self) -> Result<EventSocket, WardError> {
        self.api.websocket().await
    }

    /// Send a text message. Returns once the server has it durably.
    pub async fn send_text(
        &mut self,
        target: Target,
        text: &str,
        priority: Priority,
    ) -> Result<Sent, WardError> {
        self.send_message(target, text, priority, false).await
    }

    /// Send a text message after the organisation's DLP check, which runs here, before
    /// encryption: `block` refuses, `warn` refuses unless `confirm_phi`, `label` attaches
    /// labels that the server records in the audit log.
    pub async fn send_message(
        &mut self,
        target: Target,
        text: &str,
        priority: Priority,
        confirm_phi: bool,
    ) -> Result<Sent, WardError> {
        let r = self
            .send_message_inner(target, text, priority, confirm_phi)
            .await;
        self.obey_wipe(r).await
    }

    /// Apply `policy` before encrypting a file instead of the organisation's (which is read
    /// from `GET /v1/attachment-policy` before each file otherwise); the server enforces its
    /// own size limit and quota either way.
    pub fn set_attachment_policy(&mut self, policy: ward_core::attachment::AttachmentPolicy) {
        self.attachment_policy = Some(policy);
    }

    /// The organisation's attachment policy (size limit, refused types and extensions).
    pub async fn attachment_policy(
        &self,
    ) -> Result<ward_core::attachment::AttachmentPolicy, WardError> {
        if let Some(p) = &self.attachment_policy {
            return Ok(p.clone());
        }
        let info: ward_proto::AttachmentPolicyInfo = self.api.get("/v1/attachment-policy").await?;
        Ok(info.into())
    }

    /// Send a message with files attached (ADR 0015), with or without text. Each file is
    /// checked against the attachment policy and its real type by content, stripped of image
    /// metadata and encrypted with a fresh key (into a temporary file in the profile
    /// directory), uploaded in parts (resuming after network failures, `progress` told as it
    /// goes), and its descriptor travels inside the encrypted message, whose envelope names
    /// the blob ids. A JPEG, PNG or GIF image also gets an encrypted thumbnail (its own blob
    /// and key, named in the envelope too); an image whose thumbnail cannot be made is sent
    /// without one. Nothing is sent if any file is refused.
    pub async fn send_with_attachments(
        &mut self,
        target: Target,
        text: &str,
        files: &[std::path::PathBuf],
        priority: Priority,
        confirm_phi: bool,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Sent, WardError> {
        let r = self
            .send_attachments_inner(target, text, files, priority, confirm_phi, progress)
            .await;
        self.obey_wipe(r).await
    }

    async fn send_attachments_inner(
        &mut self,
        target: Target,
        text: &str,
        files: &[std::path::PathBuf],
        priority: Priority,
        confirm_phi: bool,
        mut progress: Option<ProgressFn<'_>>,
    ) -> Result<Sent, WardError> {
        if files.len() > ward_core::attachment::MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(WardError::InvalidInput(format!(
                "{} files attached; at most {} per message",
                files.len(),
                ward_core::attachment::MAX_ATTACHMENTS_PER_MESSAGE
            )));
        }
        if text.trim().is_empty() && files.is_empty() {
            return Err(WardError::InvalidInput(
                "the message is empty: give text or attach a file".into(),
            ));
        }
        let mut content = MessageContent::text(text, priority, now_ms());
        content
            .validate()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        // Refuse a bad file before anything reaches the server.
        let mut prepared = Vec::new();
        let result = async {
            for f in files {
                prepared.push(self.prepare_file(f).await?);
            }
            let (conversation, labels) = self
                .resolve_target(target, text, confirm_phi, &prepared)
                .await?;
            for p in &prepared {
                let d = self
                    .upload_attachment(conversation, p, transfer::lend(&mut progress))
                    .await?;
                content.attachments.push(d);
            }
            self.send_content(conversation, content, uuid::Uuid::new_v4(), labels)
                .await
        }
        .await;
        for p in &prepared {
            p.remove_files();
        }
        result
    }

    /// Checks and encrypts one file on a blocking thread.
    async fn prepare_file(
        &self,
        path: &std::path::Path,
    ) -> Result<attachments::PreparedAttachment, WardError> {
        let path = path.to_path_buf();
        let policy = self.attachment_policy().await?;
        let work = self.profile.dir().to_path_buf();
        tokio::task::spawn_blocking(move || {
            attachments::prepare_attachment(&path, None, &policy, &work, &mut rand::rngs::OsRng)
        })
        .await
        .map_err(|e| WardError::InvalidInput(format!("encrypting the attachment failed: {e}")))?
        .map_err(WardError::from)
    }

    async fn send_message_inner(
        &mut self,
        target: Target,
        text: &str,
        priority: Priority,
        confirm_phi: bool,
    ) -> Result<Sent, WardError> {
        let content = MessageContent::text(text, priority, now_ms());
        content
            .validate()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let (conversation, labels) = self.resolve_target(target, text, confirm_phi, &[]).await?;
        self.send_content(conversation, content, uuid::Uuid::new_v4(), labels)
            .await
    }

    /// Flushes the outbox, runs the DLP check (on the text and the attachments' file names)
    /// and finds or creates the conversation; returns it with the DLP labels.
    async fn resolve_target(
        &mut self,
        target: Target,
        text: &str,
        confirm_phi: bool,
        files: &[attachments::PreparedAttachment],
    ) -> Result<(ConversationId, Vec<String>), WardError> {
        self.flush_outbox().await?;
        let kind = match &target {
            Target::User(_) => ConversationKind::Direct,
            Target::Conversation(id) => self
                .profile
                .data
                .conversations
                .get(id)
                .map_or(ConversationKind::Group, |s| s.kind),
        };
        let mut scanned = text.to_owned();
        for f in files {
            scanned.push('\n');
            scanned.push_str(&f.file_name);
        }
        let labels = self.dlp_check(&scanned, kind, confirm_phi).await?;
        let conversation = match target {
            Target::Conversation(id) => self.active_conversation(id)?,
            Target::User(u) => self.direct_conversation(&u).await?,
        };
        Ok((conversation, labels))
    }

    /// `id` if this device is an active member of it, else an error saying so.
    fn active_conversation(&self, id: ConversationId) -> Result<ConversationId, WardError> {
        if self.core.has_group(id) && self.core.is_active(id) {
            Ok(id)
        } else {
            Err(WardError::InvalidInput(format!(
                "this device is not in conversation {id} (not added yet, or removed)"
            )))
        }
    }

    /// Scan `text` under the organisation's signed DLP document; returns the labels to attach.
    async fn dlp_check(
        &mut self,
        text: &str,
        kind: ConversationKind,
        confirm_phi: bool,
    ) -> Result<Vec<String>, WardError> {
        use ward_core::dlp::{Action, DlpConfig};
        let doc = self.dlp_document().await?;
        let Some(policy) = doc.policy else {
            return Ok(Vec::new());
        };
        let config = DlpConfig::new(doc.config.unwrap_or_default()).map_err(|e| {
            WardError::InvalidInput(format!(
                "the organisation's DLP configuration is invalid ({e}); contact your administrator"
            ))
        })?;
        let role = match self.profile.data.role {
            Some(r) => r,
            None => {
                let me: ward_proto::MeResponse = self.api.get("/v1/me").await?;
                self.profile.data.role = Some(me.user.role);
                me.user.role
            }
        };
        let kind = match kind {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        };
        let findings = ward_core::dlp::scan(text, &config);
        let decision = policy.decide(&findings, kind, role.as_str());
        let labels: Vec<String> = decision
            .labels
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        match decision.action {
            Action::Block => Err(WardError::PhiBlocked { labels }),
            Action::Warn if !confirm_phi => Err(WardError::PhiNeedsConfirmation { labels }),
            _ => Ok(labels),
        }
    }

    /// The organisation's DLP document, its signature verified (fail closed).
    async fn dlp_document(&mut self) -> Result<DlpDocument, WardError> {
        // Offline, the last verified policy still applies, so the message can be queued.
        let signed: ward_proto::SignedDlpPolicy = match self.api.get("/v1/dlp-policy").await {
            Ok(p) => p,
            Err(e @ (WardError::Transport(_) | WardError::Tls(_))) => {
                self.profile.data.dlp_policy.clone().ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        let ca =
            ed25519_dalek::VerifyingKey::from_bytes(&self.core.trust_anchor().org_ca_public_key)
                .map_err(|_| WardError::InvalidInput("the organisation key is malformed".into()))?;
        let sig = ed25519_dalek::Signature::from_slice(signed.signature.as_slice())
            .map_err(|_| WardError::InvalidInput("the DLP policy signature is malformed".into()))?;
        use ed25519_dalek::Verifier;
        ca.verify(
            &ward_proto::SignedDlpPolicy::signed_bytes(&signed.document),
            &sig,
        )
        .map_err(|_| {
            WardError::InvalidInput(
                "the DLP policy is not signed by the organisation; not sending".into(),
            )
        })?;
        self.profile.data.dlp_policy = Some(signed.clone());
        // Fail closed: a policy this client cannot read stops the send rather than skipping it.
        serde_json::from_str(&signed.document).map_err(|e| {
            WardError::InvalidInput(format!(
                "the organisation's DLP policy is invalid ({e}); contact your administrator"
            ))
        })
    }

    /// Create a group with `members` (usernames), named `name` for everyone.
    pub async fn create_group(
        &mut self,
        name: &str,
        members: &[Username],
    ) -> Result<ConversationId, WardError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(WardError::InvalidInput(
                "group name must be 1 to 128 characters".into(),
            ));
        }
        self.flush_outbox().await?;
        let (claimed, users) = self.claim_for(members).await?;
        let info: ConversationInfo = self
            .api
            .post(
                "/v1/conversations",
                &CreateConversationRequest {
                    kind: ConversationKind::Group,
                    ciphersuite: self.profile.data.ciphersuite,
                    peer: None,
                },
            )
            .await?;
        let id = info.conversation_id;
        self.core.create_group(id, info.ciphersuite)?;
        self.profile.data.conversations.insert(
            id,
            ConversationState {
                kind: ConversationKind::Group,
                name: Some(name.to_owned()),
                peer: None,
                processed_seq: 0,
                active: true,
            },
        );
        self.save()?;
        self.commit_adding(id, claimed, users, None).await?;
        let mut content = MessageContent::text(
            format!(
                "{} created the group \u{201c}{name}\u{201d}",
                self.profile.data.username
            ),
            Priority::Routine,
            now_ms(),
        );
        content
            .extra
            .insert("conversation_name".into(), name.into());
        self.send_content(id, content, uuid::Uuid::new_v4(), Vec::new())
            .await?;
        Ok(id)
    }

    /// Add users (all their devices) to a conversation.
    pub async fn add_members(
        &mut self,
        conversation: ConversationId,
        members: &[Username],
    ) -> Result<(), WardError> {
        self.flush_outbox().await?;
        self.require_group(conversation)?;
        let (claimed, users) = self.claim_for(members).await?;
        self.commit_adding(conversation, claimed, users, None).await
    }

    /// Remove users (all their devices) from a conversation.
    pub async fn remove_members(
        &mut self,
        conversation: ConversationId,
        members: &[Username],
    ) -> Result<(), WardError> {
        self.flush_outbox().await?;
        self.require_group(conversation)?;
        let mut users = Vec::new();
        for m in members {
            let entry: DirectoryEntry = self.api.get(&format!("/v1/users/{m}")).await?;
            users.push(entry.user_id);
        }
        let devices: Vec<DeviceId> = self
            .core
            .members(conversation)
            .into_iter()
            .filter(|c| users.contains(&c.user_id))
            .map(|c| c.device_id)
            .collect();
        if devices.is_empty() {
            return Err(WardError::InvalidInput(
                "none of these users is in the conversation".into(),
            ));
        }
        self.commit(conversation, Vec::new(), users, |core| {
            core.remove_devices(conversation, &devices).map(Some)
        })
        .await?;
        Ok(())
    }

    /// Fetch and process everything pending, acknowledge it, keep KeyPackages stocked, and add
    /// members' new devices to shared conversations.
    ///
    /// If the server answers that this device was wiped, the signed instruction is verified:
    /// a genuine one erases the profile and returns [`WardError::Wiped`]; a forged one erases
    /// nothing and returns [`CoreError::InvalidWipeInstruction`].
    pub async fn sync(&mut self) -> Result<SyncReport, WardError> {
        let r = self.sync_inner().await;
        self.obey_wipe(r).await
    }

    async fn sync_inner(&mut self) -> Result<SyncReport, WardError> {
        self.flush_outbox().await?;
        let mut report = self.sync_once().await?;
        report.alerts = std::mem::take(&mut self.pending_alerts);
        let (deleted, warnings) = self.apply_deletion_orders().await?;
        report.deleted_by_retention = deleted;
        report.warnings.extend(warnings);
        let grants = self.fetch_break_glass().await?;
        let more = self.maintain_groups(&grants).await?;
        report.warnings.extend(more);
        let now = OffsetDateTime::now_utc();
        report.break_glass = grants.into_iter().filter(|g| g.is_active(now)).collect();
        Ok(report)
    }

    /// Stay connected and call `on_message` for every new message until the connection ends.
    pub async fn follow(
        &mut self,
        mut on_message: impl FnMut(&StoredMessage),
    ) -> Result<(), WardError> {
        self.follow_events(|e| {
            if let FollowEvent::Message(m) = e {
                on_message(m);
            }
        })
        .await
    }

    /// [`Self::follow`], also reporting alerts about messages sent to a role as they arrive
    /// (notifications, re-notifications, escalations, acknowledgements, "no response").
    pub async fn follow_events(
        &mut self,
        mut on_event: impl FnMut(FollowEvent<'_>),
    ) -> Result<(), WardError> {
        self.follow_reports(|_, report| {
            for m in &report.messages {
                on_event(FollowEvent::Message(m));
            }
            for a in &report.alerts {
                on_event(FollowEvent::Alert(a));
            }
            Box::pin(async {})
        })
        .await
    }

    /// Stay connected and hand every sync's report to `on_report` together with this client
    /// (read-only), whose future is awaited before the next sync: a caller can download the
    /// new messages' attachments there. Ends with the connection (or a wipe, or the session).
    pub async fn follow_reports<F>(&mut self, mut on_report: F) -> Result<(), WardError>
    where
        F: for<'a> FnMut(&'a WardClient, &'a SyncReport) -> futures_util::future::BoxFuture<'a, ()>,
    {
        let mut ws = match self.api.websocket().await {
            Ok(ws) => ws,
            // The upgrade's refusal has no readable body: a sync tells why (and obeys a wipe).
            Err(e) => {
                self.sync().await?;
                return Err(e);
            }
        };
        let report = self.sync().await?;
        on_report(&*self, &report).await;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        tick.tick().await;
        loop {
            let report = tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                        match serde_json::from_str::<ServerEvent>(t.as_str()) {
                            Ok(ServerEvent::SessionEnded { reason }) => return Err(WardError::SessionExpired(reason)),
                            Ok(_) => self.sync().await?,
                            Err(_) => {
                                tracing::debug!("ignoring an unknown event");
                                continue;
                            }
                        }
                    }
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                        return Err(WardError::Transport(format!(
                            "server closed the connection: {}", f.map(|f| f.reason.to_string()).unwrap_or_default()
                        )));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(WardError::Transport(e.to_string())),
                    None => return Err(WardError::Transport("connection closed".into())),
                },
                _ = tick.tick() => self.sync().await?,
            };
            on_report(&*self, &report).await;
        }
    }

    /// Send a read receipt for a message in the history.
    pub async fn mark_read(&mut self, message_id: MessageId) -> Result<(), WardError> {
        let m = self.find(message_id)?;
        let seq = m.seq.ok_or_else(|| {
            WardError::InvalidInput("the message has no sequence number yet".into())
        })?;
        self.api
            .post_empty(
                "/v1/receipts/read",
                &ReadReceiptRequest {
                    conversations: vec![ConversationCursor {
                        conversation_id: m.conversation_id,
                        seq,
                    }],
                },
            )
            .await
    }

    /// Per-device delivery and read state of a message.
    pub async fn status(&mut self, message_id: MessageId) -> Result<MessageStatus, WardError> {
        let m = self.find(message_id)?;
        let seq = m.seq.ok_or_else(|| {
            WardError::InvalidInput("the message has no sequence number yet".into())
        })?;
        self.api
            .get(&format!(
                "/v1/conversations/{}/messages/{seq}/status",
                m.conversation_id
            ))
            .await
    }

    /// Conversations this device is in.
    pub async fn conversations(&mut self) -> Result<Vec<ConversationSummary>, WardError> {
        let mut out = Vec::new();
        let ids: Vec<ConversationId> = self
            .profile
            .data
            .conversations
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let info: ConversationInfo = self.api.get(&format!("/v1/conversations/{id}")).await?;
            let state = &self.profile.data.conversations[&id];
            out.push(ConversationSummary {
                conversation_id: id,
                kind: info.kind,
                name: state
                    .name
                    .clone()
                    .or_else(|| state.peer.as_ref().map(|p| format!("@{p}"))),
                members: info.members.into_iter().map(|m| m.username).collect(),
                epoch: info.epoch,
                last_seq: info.last_seq,
                patient: self.profile.data.patients.get(&id).cloned(),
            });
        }
        Ok(out)
    }

    // ----- internals -------------------------------------------------------------------

    fn save(&mut self) -> Result<(), WardError> {
        self.profile.data.core = self.core.to_bytes()?.to_vec().into();
        self.profile.save()
    }

    fn find(&self, message_id: MessageId) -> Result<StoredMessage, WardError> {
        self.profile
            .data
            .messages
            .iter()
            .find(|m| m.message_id == Some(message_id))
            .cloned()
            .ok_or_else(|| {
                WardError::InvalidInput(format!(
                    "message {message_id} is not in this device's history"
                ))
            })
    }

    fn require_group(&self, id: ConversationId) -> Result<(), WardError> {
        if self.core.has_group(id) && self.core.is_active(id) {
            Ok(())
        } else {
            Err(WardError::InvalidInput(format!(
                "this device is not in conversation {id}"
            )))
        }
    }

    fn warn(&mut self, report: &mut SyncReport, w: String) {
        tracing::warn!("{w}");
        report.warnings.push(w.clone());
        self.profile.data.warnings.push(w);
    }

    /// Claim KeyPackages for every device of `members` and for this user's other devices.
    async fn claim_for(
        &mut self,
        members: &[Username],
    ) -> Result<(Vec<ClaimedKeyPackage>, Vec<UserId>), WardError> {
        let mut claimed = Vec::new();
        let mut users = Vec::new();
        let me = self.profile.data.username.clone();
        let mut seen = BTreeSet::new();
        for m in members {
            if *m == me {
                return Err(WardError::InvalidInput(
                    "you are a member already; name the others".into(),
                ));
            }
            if !seen.insert(m.clone()) {
                continue;
            }
            let resp: ClaimKeyPackagesResponse = self
                .api
                .post(
                    &format!("/v1/users/{m}/key-packages/claim"),
                    &ClaimKeyPackagesRequest::default(),
                )
                .await
                .map_err(|e| match e {
                    WardError::Api {
                        code: ErrorCode::NoKeyPackage,
                        ..
                    } => WardError::InvalidInput(format!(
                        "{m} has no device ready to be added yet (no KeyPackages)"
                    )),
                    WardError::Api {
                        code: ErrorCode::NotFound,
                        ..
                    } => WardError::InvalidInput(format!("no user named {m}")),
                    other => other,
                })?;
            users.push(resp.user_id);
            claimed.extend(resp.key_packages);
        }
        claimed.extend(self.claim_own_other_devices(&[]).await?);
        Ok((claimed, users))
    }

    /// KeyPackages of this user's other active devices (excluding `already`).
    async fn claim_own_other_devices(
        &mut self,
        already: &[DeviceId],
    ) -> Result<Vec<ClaimedKeyPackage>, WardError> {
        let me = self.profile.data.username.clone();
        let entry: DirectoryEntry = match self.api.get(&format!("/v1/users/{me}")).await {
            Ok(e) => e,
            Err(e) if e.is(ErrorCode::Forbidden) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let others: Vec<DeviceId> = entry
            .devices
            .iter()
            .map(|d| d.device_id)
            .filter(|d| *d != self.profile.data.device_id && !already.contains(d))
            .collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .api
            .post::<_, ClaimKeyPackagesResponse>(
                &format!("/v1/users/{me}/key-packages/claim"),
                &ClaimKeyPackagesRequest { devices: others },
            )
            .await
        {
            Ok(r) => Ok(r.key_packages),
            Err(e) if e.is(ErrorCode::NoKeyPackage) || e.is(ErrorCode::Forbidden) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Commit the addition of the `claimed` devices not yet in the group (`grant`: the
    /// break-glass grant this fulfils, ADR 0016).
    async fn commit_adding(
        &mut self,
        id: ConversationId,
        claimed: Vec<ClaimedKeyPackage>,
        users: Vec<UserId>,
        grant: Option<uuid::Uuid>,
    ) -> Result<(), WardError> {
        if claimed.is_empty() {
            return Ok(());
        }
        self.commit_for_grant(id, users, Vec::new(), grant, move |core| {
            let fresh: Vec<ClaimedKeyPackage> = claimed
                .iter()
                .filter(|k| !core.members(id).iter().any(|m| m.device_id == k.device_id))
                .cloned()
                .collect();
            if fresh.is_empty() {
                Ok(None)
            } else {
                core.add_members(id, &fresh).map(Some)
            }
        })
        .await
        .map(|_| ())
    }

    /// Build a commit with `build`, send it with the membership changes, merge on success;
    /// on an epoch conflict discard it, process the winner and build again.
    async fn commit(
        &mut self,
        id: ConversationId,
        add_users: Vec<UserId>,
        remove_users: Vec<UserId>,
        build: impl Fn(&mut Core) -> Result<Option<PendingCommit>, CoreError>,
    ) -> Result<Option<SendEnvelopeResponse>, WardError> {
        self.commit_for_grant(id, add_users, remove_users, None, build)
            .await
    }

    /// [`Self::commit`], naming the break-glass grant the commit fulfils (ADR 0016).
    async fn commit_for_grant(
        &mut self,
        id: ConversationId,
        add_users: Vec<UserId>,
        remove_users: Vec<UserId>,
        break_glass_grant: Option<uuid::Uuid>,
        build: impl Fn(&mut Core) -> Result<Option<PendingCommit>, CoreError>,
    ) -> Result<Option<SendEnvelopeResponse>, WardError> {
        for _ in 0..COMMIT_ATTEMPTS {
            let started = std::time::Instant::now();
            let Some(pc) = build(&mut self.core)? else {
                return Ok(None);
            };
            if let Some(t) = &mut self.crypto_timings {
                t.commits
                    .push((pc.welcome_devices.len(), started.elapsed()));
            }
            let item = OutboxItem {
                client_message_id: uuid::Uuid::new_v4(),
                conversation_id: id,
                kind: EnvelopeKind::Commit,
                epoch: pc.epoch,
                payload: pc.commit.clone().into(),
                welcome: pc.welcome.clone().map(|w| WelcomeDelivery {
                    payload: w.into(),
                    devices: pc.welcome_devices.clone(),
                }),
                add_users: add_users.clone(),
                remove_users: remove_users.clone(),
                remove_devices: pc.removed_devices.clone(),
                content: None,
                labels: Vec::new(),
                journal: None,
                break_glass_grant,
                to_role: None,
                blobs: Vec::new(),
            };
            self.profile.data.outbox.push(item.clone());
            self.save()?;
            match self.post_item(&item).await {
                Ok(resp) => {
                    self.core.merge_pending_commit(id)?;
                    self.drop_outbox(item.client_message_id);
                    self.save()?;
                    return Ok(Some(resp));
                }
                Err(e) if e.is(ErrorCode::EpochConflict) => {
                    self.core.clear_pending_commit(id)?;
                    self.drop_outbox(item.client_message_id);
                    self.save()?;
                    self.sync_once().await?;
                }
                Err(e @ (WardError::Transport(_) | WardError::Tls(_))) => return Err(e),
                Err(e) => {
                    self.core.clear_pending_commit(id)?;
                    self.drop_outbox(item.client_message_id);
                    self.save()?;
                    return Err(e);
                }
            }
        }
        Err(WardError::InvalidInput(
            "other members kept changing the conversation; try again".into(),
        ))
    }

    /// Encrypt and send application content; re-encrypt after processing a winning commit.
    async fn send_content(
        &mut self,
        id: ConversationId,
        content: MessageContent,
        cmid: uuid::Uuid,
        labels: Vec<String>,
    ) -> Result<Sent, WardError> {
        self.send_content_to(id, content, cmid, labels, None).await
    }

    /// [`Self::send_content`], addressed to a clinical role when `to_role` is set (ADR 0018).
    async fn send_content_to(
        &mut self,
        id: ConversationId,
        mut content: MessageContent,
        cmid: uuid::Uuid,
        labels: Vec<String>,
        to_role: Option<ward_proto::RoleAddress>,
    ) -> Result<Sent, WardError> {
        let mut journal = self.journal_copy(id, &mut content).await?;
        let mut content_bytes = content
            .to_bytes()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let mut resealed = false;
        for _ in 0..COMMIT_ATTEMPTS {
            let epoch = self.core.epoch(id).ok_or_else(|| {
                WardError::InvalidInput(format!("this device is not in conversation {id}"))
            })?;
            let started = std::time::Instant::now();
            let payload = self.core.encrypt(id, &content)?;
            if let Some(t) = &mut self.crypto_timings {
                t.encrypt.push(started.elapsed());
            }
            let item = OutboxItem {
                client_message_id: cmid,
                conversation_id: id,
                kind: EnvelopeKind::Application,
                epoch,
                payload: payload.into(),
                welcome: None,
                add_users: Vec::new(),
                remove_users: Vec::new(),
                remove_devices: Vec::new(),
                content: Some(content_bytes.clone().into()),
                labels: labels.clone(),
                journal: journal.clone(),
                break_glass_grant: None,
                to_role: to_role.clone(),
                blobs: blobs_of(&content),
            };
            self.profile.data.outbox.push(item.clone());
            self.save()?;
            match self.post_item(&item).await {
                Ok(resp) => {
                    self.record_sent(&item, &resp);
                    self.drop_outbox(cmid);
                    self.save()?;
                    return Ok(Sent {
                        conversation_id: id,
                        message_id: resp.message_id,
                        seq: resp.seq,
                        to_role: resp.to_role,
                        attachments: content.attachments.iter().map(AttachmentInfo::of).collect(),
                    });
                }
                Err(e) if e.is(ErrorCode::EpochConflict) => {
                    self.drop_outbox(cmid);
                    self.save()?;
                    self.sync_once().await?;
                }
                // Kept in the outbox: retried with the same id on the next sync.
                Err(e @ (WardError::Transport(_) | WardError::Tls(_))) => return Err(e),
                // The journal key was rotated (or installed) since it was loaded: seal again.
                Err(e) if !resealed && journal::is_stale_journal_key(&e) => {
                    resealed = true;
                    self.drop_outbox(cmid);
                    self.save()?;
                    self.refresh_journal_keys().await?;
                    journal::strip_marker(&mut content);
                    journal = self.journal_copy(id, &mut content).await?;
                    content_bytes = content
                        .to_bytes()
                        .map_err(|e| WardError::InvalidInput(e.to_string()))?;
                }
                Err(e) => {
                    self.drop_outbox(cmid);
                    self.save()?;
                    return Err(e);
                }
            }
        }
        Err(WardError::InvalidInput(
            "the conversation kept changing; message not sent, try again".into(),
        ))
    }

    async fn post_item(&self, item: &OutboxItem) -> Result<SendEnvelopeResponse, WardError> {
        self.api
            .post(
                &format!("/v1/conversations/{}/envelopes", item.conversation_id),
                &SendEnvelopeRequest {
                    client_message_id: item.client_message_id,
                    kind: item.kind,
                    epoch: item.epoch,
                    payload: item.payload.clone(),
                    welcome: item.welcome.clone(),
                    add_users: item.add_users.clone(),
                    remove_users: item.remove_users.clone(),
                    remove_devices: item.remove_devices.clone(),
                    labels: item.labels.clone(),
                    journal: item.journal.clone(),
                    break_glass_grant: item.break_glass_grant,
                    blobs: item.blobs.clone(),
                    to_role: item.to_role.clone(),
                },
            )
            .await
    }

    fn drop_outbox(&mut self, cmid: uuid::Uuid) {
        self.profile
            .data
            .outbox
            .retain(|i| i.client_message_id != cmid);
    }

    fn record_sent(&mut self, item: &OutboxItem, resp: &SendEnvelopeResponse) {
        let Some(content) = item
            .content
            .as_ref()
            .and_then(|c| MessageContent::from_bytes(c.as_slice()).ok())
        else {
            return;
        };
        if self
            .profile
            .data
            .messages
            .iter()
            .any(|m| m.message_id == Some(resp.message_id))
        {
            return;
        }
        if let Some(name) = content
            .extra
            .get("conversation_name")
            .and_then(|v| v.as_str())
            && let Some(s) = self
                .profile
                .data
                .conversations
                .get_mut(&item.conversation_id)
        {
            s.name = Some(name.to_owned());
        }
        self.note_patient(item.conversation_id, &content);
        self.profile.data.messages.push(StoredMessage {
            conversation_id: item.conversation_id,
            message_id: Some(resp.message_id),
            seq: Some(resp.seq),
            client_message_id: Some(item.client_message_id),
            sender: self.profile.data.username.clone(),
            sender_device: self.profile.data.device_id,
            sent_at: OffsetDateTime::now_utc(),
            priority: content.priority.as_str().to_owned(),
            text: text_of(&content),
            outgoing: true,
            to_role: content.role_addressing().map(|r| r.role),
            acknowledges: content.acknowledgement(),
            attachment_descriptors: content.attachments.clone(),
        });
    }

    /// Retry whatever a crash or a network failure left in the outbox.
    async fn flush_outbox(&mut self) -> Result<(), WardError> {
        let items = self.profile.data.outbox.clone();
        for item in items {
            match self.post_item(&item).await {
                Ok(resp) => {
                    if item.kind == EnvelopeKind::Commit
                        && self.core.has_pending_commit(item.conversation_id)
                    {
                        self.core.merge_pending_commit(item.conversation_id)?;
                    }
                    self.record_sent(&item, &resp);
                    self.drop_outbox(item.client_message_id);
                    self.save()?;
                }
                Err(e) if e.is(ErrorCode::EpochConflict) => {
                    self.drop_outbox(item.client_message_id);
                    if item.kind == EnvelopeKind::Commit
                        && self.core.has_pending_commit(item.conversation_id)
                    {
                        self.core.clear_pending_commit(item.conversation_id)?;
                        let w = format!(
                            "a queued membership change in conversation {} lost its epoch \
                             and was dropped; repeat it if it is still needed",
                            item.conversation_id
                        );
                        tracing::warn!("{w}");
                        self.profile.data.warnings.push(w);
                    }
                    self.save()?;
                    if let Some(c) = item
                        .content
                        .as_ref()
                        .and_then(|c| MessageContent::from_bytes(c.as_slice()).ok())
                    {
                        self.sync_once().await?;
                        self.send_content_to(
                            item.conversation_id,
                            c,
                            item.client_message_id,
                            item.labels.clone(),
                            item.to_role.clone(),
                        )
                        .await?;
                    }
                }
                Err(
                    e
                    @ (WardError::Transport(_) | WardError::Tls(_) | WardError::SessionExpired(_)),
                ) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a queued write the server refused");
                    if item.kind == EnvelopeKind::Commit
                        && self.core.has_pending_commit(item.conversation_id)
                    {
                        self.core.clear_pending_commit(item.conversation_id)?;
                    }
                    self.drop_outbox(item.client_message_id);
                    self.save()?;
                }
            }
        }
        Ok(())
    }

    /// Pages of sync: process inbox items and envelopes, save, then acknowledge.
    async fn sync_once(&mut self) -> Result<SyncReport, WardError> {
        let mut report = SyncReport::default();
        let stock = loop {
            let page: SyncResponse = self.api.get(&format!("/v1/sync?limit={SYNC_PAGE}")).await?;
            let mut inbox_seq = None;
            for item in &page.inbox {
                self.handle_inbox(item, &mut report).await?;
                inbox_seq = Some(item.inbox_seq);
            }
            let mut cursors: BTreeMap<ConversationId, u64> = BTreeMap::new();
            self.load_journal_keys_for(&page.envelopes).await?;
            let first_mismatch = report.journal_mismatches.len();
            for env in &page.envelopes {
                self.handle_envelope(env, &mut report);
                let c = cursors.entry(env.conversation_id).or_default();
                *c = (*c).max(env.seq);
            }
            self.save()?;
            self.report_journal_mismatches(&report.journal_mismatches[first_mismatch..])
                .await?;
            if inbox_seq.is_some() || !cursors.is_empty() {
                self.api
                    .post_empty(
                        "/v1/sync/ack",
                        &AckRequest {
                            conversations: cursors
                                .into_iter()
                                .map(|(conversation_id, seq)| ConversationCursor {
                                    conversation_id,
                                    seq,
                                })
                                .collect(),
                            inbox_seq,
                        },
                    )
                    .await?;
            }
            if !page.more {
                break page.key_packages;
            }
        };
        self.top_up_key_packages(Some(stock)).await?;
        Ok(report)
    }

    async fn handle_inbox(
        &mut self,
        item: &ward_proto::InboxItem,
        report: &mut SyncReport,
    ) -> Result<(), WardError> {
        let id = item.conversation_id;
        match item.kind {
            InboxKind::Welcome => {
                if self.core.has_group(id) && self.core.is_active(id) {
                    return Ok(());
                }
                if self.core.has_group(id) {
                    self.core.leave_group_state(id)?;
                }
                match self.core.join(id, item.payload.as_slice()) {
                    Ok(_) => {
                        let info: Option<ConversationInfo> =
                            self.api.get(&format!("/v1/conversations/{id}")).await.ok();
                        let me = self.profile.data.user_id;
                        let kind = info.as_ref().map_or(ConversationKind::Group, |i| i.kind);
                        let peer = info
                            .as_ref()
                            .filter(|i| i.kind == ConversationKind::Direct)
                            .and_then(|i| {
                                i.members
                                    .iter()
                                    .find(|m| m.user_id != me)
                                    .map(|m| m.username.clone())
                            });
                        let name = self
                            .profile
                            .data
                            .conversations
                            .get(&id)
                            .and_then(|s| s.name.clone());
                        self.profile.data.conversations.insert(
                            id,
                            ConversationState {
                                kind,
                                name,
                                peer,
                                processed_seq: item.commit_seq,
                                active: true,
                            },
                        );
                    }
                    Err(e) => self.warn(
                        report,
                        format!("refused an invitation to conversation {id}: {e}"),
                    ),
                }
            }
            InboxKind::Removed => {
                if self.core.has_group(id) {
                    self.core.leave_group_state(id)?;
                }
                if let Some(s) = self.profile.data.conversations.get_mut(&id) {
                    s.active = false;
                }
            }
            InboxKind::Alert => match ward_proto::MessageAlert::from_inbox(item) {
                Some(alert) => self.pending_alerts.push(alert),
                None => self.warn(
                    report,
                    format!("ignored a malformed alert about conversation {id}"),
                ),
            },
        }
        Ok(())
    }

    fn handle_envelope(&mut self, env: &ward_proto::Envelope, report: &mut SyncReport) {
        let id = env.conversation_id;
        let Some(state) = self.profile.data.conversations.get(&id) else {
            return;
        };
        if env.seq <= state.processed_seq {
            return;
        }
        if self.core.has_group(id) && self.core.is_active(id) {
            let journal = env
                .journal
                .as_ref()
                .map(|c| (c, self.journal.key(&c.key_id)));
            let started = std::time::Instant::now();
            let processed = self
                .core
                .process_with_journal(id, env.payload.as_slice(), journal);
            if let Some(t) = &mut self.crypto_timings {
                match (&processed, env.kind) {
                    (Ok(Processed::Application { .. }), _) => t.decrypt.push(started.elapsed()),
                    (Ok(_), EnvelopeKind::Commit) => t.commits_processed.push(started.elapsed()),
                    _ => {}
                }
            }
            match processed {
                Ok(Processed::Application { sender, content }) => {
                    if let Some(name) = content
                        .extra
                        .get("conversation_name")
                        .and_then(|v| v.as_str())
                        && let Some(s) = self.profile.data.conversations.get_mut(&id)
                    {
                        s.name = Some(name.to_owned());
                    }
                    self.note_patient(id, &content);
                    let m = StoredMessage {
                        conversation_id: id,
                        message_id: Some(env.message_id),
                        seq: Some(env.seq),
                        client_message_id: Some(env.client_message_id),
                        sender: sender.username,
                        sender_device: sender.device_id,
                        sent_at: env.sent_at,
                        priority: content.priority.as_str().to_owned(),
                        text: text_of(&content),
                        outgoing: false,
                        to_role: content.role_addressing().map(|r| r.role),
                        acknowledges: content.acknowledgement(),
                        attachment_descriptors: content.attachments,
                    };
                    report.messages.push(m.clone());
                    self.profile.data.messages.push(m);
                }
                Ok(Processed::Commit {
                    self_removed: true, ..
                }) => {
                    let _ = self.core.leave_group_state(id);
                    if let Some(s) = self.profile.data.conversations.get_mut(&id) {
                        s.active = false;
                    }
                }
                Ok(_) => {}
                Err(CoreError::JournalMismatch(e)) => {
                    let w = format!(
                        "refused message {} (seq {}) in conversation {id}: {e}; reported to the \
                         organisation's audit log",
                        env.message_id, env.seq
                    );
                    self.warn(report, w);
                    report
                        .journal_mismatches
                        .push(ward_proto::JournalMismatchReport {
                            conversation_id: id,
                            message_id: env.message_id,
                            seq: env.seq,
                        });
                }
                Err(e) => {
                    // Decoding errors of decrypted content can quote it: never log them.
                    let why = match e {
                        CoreError::Content(_) => "its decrypted content is malformed".to_owned(),
                        other => other.to_string(),
                    };
                    let w = format!(
                        "could not read message {} (seq {}) in conversation {id}: {why}",
                        env.message_id, env.seq
                    );
                    self.warn(report, w);
                }
            }
        }
        if let Some(s) = self.profile.data.conversations.get_mut(&id) {
            s.processed_seq = env.seq;
        }
    }

    /// Keep one-time KeyPackages stocked and a last-resort one present.
    async fn top_up_key_packages(
        &mut self,
        stock: Option<KeyPackageStock>,
    ) -> Result<(), WardError> {
        let stock = match stock {
            Some(s) => s,
            None => self.api.get("/v1/devices/me/key-packages").await?,
        };
        if !stock.low && stock.has_last_resort {
            return Ok(());
        }
        let cs = self.profile.data.ciphersuite;
        let n = KEY_PACKAGE_BATCH.saturating_sub(stock.remaining as usize);
        let key_packages = self
            .core
            .generate_key_packages(n, cs)?
            .into_iter()
            .map(Into::into)
            .collect();
        let last_resort = if stock.has_last_resort {
            None
        } else {
            Some(self.core.last_resort_key_package(cs)?.into())
        };
        self.save()?;
        let _: KeyPackageStock = self
            .api
            .post(
                "/v1/devices/me/key-packages",
                &UploadKeyPackagesRequest {
                    key_packages,
                    last_resort,
                },
            )
            .await?;
        Ok(())
    }

    /// The next member online adds members' new devices and removes revoked ones.
    async fn maintain_groups(
        &mut self,
        grants: &[ward_proto::BreakGlassGrant],
    ) -> Result<Vec<String>, WardError> {
        let mut warnings = Vec::new();
        let revoked: RevocationList = self.api.get("/v1/revocations").await?;
        self.core.set_revoked(revoked.revoked_devices.clone());
        let ids: Vec<ConversationId> = self
            .profile
            .data
            .conversations
            .iter()
            .filter(|(id, s)| s.active && self.core.has_group(**id) && self.core.is_active(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let in_group: Vec<DeviceId> =
                self.core.members(id).iter().map(|c| c.device_id).collect();
            let stale: Vec<DeviceId> = in_group
                .iter()
                .copied()
                .filter(|d| revoked.revoked_devices.contains(d))
                .collect();
            if !stale.is_empty()
                && let Err(e) = self
                    .commit(id, Vec::new(), Vec::new(), |core| {
                        core.remove_devices(id, &stale).map(Some)
                    })
                    .await
            {
                warnings.push(format!("could not remove revoked devices from {id}: {e}"));
            }
            let info: ConversationInfo =
                match self.api.get(&format!("/v1/conversations/{id}")).await {
                    Ok(i) => i,
                    Err(e) if e.is(ErrorCode::NotFound) => continue,
                    Err(e) => return Err(e),
                };
            self.maintain_break_glass(id, &info, grants, &mut warnings)
                .await?;
            for member in info.members {
                let entry: DirectoryEntry = match self
                    .api
                    .get(&format!("/v1/users/{}", member.username))
                    .await
                {
                    Ok(e) => e,
                    Err(e) if e.is(ErrorCode::Forbidden) || e.is(ErrorCode::NotFound) => continue,
                    Err(e) => return Err(e),
                };
                let missing: Vec<DeviceId> = entry
                    .devices
                    .iter()
                    .map(|d| d.device_id)
                    .filter(|d| {
                        !self.core.members(id).iter().any(|m| m.device_id == *d)
                            && !revoked.revoked_devices.contains(d)
                    })
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let claimed = match self
                    .api
                    .post::<_, ClaimKeyPackagesResponse>(
                        &format!("/v1/users/{}/key-packages/claim", member.username),
                        &ClaimKeyPackagesRequest { devices: missing },
                    )
                    .await
                {
                    Ok(r) => r.key_packages,
                    Err(e) if e.is(ErrorCode::NoKeyPackage) || e.is(ErrorCode::Forbidden) => {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if let Err(e) = self.commit_adding(id, claimed, Vec::new(), None).await {
                    warnings.push(format!(
                        "could not add {}'s new device to {id}: {e}",
                        member.username
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// The direct conversation with `peer`, created (and the peer added) on first use.
    async fn direct_conversation(&mut self, peer: &Username) -> Result<ConversationId, WardError> {
        if *peer == self.profile.data.username {
            return Err(WardError::InvalidInput(
                "cannot start a direct conversation with yourself".into(),
            ));
        }
        if let Some((id, _)) = self.profile.data.conversations.iter().find(|(id, s)| {
            s.kind == ConversationKind::Direct
                && s.peer.as_ref() == Some(peer)
                && s.active
                && self.core.has_group(**id)
        }) {
            return Ok(*id);
        }
        let (claimed, users) = self.claim_for(std::slice::from_ref(peer)).await?;
        let info: ConversationInfo = match self
            .api
            .post(
                "/v1/conversations",
                &CreateConversationRequest {
                    kind: ConversationKind::Direct,
                    ciphersuite: self.profile.data.ciphersuite,
                    peer: Some(peer.clone()),
                },
            )
            .await
        {
            Ok(i) => i,
            Err(WardError::Api {
                code: ErrorCode::Conflict,
                message,
                ..
            }) => {
                return Err(WardError::InvalidInput(format!(
                    "{message}; this device is not in it yet — a member adds your new devices automatically, run `ward sync` shortly"
                )));
            }
            Err(e) => return Err(e),
        };
        let id = info.conversation_id;
        self.core.create_group(id, info.ciphersuite)?;
        self.profile.data.conversations.insert(
            id,
            ConversationState {
                kind: ConversationKind::Direct,
                name: None,
                peer: Some(peer.clone()),
                processed_seq: 0,
                active: true,
            },
        );
        self.save()?;
        self.commit_adding(id, claimed, users, None).await?;
        Ok(id)
    }
}

fn text_of(content: &MessageContent) -> String {
    match &content.body {
        Body::Text { text } => text.clone(),
        _ => "[a message this version cannot show; update Ward]".to_owned(),
    }
}

/// The blob ids a message's content references (attachments and their thumbnails).
fn blobs_of(content: &MessageContent) -> Vec<uuid::Uuid> {
    content
        .attachments
        .iter()
        .flat_map(|a| std::iter::once(a.blob_id).chain(a.thumbnail.as_ref().map(|t| t.blob_id)))
        .collect()
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
