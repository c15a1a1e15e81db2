//! Encrypted attachments (ADR 0015): photos, ECGs, PDFs, audio and video sent beside a message.
//!
//! A file never travels inside the MLS message. The sender:
//! 1. checks it against the organisation's [`AttachmentPolicy`] and its real type by content
//!    against the declared one ([`inspect`]), and strips image metadata ([`strip_metadata`]);
//! 2. encrypts it with a fresh random key in fixed-size chunks ([`Encryptor`]: the STREAM
//!    construction of the `aead` crate, big-endian 32-bit counter, over ChaCha20-Poly1305), so
//!    no more than one chunk is in memory at a time;
//! 3. uploads the ciphertext as a blob, and puts an [`AttachmentDescriptor`] (the key, the
//!    ciphertext's SHA-256, the sizes, the media type and the file name) into the message
//!    content ([`MessageContent::attachments`](crate::MessageContent::attachments)), which the
//!    MLS message and its compliance journal copy both carry.
//!
//! The recipient downloads the blob and feeds it to a [`Decryptor`] built from the descriptor.
//! Every chunk is authenticated; reordered, dropped, appended or altered chunks, a truncated
//! stream and a ciphertext whose hash differs from the descriptor's are all refused. Plaintext
//! comes out chunk by chunk before the end of the stream is checked, so a caller must write it
//! to a temporary file and keep it only after [`Decryptor::finish`] succeeded.
//!
//! Images also get a small preview ([`make_thumbnail`]: at most 320x320, JPEG), encrypted as
//! its own blob with its own key and described by [`AttachmentDescriptor::thumbnail`].
//!
//! This module is sans-I/O: it takes bytes in and gives bytes out; randomness is an input.

mod inspect;
mod stream;
mod thumbnail;

use std::fmt;

use serde::{Deserialize, Serialize};
use ward_proto::Bytes;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use inspect::{
    AttachmentPolicy, DEFAULT_DENIED_EXTENSIONS, DEFAULT_DENIED_MEDIA_TYPES, Inspection,
    MAX_IMAGE_STRIP_BYTES, SNIFF_BYTES, inspect, media_type_for_file_name, sniff, strip_metadata,
};
pub use stream::{Decryptor, EncryptedBlob, Encryptor};
pub use thumbnail::{
    MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_DECODE_BYTES, MAX_THUMBNAIL_SOURCE_BYTES,
    MAX_THUMBNAIL_SOURCE_PIXELS, MAX_THUMBNAIL_SOURCE_SIDE, THUMBNAIL_JPEG_QUALITY,
    THUMBNAIL_MAX_SIDE, THUMBNAIL_MEDIA_TYPE, THUMBNAIL_TARGET_BYTES, Thumbnail, ThumbnailError,
    fit, make_thumbnail, thumbnail_supported,
};

/// Key length of the per-file key (ChaCha20-Poly1305), in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of the STREAM nonce prefix (12-byte ChaCha20-Poly1305 nonce minus the 4-byte
/// counter and the 1-byte last-chunk flag), in bytes.
pub const NONCE_PREFIX_BYTES: usize = 7;
/// Authentication tag added to every chunk, in bytes.
pub const TAG_BYTES: usize = 16;
/// Default plaintext chunk size (64 KiB): one chunk is the most the sender or the recipient
/// holds in memory at a time.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Smallest allowed plaintext chunk size (1 KiB).
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest allowed plaintext chunk size (4 MiB): bounds the recipient's buffer.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Largest attachment this version handles (64 GiB), whatever the organisation allows.
pub const MAX_ATTACHMENT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Largest file name, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Largest media type string, in bytes.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 32;

/// Associated data of every chunk: binds the ciphertext to this construction and version.
pub(crate) const CHUNK_AAD: &[u8] = b"ward-attachment-v1";

