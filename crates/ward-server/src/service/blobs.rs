//! Encrypted attachment blobs (ADRs 0015, 0017): uploads in parts, completion with the
//! ciphertext hash, ranged downloads, the message references that tie a blob's life to its
//! messages, and the collector of abandoned uploads and unreferenced blobs.
//!
//! The server sees ciphertext, sizes and ids only. Every step is audited per device with ids
//! and sizes: `blob.upload_create`, `blob.upload_complete`, `blob.upload_discard`,
//! `blob.download`, `blob.delete` (abandoned by the uploader, or released by retention or
//! erasure) and `blob.collect` (by the collector).

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use time::OffsetDateTime;
use ward_proto::{
    BlobUpload, BlobUploadState, CompleteBlobRequest, ConversationId, CreateBlobRequest, ErrorCode,
    MAX_BLOBS_PER_MESSAGE, MessageId, check_sha256_hex,
};
use ward_store::{Blob, BlobState};

use super::{Actor, AuthSession, Services};
use crate::error::{ApiError, ApiResult};
use crate::objects::{BlobObjects, Part};

/// An upload untouched this long is abandoned, and a complete blob no message references
/// after this long was never sent: the collector removes both.
pub const BLOB_GRACE: time::Duration = time::Duration::hours(24);
/// Blobs handled per collector batch.
const COLLECT_BATCH: usize = 100;

/// A download answer: the byte range and the body.
pub struct BlobDownload {
    /// Whole ciphertext length.
    pub total: u64,
    /// First byte sent.
    pub start: u64,
    /// One past the last byte sent.
    pub end: u64,
    /// Whether a `Range` was honoured (206).
    pub partial: bool,
    /// The bytes.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// What one collector run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Abandoned uploads.
    pub stale_uploads: u64,
    /// Complete blobs no message referenced.
    pub unreferenced: u64,
}

/// What one sweep of the object store removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs whose objects were in the store.
    pub blobs_seen: u64,
    /// Blobs whose objects had no record and were older than [`BLOB_GRACE`]: removed.
    pub orphans_removed: u64,
}

fn upload_info(b: &Blob, part_size: u64) -> BlobUpload {
    BlobUpload {
        blob_id: b.id,
        conversation_id: b.conversation_id,
        size: b.size,
        received: b.received,
        part_size,
        state: match b.state {
            BlobState::Complete => BlobUploadState::Complete,
            _ => BlobUploadState::Uploading,
        },
        created_at: b.created_at,
    }
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unprocessable, message)
}

fn storage_error(e: &object_store::Error) -> ApiError {
    ApiError::internal(&format_args!(
        "blob object store: {}",
        crate::error::error_chain(e)
    ))
}

/// Parse one `Range: bytes=…` against a blob of `total` bytes into `start..end`.
/// `Ok(None)`: no range asked for (or a unit other than bytes, which is ignored).
pub fn parse_range(header: Option<&str>, total: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::new(
            ErrorCode::RangeNotSatisfiable,
            format!("range {h:?} {why}; the blob has {total} bytes"),
        )
    };
    if spec.contains(',') {
        return Err(bad(
            "names several ranges, and only one is served per request",
        ));
    }
    let (a, b) = spec
        .trim()
        .split_once('-')
        .ok_or_else(|| bad("is not first-last"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| bad("is not first-last"))
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(bad("is empty")),
        // Suffix: the last n bytes.
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(bad("asks for no bytes"));
            }
            (total.saturating_sub(n), total)
        }
        (false, true) => (num(a)?, total),
        (false, false) => {
            let (s, e) = (num(a)?, num(b)?);
            if e < s {
                return Err(bad("ends before it starts"));
            }
            (s, e.saturating_add(1).min(total))
        }
    };
    if start >= total {
        return Err(bad("starts past the end"));
    }
    Ok(Some((start, end)))
}

