//! Attachment files on disk (ADR 0015): encrypt a file into a ciphertext file ready to upload,
//! and decrypt a downloaded ciphertext into a directory, streaming both ways (one chunk plus
//! one read buffer in memory; JPEG/PNG are read whole, at most 32 MiB, to strip metadata).
//! An image also gets a thumbnail (at most 320x320, JPEG), encrypted with its own key into its
//! own ciphertext file; when none can be made the image goes without one.
//!
//! A decrypted file appears under its final name only when every check passed: it is written
//! to a hidden temporary file in the same directory, synced, and then linked to a name that
//! does not exist yet (never overwriting), so a failure leaves no partial file behind.
//!
//! These functions do blocking file I/O; async callers run them in `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::{CryptoRng, RngCore};
use ward_core::attachment::{
    AttachmentDescriptor, AttachmentError, AttachmentPolicy, DEFAULT_CHUNK_SIZE, Decryptor,
    EncryptedBlob, Encryptor, SNIFF_BYTES, THUMBNAIL_MEDIA_TYPE, inspect, is_file_name,
    make_thumbnail, media_type_for_file_name, strip_metadata, thumbnail_supported,
};

/// The file name inside a thumbnail's descriptor (the original's name is not repeated).
pub const THUMBNAIL_FILE_NAME: &str = "thumbnail.jpg";

/// Read buffer size for streaming (64 KiB).
const IO_BUF: usize = 64 * 1024;

/// Why an attachment file could not be prepared or saved.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AttachmentFileError {
    /// The attachment was refused or is corrupt (policy, type, size, hash, authentication).
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The file name has no usable last component (e.g. a directory or `..`).
    #[error("`{0}` has no file name that can be sent")]
    BadFileName(PathBuf),
    /// Reading or writing a file failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AttachmentFileError {
    let path = path.to_path_buf();
    move |source| AttachmentFileError::Io { what, path, source }
}

/// A file encrypted and ready to upload. `Debug` leaves out the file name (it can be PHI).
pub struct PreparedAttachment {
    /// The ciphertext file (in the directory given to [`prepare_attachment`]); the caller
    /// uploads it and deletes it.
    pub ciphertext_path: PathBuf,
    /// Key, nonce, sizes and hash for the descriptor.
    pub blob: EncryptedBlob,
    /// The checked media type.
    pub media_type: String,
    /// The file's name (its last path component).
    pub file_name: String,
    /// The encrypted thumbnail of an image (its own ciphertext file and key), when one could
    /// be made; uploaded as its own blob beside the file.
    pub thumbnail: Option<Box<PreparedAttachment>>,
}

impl PreparedAttachment {
    /// The descriptor for the message, once the server assigned the blob id (without the
    /// thumbnail, whose blob has its own id: the upload sets it).
    pub fn descriptor(&self, blob_id: uuid::Uuid) -> Result<AttachmentDescriptor, AttachmentError> {
        AttachmentDescriptor::new(blob_id, &self.blob, &self.media_type, &self.file_name)
    }

    /// Deletes the ciphertext files (the file's and its thumbnail's); best effort.
    pub fn remove_files(&self) {
        let _ = fs::remove_file(&self.ciphertext_path);
        if let Some(t) = &self.thumbnail {
            t.remove_files();
        }
    }
}

