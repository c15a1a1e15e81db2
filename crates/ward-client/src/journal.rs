//! The client's side of the compliance journal (ADR 0010): fetch the organisation's journal
//! keys (accepting only keys the organisation CA signed), seal a copy of every outgoing
//! application message to the current key, give recipients' checks the key each delivered
//! copy names, and report refused messages to the server.
//!
//! The sealing and the check are `ward_core::journal`; this module only moves keys and
//! reports. Keys are cached for the life of the [`WardClient`]: a CLI command fetches them
//! once; a key installed while a long-running client is open is picked up when a delivered
//! copy names it, while sends keep the key they loaded until the client is reopened.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use ward_core::MessageContent;
use ward_core::journal::{
    JOURNAL_SEED_LEN, JournalKeyPair, JournalMarker, JournalPublicKey, JournalRecord, seal,
};
use ward_proto::{ConversationId, Envelope, JournalCopy, JournalKeyList, JournalMismatchReport};

use crate::{WardClient, WardError};

/// Magic at the front of a journal private key file (format version 1).
const KEY_FILE_MAGIC: &[u8; 8] = b"WARDJRN1";
const KEY_FILE_SALT_LEN: usize = 16;
const KEY_FILE_NONCE_LEN: usize = 24;
/// Shortest passphrase accepted for a journal private key: it protects every message of the
/// organisation, so longer than a device profile's.
pub const JOURNAL_PASSPHRASE_MIN: usize = 12;

/// Encrypts a journal key pair's secret for its key file, the way the device profile is
/// encrypted (ADR 0007): `WARDJRN1` ‖ salt (16) ‖ nonce (24) ‖ XChaCha20-Poly1305 of the
/// 32-byte secret, the 48-byte header as associated data, the key Argon2id (m = 19 MiB,
/// t = 2, p = 1) of the passphrase and salt.
pub fn seal_journal_key(pair: &JournalKeyPair, passphrase: &str) -> Result<Vec<u8>, WardError> {
    if passphrase.chars().count() < JOURNAL_PASSPHRASE_MIN {
        return Err(WardError::InvalidInput(format!(
            "the journal key passphrase must be at least {JOURNAL_PASSPHRASE_MIN} characters"
        )));
    }
    let mut salt = [0u8; KEY_FILE_SALT_LEN];
    let mut nonce = [0u8; KEY_FILE_NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = crate::profile::derive_key(passphrase, &salt)?;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(KEY_FILE_MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let ct = XChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: pair.secret(),
                aad: &out,
            },
        )
        .map_err(|_| WardError::InvalidInput("encrypting the journal key failed".into()))?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Writes [`seal_journal_key`]'s output to `path`, created with mode 0600; refuses to
/// overwrite an existing file (an organisation key is never replaced by accident).
pub fn write_journal_key_file(
    path: &Path,
    pair: &JournalKeyPair,
    passphrase: &str,
) -> Result<(), WardError> {
    let bytes = seal_journal_key(pair, passphrase)?;
    if path.exists() {
        return Err(WardError::InvalidInput(format!(
            "{} exists; choose another directory (a journal key is never overwritten)",
            path.display()
        )));
    }
    let io = |e: std::io::Error| {
        WardError::InvalidInput(format!("cannot write {}: {e}", path.display()))
    };
    let mut f = crate::profile::private_file(path).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads and decrypts a journal private key file. A wrong passphrase and an altered file give
/// the same error ([`WardError::WrongJournalPassphrase`]).
pub fn read_journal_key_file(path: &Path, passphrase: &str) -> Result<JournalKeyPair, WardError> {
    let bytes = std::fs::read(path)
        .map_err(|e| WardError::InvalidInput(format!("cannot read {}: {e}", path.display())))?;
    let header = KEY_FILE_MAGIC.len() + KEY_FILE_SALT_LEN + KEY_FILE_NONCE_LEN;
    if bytes.len() != header + JOURNAL_SEED_LEN + 16
        || &bytes[..KEY_FILE_MAGIC.len()] != KEY_FILE_MAGIC
    {
        return Err(WardError::InvalidInput(format!(
            "{} is not a Ward journal private key file",
            path.display()
        )));
    }
    let salt = &bytes[KEY_FILE_MAGIC.len()..KEY_FILE_MAGIC.len() + KEY_FILE_SALT_LEN];
    let key = crate::profile::derive_key(passphrase, salt)?;
    let secret = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&bytes[KEY_FILE_MAGIC.len() + KEY_FILE_SALT_LEN..header]),
                Payload {
                    msg: &bytes[header..],
                    aad: &bytes[..header],
                },
            )
            .map_err(|_| WardError::WrongJournalPassphrase)?,
    );
    let mut arr = Zeroizing::new([0u8; JOURNAL_SEED_LEN]);
    arr.copy_from_slice(&secret);
    JournalKeyPair::from_secret(&arr).map_err(|e| WardError::InvalidInput(e.to_string()))
}