impl Services {
    /// The blob object store (set at start).
    fn objects(&self) -> ApiResult<&BlobObjects> {
        self.blob_objects.get().map(|o| o.as_ref()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "blob storage is not configured on this server",
            )
        })
    }

    async fn device_is_member(&self, s: &AuthSession, c: ConversationId) -> ApiResult<bool> {
        Ok(self
            .store
            .member_devices(c)
            .await?
            .iter()
            .any(|d| d.device_id == s.device_id))
    }

    async fn blob_or_404(&self, id: uuid::Uuid) -> ApiResult<Blob> {
        self.store
            .blob(id)
            .await?
            .ok_or_else(|| ApiError::not_found("blob"))
    }

    /// A blob only its uploading device may write to.
    async fn own_upload(&self, s: &AuthSession, id: uuid::Uuid) -> ApiResult<Blob> {
        let b = self.blob_or_404(id).await?;
        if b.uploader_device_id != s.device_id {
            return Err(ApiError::forbidden(
                "only the device that created this upload may write to it",
            ));
        }
        Ok(b)
    }

    /// Start an upload into a conversation the caller's device is in; checks the
    /// organisation's size limit and quota. Audited `blob.upload_create`.
    pub async fn create_blob(
        &self,
        s: &AuthSession,
        conversation: ConversationId,
        req: CreateBlobRequest,
    ) -> ApiResult<BlobUpload> {
        let part_size = self.objects()?.part_size();
        self.member_conversation(s, conversation).await?;
        if !self.device_is_member(s, conversation).await? {
            return Err(ApiError::forbidden(
                "this device is not a member of the conversation",
            ));
        }
        let policy = self.policy();
        if req.size == 0 {
            return Err(ApiError::invalid("size must be at least 1 byte"));
        }
        if req.size > policy.attachment_max_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the attachment is {} bytes; the organisation's limit is {} bytes",
                    req.size, policy.attachment_max_bytes
                ),
            ));
        }
        let now = self.now();
        let blob = Blob {
            id: uuid::Uuid::new_v4(),
            conversation_id: conversation,
            uploader_user_id: s.user.id,
            uploader_device_id: s.device_id,
            size: req.size,
            received: 0,
            sha256: None,
            state: BlobState::Uploading,
            created_at: now,
            updated_at: now,
        };
        if !self
            .store
            .create_blob(&blob, policy.attachment_quota_bytes)
            .await?
        {
            let used = self.store.blob_bytes().await?;
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the organisation's attachment quota of {} bytes would be exceeded \
                     ({used} bytes in use, {} asked for)",
                    policy.attachment_quota_bytes, req.size
                ),
            ));
        }
        self.audit
            .record(
                &s.actor(),
                "blob.upload_create",
                Some(blob.id.to_string()),
                serde_json::json!({"conversation_id": conversation, "size": blob.size}),
            )
            .await?;
        Ok(upload_info(&blob, part_size))
    }

    /// Where an upload stands (its uploading device only).
    pub async fn blob_upload(&self, s: &AuthSession, id: uuid::Uuid) -> ApiResult<BlobUpload> {
        let part_size = self.objects()?.part_size();
        let b = self.own_upload(s, id).await?;
        Ok(upload_info(&b, part_size))
    }

    /// Store the bytes at `offset`, which must be where the upload stands. `declared_len` is
    /// the request's `Content-Length`, checked before reading. At most one part is held in
    /// memory; an interrupted body stores nothing.
    pub async fn put_blob_part<S, E>(
        &self,
        s: &AuthSession,
        id: uuid::Uuid,
        offset: u64,
        declared_len: Option<u64>,
        body: S,
    ) -> ApiResult<BlobUpload>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let objects = self.objects()?;
        let part_size = objects.part_size();
        let b = self.own_upload(s, id).await?;
        if b.state == BlobState::Complete {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this upload is already complete",
            ));
        }
        if offset != b.received {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "chunk at offset {offset} is out of order: the upload expects offset {}",
                    b.received
                ),
            ));
        }
        let remaining = b.size - b.received;
        let limit = remaining.min(part_size);
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                if remaining < part_size {
                    format!(
                        "the chunk passes the announced size: {remaining} of {} bytes are left",
                        b.size
                    )
                } else {
                    format!("a chunk may carry at most {part_size} bytes")
                },
            )
        };
        if declared_len.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let Some(_guard) = objects.begin_write(id) else {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "another chunk of this upload is being written; retry at offset {}",
                    b.received
                ),
            ));
        };
        let mut payload = object_store::PutPayloadMut::new();
        let mut len = 0u64;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                tracing::info!(blob = %id, error = %e, "blob chunk interrupted");
                ApiError::invalid(format!(
                    "the chunk was interrupted after {len} bytes; nothing was stored, resume at offset {offset}"
                ))
            })?;
            len += chunk.len() as u64;
            if len > limit {
                return Err(too_large());
            }
            payload.push(chunk);
        }
        if len == 0 {
            return Err(ApiError::invalid("the chunk is empty"));
        }
        if declared_len.is_some_and(|n| n != len) {
            return Err(ApiError::invalid(format!(
                "the chunk has {len} bytes but Content-Length said otherwise; resume at offset {offset}"
            )));
        }
        objects
            .put_part(id, offset, payload.freeze())
            .await
            .map_err(|e| storage_error(&e))?;
        let now = self.now();
        if !self
            .store
            .advance_blob(id, offset, offset + len, now)
            .await?
        {
            let at = self.store.blob(id).await?.map(|b| b.received);
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the upload moved on while this chunk was stored; it expects offset {}",
                    at.unwrap_or(offset)
                ),
            ));
        }
        Ok(upload_info(
            &Blob {
                received: offset + len,
                updated_at: now,
                ..b
            },
            part_size,
        ))
    }

    /// Finish an upload: every byte received and the SHA-256 of what is stored matches.
    /// A mismatch discards the upload (422). Audited `blob.upload_complete` or
    /// `blob.upload_discard`.
    pub async fn complete_blob(
        &self,
        s: &AuthSession,
        id: uuid::Uuid,
        req: CompleteBlobRequest,
    ) -> ApiResult<BlobUpload> {
        let objects = self.objects()?;
        let part_size = objects.part_size();
        check_sha256_hex(&req.sha256).map_err(ApiError::invalid)?;
        let mut want = [0u8; 32];
        hex::decode_to_slice(&req.sha256, &mut want)
            .map_err(|_| ApiError::invalid("sha256 must be 64 lowercase hexadecimal digits"))?;
        let b = self.own_upload(s, id).await?;
        if b.state == BlobState::Complete {
            // A retried completion with the same hash answers as the first did.
            return if b.sha256 == Some(want) {
                Ok(upload_info(&b, part_size))
            } else {
                Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this upload is already complete with another hash",
                ))
            };
        }
        if b.received < b.size {
            return Err(unprocessable(format!(
                "the upload is incomplete: {} of {} bytes received; resume at offset {}",
                b.received, b.size, b.received
            )));
        }
        let _guard = objects.begin_write(id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Conflict,
                "a chunk of this upload is still being written",
            )
        })?;
        let parts = objects.parts(id).await.map_err(|e| storage_error(&e))?;
        let hash = match BlobObjects::contiguous(&parts, b.size) {
            Some(parts) => Some(
                objects
                    .sha256(id, &parts)
                    .await
                    .map_err(|e| storage_error(&e))?,
            ),
            None => None,
        };
        if hash != Some(want) {
            let reason = if hash.is_some() {
                "hash_mismatch"
            } else {
                "parts_missing"
            };
            self.discard_blob(&s.actor(), &b, "blob.upload_discard", reason)
                .await?;
            return Err(unprocessable(if hash.is_some() {
                "the SHA-256 of the received ciphertext does not match sha256; the upload was \
                 discarded, start a new one"
            } else {
                "the stored parts of this upload are incomplete; the upload was discarded, start \
                 a new one"
            }));
        }
        let now = self.now();
        if !self.store.complete_blob(id, &want, now).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the upload changed while it was being completed",
            ));
        }
        self.audit
            .record(
                &s.actor(),
                "blob.upload_complete",
                Some(id.to_string()),
                serde_json::json!({"conversation_id": b.conversation_id, "size": b.size}),
            )
            .await?;
        Ok(upload_info(
            &Blob {
                state: BlobState::Complete,
                sha256: Some(want),
                updated_at: now,
                ..b
            },
            part_size,
        ))
    }

    /// Download a complete blob, whole or one range, if the caller's device is a member of
    /// its conversation. Audited `blob.download`.
    pub async fn download_blob(
        &self,
        s: &AuthSession,
        id: uuid::Uuid,
        range: Option<&str>,
    ) -> ApiResult<BlobDownload> {
        let b = self.blob_or_404(id).await?;
        // The compliance officer reads any blob, as she reads the whole journal archive that
        // holds the attachment keys (ADR 0017); the audit record says so.
        let compliance = s.user.role == ward_proto::Role::Compliance;
        if !compliance && !self.device_is_member(s, b.conversation_id).await? {
            return Err(ApiError::forbidden(
                "this device is not a member of the blob's conversation",
            ));
        }
        self.blob_body(&s.actor(), b, range, compliance).await
    }

    /// A complete blob for the compliance export in data mode (`ward compliance export
    /// --data`): the compliance role only; audited `blob.download` with `access: compliance`.
    pub async fn export_blob(
        &self,
        actor: &Actor,
        id: uuid::Uuid,
        range: Option<&str>,
    ) -> ApiResult<BlobDownload> {
        super::require_role(actor, &[ward_proto::Role::Compliance])?;
        let b = self.blob_or_404(id).await?;
        self.blob_body(actor, b, range, true).await
    }

    async fn blob_body(
        &self,
        actor: &Actor,
        b: Blob,
        range: Option<&str>,
        compliance: bool,
    ) -> ApiResult<BlobDownload> {
        let objects = self.objects()?;
        let id = b.id;
        if b.state != BlobState::Complete {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the blob is still uploading ({} of {} bytes)",
                    b.received, b.size
                ),
            ));
        }
        let asked = parse_range(range, b.size)?;
        let (start, end) = asked.unwrap_or((0, b.size));
        let parts = objects.parts(id).await.map_err(|e| storage_error(&e))?;
        let parts: Vec<Part> = BlobObjects::contiguous(&parts, b.size).ok_or_else(|| {
            ApiError::internal(&format_args!("blob {id} is complete but its parts are not"))
        })?;
        let mut details = serde_json::json!({
            "conversation_id": b.conversation_id, "size": b.size,
            "range": asked.map(|(a, z)| [a, z]),
        });
        if compliance {
            details["access"] = "compliance".into();
        }
        self.audit
            .record(actor, "blob.download", Some(id.to_string()), details)
            .await?;
        let body = objects
            .read(id, parts, start, end)
            .map(move |r| {
                r.map_err(|e| {
                    tracing::warn!(blob = %id, error = %e, "blob download failed mid-stream");
                    std::io::Error::other("blob store read failed")
                })
            })
            .boxed();
        Ok(BlobDownload {
            total: b.size,
            start,
            end,
            partial: asked.is_some(),
            body,
        })
    }

    /// The uploading device abandons an upload in progress. Audited `blob.delete`.
    pub async fn delete_upload(&self, s: &AuthSession, id: uuid::Uuid) -> ApiResult<()> {
        self.objects()?;
        let b = self.own_upload(s, id).await?;
        if b.state == BlobState::Complete {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a complete blob follows the retention of the messages that reference it; \
                 only uploads in progress can be abandoned",
            ));
        }
        self.discard_blob(&s.actor(), &b, "blob.delete", "abandoned")
            .await
    }

    /// Delete a blob's record and objects, audited with `action` and `reason`.
    async fn discard_blob(
        &self,
        actor: &Actor,
        b: &Blob,
        action: &str,
        reason: &str,
    ) -> ApiResult<()> {
        if self.store.delete_blob(b.id).await? {
            self.remove_objects(b.id).await;
            self.audit
                .record(
                    actor,
                    action,
                    Some(b.id.to_string()),
                    serde_json::json!({
                        "conversation_id": b.conversation_id, "size": b.size, "reason": reason,
                    }),
                )
                .await?;
        }
        Ok(())
    }

    /// Remove a blob's objects after its record is gone. A failure leaves unreachable
    /// ciphertext (no record points at it), logged for the operator.
    async fn remove_objects(&self, id: uuid::Uuid) {
        match self.blob_objects.get() {
            Some(o) => {
                if let Err(e) = o.delete(id).await {
                    tracing::warn!(blob = %id, error = %e, "could not delete blob objects");
                }
            }
            None => tracing::warn!(
                blob = %id,
                "blob record deleted without an object store; its objects stay until `ward serve` runs with this data directory"
            ),
        }
    }

    /// Check the blobs an application message names before it is appended: at most
    /// [`MAX_BLOBS_PER_MESSAGE`], no repeats, each a complete blob of `conversation`.
    pub(super) async fn check_message_blobs(
        &self,
        conversation: ConversationId,
        kind: ward_proto::EnvelopeKind,
        blobs: &[uuid::Uuid],
    ) -> ApiResult<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        if kind != ward_proto::EnvelopeKind::Application {
            return Err(ApiError::invalid("blobs are only for application messages"));
        }
        if blobs.len() > MAX_BLOBS_PER_MESSAGE {
            return Err(ApiError::invalid(format!(
                "a message may reference at most {MAX_BLOBS_PER_MESSAGE} blobs (got {})",
                blobs.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for id in blobs {
            if !seen.insert(id) {
                return Err(ApiError::invalid(format!("blob {id} is named twice")));
            }
            let Some(b) = self.store.blob(*id).await? else {
                return Err(unprocessable(format!("blob {id} does not exist")));
            };
            if b.conversation_id != conversation {
                return Err(unprocessable(format!(
                    "blob {id} belongs to another conversation"
                )));
            }
            if b.state != BlobState::Complete {
                return Err(unprocessable(format!(
                    "blob {id} is still uploading ({} of {} bytes); complete it before sending",
                    b.received, b.size
                )));
            }
        }
        Ok(())
    }

    /// Tie the blobs to the accepted message (also for a retried send, idempotently).
    pub(super) async fn reference_blobs(
        &self,
        conversation: ConversationId,
        message: MessageId,
        blobs: &[uuid::Uuid],
    ) -> ApiResult<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        if !self
            .store
            .add_blob_refs(conversation, message, blobs)
            .await?
        {
            return Err(unprocessable(format!(
                "message {message} was stored, but a blob it names was deleted meanwhile; \
                 upload the attachment again and send a new message"
            )));
        }
        Ok(())
    }

    /// After messages were deleted (retention, erasure): delete the blobs no remaining message
    /// references, records and objects. Blobs of held messages stay, because held messages
    /// are never deleted. Each is audited `blob.delete` with the rule.
    pub(super) async fn release_message_blobs(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        messages: &[MessageId],
        rule: &str,
    ) -> ApiResult<u64> {
        let gone = self.store.release_blob_refs(messages).await?;
        for id in &gone {
            self.remove_objects(*id).await;
            self.audit
                .record(
                    actor,
                    "blob.delete",
                    Some(id.to_string()),
                    serde_json::json!({"conversation_id": conversation, "reason": rule}),
                )
                .await?;
        }
        Ok(gone.len() as u64)
    }

    /// The sweep: objects whose blob record is gone (a deletion of objects that failed after
    /// the record was deleted, or a part written while its upload was being collected) and
    /// whose newest part is older than [`BLOB_GRACE`] on the service clock. Reads the whole
    /// listing and one record per stored blob, so the background jobs run it daily. Audited
    /// `blob.collect` with reason `orphaned_objects` per blob.
    pub async fn sweep_orphaned_objects(&self) -> ApiResult<SweepReport> {
        let objects = self.objects()?;
        let before = (self.now() - BLOB_GRACE).unix_timestamp();
        let stored = objects
            .stored_blobs()
            .await
            .map_err(|e| storage_error(&e))?;
        let mut report = SweepReport {
            blobs_seen: stored.len() as u64,
            ..SweepReport::default()
        };
        for (id, written) in stored {
            if written >= before || self.store.blob(id).await?.is_some() {
                continue;
            }
            if let Err(e) = objects.delete(id).await {
                tracing::warn!(blob = %id, error = %e, "could not delete orphaned blob objects");
                continue;
            }
            self.audit
                .record(
                    &Actor::system(),
                    "blob.collect",
                    Some(id.to_string()),
                    serde_json::json!({"reason": "orphaned_objects"}),
                )
                .await?;
            report.orphans_removed += 1;
        }
        Ok(report)
    }

    /// The collector: uploads untouched for [`BLOB_GRACE`] and complete blobs that no message
    /// referenced within [`BLOB_GRACE`] of completion. Run by the background jobs on the
    /// service clock; audited `blob.collect` per blob.
    pub async fn collect_blobs(&self) -> ApiResult<CollectReport> {
        let before: OffsetDateTime = self.now() - BLOB_GRACE;
        let actor = Actor::system();
        let mut report = CollectReport::default();
        loop {
            let stale = self.store.stale_uploads(before, COLLECT_BATCH).await?;
            for b in &stale {
                self.discard_blob(&actor, b, "blob.collect", "stale_upload")
                    .await?;
                report.stale_uploads += 1;
            }
            if stale.len() < COLLECT_BATCH {
                break;
            }
        }
        loop {
            let unref = self.store.unreferenced_blobs(before, COLLECT_BATCH).await?;
            for b in &unref {
                self.discard_blob(&actor, b, "blob.collect", "unreferenced")
                    .await?;
                report.unreferenced += 1;
            }
            if unref.len() < COLLECT_BATCH {
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(r("bytes=0-9").unwrap(), Some((0, 10)));
        assert_eq!(r("bytes=90-").unwrap(), Some((90, 100)));
        assert_eq!(r("bytes=-10").unwrap(), Some((90, 100)));
        assert_eq!(r("bytes=-1000").unwrap(), Some((0, 100)));
        assert_eq!(r("bytes=50-1000").unwrap(), Some((50, 100)));
        assert_eq!(r("items=0-1").unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=x-1",
            "bytes=-0",
            "bytes=-",
        ] {
            let e = r(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::RangeNotSatisfiable, "{bad}");
            assert!(e.message.contains("100 bytes"), "{bad}: {}", e.message);
        }
    }
}
