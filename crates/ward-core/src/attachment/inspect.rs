//! Checks before encryption: the organisation's type policy, the real type by content against
//! the declared one (`infer`), and image metadata stripping (`img-parts`).

use img_parts::jpeg::{Jpeg, markers};
use img_parts::png::Png;
use serde::{Deserialize, Serialize};

use super::{AttachmentError, MAX_ATTACHMENT_BYTES};

/// How many leading bytes of a file [`sniff`] and [`inspect`] look at.
pub const SNIFF_BYTES: usize = 8192;

/// Largest JPEG or PNG whose metadata [`strip_metadata`] removes (32 MiB). Stripping parses the
/// whole image in memory; a larger image is refused rather than sent with its metadata.
pub const MAX_IMAGE_STRIP_BYTES: u64 = 32 * 1024 * 1024;

pub use ward_proto::{DEFAULT_DENIED_EXTENSIONS, DEFAULT_DENIED_MEDIA_TYPES};

/// The organisation's attachment policy as the sending client applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPolicy {
    /// Largest attachment, in bytes.
    pub max_bytes: u64,
    /// Refused media types (by content and by declaration).
    pub denied_media_types: Vec<String>,
    /// Refused file extensions, lowercase without the dot.
    pub denied_extensions: Vec<String>,
}

