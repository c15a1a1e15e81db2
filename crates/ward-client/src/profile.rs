//! The encrypted local profile: one file holding the device's keys, MLS state, session,
//! message history and outbox, encrypted under a key derived from the user's passphrase.
//!
//! Format: `WARDPRF1` ‖ salt (16) ‖ nonce (24) ‖ XChaCha20-Poly1305 ciphertext of the JSON
//! state, with the header as associated data. The key comes from Argon2id (m = 19 MiB, t = 2,
//! p = 1) over the passphrase and salt. Every save writes a new file and renames it over the
//! old one after fsync, so a crash leaves either the old or the new state, never a torn one.
//! A lock file keeps two processes from using one profile at once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ward_proto::{
    Bytes, ConversationId, ConversationKind, DeviceId, EnvelopeKind, MessageId, UserId, Username,
    WelcomeDelivery,
};
use zeroize::{Zeroize, Zeroizing};

use crate::WardError;

const MAGIC: &[u8; 8] = b"WARDPRF1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// File name of the encrypted profile inside the profile directory.
pub const PROFILE_FILE: &str = "profile.ward";
const LOCK_FILE: &str = "profile.lock";
/// Bumped when [`ProfileData`] changes incompatibly.
const DATA_VERSION: u32 = 1;

/// Everything a device keeps. Lives only in memory and inside the encrypted file.
#[derive(Serialize, Deserialize)]
pub struct ProfileData {
    /// Format version.
    pub version: u32,
    /// Server base URL.
    pub server_url: String,
    /// PEM of the CA the server's certificate must chain to.
    pub ca_pem: String,
    /// Account.
    pub username: Username,
    /// Account id.
    pub user_id: UserId,
    /// This device.
    pub device_id: DeviceId,
    /// The current session, if logged in.
    pub session: Option<StoredSession>,
    /// `ward_core::Client::to_bytes`.
    pub core: Bytes,
    /// Ciphersuite for new conversations (the organisation's default).
    pub ciphersuite: u16,
    /// Per-conversation state.
    pub conversations: BTreeMap<ConversationId, ConversationState>,
    /// Message history, oldest first.
    pub messages: Vec<StoredMessage>,
    /// Messages and commits written but not yet acknowledged by the server.
    pub outbox: Vec<OutboxItem>,
    /// Problems seen while processing (undecryptable messages, refused Welcomes).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The account's role, learned from the server (for DLP rules).
    #[serde(default)]
    pub role: Option<ward_proto::Role>,
    /// The last signed DLP policy fetched, so messages can be checked and queued offline.
    #[serde(default)]
    pub dlp_policy: Option<ward_proto::SignedDlpPolicy>,
    /// The patient each conversation is bound to (ADR 0019), learned from binding messages.
    #[serde(default)]
    pub patients: BTreeMap<ConversationId, ward_core::PatientContext>,
}

impl Drop for ProfileData {
    fn drop(&mut self) {
        self.core.0.zeroize();
        if let Some(s) = &mut self.session {
            s.token.zeroize();
        }
    }
}

/// A session token kept in the profile.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSession {
    /// Bearer token.
    pub token: String,
    /// Absolute expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What this device knows about a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConversationState {
    /// Kind.
    pub kind: ConversationKind,
    /// Local name (groups), learned from the creator's first message.
    pub name: Option<String>,
    /// For direct conversations: the other user.
    pub peer: Option<Username>,
    /// Every envelope up to this seq has been processed.
    pub processed_seq: u64,
    /// False after this device was removed.
    pub active: bool,
}

