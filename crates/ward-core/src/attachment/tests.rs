use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::{MessageContent, Priority};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// Encrypts `data`, pushing it in pieces of `piece` bytes; returns the ciphertext and descriptor.
fn encrypt(data: &[u8], chunk_size: u32, piece: usize) -> (Vec<u8>, AttachmentDescriptor) {
    let mut enc = Encryptor::new(&mut rng(), chunk_size).unwrap();
    let mut ct = Vec::new();
    for p in data.chunks(piece.max(1)) {
        enc.push(p, &mut ct).unwrap();
    }
    let blob = enc.finish(&mut ct).unwrap();
    assert_eq!(blob.ciphertext_len, ct.len() as u64);
    assert_eq!(blob.size, data.len() as u64);
    let d = AttachmentDescriptor::new(uuid::Uuid::new_v4(), &blob, "application/pdf", "lab.pdf")
        .unwrap();
    (ct, d)
}

fn decrypt(ct: &[u8], d: &AttachmentDescriptor, piece: usize) -> Result<Vec<u8>, AttachmentError> {
    let mut dec = Decryptor::new(d)?;
    let mut out = Vec::new();
    for p in ct.chunks(piece.max(1)) {
        dec.push(p, &mut out)?;
    }
    dec.finish(&mut out)?;
    Ok(out)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trip_at_chunk_boundaries() {
    let chunk = MIN_CHUNK_SIZE;
    for len in [0, 1, 1023, 1024, 1025, 2048, 3 * 1024 + 5] {
        let plain = data(len);
        let (ct, d) = encrypt(&plain, chunk, 100);
        assert_eq!(
            ct.len() as u64,
            ciphertext_len(len as u64, chunk),
            "len {len}"
        );
        assert_eq!(d.ciphertext_len(), ct.len() as u64);
        assert_eq!(decrypt(&ct, &d, 333).unwrap(), plain, "len {len}");
    }
}

#[test]
fn ciphertext_has_no_plaintext_and_fresh_keys_differ() {
    let plain = vec![b'A'; 5000];
    let (ct1, d1) = encrypt(&plain, MIN_CHUNK_SIZE, 5000);
    let mut enc = Encryptor::new(&mut StdRng::seed_from_u64(8), MIN_CHUNK_SIZE).unwrap();
    let mut ct2 = Vec::new();
    enc.push(&plain, &mut ct2).unwrap();
    let b2 = enc.finish(&mut ct2).unwrap();
    assert_ne!(d1.key, b2.key);
    assert_ne!(ct1, ct2);
    assert!(!ct1.windows(16).any(|w| w == &plain[..16]));
}

#[test]
fn altered_chunk_is_refused() {
    let plain = data(4000);
    let (mut ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 4000);
    ct[1500] ^= 1;
    assert_eq!(
        decrypt(&ct, &d, 4096),
        Err(AttachmentError::Corrupt { chunk: 1 })
    );
}

#[test]
fn reordered_chunks_are_refused() {
    let plain = data(4000);
    let (ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 4000);
    let c = MIN_CHUNK_SIZE as usize + TAG_BYTES;
    let mut swapped = Vec::new();
    swapped.extend_from_slice(&ct[c..2 * c]);
    swapped.extend_from_slice(&ct[..c]);
    swapped.extend_from_slice(&ct[2 * c..]);
    // The hash is checked only at the end; the first chunk already fails authentication.
    assert_eq!(
        decrypt(&swapped, &d, 10_000),
        Err(AttachmentError::Corrupt { chunk: 0 })
    );
}

#[test]
fn truncated_and_extended_streams_are_refused() {
    let plain = data(4000);
    let (ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 4000);
    let c = MIN_CHUNK_SIZE as usize + TAG_BYTES;
    assert_eq!(
        decrypt(&ct[..2 * c], &d, 10_000),
        Err(AttachmentError::Truncated {
            got: 2 * c as u64,
            expected: ct.len() as u64
        })
    );
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(
        decrypt(&longer, &d, 10_000),
        Err(AttachmentError::TrailingData {
            expected: ct.len() as u64
        })
    );
    // A descriptor that announces fewer bytes: a full chunk is then decrypted as the last one,
    // which STREAM refuses (its last-chunk flag differs), after the hash check.
    let mut short = d.clone();
    short.size = 2 * u64::from(MIN_CHUNK_SIZE);
    short.ciphertext_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&ct[..2 * c]));
    assert_eq!(
        decrypt(&ct[..2 * c], &short, 10_000),
        Err(AttachmentError::Corrupt { chunk: 1 })
    );
}

