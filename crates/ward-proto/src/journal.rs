//! Wire types of the compliance journal: the organisation's journal public keys (signed by the
//! organisation CA), the journal copy that travels with an application message, and the
//! report a recipient sends when a copy does not match what it read.
//!
//! This module holds no cryptography: sealing, opening and verification are in
//! `ward_core::journal`; the server stores copies as opaque bytes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Bytes, ConversationId, MessageId};

/// Largest journal copy accepted (4 MiB + 64 KiB): the MLS plaintext limit plus the record
/// header, the X-Wing encapsulation (1,120 bytes) and the AEAD tag.
pub const MAX_JOURNAL_COPY_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

/// Length of a journal key id in characters (hex of the first 16 bytes of the SHA-256 of the
/// public key).
pub const JOURNAL_KEY_ID_LEN: usize = 32;

/// The journal copy of one application message: HPKE ciphertext to the organisation's journal
/// key `key_id`, as `enc ‖ ciphertext`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalCopy {
    /// The journal key it is sealed to ([`SignedJournalKey::key_id`]).
    pub key_id: String,
    /// `enc ‖ ciphertext` of HPKE base mode.
    pub ciphertext: Bytes,
}

/// One journal public key of the organisation, signed by the organisation CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedJournalKey {
    /// Hex of the first 16 bytes of SHA-256(public key).
    pub key_id: String,
    /// The X-Wing public key (1,216 bytes).
    pub public_key: Bytes,
    /// When it was installed; the newest key is the current one.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Ed25519 signature of the organisation CA over [`SignedJournalKey::signed_bytes`].
    pub signature: Bytes,
}

impl SignedJournalKey {
    /// Domain separation label of the signature.
    pub const LABEL: &'static [u8] = b"ward journal key v1";

    /// The bytes the organisation CA signs: for each of the label, the key id, the public key
    /// and `created_at` (i64 big-endian Unix seconds), a 4-byte big-endian length, then the
    /// bytes.
    pub fn signed_bytes(key_id: &str, public_key: &[u8], created_at: OffsetDateTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + public_key.len());
        for part in [
            Self::LABEL,
            key_id.as_bytes(),
            public_key,
            &created_at.unix_timestamp().to_be_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

/// `GET /v1/journal-keys`: every journal key the organisation has installed, oldest first.
/// Empty when no journal is configured. Senders seal to the newest; recipients check copies
/// against whichever key the copy names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalKeyList {
    /// Keys, oldest first.
    pub keys: Vec<SignedJournalKey>,
}

/// `POST /v1/journal/mismatch`: a recipient refused a message because the journal copy the
/// server delivered does not match the message. Ids only; recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalMismatchReport {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The refused message.
    pub message_id: MessageId,
    /// Its seq.
    pub seq: u64,
}

/// `GET /v1/compliance/journal` (compliance role): a page of the journal archive, ascending
/// by `archive_seq`. Copies are ciphertext; the officer decrypts them offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalArchivePage {
    /// Entries.
    pub entries: Vec<JournalArchiveEntry>,
    /// True when more entries match after the last one.
    pub more: bool,
}

/// One archived journal copy with the server's routing metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalArchiveEntry {
    /// Position in the archive, for paging (`after`).
    pub archive_seq: u64,
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its seq.
    pub seq: u64,
    /// Sending user, as the server authenticated it.
    pub sender_user_id: crate::UserId,
    /// Their username, if the user still exists.
    pub sender_username: Option<crate::Username>,
    /// Sending device.
    pub sender_device_id: crate::DeviceId,
    /// When the server accepted the message.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The copy.
    pub copy: JournalCopy,
}