/// A message in the local history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Server id, once known.
    pub message_id: Option<MessageId>,
    /// Seq, once known.
    pub seq: Option<u64>,
    /// Sender's idempotency id (our own messages).
    pub client_message_id: Option<uuid::Uuid>,
    /// Sender.
    pub sender: Username,
    /// Sending device.
    pub sender_device: DeviceId,
    /// Server acceptance time (or local send time before acceptance).
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// `routine`, `urgent` or `stat`.
    pub priority: String,
    /// Text.
    pub text: String,
    /// Sent by this account.
    pub outgoing: bool,
    /// The clinical role it was addressed to, as the content says (ADR 0018); `sender` is the
    /// acting human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_role: Option<ward_proto::ClinicalRoleName>,
    /// The message this one acknowledges, with the response, who and in which role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledges: Option<ward_core::role_message::Acknowledgement>,
    /// Its attachments (ADR 0015): the descriptors with their keys, kept only in the
    /// encrypted profile. [`StoredMessage::attachments`] lists what may be shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_descriptors: Vec<ward_core::attachment::AttachmentDescriptor>,
}

/// What a message's attachment is, without its key: what a user interface shows and what
/// `ward sync --json` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    /// The blob holding its ciphertext on the server.
    pub blob_id: uuid::Uuid,
    /// The file name the sender gave it.
    pub file_name: String,
    /// Its media type, checked by content on the sender's side.
    pub media_type: String,
    /// Its size in bytes (plaintext, after metadata stripping).
    pub size: u64,
    /// Its encrypted preview, for images that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ThumbnailInfo>,
}

/// What an attachment's thumbnail is, without its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThumbnailInfo {
    /// The blob holding its ciphertext on the server.
    pub blob_id: uuid::Uuid,
    /// Its media type (`image/jpeg`).
    pub media_type: String,
    /// Its size in bytes (plaintext).
    pub size: u64,
}

impl AttachmentInfo {
    /// The metadata of a descriptor.
    pub fn of(d: &ward_core::attachment::AttachmentDescriptor) -> Self {
        AttachmentInfo {
            blob_id: d.blob_id,
            file_name: d.file_name.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
            thumbnail: d.thumbnail.as_deref().map(|t| ThumbnailInfo {
                blob_id: t.blob_id,
                media_type: t.media_type.clone(),
                size: t.size,
            }),
        }
    }
}

impl StoredMessage {
    /// The message's attachments, without their keys.
    pub fn attachments(&self) -> Vec<AttachmentInfo> {
        self.attachment_descriptors
            .iter()
            .map(AttachmentInfo::of)
            .collect()
    }
}

/// A write waiting for the server's acknowledgement. Retried with the same client message id,
/// so a crash between sending and recording never duplicates.
#[derive(Clone, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Idempotency id.
    pub client_message_id: uuid::Uuid,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Kind.
    pub kind: EnvelopeKind,
    /// Epoch the payload was made in.
    pub epoch: u64,
    /// MLS message.
    pub payload: Bytes,
    /// Welcome (commits).
    pub welcome: Option<WelcomeDelivery>,
    /// Users the commit adds.
    pub add_users: Vec<UserId>,
    /// Users the commit removes.
    pub remove_users: Vec<UserId>,
    /// Devices the commit removes.
    pub remove_devices: Vec<DeviceId>,
    /// For application messages: the content, to re-encrypt if the epoch moved on.
    pub content: Option<Bytes>,
    /// PHI labels from the DLP check.
    #[serde(default)]
    pub labels: Vec<String>,
    /// For application messages while the organisation journals: the journal copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<ward_proto::JournalCopy>,
    /// For a commit adding a break-glass grantee: the grant it fulfils (ADR 0016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_grant: Option<uuid::Uuid>,
    /// For an application message to a clinical role: the role and priority (ADR 0018).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_role: Option<ward_proto::RoleAddress>,
    /// For an application message with attachments: their blob ids, sent in
    /// `SendEnvelopeRequest::blobs` (a retried send names them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<uuid::Uuid>,
}

/// An open, locked profile.
pub struct Profile {
    dir: PathBuf,
    key: Zeroizing<[u8; 32]>,
    salt: [u8; SALT_LEN],
    _lock: File,
    /// Set by [`Profile::erase`]: nothing may be written any more.
    erased: bool,
    /// The decrypted state.
    pub data: ProfileData,
}

