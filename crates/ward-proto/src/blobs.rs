//! Encrypted attachment blobs on the wire (ADR 0015): creating an upload, sending its bytes in
//! order (resumable), completing it with the ciphertext hash, and downloading ranges.
//!
//! The server only ever sees ciphertext: the key, file name and media type travel inside the
//! MLS message's content. These bodies carry sizes, ids and the SHA-256 of the ciphertext.
//!
//! Endpoints (all with the device's bearer token):
//! - `POST /v1/conversations/{id}/blobs` with [`CreateBlobRequest`] → 201 [`BlobUpload`]. Only a
//!   member device of the conversation may upload; 413 when `size` is over the organisation's
//!   attachment size limit, 409 (code `conflict`) when the organisation's quota would be
//!   exceeded; both messages name the limit.
//! - `PUT /v1/blobs/{blob}?offset=N` with the raw bytes (`application/octet-stream`, at most
//!   [`BlobUpload::part_size`] bytes) → 200 [`BlobUpload`]. `N` must equal `received` (409
//!   naming the expected offset otherwise: a chunk out of order, or a duplicate); bytes past
//!   the announced size are refused (413). Only the uploading device may write.
//! - `GET /v1/blobs/{blob}/upload` → [`BlobUpload`]: where to resume an interrupted upload.
//! - `POST /v1/blobs/{blob}/complete` with [`CompleteBlobRequest`] → 200 [`BlobUpload`] in
//!   state `complete`. 422 when fewer bytes than announced were received (naming both counts)
//!   or when the hash of what was received is not `sha256` (the upload is then discarded).
//! - `GET /v1/blobs/{blob}` → 200 with the ciphertext, or 206 for a `Range: bytes=a-b` header
//!   (one range); `Content-Length` set, the body streamed. 404 unknown blob, 403 when the
//!   device is not a member of the blob's conversation, 409 while still uploading, 416 for an
//!   unsatisfiable range.
//! - `DELETE /v1/blobs/{blob}` → 204: the uploader abandons an upload (complete blobs follow
//!   the conversation's retention instead).
//!
//! An application message that carries attachments names their blob ids in
//! `SendEnvelopeRequest::blobs`, so the server can tie each blob's life to the messages that
//! reference it (retention, legal hold, erasure, collection of unreferenced blobs).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ConversationId;

/// Most blob ids one message may reference: 32 attachments and a thumbnail for each.
pub const MAX_BLOBS_PER_MESSAGE: usize = 64;

/// Media types an organisation refuses by default: executables and code of every platform
/// the type sniffer knows, and shell scripts.
pub const DEFAULT_DENIED_MEDIA_TYPES: &[&str] = &[
    "application/x-executable",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-mach-binary",
    "application/java",
    "application/java-archive",
    "application/vnd.android.dex",
    "application/vnd.android.dey",
    "application/vnd.android.package-archive",
    "application/wasm",
    "application/x-llvm",
    "application/x-shockwave-flash",
    "text/x-shellscript",
    "application/x-sh",
];

/// File extensions refused by default (lowercase, without the dot): executables and scripts
/// that a double click runs.
pub const DEFAULT_DENIED_EXTENSIONS: &[&str] = &[
    "exe", "dll", "com", "scr", "msi", "bat", "cmd", "ps1", "vbs", "js", "jse", "wsf", "sh", "jar",
    "apk", "app", "elf", "bin", "so", "dylib", "class", "wasm",
];

/// Most entries in each refused list of the attachment policy.
pub const MAX_DENIED_ENTRIES: usize = 200;

/// `GET /v1/attachment-policy` (any session): what the organisation lets a client attach.
/// Sending clients apply the type lists before encrypting (the server sees only ciphertext
/// and enforces the size limit and quota itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentPolicyInfo {
    /// Largest attachment ciphertext one upload may announce, bytes.
    pub max_bytes: u64,
    /// Refused media types (`type/subtype`, lowercase), by content and by declaration.
    pub denied_media_types: Vec<String>,
    /// Refused file extensions, lowercase without the dot.
    pub denied_extensions: Vec<String>,
}

/// Checks and normalises (trim, lowercase, sort, dedup) a refused media type list.
pub fn check_denied_media_types(list: Vec<String>) -> Result<Vec<String>, String> {
    check_list(list, "media type", |t| {
        let ok = t.len() <= 127
            && t.split_once('/').is_some_and(|(a, b)| {
                let part = |p: &str| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
                };
                part(a) && part(b)
            });
        ok.then_some(())
            .ok_or("is not a media type like application/x-msdownload")
    })
}

/// Checks and normalises a refused extension list (a leading dot is dropped).
pub fn check_denied_extensions(list: Vec<String>) -> Result<Vec<String>, String> {
    let list = list
        .into_iter()
        .map(|e| e.trim().trim_start_matches('.').to_owned())
        .collect();
    check_list(list, "extension", |e| {
        let ok = (1..=16).contains(&e.len()) && e.bytes().all(|c| c.is_ascii_alphanumeric());
        ok.then_some(())
            .ok_or("is not a file extension (1 to 16 letters or digits, e.g. exe)")
    })
}

fn check_list(
    list: Vec<String>,
    what: &str,
    valid: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<Vec<String>, String> {
    if list.len() > MAX_DENIED_ENTRIES {
        return Err(format!(
            "at most {MAX_DENIED_ENTRIES} refused {what}s (got {})",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let item = item.trim().to_ascii_lowercase();
        valid(&item).map_err(|why| format!("refused {what} {item:?} {why}"))?;
        out.push(item);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `POST /v1/conversations/{id}/blobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateBlobRequest {
    /// Exact size of the ciphertext that will be uploaded, in bytes (at least 1).
    pub size: u64,
}

/// `POST /v1/blobs/{blob}/complete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompleteBlobRequest {
    /// SHA-256 of the whole ciphertext, lowercase hex (64 characters).
    pub sha256: String,
}

/// State of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlobUploadState {
    /// Bytes are still arriving; resume at `received`.
    Uploading,
    /// Every byte arrived and the hash matched; the blob can be downloaded.
    Complete,
}

/// An upload or a stored blob, as the server reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlobUpload {
    /// Blob id (referenced from the attachment descriptor inside the MLS content).
    pub blob_id: uuid::Uuid,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Announced ciphertext size, bytes.
    pub size: u64,
    /// Bytes received so far, contiguous from 0: the next `PUT` starts here.
    pub received: u64,
    /// The most bytes one `PUT` may carry.
    pub part_size: u64,
    /// State.
    pub state: BlobUploadState,
    /// When the upload was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Check a hex SHA-256 as sent in [`CompleteBlobRequest`]: 64 lowercase hex digits.
pub fn check_sha256_hex(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err("sha256 must be 64 lowercase hexadecimal digits".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_checked() {
        assert!(check_sha256_hex(&"ab".repeat(32)).is_ok());
        assert!(check_sha256_hex(&"AB".repeat(32)).is_err());
        assert!(check_sha256_hex(&"ab".repeat(31)).is_err());
        assert!(check_sha256_hex(&"zz".repeat(32)).is_err());
    }
}
