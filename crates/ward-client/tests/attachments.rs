//! Encrypted attachments end to end (ADR 0015) with real clients and the real server (TLS,
//! SQLite): a photo with EXIF GPS, a PDF and an audio file round-trip (the photo minus its
//! metadata), the server's files hold no plaintext, and every bad input gets a clear error and
//! leaves no partial file: an interrupted upload resumes, a hash mismatch, a disguised
//! executable, an oversized file, a missing blob, a download by a non-member. A photo gets an
//! encrypted thumbnail that the recipient fetches alone, and erasure deletes it with the file.
//!
//! Interruptions are real: the client talks to the server through a TCP relay on loopback
//! that can cut a connection after a number of bytes or refuse connections for a while.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_client::attachments::{AttachmentFileError, prepare_attachment};
use ward_client::{EnrollParams, Progress, ProgressFn, Target, WardClient, WardError};
use ward_core::Priority;
use ward_core::attachment::{AttachmentError, AttachmentPolicy};
use ward_proto::{ErrorCode, Role, Username};
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";
const GPS_MARKER: &[u8] = b"GPS-52.2053N-0.1218E";
const SERIAL_MARKER: &[u8] = b"DEVICE-SERIAL-SN9876543";
const PDF_MARKER: &[u8] = b"LAB-RESULT-PATIENT-MRN-4471-POTASSIUM-6.8";
const AUDIO_MARKER: &[u8] = b"VOICE-NOTE-PATIENT-MRN-4471";

struct Device {
    client: WardClient,
    dir: TempDir,
}

impl Device {
    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }
}

async fn server() -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await
}

async fn enroll_at(server: &TestServer, url: &str, name: &str) -> Device {
    let code = server.create_user(name, Role::Physician).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("profile"),
        passphrase: PASSPHRASE,
        server_url: url,
        ca_pem: server.ca_pem.as_deref().unwrap(),
        username: Username::parse(name).unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "phone",
    })
    .await
    .unwrap();
    Device { client, dir }
}

async fn enroll(server: &TestServer, name: &str) -> Device {
    enroll_at(server, &server.url, name).await
}

fn user(name: &str) -> Target {
    Target::User(Username::parse(name).unwrap())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.into_iter()
        .filter(|p| contains(&std::fs::read(p).unwrap_or_default(), needle))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Leftover ciphertext files of the SDK in a profile directory.
fn upload_leftovers(profile: &Path) -> Vec<String> {
    names(profile)
        .into_iter()
        .filter(|n| n.starts_with(".ward-upload-"))
        .collect()
}

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// The segments that define the pixels of an 8x8 grey baseline JPEG.
fn jpeg_pixels() -> Vec<u8> {
    let mut p = segment(0xDB, &[&[0u8][..], &[1u8; 64][..]].concat());
    p.extend(segment(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
    let mut counts = [0u8; 16];
    counts[0] = 1;
    p.extend(segment(0xC4, &[&[0x00][..], &counts, &[0x00]].concat()));
    p.extend(segment(0xC4, &[&[0x10][..], &counts, &[0x00]].concat()));
    p.extend(segment(0xDA, &[1, 1, 0x00, 0, 63, 0]));
    p.push(0x3F);
    p
}

/// A wound photo as a phone writes it: JFIF, an EXIF block with a GPS IFD (latitude ref and
/// a value naming the place) and the camera's serial, an XMP packet with the serial, then the
/// pixels.
fn photo_with_gps() -> Vec<u8> {
    // Big-endian TIFF: IFD0 with one entry pointing at the GPS IFD; the GPS IFD holds
    // GPSLatitudeRef "N" and a GPSLatitude-like ASCII value with the marker.
    let mut t = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    t.extend_from_slice(&1u16.to_be_bytes());
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26]);
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len(), 26);
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    let value_at = (26 + 2 + 24 + 4) as u32;
    t.extend_from_slice(&[0, 2, 0, 2]);
    t.extend_from_slice(&(GPS_MARKER.len() as u32 + 1).to_be_bytes());
    t.extend_from_slice(&value_at.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len() as u32, value_at);
    t.extend_from_slice(GPS_MARKER);
    t.push(0);
    t.extend_from_slice(SERIAL_MARKER);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&t);
    let mut j = vec![0xFF, 0xD8];
    j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    j.extend(segment(0xE1, &app1));
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>".to_vec();
    xmp.extend_from_slice(SERIAL_MARKER);
    j.extend(segment(0xE1, &xmp));
    j.extend(jpeg_pixels());
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