/// Checks `path` against `policy` (type by content against `declared` or the extension's
/// type, size, denied types), strips image metadata, and encrypts it with a fresh key into a
/// new file in `work_dir`. On error no ciphertext file is left.
pub fn prepare_attachment(
    path: &Path,
    declared: Option<&str>,
    policy: &AttachmentPolicy,
    work_dir: &Path,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<PreparedAttachment, AttachmentFileError> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_file_name(n))
        .ok_or_else(|| AttachmentFileError::BadFileName(path.to_path_buf()))?
        .to_owned();
    let mut file = File::open(path).map_err(io_err("cannot open", path))?;
    let size = file
        .metadata()
        .map_err(io_err("cannot read the size of", path))?
        .len();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_err("cannot read", path))?;
    let declared = declared.unwrap_or_else(|| media_type_for_file_name(&file_name));
    let checked = inspect(policy, &file_name, declared, &head, size)?;

    let ciphertext_path = work_dir.join(format!(".ward-upload-{}.part", uuid::Uuid::new_v4()));
    let mut thumbnail_jpeg = None;
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&ciphertext_path)
            .map_err(io_err("cannot create", &ciphertext_path))?;
        let mut enc = Encryptor::new(rng, DEFAULT_CHUNK_SIZE)?;
        let mut ct = Vec::with_capacity(DEFAULT_CHUNK_SIZE as usize * 2);
        let kind = checked.media_type.as_str();
        if kind.starts_with("image/") {
            // Images are stripped whole (bounded by MAX_IMAGE_STRIP_BYTES in strip_metadata,
            // which also refuses image types it cannot strip).
            if size > ward_core::attachment::MAX_IMAGE_STRIP_BYTES {
                return Err(AttachmentError::ImageTooLarge {
                    size,
                    max: ward_core::attachment::MAX_IMAGE_STRIP_BYTES,
                }
                .into());
            }
            let mut data = head.clone();
            file.read_to_end(&mut data)
                .map_err(io_err("cannot read", path))?;
            let stripped = strip_metadata(kind, data)?;
            for piece in stripped.chunks(IO_BUF) {
                enc.push(piece, &mut ct)?;
                out.write_all(&ct)
                    .map_err(io_err("cannot write", &ciphertext_path))?;
                ct.clear();
            }
            if thumbnail_supported(kind) {
                // From the stripped image: the decoded pixels carry no metadata, and the
                // encoder writes none. A failure only means no preview.
                match make_thumbnail(kind, &stripped) {
                    Ok(t) => thumbnail_jpeg = Some(t.jpeg),
                    Err(e) => tracing::debug!(error = %e, "attachment sent without a thumbnail"),
                }
            }
        } else {
            enc.push(&head, &mut ct)?;
            let mut buf = vec![0u8; IO_BUF];
            loop {
                out.write_all(&ct)
                    .map_err(io_err("cannot write", &ciphertext_path))?;
                ct.clear();
                let n = file.read(&mut buf).map_err(io_err("cannot read", path))?;
                if n == 0 {
                    break;
                }
                enc.push(&buf[..n], &mut ct)?;
            }
        }
        let blob = enc.finish(&mut ct)?;
        out.write_all(&ct)
            .map_err(io_err("cannot write", &ciphertext_path))?;
        out.sync_all()
            .map_err(io_err("cannot sync", &ciphertext_path))?;
        Ok(blob)
    })();
    match result {
        Ok(blob) => {
            let thumbnail = thumbnail_jpeg.and_then(|jpeg| {
                match encrypt_bytes(
                    &jpeg,
                    THUMBNAIL_MEDIA_TYPE,
                    THUMBNAIL_FILE_NAME,
                    work_dir,
                    rng,
                ) {
                    Ok(t) => Some(Box::new(t)),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not encrypt a thumbnail; sent without");
                        None
                    }
                }
            });
            Ok(PreparedAttachment {
                ciphertext_path,
                blob,
                media_type: checked.media_type,
                file_name,
                thumbnail,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&ciphertext_path);
            Err(e)
        }
    }
}

/// Encrypts bytes already in memory (a thumbnail) with a fresh key into a new ciphertext file
/// in `work_dir`. On error no file is left.
fn encrypt_bytes(
    data: &[u8],
    media_type: &str,
    file_name: &str,
    work_dir: &Path,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<PreparedAttachment, AttachmentFileError> {
    let ciphertext_path = work_dir.join(format!(".ward-upload-{}.part", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&ciphertext_path)
            .map_err(io_err("cannot create", &ciphertext_path))?;
        let mut enc = Encryptor::new(rng, DEFAULT_CHUNK_SIZE)?;
        let mut ct = Vec::with_capacity(data.len() + 1024);
        enc.push(data, &mut ct)?;
        let blob = enc.finish(&mut ct)?;
        out.write_all(&ct)
            .map_err(io_err("cannot write", &ciphertext_path))?;
        out.sync_all()
            .map_err(io_err("cannot sync", &ciphertext_path))?;
        Ok(blob)
    })();
    match result {
        Ok(blob) => Ok(PreparedAttachment {
            ciphertext_path,
            blob,
            media_type: media_type.to_owned(),
            file_name: file_name.to_owned(),
            thumbnail: None,
        }),
        Err(e) => {
            let _ = fs::remove_file(&ciphertext_path);
            Err(e)
        }
    }
}