/// Why an attachment could not be checked, encrypted or decrypted.
///
/// Kinds (STYLE.md §4): API misuse (`ChunkSize`), refused input (`Forbidden`, `TypeMismatch`,
/// `TooLarge`, `ImageTooLarge`, `Image`), invalid peer input (`InvalidDescriptor`, `Corrupt`,
/// `Truncated`, `TrailingData`, `HashMismatch`). No message carries key material or content.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachmentError {
    /// A descriptor field is out of range or malformed (a peer's bug or a forged message).
    #[error("invalid attachment descriptor field `{field}`: {reason}")]
    InvalidDescriptor {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The chunk size is outside [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
    #[error("chunk size {0} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")]
    ChunkSize(u32),
    /// The organisation's policy forbids this type (by content, declared type or extension).
    #[error("attachment type {what} is forbidden by the organisation's policy")]
    Forbidden {
        /// The forbidden media type or file extension.
        what: String,
    },
    /// The content is not of the declared type (e.g. an executable named `scan.pdf`).
    #[error("attachment content is {detected}, not the declared {declared}")]
    TypeMismatch {
        /// The declared media type.
        declared: String,
        /// The type found in the content (`unknown` when none was recognised).
        detected: String,
    },
    /// The file exceeds the organisation's (or this version's) size limit.
    #[error("attachment is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An image is too large to have its metadata stripped in memory.
    #[error("image is {size} bytes, more than the {max}-byte limit for metadata stripping")]
    ImageTooLarge {
        /// The image's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An image declared as JPEG or PNG could not be parsed to strip its metadata.
    #[error("image could not be parsed to strip its metadata: {0}")]
    Image(String),
    /// A chunk failed authentication: altered, reordered, from another file or another key.
    #[error("attachment chunk {chunk} failed authentication (altered, reordered or wrong key)")]
    Corrupt {
        /// Zero-based index of the failing chunk.
        chunk: u64,
    },
    /// The ciphertext ended before its last chunk.
    #[error("attachment ciphertext is truncated: {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes the descriptor announces.
        expected: u64,
    },
    /// More ciphertext arrived than the descriptor announces.
    #[error("attachment ciphertext is longer than the {expected} bytes announced")]
    TrailingData {
        /// Bytes the descriptor announces.
        expected: u64,
    },
    /// The ciphertext's SHA-256 differs from the descriptor's.
    #[error("attachment ciphertext hash does not match the descriptor")]
    HashMismatch,
}

/// A per-file attachment key. Zeroized on drop; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey([u8; KEY_BYTES]);

impl AttachmentKey {
    /// A fresh random key.
    pub fn generate(rng: &mut (impl rand::CryptoRng + rand::RngCore)) -> Self {
        let mut key = [0u8; KEY_BYTES];
        rng.fill_bytes(&mut key);
        AttachmentKey(key)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        AttachmentKey(bytes)
    }
}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(redacted)")
    }
}

impl Serialize for AttachmentKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Bytes(self.0.to_vec()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for AttachmentKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut bytes = Bytes::deserialize(d)?;
        let key = <[u8; KEY_BYTES]>::try_from(bytes.0.as_slice())
            .map_err(|_| serde::de::Error::custom("attachment key must be 32 bytes"));
        bytes.0.zeroize();
        key.map(AttachmentKey)
    }
}

/// Everything a recipient needs to fetch, check and decrypt one attachment. Carried in
/// [`MessageContent::attachments`](crate::MessageContent::attachments), so inside the MLS
/// message and its journal copy; never sent to the server on its own.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentDescriptor {
    /// The blob's id on the server (assigned when the upload was created).
    pub blob_id: uuid::Uuid,
    /// The per-file key.
    pub key: AttachmentKey,
    /// The STREAM nonce prefix ([`NONCE_PREFIX_BYTES`] bytes).
    pub nonce: Bytes,
    /// Plaintext chunk size in bytes.
    pub chunk_size: u32,
    /// Plaintext size in bytes (after metadata stripping).
    pub size: u64,
    /// SHA-256 of the whole ciphertext, lowercase hex.
    pub ciphertext_sha256: String,
    /// Media type, checked against the content by the sender (e.g. `image/jpeg`).
    pub media_type: String,
    /// The file's name as the sender had it (a name, never a path).
    pub file_name: String,
    /// A small encrypted preview for images, if the sender made one. A thumbnail has no
    /// thumbnail of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Box<AttachmentDescriptor>>,
}

impl AttachmentDescriptor {
    /// Builds the descriptor of an encrypted blob.
    pub fn new(
        blob_id: uuid::Uuid,
        blob: &EncryptedBlob,
        media_type: impl Into<String>,
        file_name: impl Into<String>,
    ) -> Result<Self, AttachmentError> {
        let d = AttachmentDescriptor {
            blob_id,
            key: blob.key.clone(),
            nonce: Bytes(blob.nonce.to_vec()),
            chunk_size: blob.chunk_size,
            size: blob.size,
            ciphertext_sha256: hex::encode(blob.ciphertext_sha256),
            media_type: media_type.into(),
            file_name: file_name.into(),
            thumbnail: None,
        };
        d.validate()?;
        Ok(d)
    }