/// The organisation's verified journal keys, as this client last fetched them.
#[derive(Default)]
pub(crate) struct JournalKeys {
    loaded: bool,
    keys: BTreeMap<String, JournalPublicKey>,
    current: Option<String>,
    /// Test hook: content the next copy seals instead of the message's.
    #[cfg(feature = "dangerous-test-hooks")]
    forge: Option<Vec<u8>>,
}

impl JournalKeys {
    /// The verified key with this id, if known.
    pub(crate) fn key(&self, key_id: &str) -> Option<&JournalPublicKey> {
        self.keys.get(key_id)
    }

    /// The current key (the newest the organisation CA signed), if any.
    pub(crate) fn current_key(&self) -> Option<&JournalPublicKey> {
        self.current.as_ref().and_then(|id| self.keys.get(id))
    }
}

impl WardClient {
    /// Fetch `GET /v1/journal-keys` and keep the keys whose signature by the organisation CA
    /// verifies. A key that does not verify is left out (a copy naming it is refused) and,
    /// if it would be the current one, sending fails closed.
    pub(crate) async fn refresh_journal_keys(&mut self) -> Result<(), WardError> {
        let list: JournalKeyList = self.api.get("/v1/journal-keys").await?;
        let ca = self.core.trust_anchor().org_ca_public_key;
        let mut keys = BTreeMap::new();
        let mut current = None;
        let newest = list.keys.last().map(|k| k.key_id.clone());
        for signed in &list.keys {
            match JournalPublicKey::verify(signed, &ca) {
                Ok(k) => {
                    keys.insert(k.key_id().to_owned(), k);
                }
                Err(e) => {
                    tracing::warn!(key_id = %signed.key_id, error = %e, "ignoring a journal key");
                }
            }
        }
        if let Some(id) = newest {
            if !keys.contains_key(&id) {
                return Err(WardError::InvalidInput(format!(
                    "the server's current journal key {id} is not signed by the organisation \
                     CA; not sending"
                )));
            }
            current = Some(id);
        }
        self.journal.loaded = true;
        self.journal.keys = keys;
        self.journal.current = current;
        Ok(())
    }

    /// For an outgoing application message: attach a journal marker with a fresh seed (unless
    /// the content already has one, as a re-encryption after an epoch conflict does) and seal
    /// the copy of the exact plaintext. `None` when the organisation has no journal key.
    pub(crate) async fn journal_copy(
        &mut self,
        conversation: ConversationId,
        content: &mut MessageContent,
    ) -> Result<Option<JournalCopy>, WardError> {
        let journal_err =
            |e: ward_core::journal::JournalError| WardError::InvalidInput(e.to_string());
        let marker = match JournalMarker::of(content).map_err(journal_err)? {
            Some(m) => {
                if self.journal.key(&m.key_id).is_none() {
                    self.refresh_journal_keys().await?;
                }
                m
            }
            None => {
                if !self.journal.loaded {
                    self.refresh_journal_keys().await?;
                }
                let Some(current) = self
                    .journal
                    .current
                    .as_ref()
                    .and_then(|id| self.journal.key(id))
                else {
                    return Ok(None);
                };
                let m = JournalMarker::generate(current, &mut rand::rngs::OsRng);
                m.attach(content).map_err(journal_err)?;
                m
            }
        };
        let key = self.journal.key(&marker.key_id).cloned().ok_or_else(|| {
            WardError::InvalidInput(format!(
                "the message names journal key {} which the organisation does not list",
                marker.key_id
            ))
        })?;
        #[cfg_attr(not(feature = "dangerous-test-hooks"), allow(unused_mut))]
        let mut record = JournalRecord {
            conversation_id: conversation,
            sender_user_id: self.profile.data.user_id,
            sender_device_id: self.profile.data.device_id,
            content: content
                .to_bytes()
                .map_err(|e| WardError::InvalidInput(e.to_string()))?,
        };
        #[cfg(feature = "dangerous-test-hooks")]
        if let Some(forged) = self.journal.forge.take() {
            record.content = forged;
        }
        let ciphertext = seal(&key, &marker, &record).map_err(journal_err)?;
        Ok(Some(JournalCopy {
            key_id: marker.key_id,
            ciphertext: ciphertext.into(),
        }))
    }

