//! Exported audit records as `ward audit verify` reads them back: decoding, recomputing the
//! hash and chain verification must never panic, and a decoded record must round-trip equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_proto::AuditRecord;
use ward_store::audit::{ChainVerifier, recompute};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<AuditRecord>(data) else {
        return;
    };
    let hash = recompute(&record);
    let mut verifier = ChainVerifier::new(&[]);
    let linked = verifier.push(&record);
    let report = verifier.finish(&[], |_, _| false);
    assert_eq!(report.ok, linked);
    if linked {
        assert!(
            hash.is_some(),
            "a record verified without a recomputable hash"
        );
    }
    let json = serde_json::to_vec(&record).expect("a decoded record encodes");
    let again: AuditRecord = serde_json::from_slice(&json).expect("an encoded record decodes");
    assert_eq!(again, record, "audit record changed in a JSON round trip");
    assert_eq!(recompute(&again), hash, "the hash depends on the encoding");
});
