//! Thumbnails of images from the sender's own disk (ADR 0015, "Thumbnails"): whatever bytes
//! claim to be a JPEG, PNG or GIF, `make_thumbnail` must never panic or allocate past its
//! limits, and a thumbnail it returns is a JPEG within 320x320.
//!
//! The first byte picks the declared type (mod 3); the rest is the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::attachment::{THUMBNAIL_MAX_SIDE, make_thumbnail};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, image)) = data.split_first() else {
        return;
    };
    let media_type = ["image/jpeg", "image/png", "image/gif"][usize::from(kind % 3)];
    if let Ok(t) = make_thumbnail(media_type, image) {
        assert!(t.width <= THUMBNAIL_MAX_SIDE && t.height <= THUMBNAIL_MAX_SIDE);
        assert!(t.jpeg.starts_with(&[0xFF, 0xD8]), "a thumbnail is a JPEG");
    }
});
