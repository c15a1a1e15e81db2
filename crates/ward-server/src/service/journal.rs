//! The compliance journal on the server (ADR 0010): installing the organisation's journal
//! public key, serving the keys signed by the organisation CA, requiring a journal copy with
//! every application message while a key is installed, and recording recipients' reports of
//! copies that do not match.
//!
//! The server never holds the journal private key and cannot read a copy; it stores copies as
//! opaque bytes in the archive (`JournalStore`), apart from the envelope log. Whether a copy
//! really is the message's is checked by every recipient (`ward_core::journal`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ward_proto::{
    EnvelopeKind, JournalCopy, JournalKeyList, JournalMismatchReport, MAX_JOURNAL_COPY_BYTES, Role,
    SignedJournalKey,
};
use ward_store::JournalKey;

use super::{Actor, AuthSession, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// Length of an X-Wing public key, bytes.
pub const JOURNAL_PUBLIC_KEY_LEN: usize = 1216;
/// Length of the X-Wing encapsulation at the front of every copy, bytes.
const JOURNAL_ENC_LEN: usize = 1120;
/// Largest archive page a compliance session may ask for.
pub const ARCHIVE_PAGE_MAX: usize = 1000;
/// How long a node trusts its cached list of journal keys. A key installed by the admin CLI
/// (another process) is enforced by every node within this time; a send naming a key the
/// cache does not know refreshes it at once.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// This node's cached copy of the installed journal keys.
#[derive(Default)]
pub struct JournalKeyCache {
    inner: RwLock<Option<(Instant, Arc<Vec<JournalKey>>)>>,
}

/// The key id of an X-Wing public key: hex of the first 16 bytes of its SHA-256 (the same
/// rule as `ward_core::journal::key_id_of`).
pub fn journal_key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..16])
}

impl Services {
    /// Install a journal public key (admin; `ward admin org set-journal-key`). It becomes the
    /// current key: from now on every application message must carry a copy sealed to it.
    /// Earlier keys stay listed, so recipients can still check older copies.
    pub async fn set_journal_key(
        &self,
        actor: &Actor,
        public_key: Vec<u8>,
    ) -> ApiResult<JournalKey> {
        require_role(actor, &[Role::Admin])?;
        if public_key.len() != JOURNAL_PUBLIC_KEY_LEN {
            return Err(ApiError::invalid(format!(
                "a journal public key is an X-Wing key of {JOURNAL_PUBLIC_KEY_LEN} bytes (got {}); \
                 use the public key file `ward compliance keygen` wrote",
                public_key.len()
            )));
        }
        let previous = self
            .journal_keys(true)
            .await?
            .last()
            .map(|k| k.key_id.clone());
        let key = JournalKey {
            key_id: journal_key_id(&public_key),
            public_key,
            created_at: self.now(),
        };
        self.store
            .add_journal_key(&key)
            .await
            .map_err(|e| match e {
                ward_store::StoreError::Conflict(_) => ApiError::new(
                    ward_proto::ErrorCode::Conflict,
                    format!("journal key {} is already installed", key.key_id),
                ),
                other => other.into(),
            })?;
        self.audit
            .record(
                actor,
                "journal.key_install",
                Some(key.key_id.clone()),
                serde_json::json!({ "key_id": key.key_id, "previous_key_id": previous }),
            )
            .await?;
        self.journal_keys(true).await?;
        Ok(key)
    }

    /// Every installed journal key, oldest first, each signed by the organisation CA.
    pub async fn signed_journal_keys(&self) -> ApiResult<JournalKeyList> {
        use ed25519_dalek::Signer;
        let keys = self.journal_keys(false).await?;
        Ok(JournalKeyList {
            keys: keys
                .iter()
                .map(|k| {
                    let signature = self.keys.org_ca.sign(&SignedJournalKey::signed_bytes(
                        &k.key_id,
                        &k.public_key,
                        k.created_at,
                    ));
                    SignedJournalKey {
                        key_id: k.key_id.clone(),
                        public_key: k.public_key.clone().into(),
                        created_at: k.created_at,
                        signature: signature.to_bytes().to_vec().into(),
                    }
                })
                .collect(),
        })
    }