    /// Length of the ciphertext this descriptor announces.
    pub fn ciphertext_len(&self) -> u64 {
        ciphertext_len(self.size, self.chunk_size)
    }

    /// Checks every field: lengths of key, nonce and hash, chunk size, size limit, a media type
    /// of the form `type/subtype`, and a file name that is a plain name (no path separators,
    /// control characters, `.` or `..`).
    pub fn validate(&self) -> Result<(), AttachmentError> {
        self.validate_inner(true)
    }

    fn validate_inner(&self, allow_thumbnail: bool) -> Result<(), AttachmentError> {
        let bad = |field, reason| Err(AttachmentError::InvalidDescriptor { field, reason });
        if self.nonce.len() != NONCE_PREFIX_BYTES {
            return bad("nonce", "must be 7 bytes");
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return bad("chunk_size", "must be between 1 KiB and 4 MiB");
        }
        if self.size > MAX_ATTACHMENT_BYTES {
            return bad("size", "exceeds the 64 GiB maximum");
        }
        if self.ciphertext_sha256.len() != 64
            || !self
                .ciphertext_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad("ciphertext_sha256", "must be 64 lowercase hex digits");
        }
        if !is_media_type(&self.media_type) {
            return bad("media_type", "must be a media type `type/subtype`");
        }
        if !is_file_name(&self.file_name) {
            return bad(
                "file_name",
                "must be 1 to 255 bytes without path separators or control characters",
            );
        }
        match &self.thumbnail {
            None => Ok(()),
            Some(_) if !allow_thumbnail => bad("thumbnail", "a thumbnail has no thumbnail"),
            Some(t) => {
                if !t.media_type.starts_with("image/") {
                    return bad("thumbnail.media_type", "must be an image type");
                }
                if t.size > MAX_THUMBNAIL_BYTES {
                    return bad(
                        "thumbnail.size",
                        "exceeds the 256 KiB maximum of a thumbnail",
                    );
                }
                t.validate_inner(false)
            }
        }
    }

    /// Decodes and validates a descriptor from JSON. Never panics, whatever the bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttachmentError> {
        let d: AttachmentDescriptor =
            serde_json::from_slice(bytes).map_err(|_| AttachmentError::InvalidDescriptor {
                field: "descriptor",
                reason: "not a JSON attachment descriptor",
            })?;
        d.validate()?;
        Ok(d)
    }

    /// The SHA-256 of the ciphertext as bytes (after [`validate`](Self::validate)).
    pub fn ciphertext_sha256_bytes(&self) -> Result<[u8; 32], AttachmentError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.ciphertext_sha256, &mut out).map_err(|_| {
            AttachmentError::InvalidDescriptor {
                field: "ciphertext_sha256",
                reason: "must be 64 lowercase hex digits",
            }
        })?;
        Ok(out)
    }
}

impl fmt::Debug for AttachmentDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file name can be PHI ("jane-doe-wound.jpg"); the key is secret.
        f.debug_struct("AttachmentDescriptor")
            .field("blob_id", &self.blob_id)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("media_type", &self.media_type)
            .field("file_name", &"(redacted)")
            .field("thumbnail", &self.thumbnail.is_some())
            .finish_non_exhaustive()
    }
}

/// Length of the ciphertext of a `size`-byte plaintext in `chunk_size` chunks: every chunk
/// adds a [`TAG_BYTES`] tag, and there is always at least one (possibly empty) last chunk.
pub fn ciphertext_len(size: u64, chunk_size: u32) -> u64 {
    let chunk = u64::from(chunk_size.max(1));
    let chunks = size.div_ceil(chunk).max(1);
    size + chunks * TAG_BYTES as u64
}

/// True for `type/subtype` (optionally with parameters) of printable ASCII token characters.
fn is_media_type(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_MEDIA_TYPE_BYTES {
        return false;
    }
    let essence = s.split(';').next().unwrap_or_default().trim();
    let mut parts = essence.splitn(2, '/');
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!((parts.next(), parts.next()), (Some(a), Some(b)) if token(a) && token(b))
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// True for a plain file name: 1 to 255 bytes, no `/`, `\`, NUL or control characters, not
/// `.` or `..`.
pub fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_FILE_NAME_BYTES
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests;