impl Profile {
    /// The profile directory (on the same file system as everything the SDK writes for it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when `dir` holds a profile.
    pub fn exists(dir: &Path) -> bool {
        dir.join(PROFILE_FILE).exists()
    }

    /// Create a new profile (refuses to overwrite one).
    pub fn create(dir: &Path, passphrase: &str, data: ProfileData) -> Result<Profile, WardError> {
        if passphrase.chars().count() < 8 {
            return Err(WardError::InvalidInput(
                "the profile passphrase must be at least 8 characters".into(),
            ));
        }
        create_private_dir(dir)?;
        let lock = lock(dir)?;
        if Self::exists(dir) {
            return Err(WardError::InvalidInput(format!(
                "{} already holds a Ward profile; use another --profile directory",
                dir.display()
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let key = derive_key(passphrase, &salt)?;
        let p = Profile {
            dir: dir.to_path_buf(),
            key,
            salt,
            _lock: lock,
            erased: false,
            data,
        };
        p.save()?;
        Ok(p)
    }

    /// Check, before anything irreversible happens, that a profile can be created here.
    pub fn preflight(dir: &Path, passphrase: &str) -> Result<(), WardError> {
        if passphrase.chars().count() < 8 {
            return Err(WardError::InvalidInput(
                "the profile passphrase must be at least 8 characters".into(),
            ));
        }
        if Self::exists(dir) {
            return Err(WardError::InvalidInput(format!(
                "{} already holds a Ward profile; use another --profile directory",
                dir.display()
            )));
        }
        create_private_dir(dir)?;
        drop(lock(dir)?);
        Ok(())
    }

    /// Open and decrypt. A wrong passphrase and a corrupted file give the same error.
    pub fn open(dir: &Path, passphrase: &str) -> Result<Profile, WardError> {
        let path = dir.join(PROFILE_FILE);
        if !path.exists() {
            return Err(WardError::InvalidInput(format!(
                "no Ward profile in {}; run `ward enroll` first",
                dir.display()
            )));
        }
        let lock = lock(dir)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| WardError::Profile(format!("cannot read {}: {e}", path.display())))?;
        if bytes.len() < MAGIC.len() + SALT_LEN + NONCE_LEN + 16 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(WardError::Profile(format!(
                "{} is not a Ward profile",
                path.display()
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + SALT_LEN]);
        let header_len = MAGIC.len() + SALT_LEN + NONCE_LEN;
        let nonce = XNonce::from_slice(&bytes[MAGIC.len() + SALT_LEN..header_len]);
        let key = derive_key(passphrase, &salt)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    nonce,
                    Payload {
                        msg: &bytes[header_len..],
                        aad: &bytes[..header_len],
                    },
                )
                .map_err(|_| WardError::WrongPassphrase)?,
        );
        let data: ProfileData = serde_json::from_slice(&plain)
            .map_err(|e| WardError::Profile(format!("profile content is unreadable: {e}")))?;
        if data.version != DATA_VERSION {
            return Err(WardError::Profile(format!(
                "profile format {} is not supported",
                data.version
            )));
        }
        Ok(Profile {
            dir: dir.to_path_buf(),
            key,
            salt,
            _lock: lock,
            erased: false,
            data,
        })
    }

    /// Erase the profile for a remote wipe: overwrite every file in the directory with zeros
    /// and sync it, delete it, then remove the directory. The in-memory state is cleared and
    /// later [`Profile::save`] calls fail, so nothing is written back.
    pub fn erase(&mut self) -> Result<(), WardError> {
        self.erased = true;
        self.data.messages.clear();
        self.data.outbox.clear();
        self.data.session = None;
        self.key.zeroize();
        erase_dir(&self.dir).map_err(|e| {
            WardError::Profile(format!(
                "could not erase the profile in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// Encrypt and write atomically (temp file, fsync, rename, fsync directory).
    pub fn save(&self) -> Result<(), WardError> {
        if self.erased {
            return Err(WardError::Profile(
                "this profile was erased by a remote wipe".into(),
            ));
        }
        let plain = Zeroizing::new(
            serde_json::to_vec(&self.data)
                .map_err(|e| WardError::Profile(format!("cannot encode profile: {e}")))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plain.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&nonce);
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &out,
                },
            )
            .map_err(|_| WardError::Profile("encryption failed".into()))?;
        out.extend_from_slice(&ct);
        let tmp = self.dir.join(format!("{PROFILE_FILE}.tmp"));
        let io = |e: std::io::Error| {
            WardError::Profile(format!(
                "cannot write profile in {}: {e}",
                self.dir.display()
            ))
        };
        {
            let mut f = private_file(&tmp).map_err(io)?;
            f.write_all(&out).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, self.dir.join(PROFILE_FILE)).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

impl ProfileData {
    /// A fresh profile for a just-enrolled device.
    pub fn new(
        server_url: String,
        ca_pem: String,
        username: Username,
        user_id: UserId,
        device_id: DeviceId,
        ciphersuite: u16,
    ) -> Self {
        ProfileData {
            version: DATA_VERSION,
            server_url,
            ca_pem,
            username,
            user_id,
            device_id,
            session: None,
            core: Bytes::default(),
            ciphersuite,
            conversations: BTreeMap::new(),
            messages: Vec::new(),
            outbox: Vec::new(),
            warnings: Vec::new(),
            role: None,
            dlp_policy: None,
            patients: BTreeMap::new(),
        }
    }
}

pub(crate) fn derive_key(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, WardError> {
    let params = Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| WardError::Profile(format!("argon2: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| WardError::Profile(format!("argon2: {e}")))?;
    Ok(key)
}

/// Overwrite, sync and delete every file under `dir` (depth first), then remove `dir`.
fn erase_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            erase_dir(&path)?;
            continue;
        }
        if entry.file_type()?.is_file() {
            let len = entry.metadata()?.len();
            let mut f = OpenOptions::new().write(true).open(&path)?;
            let zeros = [0u8; 8192];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
        }
        std::fs::remove_file(&path)?;
    }
    std::fs::remove_dir(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the removal durable; a failure here changes nothing already erased.
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), WardError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| WardError::Profile(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(())
}

pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn lock(dir: &Path) -> Result<File, WardError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| {
            WardError::Profile(format!("cannot open lock file in {}: {e}", dir.display()))
        })?;
    f.try_lock().map_err(|_| {
        WardError::Profile(format!(
            "the profile {} is in use by another ward process",
            dir.display()
        ))
    })?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ProfileData {
        ProfileData::new(
            "https://x".into(),
            "pem".into(),
            "alice".parse().unwrap(),
            UserId::random(),
            DeviceId::random(),
            0x4D,
        )
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profile::create(dir.path(), "a good passphrase", data()).unwrap();
        p.data.warnings.push("SECRET-MARKER".into());
        p.save().unwrap();
        drop(p);
        let raw = std::fs::read(dir.path().join(PROFILE_FILE)).unwrap();
        assert!(
            !raw.windows(13).any(|w| w == b"SECRET-MARKER"),
            "no plaintext on disk"
        );
        assert!(matches!(
            Profile::open(dir.path(), "wrong passphrase"),
            Err(WardError::WrongPassphrase)
        ));
        let p = Profile::open(dir.path(), "a good passphrase").unwrap();
        assert_eq!(p.data.warnings, vec!["SECRET-MARKER".to_string()]);
    }

    #[test]
    fn tampered_file_is_refused_and_second_process_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profile::create(dir.path(), "a good passphrase", data()).unwrap();
        assert!(
            matches!(Profile::open(dir.path(), "a good passphrase"), Err(WardError::Profile(m)) if m.contains("in use"))
        );
        drop(p);
        let path = dir.path().join(PROFILE_FILE);
        let mut raw = std::fs::read(&path).unwrap();
        let n = raw.len();
        raw[n - 5] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(matches!(
            Profile::open(dir.path(), "a good passphrase"),
            Err(WardError::WrongPassphrase)
        ));
    }
}