#[test]
fn hash_mismatch_and_wrong_key_are_refused() {
    let plain = data(3000);
    let (ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 3000);
    let mut wrong_hash = d.clone();
    wrong_hash.ciphertext_sha256 = "0".repeat(64);
    assert_eq!(
        decrypt(&ct, &wrong_hash, 999),
        Err(AttachmentError::HashMismatch)
    );
    let mut wrong_key = d.clone();
    wrong_key.key = AttachmentKey::from_bytes([9; KEY_BYTES]);
    assert_eq!(
        decrypt(&ct, &wrong_key, 999),
        Err(AttachmentError::Corrupt { chunk: 0 })
    );
}

#[test]
fn chunk_size_is_bounded() {
    assert_eq!(
        Encryptor::new(&mut rng(), 10).err(),
        Some(AttachmentError::ChunkSize(10))
    );
    assert_eq!(
        Encryptor::new(&mut rng(), MAX_CHUNK_SIZE + 1).err(),
        Some(AttachmentError::ChunkSize(MAX_CHUNK_SIZE + 1))
    );
}

#[test]
fn descriptor_json_round_trip_and_validation() {
    let (_, d) = encrypt(b"hello", DEFAULT_CHUNK_SIZE, 5);
    let json = serde_json::to_vec(&d).unwrap();
    assert_eq!(AttachmentDescriptor::from_json(&json).unwrap(), d);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    for field in [
        "blob_id",
        "key",
        "nonce",
        "chunk_size",
        "size",
        "ciphertext_sha256",
        "media_type",
        "file_name",
    ] {
        assert!(v.get(field).is_some(), "{field}");
    }
    let bad = |f: &dyn Fn(&mut AttachmentDescriptor)| {
        let mut x = d.clone();
        f(&mut x);
        x.validate().unwrap_err()
    };
    assert!(matches!(
        bad(&|x| x.file_name = "../etc/passwd".into()),
        AttachmentError::InvalidDescriptor {
            field: "file_name",
            ..
        }
    ));
    assert!(matches!(
        bad(&|x| x.file_name = "a\nb".into()),
        AttachmentError::InvalidDescriptor {
            field: "file_name",
            ..
        }
    ));
    assert!(matches!(
        bad(&|x| x.media_type = "pdf".into()),
        AttachmentError::InvalidDescriptor {
            field: "media_type",
            ..
        }
    ));
    assert!(matches!(
        bad(&|x| x.nonce = Bytes(vec![0; 12])),
        AttachmentError::InvalidDescriptor { field: "nonce", .. }
    ));
    assert!(matches!(
        bad(&|x| x.chunk_size = 1),
        AttachmentError::InvalidDescriptor {
            field: "chunk_size",
            ..
        }
    ));
    assert!(matches!(
        bad(&|x| x.ciphertext_sha256 = "AB".repeat(32)),
        AttachmentError::InvalidDescriptor {
            field: "ciphertext_sha256",
            ..
        }
    ));
    let nested = {
        let mut t = d.clone();
        t.media_type = "image/jpeg".into();
        t.thumbnail = Some(Box::new(t.clone()));
        let mut x = d.clone();
        x.thumbnail = Some(Box::new(t));
        x
    };
    assert!(matches!(
        nested.validate().unwrap_err(),
        AttachmentError::InvalidDescriptor {
            field: "thumbnail",
            ..
        }
    ));
    // A key of the wrong length does not decode.
    let mut v2 = v.clone();
    v2["key"] = serde_json::json!("AAAA");
    assert!(AttachmentDescriptor::from_json(&serde_json::to_vec(&v2).unwrap()).is_err());
}

#[test]
fn debug_redacts_key_and_file_name() {
    let (_, d) = encrypt(b"x", DEFAULT_CHUNK_SIZE, 1);
    let mut d = d;
    d.file_name = "jane-doe-wound.jpg".into();
    let dbg = format!("{d:?}");
    assert!(!dbg.contains("jane"), "{dbg}");
    assert!(!dbg.contains(&hex::encode(d.key.as_bytes())));
    assert_eq!(format!("{:?}", d.key), "AttachmentKey(redacted)");
}

