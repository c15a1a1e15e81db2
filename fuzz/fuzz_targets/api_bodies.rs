//! Every JSON request body the server accepts from the network, and `Username::parse` (paths
//! and query strings carry usernames). Decoding must fail or succeed, never panic; what
//! decodes must round-trip; a parsed username must satisfy its documented invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_fuzz::json_round_trip;
use ward_proto::{
    AckRequest, ClaimKeyPackagesRequest, CreateConversationRequest, CreateUserRequest,
    EnrollRequest, LoginRequest, ReadReceiptRequest, SendEnvelopeRequest, UpdatePolicyRequest,
    UploadKeyPackagesRequest, Username,
};

fuzz_target!(|data: &[u8]| {
    let _ = json_round_trip::<SendEnvelopeRequest>(data);
    let _ = json_round_trip::<EnrollRequest>(data);
    let _ = json_round_trip::<LoginRequest>(data);
    let _ = json_round_trip::<CreateConversationRequest>(data);
    let _ = json_round_trip::<UploadKeyPackagesRequest>(data);
    let _ = json_round_trip::<AckRequest>(data);
    let _ = json_round_trip::<ReadReceiptRequest>(data);
    let _ = json_round_trip::<CreateUserRequest>(data);
    let _ = json_round_trip::<ClaimKeyPackagesRequest>(data);
    let _ = json_round_trip::<UpdatePolicyRequest>(data);

    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = Username::parse(s);
        if let Ok(name) = &parsed {
            let b = name.as_str().as_bytes();
            assert!(!b.is_empty() && b.len() <= 64, "username length");
            assert!(
                b[0].is_ascii_lowercase() || b[0].is_ascii_digit(),
                "username start"
            );
            assert!(
                b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c)),
                "username characters"
            );
            assert_eq!(name.as_str(), s);
        }
        // The JSON decoder and the parser agree.
        let from_json = serde_json::from_value::<Username>(serde_json::Value::String(s.to_owned()));
        assert_eq!(from_json.ok(), parsed.ok());
    }
});