impl Default for AttachmentPolicy {
    /// 2 GiB, executables and scripts refused.
    fn default() -> Self {
        AttachmentPolicy {
            max_bytes: 2 * 1024 * 1024 * 1024,
            denied_media_types: DEFAULT_DENIED_MEDIA_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            denied_extensions: DEFAULT_DENIED_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl From<ward_proto::AttachmentPolicyInfo> for AttachmentPolicy {
    fn from(p: ward_proto::AttachmentPolicyInfo) -> Self {
        AttachmentPolicy {
            max_bytes: p.max_bytes,
            denied_media_types: p.denied_media_types,
            denied_extensions: p.denied_extensions,
        }
    }
}

/// What [`inspect`] concluded: the media type to put into the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The media type for the descriptor: the detected one when the declaration was generic
    /// (`application/octet-stream`), otherwise the declared one (which the content matched).
    pub media_type: String,
    /// The type found in the content, if any.
    pub detected: Option<String>,
}

/// The media type for a file name's extension (a small table of clinical file types), or
/// `application/octet-stream`.
pub fn media_type_for_file_name(file_name: &str) -> &'static str {
    let ext = extension(file_name);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heif",
        Some("tif" | "tiff") => "image/tiff",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/m4a",
        Some("wav") => "audio/x-wav",
        Some("ogg" | "oga") => "audio/ogg",
        Some("opus") => "audio/opus",
        Some("flac") => "audio/x-flac",
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        Some("dcm") => "application/dicom",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The media type `head` (the first bytes of a file) shows, if it is one `infer` knows, an
/// ELF executable, or a script with a `#!` line.
pub fn sniff(head: &[u8]) -> Option<String> {
    if let Some(t) = infer::get(head) {
        return Some(t.mime_type().to_string());
    }
    // `infer` wants a full ELF header (more than 52 bytes); the magic alone is enough to refuse.
    if head.starts_with(b"\x7fELF") {
        return Some("application/x-executable".to_string());
    }
    if head.starts_with(b"#!") {
        return Some("text/x-shellscript".to_string());
    }
    None
}

/// Applies the policy and the type check to one file before it is encrypted.
///
/// `head` is the file's first [`SNIFF_BYTES`] (or all of it when shorter), `size` its length.
/// Refused: a file over the policy's (or this version's) limit, a denied extension, declared
/// type or detected type (so an executable renamed `scan.pdf` is refused as an executable), and
/// content of another type than declared. Content `infer` does not recognise is accepted only
/// for declared types it would not recognise either (text, CSV, …).
pub fn inspect(
    policy: &AttachmentPolicy,
    file_name: &str,
    declared: &str,
    head: &[u8],
    size: u64,
) -> Result<Inspection, AttachmentError> {
    let max = policy.max_bytes.min(MAX_ATTACHMENT_BYTES);
    if size > max {
        return Err(AttachmentError::TooLarge { size, max });
    }
    let declared = essence(declared);
    let denied = |t: &str| policy.denied_media_types.iter().any(|d| d == t);
    let detected = sniff(&head[..head.len().min(SNIFF_BYTES)]);
    if let Some(d) = &detected
        && denied(d)
    {
        return Err(AttachmentError::Forbidden { what: d.clone() });
    }
    if denied(&declared) {
        return Err(AttachmentError::Forbidden { what: declared });
    }
    if let Some(ext) = extension(file_name)
        && policy.denied_extensions.contains(&ext)
    {
        return Err(AttachmentError::Forbidden {
            what: format!(".{ext}"),
        });
    }
    match detected {
        Some(d) if declared == "application/octet-stream" => Ok(Inspection {
            media_type: d.clone(),
            detected: Some(d),
        }),
        Some(d) if same_type(&declared, &d) => Ok(Inspection {
            media_type: declared,
            detected: Some(d),
        }),
        Some(d) => Err(AttachmentError::TypeMismatch {
            declared,
            detected: d,
        }),
        None if infer::is_mime_supported(&declared) => Err(AttachmentError::TypeMismatch {
            declared,
            detected: "unknown".to_string(),
        }),
        None => Ok(Inspection {
            media_type: declared,
            detected: None,
        }),
    }
}

/// Removes metadata from a JPEG or PNG and returns the image with its pixels untouched; other
/// types come back unchanged.
///
/// JPEG: every APPn segment except JFIF (APP0), an ICC profile (APP2 `ICC_PROFILE`) and Adobe's
/// colour transform (APP14) is dropped (EXIF with GPS and serial numbers, XMP, IPTC, MakerNotes,
/// MPF secondary images), and so are comments. The frame, tables and entropy-coded scans are
/// kept byte for byte. PNG: only the chunks that define the pixels and their colour are kept
/// (`IHDR`, `PLTE`, `IDAT`, `IEND`, `tRNS`, `gAMA`, `cHRM`, `sRGB`, `iCCP`, `sBIT`, `pHYs`,
/// and the APNG chunks `acTL`, `fcTL`, `fdAT`); `eXIf`, text and time chunks go.
///
/// HEIF, TIFF, WebP and AVIF images are refused with [`AttachmentError::Image`]: they carry
/// EXIF that this version cannot strip. The EXIF orientation goes with the EXIF block, so a
/// rotated phone photo may show rotated.
pub fn strip_metadata(media_type: &str, data: Vec<u8>) -> Result<Vec<u8>, AttachmentError> {
    let kind = essence(media_type);
    if kind != "image/jpeg" && kind != "image/png" {
        if CANNOT_STRIP.contains(&kind.as_str()) {
            return Err(AttachmentError::Image(format!(
                "metadata cannot be stripped from {kind} yet; convert the image to JPEG or PNG"
            )));
        }
        return Ok(data);
    }
    let size = data.len() as u64;
    if size > MAX_IMAGE_STRIP_BYTES {
        return Err(AttachmentError::ImageTooLarge {
            size,
            max: MAX_IMAGE_STRIP_BYTES,
        });
    }
    let bytes = img_parts::Bytes::from(data);
    if kind == "image/jpeg" {
        let mut jpeg =
            Jpeg::from_bytes(bytes).map_err(|e| AttachmentError::Image(e.to_string()))?;
        // img-parts parses the segments up to the first scan; that scan's segment keeps
        // everything after it (later scans of a progressive JPEG, and any trailer after the end
        // of the image) as its "entropy" bytes, which `clean_jpeg_tail` walks.
        let mut head = Vec::new();
        let mut tail = None;
        for segment in jpeg.segments_mut().drain(..) {
            if !keep_jpeg_segment(segment.marker(), segment.contents()) {
                continue;
            }
            if segment.has_entropy() {
                let encoded = segment.encoder().bytes();
                let header = 2 + 2 + segment_len(&encoded)?;
                head.extend_from_slice(&encoded[..header]);
                tail = Some(encoded.slice(header..));
            } else {
                head.extend_from_slice(&segment.encoder().bytes());
            }
        }
        let tail = tail.ok_or_else(|| AttachmentError::Image("JPEG has no image scan".into()))?;
        let mut out = Vec::with_capacity(2 + head.len() + tail.len());
        out.extend_from_slice(&[0xFF, markers::SOI]);
        out.extend_from_slice(&head);
        clean_jpeg_tail(&tail, &mut out)?;
        Ok(out)
    } else {
        let mut png = Png::from_bytes(bytes).map_err(|e| AttachmentError::Image(e.to_string()))?;
        png.chunks_mut()
            .retain(|c| KEPT_PNG_CHUNKS.contains(&&c.kind()));
        Ok(png.encoder().bytes().to_vec())
    }
}

/// Image types that carry EXIF (with location) that this version cannot strip: refused rather
/// than sent with their metadata.
const CANNOT_STRIP: &[&str] = &[
    "image/heif",
    "image/heic",
    "image/tiff",
    "image/webp",
    "image/avif",
];

const KEPT_PNG_CHUNKS: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

fn keep_jpeg_segment(marker: u8, contents: &[u8]) -> bool {
    match marker {
        markers::APP0 => contents.starts_with(b"JFIF\0") || contents.starts_with(b"JFXX\0"),
        markers::APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        markers::APP14 => contents.starts_with(b"Adobe"),
        markers::APP1..=markers::APP15 | markers::COM => false,
        _ => true,
    }
}

/// The length field of an encoded segment (`FF mm LL LL …`), minus its own two bytes.
fn segment_len(encoded: &[u8]) -> Result<usize, AttachmentError> {
    match encoded {
        [0xFF, _, hi, lo, ..] => Ok(usize::from(u16::from_be_bytes([*hi, *lo])).saturating_sub(2)),
        _ => Err(AttachmentError::Image("JPEG segment is truncated".into())),
    }
}

/// Copies the JPEG stream after the first scan header: entropy-coded data (with its stuffed
/// `FF 00` bytes and restart markers) and the segments of later scans, dropping metadata
/// segments, fill bytes, and everything after the end-of-image marker.
fn clean_jpeg_tail(tail: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
    let truncated = || AttachmentError::Image("JPEG ends before its end-of-image marker".into());
    let mut i = 0;
    while i < tail.len() {
        if tail[i] != 0xFF {
            out.push(tail[i]);
            i += 1;
            continue;
        }
        let marker = *tail.get(i + 1).ok_or_else(truncated)?;
        match marker {
            // A stuffed 0xFF data byte or a restart marker: part of the scan.
            0x00 | 0xD0..=0xD7 => {
                out.extend_from_slice(&tail[i..i + 2]);
                i += 2;
            }
            // A fill byte before a marker.
            0xFF => i += 1,
            markers::EOI => {
                out.extend_from_slice(&[0xFF, markers::EOI]);
                return Ok(());
            }
            _ => {
                let len_bytes = tail.get(i + 2..i + 4).ok_or_else(truncated)?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let end = i + 2 + len;
                let segment = tail.get(i..end).ok_or_else(truncated)?;
                if len < 2 {
                    return Err(AttachmentError::Image(
                        "JPEG segment length is invalid".into(),
                    ));
                }
                if keep_jpeg_segment(marker, &segment[4..]) {
                    out.extend_from_slice(segment);
                }
                i = end;
            }
        }
    }
    Err(truncated())
}

/// The lowercase `type/subtype` of a media type, without parameters.
pub(super) fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The lowercase extension of a file name, if any.
fn extension(file_name: &str) -> Option<String> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// Two names of one type: equal, or aliases `infer` and the common tables disagree on.
fn same_type(declared: &str, detected: &str) -> bool {
    const ALIASES: &[&[&str]] = &[
        &["audio/x-wav", "audio/wav", "audio/wave", "audio/vnd.wave"],
        &["audio/m4a", "audio/mp4", "audio/x-m4a"],
        &["audio/mpeg", "audio/mp3"],
        &["audio/x-flac", "audio/flac"],
        &["image/jpeg", "image/jpg", "image/pjpeg"],
        &["image/heif", "image/heic"],
        &["video/mp4", "audio/mp4"],
    ];
    declared == detected
        || ALIASES
            .iter()
            .any(|set| set.contains(&declared) && set.contains(&detected))
}