    /// Before a sync page is processed: make sure every key a delivered copy names is known,
    /// fetching the list again if one is not (a key installed since the last fetch).
    pub(crate) async fn load_journal_keys_for(
        &mut self,
        envelopes: &[Envelope],
    ) -> Result<(), WardError> {
        let unknown = envelopes
            .iter()
            .filter_map(|e| e.journal.as_ref())
            .any(|c| self.journal.key(&c.key_id).is_none());
        if unknown {
            self.refresh_journal_keys().await?;
        }
        Ok(())
    }

    /// The ids of the organisation's journal keys (signed by the organisation CA), oldest
    /// first.
    pub async fn journal_key_ids(&mut self) -> Result<Vec<String>, WardError> {
        self.refresh_journal_keys().await?;
        Ok(self.journal.keys.keys().cloned().collect())
    }

    /// A page of the journal archive (compliance role; audited by the server). `since` and
    /// `until` are Unix seconds of the server's acceptance time.
    pub async fn journal_archive(
        &self,
        after: u64,
        limit: usize,
        conversation: Option<ConversationId>,
        user: Option<&ward_proto::Username>,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<ward_proto::JournalArchivePage, WardError> {
        let mut path = format!("/v1/compliance/journal?after={after}&limit={limit}");
        if let Some(c) = conversation {
            path.push_str(&format!("&conversation={c}"));
        }
        if let Some(u) = user {
            // Usernames are [a-z0-9._-]: nothing to escape in a query.
            path.push_str(&format!("&user={u}"));
        }
        if let Some(t) = since {
            path.push_str(&format!("&since={t}"));
        }
        if let Some(t) = until {
            path.push_str(&format!("&until={t}"));
        }
        self.api.get(&path).await
    }

    /// Tell the server (its audit log) about refused messages. Ids only.
    pub(crate) async fn report_journal_mismatches(
        &self,
        reports: &[JournalMismatchReport],
    ) -> Result<(), WardError> {
        for r in reports {
            self.api.post_empty("/v1/journal/mismatch", r).await?;
        }
        Ok(())
    }
}

/// True when the server refused a copy because it is sealed to a key that is no longer the
/// current one (rotated since this client loaded the keys).
pub(crate) fn is_stale_journal_key(e: &WardError) -> bool {
    matches!(e, WardError::Api { code: ward_proto::ErrorCode::InvalidRequest, message, .. }
        if message.contains("current journal key") || message.contains("journals every message"))
}

/// Removes the journal marker from content (before sealing again to a rotated key).
pub(crate) fn strip_marker(content: &mut MessageContent) {
    content.extra.remove(ward_core::journal::CONTENT_FIELD);
}

#[cfg(feature = "dangerous-test-hooks")]
impl WardClient {
    /// **Test only** (feature `dangerous-test-hooks`): the next journal copy seals `content`
    /// instead of the message, as a modified client hiding what it sends would. Recipients
    /// must refuse that message.
    pub fn dangerous_forge_next_journal_copy(&mut self, content: Vec<u8>) {
        self.journal.forge = Some(content);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn key_file_round_trip_wrong_passphrase_tamper_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        let pair = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
        assert!(matches!(
            write_journal_key_file(&path, &pair, "short"),
            Err(WardError::InvalidInput(_))
        ));
        assert!(!path.exists(), "nothing written for a refused passphrase");
        write_journal_key_file(&path, &pair, "journal passphrase 1").unwrap();
        let back = read_journal_key_file(&path, "journal passphrase 1").unwrap();
        assert_eq!(back.public(), pair.public());
        assert!(matches!(
            read_journal_key_file(&path, "journal passphrase 2"),
            Err(WardError::WrongJournalPassphrase)
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = dir.path().join("tampered.key");
        std::fs::write(&tampered, &bytes).unwrap();
        assert!(matches!(
            read_journal_key_file(&tampered, "journal passphrase 1"),
            Err(WardError::WrongJournalPassphrase)
        ));
        std::fs::write(&tampered, b"not a key").unwrap();
        assert!(matches!(
            read_journal_key_file(&tampered, "journal passphrase 1"),
            Err(WardError::InvalidInput(_))
        ));
        let other = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
        assert!(write_journal_key_file(&path, &other, "journal passphrase 1").is_err());
        let still = read_journal_key_file(&path, "journal passphrase 1").unwrap();
        assert_eq!(
            still.public(),
            pair.public(),
            "the existing key is untouched"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }
}
