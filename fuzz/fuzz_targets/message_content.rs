//! Decrypted MLS plaintext from another group member: `MessageContent::from_bytes` must never
//! panic, and content it accepts must encode with `to_bytes` and decode back equal (except
//! `Body::Unsupported`, which `to_bytes` refuses by design).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::content::ContentError;
use ward_core::{Body, MessageContent};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = MessageContent::from_bytes(data) else {
        return;
    };
    match content.to_bytes() {
        Ok(bytes) => {
            let again = MessageContent::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("re-encoded content does not decode: {e}"));
            assert!(
                again == content,
                "content changed in a to_bytes/from_bytes round trip"
            );
            assert_eq!(
                again.to_bytes().ok().as_deref(),
                Some(&bytes[..]),
                "encoding unstable"
            );
        }
        Err(ContentError::InvalidField { field: "body", .. }) => {
            assert!(
                content.body == Body::Unsupported,
                "to_bytes refused a supported body"
            );
        }
        Err(e) => panic!("accepted content does not re-encode: {e}"),
    }
});