#[test]
fn content_carries_attachments_and_old_shape_is_unchanged() {
    let (_, d) = encrypt(b"ecg", DEFAULT_CHUNK_SIZE, 3);
    let mut c = MessageContent::text("12-lead ECG", Priority::Stat, 1);
    c.attachments.push(d.clone());
    let bytes = c.to_bytes().unwrap();
    let back = MessageContent::from_bytes(&bytes).unwrap();
    assert_eq!(back.attachments, vec![d]);
    assert!(back.extra.is_empty());
    // An older reader keeps the field as an unknown one; writing it back preserves it.
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["attachments"].is_array());
    // Text-only content has no `attachments` key at all.
    let plain = MessageContent::text("hi", Priority::Routine, 1)
        .to_bytes()
        .unwrap();
    assert!(!String::from_utf8(plain).unwrap().contains("attachments"));
    // An invalid descriptor makes the content invalid.
    let mut bad = c.clone();
    bad.attachments[0].file_name = String::new();
    assert!(matches!(
        bad.to_bytes(),
        Err(crate::content::ContentError::Attachment(_))
    ));
}

// ---- inspection ----

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0";
const PE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n";

#[test]
fn executables_are_refused_whatever_their_name() {
    let p = AttachmentPolicy::default();
    let e = inspect(&p, "scan.pdf", "application/pdf", ELF, 20).unwrap_err();
    assert_eq!(
        e,
        AttachmentError::Forbidden {
            what: "application/x-executable".into()
        }
    );
    let e = inspect(&p, "photo.jpg", "image/jpeg", PE, 20).unwrap_err();
    assert!(matches!(e, AttachmentError::Forbidden { .. }), "{e:?}");
    let e = inspect(&p, "run.txt", "text/plain", b"#!/bin/sh\nrm -rf /\n", 20).unwrap_err();
    assert!(matches!(e, AttachmentError::Forbidden { .. }), "{e:?}");
    let e = inspect(&p, "notes.bat", "text/plain", b"echo hi", 7).unwrap_err();
    assert_eq!(
        e,
        AttachmentError::Forbidden {
            what: ".bat".into()
        }
    );
}

#[test]
fn declared_type_must_match_content() {
    let p = AttachmentPolicy::default();
    assert_eq!(
        inspect(&p, "lab.pdf", "application/pdf", PDF, 100)
            .unwrap()
            .media_type,
        "application/pdf"
    );
    let e = inspect(&p, "lab.pdf", "application/pdf", b"just text", 9).unwrap_err();
    assert_eq!(
        e,
        AttachmentError::TypeMismatch {
            declared: "application/pdf".into(),
            detected: "unknown".into()
        }
    );
    let e = inspect(&p, "lab.jpg", "image/jpeg", PDF, 100).unwrap_err();
    assert!(matches!(e, AttachmentError::TypeMismatch { .. }));
    // A generic declaration takes the detected type.
    assert_eq!(
        inspect(&p, "blob", "application/octet-stream", PDF, 100)
            .unwrap()
            .media_type,
        "application/pdf"
    );
    // Unrecognisable content is fine for a type infer does not know either.
    assert_eq!(
        inspect(&p, "obs.csv", "text/csv", b"a,b\n1,2\n", 8)
            .unwrap()
            .media_type,
        "text/csv"
    );
}

#[test]
fn size_limit_is_enforced() {
    let p = AttachmentPolicy {
        max_bytes: 100,
        ..AttachmentPolicy::default()
    };
    assert_eq!(
        inspect(&p, "lab.pdf", "application/pdf", PDF, 101).unwrap_err(),
        AttachmentError::TooLarge {
            size: 101,
            max: 100
        }
    );
}

#[test]
fn media_types_by_extension() {
    assert_eq!(media_type_for_file_name("IMG_0001.JPG"), "image/jpeg");
    assert_eq!(media_type_for_file_name("ecg.pdf"), "application/pdf");
    assert_eq!(media_type_for_file_name("note.m4a"), "audio/m4a");
    assert_eq!(
        media_type_for_file_name("README"),
        "application/octet-stream"
    );
    assert_eq!(
        media_type_for_file_name(".bashrc"),
        "application/octet-stream"
    );
}

// ---- metadata stripping ----

/// Test fixtures: a JPEG and a PNG with location and serial metadata.
pub(crate) mod fixtures {
    /// The device serial number written into the fixtures' metadata.
    pub const SERIAL: &[u8] = b"SN-CAM-0042-7781";
    /// GPS latitude 52 deg 22 min as EXIF rationals, big-endian.
    pub const GPS_LAT: &[u8] = &[0, 0, 0, 52, 0, 0, 0, 1, 0, 0, 0, 22, 0, 0, 0, 1];