/// Deterministic filler that no other file contains.
fn filler(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn pdf() -> Vec<u8> {
    let mut p = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    p.extend_from_slice(PDF_MARKER);
    p.extend(filler(7, 400_000));
    p.extend_from_slice(b"\n%%EOF\n");
    p
}

/// A WAV voice note: RIFF header, `fmt ` chunk (mono 8 kHz 16-bit), `data` chunk.
fn wav() -> Vec<u8> {
    let mut samples = AUDIO_MARKER.to_vec();
    samples.extend(filler(11, 160_000));
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    w.extend(samples);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_pdf_and_audio_round_trip_and_the_server_holds_no_plaintext() {
    let server = server().await;
    let mut alice = enroll(&server, "alice").await;
    let mut bob = enroll(&server, "bob").await;
    let src = tempfile::tempdir().unwrap();
    let photo = photo_with_gps();
    let files = [
        ("wound.jpg", photo.clone()),
        ("potassium.pdf", pdf()),
        ("handover.wav", wav()),
    ];
    let mut paths = Vec::new();
    for (name, data) in &files {
        let p = src.path().join(name);
        std::fs::write(&p, data).unwrap();
        paths.push(p);
    }
    let mut seen = Vec::new();
    let mut record = |p: &Progress<'_>| seen.push((p.file_name.to_owned(), p.done, p.total));
    let sent = alice
        .client
        .send_with_attachments(
            user("bob"),
            "wound photo, K+ result and my handover",
            &paths,
            Priority::Urgent,
            false,
            Some(&mut record as ProgressFn<'_>),
        )
        .await
        .unwrap();
    assert_eq!(sent.attachments.len(), 3);
    assert_eq!(sent.attachments[0].media_type, "image/jpeg");
    assert_eq!(sent.attachments[1].media_type, "application/pdf");
    assert!(sent.attachments[2].media_type.starts_with("audio/"));
    for name in ["wound.jpg", "potassium.pdf", "handover.wav"] {
        let mine: Vec<_> = seen.iter().filter(|s| s.0 == name).collect();
        assert!(
            mine.last().is_some_and(|s| s.1 == s.2 && s.2 > 0),
            "progress ends at the total for {name}: {mine:?}"
        );
    }
    assert!(upload_leftovers(&alice.profile()).is_empty());

    let report = bob.client.sync().await.unwrap();
    assert_eq!(report.messages.len(), 1, "{:?}", report.warnings);
    let m = &report.messages[0];
    assert_eq!(m.text, "wound photo, K+ result and my handover");
    let infos = m.attachments();
    assert_eq!(
        infos
            .iter()
            .map(|a| a.file_name.as_str())
            .collect::<Vec<_>>(),
        ["wound.jpg", "potassium.pdf", "handover.wav"]
    );
    assert_eq!(infos[1].size, files[1].1.len() as u64);
    assert_eq!(infos[1].blob_id, sent.attachments[1].blob_id);

    let dl = tempfile::tempdir().unwrap();
    let saved = bob
        .client
        .download_attachments(m, dl.path(), None)
        .await
        .unwrap();
    assert_eq!(saved.len(), 3);
    assert_eq!(std::fs::read(&saved[1].saved_path).unwrap(), files[1].1);
    assert_eq!(std::fs::read(&saved[2].saved_path).unwrap(), files[2].1);
    let got_photo = std::fs::read(&saved[0].saved_path).unwrap();
    assert!(got_photo.starts_with(&[0xFF, 0xD8]) && got_photo.ends_with(&[0xFF, 0xD9]));
    assert!(
        contains(&got_photo, &jpeg_pixels()),
        "pixels kept byte for byte"
    );
    for gone in [
        GPS_MARKER,
        SERIAL_MARKER,
        b"Exif\0\0",
        b"http://ns.adobe.com/xap",
    ] {
        assert!(
            !contains(&got_photo, gone),
            "{} was stripped",
            String::from_utf8_lossy(gone)
        );
    }
    assert_eq!(
        saved[0].saved_path,
        dl.path().join("wound.jpg"),
        "saved under the sender's name"
    );
    // Downloading again never overwrites.
    let again = bob
        .client
        .download_attachment(&m.attachment_descriptors[1], dl.path(), None)
        .await
        .unwrap();
    assert_eq!(again, dl.path().join("potassium (1).pdf"));
    // The sender's own history has the descriptors too (another device of theirs could fetch).
    let own = alice.client.history().last().unwrap();
    assert_eq!(own.attachments(), infos);

    // The server's database and blob store hold ciphertext only.
    for marker in [GPS_MARKER, SERIAL_MARKER, PDF_MARKER, AUDIO_MARKER] {
        let hits = files_containing(server.data_dir.path(), marker);
        assert!(
            hits.is_empty(),
            "{} found in {hits:?}",
            String::from_utf8_lossy(marker)
        );
    }
    let file_name_hits = files_containing(server.data_dir.path(), b"potassium.pdf");
    assert!(
        file_name_hits.is_empty(),
        "file names are PHI: {file_name_hits:?}"
    );
    // And the ciphertext is there: some file in the data directory is at least the PDF's size.
    let mut all = Vec::new();
    walk(server.data_dir.path(), &mut all);
    assert!(
        all.iter()
            .any(|p| std::fs::metadata(p).unwrap().len() >= files[1].1.len() as u64),
        "the blobs are stored under the data directory: {all:?}"
    );
    server.stop().await;
}

/// A 1600x1200 photo-like JPEG with an EXIF block naming a place.
fn big_photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(1600, 1200, |x, y| {
        let t = ((x * 7 + y * 13) % 17) as u8;
        image::Rgb([
            (x * 255 / 1600) as u8 ^ t,
            (y * 255 / 1200) as u8,
            (x + y) as u8,
        ])
    });
    let mut clean = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut clean, 90)
        .encode_image(&img)
        .unwrap();
    let mut app1 = b"Exif\0\0MM\0\x2a".to_vec();
    app1.extend_from_slice(GPS_MARKER);
    let mut j = clean[..2].to_vec();
    j.extend(segment(0xE1, &app1));
    j.extend_from_slice(&clean[2..]);
    j
}

/// A JPEG whose frame header claims 60000x60000 pixels: a decompression bomb for a decoder.
fn bomb_jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    let mut p = jpeg_pixels();
    let sof = p.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    p[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    p[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    j.extend(p);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_gets_an_encrypted_thumbnail_that_erasure_deletes_with_it() {
    use ward_core::attachment::{THUMBNAIL_MAX_SIDE, make_thumbnail, strip_metadata};
    let server = server().await;
    let mut alice = enroll(&server, "alice").await;
    let mut bob = enroll(&server, "bob").await;
    let src = tempfile::tempdir().unwrap();
    let photo = big_photo();
    let files = [
        ("wound.jpg", photo.clone()),
        ("scan.jpg", bomb_jpeg()),
        ("potassium.pdf", pdf()),
    ];
    let mut paths = Vec::new();
    for (name, data) in &files {
        let p = src.path().join(name);
        std::fs::write(&p, data).unwrap();
        paths.push(p);
    }
    let sent = alice
        .client
        .send_with_attachments(user("bob"), "", &paths, Priority::Routine, false, None)
        .await
        .unwrap();
    assert_eq!(sent.attachments.len(), 3);
    let thumb = sent.attachments[0]
        .thumbnail
        .clone()
        .expect("the photo has a thumbnail");
    assert_eq!(thumb.media_type, "image/jpeg");
    assert!(
        thumb.size > 0 && thumb.size < 30 * 1024,
        "small: {}",
        thumb.size
    );
    assert_ne!(thumb.blob_id, sent.attachments[0].blob_id);
    assert!(
        sent.attachments[1].thumbnail.is_none(),
        "an image no decoder may open is sent, without a thumbnail"
    );
    assert!(
        sent.attachments[2].thumbnail.is_none(),
        "no thumbnail for a PDF"
    );
    assert!(upload_leftovers(&alice.profile()).is_empty());

    let report = bob.client.sync().await.unwrap();
    assert_eq!(report.messages.len(), 1, "{:?}", report.warnings);
    let m = report.messages[0].clone();
    assert_eq!(m.attachments(), sent.attachments);
    let d = &m.attachment_descriptors[0];
    // The preview alone: decrypted in memory, a JPEG within 320x320 with the photo's aspect.
    let jpeg = bob.client.download_thumbnail(d).await.unwrap().unwrap();
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert!(img.width() <= THUMBNAIL_MAX_SIDE && img.height() <= THUMBNAIL_MAX_SIDE);
    assert_eq!((img.width(), img.height()), (320, 240));
    assert!(!contains(&jpeg, GPS_MARKER) && !contains(&jpeg, b"Exif"));
    // It is the thumbnail of the metadata-stripped photo.
    let expected = make_thumbnail(
        "image/jpeg",
        &strip_metadata("image/jpeg", photo.clone()).unwrap(),
    )
    .unwrap();
    assert!(jpeg == expected.jpeg);
    assert_eq!(
        bob.client
            .download_thumbnail(&m.attachment_descriptors[2])
            .await
            .unwrap(),
        None
    );
    // Saved beside the downloaded file.
    let dl = tempfile::tempdir().unwrap();
    let saved = bob
        .client
        .download_attachments(&m, dl.path(), None)
        .await
        .unwrap();
    let beside = bob
        .client
        .save_thumbnail(d, &saved[0].saved_path)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(beside, dl.path().join("wound.jpg.thumb.jpg"));
    assert!(std::fs::read(&beside).unwrap() == jpeg);

    // The server holds no plaintext of the thumbnail (nor of the photo's metadata).
    let mid = jpeg.len() / 2;
    for (what, needle) in [
        ("thumbnail head", &jpeg[..64]),
        ("thumbnail middle", &jpeg[mid..mid + 64]),
        ("thumbnail tail", &jpeg[jpeg.len() - 64..]),
        ("GPS", GPS_MARKER),
    ] {
        let hits = files_containing(server.data_dir.path(), needle);
        assert!(hits.is_empty(), "{what} found in {hits:?}");
    }

    // Erasure of the sender's messages deletes the photo's blob and its thumbnail's.
    let r = server
        .services
        .request_erasure(
            &ward_server::service::Actor::cli(),
            ward_proto::ErasureRequestBody {
                user: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.envelopes_erased, 1, "{r:?}");
    let e = bob.client.download_thumbnail(d).await.unwrap_err();
    assert!(
        matches!(
            &e,
            WardError::Api {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&thumb.blob_id.to_string()), "{e}");
    let e = bob
        .client
        .download_attachment(d, dl.path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            WardError::Api {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_errors_and_leave_no_file() {
    let server = server().await;
    let mut alice = enroll(&server, "alice").await;
    let mut bob = enroll(&server, "bob").await;
    let carol = enroll(&server, "carol").await;
    let src = tempfile::tempdir().unwrap();

    // A disguised executable: refused by content before anything is sent.
    let exe = src.path().join("ecg-scan.pdf");
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(8192, 0);
    std::fs::write(&exe, &elf).unwrap();
    let e = alice
        .client
        .send_with_attachments(user("bob"), "scan", &[exe], Priority::Routine, false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WardError::Attachment(AttachmentFileError::Attachment(
                AttachmentError::Forbidden { .. }
            ))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("forbidden"), "{e}");
    assert!(upload_leftovers(&alice.profile()).is_empty());

    // Oversized for the organisation's policy.
    let big = src.path().join("echo.mp4");
    let mut mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    mp4.extend(filler(3, 2 * 1024 * 1024));
    std::fs::write(&big, &mp4).unwrap();
    alice.client.set_attachment_policy(AttachmentPolicy {
        max_bytes: 1024 * 1024,
        ..AttachmentPolicy::default()
    });
    let e = alice
        .client
        .send_with_attachments(
            user("bob"),
            "echo",
            std::slice::from_ref(&big),
            Priority::Routine,
            false,
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1048576-byte limit"), "{e}");
    assert!(upload_leftovers(&alice.profile()).is_empty());
    alice
        .client
        .set_attachment_policy(AttachmentPolicy::default());
    assert!(
        bob.client.sync().await.unwrap().messages.is_empty(),
        "nothing was sent"
    );

    // A real one, to have a conversation and a descriptor.
    let lab = src.path().join("lab.pdf");
    std::fs::write(&lab, pdf()).unwrap();
    alice
        .client
        .send_with_attachments(user("bob"), "", &[lab], Priority::Routine, false, None)
        .await
        .unwrap();
    let m = bob.client.sync().await.unwrap().messages.remove(0);
    let d = m.attachment_descriptors[0].clone();
    let dl = tempfile::tempdir().unwrap();

    // A ciphertext whose hash does not match the descriptor: nothing saved.
    let mut wrong = d.clone();
    wrong.ciphertext_sha256 = "ab".repeat(32);
    let e = bob
        .client
        .download_attachment(&wrong, dl.path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WardError::Attachment(AttachmentFileError::Attachment(
                AttachmentError::HashMismatch
            ))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("hash does not match"), "{e}");
    // The wrong key: the first chunk fails authentication.
    let mut wrong_key = d.clone();
    wrong_key.key = ward_core::attachment::AttachmentKey::from_bytes([7; 32]);
    let e = bob
        .client
        .download_attachment(&wrong_key, dl.path(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("failed authentication"), "{e}");

    // A missing blob.
    let mut missing = d.clone();
    missing.blob_id = uuid::Uuid::new_v4();
    let e = bob
        .client
        .download_attachment(&missing, dl.path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WardError::Api { code: ErrorCode::NotFound, message, .. }
            if message.contains("is not on the server")),
        "{e:?}"
    );

    // A device that is not a member of the conversation.
    let e = carol
        .client
        .download_attachment(&d, dl.path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WardError::Api { code: ErrorCode::Forbidden, message, .. }
            if message.contains("not a member")),
        "{e:?}"
    );
    assert!(names(dl.path()).is_empty(), "{:?}", names(dl.path()));

    // The server refuses a completion whose hash is not the ciphertext's, and the SDK says so.
    let p = src.path().join("note.txt");
    std::fs::write(&p, b"handover note, bed 4").unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut prepared = prepare_attachment(
        &p,
        None,
        &AttachmentPolicy::default(),
        work.path(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    prepared.blob.ciphertext_sha256 = [0x11; 32];
    let e = alice
        .client
        .upload_attachment(m.conversation_id, &prepared, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            WardError::Api {
                code: ErrorCode::Unprocessable,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not match"), "{e}");

    // Carol cannot upload into a conversation she is not in.
    prepared.blob.ciphertext_sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(&prepared.ciphertext_path).unwrap()).into()
    };
    let e = carol
        .client
        .upload_attachment(m.conversation_id, &prepared, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WardError::Api { message, .. } if message.contains("not a member")),
        "{e:?}"
    );

    // Oversized for the server's organisation policy (the client's own policy allows it):
    // refused when the upload is created, naming the limit; nothing is sent.
    server
        .services
        .update_policy(
            &ward_server::service::Actor::cli(),
            ward_proto::UpdatePolicyRequest {
                attachment_max_bytes: Some(1024 * 1024),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = alice
        .client
        .send_with_attachments(
            user("bob"),
            "echo again",
            std::slice::from_ref(&big),
            Priority::Routine,
            false,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WardError::Api { code: ErrorCode::PayloadTooLarge, message, .. }
            if message.contains("limit is 1048576 bytes")),
        "{e:?}"
    );
    assert!(upload_leftovers(&alice.profile()).is_empty());
    assert!(bob.client.sync().await.unwrap().messages.is_empty());
    server.stop().await;
}

/// A TCP relay to the server that can cut a connection after some bytes (an interruption
/// mid-upload) or refuse connections (the network is down). Counts bytes to the server.
struct Relay {
    addr: std::net::SocketAddr,
    /// Bytes client→server after which the connection carrying them is cut (0: never).
    cut_after: Arc<AtomicU64>,
    /// Bytes client→server since the last arming.
    sent: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            cut_after: Arc::new(AtomicU64::new(0)),
            sent: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let (cut_after, sent, cuts, down) = (
            relay.cut_after.clone(),
            relay.sent.clone(),
            relay.cuts.clone(),
            relay.down.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (cut_after, sent, cuts) = (cut_after.clone(), sent.clone(), cuts.clone());
                tokio::spawn(async move {
                    let Ok(upstream) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let down_task = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut ur, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        let limit = cut_after.load(Ordering::SeqCst);
                        if limit != 0 && total >= limit {
                            cut_after.store(0, Ordering::SeqCst);
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down_task.abort();
                });
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn arm(&self, cut_after: u64) {
        self.sent.store(0, Ordering::SeqCst);
        self.cut_after.store(cut_after, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_where_it_stopped() {
    let server = server().await;
    let relay = Relay::start(server.addr).await;
    let mut alice = enroll_at(&server, &relay.url(), "alice").await;
    let mut bob = enroll(&server, "bob").await;
    let src = tempfile::tempdir().unwrap();
    let video = src.path().join("gait.mp4");
    let mut mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    mp4.extend(filler(5, 14 * 1024 * 1024));
    std::fs::write(&video, &mp4).unwrap();

    // The connection breaks after 6 MiB: the SDK asks where to resume and goes on.
    relay.arm(6 * 1024 * 1024);
    let mut offsets = Vec::new();
    let mut record = |p: &Progress<'_>| offsets.push(p.done);
    alice
        .client
        .send_with_attachments(
            user("bob"),
            "gait video",
            std::slice::from_ref(&video),
            Priority::Routine,
            false,
            Some(&mut record as ProgressFn<'_>),
        )
        .await
        .unwrap();
    assert_eq!(
        relay.cuts.load(Ordering::SeqCst),
        1,
        "the upload was cut once"
    );
    let ct_len = *offsets.last().unwrap();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "resumed, never restarted from 0: {offsets:?}"
    );
    let sent = relay.sent.load(Ordering::SeqCst);
    assert!(
        sent < ct_len + 6 * 1024 * 1024,
        "{sent} bytes sent for a {ct_len}-byte ciphertext cut at 6 MiB: not re-sent from the start"
    );
    let m = bob.client.sync().await.unwrap().messages.remove(0);
    let dl = tempfile::tempdir().unwrap();
    let saved = bob
        .client
        .download_attachments(&m, dl.path(), None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&saved[0].saved_path).unwrap(), mp4);

    // The network goes down mid-upload and stays down: the SDK gives up with the blob id and
    // where it stopped; once it is back, `resume_upload` continues from there.
    let work = tempfile::tempdir().unwrap();
    let prepared = prepare_attachment(
        &video,
        None,
        &AttachmentPolicy::default(),
        work.path(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    relay.arm(5 * 1024 * 1024);
    let down = relay.down.clone();
    let mut go_down = move |p: &Progress<'_>| {
        if p.done > 0 {
            down.store(true, Ordering::SeqCst);
        }
    };
    let e = alice
        .client
        .upload_attachment(
            m.conversation_id,
            &prepared,
            Some(&mut go_down as ProgressFn<'_>),
        )
        .await
        .unwrap_err();
    let WardError::UploadInterrupted {
        blob_id,
        received,
        size,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(received > 0 && received < size, "{received} of {size}");
    assert!(e.to_string().contains("can be resumed"), "{e}");
    relay.down.store(false, Ordering::SeqCst);
    relay.arm(0);
    let mut first = None;
    let mut record = |p: &Progress<'_>| {
        first.get_or_insert(p.done);
    };
    let d = alice
        .client
        .resume_upload(blob_id, &prepared, Some(&mut record as ProgressFn<'_>))
        .await
        .unwrap();
    assert_eq!(first, Some(received), "resumed at the server's offset");
    assert!(
        relay.sent.load(Ordering::SeqCst) < size - received + 1024 * 1024,
        "only the rest was sent"
    );
    let path = bob
        .client
        .download_attachment(&d, dl.path(), None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), mp4);
    server.stop().await;
}

/// The organisation's refused types reach every client: a PDF refused by the admin is
/// stopped before anything is uploaded, and allowed again once the admin lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisation_policy_refuses_types_before_anything_is_sent() {
    let server = server().await;
    let mut alice = enroll(&server, "alice").await;
    let mut bob = enroll(&server, "bob").await;
    let src = tempfile::tempdir().unwrap();
    let lab = src.path().join("lab.pdf");
    std::fs::write(&lab, pdf()).unwrap();
    let set = |types: Vec<String>| {
        let services = server.services.clone();
        async move {
            services
                .update_policy(
                    &ward_server::service::Actor::cli(),
                    ward_proto::UpdatePolicyRequest {
                        attachment_denied_media_types: Some(types),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    set(vec!["application/pdf".into()]).await;
    let policy = alice.client.attachment_policy().await.unwrap();
    assert_eq!(policy.denied_media_types, ["application/pdf"]);
    assert!(policy.denied_extensions.iter().any(|e| e == "exe"));

    let e = alice
        .client
        .send_with_attachments(
            user("bob"),
            "labs",
            std::slice::from_ref(&lab),
            Priority::Routine,
            false,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WardError::Attachment(AttachmentFileError::Attachment(
                AttachmentError::Forbidden { .. }
            ))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("application/pdf"), "{e}");
    assert!(upload_leftovers(&alice.profile()).is_empty());
    assert!(bob.client.sync().await.unwrap().messages.is_empty());
    assert!(
        server.services.store.blob_bytes().await.unwrap() == 0,
        "nothing reached the blob store"
    );

    set(Vec::new()).await;
    alice
        .client
        .send_with_attachments(
            user("bob"),
            "labs",
            std::slice::from_ref(&lab),
            Priority::Routine,
            false,
            None,
        )
        .await
        .unwrap();
    let got = bob.client.sync().await.unwrap();
    assert_eq!(got.messages.len(), 1);
    assert_eq!(got.messages[0].attachments().len(), 1);
    server.stop().await;
}
