//! Attachments from another group member (ADR 0015): the descriptor inside decrypted content,
//! and the ciphertext downloaded from the blob store.
//!
//! The first byte picks the input:
//! - even: the rest is a descriptor's JSON. `AttachmentDescriptor::from_json` must never panic,
//!   and a descriptor it accepts must round-trip through JSON equal;
//! - odd: the rest is ciphertext for a fixed key, under a descriptor whose size comes from the
//!   next two bytes and whose hash is the input's own (so the fuzzer gets past the hash check to
//!   the AEAD). `Decryptor` must never panic, and plaintext it accepts has the announced size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use ward_core::attachment::{AttachmentDescriptor, AttachmentKey, Decryptor, MIN_CHUNK_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(d) = AttachmentDescriptor::from_json(rest) else {
            return;
        };
        let json = serde_json::to_vec(&d).expect("an accepted descriptor encodes");
        let again = AttachmentDescriptor::from_json(&json).expect("re-encoded descriptor decodes");
        assert!(again == d, "descriptor changed in a JSON round trip");
        return;
    }
    let [hi, lo, ciphertext @ ..] = rest else {
        return;
    };
    let size = u64::from(u16::from_be_bytes([*hi, *lo]));
    let descriptor = AttachmentDescriptor {
        blob_id: uuid::Uuid::nil(),
        key: AttachmentKey::from_bytes([7; 32]),
        nonce: ward_proto::Bytes(vec![1; 7]),
        chunk_size: MIN_CHUNK_SIZE,
        size,
        ciphertext_sha256: hex::encode(Sha256::digest(ciphertext)),
        media_type: "application/octet-stream".into(),
        file_name: "fuzz.bin".into(),
        thumbnail: None,
    };
    let mut dec = Decryptor::new(&descriptor).expect("the fixed descriptor is valid");
    let mut out = Vec::new();
    // Push in uneven pieces to exercise the chunk buffer.
    for piece in ciphertext.chunks(usize::from(mode) * 7 + 1) {
        if dec.push(piece, &mut out).is_err() {
            return;
        }
    }
    if dec.finish(&mut out).is_ok() {
        assert_eq!(out.len() as u64, size, "accepted plaintext has the wrong size");
    }
});