    fn segment(marker: u8, contents: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((contents.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(contents);
        s
    }

    /// A TIFF (EXIF) block, big-endian: IFD0 with a GPS IFD pointer and the body serial
    /// number; the GPS IFD with latitude reference N and the latitude.
    fn exif() -> Vec<u8> {
        let mut t = b"MM\0\x2a\0\0\0\x08".to_vec();
        // IFD0 at 8: 2 entries.
        t.extend_from_slice(&2u16.to_be_bytes());
        // GPSInfo (0x8825), LONG, 1, offset of the GPS IFD (8 + 2 + 24 + 4 = 38).
        t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
        // BodySerialNumber (0xA431), ASCII, 17, offset 38 + 2 + 24 + 4 = 68 .. after GPS data.
        let serial_off = 68 + 16;
        t.extend_from_slice(&[0xA4, 0x31, 0, 2, 0, 0, 0, 17]);
        t.extend_from_slice(&(serial_off as u32).to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        // GPS IFD at 38: 2 entries.
        t.extend_from_slice(&2u16.to_be_bytes());
        t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
        t.extend_from_slice(&[0, 2, 0, 5, 0, 0, 0, 2, 0, 0, 0, 68]);
        t.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(t.len(), 68);
        t.extend_from_slice(GPS_LAT);
        t.extend_from_slice(SERIAL);
        t.push(0);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&t);
        app1
    }

    /// The segments that define the pixels of an 8x8 grey baseline JPEG (all coefficients
    /// zero): quantisation table, frame, Huffman tables, scan header and entropy-coded data.
    pub fn jpeg_pixels() -> Vec<u8> {
        let mut p = segment(0xDB, &[&[0u8][..], &[1u8; 64][..]].concat());
        p.extend(segment(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
        // DC table 0 and AC table 0: one 1-bit code each (DC category 0, AC end of block).
        let mut counts = [0u8; 16];
        counts[0] = 1;
        p.extend(segment(0xC4, &[&[0x00][..], &counts, &[0x00]].concat()));
        p.extend(segment(0xC4, &[&[0x10][..], &counts, &[0x00]].concat()));
        p.extend(segment(0xDA, &[1, 1, 0x00, 0, 63, 0]));
        // Codes "0" (DC) and "0" (EOB), padded with ones; then a stuffed 0xFF byte is absent.
        p.push(0x3F);
        p
    }

    /// A JPEG with JFIF, EXIF (GPS + serial), XMP, a comment and a trailer after the end.
    pub fn jpeg_with_metadata() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        j.extend(segment(0xE1, &exif()));
        let mut xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>".to_vec();
        xmp.extend_from_slice(SERIAL);
        j.extend(segment(0xE1, &xmp));
        j.extend(segment(0xFE, SERIAL));
        j.extend(jpeg_pixels());
        j.extend_from_slice(&[0xFF, 0xD9]);
        j.extend_from_slice(b"TRAILER");
        j.extend_from_slice(SERIAL);
        j
    }

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        img_parts::png::PngChunk::new(*kind, img_parts::Bytes::copy_from_slice(data))
            .encoder()
            .bytes()
            .to_vec()
    }

    /// The chunks that define a 1x1 grey PNG: IHDR and one IDAT (a stored zlib block).
    pub fn png_pixels() -> (Vec<u8>, Vec<u8>) {
        let ihdr = chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        let idat = chunk(
            b"IDAT",
            &[
                0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF, 0x00, 0x7F, 0x00, 0x81, 0x00, 0x80,
            ],
        );
        (ihdr, idat)
    }

    /// A PNG with eXIf (GPS + serial), tEXt and tIME chunks.
    pub fn png_with_metadata() -> Vec<u8> {
        let (ihdr, idat) = png_pixels();
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        p.extend(ihdr);
        p.extend(chunk(b"eXIf", &exif()[6..]));
        p.extend(chunk(b"tEXt", &[&b"Serial\0"[..], SERIAL].concat()));
        p.extend(chunk(b"tIME", &[7, 234, 12, 2, 10, 0, 0]));
        p.extend(idat);
        p.extend(chunk(b"IEND", b""));
        p
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn jpeg_metadata_is_stripped_and_pixels_kept() {
    let original = fixtures::jpeg_with_metadata();
    assert!(contains(&original, b"Exif") && contains(&original, fixtures::GPS_LAT));
    assert_eq!(
        inspect(
            &AttachmentPolicy::default(),
            "wound.jpg",
            "image/jpeg",
            &original,
            original.len() as u64
        )
        .unwrap()
        .media_type,
        "image/jpeg"
    );
    let stripped = strip_metadata("image/jpeg", original).unwrap();
    assert!(!contains(&stripped, b"Exif"));
    assert!(!contains(&stripped, fixtures::GPS_LAT));
    assert!(!contains(&stripped, fixtures::SERIAL));
    assert!(!contains(&stripped, b"xap"));
    assert!(!contains(&stripped, b"TRAILER"));
    // SOI, JFIF, then the pixel-defining segments byte for byte, then EOI.
    let mut expected = vec![0xFF, 0xD8];
    expected.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
    expected.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    expected.extend(fixtures::jpeg_pixels());
    expected.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(stripped, expected);
    // Stripping is idempotent.
    assert_eq!(
        strip_metadata("image/jpeg", stripped.clone()).unwrap(),
        stripped
    );
}

#[test]
fn png_metadata_is_stripped_and_pixels_kept() {
    let original = fixtures::png_with_metadata();
    assert!(contains(&original, fixtures::SERIAL));
    let stripped = strip_metadata("image/png", original).unwrap();
    assert!(!contains(&stripped, fixtures::SERIAL));
    assert!(!contains(&stripped, fixtures::GPS_LAT));
    assert!(!contains(&stripped, b"eXIf") && !contains(&stripped, b"tIME"));
    let (ihdr, idat) = fixtures::png_pixels();
    assert!(contains(&stripped, &ihdr) && contains(&stripped, &idat));
    assert!(stripped.ends_with(b"IEND\xae\x42\x60\x82"));
}

#[test]
fn unstrippable_images_are_refused_and_others_pass() {
    assert!(matches!(
        strip_metadata("image/heic", vec![1, 2, 3]),
        Err(AttachmentError::Image(_))
    ));
    assert!(matches!(
        strip_metadata("image/jpeg", b"not a jpeg".to_vec()),
        Err(AttachmentError::Image(_))
    ));
    let pdf = PDF.to_vec();
    assert_eq!(strip_metadata("application/pdf", pdf.clone()).unwrap(), pdf);
    // A JPEG cut before its end-of-image marker is refused.
    let mut cut = fixtures::jpeg_with_metadata();
    let eoi = cut.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap();
    cut.truncate(eoi);
    assert!(matches!(
        strip_metadata("image/jpeg", cut),
        Err(AttachmentError::Image(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any data, any chunk size, any split of the input and of the ciphertext: decryption gives
    /// the data back and the ciphertext length is the formula's.
    #[test]
    fn prop_round_trip(
        plain in proptest::collection::vec(any::<u8>(), 0..6000),
        chunk in MIN_CHUNK_SIZE..3000u32,
        piece_in in 1usize..2000,
        piece_out in 1usize..2000,
    ) {
        let (ct, d) = encrypt(&plain, chunk, piece_in);
        prop_assert_eq!(ct.len() as u64, ciphertext_len(plain.len() as u64, chunk));
        prop_assert_eq!(decrypt(&ct, &d, piece_out).unwrap(), plain);
    }

    /// Flipping any bit of the ciphertext is detected.
    #[test]
    fn prop_any_bit_flip_is_detected(
        plain in proptest::collection::vec(any::<u8>(), 0..4000),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 4096);
        let i = pos.index(ct.len());
        ct[i] ^= 1 << bit;
        prop_assert!(decrypt(&ct, &d, 777).is_err());
    }

    /// Dropping any suffix of the ciphertext is detected.
    #[test]
    fn prop_truncation_is_detected(
        plain in proptest::collection::vec(any::<u8>(), 0..4000),
        cut in any::<prop::sample::Index>(),
    ) {
        let (ct, d) = encrypt(&plain, MIN_CHUNK_SIZE, 4096);
        let keep = cut.index(ct.len());
        let refused = matches!(decrypt(&ct[..keep], &d, 500), Err(AttachmentError::Truncated { .. }));
        prop_assert!(refused);
    }

    /// The descriptor parser never panics, and what it accepts re-encodes to an equal value.
    #[test]
    fn prop_descriptor_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(d) = AttachmentDescriptor::from_json(&bytes) {
            let again = AttachmentDescriptor::from_json(&serde_json::to_vec(&d).unwrap()).unwrap();
            prop_assert_eq!(again, d);
        }
    }
}
