//! Encrypted attachment blobs (ADR 0015): the records of uploads and stored blobs, and
//! [`BlobStore`]. The bytes themselves live in an object store; the database keeps only what the
//! server needs to resume, verify, authorise, account and collect: no key, no file name, no
//! media type (those travel inside the MLS message).

use async_trait::async_trait;
use time::OffsetDateTime;
use ward_proto::{ConversationId, DeviceId, MessageId, UserId};

use crate::StoreResult;

/// Where an upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlobState {
    /// Chunks are arriving; `received` bytes are stored, contiguous from offset 0.
    Uploading,
    /// Every byte arrived and the ciphertext hash was verified; downloadable.
    Complete,
}

impl BlobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Uploading => "uploading",
            BlobState::Complete => "complete",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uploading" => Some(BlobState::Uploading),
            "complete" => Some(BlobState::Complete),
            _ => None,
        }
    }
}

/// One blob: an upload in progress or a stored ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Random id (UUIDv4), chosen by the server when the upload is created.
    pub id: uuid::Uuid,
    /// The conversation the blob belongs to: only its members may download it, and its
    /// retention and erasure apply to the blob.
    pub conversation_id: ConversationId,
    /// The uploading user.
    pub uploader_user_id: UserId,
    /// The uploading device.
    pub uploader_device_id: DeviceId,
    /// The ciphertext length announced when the upload was created, in bytes.
    pub size: u64,
    /// Bytes stored so far, contiguous from offset 0.
    pub received: u64,
    /// SHA-256 of the ciphertext, set when the upload completes.
    pub sha256: Option<[u8; 32]>,
    /// Where the upload stands.
    pub state: BlobState,
    /// When the upload was created.
    pub created_at: OffsetDateTime,
    /// Last change (chunk stored, completion).
    pub updated_at: OffsetDateTime,
}

/// Blob records. Every method is one transaction.
#[async_trait]
pub trait BlobStore {
    /// Record a new upload (state `Uploading`, nothing received) if the sizes of all blobs plus
    /// this one stay within `quota_bytes`; returns false, writing nothing, when they would
    /// not. `Conflict("blob")` for a duplicate id, `NotFound("conversation")` for an unknown
    /// conversation.
    async fn create_blob(&self, blob: &Blob, quota_bytes: u64) -> StoreResult<bool>;
    /// By id.
    async fn blob(&self, id: uuid::Uuid) -> StoreResult<Option<Blob>>;
    /// Move `received` from `from` to `to` for an upload still in progress, if it is at
    /// `from` now and `to` does not pass its size. Returns false, changing nothing, otherwise
    /// (a chunk out of order, a duplicate, a completed or unknown blob).
    async fn advance_blob(
        &self,
        id: uuid::Uuid,
        from: u64,
        to: u64,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Mark an upload complete with its verified hash, if every byte was received. Returns
    /// false, changing nothing, otherwise.
    async fn complete_blob(
        &self,
        id: uuid::Uuid,
        sha256: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Delete one blob record. Returns false if there was none.
    async fn delete_blob(&self, id: uuid::Uuid) -> StoreResult<bool>;
    /// Delete every blob record of a conversation (for retention, legal hold release and
    /// erasure, which delete by conversation) and return their ids, so the caller removes
    /// the objects.
    async fn delete_conversation_blobs(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Vec<uuid::Uuid>>;
    /// Uploads still in progress whose last change is before `before`, oldest first, at most
    /// `limit`: abandoned uploads for the collector.
    async fn stale_uploads(&self, before: OffsetDateTime, limit: usize) -> StoreResult<Vec<Blob>>;
    /// Sum of the sizes of all blobs (uploads count with their announced size), in bytes.
    async fn blob_bytes(&self) -> StoreResult<u64>;
    /// Record that `message` (of `conversation`) references `blobs` (idempotent: a
    /// reference recorded before is kept). Returns false, writing nothing, unless every blob
    /// is a complete blob of `conversation`.
    async fn add_blob_refs(
        &self,
        conversation: ConversationId,
        message: MessageId,
        blobs: &[uuid::Uuid],
    ) -> StoreResult<bool>;
    /// Drop the references of `messages` that are gone from both the envelopes and the
    /// journal archive (a message whose journal copy is kept, for its longer retention or a
    /// hold, keeps its blobs for the compliance export), then delete the records of the blobs
    /// those messages referenced that no message references any more, and return their ids,
    /// so the caller removes the objects. Blobs still referenced by a kept message stay.
    async fn release_blob_refs(&self, messages: &[MessageId]) -> StoreResult<Vec<uuid::Uuid>>;
    /// Complete blobs that no message references and whose last change is before `before`,
    /// oldest first, at most `limit`: uploaded but never sent, for the collector.
    async fn unreferenced_blobs(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<Blob>>;
}