/// Decrypts a small blob held in memory (a thumbnail, at most
/// [`MAX_THUMBNAIL_BYTES`](ward_core::attachment::MAX_THUMBNAIL_BYTES)) as `descriptor`
/// describes: every chunk and the ciphertext hash are checked before anything is returned.
pub fn decrypt_in_memory(
    descriptor: &AttachmentDescriptor,
    ciphertext: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    let mut dec = Decryptor::new(descriptor)?;
    let mut plain = Vec::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
    dec.push(ciphertext, &mut plain)?;
    dec.finish(&mut plain)?;
    Ok(plain)
}

/// The name a thumbnail is saved under beside its file: `NAME.thumb.jpg` for a file saved as
/// `NAME` (so `wound.jpg` gets `wound.jpg.thumb.jpg`), or `thumbnail.jpg` when that would be
/// too long a name.
pub fn thumbnail_file_name(saved_file_name: &str) -> String {
    let name = format!("{saved_file_name}.thumb.jpg");
    if is_file_name(&name) {
        name
    } else {
        THUMBNAIL_FILE_NAME.to_owned()
    }
}

/// Decrypts `ciphertext` (read to its end) as `descriptor` describes into `dir`, under the
/// descriptor's file name or, if that exists, `name (1).ext`, `name (2).ext`, …. Returns the
/// path written. On any error (corrupt, truncated, wrong hash, I/O) nothing is left in `dir`.
pub fn decrypt_to_dir(
    descriptor: &AttachmentDescriptor,
    mut ciphertext: impl Read,
    dir: &Path,
) -> Result<PathBuf, AttachmentFileError> {
    let mut dec = Decryptor::new(descriptor)?;
    let tmp = dir.join(format!(".ward-download-{}.part", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        let mut buf = vec![0u8; IO_BUF];
        let mut plain = Vec::with_capacity(IO_BUF * 2);
        loop {
            let n = ciphertext
                .read(&mut buf)
                .map_err(io_err("cannot read the download for", &tmp))?;
            if n == 0 {
                break;
            }
            dec.push(&buf[..n], &mut plain)?;
            out.write_all(&plain)
                .map_err(io_err("cannot write", &tmp))?;
            plain.clear();
        }
        dec.finish(&mut plain)?;
        out.write_all(&plain)
            .map_err(io_err("cannot write", &tmp))?;
        out.sync_all().map_err(io_err("cannot sync", &tmp))?;
        link_unique(&tmp, dir, &descriptor.file_name)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Links `tmp` to the first free name derived from `file_name` in `dir` (no overwrite: a hard
/// link fails if the name exists).
fn link_unique(tmp: &Path, dir: &Path, file_name: &str) -> Result<PathBuf, AttachmentFileError> {
    let (stem, ext) = match file_name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, Some(e)),
        _ => (file_name, None),
    };
    for n in 0..1000u32 {
        let name = match (n, ext) {
            (0, _) => file_name.to_owned(),
            (n, Some(e)) => format!("{stem} ({n}).{e}"),
            (n, None) => format!("{stem} ({n})"),
        };
        let dest = dir.join(name);
        match fs::hard_link(tmp, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // The file name came from the sender and can be PHI: name only the directory.
            Err(e) => return Err(io_err("cannot create a file in", dir)(e)),
        }
    }
    Err(io_err("no free file name in", dir)(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "1000 files of that name exist",
    )))
}

impl std::fmt::Debug for PreparedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedAttachment")
            .field("ciphertext_path", &self.ciphertext_path)
            .field("blob", &self.blob)
            .field("media_type", &self.media_type)
            .field("file_name", &"(redacted)")
            .field("thumbnail", &self.thumbnail)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn file_round_trip_is_byte_exact_and_never_overwrites() {
        let src = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let dl = tempfile::tempdir().unwrap();
        let pdf: Vec<u8> = b"%PDF-1.7\n"
            .iter()
            .copied()
            .chain((0..300_000u32).map(|i| (i % 251) as u8))
            .collect();
        let path = src.path().join("lab result.pdf");
        fs::write(&path, &pdf).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let p = prepare_attachment(
            &path,
            None,
            &AttachmentPolicy::default(),
            work.path(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(p.media_type, "application/pdf");
        assert!(
            !format!("{p:?}").contains("lab result"),
            "Debug leaves out the file name"
        );
        let ct = fs::read(&p.ciphertext_path).unwrap();
        assert_eq!(ct.len() as u64, p.blob.ciphertext_len);
        assert!(!ct.windows(9).any(|w| w == b"%PDF-1.7\n"));
        let d = p.descriptor(uuid::Uuid::new_v4()).unwrap();
        let first = decrypt_to_dir(&d, &ct[..], dl.path()).unwrap();
        assert_eq!(fs::read(&first).unwrap(), pdf);
        let second = decrypt_to_dir(&d, &ct[..], dl.path()).unwrap();
        assert_eq!(second, dl.path().join("lab result (1).pdf"));
        assert_eq!(
            names(dl.path()),
            vec!["lab result (1).pdf", "lab result.pdf"]
        );
    }

    #[test]
    fn an_image_gets_its_own_encrypted_thumbnail_and_a_bomb_none() {
        let src = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(900, 600, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut png = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            img.as_raw(),
            900,
            600,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        let path = src.path().join("wound.png");
        fs::write(&path, &png).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let policy = AttachmentPolicy::default();
        let p = prepare_attachment(&path, None, &policy, work.path(), &mut rng).unwrap();
        let t = p.thumbnail.as_deref().expect("a PNG gets a thumbnail");
        assert_eq!(t.media_type, "image/jpeg");
        assert_eq!(t.file_name, THUMBNAIL_FILE_NAME);
        assert!(t.thumbnail.is_none());
        assert_ne!(t.blob.key, p.blob.key, "its own key");
        assert_ne!(t.ciphertext_path, p.ciphertext_path);
        let ct = fs::read(&t.ciphertext_path).unwrap();
        let d = t.descriptor(uuid::Uuid::new_v4()).unwrap();
        let jpeg = decrypt_in_memory(&d, &ct).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (320, 213));
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert!(decrypt_in_memory(&d, &bad).is_err());
        assert_eq!(names(work.path()).len(), 2);
        p.remove_files();
        assert!(
            names(work.path()).is_empty(),
            "both ciphertext files removed"
        );

        // A JPEG whose frame claims 60000x60000 pixels (a decompression bomb): sent, without
        // a thumbnail, never decoded.
        let mut broken = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut broken)
            .encode_image(&image::RgbImage::new(16, 16))
            .unwrap();
        let sof = broken.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        broken[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let path = src.path().join("huge.jpg");
        fs::write(&path, &broken).unwrap();
        let p = prepare_attachment(&path, None, &policy, work.path(), &mut rng).unwrap();
        assert!(p.thumbnail.is_none());
        assert_eq!(names(work.path()).len(), 1);
        p.remove_files();

        assert_eq!(thumbnail_file_name("wound.jpg"), "wound.jpg.thumb.jpg");
        assert_eq!(thumbnail_file_name(&"x".repeat(250)), THUMBNAIL_FILE_NAME);
    }

    #[test]
    fn failures_leave_no_file() {
        let src = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let dl = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        // An executable named like a PDF: refused, no ciphertext left.
        let exe = src.path().join("scan.pdf");
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(4096, 0);
        fs::write(&exe, &elf).unwrap();
        let e = prepare_attachment(
            &exe,
            None,
            &AttachmentPolicy::default(),
            work.path(),
            &mut rng,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Attachment(AttachmentError::Forbidden { .. })
            ),
            "{e:?}"
        );
        assert!(names(work.path()).is_empty());

        // A truncated or altered download: an error, and no file in the download directory.
        let doc = src.path().join("notes.txt");
        fs::write(&doc, vec![b'x'; 200_000]).unwrap();
        let p = prepare_attachment(
            &doc,
            None,
            &AttachmentPolicy::default(),
            work.path(),
            &mut rng,
        )
        .unwrap();
        let ct = fs::read(&p.ciphertext_path).unwrap();
        let d = p.descriptor(uuid::Uuid::new_v4()).unwrap();
        let e = decrypt_to_dir(&d, &ct[..ct.len() - 10], dl.path()).unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Attachment(AttachmentError::Truncated { .. })
            ),
            "{e:?}"
        );
        let mut bad = ct.clone();
        bad[100_000] ^= 0x40;
        let e = decrypt_to_dir(&d, &bad[..], dl.path()).unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Attachment(AttachmentError::Corrupt { .. })
            ),
            "{e:?}"
        );
        let mut wrong_hash = d.clone();
        wrong_hash.ciphertext_sha256 = "ab".repeat(32);
        let e = decrypt_to_dir(&wrong_hash, &ct[..], dl.path()).unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Attachment(AttachmentError::HashMismatch)
            ),
            "{e:?}"
        );
        assert!(names(dl.path()).is_empty(), "{:?}", names(dl.path()));
    }
}