    /// The send-path rule: an application message carries a copy sealed to the current key
    /// exactly when a journal key is installed; other kinds never carry one.
    pub(super) async fn check_journal_copy(
        &self,
        kind: EnvelopeKind,
        copy: Option<&JournalCopy>,
    ) -> ApiResult<()> {
        if kind != EnvelopeKind::Application {
            return match copy {
                Some(_) => Err(ApiError::invalid(
                    "a journal copy is only for application messages",
                )),
                None => Ok(()),
            };
        }
        let mut keys = self.journal_keys(false).await?;
        if let Some(c) = copy
            && keys.last().is_none_or(|k| k.key_id != c.key_id)
        {
            // Perhaps installed a moment ago by the CLI: look again before refusing.
            keys = self.journal_keys(true).await?;
        }
        match (keys.last(), copy) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(ApiError::invalid(
                "the organisation has no journal key: send without a journal copy",
            )),
            (Some(current), None) => Err(ApiError::invalid(format!(
                "the organisation journals every message: a journal copy sealed to key {} is \
                 required",
                current.key_id
            ))),
            (Some(current), Some(c)) => {
                if c.key_id != current.key_id {
                    return Err(ApiError::invalid(format!(
                        "the journal copy is sealed to key {:?}, but the current journal key is \
                         {}; fetch /v1/journal-keys and seal again",
                        c.key_id, current.key_id
                    )));
                }
                if c.ciphertext.len() <= JOURNAL_ENC_LEN
                    || c.ciphertext.len() > MAX_JOURNAL_COPY_BYTES
                {
                    return Err(ApiError::invalid(format!(
                        "a journal copy must be {} to {MAX_JOURNAL_COPY_BYTES} bytes",
                        JOURNAL_ENC_LEN + 1
                    )));
                }
                Ok(())
            }
        }
    }

    /// A recipient refused a message because its journal copy does not match: recorded as
    /// `journal.mismatch` (ids only) for the compliance officer. Only a member of the
    /// conversation can report, and only a message that exists.
    pub async fn report_journal_mismatch(
        &self,
        s: &AuthSession,
        report: JournalMismatchReport,
    ) -> ApiResult<()> {
        self.member_conversation(s, report.conversation_id).await?;
        let envelope = self
            .store
            .envelope(report.conversation_id, report.seq)
            .await?
            .filter(|e| e.message_id == report.message_id)
            .ok_or_else(|| ApiError::not_found("message"))?;
        self.audit
            .record(
                &s.actor(),
                "journal.mismatch",
                Some(envelope.message_id.to_string()),
                serde_json::json!({
                    "conversation_id": envelope.conversation_id,
                    "seq": envelope.seq,
                    "sender_user_id": envelope.sender_user_id,
                    "sender_device_id": envelope.sender_device_id,
                    "journal_key_id": envelope.journal.as_ref().map(|j| j.key_id.clone()),
                }),
            )
            .await?;
        Ok(())
    }

    /// A page of the journal archive for a compliance officer, who decrypts it offline
    /// (`ward compliance export --server`). Filters: conversation, sender username, and the
    /// server's acceptance time in Unix seconds (`since` inclusive, `until` exclusive).
    /// Audited (`journal.archive_read`: filters, count, archive seq range).
    #[allow(clippy::too_many_arguments, reason = "one per query parameter")]
    pub async fn journal_archive(
        &self,
        actor: &Actor,
        after: u64,
        limit: usize,
        conversation: Option<ward_proto::ConversationId>,
        sender: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
    ) -> ApiResult<ward_proto::JournalArchivePage> {
        require_role(actor, &[Role::Compliance])?;
        if !(1..=ARCHIVE_PAGE_MAX).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to {ARCHIVE_PAGE_MAX}"
            )));
        }
        let time = |v: Option<i64>, name: &str| {
            v.map(|s| {
                time::OffsetDateTime::from_unix_timestamp(s)
                    .map_err(|_| ApiError::invalid(format!("{name} is not a Unix time in seconds")))
            })
            .transpose()
        };
        let (since_t, until_t) = (time(since, "since")?, time(until, "until")?);
        let sender_user_id = match sender {
            Some(name) => {
                let name = ward_proto::Username::parse(name)
                    .map_err(|e| ApiError::invalid(format!("user: {e}")))?;
                Some(
                    self.store
                        .user_by_name(&name)
                        .await?
                        .ok_or_else(|| ApiError::not_found("user"))?
                        .id,
                )
            }
            None => None,
        };
        let mut rows = self
            .store
            .journal_entries(&ward_store::JournalQuery {
                after,
                limit: limit + 1,
                conversation_id: conversation,
                sender_user_id,
                since: since_t,
                until: until_t,
            })
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let entries = self.archive_entries(rows).await?;
        self.audit
            .record(
                actor,
                "journal.archive_read",
                None,
                serde_json::json!({
                    "after": after, "limit": limit, "conversation": conversation,
                    "user": sender, "since": since, "until": until,
                    "count": entries.len(),
                    "first": entries.first().map(|e| e.archive_seq),
                    "last": entries.last().map(|e| e.archive_seq),
                }),
            )
            .await?;
        Ok(ward_proto::JournalArchivePage { entries, more })
    }

    /// Archive rows as served to a compliance officer: each with its sender's username (looked
    /// up once per sender). Shared by the API and `ward compliance export --data`.
    pub async fn archive_entries(
        &self,
        rows: Vec<ward_store::JournalEntry>,
    ) -> ApiResult<Vec<ward_proto::JournalArchiveEntry>> {
        let mut names = std::collections::BTreeMap::new();
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            if let std::collections::btree_map::Entry::Vacant(slot) = names.entry(r.sender_user_id)
            {
                slot.insert(self.store.user(r.sender_user_id).await?.map(|u| u.username));
            }
            entries.push(ward_proto::JournalArchiveEntry {
                archive_seq: r.archive_seq,
                message_id: r.message_id,
                conversation_id: r.conversation_id,
                seq: r.seq,
                sender_user_id: r.sender_user_id,
                sender_username: names.get(&r.sender_user_id).cloned().flatten(),
                sender_device_id: r.sender_device_id,
                sent_at: r.sent_at,
                copy: r.copy,
            });
        }
        Ok(entries)
    }

    /// The installed keys, oldest first, from this node's cache (reloaded when older than
    /// [`KEY_CACHE_TTL`] or when `refresh`).
    async fn journal_keys(&self, refresh: bool) -> ApiResult<Arc<Vec<JournalKey>>> {
        if !refresh
            && let Some((at, keys)) = self
                .journal_cache
                .inner
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(self.store.journal_keys().await?);
        *self
            .journal_cache
            .inner
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}
